//! Client telemetry (KIP-714): clients ask which of their metrics the broker wants
//! (GetTelemetrySubscriptions) and push them every interval (PushTelemetry) as OTLP.
//!
//! What is wanted is configured the Kafka way, with `CLIENT_METRICS` config resources
//! (`kafka-client-metrics.sh`): each named subscription has `metrics` (name prefixes, `*` for
//! all), `interval.ms` and `match` (regexes on the client's id, software, address…). A client
//! gets the union of the subscriptions it matches and the shortest interval, as in Kafka's
//! `ClientMetricsManager`, whose checks (push interval, subscription id, size, terminating)
//! this follows. Kafka hands pushed metrics to a plugin; Weir keeps the latest values per
//! client instance and serves them on `/metrics`, bounded in clients and series.

pub mod otlp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use regex::Regex;
use thiserror::Error;
use uuid::Uuid;

/// The `CLIENT_METRICS` config names.
pub const METRICS: &str = "metrics";
pub const INTERVAL_MS: &str = "interval.ms";
pub const MATCH: &str = "match";
pub const CONFIG_NAMES: [&str; 3] = [METRICS, INTERVAL_MS, MATCH];

const DEFAULT_INTERVAL_MS: i32 = 5 * 60 * 1000;
const MIN_INTERVAL_MS: i32 = 100;
const MAX_INTERVAL_MS: i32 = 3_600_000;
/// Client attributes a `match` selector may name.
const MATCH_KEYS: [&str; 6] = [
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
];
/// Compression types accepted for pushes, in preference order (Kafka's ids): zstd, lz4, gzip.
/// Snappy is not offered: its payloads cannot be bounded while decompressing.
pub const ACCEPTED_COMPRESSION: [i8; 3] = [4, 3, 1];
/// Client instances remembered (Kafka's cache holds 16k).
const MAX_INSTANCES: usize = 16_384;
/// Clients whose pushed metrics are kept for `/metrics`, and series kept per client.
const MAX_REPORTING_CLIENTS: usize = 1_000;
const MAX_SERIES_PER_CLIENT: usize = 2_000;
/// A decompressed push may be this many times `telemetry.max.bytes`.
const MAX_EXPANSION: usize = 16;
/// An instance not heard from for max(this, 3 × its interval) is forgotten (Kafka's expiry).
const MIN_EXPIRY_MS: i64 = 60_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TelemetryError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Request from the client [{0}] arrived before the next push interval time")]
    Throttled(Uuid),
    #[error("Unknown client subscription id for the client [{0}]")]
    UnknownSubscription(Uuid),
    #[error("Unknown compression type [{0}] is received in telemetry request from [{1}]")]
    UnsupportedCompression(i8, Uuid),
    #[error("Telemetry request from [{0}] is larger than the maximum allowed size [{1}]")]
    TooLarge(Uuid, usize),
    #[error("Telemetry from [{0}] could not be read: {1}")]
    BadPayload(Uuid, String),
}

/// A `CLIENT_METRICS` config problem, with the error class Kafka answers with.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubscriptionError {
    /// INVALID_REQUEST in Kafka.
    #[error("{0}")]
    Request(String),
    /// INVALID_CONFIG in Kafka.
    #[error("{0}")]
    Config(String),
}

/// One named subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The configs as set, for DescribeConfigs.
    configs: BTreeMap<String, String>,
    metrics: Vec<String>,
    interval_ms: i32,
    matches: Vec<(String, Regex)>,
}

impl Subscription {
    /// Validates a subscription's configs as Kafka's `ClientMetricsConfigs.validate` does.
    pub fn parse(name: &str, configs: &BTreeMap<String, String>) -> Result<Subscription, SubscriptionError> {
        if name.is_empty() {
            return Err(SubscriptionError::Request("Subscription name can't be empty".into()));
        }
        if let Some(key) = configs.keys().find(|k| !CONFIG_NAMES.contains(&k.as_str())) {
            return Err(SubscriptionError::Request(format!("Unknown client metrics configuration: {key}")));
        }
        let list = |key: &str| -> Vec<String> {
            configs
                .get(key)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };
        let interval_ms = match configs.get(INTERVAL_MS) {
            None => DEFAULT_INTERVAL_MS,
            Some(v) => {
                let n: i32 = v.trim().parse().map_err(|_| {
                    SubscriptionError::Request(format!(
                        "Invalid value {v} for configuration {INTERVAL_MS}: Not a number of type INT"
                    ))
                })?;
                if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&n) {
                    return Err(SubscriptionError::Request(format!(
                        "Invalid value {n} for {INTERVAL_MS}, interval must be between 100 and 3600000 (1 hour)"
                    )));
                }
                n
            }
        };
        let mut matches = Vec::new();
        for pattern in list(MATCH) {
            let illegal = || SubscriptionError::Config(format!("Illegal client matching pattern: {pattern}"));
            let (key, value) = pattern.split_once('=').ok_or_else(illegal)?;
            let key = key.trim();
            if value.contains('=') || !MATCH_KEYS.contains(&key) {
                return Err(illegal());
            }
            let regex = Regex::new(&format!("^(?:{})$", value.trim())).map_err(|_| illegal())?;
            matches.push((key.to_string(), regex));
        }
        Ok(Subscription { configs: configs.clone(), metrics: list(METRICS), interval_ms, matches })
    }

    fn matches(&self, client: &ClientInfo, instance: Uuid) -> bool {
        self.matches.iter().all(|(key, regex)| client.attribute(key, instance).is_some_and(|v| regex.is_match(&v)))
    }
}

/// What the broker knows of a client from its connection: the request header's client id,
/// ApiVersions' software name and version, and its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub software_name: String,
    pub software_version: String,
    pub source_address: String,
    pub source_port: u16,
}

impl ClientInfo {
    fn attribute(&self, key: &str, instance: Uuid) -> Option<String> {
        Some(match key {
            "client_instance_id" => instance.to_string(),
            "client_id" => self.client_id.clone(),
            "client_software_name" => self.software_name.clone(),
            "client_software_version" => self.software_version.clone(),
            "client_source_address" => self.source_address.clone(),
            "client_source_port" => self.source_port.to_string(),
            _ => return None,
        })
    }
}

/// What a client is asked to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub client_instance_id: Uuid,
    pub subscription_id: i32,
    pub metrics: Vec<String>,
    pub push_interval_ms: i32,
}

/// A client instance's subscription and the times of its last requests.
struct Instance {
    client: ClientInfo,
    assignment: Assignment,
    /// The subscriptions version the assignment was computed from.
    version: u64,
    last_get_ms: i64,
    last_push_ms: i64,
    last_seen_ms: i64,
    terminating: bool,
}

impl Instance {
    fn expired(&self, now_ms: i64) -> bool {
        now_ms - self.last_seen_ms > MIN_EXPIRY_MS.max(3 * i64::from(self.assignment.push_interval_ms))
    }
}

/// The latest metrics one client instance pushed.
struct Reported {
    client: ClientInfo,
    points: Vec<otlp::Point>,
    pushed_ms: i64,
}

pub struct ClientTelemetry {
    subscriptions: RwLock<BTreeMap<String, Subscription>>,
    /// Bumped by every subscription change, so instances re-evaluate theirs.
    version: AtomicU64,
    instances: Mutex<HashMap<Uuid, Instance>>,
    reported: Mutex<HashMap<Uuid, Reported>>,
    /// `telemetry.max.bytes`: the largest (compressed) push accepted.
    max_bytes: usize,
}

impl ClientTelemetry {
    pub fn new(max_bytes: usize) -> ClientTelemetry {
        ClientTelemetry {
            subscriptions: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(0),
            instances: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Sets (or, with no configs, removes) a named subscription already validated.
    pub fn set_subscription(&self, name: &str, subscription: Option<Subscription>) {
        let mut subs = self.subscriptions.write();
        match subscription {
            Some(s) => {
                subs.insert(name.to_string(), s);
            }
            None => {
                subs.remove(name);
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription's configs as set (empty for an unknown name).
    pub fn subscription_configs(&self, name: &str) -> BTreeMap<String, String> {
        self.subscriptions.read().get(name).map(|s| s.configs.clone()).unwrap_or_default()
    }

    /// The names of every subscription.
    pub fn subscription_names(&self) -> Vec<String> {
        self.subscriptions.read().keys().cloned().collect()
    }

    /// GetTelemetrySubscriptions: the client's assignment (a new instance id for a client
    /// that has none). A client asking again before its interval is throttled, unless the
    /// subscriptions changed meanwhile.
    pub fn get_subscriptions(
        &self,
        requested: Uuid,
        client: ClientInfo,
        now_ms: i64,
    ) -> Result<Assignment, TelemetryError> {
        let mut instances = self.instances.lock();
        instances.retain(|_, i| !i.expired(now_ms));
        let id = if requested.is_nil() { new_instance_id(&instances) } else { requested };
        let instance = self.instance(&mut instances, id, client, now_ms);
        let last = instance.last_get_ms.max(instance.last_push_ms);
        if last > 0 && now_ms - last < i64::from(instance.assignment.push_interval_ms) {
            return Err(TelemetryError::Throttled(id));
        }
        instance.last_get_ms = now_ms;
        Ok(instance.assignment.clone())
    }

    /// PushTelemetry: checks the push as Kafka does, then keeps its metrics.
    pub fn push(&self, id: Uuid, client: ClientInfo, push: Push<'_>, now_ms: i64) -> Result<(), TelemetryError> {
        if id.is_nil() || id == Uuid::max() {
            return Err(TelemetryError::InvalidRequest(format!(
                "Invalid request from the client [{id}], invalid client instance id"
            )));
        }
        let reporting_client = {
            let mut instances = self.instances.lock();
            instances.retain(|_, i| !i.expired(now_ms));
            let instance = self.instance(&mut instances, id, client, now_ms);
            let checked = check_push(instance, &push, self.max_bytes, now_ms);
            instance.terminating |= push.terminating;
            checked?;
            instance.client.clone()
        };
        if push.terminating {
            // the client is closing: its metrics go with it
            self.reported.lock().remove(&id);
            return Ok(());
        }
        if push.metrics.is_empty() {
            return Ok(());
        }
        let payload = decompress(push.compression, push.metrics, self.max_bytes * MAX_EXPANSION)
            .map_err(|e| TelemetryError::BadPayload(id, e))?;
        let mut points = otlp::decode(&payload).map_err(|e| TelemetryError::BadPayload(id, e.to_string()))?;
        points.truncate(MAX_SERIES_PER_CLIENT);
        let mut reported = self.reported.lock();
        if !reported.contains_key(&id) && reported.len() >= MAX_REPORTING_CLIENTS {
            if let Some(oldest) = reported.iter().min_by_key(|(_, r)| r.pushed_ms).map(|(k, _)| *k) {
                reported.remove(&oldest);
            }
        }
        reported.insert(id, Reported { client: reporting_client, points, pushed_ms: now_ms });
        Ok(())
    }

    /// The instance for `id`, created or re-evaluated against the current subscriptions.
    fn instance<'a>(
        &self,
        instances: &'a mut HashMap<Uuid, Instance>,
        id: Uuid,
        client: ClientInfo,
        now_ms: i64,
    ) -> &'a mut Instance {
        let version = self.version.load(Ordering::Relaxed);
        if !instances.contains_key(&id) && instances.len() >= MAX_INSTANCES {
            if let Some(oldest) = instances.iter().min_by_key(|(_, i)| i.last_seen_ms).map(|(k, _)| *k) {
                instances.remove(&oldest);
            }
        }
        let instance = instances.entry(id).or_insert_with(|| Instance {
            assignment: self.assign(id, &client),
            client,
            version,
            last_get_ms: 0,
            last_push_ms: 0,
            last_seen_ms: now_ms,
            terminating: false,
        });
        if instance.version < version {
            instance.assignment = self.assign(id, &instance.client);
            instance.version = version;
            // a changed subscription is handed out at once
            instance.last_get_ms = 0;
            instance.last_push_ms = 0;
        }
        instance.last_seen_ms = now_ms;
        instance
    }

    /// The union of the subscriptions `client` matches and their shortest interval.
    fn assign(&self, id: Uuid, client: &ClientInfo) -> Assignment {
        let subs = self.subscriptions.read();
        let mut metrics = BTreeSet::new();
        let mut push_interval_ms = DEFAULT_INTERVAL_MS;
        for s in subs.values().filter(|s| s.matches(client, id)) {
            metrics.extend(s.metrics.iter().cloned());
            push_interval_ms = push_interval_ms.min(s.interval_ms);
        }
        if metrics.contains("*") {
            metrics = BTreeSet::from(["*".to_string()]);
        }
        let metrics: Vec<String> = metrics.into_iter().collect();
        let key = format!("{metrics:?}{push_interval_ms}");
        let subscription_id = (crc32c::crc32c(key.as_bytes()) ^ crc32c::crc32c(id.as_bytes())) as i32;
        Assignment { client_instance_id: id, subscription_id, metrics, push_interval_ms }
    }

    /// The pushed metrics, in Prometheus' text format: one family per client metric name,
    /// labelled with the client's instance id, client id and software.
    pub fn render(&self, out: &mut String, now_ms: i64) {
        let live: BTreeSet<Uuid> = {
            let mut instances = self.instances.lock();
            instances.retain(|_, i| !i.expired(now_ms));
            instances.keys().copied().collect()
        };
        let mut reported = self.reported.lock();
        reported.retain(|id, _| live.contains(id));
        let mut families: BTreeMap<String, (otlp::Kind, Vec<String>)> = BTreeMap::new();
        for (id, r) in reported.iter() {
            let own = [
                ("client_instance_id", id.to_string()),
                ("client_id", r.client.client_id.clone()),
                ("client_software_name", r.client.software_name.clone()),
                ("client_software_version", r.client.software_version.clone()),
            ];
            for p in &r.points {
                let mut names: BTreeSet<String> = own.iter().map(|(k, _)| k.to_string()).collect();
                let mut labels: Vec<String> =
                    own.iter().map(|(k, v)| format!("{k}=\"{}\"", crate::metrics::label(v))).collect();
                for (k, v) in &p.labels {
                    let k = prometheus_name(k);
                    if names.insert(k.clone()) {
                        labels.push(format!("{k}=\"{}\"", crate::metrics::label(v)));
                    }
                }
                let family = families.entry(prometheus_name(&p.name)).or_insert((p.kind, Vec::new()));
                family.1.push(format!("{{{}}} {}", labels.join(","), p.value));
            }
        }
        for (name, (kind, samples)) in families {
            let kind = if kind == otlp::Kind::Counter { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} Pushed by clients (KIP-714 client telemetry).");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{name}{s}");
            }
        }
    }
}

/// One PushTelemetry request's contents.
pub struct Push<'a> {
    pub subscription_id: i32,
    pub terminating: bool,
    pub compression: i8,
    pub metrics: &'a [u8],
}

/// Kafka's order of push checks: after a terminating push, too early, stale subscription,
/// compression, size.
fn check_push(instance: &mut Instance, push: &Push<'_>, max_bytes: usize, now_ms: i64) -> Result<(), TelemetryError> {
    let id = instance.assignment.client_instance_id;
    if instance.terminating {
        return Err(TelemetryError::InvalidRequest(format!(
            "Client [{id}] sent the previous request with state terminating to TRUE, can not accept any requests \
             after that"
        )));
    }
    // the first push after a GetTelemetrySubscriptions is always in time: clients jitter it
    let in_time = instance.last_get_ms > instance.last_push_ms
        || now_ms - instance.last_push_ms >= i64::from(instance.assignment.push_interval_ms);
    if !in_time && !push.terminating {
        return Err(TelemetryError::Throttled(id));
    }
    if in_time {
        instance.last_push_ms = now_ms;
    }
    if push.subscription_id != instance.assignment.subscription_id {
        return Err(TelemetryError::UnknownSubscription(id));
    }
    if push.compression != 0 && !ACCEPTED_COMPRESSION.contains(&push.compression) {
        return Err(TelemetryError::UnsupportedCompression(push.compression, id));
    }
    if push.metrics.len() > max_bytes {
        return Err(TelemetryError::TooLarge(id, max_bytes));
    }
    Ok(())
}

/// Decompresses a payload with Kafka's codec ids, refusing to expand past `limit` bytes.
fn decompress(compression: i8, payload: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let reader: Box<dyn Read + '_> = match compression {
        0 => return Ok(payload.to_vec()),
        1 => Box::new(flate2::read::GzDecoder::new(payload)),
        3 => Box::new(lz4::Decoder::new(payload).map_err(|e| e.to_string())?),
        4 => Box::new(zstd::stream::read::Decoder::new(payload).map_err(|e| e.to_string())?),
        other => return Err(format!("compression type {other} is not accepted")),
    };
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

fn new_instance_id(instances: &HashMap<Uuid, Instance>) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !instances.contains_key(&id) {
            return id;
        }
    }
}

/// A Prometheus metric or label name: OTLP's dots (and anything else) become underscores.
fn prometheus_name(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn client(id: &str) -> ClientInfo {
        ClientInfo { client_id: id.into(), software_name: "librdkafka".into(), ..Default::default() }
    }

    #[test]
    fn subscriptions_are_validated_like_kafka() {
        let bad_interval = Subscription::parse("s", &configs(&[(INTERVAL_MS, "50")])).unwrap_err();
        assert!(matches!(bad_interval, SubscriptionError::Request(m) if m.contains("between 100 and 3600000")));
        let unknown = Subscription::parse("s", &configs(&[("color", "red")])).unwrap_err();
        assert_eq!(unknown, SubscriptionError::Request("Unknown client metrics configuration: color".into()));
        let bad_match = Subscription::parse("s", &configs(&[(MATCH, "client_colour=red")])).unwrap_err();
        assert!(matches!(bad_match, SubscriptionError::Config(_)));
        assert!(Subscription::parse("", &configs(&[])).is_err());
    }

    #[test]
    fn a_client_gets_the_union_of_what_it_matches() {
        let t = ClientTelemetry::new(1 << 20);
        let sub = |m: &str, i: &str, p: &str| {
            Subscription::parse("x", &configs(&[(METRICS, m), (INTERVAL_MS, i), (MATCH, p)]))
        };
        t.set_subscription("a", Some(sub("org.apache.kafka.producer", "2000", "client_id=app-.*").unwrap()));
        t.set_subscription(
            "b",
            Some(sub("org.apache.kafka.consumer", "1000", "client_software_name=librdkafka").unwrap()),
        );
        t.set_subscription("c", Some(sub("*", "100", "client_id=other").unwrap()));
        let a = t.get_subscriptions(Uuid::nil(), client("app-1"), 1_000).unwrap();
        assert_eq!(a.metrics, vec!["org.apache.kafka.consumer", "org.apache.kafka.producer"]);
        assert_eq!(a.push_interval_ms, 1000);
        assert!(!a.client_instance_id.is_nil());
        // asking again within the interval is throttled; after it, answered
        let again = t.get_subscriptions(a.client_instance_id, client("app-1"), 1_500);
        assert_eq!(again, Err(TelemetryError::Throttled(a.client_instance_id)));
        assert!(t.get_subscriptions(a.client_instance_id, client("app-1"), 2_100).is_ok());
        let other = t.get_subscriptions(Uuid::nil(), client("other"), 1_000).unwrap();
        assert_eq!(other.metrics, vec!["*"]);
    }

    #[test]
    fn pushes_are_checked_in_kafkas_order() {
        let t = ClientTelemetry::new(100);
        t.set_subscription(
            "all",
            Some(Subscription::parse("all", &configs(&[(METRICS, "*"), (INTERVAL_MS, "1000")])).unwrap()),
        );
        let a = t.get_subscriptions(Uuid::nil(), client("c"), 10_000).unwrap();
        let id = a.client_instance_id;
        let push = |sub: i32, compression: i8, metrics: &'static [u8], terminating: bool| Push {
            subscription_id: sub,
            terminating,
            compression,
            metrics,
        };
        assert_eq!(
            t.push(id, client("c"), push(a.subscription_id + 1, 0, b"", false), 10_100),
            Err(TelemetryError::UnknownSubscription(id))
        );
        // the first push after the get was taken (though refused), so the next is early
        assert_eq!(
            t.push(id, client("c"), push(a.subscription_id, 0, b"", false), 10_200),
            Err(TelemetryError::Throttled(id))
        );
        assert_eq!(
            t.push(id, client("c"), push(a.subscription_id, 2, b"", false), 11_200),
            Err(TelemetryError::UnsupportedCompression(2, id))
        );
        assert_eq!(
            t.push(id, client("c"), push(a.subscription_id, 0, &[0; 101], false), 12_300),
            Err(TelemetryError::TooLarge(id, 100))
        );
        assert_eq!(t.push(id, client("c"), push(a.subscription_id, 0, b"", false), 13_400), Ok(()));
        // a terminating push is accepted at any time, and is the last
        assert_eq!(t.push(id, client("c"), push(a.subscription_id, 0, b"", true), 13_500), Ok(()));
        assert!(matches!(
            t.push(id, client("c"), push(a.subscription_id, 0, b"", false), 20_000),
            Err(TelemetryError::InvalidRequest(_))
        ));
        assert!(matches!(
            t.push(Uuid::nil(), client("c"), push(0, 0, b"", false), 20_000),
            Err(TelemetryError::InvalidRequest(_))
        ));
    }

    #[test]
    fn bombs_do_not_expand_past_the_limit() {
        let big = vec![0u8; 1 << 20];
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &big).unwrap();
        let gz = enc.finish().unwrap();
        assert!(decompress(1, &gz, 1000).is_err());
        assert_eq!(decompress(1, &gz, 1 << 20).unwrap().len(), 1 << 20);
    }
}
