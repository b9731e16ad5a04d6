//! Produce and consume through rdkafka: every codec, headers, null keys and values, offsets,
//! timestamps, ListOffsets, mid-batch fetches and long-polling.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

const PARTITIONS: i32 = 4;

/// What record `i` carries: some keys and values null, a header on every record.
fn key_of(i: usize) -> Option<String> {
    (!i.is_multiple_of(7)).then(|| format!("key-{i}"))
}
fn value_of_record(i: usize) -> Option<Vec<u8>> {
    (!i.is_multiple_of(11)).then(|| format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes())
}

async fn round_trip(codec: &str, records: usize) {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name(&format!("codec-{codec}"));
    create_topic(&broker.bootstrap, &topic, PARTITIONS, &[]).await;
    let producer = producer(&broker.bootstrap, &[("compression.type", codec), ("batch.size", "65536")]);
    let mut acks = Vec::with_capacity(records);
    for i in 0..records {
        let key = key_of(i);
        let value = value_of_record(i);
        let headers = OwnedHeaders::new().insert(Header { key: "seq", value: Some(i.to_string().as_bytes()) });
        let mut rec =
            FutureRecord::<String, Vec<u8>>::to(&topic).partition((i % PARTITIONS as usize) as i32).headers(headers);
        if let Some(k) = key.as_ref() {
            rec = rec.key(k);
        }
        if let Some(v) = value.as_ref() {
            rec = rec.payload(v);
        }
        acks.push(producer.send_result(rec).expect("enqueue"));
    }
    for a in acks {
        a.await.expect("delivery").expect("acknowledged");
    }
    let consumer = assigned_consumer(&broker.bootstrap, &topic, &[0, 1, 2, 3], Offset::Beginning, &[]);
    let got =
        tokio::task::spawn_blocking(move || consume_n(&consumer, records, Duration::from_secs(120))).await.unwrap();
    assert_eq!(got.len(), records, "{codec}: every record comes back");
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut next_index: HashMap<i32, usize> = HashMap::new();
    for m in &got {
        let p = m.partition();
        let expect_offset = next_offset.entry(p).or_insert(0);
        assert_eq!(m.offset(), *expect_offset, "{codec}: dense offsets in partition {p}");
        *expect_offset += 1;
        let i = *next_index.entry(p).or_insert(p as usize);
        next_index.insert(p, i + PARTITIONS as usize);
        assert_eq!(m.key().map(|k| String::from_utf8_lossy(k).to_string()), key_of(i), "{codec}: key of record {i}");
        assert_eq!(value_of(m), value_of_record(i), "{codec}: value of record {i}");
        let h = m.headers().expect("headers").get(0);
        assert_eq!((h.key, h.value), ("seq", Some(i.to_string().as_bytes())));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_uncompressed() {
    round_trip("none", 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_gzip() {
    round_trip("gzip", 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_snappy() {
    round_trip("snappy", 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_lz4() {
    round_trip("lz4", 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_zstd() {
    round_trip("zstd", 100_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_time_and_list_offsets() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("ts");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let producer = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let base = rdkafka::util::current_time_millis() - 60_000;
    // timestamps: base, base+10, …; the max one sits in the middle
    let stamps: Vec<i64> = (0..20).map(|i| if i == 12 { base + 100_000 } else { base + 10 * i }).collect();
    for (i, ts) in stamps.iter().enumerate() {
        let v = format!("v{i}");
        producer
            .send(FutureRecord::<(), String>::to(&topic).payload(&v).timestamp(*ts), Duration::from_secs(10))
            .await
            .expect("sent");
    }
    let consumer = assigned_consumer(&broker.bootstrap, &topic, &[0], Offset::Beginning, &[]);
    let (lo, hi) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((lo, hi), (0, 20));
    let got = consume_n(&consumer, 20, Duration::from_secs(30));
    for (m, ts) in got.iter().zip(&stamps) {
        assert_eq!(m.timestamp(), Timestamp::CreateTime(*ts));
    }
    let lookup = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(ts)).unwrap();
        let r = consumer.offsets_for_times(tpl, Duration::from_secs(10)).expect("offsets_for_times");
        r.find_partition(&topic, 0).unwrap().offset()
    };
    assert_eq!(lookup(base + 35), Offset::Offset(4), "first record at or after the time");
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 100_001), Offset::End, "no record that late");
    let max = list_offset(&broker.bootstrap, &topic, -3);
    assert_eq!((max.offset, max.timestamp), (12, base + 100_000), "max timestamp (-3)");
    assert_eq!(list_offset(&broker.bootstrap, &topic, -2).offset, 0, "earliest (-2)");
    assert_eq!(list_offset(&broker.bootstrap, &topic, -1).offset, 20, "latest (-1)");
}

/// ListOffsets v7 for partition 0, through the raw client (rdkafka cannot ask for -3).
fn list_offset(bootstrap: &str, topic: &str, timestamp: i64) -> ListOffsetsPartitionResponse {
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)])]);
    let resp: ListOffsetsResponse = raw::call(bootstrap, ApiKey::ListOffsets, 7, &req);
    let p = resp.topics[0].partitions[0].clone();
    assert_eq!(p.error_code, 0);
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn log_append_time_topic_stamps_broker_time() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("lat");
    create_topic(&broker.bootstrap, &topic, 1, &[("message.timestamp.type", "LogAppendTime")]).await;
    let before = rdkafka::util::current_time_millis();
    let producer = producer(&broker.bootstrap, &[]);
    producer
        .send(FutureRecord::<(), str>::to(&topic).payload("x").timestamp(1_000), Duration::from_secs(10))
        .await
        .expect("sent");
    let after = rdkafka::util::current_time_millis();
    let consumer = assigned_consumer(&broker.bootstrap, &topic, &[0], Offset::Beginning, &[]);
    let got = consume_n(&consumer, 1, Duration::from_secs(30));
    match got[0].timestamp() {
        Timestamp::LogAppendTime(ts) => assert!(ts >= before && ts <= after, "{ts} within [{before}, {after}]"),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_from_the_middle_of_a_batch() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("midbatch");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let producer = producer(&broker.bootstrap, &[("linger.ms", "200")]);
    let futures: Vec<_> = (0..10)
        .map(|i| {
            producer.send_result(FutureRecord::<(), String>::to(&topic).payload(&format!("m{i}"))).expect("enqueue")
        })
        .collect();
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.unwrap().expect("delivered").offset);
    }
    assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "one batch, offsets 0..9");
    let consumer = assigned_consumer(&broker.bootstrap, &topic, &[0], Offset::Offset(5), &[]);
    let got = consume_n(&consumer, 5, Duration::from_secs(30));
    let seen: Vec<(i64, Vec<u8>)> = got.iter().map(|m| (m.offset(), value_of(m).unwrap())).collect();
    let want: Vec<(i64, Vec<u8>)> = (5..10).map(|i| (i, format!("m{i}").into_bytes())).collect();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_poll_returns_as_soon_as_a_record_arrives() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("longpoll");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let max_wait_ms = 20_000u64;
    let wait = max_wait_ms.to_string();
    let consumer =
        assigned_consumer(&broker.bootstrap, &topic, &[0], Offset::Beginning, &[("fetch.wait.max.ms", &wait)]);
    // Let the consumer's first fetch park on the empty partition.
    assert!(consume_n(&consumer, 1, Duration::from_secs(2)).is_empty());
    let producer = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let sent_at = Instant::now();
    producer.send(FutureRecord::<(), str>::to(&topic).payload("wake"), Duration::from_secs(10)).await.expect("sent");
    let got = tokio::task::spawn_blocking(move || consume_n(&consumer, 1, Duration::from_millis(max_wait_ms * 2)))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        sent_at.elapsed() < Duration::from_millis(max_wait_ms),
        "the parked fetch was answered by the append, not by fetch.wait.max.ms"
    );
}
