//! The broker's shared state: configuration, cluster metadata, and the partitions it leads.
//! Handlers reach everything through an `Arc<Broker>`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use kafka_protocol::ResponseError;
use parking_lot::RwLock;
use thiserror::Error;
use uuid::Uuid;

use crate::client::peers::PeerLink;
use crate::cluster::controller::{Controller, ControllerOp, Outcome, PartitionResult};
use crate::cluster::features::FeatureUpdate;
use crate::cluster::metadata_log::{
    BrokerRegistration, Endpoint, MetadataImage, MetadataLog, MetadataRecord, PartitionState, TopicMeta,
};
use crate::cluster::quorum::{Quorum, QuorumSettings, QuorumStatus};
use crate::config::{self, BrokerConfig, ConfigError, LogConfig};
use crate::log::Log;
use crate::partition::Partition;
use crate::telemetry::{ClientTelemetry, Subscription, SubscriptionError};

pub mod links;
mod publish;
mod replication;
pub mod throttle;

/// Written at clean shutdown, removed at start-up: its absence means logs need recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".weir_cleanshutdown";
const METADATA_DIR: &str = "__cluster_metadata-0";
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME: usize = 249;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A topic and its partitions.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    /// The partitions with a replica on this broker, by index.
    pub partitions: Vec<Arc<Partition>>,
    /// How many partitions the topic has (on all brokers).
    pub partition_count: i32,
    /// Each partition's replicas, leader and ISR (empty: all on this one broker).
    pub states: Vec<PartitionState>,
    /// Bytes in and out, kept across the rebuilds that config and partition changes make.
    pub traffic: Arc<TopicTraffic>,
}

/// Record bytes appended to and fetched from a topic (for metrics).
#[derive(Debug, Default)]
pub struct TopicTraffic {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Topic {
    /// A topic as metadata describes it, with the partitions this broker opened.
    fn of(meta: &TopicMeta, partitions: Vec<Arc<Partition>>, traffic: Arc<TopicTraffic>) -> Topic {
        Topic {
            name: meta.name.clone(),
            id: meta.id,
            configs: meta.configs.clone(),
            partitions,
            partition_count: meta.partitions,
            states: meta.states.clone(),
            traffic,
        }
    }

    /// A partition with a replica on this broker.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        // partitions are kept in index order, usually all of them: look where it would be
        // first (a fetch of thousands of partitions asks for each)
        if let Some(p) = usize::try_from(index).ok().and_then(|i| self.partitions.get(i)).filter(|p| p.index == index) {
            return Some(p);
        }
        self.partitions.binary_search_by_key(&index, |p| p.index).ok().map(|i| &self.partitions[i])
    }

    /// Whether the topic has partition `index` (on any broker).
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partition_count).contains(&index)
    }

    /// The partition for a client's request, which only its leader serves: Kafka's
    /// UNKNOWN_TOPIC_OR_PARTITION for one the topic does not have, NOT_LEADER_OR_FOLLOWER
    /// for one another broker leads.
    pub fn local(&self, index: i32) -> Result<&Arc<Partition>, ResponseError> {
        match self.partition(index) {
            Some(p) if p.is_leader() => Ok(p),
            Some(_) => Err(ResponseError::NotLeaderOrFollower),
            None if self.has_partition(index) => Err(ResponseError::NotLeaderOrFollower),
            None => Err(ResponseError::UnknownTopicOrPartition),
        }
    }

    /// The partition for a consumer's fetch (v11+, KIP-392): its leader, or a follower of it
    /// here, which serves what it has up to its high watermark.
    pub fn readable(&self, index: i32) -> Result<&Arc<Partition>, ResponseError> {
        match self.partition(index) {
            Some(p) if p.is_follower() => Ok(p),
            _ => self.local(index),
        }
    }

    /// The replicas of a partition, the leader first.
    pub fn replicas_of(&self, index: i32, this_broker: i32) -> Vec<i32> {
        self.state(index).map_or_else(|| vec![this_broker], |s| s.replicas.clone())
    }

    /// A partition's replicas, leader and ISR; `None` for a topic from before clusters (all
    /// on this broker).
    pub fn state(&self, index: i32) -> Option<&PartitionState> {
        usize::try_from(index).ok().and_then(|i| self.states.get(i))
    }

    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// Kafka's internal topics: hidden from auto-creation, flagged internal in Metadata.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::coordinator::group::OFFSETS_TOPIC || name == "__transaction_state"
}

/// Admin failures, each mapping to the Kafka error code Kafka would send.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("Topic deletion is disabled.")]
    DeletionDisabled,
    #[error("Authorization failed.")]
    TopicAuthorizationFailed,
    #[error("Cluster authorization failed.")]
    ClusterAuthorizationFailed,
    #[error("Group authorization failed.")]
    GroupAuthorizationFailed,
    #[error("Broker ID {0} is not currently registered")]
    BrokerIdNotRegistered(i32),
    #[error("Node {0} is already a voter of the metadata quorum.")]
    DuplicateVoter(i32),
    #[error("Node {0} is not a voter of the metadata quorum.")]
    VoterNotFound(i32),
    #[error("Node {0} did not catch up with the metadata log in time; it was not added.")]
    VoterTimedOut(i32),
    #[error("The cluster id in the request does not match this cluster's.")]
    InconsistentClusterId,
    #[error("No active controller could make the change.")]
    NotController,
    #[error("The leader epoch is not the partition's current one.")]
    FencedLeaderEpoch,
    #[error("The partition epoch is not the partition's current one.")]
    InvalidUpdateVersion,
    /// A feature level UpdateFeatures may not set (Kafka's reason as the message).
    #[error("{0}")]
    FeatureUpdate(String),
    /// A failure the active controller reported for a forwarded change.
    #[error("{message}")]
    Remote { code: i16, message: String },
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
}

impl AdminError {
    pub fn code(&self) -> i16 {
        let e = match self {
            AdminError::Remote { code, .. } => return *code,
            AdminError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            AdminError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            AdminError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            AdminError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            AdminError::InvalidConfig(_) => ResponseError::InvalidConfig,
            AdminError::InvalidRequest(_) => ResponseError::InvalidRequest,
            AdminError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            AdminError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
            AdminError::DeletionDisabled => ResponseError::TopicDeletionDisabled,
            AdminError::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
            AdminError::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
            AdminError::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
            AdminError::BrokerIdNotRegistered(_) => ResponseError::BrokerIdNotRegistered,
            AdminError::DuplicateVoter(_) => ResponseError::DuplicateVoter,
            AdminError::VoterNotFound(_) => ResponseError::VoterNotFound,
            AdminError::VoterTimedOut(_) => ResponseError::RequestTimedOut,
            AdminError::InconsistentClusterId => ResponseError::InconsistentClusterId,
            AdminError::NotController => ResponseError::NotController,
            AdminError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
            AdminError::InvalidUpdateVersion | AdminError::FeatureUpdate(_) => ResponseError::InvalidUpdateVersion,
            AdminError::Storage(_) => ResponseError::KafkaStorageError,
        };
        e.code()
    }
}

impl From<ConfigError> for AdminError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::InvalidValue { key, value, reason } => {
                AdminError::InvalidConfig(format!("Invalid value {value} for configuration {key}: {reason}"))
            }
            other => AdminError::InvalidConfig(other.to_string()),
        }
    }
}

/// Checks a topic name as Kafka's `Topic.validate` does.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    let bad = |why: String| Err(AdminError::InvalidTopic(why));
    if name.is_empty() {
        return bad("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return bad("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME {
        return bad(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-') {
        return bad(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A broker as a client reaches it.
#[derive(Debug, Clone)]
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The brokers and controller a client is told of.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub brokers: Vec<BrokerEndpoint>,
    pub controller: i32,
}

impl ClusterView {
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.iter().any(|b| b.id == id)
    }
}

/// A topic to create, as CreateTopics and auto-creation ask.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Manual replica assignment (CreateTopics `assignments`), partition by partition; empty
    /// for the controller to place the replicas.
    #[serde(default)]
    pub assignments: Vec<Vec<i32>>,
}

pub struct Broker {
    config: Arc<RwLock<BrokerConfig>>,
    /// Bumped by every dynamic broker config change, for parts that cache what they read.
    config_generation: AtomicU64,
    pub cluster_id: String,
    pub node_id: i32,
    /// New at every start, so the controller tells this run from an earlier one.
    incarnation: Uuid,
    data_dir: PathBuf,
    /// `HOST:PORT` advertised to the clients of each listener, by listener name.
    advertised: RwLock<BTreeMap<String, (String, i32)>>,
    /// This node's part of the metadata quorum, and the controller when it leads.
    controller: Arc<Controller>,
    /// This broker itself, for the tasks it starts (follower fetchers).
    me: std::sync::OnceLock<std::sync::Weak<Broker>>,
    /// What of the metadata image has been brought into the broker (see `publish`).
    published: tokio::sync::Mutex<publish::Published>,
    /// Brokers fenced lately, with when this broker saw it: still listed to clients for
    /// [`FENCED_BROKER_LISTED_FOR`].
    fenced_lately: parking_lot::Mutex<HashMap<i32, Instant>>,
    topics: DashMap<String, Arc<Topic>>,
    topic_names: DashMap<Uuid, String>,
    clean_start: bool,
    /// Next producer id to hand out and the end of the block it comes from.
    producer_ids: parking_lot::Mutex<(i64, i64)>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<crate::coordinator::group::GroupCoordinator>,
    /// Transactions by transactional id.
    pub txns: Arc<crate::coordinator::txn::TxnCoordinator>,
    /// Share groups' partition state and share sessions (KIP-932).
    pub shares: Arc<crate::share::ShareManager>,
    /// Request, connection and fsync metrics (Prometheus).
    pub metrics: crate::metrics::Metrics,
    /// SCRAM credentials, ACLs and the authorizer.
    pub security: crate::security::Security,
    /// Client telemetry (KIP-714) subscriptions and pushed metrics.
    pub telemetry: ClientTelemetry,
    /// `GROUP` resource config overrides by group id.
    group_configs: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    /// What this broker sends to, and fetches as, out-of-sync throttled replicas (KIP-73).
    pub leader_quota: throttle::ReplicationQuota,
    pub follower_quota: throttle::ReplicationQuota,
    /// Connections to the other brokers (inter-broker listener), and replica fetch failures.
    pub links: links::BrokerLinks,
    /// The replica fetchers: per source broker, the partitions this broker follows there.
    pub fetchers: crate::replica::FetcherManager,
    /// Followers' incremental fetch sessions with this broker as their leader (KIP-227).
    pub fetch_sessions: crate::replica::fetch_sessions::FetchSessions,
    /// Where partitions report failed writes and fsyncs (`crate::replica::storage`).
    pub storage_failures: crate::replica::storage::StorageFailures,
}

/// How often partitions are checked against their `flush.ms`.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a broker waits for its metadata quorum to have a leader at start-up before it
/// says so (a voter waits on for the others; a quorum of one gives up).
const QUORUM_START_WAIT: Duration = Duration::from_secs(10);
/// How this broker reaches the others. A broker alone has no others: a listener it cannot
/// use for them does not keep it from starting.
fn inter_broker_link(config: &BrokerConfig, node_id: i32, single: bool) -> anyhow::Result<PeerLink> {
    match crate::client::peers::inter_broker(config, node_id) {
        Ok(link) => Ok(link),
        Err(_) if single => Ok(PeerLink::plaintext(&crate::client::peers::inter_broker_listener_name(config))),
        Err(e) => Err(anyhow::anyhow!("cannot connect to other brokers: {e}")),
    }
}

/// How often start-up checks on a quorum that has no leader yet.
const QUORUM_POLL: Duration = Duration::from_millis(500);
/// How long Metadata still lists a broker fenced because its process is gone or stopping (one
/// whose leaderships just moved; a broker fenced for silence may be alive behind a partition
/// and is dropped at once, as Kafka does, so that new clients do not try it). librdkafka
/// (2.12) drops a broker missing from a Metadata answer at once, and when that answer also
/// moves a partition away from it the drop races the move and leaves the partition without a
/// leader until its next once-a-second re-query; listed a little longer, the broker is dropped
/// after its partitions have moved (librdkafka re-reads the metadata of a partition whose
/// leader is down every second). Kafka lists a dead broker for its whole session (9 s).
const FENCED_BROKER_LISTED_FOR: Duration = Duration::from_secs(2);
/// How long a stopping broker waits for the controller to move its leaderships.
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How long an admin change waits to reach this broker's image once committed.
const APPLY_WAIT: Duration = Duration::from_secs(10);

impl Broker {
    /// Opens the data directory: cluster identity, metadata, and every partition log.
    pub async fn open(mut config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let data_dir = config.data_dir();
        std::fs::create_dir_all(&data_dir)?;
        let node_id = config.node_id();
        let stored_cluster_id = read_identity(&data_dir, node_id)?;
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_start = marker.exists();
        if clean_start {
            std::fs::remove_file(&marker)?;
        }
        let metadata_dir = data_dir.join(METADATA_DIR);
        let (mut settings, controller_bind) = QuorumSettings::from_config(&config).map_err(anyhow::Error::msg)?;
        settings.cluster_id = stored_cluster_id.clone().or_else(|| configured_cluster_id(&config));
        let links = links::BrokerLinks::new(inter_broker_link(&config, node_id, settings.is_single())?);
        let controller_listener = match controller_bind {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (controller): {e}"))?,
            ),
            None => None,
        };
        let quorum = Quorum::start(&metadata_dir, &settings).await?;
        let shared_config = Arc::new(RwLock::new(config.clone()));
        let controller = Arc::new(Controller::new(quorum, shared_config.clone()));
        if let Some(l) = controller_listener {
            tracing::info!(addr = %l.local_addr()?, voters = ?settings.voters, "metadata quorum listening");
            if let Some(served) = controller.quorum.served() {
                tokio::spawn(crate::cluster::raft_net::serve(l, served, Some(Arc::downgrade(&controller))));
            }
        }
        let mut waited = Duration::ZERO;
        while controller.quorum.wait_for_leader(QUORUM_POLL).await.is_none() {
            waited += QUORUM_POLL;
            if let Some(why) = controller.quorum.refused() {
                anyhow::bail!("the metadata quorum refuses this node ({why}); is controller.quorum.voters right?");
            }
            if settings.is_single() && waited >= QUORUM_START_WAIT {
                anyhow::bail!("the metadata quorum of one elected no leader within {QUORUM_START_WAIT:?}");
            }
            if waited.as_millis().is_multiple_of(QUORUM_START_WAIT.as_millis()) {
                tracing::warn!(voters = ?settings.voters, "waiting for the metadata quorum to elect a leader");
            }
        }
        import_metadata_log(&controller, &metadata_dir).await?;
        let cluster_id = establish_cluster_id(&controller, &data_dir, node_id, stored_cluster_id, &config).await?;
        let image = controller.quorum.image();
        publish::set_dynamic(&mut config, &publish::broker_configs(&image, node_id));
        let listeners = crate::security::listeners::from_config(&config).map_err(anyhow::Error::msg)?;
        let advertised = listeners
            .iter()
            .map(|l| {
                let (host, port) = split_host_port(l.advertised.as_deref().unwrap_or(&l.bind));
                let host = if host == "0.0.0.0" || host == "::" { "127.0.0.1".to_string() } else { host };
                (l.name.clone(), (host, port))
            })
            .collect();
        let security = crate::security::Security::new(&config, image.security.clone()).map_err(anyhow::Error::msg)?;
        let scram_users = config.scram_users().to_vec();
        let telemetry = ClientTelemetry::new(config.get_i64("telemetry.max.bytes").max(1) as usize);
        for (name, configs) in &image.client_metrics {
            match Subscription::parse(name, configs) {
                Ok(s) => telemetry.set_subscription(name, Some(s)),
                Err(e) => {
                    tracing::warn!(subscription = %name, error = %e, "ignoring an invalid client metrics subscription")
                }
            }
        }
        let broker = Broker {
            config: {
                *shared_config.write() = config;
                shared_config
            },
            config_generation: AtomicU64::new(0),
            cluster_id,
            node_id,
            incarnation: Uuid::new_v4(),
            data_dir,
            advertised: RwLock::new(advertised),
            controller,
            published: tokio::sync::Mutex::new(publish::Published::of(&image, node_id)),
            fenced_lately: Default::default(),
            me: std::sync::OnceLock::new(),
            topics: DashMap::new(),
            topic_names: DashMap::new(),
            clean_start,
            producer_ids: parking_lot::Mutex::new((0, 0)),
            groups: Default::default(),
            txns: Default::default(),
            shares: Default::default(),
            metrics: Default::default(),
            security,
            telemetry,
            group_configs: RwLock::new(image.group_configs.clone()),
            leader_quota: Default::default(),
            follower_quota: Default::default(),
            links,
            fetchers: Default::default(),
            fetch_sessions: Default::default(),
            storage_failures: Default::default(),
        };
        broker.set_replication_quotas();
        broker.remove_deleted_dirs();
        broker.load_topics(&image)?;
        broker.add_scram_users(&scram_users).await?;
        let records = broker.groups.load(&broker)?;
        if records > 0 {
            tracing::info!(records, groups = broker.groups.group_ids().len(), "group coordinator loaded");
        }
        let records = broker.txns.load(&broker)?;
        if records > 0 {
            tracing::info!(records, transactional_ids = broker.txns.ids().len(), "transaction coordinator loaded");
        }
        let records = broker.shares.state.load(&broker)?;
        if records > 0 {
            tracing::info!(records, "share-group state loaded");
        }
        let broker = Arc::new(broker);
        // roles (lead, follow) are taken once registration has brought the image up to date
        let _ = broker.me.set(Arc::downgrade(&broker));
        Ok(broker)
    }

    fn load_topics(&self, image: &MetadataImage) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut partitions = 0usize;
        for meta in image.topics.values() {
            let topic = self.open_topic(meta, 0)?;
            partitions += topic.partitions.len();
            self.install(topic);
        }
        tracing::info!(
            topics = image.topics.len(),
            partitions,
            clean = self.clean_start,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "logs loaded"
        );
        Ok(())
    }

    /// Opens the logs of this broker's replicas among partitions `from..meta.partitions` of a
    /// topic, keeping none of the old ones.
    fn open_topic(&self, meta: &TopicMeta, from: i32) -> std::io::Result<Topic> {
        let partitions = (from..meta.partitions)
            .filter(|p| meta.is_replica(*p, self.node_id))
            .map(|p| self.open_partition(meta, p))
            .collect::<std::io::Result<_>>()?;
        Ok(Topic::of(meta, partitions, Default::default()))
    }

    /// Opens (or creates) one partition's log, recovering it as needed.
    fn open_partition(&self, meta: &TopicMeta, p: i32) -> std::io::Result<Arc<Partition>> {
        let dir = self.partition_dir(&meta.name, p);
        let (log, report) = Log::open(&dir, self.log_config(&meta.configs), self.clean_start, now_ms())?;
        if let Some(rec) = report.recovered {
            if rec.truncated_bytes > 0 {
                tracing::warn!(
                    topic = %meta.name,
                    partition = p,
                    truncated_bytes = rec.truncated_bytes,
                    reserved_bytes = rec.reserved_bytes,
                    valid_batches = rec.batches,
                    "recovered log: truncated a torn or corrupt tail"
                );
            } else if rec.reserved_bytes > 0 {
                tracing::info!(
                    topic = %meta.name,
                    partition = p,
                    reserved_bytes = rec.reserved_bytes,
                    valid_batches = rec.batches,
                    "recovered log: released space reserved ahead of writes"
                );
            }
        }
        let partition = Arc::new(Partition::new(meta.name.clone(), p, log));
        partition.on_storage_failure(self.storage_failures.hook());
        if meta.replicas_of(p).is_some_and(|r| r.len() > 1) {
            // a replicated partition has no role until the metadata gives it one: never the
            // lone leader a new partition is by default (a group coordinator would take
            // groups on a partition it then loads from scratch when it really leads)
            partition.go_offline();
        }
        Ok(partition)
    }

    fn install(&self, topic: Topic) {
        self.topic_names.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), Arc::new(topic));
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Finishes deletions interrupted by a crash.
    fn remove_deleted_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("-delete") {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), %err, "cannot remove deleted log");
                }
            }
        }
    }

    pub fn config(&self) -> BrokerConfig {
        self.config.read().clone()
    }

    /// One boolean setting, read without copying the whole configuration (hot paths).
    pub fn config_bool(&self, key: &str) -> bool {
        self.config.read().get_bool(key)
    }

    /// One config value, without copying the whole configuration as [`Broker::config`] does.
    pub fn config_str(&self, key: &str) -> String {
        self.config.read().get(key)
    }

    pub fn config_i64(&self, key: &str) -> i64 {
        self.config.read().get_i64(key)
    }

    /// A `GROUP` config of `group` as a number: the group's override, else the broker value
    /// of its synonym, else its default (`None` for an unknown or non-numeric key).
    pub fn group_config_i64(&self, group: &str, name: &str) -> Option<i64> {
        let def = crate::config::group_def(name)?;
        let overrides = self.group_configs(group);
        crate::config::group_value(&self.config.read(), &overrides, def).0.parse().ok()
    }

    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        LogConfig::resolve(&self.config.read(), overrides)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `HOST:PORT` advertised to clients that came in on `listener`.
    pub fn advertised(&self, listener: &str) -> (String, i32) {
        self.advertised.read().get(listener).cloned().unwrap_or_else(|| ("127.0.0.1".into(), 9092))
    }

    /// Used when a listener was bound to port 0 and not given an advertised address:
    /// advertise the port actually bound.
    pub fn set_advertised_port(&self, listener: &str, port: i32) {
        if let Some(entry) = self.advertised.write().get_mut(listener) {
            entry.1 = port;
        }
    }

    /// Creates the `--add-scram` users, skipping those whose credential already holds that
    /// password and iteration count (so restarts with the same flags change nothing).
    async fn add_scram_users(&self, users: &[crate::security::scram::ScramUser]) -> anyhow::Result<()> {
        use crate::security::scram::Credential;
        for u in users {
            let existing = self.security.credential(&u.name, u.mechanism);
            if existing.is_some_and(|c| c.iterations == u.iterations && c.matches_password(u.mechanism, &u.password)) {
                continue;
            }
            let record = MetadataRecord::ScramCredential {
                user: u.name.clone(),
                mechanism: u.mechanism,
                credential: Credential::new(u.mechanism, &u.password, u.iterations),
            };
            self.record_security(&[record]).await?;
            tracing::info!(user = %u.name, mechanism = u.mechanism.name(), "added SCRAM user");
        }
        Ok(())
    }

    /// Appends security records (credentials, ACLs) durably and applies them.
    pub async fn record_security(&self, records: &[MetadataRecord]) -> Result<(), AdminError> {
        self.control(ControllerOp::Records { records: records.to_vec() }).await.map(|_| ())
    }

    /// Waits (up to `timeout`) until this broker has every metadata change the active
    /// controller had committed when asked: a read barrier for a decision that must see
    /// configs a client may have set on another broker an instant before (a new
    /// share-partition's start offset follows the group's `share.auto.offset.reset`).
    pub async fn catch_up_metadata(&self, timeout: Duration) {
        if self.controller.quorum.single {
            return;
        }
        let Ok(Ok(status)) = tokio::time::timeout(timeout, self.describe_quorum()).await else { return };
        let Ok(last) = u64::try_from(status.high_watermark - 1) else { return };
        if self.controller.quorum.wait_applied(last, timeout).await {
            if let Err(e) = self.publish().await {
                tracing::debug!(error = %e, "metadata not published after catching up");
            }
        }
    }

    /// Makes an admin change through the active controller and waits until this broker has
    /// it (so the next request on this broker sees it).
    pub(crate) async fn control(&self, op: ControllerOp) -> Result<Outcome, AdminError> {
        let (outcome, index) = self.controller.submit(&op).await?;
        if !self.controller.quorum.wait_applied(index, APPLY_WAIT).await {
            return Err(AdminError::NotController);
        }
        self.publish().await?;
        Ok(outcome)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        let name = self.topic_names.get(id)?.clone();
        self.topic(&name)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics.iter().map(|t| t.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Checks a topic creation without performing it (against this broker's image; the
    /// controller checks again); returns the resolved partition count, replication factor and
    /// validated configs.
    pub fn check_new_topic(&self, t: &NewTopic) -> Result<(i32, i16, BTreeMap<String, String>), AdminError> {
        crate::cluster::controller::check_new_topic(&self.controller.quorum.state.image.read(), &self.config(), t)
    }

    /// Creates a topic: committed by the controller, then its partition logs opened here.
    pub async fn create_topic(&self, t: &NewTopic) -> Result<Arc<Topic>, AdminError> {
        self.control(ControllerOp::CreateTopic { topic: t.clone() }).await?;
        self.topic(&t.name).ok_or(AdminError::UnknownTopic)
    }

    /// Deletes a topic: committed by the controller, then its files removed here.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, AdminError> {
        match self.control(ControllerOp::DeleteTopic { name: name.to_string() }).await? {
            Outcome::Topic { id } => Ok(id),
            other => Err(AdminError::InvalidRequest(format!("unexpected controller outcome {other:?}"))),
        }
    }

    /// Grows a topic to `count` partitions.
    /// Grows a topic to `count` partitions; `assignments` (one replica list per new
    /// partition) places them by hand.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let topic = self.topic(name).ok_or(AdminError::UnknownTopic)?;
        let current = topic.partition_count;
        crate::cluster::controller::check_partition_growth(
            &self.metadata_image(),
            current,
            count,
            assignments.as_deref(),
        )?;
        if validate_only {
            return Ok(());
        }
        let assignments = assignments.unwrap_or_default();
        self.control(ControllerOp::CreatePartitions { name: name.to_string(), count, assignments }).await.map(|_| ())
    }

    /// Takes the replication throttle rates from the config (at start and when the dynamic
    /// broker configs change).
    fn set_replication_quotas(&self) {
        let c = self.config.read();
        self.leader_quota.set_rate(c.get_i64("leader.replication.throttled.rate"));
        self.follower_quota.set_rate(c.get_i64("follower.replication.throttled.rate"));
    }

    /// AddRaftVoter / RemoveRaftVoter through the active controller (`addr`: the node's
    /// controller listener; `None` removes it); a new voter gets `timeout_ms` to catch up.
    pub async fn change_voters(&self, id: i32, addr: Option<String>, timeout_ms: u64) -> Result<(), AdminError> {
        let op = match addr {
            Some(addr) => ControllerOp::AddVoter { id, addr, timeout_ms },
            None => ControllerOp::RemoveVoter { id },
        };
        self.controller.submit(&op).await.map(|_| ())
    }

    /// UpdateFeatures through the controller (all or none).
    pub async fn update_features(&self, updates: Vec<FeatureUpdate>, validate_only: bool) -> Result<(), AdminError> {
        self.control(ControllerOp::UpdateFeatures { updates, validate_only }).await.map(|_| ())
    }

    /// DescribeQuorum as the active controller answers it (here, or asked of it).
    pub async fn describe_quorum(&self) -> Result<QuorumStatus, AdminError> {
        match self.controller.submit(&ControllerOp::DescribeQuorum).await? {
            (Outcome::Quorum { status }, _) => Ok(status),
            (other, _) => Err(AdminError::InvalidRequest(format!("unexpected controller outcome {other:?}"))),
        }
    }

    /// UnregisterBroker through the controller.
    pub async fn unregister_broker(&self, id: i32) -> Result<(), AdminError> {
        self.control(ControllerOp::UnregisterBroker { id }).await.map(|_| ())
    }

    /// ElectLeaders through the controller: each partition's result.
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<PartitionResult>, AdminError> {
        self.control_partitions(ControllerOp::ElectLeaders { unclean, partitions }).await
    }

    /// AlterPartitionReassignments through the controller: each partition's result.
    pub async fn reassign(
        &self,
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_rf_change: bool,
    ) -> Result<Vec<PartitionResult>, AdminError> {
        self.control_partitions(ControllerOp::Reassign { partitions, allow_rf_change }).await
    }

    async fn control_partitions(&self, op: ControllerOp) -> Result<Vec<PartitionResult>, AdminError> {
        match self.control(op).await? {
            Outcome::Partitions { results } => Ok(results),
            other => Err(AdminError::InvalidRequest(format!("unexpected controller outcome {other:?}"))),
        }
    }

    /// Replaces a topic's config overrides (already validated by the caller).
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), AdminError> {
        self.control(ControllerOp::TopicConfigs { name: name.to_string(), configs }).await.map(|_| ())
    }

    /// A group's config overrides (empty when it has none).
    pub fn group_configs(&self, group: &str) -> BTreeMap<String, String> {
        self.group_configs.read().get(group).cloned().unwrap_or_default()
    }

    /// The groups that have config overrides.
    pub fn groups_with_configs(&self) -> Vec<String> {
        self.group_configs.read().keys().cloned().collect()
    }

    /// Replaces a group's config overrides (each already checked against its type), after
    /// Kafka's checks against the broker's bounds.
    pub async fn set_group_configs(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        config::validate_group_configs(&self.config(), &configs).map_err(AdminError::InvalidConfig)?;
        if validate_only {
            return Ok(());
        }
        self.control(ControllerOp::GroupConfigs { group: group.to_string(), configs }).await.map(|_| ())
    }

    /// Replaces a client telemetry subscription's configs (validated here; empty removes it),
    /// as IncrementalAlterConfigs on a `CLIENT_METRICS` resource does.
    pub async fn set_client_metrics(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        Subscription::parse(name, &configs).map_err(|e| match e {
            SubscriptionError::Request(m) => AdminError::InvalidRequest(m),
            SubscriptionError::Config(m) => AdminError::InvalidConfig(m),
        })?;
        if validate_only {
            return Ok(());
        }
        self.control(ControllerOp::ClientMetrics { name: name.to_string(), configs }).await.map(|_| ())
    }

    /// Changes with every dynamic broker config update.
    pub fn config_generation(&self) -> u64 {
        self.config_generation.load(Ordering::Relaxed)
    }

    /// Replaces dynamic broker config overrides (already validated by the caller): the
    /// cluster-wide defaults, or with `node` that broker's own; every topic's settings are
    /// resolved again as the change is published.
    pub async fn set_broker_configs(
        &self,
        configs: BTreeMap<&'static str, String>,
        node: Option<i32>,
    ) -> Result<(), AdminError> {
        let configs = configs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.control(ControllerOp::BrokerConfigs { configs, node }).await.map(|_| ())
    }

    /// Hands out a producer id never used before, asking the controller for a new block when
    /// the current one is used up (so ids stay unique across restarts and brokers).
    pub async fn allocate_producer_id(&self) -> Result<i64, AdminError> {
        loop {
            {
                let mut ids = self.producer_ids.lock();
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
            }
            if let Outcome::ProducerIds { start, end } = self.control(ControllerOp::AllocateProducerIds).await? {
                let mut ids = self.producer_ids.lock();
                if ids.0 >= ids.1 {
                    *ids = (start, end);
                }
            }
        }
    }

    /// Runs retention over every partition.
    pub fn apply_retention(&self) {
        let now = now_ms();
        let producer_expiration = self.config.read().get_i64("producer.id.expiration.ms");
        for topic in self.topics() {
            for p in &topic.partitions {
                let expired = p.log_mut().remove_expired_producers(now, producer_expiration);
                if expired > 0 {
                    tracing::debug!(topic = %topic.name, partition = p.index, expired, "expired producer ids");
                }
                match p.log_mut().apply_retention(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(topic = %topic.name, partition = p.index, segments = n, "retention deleted segments")
                    }
                    Err(err) => {
                        tracing::warn!(topic = %topic.name, partition = p.index, %err, "retention failed")
                    }
                }
            }
        }
    }

    /// Background work: retention on its interval, and `flush.ms` checked every second.
    pub async fn run_background(self: Arc<Self>) {
        let every = self.config.read().get_i64("log.retention.check.interval.ms").max(1);
        let mut retention = tokio::time::interval(Duration::from_millis(every as u64));
        let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
        let cleaner_backoff =
            || Duration::from_millis(self.config.read().get_i64("log.cleaner.backoff.ms").max(10) as u64);
        let mut backoff = cleaner_backoff();
        let mut cleaner = tokio::time::interval(backoff);
        cleaner.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retention.tick().await;
        loop {
            tokio::select! {
                _ = retention.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.apply_retention()).await;
                }
                _ = flush.tick() => self.flush_overdue().await,
                _ = cleaner.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.clean_logs()).await;
                    // log.cleaner.backoff.ms is dynamic
                    if cleaner_backoff() != backoff {
                        backoff = cleaner_backoff();
                        cleaner = tokio::time::interval_at(tokio::time::Instant::now() + backoff, backoff);
                        cleaner.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
            }
        }
    }

    /// Compacts every compacted partition that is dirty enough (blocking).
    pub fn clean_logs(&self) {
        let limit: f64 = self.config.read().get("log.cleaner.io.max.bytes.per.second").parse().unwrap_or(f64::MAX);
        let io_limit = (limit.is_finite() && limit < f64::MAX && limit > 0.0).then_some(limit);
        for topic in self.topics() {
            for p in &topic.partitions {
                match p.clean(now_ms(), false, io_limit) {
                    Ok(Some(st)) => tracing::info!(
                        topic = %topic.name, partition = p.index, segments = st.segments,
                        kept = st.kept_records, removed = st.removed_records,
                        bytes_before = st.bytes_before, bytes_after = st.bytes_after, "cleaned log"
                    ),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(topic = %topic.name, partition = p.index, %err, "log cleaning failed"),
                }
            }
        }
    }

    /// fsyncs every partition whose oldest unflushed data is older than its `flush.ms`.
    async fn flush_overdue(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for p in &topic.partitions {
                let due = {
                    let log = p.log();
                    log.flush_overdue(now).then(|| log.log_end_offset())
                };
                if let Some(leo) = due {
                    if let Err(err) = p.flush_to(leo).await {
                        tracing::error!(topic = %topic.name, partition = p.index, %err, "flush.ms fsync failed");
                    }
                }
            }
        }
    }

    /// This node's part of the metadata quorum and controller.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The metadata image as this broker has applied it.
    pub fn metadata_image(&self) -> parking_lot::RwLockReadGuard<'_, MetadataImage> {
        self.controller.quorum.state.image.read()
    }

    /// The cluster as clients on `listener` are told of it: the live (registered, unfenced)
    /// brokers that have that listener — and those fenced in the last
    /// [`FENCED_BROKER_LISTED_FOR`] — and the broker to send admin requests to. This broker is
    /// always among them.
    pub fn cluster_view(&self, listener: &str) -> ClusterView {
        let image = self.metadata_image();
        let fenced_lately = self.fenced_lately.lock();
        let listed = |id: i32| fenced_lately.get(&id).is_some_and(|t| t.elapsed() < FENCED_BROKER_LISTED_FOR);
        let mut brokers: Vec<BrokerEndpoint> = image
            .brokers
            .values()
            .filter(|b| !b.fenced || b.id == self.node_id || listed(b.id))
            .filter_map(|b| {
                let e = b.endpoint(listener)?;
                Some(BrokerEndpoint { id: b.id, host: e.host.clone(), port: e.port, rack: b.rack.clone() })
            })
            .collect();
        if !brokers.iter().any(|b| b.id == self.node_id) {
            let (host, port) = self.advertised(listener);
            brokers.push(BrokerEndpoint { id: self.node_id, host, port, rack: None });
            brokers.sort_by_key(|b| b.id);
        }
        // Kafka's KRaft brokers name a live broker as the controller, since any of them
        // forwards admin requests to the active one; Weir names the active controller when it
        // is a live broker (its changes then need no hop) and itself otherwise — never -1,
        // which leaves admin clients waiting while the voters elect
        let leader = self.controller.quorum.leader().and_then(|l| i32::try_from(l).ok());
        let controller = leader.filter(|l| brokers.iter().any(|b| b.id == *l)).unwrap_or(self.node_id);
        ClusterView { brokers, controller }
    }

    /// The coordinator of `key` (a group or transactional id) whose state lives in internal
    /// topic `topic`: the leader of the key's partition, as clients on `listener` reach it.
    pub fn coordinator_of(&self, topic: &str, key: &str, listener: &str) -> Result<BrokerEndpoint, ResponseError> {
        let t = self.topic(topic).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let index = crate::coordinator::group::records::partition_for(key, t.partition_count);
        let leader = t.state(index).map_or(self.node_id, |s| s.leader);
        self.cluster_view(listener)
            .brokers
            .into_iter()
            .find(|b| b.id == leader)
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Registers this broker with the controller: its client listeners as advertised, and its
    /// rack. Called once the listeners are bound (their ports known).
    pub async fn register(&self) -> Result<(), AdminError> {
        let endpoints = self
            .advertised
            .read()
            .iter()
            .map(|(listener, (host, port))| Endpoint { listener: listener.clone(), host: host.clone(), port: *port })
            .collect();
        let rack = Some(self.config.read().get("broker.rack")).filter(|r| !r.is_empty());
        let registration = BrokerRegistration {
            id: self.node_id,
            incarnation: self.incarnation,
            endpoints,
            rack,
            ..Default::default()
        };
        self.control(ControllerOp::RegisterBroker { registration }).await.map(|_| ())
    }

    /// Heartbeats to the active controller every `broker.heartbeat.interval.ms`, registering
    /// again when the controller does not know this run of the broker.
    pub async fn run_heartbeats(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.read().get_i64("broker.heartbeat.interval.ms").max(1) as u64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let heartbeat = ControllerOp::Heartbeat { id: self.node_id, incarnation: self.incarnation };
        loop {
            tick.tick().await;
            match self.controller.submit(&heartbeat).await {
                Ok((Outcome::Heartbeat { registered: false }, _)) => {
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "cannot register with the controller");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "heartbeat not delivered"),
            }
        }
    }

    /// Before stopping (SIGTERM, its heartbeats already stopped): asks the controller to
    /// fence this broker now, so its leaderships move and it leaves the ISRs while it still
    /// answers, and clients move to the new leaders with no more than a retry.
    pub async fn controlled_shutdown(&self) {
        if self.controller.quorum.single {
            return;
        }
        let shutdown = self.control(ControllerOp::ControlledShutdown { id: self.node_id });
        match tokio::time::timeout(CONTROLLED_SHUTDOWN_WAIT, shutdown).await {
            Ok(Ok(_)) => tracing::info!("controlled shutdown: leaderships moved"),
            Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown refused; stopping anyway"),
            Err(_) => tracing::warn!("controlled shutdown unanswered; stopping anyway"),
        }
    }

    /// Stops this node's member of the metadata quorum (before the logs close).
    pub async fn stop_quorum(&self) {
        self.controller.quorum.shutdown().await;
    }

    /// Clean shutdown: flush and close every log, then write the clean-shutdown marker.
    pub fn shutdown(&self) -> std::io::Result<()> {
        self.fetchers.shutdown();
        for topic in self.topics() {
            for p in &topic.partitions {
                p.log_mut().close()?;
            }
        }
        let marker = self.data_dir.join(CLEAN_SHUTDOWN_FILE);
        std::fs::write(&marker, b"")?;
        std::fs::File::open(&marker)?.sync_all()?;
        crate::log::sync_dir(&self.data_dir)?;
        tracing::info!("clean shutdown complete");
        Ok(())
    }
}

/// Brings a metadata log written before the quorum existed (`metadata.log`, one broker's
/// records) into the quorum, once: its image is committed as records, then the file is set
/// aside. Importing twice (a crash before the rename) changes nothing, as every record sets
/// state rather than adding to it.
async fn import_metadata_log(controller: &Controller, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("metadata.log");
    if !path.exists() {
        return Ok(());
    }
    let (_, image) = MetadataLog::open(dir)?;
    let records = image.to_records();
    let count = records.len();
    if count > 0 {
        controller.submit(&ControllerOp::Records { records }).await?;
    }
    std::fs::rename(&path, dir.join("metadata.log.imported"))?;
    crate::log::sync_dir(dir)?;
    tracing::info!(records = count, "imported the metadata log into the metadata quorum");
    Ok(())
}

/// Splits `host:port`; a missing or bad port gives 9092.
pub fn split_host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse().unwrap_or(9092)),
        None => (addr.to_string(), 9092),
    }
}

/// Reads the cluster id in `meta.properties` (Kafka's file name and keys), if there is one.
/// A node id that differs from the stored one stops start-up.
fn read_identity(dir: &Path, node_id: i32) -> anyhow::Result<Option<String>> {
    let path = dir.join("meta.properties");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let mut cluster_id = None;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "cluster.id" => cluster_id = Some(v.trim().to_string()),
                "node.id" if v.trim() != node_id.to_string() => {
                    anyhow::bail!("node.id {node_id} does not match node.id {} stored in {}", v.trim(), path.display())
                }
                _ => {}
            }
        }
    }
    Ok(cluster_id)
}

/// Writes `meta.properties` durably.
fn write_identity(dir: &Path, cluster_id: &str, node_id: i32) -> anyhow::Result<()> {
    let text = format!("#Written by weir\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    let tmp = dir.join("meta.properties.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.properties"))?;
    crate::log::sync_dir(dir)?;
    Ok(())
}

/// Agrees on the cluster id with the quorum: the one `stored` in `meta.properties`, the configured one or a new
/// one is proposed, and the cluster's id (the first proposal committed) is recorded. A data
/// directory of another cluster stops start-up.
async fn establish_cluster_id(
    controller: &Controller,
    dir: &Path,
    node_id: i32,
    stored: Option<String>,
    config: &BrokerConfig,
) -> anyhow::Result<String> {
    let configured = configured_cluster_id(config);
    let proposed = stored.clone().or(configured).unwrap_or_else(|| base64_url(Uuid::new_v4().as_bytes()));
    let id = match controller.submit(&ControllerOp::ClusterId { proposed }).await? {
        (Outcome::ClusterId { id }, _) => id,
        other => anyhow::bail!("unexpected controller outcome {other:?}"),
    };
    match stored {
        Some(s) if s != id => anyhow::bail!(
            "this data directory belongs to cluster {s}, but the metadata quorum is cluster {id}; \
             refusing to join another cluster"
        ),
        Some(_) => {}
        None => write_identity(dir, &id, node_id)?,
    }
    Ok(id)
}

/// `cluster.id` when it is set.
fn configured_cluster_id(config: &BrokerConfig) -> Option<String> {
    Some(config.get("cluster.id")).filter(|c| !c.is_empty())
}

/// URL-safe base64 without padding: the form of Kafka's cluster ids.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        assert_eq!(base64_url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64_url(&[0xff; 16]).len(), 22);
    }
}
