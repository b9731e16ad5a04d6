//! Log compaction through real clients: the background cleaner keeps the latest value per key
//! at its original offset and drops old tombstones; compacted topics refuse keyless records.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset};

#[tokio::test(flavor = "multi_thread")]
async fn cleaner_keeps_latest_values_at_their_offsets() {
    let broker = TestBroker::start(&[("log.cleaner.backoff.ms", "200")]).await;
    let topic = topic_name("compact");
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "20000"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "0"),
    ];
    create_topic(&broker.bootstrap, &topic, 1, &configs).await;
    let p = producer(&broker.bootstrap, &[("compression.type", "snappy"), ("batch.size", "8000")]);
    // (key → (offset of its last write, value or None for a tombstone))
    let mut last: HashMap<String, (i64, Option<String>)> = HashMap::new();
    let mut acks = Vec::new();
    for version in 0..3 {
        for k in 0..1000 {
            let (key, value) = (format!("key-{k}"), format!("value-{k}-v{version}"));
            let f = p.send_result(FutureRecord::to(&topic).key(&key).payload(&value)).unwrap();
            acks.push((key, Some(value), f));
        }
    }
    for k in (0..1000).step_by(10) {
        let key = format!("key-{k}");
        let f = p.send_result(FutureRecord::<String, ()>::to(&topic).key(&key)).unwrap();
        acks.push((key, None, f));
    }
    // filler with fresh keys, so every real key's last write sits in a closed segment
    for f in 0..300 {
        let key = format!("filler-{f}");
        // incompressible, so the filler fills segments and rolls the real keys' last writes
        // out of the active segment (which, as in Kafka, is never cleaned)
        let value: String = (0..8).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
        let fut = p.send_result(FutureRecord::to(&topic).key(&key).payload(&value)).unwrap();
        acks.push((key, Some(value), fut));
    }
    for (key, value, f) in acks {
        let d = f.await.unwrap().expect("produced");
        last.insert(key, (d.offset, value));
    }
    let bootstrap = broker.bootstrap.clone();
    let t = topic.clone();
    let (got, total) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = assigned_consumer(&bootstrap, &t, &[0], Offset::Beginning, &[]);
            let msgs = consume_n(&c, 4400, Duration::from_secs(5));
            let real: Vec<(i64, String, Option<String>)> = msgs
                .iter()
                .filter(|m| m.key().is_some_and(|k| k.starts_with(b"key-")))
                .map(|m| {
                    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
                    (m.offset(), s(m.key().unwrap()), m.payload().map(s))
                })
                .collect();
            if real.len() == 900 || Instant::now() > deadline {
                return (real, msgs.len());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 900, "one record per live key after cleaning (read {total} in all)");
    for (offset, key, value) in &got {
        let (want_offset, want_value) = &last[key];
        assert_eq!((offset, value), (want_offset, want_value), "{key}: its latest value at its original offset");
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets never reorder");
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_topics_refuse_keyless_records() {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("compact-keys");
    create_topic(&broker.bootstrap, &topic, 1, &[("cleanup.policy", "compact")]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let err = p.send(FutureRecord::<(), str>::to(&topic).payload("no key"), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err.0, KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)), "{err:?}");
    let ok = p.send(FutureRecord::to(&topic).key("k").payload("keyed"), Duration::from_secs(10)).await;
    assert_eq!(ok.expect("keyed record accepted").offset, 0);
}
