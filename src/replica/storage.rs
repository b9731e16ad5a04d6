//! Storage failures, the replica manager's part of them (Kafka's log directory failure
//! handling, per partition): a partition whose write or fsync failed reports itself
//! ([`crate::partition::Partition::storage_failed`]), and this broker asks the controller to
//! take its replica out of the ISR and, where it led, to let another in-sync replica lead.
//! Producers get KAFKA_STORAGE_ERROR (retriable) meanwhile and move to the new leader.
//!
//! The replica is not closed: it follows the new leader, and its fetcher retries the failed
//! log after `replica.fetch.backoff.ms`, so a disk that works again (space freed) brings it
//! back into the ISR as any lagging follower comes back. A partition with no other in-sync
//! replica stays where it is (it answers KAFKA_STORAGE_ERROR and retries its fsyncs), as a
//! single broker does.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::cluster::controller::ControllerOp;
use crate::partition::{Partition, StorageFailureHook};

/// Failures reported together are sent in one request after this long.
const GATHER: Duration = Duration::from_millis(50);
/// A partition failing again and again is reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);

type Failed = (String, i32);

/// Where partitions report their storage failures.
pub struct StorageFailures {
    tx: mpsc::UnboundedSender<Failed>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Failed>>>,
    /// Failed writes and fsyncs reported by partitions (`weir_storage_failures_total`).
    pub failures: Arc<AtomicU64>,
    /// Replicas the controller took out of their ISR for it (`weir_storage_offline_replicas_total`).
    pub offline_replicas: AtomicU64,
}

impl Default for StorageFailures {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        StorageFailures { tx, rx: Mutex::new(Some(rx)), failures: Arc::default(), offline_replicas: AtomicU64::new(0) }
    }
}

impl StorageFailures {
    /// The hook a partition of this broker calls when its storage fails.
    pub fn hook(&self) -> StorageFailureHook {
        let (tx, failures) = (self.tx.clone(), self.failures.clone());
        Box::new(move |p: &Partition| {
            failures.fetch_add(1, Ordering::Relaxed);
            drop(tx.send((p.topic.clone(), p.index)))
        })
    }
}

/// Reports failed partitions to the controller until the broker stops.
pub async fn run(broker: Arc<Broker>) {
    let Some(mut rx) = broker.storage_failures.rx.lock().take() else { return };
    let mut reported: HashMap<Failed, Instant> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut failed = BTreeSet::from([first]);
        let until = tokio::time::Instant::now() + GATHER;
        while let Ok(Some(more)) = tokio::time::timeout_at(until, rx.recv()).await {
            failed.insert(more);
        }
        let now = Instant::now();
        reported.retain(|_, at| now.duration_since(*at) < REPORT_EVERY);
        let partitions: Vec<Failed> = failed.into_iter().filter(|f| !reported.contains_key(f)).collect();
        if partitions.is_empty() || !replicated_anywhere(&broker, &partitions) {
            continue;
        }
        reported.extend(partitions.iter().map(|f| (f.clone(), now)));
        let op = ControllerOp::OfflineReplicas { id: broker.node_id, partitions: partitions.clone() };
        match broker.control(op).await {
            Ok(_) => {
                broker.storage_failures.offline_replicas.fetch_add(partitions.len() as u64, Ordering::Relaxed);
                tracing::warn!(?partitions, "storage failed: replicas taken out of the ISR")
            }
            Err(e) => tracing::error!(?partitions, error = %e, "storage failed, and the controller was not told"),
        }
    }
}

/// Whether any of the partitions has replicas on other brokers (else nobody can take over).
fn replicated_anywhere(broker: &Broker, partitions: &[Failed]) -> bool {
    partitions
        .iter()
        .any(|(topic, p)| broker.topic(topic).is_some_and(|t| t.state(*p).is_some_and(|s| s.replicas.len() > 1)))
}
