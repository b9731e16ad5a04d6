//! This broker's links to the other brokers: the inter-broker listener's client settings
//! (TLS, SASL), one pool of reused connections for calls, and the record of replica fetches
//! that fail — each cause logged as an ERROR once (not per attempt) and counted for
//! `/metrics`, so a follower that cannot authenticate to its leader is never a silent one.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::Broker;
use crate::client::connection::Connection;
use crate::client::peers::PeerLink;
use crate::client::pool::Pool;
use crate::client::ClientError;

/// Why a replica fetch failed, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FetchFailure {
    /// The leader's inter-broker listener cannot be reached (refused, timed out).
    Unreachable,
    /// The TLS handshake failed (an untrusted certificate, a plaintext peer).
    Tls,
    /// SASL authentication failed.
    Authentication,
    /// The leader refused this broker's principal (CLUSTER_AUTHORIZATION_FAILED).
    Authorization,
    /// The leader has no endpoint on the inter-broker listener.
    NoListener,
    /// Anything else (a leader error code, a broken response).
    Other,
}

impl FetchFailure {
    pub fn label(self) -> &'static str {
        match self {
            FetchFailure::Unreachable => "unreachable",
            FetchFailure::Tls => "tls",
            FetchFailure::Authentication => "authentication",
            FetchFailure::Authorization => "authorization",
            FetchFailure::NoListener => "no_listener",
            FetchFailure::Other => "other",
        }
    }

    pub fn of(e: &ClientError) -> FetchFailure {
        match e {
            ClientError::NotFound(_) => FetchFailure::NoListener,
            ClientError::Unreachable { .. } => FetchFailure::Unreachable,
            ClientError::Tls { .. } => FetchFailure::Tls,
            ClientError::Authentication(_) => FetchFailure::Authentication,
            ClientError::Kafka { code, .. } => match kafka_protocol::ResponseError::try_from_code(*code) {
                Some(kafka_protocol::ResponseError::SaslAuthenticationFailed) => FetchFailure::Authentication,
                Some(kafka_protocol::ResponseError::ClusterAuthorizationFailed) => FetchFailure::Authorization,
                _ => FetchFailure::Other,
            },
            _ => FetchFailure::Other,
        }
    }

    /// Causes a user must act on (credentials, certificates, ACLs, listeners): logged as
    /// ERROR. The others come and go with leaders and restarts.
    fn needs_attention(self) -> bool {
        !matches!(self, FetchFailure::Unreachable | FetchFailure::Other)
    }
}

/// One (leader, cause) of replica fetch failures: counted for `/metrics`, and while it is
/// current (logged, not logged again until a fetch from that leader succeeds) reported by
/// DescribeConfigs' [`REPLICA_FETCH_FAILURES`] for `weir cluster health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailureStat {
    pub leader: i32,
    pub cause: FetchFailure,
    pub count: u64,
    pub current: bool,
    /// When the current run of failures began (ms since the epoch).
    pub since_ms: i64,
    /// The latest failure's message (no credentials: client errors never carry them).
    pub last_error: String,
}

/// Replica fetch failures by (leader, cause).
#[derive(Default)]
pub struct FetchErrors {
    stats: parking_lot::Mutex<BTreeMap<(i32, FetchFailure), FetchFailureStat>>,
    /// How many causes are current: every successful fetch asks, and is answered without
    /// the lock while none is.
    current: std::sync::atomic::AtomicUsize,
}

impl FetchErrors {
    /// Counts a failure; returns whether it is new (to be logged).
    fn record(&self, leader: i32, cause: FetchFailure, error: String, now_ms: i64) -> bool {
        let mut stats = self.stats.lock();
        let stat = stats.entry((leader, cause)).or_insert_with(|| FetchFailureStat {
            leader,
            cause,
            count: 0,
            current: false,
            since_ms: now_ms,
            last_error: String::new(),
        });
        stat.count += 1;
        stat.last_error = error;
        let new = !std::mem::replace(&mut stat.current, true);
        if new {
            stat.since_ms = now_ms;
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        new
    }

    /// A fetch from `leader` succeeded: its causes are over. Returns those that were current.
    fn recovered(&self, leader: i32) -> Vec<FetchFailure> {
        if self.current.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut stats = self.stats.lock();
        let mut over = Vec::new();
        for stat in stats.values_mut().filter(|s| s.leader == leader) {
            if std::mem::replace(&mut stat.current, false) {
                over.push(stat.cause);
            }
        }
        self.current.fetch_sub(over.len(), std::sync::atomic::Ordering::Relaxed);
        over
    }

    /// Every (leader, cause) seen.
    pub fn snapshot(&self) -> Vec<FetchFailureStat> {
        self.stats.lock().values().cloned().collect()
    }

    /// The current failures as JSON, for [`REPLICA_FETCH_FAILURES`]: `[]` when every replica
    /// fetch works.
    pub fn current_json(&self) -> String {
        let current: Vec<serde_json::Value> = self
            .snapshot()
            .into_iter()
            .filter(|s| s.current)
            .map(|s| {
                serde_json::json!({
                    "leader": s.leader,
                    "cause": s.cause.label(),
                    "failures": s.count,
                    "since_ms": s.since_ms,
                    "error": s.last_error,
                })
            })
            .collect();
        serde_json::Value::Array(current).to_string()
    }
}

/// A read-only broker "config" that DescribeConfigs answers only when it is asked for by name
/// (so Kafka tools listing a broker's configs never see it): this broker's current replica
/// fetch failures as a JSON array. Kafka reports these through JMX; Weir's CLI has only the
/// Kafka protocol, and `weir cluster health` asks every broker for it.
pub const REPLICA_FETCH_FAILURES: &str = "weir.replica.fetch.failures";

/// How this broker talks to the others.
pub struct BrokerLinks {
    pub link: PeerLink,
    pool: Pool,
    pub fetch_errors: FetchErrors,
}

impl BrokerLinks {
    pub fn new(link: PeerLink) -> BrokerLinks {
        BrokerLinks { pool: Pool::new(link.client.clone()), link, fetch_errors: FetchErrors::default() }
    }
}

impl Broker {
    /// Where other brokers reach `broker`: its endpoint on the inter-broker listener.
    pub(crate) fn inter_broker_addr(&self, broker: i32) -> Option<String> {
        self.metadata_image().brokers.get(&broker)?.inter_broker_addr(&self.links.link.listener)
    }

    /// One request to broker `to` on the inter-broker listener (a pooled connection), answered
    /// within `timeout`.
    pub async fn call_broker<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &self,
        to: i32,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError> {
        let addr = self.inter_broker_addr(to).ok_or_else(|| self.no_listener(to))?;
        self.links.pool.call(&addr, key, version, req, timeout).await
    }

    /// A connection of its own to broker `to` (a replica fetcher's).
    pub(crate) async fn connect_to_broker(&self, to: i32) -> Result<Connection, ClientError> {
        let addr = self.inter_broker_addr(to).ok_or_else(|| self.no_listener(to))?;
        self.links.pool.open(&addr).await
    }

    fn no_listener(&self, to: i32) -> ClientError {
        let detail = format!("it has no endpoint on the inter-broker listener {}", self.links.link.listener);
        ClientError::NotFound(format!("broker {to}: {detail}"))
    }

    /// Notes a replica fetch from `leader` that failed; the first failure of each cause is an
    /// ERROR (WARN for causes that pass by themselves), the rest only counted.
    pub(crate) fn replica_fetch_failed(&self, leader: i32, topic: &str, partition: i32, e: &ClientError) {
        let cause = FetchFailure::of(e);
        if !self.links.fetch_errors.record(leader, cause, e.to_string(), super::now_ms()) {
            tracing::debug!(leader, topic, partition, error = %e, "replica fetch failed");
            return;
        }
        let listener = &self.links.link.listener;
        if cause.needs_attention() {
            tracing::error!(
                leader, topic, partition, listener = %listener, cause = cause.label(), error = %e,
                "replica fetching from the leader fails: this broker cannot stay in sync with it"
            );
        } else {
            tracing::warn!(leader, topic, partition, cause = cause.label(), error = %e, "replica fetch failed");
        }
    }

    /// Notes a replica fetch from `leader` that succeeded, ending its failures.
    pub(crate) fn replica_fetch_succeeded(&self, leader: i32) {
        let over = self.links.fetch_errors.recovered(leader);
        if over.iter().any(|c| c.needs_attention()) {
            tracing::info!(leader, "replica fetching from the leader works again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_new_once_until_its_leader_recovers() {
        let errors = FetchErrors::default();
        let auth = FetchFailure::Authentication;
        assert!(errors.record(2, auth, "bad password".into(), 10));
        assert!(!errors.record(2, auth, "bad password".into(), 20));
        assert!(errors.record(3, auth, "bad password".into(), 30));
        assert_eq!(errors.recovered(2), vec![auth]);
        assert!(errors.recovered(2).is_empty());
        assert!(errors.record(2, auth, "still bad".into(), 40));
        let snapshot = errors.snapshot();
        assert_eq!((snapshot[0].count, snapshot[0].current, snapshot[0].since_ms), (3, true, 40));
        assert_eq!(snapshot[0].last_error, "still bad");
        errors.recovered(3);
        let json: serde_json::Value = serde_json::from_str(&errors.current_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"leader": 2, "cause": "authentication", "failures": 3, "since_ms": 40, "error": "still bad"}])
        );
    }
}
