//! Faults in the spirit of Jepsen's Kafka analyses: for a while (`WEIR_NEMESIS_SECS`, 90 s by
//! default; CI runs the default, longer runs are for the closing notes of cluster work) a
//! seeded random nemesis cuts brokers off from the others (every quorum and replication link
//! of one broker, through the fault-injecting proxies), SIGKILLs and SIGTERMs brokers and
//! restarts them, while two idempotent acks=all producers write and a group consumes and
//! commits. Afterwards: every acknowledged record is in the log once, at its acknowledged
//! offset; the replicas are byte-identical; no two brokers ever led the partition in the same
//! leader epoch; committed offsets never went back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// xorshift64*: a reproducible nemesis from the printed seed (`WEIR_NEMESIS_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Every "leading partition" line a node logged: (epoch, broker) for partition 0 of `topic`.
fn leaderships(cluster: &Cluster, i: usize, topic: &str, seen: &mut BTreeMap<i32, BTreeSet<i32>>) {
    let Some(process) = &cluster.nodes[i].process else { return };
    let wanted = format!("topic={topic} partition=0 ");
    for line in process.lines_with("leading partition") {
        if !line.contains(&wanted) {
            continue;
        }
        let epoch = line.split("epoch=").nth(1).and_then(|e| e.split_whitespace().next()?.parse().ok());
        if let Some(epoch) = epoch {
            seen.entry(epoch).or_default().insert(cluster.nodes[i].id);
        }
    }
}

#[derive(Debug, Default)]
struct Injected {
    isolations: u32,
    kills: u32,
    terms: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn random_partitions_kills_and_restarts_lose_nothing_acknowledged() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let secs: u64 = std::env::var("WEIR_NEMESIS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let seed: u64 = std::env::var("WEIR_NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("nemesis: {secs} s, seed {seed} (WEIR_NEMESIS_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let mut cluster = Cluster::start_with_faults(3);
    let bootstrap = cluster.bootstrap();
    let topic = topic_name("nemesis");
    create_in_sync(&bootstrap, &topic).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let producers = [
        keep_producing(bootstrap.clone(), topic.clone(), "a", &[], stop.clone(), acked.clone()),
        keep_producing(bootstrap.clone(), topic.clone(), "b", &[], stop.clone(), acked.clone()),
    ];
    let went_back = Arc::new(AtomicBool::new(false));
    let consuming = committing_group(&bootstrap, &topic, "nemesis-group", stop.clone(), went_back.clone());

    let mut injected = Injected::default();
    let mut epochs: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        let i = rng.below(3) as usize;
        let id = cluster.nodes[i].id;
        match rng.below(3) {
            0 => {
                let hold = rng.millis(1000, 5000);
                eprintln!("nemesis: isolating broker {id} for {hold:?}");
                cluster.faults.as_ref().expect("proxied").isolate(id);
                tokio::time::sleep(hold).await;
                cluster.faults.as_ref().expect("proxied").heal();
                injected.isolations += 1;
            }
            1 => {
                let down = rng.millis(200, 3000);
                eprintln!("nemesis: SIGKILL broker {id}, back after {down:?}");
                leaderships(&cluster, i, &topic, &mut epochs);
                cluster.kill(i);
                tokio::time::sleep(down).await;
                cluster.restart(i);
                injected.kills += 1;
            }
            _ => {
                eprintln!("nemesis: SIGTERM broker {id}, restarted at once");
                leaderships(&cluster, i, &topic, &mut epochs);
                let process = cluster.nodes[i].process.take().expect("running");
                assert!(process.terminate().success(), "broker {id} stops cleanly");
                cluster.restart(i);
                injected.terms += 1;
            }
        }
        // the next fault comes once the partition has a leader again (bounded)
        let b = cluster.bootstrap();
        eventually(Duration::from_secs(60), "a leader after the fault", || {
            leader_and_isr(&b, &topic, 0).filter(|(l, _)| *l > 0)
        });
        tokio::time::sleep(rng.millis(500, 2000)).await;
    }
    let b = cluster.bootstrap();
    eventually(Duration::from_secs(60), "all three back in the ISR", || {
        leader_and_isr(&b, &topic, 0).filter(|(_, isr)| isr == &[1, 2, 3])
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for p in producers {
        failed += p.await.unwrap();
    }
    let progress = consuming.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "nemesis: {injected:?}; {} records acknowledged, {failed} failed (retried by the application, not \
         acknowledged); group consumed {} and committed up to {}",
        acked.len(),
        progress.consumed,
        progress.last_committed
    );
    assert!(acked.len() > 500, "the producers kept going: {}", acked.len());
    assert_log_holds(&cluster.bootstrap(), &topic, &acked);
    assert!(progress.last_committed > 0, "the group committed: {progress:?}");
    for i in 0..cluster.nodes.len() {
        leaderships(&cluster, i, &topic, &mut epochs);
    }
    let shared: Vec<_> = epochs.iter().filter(|(_, brokers)| brokers.len() > 1).collect();
    assert!(shared.is_empty(), "two leaders in one epoch: {shared:?}");
    eprintln!("nemesis: {} leader epochs, each led by one broker", epochs.len());
    cluster.stop_all();
    assert_replicas_identical(&cluster, &topic, 0);
    assert!(!went_back.load(Ordering::SeqCst), "a committed offset went back");
}
