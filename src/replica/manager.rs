//! Which fetcher follows which partition: `num.replica.fetchers` fetchers per source broker,
//! a partition going to fetcher `abs(31 × hash(topic) + partition) mod num.replica.fetchers`
//! (Kafka's `AbstractFetcherManager.getFetcherId`, with Java's string hash). A fetcher starts
//! with its first partition and stops with its last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::fetcher::{self, FetchState, FetcherShared, Tp};
use crate::broker::Broker;
use crate::partition::replica::StopFetching;
use crate::partition::Partition;

/// One fetcher: a source broker and the fetcher's number for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetcherKey {
    pub leader: i32,
    pub id: i32,
}

/// One fetcher's figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct FetcherStats {
    pub key: FetcherKey,
    pub partitions: usize,
    pub requests: u64,
    pub partitions_named: u64,
    pub most_named: u64,
}

struct Running {
    shared: Arc<FetcherShared>,
    task: tokio::task::AbortHandle,
}

#[derive(Default)]
struct Fetchers {
    running: Mutex<HashMap<FetcherKey, Running>>,
    /// Tells registrations apart, so a stale one (an earlier epoch's) removes nothing.
    next_registration: AtomicU64,
}

/// The broker's replica fetchers.
#[derive(Default)]
pub struct FetcherManager {
    fetchers: Arc<Fetchers>,
}

impl FetcherManager {
    /// Follows `partition` of `topic` from `leader` in `epoch`: hands it to its fetcher
    /// (started if need be), truncating by leader epoch before it fetches. Dropping the
    /// returned [`StopFetching`] takes it out again.
    pub fn add(
        &self,
        broker: &Arc<Broker>,
        partition: Arc<Partition>,
        topic: &str,
        leader: i32,
        epoch: i32,
    ) -> StopFetching {
        let per_broker = broker.config_i64("num.replica.fetchers").clamp(1, i64::from(i32::MAX)) as i32;
        let key = FetcherKey { leader, id: fetcher_id(topic, partition.index, per_broker) };
        let tp: Tp = (Arc::from(topic), partition.index);
        let registration = self.fetchers.next_registration.fetch_add(1, Ordering::Relaxed);
        let state = FetchState::new(partition, epoch, registration);
        {
            let mut running = self.fetchers.running.lock();
            let fetcher = running.entry(key).or_insert_with(|| {
                let shared = Arc::new(FetcherShared::default());
                let task = tokio::spawn(fetcher::run(shared.clone(), broker.clone(), key)).abort_handle();
                tracing::debug!(leader, fetcher = key.id, "replica fetcher started");
                Running { shared, task }
            });
            fetcher.shared.partitions.lock().insert(tp.clone(), state);
            fetcher.shared.changed.notify_one();
        }
        let fetchers = self.fetchers.clone();
        StopFetching::new(move || fetchers.remove(key, &tp, registration))
    }

    /// The running fetchers: how many partitions each follows, its Fetch requests so far and
    /// the partitions they named.
    pub fn snapshot(&self) -> Vec<FetcherStats> {
        let mut all: Vec<_> = self
            .fetchers
            .running
            .lock()
            .iter()
            .map(|(k, r)| FetcherStats {
                key: *k,
                partitions: r.shared.partitions.lock().len(),
                requests: r.shared.requests.load(Ordering::Relaxed),
                partitions_named: r.shared.partitions_named.load(Ordering::Relaxed),
                most_named: r.shared.most_named.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by_key(|s| s.key);
        all
    }

    /// Stops every fetcher (the broker shuts down).
    pub fn shutdown(&self) {
        for (_, r) in self.fetchers.running.lock().drain() {
            r.task.abort();
        }
    }
}

impl Fetchers {
    fn remove(&self, key: FetcherKey, tp: &Tp, registration: u64) {
        let mut running = self.running.lock();
        let Some(fetcher) = running.get(&key) else { return };
        let now_empty = {
            let mut partitions = fetcher.shared.partitions.lock();
            if partitions.get(tp).is_some_and(|s| s.registration == registration) {
                partitions.remove(tp);
            }
            partitions.is_empty()
        };
        if now_empty {
            if let Some(r) = running.remove(&key) {
                r.task.abort();
                tracing::debug!(leader = key.leader, fetcher = key.id, "replica fetcher stopped");
            }
        }
    }
}

/// Kafka's fetcher id for a partition: `abs(31 * topic.hashCode() + partition) % n`.
fn fetcher_id(topic: &str, partition: i32, n: i32) -> i32 {
    let hash = java_string_hash(topic).wrapping_mul(31).wrapping_add(partition);
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % n.max(1)
}

/// Java's `String.hashCode` (over UTF-16 code units).
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetcher_ids_follow_kafka() {
        // "orders".hashCode() in Java is -1008770331
        assert_eq!(java_string_hash("orders"), -1_008_770_331);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(fetcher_id("orders", 0, 1), 0);
        let ids: Vec<i32> = (0..8).map(|p| fetcher_id("orders", p, 4)).collect();
        assert!(ids.iter().all(|id| (0..4).contains(id)));
        // consecutive partitions of a topic spread over the fetchers
        assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 4, "{ids:?}");
    }
}
