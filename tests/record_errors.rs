//! Per-record errors in Produce responses (v8+): a batch with invalid records is refused
//! whole, and `record_errors` names each bad record by its index in the batch with Kafka's
//! message, so librdkafka fails those records with INVALID_RECORD (or the partition's code
//! when only one is bad) and the rest of the batch with `_INVALID_DIFFERENT_RECORD`, and an
//! application can resend just the good ones.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset};

/// Delivery results by the record's value.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<BTreeMap<String, Result<i64, RDKafkaErrorCode>>>>);

impl ClientContext for Outcomes {}
impl ProducerContext for Outcomes {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let (value, outcome) = match result {
            Ok(m) => (m.payload().unwrap_or_default().to_vec(), Ok(m.offset())),
            Err((e, m)) => (m.payload().unwrap_or_default().to_vec(), Err(e.rdkafka_error_code().expect("a code"))),
        };
        self.0.lock().unwrap().insert(String::from_utf8(value).unwrap(), outcome);
    }
}

/// Sends `(key, value, timestamp)` records as one batch (long linger, one flush) and returns
/// each value's outcome.
fn send_one_batch(
    bootstrap: &str,
    topic: &str,
    compression: &str,
    records: &[(Option<&str>, &str, Option<i64>)],
) -> BTreeMap<String, Result<i64, RDKafkaErrorCode>> {
    let outcomes = Outcomes::default();
    let mut c = client_config(bootstrap);
    c.set("linger.ms", "500").set("compression.codec", compression).set("message.timeout.ms", "20000");
    let p: BaseProducer<Outcomes> = c.create_with_context(outcomes.clone()).expect("producer");
    for (key, value, ts) in records {
        let mut r = BaseRecord::<str, str>::to(topic).partition(0).payload(value);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(ts) = ts {
            r = r.timestamp(*ts);
        }
        p.send(r).map_err(|(e, _)| e).expect("queued");
    }
    p.flush(Duration::from_secs(30)).expect("flushed");
    let out = outcomes.0.lock().unwrap().clone();
    assert_eq!(out.len(), records.len(), "a delivery report per record");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_records_on_a_compacted_topic_are_named_and_the_rest_can_be_resent() {
    let broker = TestBroker::start(&[]).await;
    for codec in ["none", "lz4"] {
        let topic = topic_name(&format!("compacted-{codec}"));
        create_topic(&broker.bootstrap, &topic, 1, &[("cleanup.policy", "compact")]).await;
        let b = broker.bootstrap.clone();
        let t = topic.clone();
        let records =
            [(Some("k0"), "good-0", None), (None, "bad-1", None), (Some("k2"), "good-2", None), (None, "bad-3", None)];
        let out = tokio::task::spawn_blocking(move || send_one_batch(&b, &t, codec, &records)).await.unwrap();
        println!("{codec}: {out:?}");
        assert_eq!(out["bad-1"], Err(RDKafkaErrorCode::InvalidRecord), "{codec}");
        assert_eq!(out["bad-3"], Err(RDKafkaErrorCode::InvalidRecord), "{codec}");
        assert_eq!(out["good-0"], Err(RDKafkaErrorCode::InvalidDifferentRecord), "{codec}");
        assert_eq!(out["good-2"], Err(RDKafkaErrorCode::InvalidDifferentRecord), "{codec}");

        // The application resends only the records that were not at fault.
        let (b, t) = (broker.bootstrap.clone(), topic.clone());
        let resent = [(Some("k0"), "good-0", None), (Some("k2"), "good-2", None)];
        let out = tokio::task::spawn_blocking(move || send_one_batch(&b, &t, codec, &resent)).await.unwrap();
        assert_eq!(out["good-0"], Ok(0));
        assert_eq!(out["good-2"], Ok(1));
        let consumer = assigned_consumer(&broker.bootstrap, &topic, &[0], Offset::Beginning, &[]);
        let got: Vec<(String, String)> = consume_n(&consumer, 2, Duration::from_secs(15))
            .iter()
            .map(|m| {
                (String::from_utf8_lossy(m.key().unwrap()).into(), String::from_utf8_lossy(m.payload().unwrap()).into())
            })
            .collect();
        assert_eq!(got, vec![("k0".into(), "good-0".into()), ("k2".into(), "good-2".into())], "{codec}");
    }
}

/// Timestamps outside `message.timestamp.before.max.ms`: the partition's code is
/// INVALID_TIMESTAMP; with more than one record named, librdkafka (2.12) fails each named
/// record with INVALID_RECORD and the rest with `_INVALID_DIFFERENT_RECORD`. (With a single
/// record error it gives every record of the batch the partition's code.)
#[tokio::test(flavor = "multi_thread")]
async fn records_with_timestamps_out_of_range_are_named() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("timestamps");
    create_topic(&broker.bootstrap, &topic, 1, &[("message.timestamp.before.max.ms", "3600000")]).await;
    let now = weir::broker::now_ms();
    for codec in ["none", "zstd"] {
        let b = broker.bootstrap.clone();
        let t = topic.clone();
        let records = [
            ("ok-0", Some(now)),
            ("old-1", Some(now - 7_200_000)),
            ("ok-2", Some(now)),
            ("old-3", Some(now - 9_000_000)),
        ];
        let records: Vec<_> = records.iter().map(|(v, ts)| (Some("k"), *v, *ts)).collect();
        let out = tokio::task::spawn_blocking(move || send_one_batch(&b, &t, codec, &records)).await.unwrap();
        println!("{codec}: {out:?}");
        assert_eq!(out["old-1"], Err(RDKafkaErrorCode::InvalidRecord), "{codec}");
        assert_eq!(out["old-3"], Err(RDKafkaErrorCode::InvalidRecord), "{codec}");
        assert_eq!(out["ok-0"], Err(RDKafkaErrorCode::InvalidDifferentRecord), "{codec}");
        assert_eq!(out["ok-2"], Err(RDKafkaErrorCode::InvalidDifferentRecord), "{codec}");
    }
    // the partition's code, seen when the whole batch is one bad record
    let (b, t) = (broker.bootstrap.clone(), topic.clone());
    let old = [(Some("k"), "old", Some(now - 7_200_000))];
    let out = tokio::task::spawn_blocking(move || send_one_batch(&b, &t, "none", &old)).await.unwrap();
    assert_eq!(out["old"], Err(RDKafkaErrorCode::InvalidTimestamp));
}

/// The response fields themselves, at v8 (the first that has them) and v7 (which has not).
#[tokio::test(flavor = "multi_thread")]
async fn produce_response_carries_record_errors_and_message() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("raw-compacted");
    create_topic(&broker.bootstrap, &topic, 1, &[("cleanup.policy", "compact")]).await;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.clone()))).with_partition_data(
            vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(producer_batch(-1, -1, -1, 5, false)))],
        ),
    ]);
    let v8: ProduceResponse = raw::call_async(&broker.bootstrap, ApiKey::Produce, 8, request.clone()).await;
    let p = &v8.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(p.base_offset, -1);
    assert_eq!(p.log_start_offset, 0, "Kafka reports the log start offset with record errors");
    assert_eq!(p.record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let expected = format!("Compacted topic cannot accept message without key in topic partition {topic}-0");
    assert!(p.record_errors.iter().all(|e| e.batch_index_error_message.as_deref() == Some(expected.as_str())));
    let message = p.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with(
            "One or more records have been rejected due to 5 record errors in total, and only showing the first three \
             errors at most: [RecordError(batchIndex=0, message='Compacted topic"
        ),
        "{message}"
    );
    assert_eq!(message.matches("RecordError(").count(), 3, "{message}");
    let v7: ProduceResponse = raw::call_async(&broker.bootstrap, ApiKey::Produce, 7, request).await;
    assert_eq!(v7.responses[0].partition_responses[0].error_code, ResponseError::InvalidRecord.code());
}
