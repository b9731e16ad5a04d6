//! A bounded soak: several idempotent producers and a consumer group (one member leaving and
//! rejoining halfway) over many partitions of the built broker, for `WEIR_SOAK_SECS` seconds
//! (default 20; `.ci/run` runs 120). Zero producer or consumer errors, every acknowledged
//! record consumed, and the broker's RSS and open descriptors stay flat.
//!
//! Ignored by plain `cargo test` for its length: `cargo test --test soak -- --ignored --nocapture`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Message;

const PARTITIONS: i32 = 12;
const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 3;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Segment files under the data directory: each keeps one descriptor open, by design.
fn segments(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for part in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(part.path()).into_iter().flatten().flatten() {
            n += usize::from(f.file_name().to_string_lossy().ends_with(".log"));
        }
    }
    n
}

/// One group member: consumes, commits every few hundred records, records what it saw.
fn member(
    addr: String,
    topic: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashSet<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let c: BaseConsumer = client_config(&addr)
        .set("group.id", "soak-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    c.subscribe(&[topic.as_str()]).unwrap();
    let mut since_commit = 0;
    while !stop.load(Ordering::Relaxed) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen.lock().unwrap().insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                since_commit += 1;
                if since_commit >= 500 {
                    since_commit = 0;
                    let _ = c.commit_consumer_state(CommitMode::Async);
                }
            }
            Some(Err(e)) => errors.lock().unwrap().push(e.to_string()),
            None => {}
        }
    }
    let _ = c.commit_consumer_state(CommitMode::Sync);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run with --ignored (CI does)"]
async fn soak_many_producers_and_consumers_without_errors_or_leaks() {
    let secs: u64 = std::env::var("WEIR_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(dir.path(), &["--set", "log.segment.bytes=1048576"]);
    let addr = broker.bootstrap.clone();
    let pid = broker.child.id();
    let topic = topic_name("soak");
    create_topic(&addr, &topic, PARTITIONS, &[]).await;

    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let acks = Acks::default();
    let seen: Arc<Mutex<HashSet<String>>> = Default::default();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let (stop, acks, addr, topic) = (stop_producing.clone(), acks.clone(), addr.clone(), topic.clone());
            std::thread::spawn(move || {
                let p: ThreadedProducer<Acks> = client_config(&addr)
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("linger.ms", "5")
                    .set("compression.type", if id % 2 == 0 { "lz4" } else { "none" })
                    .create_with_context(acks)
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // one number space for all producers: producer `id` sends id, id+P, id+2P, …
                    let value = n * PRODUCERS + id;
                    let payload = format!("{value:012}");
                    let partition = (value % PARTITIONS as u64) as i32;
                    if p.send(BaseRecord::<(), String>::to(&topic).payload(&payload).partition(partition)).is_ok() {
                        n += 1;
                    }
                    if n.is_multiple_of(100) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                p.flush(Duration::from_secs(60)).unwrap();
            })
        })
        .collect();
    let spawn_member = || {
        let (addr, topic, stop, seen, errors) =
            (addr.clone(), topic.clone(), stop_consuming.clone(), seen.clone(), errors.clone());
        std::thread::spawn(move || member(addr, topic, stop, seen, errors))
    };
    let mut members: Vec<_> = (0..CONSUMERS).map(|_| spawn_member()).collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_start, fds_start, segments_start) = (rss_kb(pid), open_fds(pid), segments(dir.path()));
    let started = Instant::now();
    let mut rejoined = false;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !rejoined && started.elapsed() > Duration::from_secs(secs / 2) {
            // one member leaves (its own stop flag) and a new one joins: a rebalance under load
            let (addr, topic, seen, errors) = (addr.clone(), topic.clone(), seen.clone(), errors.clone());
            let leaver_stop = Arc::new(AtomicBool::new(false));
            let s = leaver_stop.clone();
            let leaver = std::thread::spawn(move || member(addr, topic, s, seen, errors));
            tokio::time::sleep(Duration::from_secs(2)).await;
            leaver_stop.store(true, Ordering::Relaxed);
            tokio::task::spawn_blocking(move || leaver.join().unwrap()).await.unwrap();
            members.push(spawn_member());
            rejoined = true;
        }
    }
    stop_producing.store(true, Ordering::Relaxed);
    for p in producers {
        tokio::task::spawn_blocking(move || p.join().unwrap()).await.unwrap();
    }
    let acked: HashSet<String> = acks.acked.lock().unwrap().iter().map(|(_, _, v)| format!("{v:012}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && seen.lock().unwrap().len() < acked.len() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_consuming.store(true, Ordering::Relaxed);
    for m in members {
        tokio::task::spawn_blocking(move || m.join().unwrap()).await.unwrap();
    }
    let (rss_end, fds_end, segments_end) = (rss_kb(pid), open_fds(pid), segments(dir.path()));
    let failed = acks.failed.lock().unwrap().clone();
    let consumer_errors = errors.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    eprintln!(
        "soak {secs} s: {} records acknowledged, {} distinct consumed; broker RSS {} -> {} MB, fds {} -> {} \
         with segments {} -> {}",
        acks.acked.lock().unwrap().len(),
        seen.len(),
        rss_start / 1024,
        rss_end / 1024,
        fds_start,
        fds_end,
        segments_start,
        segments_end
    );
    assert!(failed.is_empty(), "producer errors: {:?}", &failed[..failed.len().min(5)]);
    assert!(consumer_errors.is_empty(), "consumer errors: {:?}", &consumer_errors[..consumer_errors.len().min(5)]);
    assert_eq!(acks.acked.lock().unwrap().len(), acked.len(), "no record acknowledged twice");
    let missing: Vec<&String> = acked.difference(&seen).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but never consumed: {missing:?}");
    let new_segments = segments_end.saturating_sub(segments_start);
    assert!(
        fds_end <= fds_start + new_segments + 20,
        "descriptors leak: {fds_start} -> {fds_end} while segments went {segments_start} -> {segments_end}"
    );
    assert!(rss_end <= rss_start * 2 + 64 * 1024, "RSS grew: {rss_start} -> {rss_end} kB");
    assert!(broker.terminate().success());
}
