//! A small Kafka-protocol client on the same `kafka-protocol` codecs the broker serves with:
//! connections (TLS, SASL), cluster metadata, and routing — partition requests to leaders,
//! group requests to coordinators — with retries while leadership moves. The `weir` CLI is
//! built on it; tests can use it too.

pub mod config;
pub mod connection;
pub mod error;
pub mod offsets;
pub mod peers;
pub mod pool;
pub mod records;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;

pub use config::ClientConfig;
use connection::Connection;
pub use error::{ClientError, ErrorKind, Result};

/// A topic and a partition.
pub type Tp = (String, i32);

/// FindCoordinator key types.
pub const GROUP: i8 = 0;
pub const TRANSACTION: i8 = 1;
pub const SHARE: i8 = 2;

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl Broker {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub struct Client {
    config: ClientConfig,
    /// The connection used for requests any broker can answer.
    bootstrap: Option<Connection>,
    /// Connections to brokers by id.
    nodes: HashMap<i32, Connection>,
    pub brokers: BTreeMap<i32, Broker>,
    pub controller_id: i32,
    pub cluster_id: Option<String>,
    /// Each partition's leader, from the last Metadata that named it.
    leaders: HashMap<Tp, i32>,
    /// Each topic's id, from the last Metadata that named it.
    topic_ids: HashMap<String, uuid::Uuid>,
    coordinators: HashMap<(i8, String), i32>,
}

/// Whether an error code means "ask again after refreshing where things are".
fn moved(code: i16) -> bool {
    use ResponseError::*;
    matches!(
        ResponseError::try_from_code(code),
        Some(
            NotLeaderOrFollower
                | LeaderNotAvailable
                | NotCoordinator
                | CoordinatorNotAvailable
                | CoordinatorLoadInProgress
                | NotController
                | FencedLeaderEpoch
                | UnknownLeaderEpoch
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | RequestTimedOut
                | KafkaStorageError
        )
    )
}

/// Retries: how long and how often.
struct Backoff {
    deadline: Instant,
    delay: Duration,
}

impl Backoff {
    fn new(timeout: Duration) -> Backoff {
        Backoff { deadline: Instant::now() + timeout, delay: Duration::from_millis(50) }
    }

    /// Waits before the next try; false once the time is up.
    async fn wait(&mut self) -> bool {
        if Instant::now() + self.delay > self.deadline {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
        true
    }
}

impl Client {
    /// Connects to the first reachable bootstrap broker and reads the cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let mut client = Client {
            config,
            bootstrap: None,
            nodes: HashMap::new(),
            brokers: BTreeMap::new(),
            controller_id: -1,
            cluster_id: None,
            leaders: HashMap::new(),
            topic_ids: HashMap::new(),
            coordinators: HashMap::new(),
        };
        client.metadata(Some(Vec::new())).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    async fn bootstrap(&mut self) -> Result<&mut Connection> {
        if self.bootstrap.is_none() {
            let mut last = None;
            // the bootstrap list first, then any broker metadata named
            let mut addrs = self.config.bootstrap.clone();
            addrs.extend(self.brokers.values().map(Broker::addr));
            for addr in addrs {
                match Connection::open(&addr, &self.config).await {
                    Ok(c) => {
                        self.bootstrap = Some(c);
                        break;
                    }
                    Err(e @ ClientError::Unreachable { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if self.bootstrap.is_none() {
                return Err(last.unwrap_or_else(|| ClientError::Config("no brokers given".into())));
            }
        }
        self.bootstrap.as_mut().ok_or_else(|| ClientError::Protocol("no connection".into()))
    }

    /// The version of `key` the bootstrap broker and this client agree on.
    pub async fn version(&mut self, key: ApiKey, ours: (i16, i16)) -> Result<Option<i16>> {
        Ok(self.bootstrap().await?.version(key as i16, ours))
    }

    /// Sends `req` to any broker (the bootstrap connection, reopened once if it broke).
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        match self.bootstrap().await?.call(req).await {
            Err(ClientError::Unreachable { .. }) => {
                self.bootstrap = None;
                self.bootstrap().await?.call(req).await
            }
            other => other,
        }
    }

    /// Sends `req` to broker `id`.
    pub async fn send_to<R: Request>(&mut self, id: i32, req: &R) -> Result<R::Response> {
        if !self.nodes.contains_key(&id) {
            let broker = self.brokers.get(&id).ok_or_else(|| ClientError::Unreachable {
                what: format!("broker {id}"),
                detail: "not in the cluster's metadata".into(),
            })?;
            let conn = Connection::open(&broker.addr(), &self.config).await?;
            self.nodes.insert(id, conn);
        }
        let conn = self.nodes.get_mut(&id).ok_or_else(|| ClientError::Protocol("no connection".into()))?;
        let result = conn.call(req).await;
        if matches!(result, Err(ClientError::Unreachable { .. })) {
            self.nodes.remove(&id);
        }
        result
    }

    /// Metadata for `topics` (`None`: every topic; `Some(empty)`: brokers only); remembers the
    /// brokers, the controller and the partitions' leaders.
    pub async fn metadata(&mut self, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
        let topics = topics.map(|names| {
            names
                .into_iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n)))))
                .collect()
        });
        let req = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false);
        let resp = self.send(&req).await?;
        self.learn(&resp);
        Ok(resp)
    }

    fn learn(&mut self, resp: &MetadataResponse) {
        if !resp.brokers.is_empty() {
            self.brokers = resp
                .brokers
                .iter()
                .map(|b| {
                    let broker = Broker {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    };
                    (b.node_id.0, broker)
                })
                .collect();
            // a connection to a broker whose address changed is stale
            let brokers = &self.brokers;
            self.nodes.retain(|id, c| brokers.get(id).is_some_and(|b| b.addr() == c.addr));
        }
        self.controller_id = resp.controller_id.0;
        self.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        for t in &resp.topics {
            let Some(name) = &t.name else { continue };
            self.topic_ids.insert(name.0.to_string(), t.topic_id);
            for p in &t.partitions {
                self.leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
            }
        }
    }

    /// The partitions of `topic`, or UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn partitions(&mut self, topic: &str) -> Result<Vec<i32>> {
        let resp = self.metadata(Some(vec![topic.to_string()])).await?;
        let t =
            resp.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).ok_or_else(|| {
                ClientError::kafka(format!("topic '{topic}'"), ResponseError::UnknownTopicOrPartition.code(), None)
            })?;
        ClientError::check(|| format!("topic '{topic}'"), t.error_code, None)?;
        let mut parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        parts.sort_unstable();
        Ok(parts)
    }

    /// The id of `topic`, once Metadata has named it.
    pub fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.topic_ids.get(topic).copied()
    }

    /// The coordinator of `key` (a group or transactional id).
    pub async fn coordinator(&mut self, key: &str, key_type: i8) -> Result<i32> {
        if let Some(id) = self.coordinators.get(&(key_type, key.to_string())) {
            return Ok(*id);
        }
        let v4 = self.version(ApiKey::FindCoordinator, (0, 6)).await?.is_some_and(|v| v >= 4);
        let mut req = FindCoordinatorRequest::default().with_key_type(key_type);
        if v4 {
            req.coordinator_keys = vec![StrBytes::from_string(key.to_string())];
        } else {
            req.key = StrBytes::from_string(key.to_string());
        }
        let mut backoff = Backoff::new(self.config.request_timeout);
        loop {
            let resp = self.send(&req).await?;
            let (code, message, node) = match resp.coordinators.first() {
                Some(c) => (c.error_code, c.error_message.as_ref().map(|m| m.to_string()), c.node_id.0),
                None => (resp.error_code, resp.error_message.as_ref().map(|m| m.to_string()), resp.node_id.0),
            };
            if code == 0 {
                if !self.brokers.contains_key(&node) {
                    self.metadata(Some(Vec::new())).await?;
                }
                self.coordinators.insert((key_type, key.to_string()), node);
                return Ok(node);
            }
            if !moved(code) || !backoff.wait().await {
                return Err(ClientError::kafka(format!("finding the coordinator of '{key}'"), code, message));
            }
        }
    }

    /// Sends a group request to the group's coordinator, following the coordinator when it
    /// moves (`error_of` reads the response's error code).
    pub async fn coordinator_call<R: Request>(
        &mut self,
        key: &str,
        key_type: i8,
        req: &R,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        let mut backoff = Backoff::new(self.config.request_timeout);
        loop {
            let node = self.coordinator(key, key_type).await?;
            let result = self.send_to(node, req).await;
            let retry = match &result {
                Ok(resp) => moved(error_of(resp)),
                Err(ClientError::Unreachable { .. }) => self.brokers.len() > 1,
                Err(_) => false,
            };
            if !retry || !backoff.wait().await {
                return result;
            }
            self.coordinators.remove(&(key_type, key.to_string()));
        }
    }

    /// Sends an admin request (topics, configs, ACLs, users, quotas) to the controller when
    /// Metadata names one, else to any broker; retries while the controller moves.
    pub async fn controller_call<R: Request>(
        &mut self,
        req: &R,
        error_of: impl Fn(&R::Response) -> Vec<i16>,
    ) -> Result<R::Response> {
        let mut backoff = Backoff::new(self.config.request_timeout);
        loop {
            let controller = self.controller_id;
            let result = if self.brokers.contains_key(&controller) {
                self.send_to(controller, req).await
            } else {
                self.send(req).await
            };
            let retry = match &result {
                Ok(resp) => error_of(resp).into_iter().any(|c| c == ResponseError::NotController.code()),
                Err(ClientError::Unreachable { .. }) => self.brokers.len() > 1,
                Err(_) => false,
            };
            if !retry || !backoff.wait().await {
                return result;
            }
            self.metadata(Some(Vec::new())).await?;
        }
    }

    /// Sends per-partition work to each partition's leader: `build` makes one request of a
    /// leader's share, `parse` reads each partition's (error code, message, outcome) back.
    /// Partitions whose leader moved are retried after a metadata refresh; the rest come back
    /// with their outcome or their error.
    pub async fn per_leader<R: Request, T: Clone, O>(
        &mut self,
        items: Vec<(Tp, T)>,
        build: impl Fn(&[(Tp, T)]) -> R,
        parse: impl Fn(R::Response) -> Vec<(Tp, i16, Option<String>, O)>,
    ) -> Result<Vec<(Tp, Result<O>)>> {
        let mut done = Vec::with_capacity(items.len());
        let mut pending = items;
        let mut backoff = Backoff::new(self.config.request_timeout);
        let mut unknown_tries = 0;
        loop {
            let mut topics: Vec<String> = pending.iter().map(|((t, _), _)| t.clone()).collect();
            topics.sort();
            topics.dedup();
            if pending.iter().any(|(tp, _)| !self.leaders.contains_key(tp)) {
                self.metadata(Some(topics)).await?;
            }
            let mut by_leader: BTreeMap<i32, Vec<(Tp, T)>> = BTreeMap::new();
            let mut retry = Vec::new();
            for (tp, t) in pending {
                match self.leaders.get(&tp) {
                    Some(&leader) if leader >= 0 => by_leader.entry(leader).or_default().push((tp, t)),
                    Some(_) => retry.push((tp, t, ResponseError::LeaderNotAvailable.code(), None)),
                    None => retry.push((tp, t, ResponseError::UnknownTopicOrPartition.code(), None)),
                }
            }
            for (leader, share) in by_leader {
                let resp = match self.send_to(leader, &build(&share)).await {
                    Ok(resp) => resp,
                    Err(e @ ClientError::Unreachable { .. }) => {
                        let code = ResponseError::NotLeaderOrFollower.code();
                        let why = Some(e.to_string());
                        retry.extend(share.into_iter().map(|(tp, t)| (tp, t, code, why.clone())));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut outcomes: HashMap<Tp, (i16, Option<String>, O)> =
                    parse(resp).into_iter().map(|(tp, code, msg, o)| (tp, (code, msg, o))).collect();
                for (tp, t) in share {
                    match outcomes.remove(&tp) {
                        Some((0, _, o)) => done.push((tp, Ok(o))),
                        Some((code, msg, _))
                            if moved(code) || code == ResponseError::UnknownTopicOrPartition.code() =>
                        {
                            retry.push((tp, t, code, msg))
                        }
                        Some((code, msg, _)) => done.push((tp.clone(), Err(partition_error(&tp, code, msg)))),
                        None => done.push((
                            tp.clone(),
                            Err(ClientError::Protocol(format!("{}-{}: missing from the response", tp.0, tp.1))),
                        )),
                    }
                }
            }
            if retry.is_empty() {
                return Ok(done);
            }
            // an unknown topic is worth one more look (it may just have been created), not more
            let only_unknown = retry.iter().all(|r| r.2 == ResponseError::UnknownTopicOrPartition.code());
            unknown_tries += usize::from(only_unknown);
            if unknown_tries > 2 || !backoff.wait().await {
                done.extend(retry.into_iter().map(|(tp, _, code, msg)| {
                    let e = partition_error(&tp, code, msg);
                    (tp, Err(e))
                }));
                return Ok(done);
            }
            for (tp, ..) in &retry {
                self.leaders.remove(tp);
            }
            pending = retry.into_iter().map(|(tp, t, ..)| (tp, t)).collect();
        }
    }
}

/// The `wanted` partitions of `topic` (all of them when none are named), sorted; one that
/// `all` (the topic's partitions) lacks is UNKNOWN_TOPIC_OR_PARTITION.
pub fn partitions_named(topic: &str, all: Vec<i32>, wanted: &[i32]) -> Result<Vec<i32>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    if let Some(p) = wanted.iter().find(|p| !all.contains(p)) {
        let code = ResponseError::UnknownTopicOrPartition.code();
        return Err(ClientError::kafka(format!("topic '{topic}' partition {p}"), code, None));
    }
    let mut chosen = wanted.to_vec();
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen)
}

/// Per-partition work grouped by topic, topics in first-seen order: the shape every
/// per-partition request has (topics, each with its partitions).
pub fn by_topic<T>(items: &[(Tp, T)]) -> Vec<(TopicName, Vec<(i32, &T)>)> {
    let mut out: Vec<(TopicName, Vec<(i32, &T)>)> = Vec::new();
    for ((topic, partition), item) in items {
        match out.iter_mut().find(|(name, _)| name.0.as_str() == topic) {
            Some((_, parts)) => parts.push((*partition, item)),
            None => out.push((TopicName(StrBytes::from_string(topic.clone())), vec![(*partition, item)])),
        }
    }
    out
}

fn partition_error(tp: &Tp, code: i16, message: Option<String>) -> ClientError {
    ClientError::kafka(format!("{}-{}", tp.0, tp.1), code, message)
}
