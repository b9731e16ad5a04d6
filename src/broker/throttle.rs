//! Replication throttles (KIP-73): a reassignment copying a partition to a new broker must
//! not starve clients of disk and network. `leader.replication.throttled.rate` limits what a
//! leader sends and `follower.replication.throttled.rate` what a follower fetches, per broker
//! in bytes per second, counting only the replicas a topic lists in
//! `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`
//! (`partition:broker,…` or `*`), and only while that replica is out of the ISR: a caught-up
//! follower is never held back, as in Kafka.
//!
//! Each quota is a token bucket that may go into debt: a fetch reads at most what the
//! bucket holds (at least [`MIN_CHUNK`]), and none while it is in debt, so the copy rate
//! over any long run is the configured rate.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The smallest read a throttled replica gets once the quota allows one.
pub const MIN_CHUNK: usize = 16 << 10;
/// How much unused allowance a quota keeps: a tenth of a second at its rate.
const BURST: f64 = 0.1;

/// One broker-wide replication quota.
#[derive(Debug)]
pub struct ReplicationQuota {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; `None`: unlimited.
    rate: Option<f64>,
    /// Bytes that may still be sent; negative while in debt.
    tokens: f64,
    at: Instant,
}

impl Default for ReplicationQuota {
    fn default() -> Self {
        ReplicationQuota { bucket: Mutex::new(Bucket { rate: None, tokens: 0.0, at: Instant::now() }) }
    }
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        if let Some(rate) = self.rate {
            let earned = rate * now.duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + earned).min(rate * BURST);
        }
        self.at = now;
    }
}

impl ReplicationQuota {
    /// Sets the rate from the broker config (Kafka's default, `Long.MAX_VALUE`, is no limit).
    pub fn set_rate(&self, bytes_per_second: i64) {
        let mut b = self.bucket.lock();
        b.refill();
        let rate = (bytes_per_second < i64::MAX).then_some(bytes_per_second.max(0) as f64);
        if rate != b.rate {
            b.rate = rate;
            b.tokens = b.tokens.min(rate.map_or(0.0, |r| r * BURST));
        }
    }

    pub fn is_limited(&self) -> bool {
        self.bucket.lock().rate.is_some()
    }

    /// How many bytes a throttled replica may read now (`None`: none, the quota is in debt),
    /// capped at `limit`.
    pub fn allowance(&self, limit: usize) -> Option<usize> {
        let mut b = self.bucket.lock();
        b.refill();
        if b.rate.is_none() {
            return Some(limit);
        }
        (b.tokens >= 0.0).then(|| (b.tokens as usize).max(MIN_CHUNK).min(limit))
    }

    /// How long until the quota allows a read again (zero when it does now).
    pub fn delay(&self) -> Duration {
        let mut b = self.bucket.lock();
        b.refill();
        match b.rate {
            Some(rate) if b.tokens < 0.0 && rate > 0.0 => Duration::from_secs_f64(-b.tokens / rate),
            Some(_) if b.tokens < 0.0 => Duration::from_secs(1),
            _ => Duration::ZERO,
        }
    }

    /// Counts bytes a throttled replica was sent.
    pub fn record(&self, bytes: usize) {
        let mut b = self.bucket.lock();
        b.refill();
        if b.rate.is_some() {
            b.tokens -= bytes as f64;
        }
    }
}

/// Whether a topic's `key` (`leader.replication.throttled.replicas` or
/// `follower.replication.throttled.replicas`) lists `partition` on `broker`.
pub fn is_throttled(
    configs: &std::collections::BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: i32,
) -> bool {
    let Some(list) = configs.get(key) else { return false };
    list.split(',').map(str::trim).any(|item| {
        item == "*"
            || item
                .split_once(':')
                .is_some_and(|(p, b)| p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_in_debt_allows_nothing_until_repaid() {
        let q = ReplicationQuota::default();
        assert_eq!(q.allowance(1 << 20), Some(1 << 20), "unlimited by default");
        q.set_rate(1_000_000);
        assert_eq!(q.allowance(1 << 20), Some(MIN_CHUNK), "a fresh bucket holds nothing but a chunk is allowed");
        q.record(500_000);
        assert_eq!(q.allowance(1 << 20), None);
        let wait = q.delay();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        q.set_rate(i64::MAX);
        assert_eq!(q.allowance(10), Some(10));
    }

    #[test]
    fn throttled_replica_lists_name_partitions_on_brokers() {
        let configs = |v: &str| std::collections::BTreeMap::from([("k".to_string(), v.to_string())]);
        assert!(is_throttled(&configs("0:1, 1:2"), "k", 1, 2));
        assert!(!is_throttled(&configs("0:1,1:2"), "k", 1, 1));
        assert!(is_throttled(&configs("*"), "k", 7, 9));
        assert!(!is_throttled(&configs("*"), "other", 7, 9));
    }
}
