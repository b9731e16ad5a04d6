//! Client quotas, as Kafka defines them: byte-rate and request-percentage limits per user
//! and/or client id, resolved through Kafka's entity hierarchy, measured over a sliding
//! window (`quota.window.num` samples of `quota.window.size.seconds`), and enforced by
//! telling the client to wait (`throttle_time_ms`) and not reading its connection meanwhile
//! (KIP-219).

use std::collections::BTreeMap;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;

/// A quota entity: entity type (`user`, `client-id`) → name, `None` for the default entity.
pub type Entity = BTreeMap<String, Option<String>>;

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Accepted and stored (topic-mutation rates), not enforced: there is one broker and no
/// controller queue to protect.
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// The quota keys a user / client-id entity may carry, and whether the value is whole.
const KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// Checks an entity a client wants to configure.
pub fn validate_entity(entity: &[(String, Option<String>)]) -> Result<Entity, String> {
    if entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut out = Entity::new();
    for (kind, name) in entity {
        if kind != USER && kind != CLIENT_ID {
            return Err(format!("Unsupported client quota entity type '{kind}' (Weir knows user and client-id)"));
        }
        if out.insert(kind.clone(), name.clone()).is_some() {
            return Err(format!("Duplicate {kind} entity type in the client quota entity"));
        }
        if name.as_deref() == Some("") {
            return Err(format!("Empty {kind} name; use null for the default entity"));
        }
    }
    Ok(out)
}

/// Checks one quota value.
pub fn validate_value(key: &str, value: f64) -> Result<(), String> {
    let Some((_, whole)) = KEYS.iter().find(|(k, _)| *k == key) else {
        return Err(format!("Invalid configuration key {key}"));
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("Quota {key} must be positive"));
    }
    if *whole && value.fract() != 0.0 {
        return Err(format!("Quota {key} must be a whole number"));
    }
    Ok(())
}

/// Every configured quota, by entity.
#[derive(Debug, Clone, Default)]
pub struct QuotaConfigs {
    pub by_entity: BTreeMap<Entity, BTreeMap<String, f64>>,
}

/// One side of an entity at a precedence level: absent, the default (`Some(None)`), or named.
type Part<'a> = Option<Option<&'a str>>;

/// Who a sensor measures: the user and client id it is shared by (`None`: all of them).
type SensorKey = (&'static str, Option<String>, Option<String>);

impl QuotaConfigs {
    pub fn set(&mut self, entity: Entity, key: &str, value: Option<f64>) {
        let values = self.by_entity.entry(entity.clone()).or_default();
        match value {
            Some(v) => {
                values.insert(key.to_string(), v);
            }
            None => {
                values.remove(key);
            }
        }
        if values.is_empty() {
            self.by_entity.remove(&entity);
        }
    }

    /// The quota that applies to `user` with `client_id`, following Kafka's precedence from
    /// the most specific entity to the least, and the sensor the quota is shared on.
    fn resolve(&self, key: &'static str, user: &str, client_id: &str) -> Option<(f64, SensorKey)> {
        let (u, c) = (Some(user.to_string()), Some(client_id.to_string()));
        let levels: [(Part, Part, SensorKey); 8] = [
            (Some(Some(user)), Some(Some(client_id)), (key, u.clone(), c.clone())),
            (Some(Some(user)), Some(None), (key, u.clone(), c.clone())),
            (Some(Some(user)), None, (key, u.clone(), None)),
            (Some(None), Some(Some(client_id)), (key, u.clone(), c.clone())),
            (Some(None), Some(None), (key, u.clone(), c.clone())),
            (Some(None), None, (key, u.clone(), None)),
            (None, Some(Some(client_id)), (key, None, c.clone())),
            (None, Some(None), (key, None, c.clone())),
        ];
        levels.into_iter().find_map(|(user_part, client_part, sensor)| {
            let mut entity = Entity::new();
            if let Some(name) = user_part {
                entity.insert(USER.into(), name.map(str::to_string));
            }
            if let Some(name) = client_part {
                entity.insert(CLIENT_ID.into(), name.map(str::to_string));
            }
            self.by_entity.get(&entity)?.get(key).map(|v| (*v, sensor))
        })
    }
}

/// A rate over the last `num` windows of `window` each (Kafka's `Rate` with `SampledStat`).
#[derive(Debug)]
struct Rate {
    /// (window start, total recorded in it)
    samples: Vec<(tokio::time::Instant, f64)>,
}

impl Rate {
    fn record(&mut self, now: tokio::time::Instant, value: f64, window: Duration, num: usize) {
        match self.samples.last_mut() {
            Some((start, total)) if now.duration_since(*start) < window => *total += value,
            _ => self.samples.push((now, value)),
        }
        let horizon = window * num as u32;
        self.samples.retain(|(start, _)| now.duration_since(*start) < horizon);
    }

    /// Units per second, and the span it was measured over: the time since the oldest
    /// sample began, padded to at least `num - 1` whole windows (Kafka's `Rate.windowSize`),
    /// so a fresh client does not measure a huge rate from its first request.
    fn measure(&self, now: tokio::time::Instant, window: Duration, num: usize) -> (f64, Duration) {
        let Some((oldest, _)) = self.samples.first() else { return (0.0, window) };
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        let mut elapsed = now.duration_since(*oldest);
        let full = (elapsed.as_nanos() / window.as_nanos().max(1)) as usize;
        if full + 1 < num {
            elapsed += window * (num - 1 - full) as u32;
        }
        let elapsed = elapsed.max(Duration::from_millis(1));
        (total / elapsed.as_secs_f64(), elapsed)
    }
}

/// The broker's quota sensors.
#[derive(Debug, Default)]
pub struct QuotaManager {
    sensors: DashMap<SensorKey, Mutex<Rate>>,
}

/// `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub size: Duration,
    pub num: usize,
}

impl QuotaManager {
    /// Records `amount` (bytes, or for request_percentage: handling time in percent-seconds)
    /// against the client's quota for `key`; returns how long it must now be throttled.
    pub fn record(
        &self,
        configs: &QuotaConfigs,
        key: &'static str,
        user: &str,
        client_id: &str,
        amount: f64,
        window: Window,
    ) -> Duration {
        let Some((quota, sensor)) = configs.resolve(key, user, client_id) else {
            return Duration::ZERO;
        };
        let now = tokio::time::Instant::now();
        let entry = self.sensors.entry(sensor).or_insert_with(|| Mutex::new(Rate { samples: Vec::new() }));
        let mut rate = entry.lock();
        rate.record(now, amount, window.size, window.num);
        let (observed, elapsed) = rate.measure(now, window.size, window.num);
        if observed <= quota {
            return Duration::ZERO;
        }
        // Kafka's throttle time: the excess as a share of the quota, times the span measured,
        // at most the whole window.
        // Computed in float seconds and capped before it becomes a Duration: a tiny quota makes
        // the factor huge (even infinite), which `Duration` arithmetic would panic on.
        let full_window = window.size * window.num as u32;
        let secs = (elapsed.as_secs_f64() * ((observed - quota) / quota)).min(full_window.as_secs_f64());
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(full_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(pairs: &[(&str, Option<&str>)]) -> Entity {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
    }

    #[test]
    fn the_most_specific_entity_wins() {
        let mut q = QuotaConfigs::default();
        q.set(entity(&[(CLIENT_ID, None)]), PRODUCER_BYTE_RATE, Some(1.0));
        q.set(entity(&[(USER, Some("alice"))]), PRODUCER_BYTE_RATE, Some(2.0));
        q.set(entity(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))]), PRODUCER_BYTE_RATE, Some(3.0));
        q.set(entity(&[(USER, None)]), PRODUCER_BYTE_RATE, Some(4.0));
        let get = |q: &QuotaConfigs, u: &str, c: &str| q.resolve(PRODUCER_BYTE_RATE, u, c).map(|(v, s)| (v, s.1, s.2));
        assert_eq!(get(&q, "alice", "app"), Some((3.0, Some("alice".into()), Some("app".into()))));
        assert_eq!(get(&q, "alice", "other"), Some((2.0, Some("alice".into()), None)), "shared by alice's clients");
        assert_eq!(get(&q, "bob", "app"), Some((4.0, Some("bob".into()), None)), "default user");
        q.set(entity(&[(USER, None)]), PRODUCER_BYTE_RATE, None);
        assert_eq!(get(&q, "bob", "app"), Some((1.0, None, Some("app".into()))), "default client id");
        assert_eq!(q.resolve(CONSUMER_BYTE_RATE, "bob", "app"), None);
    }

    #[test]
    fn values_and_entities_are_checked() {
        assert!(validate_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(validate_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(validate_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(validate_value(REQUEST_PERCENTAGE, -1.0).is_err());
        assert!(validate_value("bogus", 1.0).is_err());
        assert!(validate_entity(&[]).is_err());
        assert!(validate_entity(&[("ip".into(), None)]).is_err());
        assert!(validate_entity(&[(USER.into(), None), (USER.into(), Some("a".into()))]).is_err());
        assert!(validate_entity(&[(USER.into(), Some("a".into())), (CLIENT_ID.into(), None)]).is_ok());
    }

    #[test]
    fn throttle_brings_the_rate_back_to_the_quota() {
        let mut q = QuotaConfigs::default();
        q.set(entity(&[(USER, Some("u"))]), PRODUCER_BYTE_RATE, Some(1000.0));
        let m = QuotaManager::default();
        let w = Window { size: Duration::from_secs(1), num: 2 };
        assert_eq!(m.record(&q, PRODUCER_BYTE_RATE, "u", "c", 500.0, w), Duration::ZERO);
        // 3000 bytes over at least one window: 2x over the quota -> two windows of waiting.
        let t = m.record(&q, PRODUCER_BYTE_RATE, "u", "c", 2500.0, w);
        assert!(t > Duration::from_millis(1990) && t <= Duration::from_secs(2), "{t:?}");
        assert_eq!(m.record(&q, PRODUCER_BYTE_RATE, "other", "c", 1e9, w), Duration::ZERO, "no quota");
        // A vanishingly small quota throttles for the whole window instead of overflowing.
        q.set(entity(&[(USER, Some("tiny"))]), REQUEST_PERCENTAGE, Some(1e-300));
        assert_eq!(m.record(&q, REQUEST_PERCENTAGE, "tiny", "c", 1e300, w), Duration::from_secs(2));
    }
}
