//! Crash consistency: the built broker is SIGKILLed at random moments, 20 times, while an
//! idempotent acks=all producer writes and a group consumer commits offsets. Afterwards every
//! acknowledged record must be in the log exactly once and in order, offsets dense, committed
//! offsets never moved backwards, and the broker's recovery lines must account for every byte
//! it truncated.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset};

const PARTITIONS: i32 = 4;
/// Kills per run; `WEIR_CRASH_CYCLES` runs a longer variant.
fn cycles() -> usize {
    std::env::var("WEIR_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20).max(20)
}
const GROUP: &str = "crash-group";

/// Sizes of every segment file under `dir`.
fn segment_sizes(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for part in std::fs::read_dir(dir).unwrap().flatten() {
        if !part.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(part.path()).unwrap().flatten() {
            let name = f.path().display().to_string();
            if name.ends_with(".log") && !name.contains("__cluster_metadata") {
                out.insert(name, f.metadata().unwrap().len());
            }
        }
    }
    out
}

/// Bytes the broker reports having cut while recovering (its "recovered log" lines): a
/// torn tail's written bytes plus the reserved space after them.
fn reported_truncation(log: &[String]) -> u64 {
    let field = |line: &str, name: &str| -> u64 {
        line.split(name).nth(1).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    log.iter()
        .filter(|l| l.contains("recovered log"))
        .map(|l| field(l, "truncated_bytes=") + field(l, "reserved_bytes="))
        .sum()
}

/// The group's committed offsets, by partition (raw OffsetFetch).
fn committed(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let req =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str(GROUP))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes((0..PARTITIONS).collect()),
        ]));
    let r: OffsetFetchResponse = raw::call(bootstrap, ApiKey::OffsetFetch, 5, &req);
    r.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| (p.partition_index, p.committed_offset)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_sigkills_lose_and_duplicate_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = BinaryBroker::free_addr();
    // small segments, so rolls (and producer snapshots) happen between kills
    let args = ["--set", "log.segment.bytes=200000", "--set", "group.initial.rebalance.delay.ms=0"];
    let mut broker = BinaryBroker::start_on(&addr, &data, &args);
    let topic = topic_name("crash");
    create_topic(&addr, &topic, PARTITIONS, &[]).await;
    let mut rng = Lcg::seeded("crash test");

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Acks::default();
    let producer_thread = {
        let (stop, acks, addr, topic) = (stop.clone(), acks.clone(), addr.clone(), topic.clone());
        std::thread::spawn(move || {
            let p: ThreadedProducer<Acks> = client_config(&addr)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "180000")
                .set("reconnect.backoff.max.ms", "200")
                .set("retry.backoff.ms", "50")
                .create_with_context(acks)
                .expect("producer");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{n:09}");
                let rec =
                    BaseRecord::<(), String>::to(&topic).payload(&payload).partition((n % PARTITIONS as u64) as i32);
                if p.send(rec).is_ok() {
                    n += 1;
                }
                if n.is_multiple_of(25) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            p.flush(Duration::from_secs(180)).expect("every record acknowledged or failed");
            n
        })
    };
    let known_commits: Arc<Mutex<BTreeMap<i32, i64>>> = Default::default();
    let consumer_thread = {
        let (stop, known, addr, topic) = (stop.clone(), known_commits.clone(), addr.clone(), topic.clone());
        std::thread::spawn(move || {
            let c: BaseConsumer = client_config(&addr)
                .set("group.id", GROUP)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("reconnect.backoff.max.ms", "200")
                .create()
                .expect("consumer");
            c.subscribe(&[topic.as_str()]).unwrap();
            let mut since_commit = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                    since_commit += 1;
                }
                if since_commit >= 200 {
                    since_commit = 0;
                    let Ok(position) = c.position() else { continue };
                    if c.commit(&position, CommitMode::Sync).is_ok() {
                        let mut k = known.lock().unwrap();
                        for e in position.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                let v = k.entry(e.partition()).or_insert(o);
                                *v = (*v).max(o);
                            }
                        }
                    }
                }
            }
        })
    };

    let started = Instant::now();
    let mut truncated_files = 0u64;
    let cycles = cycles();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(150 + rng.next(450))).await;
        broker.kill9();
        let before = segment_sizes(&data);
        broker = BinaryBroker::start_on(&addr, &data, &args);
        let after = segment_sizes(&data);
        let lost: u64 = before.iter().map(|(f, b)| b.saturating_sub(*after.get(f).unwrap_or(b))).sum();
        let reported = reported_truncation(&broker.log.lock().unwrap());
        assert_eq!(lost, reported, "cycle {cycle}: recovery lines account for every truncated byte");
        truncated_files += lost;
        // committed offsets never go backwards
        let known = known_commits.lock().unwrap().clone();
        let a = addr.clone();
        let t = topic.clone();
        let now = tokio::task::spawn_blocking(move || committed(&a, &t)).await.unwrap();
        for (p, o) in known {
            assert!(now.get(&p).copied().unwrap_or(-1) >= o, "cycle {cycle}: partition {p} committed {o}, now {now:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::spawn_blocking(move || producer_thread.join().unwrap()).await.unwrap();
    tokio::task::spawn_blocking(move || consumer_thread.join().unwrap()).await.unwrap();
    eprintln!("{cycles} kills in {:?}; {sent} records sent; {truncated_files} bytes truncated", started.elapsed());

    let failed = acks.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "deliveries failed: {:?}", &failed[..failed.len().min(5)]);
    let acked = acks.acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, sent, "every record sent was acknowledged");
    assert!(acked.len() > 1000, "the test produced enough to mean something");

    // read everything back and compare with the acknowledgements
    let a = addr.clone();
    let t = topic.clone();
    let stored: Vec<(i32, i64, u64)> = tokio::task::spawn_blocking(move || {
        let parts: Vec<i32> = (0..PARTITIONS).collect();
        let c = assigned_consumer(&a, &t, &parts, Offset::Beginning, &[]);
        consume_n(&c, sent as usize, Duration::from_secs(120))
            .iter()
            .map(|m| (m.partition(), m.offset(), String::from_utf8_lossy(m.payload().unwrap()).parse::<u64>().unwrap()))
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(stored.len() as u64, sent, "every acknowledged record is stored exactly once");
    let mut by_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for (p, o, n) in &stored {
        by_partition.entry(*p).or_default().push((*o, *n));
    }
    for (p, records) in &by_partition {
        for (i, (o, n)) in records.iter().enumerate() {
            assert_eq!(*o, i as i64, "partition {p}: dense offsets");
            assert_eq!(*n % PARTITIONS as u64, *p as u64);
            if i > 0 {
                assert!(records[i - 1].1 < *n, "partition {p}: in order, no duplicates at offset {o}");
            }
        }
    }
    let index: BTreeMap<(i32, i64), u64> = stored.iter().map(|(p, o, n)| ((*p, *o), *n)).collect();
    for (p, o, n) in &acked {
        assert_eq!(index.get(&(*p, *o)), Some(n), "acknowledged record {n} is at partition {p} offset {o}");
    }
    assert!(broker.terminate().success());
}
