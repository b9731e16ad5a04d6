//! Power-cut simulation: while an acks=all producer writes, the data directory is copied at
//! random moments (each file as it is at that instant, like a disk after a crash), then each
//! segment in the copy loses a random part of its unacknowledged tail, that tail gets torn
//! bytes, and some index files vanish or are cut short. Weir started on each copy must
//! recover to a valid prefix that holds every record acknowledged before the copy began.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset};
use weir::log::batch::{offset_and_size, HEADER_SIZE, LAST_OFFSET_DELTA};

const PARTITIONS: i32 = 3;
/// Copies per run; `WEIR_POWER_CUTS` runs a longer variant.
fn power_cuts() -> usize {
    std::env::var("WEIR_POWER_CUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(4).max(1)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            // files may change or vanish while copied, as they would under a crash
            let _ = std::fs::copy(e.path(), &target);
        }
    }
}

/// The byte position after the batch holding `offset` in a segment file, if it is there.
fn end_of_batch_holding(bytes: &[u8], offset: i64) -> Option<usize> {
    let mut at = 0;
    while let Some((base, size)) = bytes.get(at..).and_then(offset_and_size) {
        if at + size > bytes.len() || size < HEADER_SIZE {
            return None;
        }
        let d = &bytes[at + LAST_OFFSET_DELTA..at + LAST_OFFSET_DELTA + 4];
        let last = base + i64::from(i32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        if base <= offset && offset <= last {
            return Some(at + size);
        }
        at += size;
    }
    None
}

/// Cuts and tears the unacknowledged tail of the active (last) segment of `partition_dir`,
/// keeping the bytes up to the end of the batch holding `durable` (the last acknowledged
/// offset), and damages some index files. Closed segments are fsynced when they roll, so a
/// power cut cannot shorten them.
fn lose_unacknowledged_tails(partition_dir: &Path, durable: Option<i64>, rng: &mut Lcg) {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for (i, log) in logs.iter().enumerate() {
        let index = log.with_extension("index");
        match rng.next(4) {
            0 => drop(std::fs::remove_file(&index)),
            1 => {
                if let Ok(b) = std::fs::read(&index) {
                    std::fs::write(&index, &b[..b.len() / 2]).unwrap();
                }
            }
            _ => {}
        }
        if i + 1 < logs.len() {
            continue;
        }
        let bytes = std::fs::read(log).unwrap();
        let base: i64 = log.file_stem().unwrap().to_string_lossy().parse().unwrap();
        let keep = match durable {
            Some(d) if d >= base => match end_of_batch_holding(&bytes, d) {
                Some(end) => end,
                None => continue, // every byte of this segment is below the acknowledged offset
            },
            _ => 0,
        };
        let cut = keep + rng.next((bytes.len() - keep + 1) as u64) as usize;
        let mut kept = bytes[..cut].to_vec();
        if cut > keep && rng.next(2) == 0 {
            let at = keep + rng.next((cut - keep) as u64) as usize;
            kept[at] ^= 0x5a; // a torn sector in the unacknowledged part
        }
        std::fs::write(log, kept).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_after_a_simulated_power_cut_keeps_every_acknowledged_record() {
    let broker = TestBroker::start(&[("log.segment.bytes", "30000")]).await;
    let topic = topic_name("powercut");
    create_topic(&broker.bootstrap, &topic, PARTITIONS, &[]).await;
    let mut rng = Lcg::seeded("power-cut test");
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Acks::default();
    let producer = {
        let (stop, acks, b, t) = (stop.clone(), acks.clone(), broker.bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            let p: ThreadedProducer<Acks> =
                client_config(&b).set("acks", "all").set("linger.ms", "1").create_with_context(acks).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{n:09}");
                let partition = (n % PARTITIONS as u64) as i32;
                if p.send(BaseRecord::<(), String>::to(&t).payload(&payload).partition(partition)).is_ok() {
                    n += 1;
                }
                if n.is_multiple_of(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            p.flush(Duration::from_secs(30)).unwrap();
        })
    };
    let data = broker.data_dir();
    let mut copies = Vec::new();
    for i in 0..power_cuts() {
        tokio::time::sleep(Duration::from_millis(300 + rng.next(500))).await;
        // what was acknowledged before the copy began is durable and must survive it
        let mut durable: BTreeMap<i32, (i64, Vec<(i64, u64)>)> = BTreeMap::new();
        for (p, o, n) in acks.acked.lock().unwrap().iter() {
            let e = durable.entry(*p).or_insert((-1, Vec::new()));
            e.0 = e.0.max(*o);
            e.1.push((*o, *n));
        }
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&data, copy.path());
        let _ = std::fs::remove_file(copy.path().join(weir::broker::CLEAN_SHUTDOWN_FILE));
        for p in 0..PARTITIONS {
            let last = durable.get(&p).map(|d| d.0);
            lose_unacknowledged_tails(&copy.path().join(format!("{topic}-{p}")), last, &mut rng);
        }
        eprintln!("copy {i}: {} acknowledged records", durable.values().map(|d| d.1.len()).sum::<usize>());
        copies.push((copy, durable));
    }
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();

    for (i, (copy, durable)) in copies.into_iter().enumerate() {
        let recovered = TestBroker::start_in(copy, &[("log.segment.bytes", "30000")]).await;
        let (b, t) = (recovered.bootstrap.clone(), topic.clone());
        let stored: BTreeMap<i32, Vec<(i64, u64)>> = tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for p in 0..PARTITIONS {
                let c = assigned_consumer(&b, &t, &[p], Offset::Beginning, &[("enable.partition.eof", "true")]);
                let mut got = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while std::time::Instant::now() < deadline {
                    match c.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            got.push((m.offset(), String::from_utf8_lossy(m.payload().unwrap()).parse().unwrap()))
                        }
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                        Some(Err(e)) => panic!("copy {i} partition {p}: {e}"),
                        None => {}
                    }
                }
                out.insert(p, got);
            }
            out
        })
        .await
        .unwrap();
        for (p, records) in &stored {
            for (k, (o, n)) in records.iter().enumerate() {
                assert_eq!(*o, k as i64, "copy {i} partition {p}: a dense prefix");
                assert_eq!(*n % PARTITIONS as u64, *p as u64);
                if k > 0 {
                    assert!(records[k - 1].1 < *n, "copy {i} partition {p}: in order at offset {o}");
                }
            }
            let index: BTreeMap<i64, u64> = records.iter().copied().collect();
            for (o, n) in durable.get(p).map(|d| d.1.clone()).unwrap_or_default() {
                assert_eq!(index.get(&o), Some(&n), "copy {i} partition {p}: acknowledged offset {o} survived");
            }
        }
    }
}
