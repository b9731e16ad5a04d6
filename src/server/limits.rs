//! Connection and memory limits: `max.connections`, `max.connections.per.ip` (and its
//! overrides), and `queued.max.request.bytes`, Kafka's names and defaults. A connection over
//! a limit is refused cleanly: accepted and closed at once, with a (rate-limited) log line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

pub struct Limits {
    caps: RwLock<Caps>,
    /// The broker config generation `caps` were read from: the connection limits are
    /// cluster-wide dynamic configs, as in Kafka.
    generation: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Bytes of request frames being read or served, when `queued.max.request.bytes` is set.
    request_bytes: Option<(Arc<Semaphore>, usize)>,
    /// Last time a refusal was logged, in seconds, to keep a flood from flooding the log.
    last_refusal_log: AtomicI64,
}

/// A connection's place under the limits, given back when dropped.
pub struct Admitted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Parses `max.connections.per.ip.overrides`: `host:count` pairs separated by commas.
fn parse_overrides(s: &str) -> HashMap<IpAddr, usize> {
    s.split(',')
        .filter_map(|pair| {
            let (host, n) = pair.trim().rsplit_once(':')?;
            Some((host.trim().parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

/// The connection caps: `max.connections`, `max.connections.per.ip` and its overrides.
struct Caps {
    max_total: usize,
    max_per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
}

impl Caps {
    fn from_config(cfg: &BrokerConfig) -> Caps {
        let positive = |key: &str| usize::try_from(cfg.get_i64(key)).unwrap_or(usize::MAX).max(1);
        Caps {
            max_total: positive("max.connections"),
            max_per_ip: positive("max.connections.per.ip"),
            overrides: parse_overrides(&cfg.get("max.connections.per.ip.overrides")),
        }
    }
}

impl Limits {
    pub fn from_config(cfg: &BrokerConfig) -> Limits {
        let queued = cfg.get_i64("queued.max.request.bytes");
        let request_bytes = usize::try_from(queued)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))), n.min(Semaphore::MAX_PERMITS)));
        Limits {
            caps: RwLock::new(Caps::from_config(cfg)),
            generation: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            request_bytes,
            last_refusal_log: AtomicI64::new(0),
        }
    }

    /// Re-reads the caps when the broker config has changed since they were read.
    pub fn follow(&self, generation: u64, config: impl FnOnce() -> BrokerConfig) {
        if self.generation.swap(generation, Ordering::Relaxed) != generation {
            *self.caps.write() = Caps::from_config(&config());
        }
    }

    /// Admits a new connection from `ip`, or says why it must be refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let caps = self.caps.read();
        let mut per_ip = self.per_ip.lock();
        let total: usize = per_ip.values().sum();
        if total >= caps.max_total {
            return Err("max.connections");
        }
        let limit = caps.overrides.get(&ip).copied().unwrap_or(caps.max_per_ip);
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limit {
            return Err("max.connections.per.ip");
        }
        *n += 1;
        Ok(Admitted { limits: self.clone(), ip })
    }

    /// True at most once a second: whether to log another refusal.
    pub fn should_log_refusal(&self, now_s: i64) -> bool {
        self.last_refusal_log.swap(now_s, Ordering::Relaxed) != now_s
    }

    /// Reserves room for a request frame of `size` bytes under `queued.max.request.bytes`
    /// (a frame larger than the whole budget waits for all of it).
    pub async fn reserve_request(&self, size: usize) -> Option<OwnedSemaphorePermit> {
        let (sem, total) = self.request_bytes.as_ref()?;
        let n = u32::try_from(size.clamp(1, *total)).unwrap_or(u32::MAX);
        sem.clone().acquire_many_owned(n).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Arc<Limits> {
        let layer: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Arc::new(Limits::from_config(&BrokerConfig::from_layers([layer]).unwrap()))
    }

    #[test]
    fn per_ip_and_total_limits_with_overrides() {
        let l = limits(&[
            ("max.connections", "5"),
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "10.0.0.9:3"),
        ]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.9".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some("max.connections.per.ip"));
        drop(a1);
        let _a3 = l.admit(a).unwrap();
        let _b: Vec<_> = (0..3).map(|_| l.admit(b).unwrap()).collect();
        assert_eq!(l.admit("10.0.0.2".parse().unwrap()).err(), Some("max.connections"));
    }

    #[tokio::test]
    async fn request_bytes_are_bounded() {
        let l = limits(&[("queued.max.request.bytes", "1000")]);
        let first = l.reserve_request(800).await.unwrap();
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), l.reserve_request(300)).await;
        assert!(blocked.is_err(), "over the budget: waits");
        drop(first);
        assert!(l.reserve_request(5000).await.is_some(), "a frame larger than the budget takes all of it");
        assert!(limits(&[]).reserve_request(1 << 30).await.is_none(), "unlimited by default");
    }
}
