//! Nothing acknowledged is lost: clean restarts, SIGKILL, and damaged log tails.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset};

async fn produce_numbered(bootstrap: &str, topic: &str, from: usize, n: usize, acks: &str) {
    let p = producer(bootstrap, &[("acks", acks)]);
    let futures: Vec<_> = (from..from + n)
        .map(|i| {
            p.send_result(FutureRecord::<(), String>::to(topic).partition((i % 2) as i32).payload(&format!("r{i}")))
                .expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await.unwrap().expect("acknowledged");
    }
}

fn read_all(bootstrap: &str, topic: &str, n: usize) -> Vec<String> {
    let c = assigned_consumer(bootstrap, topic, &[0, 1], Offset::Beginning, &[]);
    let mut got: Vec<(i32, i64, String)> = consume_n(&c, n, Duration::from_secs(60))
        .iter()
        .map(|m| (m.partition(), m.offset(), String::from_utf8(value_of(m).unwrap()).unwrap()))
        .collect();
    got.sort();
    for w in got.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[0].1 + 1, w[1].1, "dense offsets");
        }
    }
    got.into_iter().map(|(_, _, v)| v).collect()
}

fn expected(n: usize) -> Vec<String> {
    let mut v: Vec<(usize, String)> = (0..n).map(|i| (i % 2, format!("r{i}"))).collect();
    v.sort_by_key(|(p, _)| *p);
    v.into_iter().map(|(_, s)| s).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_restart_keeps_everything() {
    let broker = TestBroker::start(&[("log.segment.bytes", "20000")]).await;
    let topic = topic_name("restart");
    create_topic(&broker.bootstrap, &topic, 2, &[]).await;
    produce_numbered(&broker.bootstrap, &topic, 0, 3000, "all").await;
    let broker = broker.restart(&[("log.segment.bytes", "20000")]).await;
    assert!(broker.data_dir().join(weir::broker::CLEAN_SHUTDOWN_FILE).exists() || broker.running.is_some());
    produce_numbered(&broker.bootstrap, &topic, 3000, 1000, "all").await;
    let bootstrap = broker.bootstrap.clone();
    let t = topic.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&bootstrap, &t, 4000)).await.unwrap();
    let mut want: Vec<(usize, usize)> = (0..4000).map(|i| (i % 2, i)).collect();
    want.sort();
    assert_eq!(got, want.into_iter().map(|(_, i)| format!("r{i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let topic = topic_name("kill9");
    for round in 0..3 {
        let b = BinaryBroker::start(dir.path(), &["--set", "log.segment.bytes=30000"]);
        if round == 0 {
            create_topic(&b.bootstrap, &topic, 2, &[]).await;
        }
        produce_numbered(&b.bootstrap, &topic, round * 2000, 2000, if round == 1 { "1" } else { "all" }).await;
        b.kill9();
    }
    let b = BinaryBroker::start(dir.path(), &[]);
    let bootstrap = b.bootstrap.clone();
    let t = topic.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&bootstrap, &t, 6000)).await.unwrap();
    assert_eq!(got.len(), 6000);
    assert_eq!(got, expected(6000));
    assert!(b.terminate().success(), "SIGTERM exits 0");
    assert!(dir.path().join(weir::broker::CLEAN_SHUTDOWN_FILE).exists());
}

/// Damages the tail of partition 0's last segment, then restarts without the clean marker.
async fn recover_after(damage: impl Fn(&mut Vec<u8>)) -> Vec<String> {
    let broker = TestBroker::start(&[]).await;
    let topic = topic_name("tail");
    create_topic(&broker.bootstrap, &topic, 1, &[]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    for i in 0..20 {
        p.send(FutureRecord::<(), String>::to(&topic).payload(&format!("v{i}")), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let mut broker = broker;
    broker.stop().await;
    let dir = broker.data_dir();
    let seg = dir.join(format!("{topic}-0")).join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    damage(&mut bytes);
    std::fs::write(&seg, bytes).unwrap();
    std::fs::remove_file(dir.join(weir::broker::CLEAN_SHUTDOWN_FILE)).unwrap();
    let broker = TestBroker::start_in(broker.dir, &[]).await;
    // the log accepts new data right after the surviving prefix
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let off =
        p.send(FutureRecord::<(), str>::to(&topic).payload("after"), Duration::from_secs(10)).await.unwrap().offset;
    let bootstrap = broker.bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        let c = assigned_consumer(&bootstrap, &topic, &[0], Offset::Beginning, &[]);
        consume_n(&c, off as usize + 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), off as usize + 1);
    got.iter().map(|m| String::from_utf8(value_of(m).unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_tail_is_truncated() {
    let got = recover_after(|b| {
        let keep = b.len() - 10;
        b.truncate(keep)
    })
    .await;
    let mut want: Vec<String> = (0..19).map(|i| format!("v{i}")).collect();
    want.push("after".into());
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbled_tail_is_truncated() {
    let got = recover_after(|b| {
        let at = b.len() - 3;
        b[at] ^= 0x5a; // inside the last batch: its CRC no longer matches
    })
    .await;
    let mut want: Vec<String> = (0..19).map(|i| format!("v{i}")).collect();
    want.push("after".into());
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_retention_deletes_old_segments_in_the_background() {
    let broker = TestBroker::start(&[("log.retention.check.interval.ms", "200")]).await;
    let topic = topic_name("retention");
    create_topic(&broker.bootstrap, &topic, 1, &[("retention.ms", "60000"), ("segment.bytes", "1000")]).await;
    let p = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let old = rdkafka::util::current_time_millis() - 3_600_000;
    for i in 0..50 {
        let v = format!("old-{i:04}-{}", "x".repeat(100));
        p.send(FutureRecord::<(), String>::to(&topic).payload(&v).timestamp(old), Duration::from_secs(10))
            .await
            .unwrap();
    }
    for i in 0..3 {
        p.send(FutureRecord::<(), String>::to(&topic).payload(&format!("new-{i}")), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let bootstrap = broker.bootstrap.clone();
    let t = topic.clone();
    let low = tokio::task::spawn_blocking(move || {
        let c = assigned_consumer(&bootstrap, &t, &[0], Offset::Beginning, &[]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (lo, _) = c.fetch_watermarks(&t, 0, Duration::from_secs(5)).unwrap();
            if lo >= 45 || std::time::Instant::now() > deadline {
                return lo;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!((45..=50).contains(&low), "old segments deleted, the segment with new data kept: log start {low}");
}

/// A batch damaged in the middle of a closed segment (and that segment's time index lost) is
/// reported at start-up; the partition still serves the batches around it and the other
/// partitions everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_batch_in_a_closed_segment_is_reported_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let addr = BinaryBroker::free_addr();
    let args = ["--set", "log.segment.bytes=4000"];
    let broker = BinaryBroker::start_on(&addr, dir.path(), &args);
    let topic = topic_name("bitrot");
    create_topic(&addr, &topic, 2, &[]).await;
    for i in 0..20 {
        produce_numbered(&addr, &topic, i * 20, 20, "all").await; // small batches, several per segment
    }
    assert!(broker.terminate().success());
    // damage one byte inside the second batch of partition 0's first segment
    let part0 = dir.path().join(format!("{topic}-0"));
    let first = part0.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).unwrap();
    let (_, first_size) = weir::log::batch::offset_and_size(&bytes).unwrap();
    let (second_base, second_size) = weir::log::batch::offset_and_size(&bytes[first_size..]).unwrap();
    bytes[first_size + second_size - 2] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    std::fs::remove_file(part0.join("00000000000000000000.timeindex")).unwrap();
    let broker = BinaryBroker::start_on(&addr, dir.path(), &args);
    let reported = broker
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("corrupt record batch") && l.contains(&format!("offset={second_base}")));
    assert!(reported, "the damaged batch is reported with its offset");
    let (a, t) = (addr.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        let c = assigned_consumer(&a, &t, &[1], Offset::Beginning, &[]);
        assert_eq!(consume_n(&c, 200, Duration::from_secs(20)).len(), 200, "the other partition serves everything");
        // partition 0 from just after the damaged batch: served
        let after = assigned_consumer(&a, &t, &[0], Offset::Offset(second_base + 50), &[]);
        assert!(!consume_n(&after, 10, Duration::from_secs(20)).is_empty(), "batches after the damage are served");
    })
    .await
    .unwrap();
    assert!(broker.terminate().success());
}
