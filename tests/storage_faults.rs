//! A failing disk: with ENOSPC or EIO injected on appends or fsyncs (`log::faults`), produce
//! gets KAFKA_STORAGE_ERROR and never a false success, existing data stays readable, and the
//! partition takes writes again once the disk works — with nothing acknowledged damaged.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::Message;
use weir::log::faults::{self, Op};

/// Produces `n` records (values `v<from>`…) in one batch; returns (error code, base offset).
fn produce(bootstrap: &str, topic: &str, acks: i16, from: usize, n: usize) -> (i16, i64) {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: weir::broker::now_ms(),
            key: None,
            value: Some(Bytes::from(format!("v{}", from + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(buf.freeze()))]),
    ]);
    let r: ProduceResponse = raw::call(bootstrap, ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn read_values(bootstrap: &str, topic: &str, n: usize) -> Vec<String> {
    let c = assigned_consumer(bootstrap, topic, &[0], rdkafka::Offset::Beginning, &[]);
    consume_n(&c, n, Duration::from_secs(20))
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

fn values(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("v{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_disk_never_acknowledges_and_recovers() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("faults");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let data = broker.data_dir();
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let storage_error = ResponseError::KafkaStorageError.code();
        assert_eq!(produce(&b, &t, -1, 0, 10), (0, 0));

        // the disk is full: appends fail, reads still work
        faults::inject(&data, Op::Write, libc::ENOSPC);
        assert_eq!(produce(&b, &t, -1, 100, 10).0, storage_error, "acks=all");
        assert_eq!(produce(&b, &t, 1, 100, 10).0, storage_error, "acks=1");
        assert_eq!(read_values(&b, &t, 10), values(0, 10));
        faults::clear(&data);
        assert_eq!(produce(&b, &t, -1, 10, 10), (0, 10), "writes resume at the next offset");

        // fsync fails with EIO: acks=all is refused, acks=1 (page cache) is not
        faults::inject(&data, Op::Sync, libc::EIO);
        assert_eq!(produce(&b, &t, -1, 200, 5).0, storage_error, "no false success");
        assert_eq!(produce(&b, &t, 1, 20, 5), (0, 25), "the unacknowledged acks=all batch stays in the log");
        faults::clear(&data);
        assert_eq!(produce(&b, &t, -1, 25, 5), (0, 30), "fsync works again");
        let mut want = values(0, 20);
        want.extend(values(200, 5));
        want.extend(values(20, 10));
        assert_eq!(read_values(&b, &t, 35), want);
    })
    .await
    .unwrap();
    // everything is still there after a restart, and the log takes writes
    let broker = broker.restart(&[]).await;
    let b = broker.bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(read_values(&b, &t, 35).len(), 35);
        assert_eq!(produce(&b, &t, -1, 30, 1), (0, 35));
    })
    .await
    .unwrap();
}
