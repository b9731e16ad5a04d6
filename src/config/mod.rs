//! Broker and topic configuration, by Kafka's own names.
//!
//! One table ([`BROKER_CONFIGS`], [`TOPIC_CONFIGS`]) describes every key Weir implements: its
//! type, default and documentation. Parsing, precedence (flag > env > file > default),
//! DescribeConfigs and the documented `config/weir.toml` all derive from that table, so a key
//! cannot be supported in one place and forgotten in another. Kafka's other config names come
//! from its own catalogue ([`catalogue`]): accepted, validated and described, with no effect.

pub mod catalogue;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use thiserror::Error;

/// Kafka's config types, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// A value's check beyond its type, as Kafka's validators check it. For list keys a set of
/// choices applies to each item.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    None,
    AtLeast(i64),
    /// An inclusive range, or the single value `or` outside it (`[1,...,9] or -1`).
    Between {
        min: f64,
        max: f64,
        or: Option<f64>,
    },
    OneOf(&'static [&'static str]),
    OneOfIgnoreCase(&'static [&'static str]),
    NonEmpty,
    /// Throttled replicas: `*` or `partition:broker,…`.
    ReplicaList,
    /// Where a record's deduplication id is: `key` or `header:<name>`.
    DedupId,
}

/// How a broker key may change at run time (Kafka's "Update Mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    ReadOnly,
    PerBroker,
    ClusterWide,
}

/// One configuration key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// Kafka has no default for the key: it is described with a null value until set.
    pub null_default: bool,
    pub check: Check,
    /// Broker keys only: whether and where AlterConfigs may change it.
    pub mode: UpdateMode,
    /// Topic keys only: the broker key that supplies this topic key's default.
    pub broker_synonym: Option<&'static str>,
    pub doc: &'static str,
    /// Weir acts on the key; `false` for Kafka names that are only accepted and described.
    pub implemented: bool,
}

impl ConfigDef {
    /// Whether AlterConfigs may change the key at run time.
    pub fn dynamic(&self) -> bool {
        self.mode != UpdateMode::ReadOnly
    }

    pub fn sensitive(&self) -> bool {
        self.kind == ConfigType::Password
    }

    /// Whether DescribeConfigs shows the default as null: Kafka has no default for the key
    /// (Weir's table writes such defaults as "").
    pub fn unset_by_default(&self) -> bool {
        self.null_default || (self.default.is_empty() && catalogue::null_by_default(self.name))
    }
}

const fn broker(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    check: Check,
    dynamic: bool,
    doc: &'static str,
) -> ConfigDef {
    let mode = if dynamic { UpdateMode::ClusterWide } else { UpdateMode::ReadOnly };
    ConfigDef { name, kind, default, null_default: false, check, mode, broker_synonym: None, doc, implemented: true }
}

const fn topic(
    name: &'static str,
    kind: ConfigType,
    broker_synonym: &'static str,
    check: Check,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default: "",
        null_default: false,
        check,
        mode: UpdateMode::ClusterWide,
        broker_synonym: Some(broker_synonym),
        doc,
        implemented: true,
    }
}

/// A topic's throttled-replica list (KIP-73): no broker default.
const fn throttled_replicas(name: &'static str, doc: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        kind: ConfigType::List,
        default: "",
        null_default: false,
        check: Check::ReplicaList,
        mode: UpdateMode::ClusterWide,
        broker_synonym: None,
        doc,
        implemented: true,
    }
}

/// A topic config with a default of its own and no broker synonym.
const fn topic_only(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    check: Check,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        null_default: false,
        check,
        mode: UpdateMode::ClusterWide,
        broker_synonym: None,
        doc,
        implemented: true,
    }
}

use Check::{AtLeast, OneOf};
use ConfigType::{Boolean, Int, Long, String as Str};

const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every broker key Weir understands.
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    broker(
        "listeners",
        Str,
        "PLAINTEXT://127.0.0.1:9092",
        Check::None,
        false,
        "Listeners as NAME://HOST:PORT, comma-separated; the name maps to a security protocol in \
         listener.security.protocol.map (--listen HOST:PORT sets one PLAINTEXT listener).",
    ),
    broker(
        "listener.security.protocol.map",
        Str,
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        Check::None,
        false,
        "Listener name to security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), as NAME:PROTOCOL pairs.",
    ),
    broker(
        "sasl.enabled.mechanisms",
        ConfigType::List,
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        Check::None,
        false,
        "SASL mechanisms offered on SASL listeners (Weir implements PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; \
         Kafka's default GSSAPI is not available).",
    ),
    broker(
        "sasl.jaas.config",
        ConfigType::Password,
        "",
        Check::None,
        false,
        "JAAS login module for SASL (PlainLoginModule or ScramLoginModule): the username and password \
         this broker presents to other brokers and controllers, and PLAIN's user_NAME=\"PASSWORD\" users. \
         Usually given per listener and mechanism: listener.name.LISTENER.MECHANISM.sasl.jaas.config.",
    ),
    broker(
        "sasl.mechanism.inter.broker.protocol",
        Str,
        "GSSAPI",
        Check::None,
        false,
        "SASL mechanism brokers use with each other when the inter-broker listener is SASL_*: PLAIN, \
         SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's default GSSAPI is not available and refused).",
    ),
    broker(
        "sasl.mechanism.controller.protocol",
        Str,
        "GSSAPI",
        Check::None,
        false,
        "SASL mechanism on the controller listener when it is SASL_*: PLAIN, SCRAM-SHA-256 or \
         SCRAM-SHA-512 (GSSAPI is not available and refused).",
    ),
    broker(
        "security.inter.broker.protocol",
        Str,
        "PLAINTEXT",
        OneOf(&["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
        false,
        "Security protocol between brokers when inter.broker.listener.name is unset: brokers use the \
         listener of this name.",
    ),
    broker(
        "ssl.endpoint.identification.algorithm",
        Str,
        "https",
        Check::None,
        false,
        "https: a broker connecting to another broker or controller over TLS checks the host name \
         against the peer's certificate; empty: it does not.",
    ),
    broker(
        "ssl.principal.mapping.rules",
        Str,
        "DEFAULT",
        Check::None,
        false,
        "How a client or broker certificate's subject becomes its principal (KIP-371): \
         RULE:pattern/replacement/[LU] rules tried in order, DEFAULT for the whole RFC 2253 subject; a \
         subject no rule matches is refused.",
    ),
    broker(
        "connections.max.reauth.ms",
        Long,
        "0",
        AtLeast(0),
        false,
        "SASL session lifetime (KIP-368): clients must re-authenticate within it or are disconnected; 0: no limit.",
    ),
    broker(
        "ssl.keystore.type",
        Str,
        "PEM",
        OneOf(&["PEM"]),
        false,
        "Format of the key store: PEM (Weir reads PEM only).",
    ),
    broker(
        "ssl.keystore.location",
        Str,
        "",
        Check::None,
        false,
        "PEM file holding the listener's private key and certificate chain.",
    ),
    broker(
        "ssl.keystore.certificate.chain",
        ConfigType::Password,
        "",
        Check::None,
        false,
        "The listener's certificate chain as PEM text (instead of ssl.keystore.location).",
    ),
    broker(
        "ssl.keystore.key",
        ConfigType::Password,
        "",
        Check::None,
        false,
        "The listener's unencrypted private key as PEM text (instead of ssl.keystore.location).",
    ),
    broker(
        "ssl.key.password",
        ConfigType::Password,
        "",
        Check::None,
        false,
        "Password of an encrypted private key; not supported (use an unencrypted PEM key).",
    ),
    broker("ssl.truststore.type", Str, "PEM", OneOf(&["PEM"]), false, "Format of the trust store: PEM."),
    broker(
        "ssl.truststore.location",
        Str,
        "",
        Check::None,
        false,
        "PEM file of the CA certificates that client certificates must chain to.",
    ),
    broker(
        "ssl.truststore.certificates",
        ConfigType::Password,
        "",
        Check::None,
        false,
        "CA certificates as PEM text (instead of ssl.truststore.location).",
    ),
    broker(
        "ssl.client.auth",
        Str,
        "none",
        OneOf(&["required", "requested", "none"]),
        false,
        "Client certificates on TLS listeners: required, requested, or none. A verified certificate's \
         subject (RFC 2253, e.g. CN=alice,O=Example) is the principal.",
    ),
    broker(
        "quota.window.num",
        Int,
        "11",
        AtLeast(1),
        false,
        "Number of samples in the window client quotas are measured over.",
    ),
    broker("quota.window.size.seconds", Int, "1", AtLeast(1), false, "Length of each client-quota sample."),
    broker(
        "authorizer.class.name",
        Str,
        "",
        Check::None,
        false,
        "Empty: no authorization. 'acl' (or Kafka's org.apache.kafka.metadata.authorizer.StandardAuthorizer): \
         check every request against the ACLs.",
    ),
    broker(
        "super.users",
        Str,
        "",
        Check::None,
        false,
        "Principals allowed everything, separated by semicolons, e.g. User:admin;User:CN=ops.",
    ),
    broker(
        "allow.everyone.if.no.acl.found",
        Boolean,
        "false",
        Check::None,
        false,
        "With the authorizer on: whether a resource that has no ACLs at all is open to everybody.",
    ),
    broker(
        "metrics.listener",
        Str,
        "",
        Check::None,
        false,
        "Weir: HOST:PORT of the Prometheus endpoint GET /metrics (the --metrics flag); empty: off.",
    ),
    broker(
        "advertised.listeners",
        Str,
        "",
        Check::None,
        false,
        "Per listener, NAME://HOST:PORT returned in Metadata to clients that came in on that listener; a \
         listener not named here advertises its bound address (--advertise HOST:PORT: the PLAINTEXT listener).",
    ),
    broker(
        "log.dirs",
        Str,
        "./data",
        Check::None,
        false,
        "Directory holding partition logs and the metadata log (--data-dir).",
    ),
    broker("node.id", Int, "1", AtLeast(0), false, "This broker's id (--node-id)."),
    broker(
        "process.roles",
        ConfigType::List,
        "",
        Check::None,
        false,
        "broker,controller: a voter of the metadata quorum that also serves clients (Kafka's combined \
         mode); broker: a broker that follows the quorum; empty: a single broker that is its own \
         controller, the quorum settings unused.",
    ),
    broker(
        "controller.quorum.voters",
        ConfigType::List,
        "",
        Check::None,
        false,
        "The metadata quorum's voters as ID@HOST:PORT,… (their CONTROLLER listeners). Brokers started \
         with the same voters and empty data directories form a cluster; no format step.",
    ),
    broker(
        "controller.quorum.bootstrap.servers",
        ConfigType::List,
        "",
        Check::None,
        false,
        "HOST:PORT of controllers to join through (KIP-853): a controller started with these and no \
         controller.quorum.voters waits until AddRaftVoter adds it to the running quorum.",
    ),
    broker(
        "controller.listener.names",
        Str,
        "",
        Check::None,
        false,
        "The listener (in listeners) that voters serve the metadata quorum on, e.g. CONTROLLER; not a \
         client listener.",
    ),
    broker(
        "controller.quorum.election.timeout.ms",
        Int,
        "1000",
        AtLeast(0),
        false,
        "How long a voter waits without hearing from the quorum leader before it stands for election \
         (randomized up to twice this).",
    ),
    broker(
        "inter.broker.listener.name",
        Str,
        "",
        Check::None,
        false,
        "The listener other brokers use to reach this one; empty: the first client listener.",
    ),
    broker(
        "num.replica.fetchers",
        Int,
        "1",
        AtLeast(1),
        false,
        "Replica fetchers per source broker: each holds one connection to that broker and fetches \
         all of its partitions in one request (a partition goes to one by a hash, as in Kafka). \
         Read at start-up.",
    ),
    broker(
        "replica.fetch.max.bytes",
        Int,
        "1048576",
        AtLeast(0),
        false,
        "The most a follower fetches of one partition per request (at least one whole batch).",
    ),
    broker(
        "replica.fetch.response.max.bytes",
        Int,
        "10485760",
        AtLeast(0),
        false,
        "The most a follower's fetch brings back for all of its partitions together (at least one \
         whole batch).",
    ),
    broker(
        "replica.fetch.min.bytes",
        Int,
        "1",
        Check::None,
        false,
        "Bytes a follower's fetch waits for at the leader before it is answered.",
    ),
    broker(
        "replica.fetch.wait.max.ms",
        Int,
        "500",
        Check::None,
        false,
        "How long a follower's fetch waits at the leader for replica.fetch.min.bytes.",
    ),
    broker(
        "replica.fetch.backoff.ms",
        Int,
        "1000",
        AtLeast(0),
        false,
        "How long a follower waits before fetching a partition again after an error, or its \
         leader after a failed connection.",
    ),
    broker(
        "replica.lag.time.max.ms",
        Long,
        "30000",
        AtLeast(0),
        false,
        "A follower that has not caught up with its leader for this long leaves the ISR.",
    ),
    broker(
        "broker.rack",
        Str,
        "",
        Check::None,
        false,
        "This broker's rack: new partitions spread their replicas over racks, and with \
         replica.selector.class a consumer with client.rack reads from a replica in its rack.",
    ),
    broker(
        "replica.selector.class",
        Str,
        "",
        Check::None,
        false,
        "org.apache.kafka.common.replica.RackAwareReplicaSelector: a consumer with client.rack is \
         sent to an in-sync replica in its rack (KIP-392); empty: consumers read from leaders.",
    ),
    broker(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        Check::None,
        true,
        "Whether a partition with no in-sync replica left may be led by an out-of-sync one (it \
         may miss acknowledged records); topics override it.",
    ),
    broker(
        "auto.leader.rebalance.enable",
        Boolean,
        "true",
        Check::None,
        false,
        "The active controller moves leadership back to preferred replicas (the first of each \
         partition's replicas) when a broker's share of partitions led elsewhere passes \
         leader.imbalance.per.broker.percentage.",
    ),
    broker(
        "leader.imbalance.check.interval.seconds",
        Long,
        "300",
        AtLeast(1),
        false,
        "How often the active controller checks leader imbalance.",
    ),
    broker(
        "leader.imbalance.per.broker.percentage",
        Int,
        "10",
        AtLeast(0),
        false,
        "The share (percent) of a broker's preferred partitions that may be led elsewhere before \
         the controller elects the preferred leaders.",
    ),
    broker(
        "leader.replication.throttled.rate",
        Long,
        "9223372036854775807",
        AtLeast(0),
        true,
        "Bytes per second this broker sends, as leader, to followers of the partitions listed in \
         their topic's leader.replication.throttled.replicas (KIP-73).",
    ),
    broker(
        "follower.replication.throttled.rate",
        Long,
        "9223372036854775807",
        AtLeast(0),
        true,
        "Bytes per second this broker fetches, as follower, for the partitions listed in their \
         topic's follower.replication.throttled.replicas (KIP-73).",
    ),
    broker(
        "broker.heartbeat.interval.ms",
        Int,
        "2000",
        AtLeast(1),
        false,
        "How often a broker heartbeats to the active controller.",
    ),
    broker(
        "broker.session.timeout.ms",
        Int,
        "9000",
        AtLeast(1),
        false,
        "A broker without a heartbeat for this long is fenced, and its partition leaderships move.",
    ),
    broker(
        "cluster.id",
        Str,
        "",
        Check::None,
        false,
        "Weir: the id a new cluster takes; empty: the first quorum leader makes one. Every broker \
         records it in meta.properties and refuses brokers of another cluster.",
    ),
    broker(
        "num.partitions",
        Int,
        "1",
        AtLeast(1),
        true,
        "Partitions of a topic created with -1 partitions or auto-created.",
    ),
    broker(
        "default.replication.factor",
        Int,
        "1",
        AtLeast(1),
        true,
        "Replication factor of auto-created topics and CreateTopics with -1.",
    ),
    broker(
        "auto.create.topics.enable",
        Boolean,
        "true",
        Check::None,
        true,
        "Create a topic when Metadata asks for an unknown one and allows auto-creation.",
    ),
    broker("delete.topic.enable", Boolean, "true", Check::None, false, "Whether DeleteTopics is allowed."),
    broker(
        "message.max.bytes",
        Int,
        "1048588",
        AtLeast(0),
        true,
        "Largest record batch accepted (topic default for max.message.bytes).",
    ),
    broker(
        "log.segment.bytes",
        Int,
        "1073741824",
        AtLeast(14),
        true,
        "Segment file size at which a new segment is rolled.",
    ),
    broker(
        "log.roll.ms",
        Long,
        "604800000",
        AtLeast(1),
        true,
        "Age at which a non-empty segment is rolled (log.roll.hours = 168 in Kafka).",
    ),
    broker(
        "log.retention.ms",
        Long,
        "604800000",
        AtLeast(-1),
        true,
        "How long a segment is kept after its newest record; -1 keeps forever.",
    ),
    broker(
        "log.retention.bytes",
        Long,
        "-1",
        AtLeast(-1),
        true,
        "Partition size above which the oldest segments are deleted; -1 means no limit.",
    ),
    broker("log.retention.check.interval.ms", Long, "300000", AtLeast(1), false, "How often retention runs."),
    broker(
        "log.cleanup.policy",
        ConfigType::List,
        "delete",
        OneOf(CLEANUP_POLICIES),
        true,
        "Default cleanup.policy of topics.",
    ),
    broker("log.index.interval.bytes", Int, "4096", AtLeast(0), true, "Bytes of log between two sparse index entries."),
    broker(
        "log.index.size.max.bytes",
        Int,
        "10485760",
        AtLeast(4),
        true,
        "Largest offset/time index file; a full index rolls the segment.",
    ),
    broker(
        "log.flush.interval.messages",
        Long,
        "9223372036854775807",
        AtLeast(1),
        true,
        "fsync a partition after this many unflushed messages (in addition to acks=all fsyncs).",
    ),
    broker(
        "log.flush.interval.ms",
        Long,
        "9223372036854775807",
        AtLeast(0),
        true,
        "fsync a partition when its oldest unflushed data is this old.",
    ),
    broker(
        "log.flush.on.acks.all",
        Boolean,
        "true",
        Check::None,
        true,
        "Weir's durability policy: fsync (group-committed) before replying to acks=all produce.",
    ),
    broker(
        "log.message.timestamp.type",
        Str,
        "CreateTime",
        OneOf(TIMESTAMP_TYPES),
        true,
        "Default message.timestamp.type of topics.",
    ),
    broker(
        "log.message.timestamp.before.max.ms",
        Long,
        "9223372036854775807",
        AtLeast(0),
        true,
        "Largest allowed age of a CreateTime timestamp.",
    ),
    broker(
        "log.message.timestamp.after.max.ms",
        Long,
        "3600000",
        AtLeast(0),
        true,
        "Largest allowed distance of a CreateTime timestamp into the future.",
    ),
    broker(
        "log.cleaner.delete.retention.ms",
        Long,
        "86400000",
        AtLeast(0),
        true,
        "Default delete.retention.ms of topics.",
    ),
    broker(
        "log.cleaner.min.compaction.lag.ms",
        Long,
        "0",
        AtLeast(0),
        true,
        "Default min.compaction.lag.ms of topics.",
    ),
    broker(
        "log.cleaner.min.cleanable.ratio",
        ConfigType::Double,
        "0.5",
        Check::None,
        true,
        "Default min.cleanable.dirty.ratio of topics.",
    ),
    broker(
        "log.cleaner.io.max.bytes.per.second",
        ConfigType::Double,
        "1.7976931348623157e308",
        Check::None,
        true,
        "Bytes per second the cleaner may read; the default is unlimited, as in Kafka.",
    ),
    broker(
        "log.cleaner.backoff.ms",
        Long,
        "15000",
        AtLeast(0),
        true,
        "How often the cleaner looks for compacted partitions to clean.",
    ),
    broker(
        "compression.type",
        Str,
        "producer",
        OneOf(COMPRESSION_TYPES),
        true,
        "Default compression.type of topics; Weir stores batches as the producer sent them.",
    ),
    broker("min.insync.replicas", Int, "1", AtLeast(1), true, "Default min.insync.replicas of topics."),
    broker(
        "socket.request.max.bytes",
        Int,
        "104857600",
        AtLeast(1),
        false,
        "Largest request frame; a larger size prefix closes the connection before allocating.",
    ),
    broker(
        "max.connections",
        Int,
        "2147483647",
        AtLeast(1),
        true,
        "Client connections the broker accepts; more are closed at once.",
    ),
    broker(
        "max.connections.per.ip",
        Int,
        "2147483647",
        AtLeast(1),
        true,
        "Connections accepted from one address; more are closed at once.",
    ),
    broker(
        "max.connections.per.ip.overrides",
        Str,
        "",
        Check::None,
        true,
        "Per-address limits, as 'ip:count,ip:count'.",
    ),
    broker(
        "queued.max.request.bytes",
        Long,
        "-1",
        Check::None,
        false,
        "Bytes of request frames read and not yet served, over all connections (-1: no limit).",
    ),
    broker(
        "connections.max.idle.ms",
        Long,
        "600000",
        AtLeast(1),
        false,
        "Idle connections are closed after this long.",
    ),
    broker(
        "group.initial.rebalance.delay.ms",
        Int,
        "3000",
        AtLeast(0),
        false,
        "Delay of a new classic group's first rebalance, so that members starting together join one generation.",
    ),
    broker(
        "group.min.session.timeout.ms",
        Int,
        "6000",
        AtLeast(0),
        false,
        "Smallest session timeout a group member may ask for.",
    ),
    broker(
        "errors.deadletterqueue.topic.name.prefix",
        Str,
        "dlq.",
        Check::None,
        false,
        "Share groups' dead-letter topics (KIP-1191) must start with this prefix.",
    ),
    broker(
        "errors.deadletterqueue.auto.create.topics.enable",
        Boolean,
        "false",
        Check::None,
        false,
        "Create a share group's dead-letter topic on first use, with errors.deadletterqueue.group.enable=true.",
    ),
    broker(
        "group.consumer.session.timeout.ms",
        Int,
        "45000",
        AtLeast(1),
        false,
        "Session timeout of KIP-848 consumer group members.",
    ),
    broker(
        "group.consumer.heartbeat.interval.ms",
        Int,
        "5000",
        AtLeast(1),
        false,
        "Heartbeat interval KIP-848 consumer group members are told to use.",
    ),
    broker(
        "group.max.session.timeout.ms",
        Int,
        "1800000",
        AtLeast(0),
        false,
        "Largest session timeout a group member may ask for.",
    ),
    broker("group.max.size", Int, "2147483647", AtLeast(1), false, "Most members a classic group may have."),
    broker(
        "group.share.record.lock.duration.ms",
        Int,
        "30000",
        Check::Between { min: 1000.0, max: 3_600_000.0, or: None },
        false,
        "How long a share consumer holds an acquired record (group config share.record.lock.duration.ms).",
    ),
    broker(
        "group.share.min.record.lock.duration.ms",
        Int,
        "15000",
        Check::Between { min: 1000.0, max: 30_000.0, or: None },
        false,
        "Smallest share.record.lock.duration.ms a group may set.",
    ),
    broker(
        "group.share.max.record.lock.duration.ms",
        Int,
        "60000",
        Check::Between { min: 30_000.0, max: 3_600_000.0, or: None },
        false,
        "Largest share.record.lock.duration.ms a group may set.",
    ),
    broker(
        "group.share.delivery.count.limit",
        Int,
        "5",
        Check::Between { min: 2.0, max: 10.0, or: None },
        false,
        "Deliveries after which a share group's record that is released again is archived.",
    ),
    broker(
        "group.share.partition.max.record.locks",
        Int,
        "2000",
        Check::Between { min: 100.0, max: 10_000.0, or: None },
        false,
        "Most in-flight records (acquired, available again, or waiting) per share-partition.",
    ),
    broker(
        "group.share.max.size",
        Int,
        "200",
        Check::Between { min: 1.0, max: 1000.0, or: None },
        false,
        "Most members a share group may have.",
    ),
    broker("group.share.max.share.sessions", Int, "2000", AtLeast(1), false, "Most share sessions a broker keeps."),
    broker(
        "group.share.session.timeout.ms",
        Int,
        "45000",
        AtLeast(1),
        false,
        "Session timeout of share group members.",
    ),
    broker(
        "group.share.heartbeat.interval.ms",
        Int,
        "5000",
        AtLeast(1),
        false,
        "Heartbeat interval share group members are told to use.",
    ),
    broker(
        "group.share.min.session.timeout.ms",
        Int,
        "45000",
        AtLeast(1),
        false,
        "Smallest share.session.timeout.ms a group may set.",
    ),
    broker(
        "group.share.max.session.timeout.ms",
        Int,
        "60000",
        AtLeast(1),
        false,
        "Largest share.session.timeout.ms a group may set.",
    ),
    broker(
        "group.share.min.heartbeat.interval.ms",
        Int,
        "5000",
        AtLeast(1),
        false,
        "Smallest share.heartbeat.interval.ms a group may set.",
    ),
    broker(
        "group.share.max.heartbeat.interval.ms",
        Int,
        "15000",
        AtLeast(1),
        false,
        "Largest share.heartbeat.interval.ms a group may set.",
    ),
    broker(
        "log.weir.dedup.window.ms",
        Long,
        "0",
        AtLeast(0),
        true,
        "Default weir.dedup.window.ms of topics (0: no duplicate detection).",
    ),
    broker("log.weir.dedup.id", Str, "header:message-id", Check::DedupId, true, "Default weir.dedup.id of topics."),
    broker("log.weir.dedup.max.ids", Long, "100000", AtLeast(1), true, "Default weir.dedup.max.ids of topics."),
    broker(
        "share.coordinator.state.topic.num.partitions",
        Int,
        "50",
        AtLeast(1),
        false,
        "Partitions of __share_group_state.",
    ),
    broker(
        "share.coordinator.state.topic.segment.bytes",
        Int,
        "104857600",
        AtLeast(1),
        false,
        "segment.bytes of __share_group_state.",
    ),
    broker(
        "offsets.retention.minutes",
        Int,
        "10080",
        AtLeast(1),
        false,
        "Committed offsets of a group that stayed empty this long are deleted.",
    ),
    broker(
        "offset.metadata.max.bytes",
        Int,
        "4096",
        AtLeast(0),
        false,
        "Largest metadata string of a committed offset.",
    ),
    broker("offsets.topic.segment.bytes", Int, "104857600", AtLeast(14), false, "segment.bytes of __consumer_offsets."),
    broker("offsets.topic.num.partitions", Int, "50", AtLeast(1), false, "Partitions of __consumer_offsets."),
    broker(
        "transaction.max.timeout.ms",
        Int,
        "900000",
        AtLeast(1),
        false,
        "Largest transaction timeout a producer may ask for.",
    ),
    broker("transaction.state.log.num.partitions", Int, "50", AtLeast(1), false, "Partitions of __transaction_state."),
    broker(
        "transaction.state.log.segment.bytes",
        Int,
        "104857600",
        AtLeast(14),
        false,
        "segment.bytes of __transaction_state.",
    ),
    broker(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Int,
        "10000",
        AtLeast(1),
        false,
        "How often transactions past their timeout are looked for and aborted.",
    ),
    broker(
        "transactional.id.expiration.ms",
        Int,
        "604800000",
        AtLeast(1),
        false,
        "A transactional id with no transaction for this long is forgotten.",
    ),
    broker(
        "transaction.partition.verification.enable",
        Boolean,
        "true",
        Check::None,
        true,
        "Refuse transactional produce requests for partitions not added to the transaction (KIP-890).",
    ),
    broker(
        "telemetry.max.bytes",
        Int,
        "1048576",
        AtLeast(1),
        false,
        "Largest client telemetry push (KIP-714) accepted, after compression.",
    ),
    broker(
        "producer.id.expiration.ms",
        Int,
        "86400000",
        AtLeast(1),
        true,
        "A partition forgets an idempotent producer whose last write is older than this.",
    ),
];

/// Every topic key Weir understands, each defaulting to a broker key.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    topic_only(
        "errors.deadletterqueue.group.enable",
        Boolean,
        "false",
        Check::None,
        "Whether share groups may copy the records they give up on to this topic (KIP-1191).",
    ),
    throttled_replicas(
        "leader.replication.throttled.replicas",
        "Replicas (partition:broker, or *) whose leader's sends to followers count against that \
         broker's leader.replication.throttled.rate.",
    ),
    throttled_replicas(
        "follower.replication.throttled.replicas",
        "Replicas (partition:broker, or *) whose fetches from the leader count against that \
         broker's follower.replication.throttled.rate.",
    ),
    topic(
        "unclean.leader.election.enable",
        Boolean,
        "unclean.leader.election.enable",
        Check::None,
        "Overrides the broker's unclean.leader.election.enable for this topic.",
    ),
    topic(
        "cleanup.policy",
        ConfigType::List,
        "log.cleanup.policy",
        OneOf(CLEANUP_POLICIES),
        "delete: retention removes old segments; compact: keep the latest record per key.",
    ),
    topic(
        "compression.type",
        Str,
        "compression.type",
        OneOf(COMPRESSION_TYPES),
        "Final compression of the topic; producer keeps what the producer sent.",
    ),
    topic(
        "delete.retention.ms",
        Long,
        "log.cleaner.delete.retention.ms",
        AtLeast(0),
        "How long tombstones are kept on compacted topics.",
    ),
    topic(
        "flush.messages",
        Long,
        "log.flush.interval.messages",
        AtLeast(1),
        "fsync after this many unflushed messages.",
    ),
    topic("flush.ms", Long, "log.flush.interval.ms", AtLeast(0), "fsync when the oldest unflushed data is this old."),
    topic("index.interval.bytes", Int, "log.index.interval.bytes", AtLeast(0), "Bytes between sparse index entries."),
    topic("max.message.bytes", Int, "message.max.bytes", AtLeast(0), "Largest record batch accepted."),
    topic(
        "message.timestamp.type",
        Str,
        "log.message.timestamp.type",
        OneOf(TIMESTAMP_TYPES),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock.",
    ),
    topic(
        "message.timestamp.before.max.ms",
        Long,
        "log.message.timestamp.before.max.ms",
        AtLeast(0),
        "Largest allowed age of a CreateTime timestamp.",
    ),
    topic(
        "message.timestamp.after.max.ms",
        Long,
        "log.message.timestamp.after.max.ms",
        AtLeast(0),
        "Largest allowed distance of a CreateTime timestamp into the future.",
    ),
    topic(
        "min.compaction.lag.ms",
        Long,
        "log.cleaner.min.compaction.lag.ms",
        AtLeast(0),
        "Records younger than this are not compacted.",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        ConfigType::Double,
        "log.cleaner.min.cleanable.ratio",
        Check::None,
        "Dirty share of the log that triggers cleaning.",
    ),
    topic(
        "min.insync.replicas",
        Int,
        "min.insync.replicas",
        AtLeast(1),
        "Replicas that must acknowledge an acks=all produce.",
    ),
    topic(
        "retention.bytes",
        Long,
        "log.retention.bytes",
        AtLeast(-1),
        "Partition size above which the oldest segments are deleted; -1 means no limit.",
    ),
    topic(
        "retention.ms",
        Long,
        "log.retention.ms",
        AtLeast(-1),
        "How long a segment is kept after its newest record; -1 keeps forever.",
    ),
    topic("segment.bytes", Int, "log.segment.bytes", AtLeast(14), "Segment size at which a new segment is rolled."),
    topic("segment.index.bytes", Int, "log.index.size.max.bytes", AtLeast(4), "Largest index file."),
    topic("segment.ms", Long, "log.roll.ms", AtLeast(1), "Age at which a non-empty segment is rolled."),
    topic(
        "weir.dedup.window.ms",
        Long,
        "log.weir.dedup.window.ms",
        AtLeast(0),
        "How long a record's id is remembered to drop duplicates of it (0: off).",
    ),
    topic("weir.dedup.id", Str, "log.weir.dedup.id", Check::DedupId, "Where a record's id is: key, or header:<name>."),
    topic(
        "weir.dedup.max.ids",
        Long,
        "log.weir.dedup.max.ids",
        AtLeast(1),
        "Ids remembered per partition at most; the oldest are forgotten first.",
    ),
];

/// The configs of a `CLIENT_METRICS` resource, a client telemetry subscription (KIP-714).
/// Their checks are [`crate::telemetry::Subscription::parse`]'s, with Kafka's messages.
pub static CLIENT_METRICS_CONFIGS: &[ConfigDef] = &[
    broker("metrics", ConfigType::List, "", Check::None, true, "Metric name prefixes to push; * for all."),
    broker("interval.ms", ConfigType::Int, "300000", Check::None, true, "Push interval, 100 ms to 1 hour."),
    broker(
        "match",
        ConfigType::List,
        "",
        Check::None,
        true,
        "Clients it applies to: NAME=REGEX selectors on client_id, client_instance_id, client_software_name, \
         client_software_version, client_source_address, client_source_port.",
    ),
];

/// A `GROUP` resource's key: Kafka's default comes from `broker_synonym` when it has one.
const fn group(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    broker_synonym: Option<&'static str>,
    check: Check,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        null_default: false,
        check,
        mode: UpdateMode::ClusterWide,
        broker_synonym,
        doc,
        implemented: true,
    }
}

/// The configs of a `GROUP` resource (Kafka 4's group configs, KIP-848/932/1071). Consumer
/// groups (KIP-848) act on the `consumer.*` ones; the share and streams ones are stored and
/// described. Bounds against the broker's `group.*` minimums and maximums are checked by
/// [`validate_group_configs`].
pub static GROUP_CONFIGS: &[ConfigDef] = &[
    group(
        "consumer.heartbeat.interval.ms",
        Int,
        "",
        Some("group.consumer.heartbeat.interval.ms"),
        AtLeast(1),
        "Heartbeat interval given to the group's members.",
    ),
    group(
        "consumer.session.timeout.ms",
        Int,
        "",
        Some("group.consumer.session.timeout.ms"),
        AtLeast(1),
        "Members that do not heartbeat within this are removed from the group.",
    ),
    group(
        "share.auto.offset.reset",
        Str,
        "latest",
        None,
        Check::None,
        "Where a share group starts: latest, earliest, or by_duration:<ISO-8601 duration>.",
    ),
    group(
        "errors.deadletterqueue.topic.name",
        Str,
        "",
        None,
        Check::None,
        "Dead-letter topic (KIP-1191) for records the group rejects or that reach the delivery-count limit.",
    ),
    group(
        "share.delivery.count.limit",
        Int,
        "",
        Some("group.share.delivery.count.limit"),
        Check::Between { min: 2.0, max: 10.0, or: None },
        "Deliveries after which a record the group keeps releasing is archived.",
    ),
    group(
        "share.heartbeat.interval.ms",
        Int,
        "",
        Some("group.share.heartbeat.interval.ms"),
        AtLeast(1),
        "Heartbeat interval given to a share group's members.",
    ),
    group(
        "share.isolation.level",
        Str,
        "read_uncommitted",
        None,
        OneOf(&["read_committed", "read_uncommitted"]),
        "Whether a share group delivers only committed transactional records.",
    ),
    group(
        "share.partition.max.record.locks",
        Int,
        "",
        Some("group.share.partition.max.record.locks"),
        Check::Between { min: 100.0, max: 10000.0, or: None },
        "Most in-flight records per share-partition of the group.",
    ),
    group(
        "share.record.lock.duration.ms",
        Int,
        "",
        Some("group.share.record.lock.duration.ms"),
        AtLeast(1000),
        "How long a share group member holds an acquired record.",
    ),
    group(
        "share.session.timeout.ms",
        Int,
        "",
        Some("group.share.session.timeout.ms"),
        AtLeast(1),
        "Share group members that do not heartbeat within this are removed.",
    ),
    group(
        "weir.share.release.backoff.max.ms",
        Long,
        "60000",
        None,
        AtLeast(0),
        "Weir: the cap on weir.share.release.backoff.ms as it doubles per delivery.",
    ),
    group(
        "weir.share.release.backoff.ms",
        Long,
        "0",
        None,
        AtLeast(0),
        "Weir: delay before a released or timed-out record is delivered again, doubling with each delivery (0: none).",
    ),
    group(
        "streams.heartbeat.interval.ms",
        Int,
        "",
        Some("group.streams.heartbeat.interval.ms"),
        AtLeast(1),
        "Heartbeat interval given to a streams group's members.",
    ),
    group(
        "streams.num.standby.replicas",
        Int,
        "",
        Some("group.streams.num.standby.replicas"),
        AtLeast(0),
        "Standby replicas per task in a streams group.",
    ),
    group(
        "streams.session.timeout.ms",
        Int,
        "",
        Some("group.streams.session.timeout.ms"),
        AtLeast(1),
        "Streams group members that do not heartbeat within this are removed.",
    ),
];

pub fn group_def(name: &str) -> Option<&'static ConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// A group config's effective value: the group's override, else the broker value of its
/// synonym, else its default.
pub fn group_value(broker: &BrokerConfig, overrides: &BTreeMap<String, String>, def: &ConfigDef) -> (String, bool) {
    if let Some(v) = overrides.get(def.name) {
        return (v.clone(), true);
    }
    let value = def.broker_synonym.map(|b| broker.get(b)).unwrap_or_else(|| def.default.to_string());
    (value, false)
}

/// Kafka's `GroupConfig.validateValues`: each interval and timeout within the broker's bounds
/// for it, heartbeat intervals below session timeouts, standby replicas within the maximum.
pub fn validate_group_configs(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let value = |name: &str| {
        group_def(name).map(|d| group_value(broker, overrides, d).0.parse::<i64>().unwrap_or(0)).unwrap_or(0)
    };
    let bounded = [
        (
            "consumer.heartbeat.interval.ms",
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        ),
        (
            "consumer.session.timeout.ms",
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        ),
        (
            "share.heartbeat.interval.ms",
            "group.share.min.heartbeat.interval.ms",
            "group.share.max.heartbeat.interval.ms",
        ),
        ("share.session.timeout.ms", "group.share.min.session.timeout.ms", "group.share.max.session.timeout.ms"),
        (
            "share.record.lock.duration.ms",
            "group.share.min.record.lock.duration.ms",
            "group.share.max.record.lock.duration.ms",
        ),
        (
            "streams.heartbeat.interval.ms",
            "group.streams.min.heartbeat.interval.ms",
            "group.streams.max.heartbeat.interval.ms",
        ),
        ("streams.session.timeout.ms", "group.streams.min.session.timeout.ms", "group.streams.max.session.timeout.ms"),
    ];
    for (name, min, max) in bounded.into_iter().filter(|(n, _, _)| overrides.contains_key(*n)) {
        if value(name) < broker.get_i64(min) {
            return Err(format!("{name} must be greater than or equal to {min}"));
        }
        if value(name) > broker.get_i64(max) {
            return Err(format!("{name} must be less than or equal to {max}"));
        }
    }
    for kind in ["consumer", "share", "streams"] {
        let (hb, session) = (format!("{kind}.heartbeat.interval.ms"), format!("{kind}.session.timeout.ms"));
        if (overrides.contains_key(&hb) || overrides.contains_key(&session)) && value(&hb) >= value(&session) {
            return Err(format!("{hb} must be less than {session}"));
        }
    }
    if overrides.contains_key("streams.num.standby.replicas")
        && value("streams.num.standby.replicas") > broker.get_i64("group.streams.max.standby.replicas")
    {
        return Err(
            "streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas".into()
        );
    }
    if let Some(reset) = overrides.get("share.auto.offset.reset") {
        let by_duration = reset.strip_prefix("by_duration:").and_then(iso8601_duration_ms).is_some();
        if reset != "latest" && reset != "earliest" && !by_duration {
            return Err(format!("Invalid value {reset} for configuration share.auto.offset.reset"));
        }
    }
    Ok(())
}

/// Milliseconds of an ISO-8601 duration as Java's `Duration.parse` reads it (`PnDTnHnMn.nS`,
/// no negative parts): `share.auto.offset.reset=by_duration:P1DT2H`.
pub fn iso8601_duration_ms(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P').or_else(|| text.strip_prefix('p'))?;
    let (days, time) = match rest.find(['T', 't']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut ms: f64 = 0.0;
    let mut any = false;
    let mut add = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut unit_index = 0usize;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let c = c.to_ascii_uppercase();
            let at = units[unit_index..].iter().position(|(u, _)| *u == c)? + unit_index;
            let value: f64 = number.parse().ok()?;
            ms += value * units[at].1;
            any = true;
            number.clear();
            unit_index = at + 1;
        }
        number.is_empty().then_some(())
    };
    add(days, &[('D', 86_400_000.0)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        add(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    }
    (any && ms.is_finite() && ms < i64::MAX as f64).then_some(ms as i64)
}

pub fn client_metrics_def(name: &str) -> Option<&'static ConfigDef> {
    CLIENT_METRICS_CONFIGS.iter().find(|d| d.name == name)
}

/// Kafka's coarser synonyms of a millisecond broker key, in precedence order, with their unit
/// in milliseconds (`DynamicBrokerConfig.brokerConfigSynonyms`): `log.retention.hours=24` in a
/// `server.properties` habit sets the retention when `log.retention.ms` is not set.
pub fn time_synonyms(key: &str) -> &'static [(&'static str, i64)] {
    match key {
        "log.retention.ms" => &[("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)],
        "log.roll.ms" => &[("log.roll.hours", 3_600_000)],
        "log.roll.jitter.ms" => &[("log.roll.jitter.hours", 3_600_000)],
        "log.flush.interval.ms" => &[("log.flush.scheduler.interval.ms", 1)],
        _ => &[],
    }
}

/// A synonym's value in milliseconds; a negative one (-1: unlimited) stays -1.
fn scale_ms(value: &str, unit_ms: i64) -> String {
    match value.trim().parse::<i64>() {
        Ok(n) if n < 0 => "-1".to_string(),
        Ok(n) => n.saturating_mul(unit_ms).to_string(),
        Err(_) => value.to_string(),
    }
}

/// Every key of one scope: Weir's table, then Kafka's other names.
struct Keys {
    all: Vec<&'static ConfigDef>,
    by_name: HashMap<&'static str, &'static ConfigDef>,
}

impl Keys {
    fn new(weir: &'static [ConfigDef], scope: catalogue::Scope) -> Keys {
        let mut all: Vec<&'static ConfigDef> = weir.iter().collect();
        all.extend(catalogue::kafka_defs(scope).filter(|k| !weir.iter().any(|w| w.name == k.name)));
        let by_name = all.iter().map(|d| (d.name, *d)).collect();
        Keys { all, by_name }
    }
}

static BROKER_KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(BROKER_CONFIGS, catalogue::Scope::Broker));
static TOPIC_KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(TOPIC_CONFIGS, catalogue::Scope::Topic));

/// Every broker key: Weir's and the rest of Kafka's catalogue.
pub fn broker_defs() -> &'static [&'static ConfigDef] {
    &BROKER_KEYS.all
}

/// Every topic key: Weir's and the rest of Kafka's catalogue.
pub fn topic_defs() -> &'static [&'static ConfigDef] {
    &TOPIC_KEYS.all
}

/// Looks a broker key up: Weir's table, then Kafka's catalogue.
pub fn broker_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_KEYS.by_name.get(name).copied()
}

/// Looks a topic key up: Weir's table, then Kafka's catalogue.
pub fn topic_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_KEYS.by_name.get(name).copied()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown config key '{0}'")]
    UnknownKey(String),
    #[error("Unknown topic config name: {0}")]
    UnknownTopicKey(String),
    #[error("invalid value '{value}' for config '{key}': {reason}")]
    InvalidValue { key: String, value: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Checks `value` against `def` and returns it normalised (trimmed; list items joined by `,`).
pub fn validate(def: &ConfigDef, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let invalid = |reason: &str| ConfigError::InvalidValue {
        key: def.name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    match def.kind {
        Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(invalid("expected true or false"));
            }
            return Ok(value.to_ascii_lowercase());
        }
        Int | Long | ConfigType::Short => {
            let n: i64 = value.parse().map_err(|_| invalid("expected an integer"))?;
            let fits = match def.kind {
                Int => i32::try_from(n).is_ok(),
                ConfigType::Short => i16::try_from(n).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(invalid(&format!("out of range for a {}", format!("{:?}", def.kind).to_lowercase())));
            }
            check_number(def.check, n as f64).map_err(|r| invalid(&r))?;
        }
        ConfigType::Double => {
            let x = value.parse::<f64>().map_err(|_| invalid("expected a number"))?;
            check_number(def.check, x).map_err(|r| invalid(&r))?;
        }
        ConfigType::List => {
            let items: Vec<&str> = value.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
            for item in &items {
                check_text(def.check, item).map_err(|r| invalid(&r))?;
            }
            if items.is_empty() && matches!(def.check, Check::NonEmpty) {
                return Err(invalid("must not be empty"));
            }
            return Ok(items.join(","));
        }
        Str | ConfigType::Class | ConfigType::Password => check_text(def.check, value).map_err(|r| invalid(&r))?,
    }
    Ok(value.to_string())
}

/// A number against a bound, with Kafka's wording.
fn check_number(check: Check, x: f64) -> Result<(), String> {
    let (min, max, or) = match check {
        AtLeast(min) => (min as f64, f64::INFINITY, None),
        Check::Between { min, max, or } => (min, max, or),
        _ => return Ok(()),
    };
    if or == Some(x) || (min..=max).contains(&x) {
        return Ok(());
    }
    let show = |v: f64| if v.fract() == 0.0 { format!("{}", v as i64) } else { v.to_string() };
    Err(match or {
        Some(o) => format!("must be between {} and {} or {}", show(min), show(max), show(o)),
        None if x < min => format!("must be at least {}", show(min)),
        None => format!("must be no more than {}", show(max)),
    })
}

/// A string (or one list item) against a set of choices or a format.
fn check_text(check: Check, text: &str) -> Result<(), String> {
    match check {
        OneOf(choices) if !choices.contains(&text) => Err(format!("expected one of {}", choices.join(", "))),
        Check::OneOfIgnoreCase(choices) if !choices.iter().any(|c| c.eq_ignore_ascii_case(text)) => {
            Err(format!("expected one of {} (case insensitive)", choices.join(", ")))
        }
        Check::NonEmpty if text.is_empty() => Err("must not be empty".into()),
        Check::ReplicaList if text != "*" && !is_replica(text) => {
            Err("must be '*' or a list of [partitionId]:[brokerId]".into())
        }
        Check::DedupId if crate::log::dedup::IdSource::parse(text).is_none() => {
            Err("must be 'key' or 'header:<name>'".into())
        }
        _ => Ok(()),
    }
}

fn is_replica(item: &str) -> bool {
    item.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok())
}

/// Where a broker value came from, in DescribeConfigs' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    /// Set dynamically for this broker alone.
    DynamicBroker = 2,
    /// Set dynamically as the cluster-wide default of every broker.
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
    /// A `GROUP` resource's own value.
    Group = 8,
}

/// The broker's effective configuration: static values (flag, env, file) under dynamic
/// overrides set at run time with AlterConfigs — the cluster-wide defaults (resource name
/// "") under this broker's own (resource name its id), as Kafka layers them.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    static_values: BTreeMap<&'static str, String>,
    /// This broker's own dynamic values.
    dynamic_values: BTreeMap<&'static str, String>,
    /// The cluster-wide dynamic defaults.
    dynamic_defaults: BTreeMap<&'static str, String>,
    /// Per-listener overrides, `listener.name.<listener>.<key>` (listener lower-cased), as
    /// Kafka takes them for `ssl.*`, `sasl.*` and `<mechanism>.sasl.jaas.config`.
    listener_values: BTreeMap<String, String>,
    scram_users: Vec<crate::security::scram::ScramUser>,
}

/// Splits `listener.name.<listener>.<key>` into the listener and the key it overrides (with a
/// `<mechanism>.` prefix for `sasl.jaas.config`), checking that the key may be set per
/// listener.
fn listener_override(key: &str) -> Option<Result<(String, String, &'static ConfigDef), ConfigError>> {
    let rest = key.strip_prefix("listener.name.")?;
    let unknown = || ConfigError::UnknownKey(key.to_string());
    let Some((listener, setting)) = rest.split_once('.') else { return Some(Err(unknown())) };
    let base = match setting.split_once(".sasl.") {
        Some((mechanism, tail)) if !mechanism.starts_with("ssl") && !mechanism.is_empty() => format!("sasl.{tail}"),
        _ => setting.to_string(),
    };
    let allowed = base.starts_with("ssl.") || base.starts_with("sasl.") || base == "connections.max.reauth.ms";
    match broker_def(&base).filter(|_| allowed && !listener.is_empty()) {
        Some(def) => Some(Ok((listener.to_ascii_lowercase(), setting.to_string(), def))),
        None => Some(Err(unknown())),
    }
}

impl BrokerConfig {
    /// Builds a config from explicit `(key, value)` pairs layered from lowest to highest
    /// precedence. Later layers win.
    pub fn from_layers<'a>(layers: impl IntoIterator<Item = Vec<(String, String)>>) -> Result<Self, ConfigError>
    where
        Self: 'a,
    {
        let mut cfg = BrokerConfig::default();
        for layer in layers {
            for (key, value) in layer {
                cfg.set_static(&key, &value)?;
            }
        }
        Ok(cfg)
    }

    /// Sets one static value after validating it.
    pub fn set_static(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if let Some(found) = listener_override(key) {
            let (listener, setting, def) = found?;
            let value = validate(def, value)?;
            self.listener_values.insert(format!("{listener}.{setting}"), value);
            return Ok(());
        }
        let def = broker_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        let value = validate(def, value)?;
        self.static_values.insert(def.name, value);
        Ok(())
    }

    /// Replaces the dynamic overrides (AlterConfigs on the broker resource): the cluster-wide
    /// defaults and this broker's own.
    pub fn set_dynamic(&mut self, defaults: BTreeMap<&'static str, String>, own: BTreeMap<&'static str, String>) {
        self.dynamic_defaults = defaults;
        self.dynamic_values = own;
    }

    /// The dynamic values of one level: the cluster-wide defaults, or this broker's own.
    pub fn dynamic_values(&self, cluster_default: bool) -> &BTreeMap<&'static str, String> {
        if cluster_default {
            &self.dynamic_defaults
        } else {
            &self.dynamic_values
        }
    }

    /// The value of `key` and where it came from.
    pub fn lookup(&self, key: &str) -> Option<(String, ConfigSource)> {
        let def = broker_def(key)?;
        for (name, unit_ms) in std::iter::once((def.name, 1)).chain(time_synonyms(def.name).iter().copied()) {
            if let Some(found) = self.own_value(name) {
                return Some(match unit_ms {
                    1 => found,
                    unit => (scale_ms(&found.0, unit), found.1),
                });
            }
        }
        Some((def.default.to_string(), ConfigSource::Default))
    }

    /// The value set for exactly `name` (dynamic, else static), without synonyms or default.
    pub fn own_value(&self, name: &str) -> Option<(String, ConfigSource)> {
        self.set_layers(name).into_iter().next()
    }

    /// Every value set for exactly `name`, highest precedence first: this broker's dynamic
    /// value, the cluster-wide dynamic default, the static value.
    pub fn set_layers(&self, name: &str) -> Vec<(String, ConfigSource)> {
        [
            (&self.dynamic_values, ConfigSource::DynamicBroker),
            (&self.dynamic_defaults, ConfigSource::DynamicDefaultBroker),
            (&self.static_values, ConfigSource::StaticBroker),
        ]
        .into_iter()
        .filter_map(|(values, source)| values.get(name).map(|v| (v.clone(), source)))
        .collect()
    }

    /// The value of `key` for connections of `listener`: its `listener.name.<listener>.<key>`
    /// override, else the broker-wide value.
    pub fn listener_get(&self, listener: &str, key: &str) -> String {
        match self.listener_values.get(&format!("{}.{key}", listener.to_ascii_lowercase())) {
            Some(v) => v.clone(),
            None => self.get(key),
        }
    }

    /// `sasl.jaas.config` for `mechanism` on `listener`:
    /// `listener.name.<listener>.<mechanism>.sasl.jaas.config`, else `sasl.jaas.config`.
    pub fn listener_jaas(&self, listener: &str, mechanism: &str) -> Option<String> {
        let own = format!("{}.sasl.jaas.config", mechanism.to_ascii_lowercase());
        Some(self.listener_get(listener, &own)).filter(|v| !v.trim().is_empty()).or_else(|| {
            let global = self.get("sasl.jaas.config");
            (!global.trim().is_empty()).then_some(global)
        })
    }

    /// The value of `key` as a string; empty for an unknown key.
    pub fn get(&self, key: &str) -> String {
        self.lookup(key).map(|(v, _)| v).unwrap_or_default()
    }

    /// The value of an Int or Long key. Values were validated when set, so the fallback to
    /// the table default only guards against a key of another type.
    pub fn get_i64(&self, key: &str) -> i64 {
        self.get(key).parse().or_else(|_| broker_def(key).map(|d| d.default.parse()).unwrap_or(Ok(0))).unwrap_or(0)
    }

    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    pub fn node_id(&self) -> i32 {
        self.get_i64("node.id") as i32
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.get("log.dirs"))
    }

    /// The SCRAM users to create at start-up (`--add-scram`).
    pub fn scram_users(&self) -> &[crate::security::scram::ScramUser] {
        &self.scram_users
    }

    pub fn add_scram_user(&mut self, user: crate::security::scram::ScramUser) {
        self.scram_users.push(user);
    }
}

/// Reads a TOML config file: a flat table whose keys are Kafka config names.
pub fn read_config_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = Vec::new();
    flatten("", table, &mut out).map_err(file_err)?;
    Ok(out)
}

/// Flattens nested tables, so both `"log.retention.ms" = 1` and bare dotted keys work.
fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, String)>) -> Result<(), String> {
    for (key, value) in table {
        let key = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        let value = match value {
            toml::Value::Table(t) => {
                flatten(&key, t, out)?;
                continue;
            }
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => format!("{f:?}"),
            other => return Err(format!("key '{key}' has unsupported value {other}")),
        };
        out.push((key, value));
    }
    Ok(())
}

/// The documented default config file (`config/weir.toml`): every broker key, its doc line
/// and its default value.
pub fn default_config_file() -> String {
    let mut out = String::from(
        "# Weir broker configuration: every key Weir understands, set to its default.\n\
         # Keys are Apache Kafka's broker config names. Precedence: --set/flags > WEIR_<NAME>\n\
         # environment variables (WEIR_NUM_PARTITIONS=3) > this file (--config FILE) > defaults.\n\
         # Generated by `weir --print-default-config`; a test keeps it in sync.\n",
    );
    for def in BROKER_CONFIGS {
        let value = match def.kind {
            Boolean | Int | Long | ConfigType::Double => def.default.to_string(),
            _ => format!("{:?}", def.default),
        };
        let dynamic = if def.dynamic() { " (dynamic)" } else { "" };
        out.push_str(&format!("\n# {}{dynamic}\n\"{}\" = {value}\n", def.doc, def.name));
    }
    out
}

/// `docs/kafka-configs.md`: the Kafka config names Weir accepts and describes but does not act
/// on, with Kafka's type, default and update mode.
pub fn kafka_only_configs_markdown() -> String {
    let mode = |d: &ConfigDef| match d.mode {
        UpdateMode::ReadOnly => "read-only",
        UpdateMode::PerBroker => "per-broker",
        UpdateMode::ClusterWide => "cluster-wide",
    };
    let mut out = format!(
        "# Kafka configs Weir accepts and does not act on\n\n\
         Weir knows Apache Kafka {}'s whole broker and topic config catalogue\n\
         (`src/config/kafka_catalogue.tsv`). The names below are accepted in the config file,\n\
         `--set`, CreateTopics and (Incremental)AlterConfigs with Kafka's type, validator and\n\
         update mode, stored, and returned by DescribeConfigs, and they have no effect in Weir:\n\
         they configure parts of Kafka that Weir does differently or not at all (thread pools and\n\
         purgatories, tiered storage, Kerberos and OAuth, the controller quorum, replication).\n\
         Every other Kafka name is implemented: those in `config/weir.toml`, and Kafka's\n\
         coarser synonyms `log.retention.hours`, `log.retention.minutes`, `log.roll.hours` and\n\
         `log.flush.scheduler.interval.ms`, which set the millisecond keys as in Kafka.\n\n\
         Generated by `weir --print-kafka-only-configs`; a test keeps it in sync.\n",
        catalogue::kafka_version()
    );
    for (title, defs) in [("Broker configs", broker_defs()), ("Topic configs", topic_defs())] {
        out.push_str(&format!("\n## {title}\n\n| name | type | Kafka default | update mode |\n|---|---|---|---|\n"));
        for d in defs.iter().filter(|d| !d.implemented) {
            let default = match d.default {
                _ if d.null_default => "null".to_string(),
                "" => "`\"\"`".to_string(),
                v => format!("`{v}`"),
            };
            let kind = format!("{:?}", d.kind).to_lowercase();
            let mode = if title.starts_with("Topic") { "dynamic" } else { mode(d) };
            out.push_str(&format!("| `{}` | {kind} | {default} | {mode} |\n", d.name));
        }
    }
    out
}

/// Reads `WEIR_<NAME>` environment variables: `WEIR_NUM_PARTITIONS=3` sets `num.partitions`.
pub fn read_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("WEIR_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace('_', ".");
        if broker_def(&key).is_some() {
            out.push((key, value));
        }
    }
    out
}

/// A topic's effective settings, resolved from its overrides and the broker defaults.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub index_interval_bytes: u64,
    pub segment_index_bytes: u64,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub compact: bool,
    pub delete: bool,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// In-sync replicas an acks=all produce needs (a replicated partition).
    pub min_insync_replicas: usize,
    /// Duplicate detection by message id (`weir.dedup.*`), when on.
    pub dedup: Option<crate::log::dedup::DedupConfig>,
}

/// Resolves the value of a topic key: the topic's override, else the broker's value of the
/// synonym, else the table default.
pub fn topic_value(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    key: &str,
) -> Option<(String, ConfigSource)> {
    let def = topic_def(key)?;
    if let Some(v) = overrides.get(def.name) {
        return Some((v.clone(), ConfigSource::DynamicTopic));
    }
    match def.broker_synonym.and_then(|b| broker.lookup(b)) {
        Some(found) => Some(found),
        None => Some((def.default.to_string(), ConfigSource::Default)),
    }
}

impl LogConfig {
    pub fn resolve(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
        let s = |k: &str| topic_value(broker, overrides, k).map(|(v, _)| v).unwrap_or_default();
        let n = |k: &str| s(k).parse::<i64>().unwrap_or(0);
        let policy = s("cleanup.policy");
        LogConfig {
            segment_bytes: n("segment.bytes").max(14) as u64,
            segment_ms: n("segment.ms"),
            retention_ms: n("retention.ms"),
            retention_bytes: n("retention.bytes"),
            max_message_bytes: n("max.message.bytes").max(0) as usize,
            index_interval_bytes: n("index.interval.bytes").max(0) as u64,
            segment_index_bytes: n("segment.index.bytes").max(4) as u64,
            log_append_time: s("message.timestamp.type") == "LogAppendTime",
            timestamp_before_max_ms: n("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: n("message.timestamp.after.max.ms"),
            compact: policy.contains("compact"),
            delete: policy.contains("delete"),
            flush_messages: n("flush.messages"),
            flush_ms: n("flush.ms"),
            delete_retention_ms: n("delete.retention.ms"),
            min_compaction_lag_ms: n("min.compaction.lag.ms"),
            min_cleanable_dirty_ratio: s("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            min_insync_replicas: n("min.insync.replicas").max(1) as usize,
            dedup: (n("weir.dedup.window.ms") > 0).then(|| crate::log::dedup::DedupConfig {
                window_ms: n("weir.dedup.window.ms"),
                id: crate::log::dedup::IdSource::parse(&s("weir.dedup.id"))
                    .unwrap_or_else(|| crate::log::dedup::IdSource::Header("message-id".into())),
                max_ids: n("weir.dedup.max.ids").max(1) as usize,
            }),
        }
    }
}

/// Validates a set of topic overrides, as CreateTopics and AlterConfigs must.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in configs {
        let def = topic_def(k).ok_or_else(|| ConfigError::UnknownTopicKey(k.clone()))?;
        out.insert(def.name.to_string(), validate(def, v)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations_parse_as_java_does() {
        assert_eq!(iso8601_duration_ms("PT1H"), Some(3_600_000));
        assert_eq!(iso8601_duration_ms("P1DT2H3M4.5S"), Some(93_784_500));
        assert_eq!(iso8601_duration_ms("PT0.25S"), Some(250));
        assert_eq!(iso8601_duration_ms("P"), None);
        assert_eq!(iso8601_duration_ms("PT"), None);
        assert_eq!(iso8601_duration_ms("P1H"), None);
        assert_eq!(iso8601_duration_ms("PT1S1M"), None);
        assert_eq!(iso8601_duration_ms("1H"), None);
    }

    #[test]
    fn later_layers_win_and_defaults_fill_in() {
        let cfg = BrokerConfig::from_layers([
            vec![("num.partitions".into(), "2".into())],
            vec![("num.partitions".into(), "5".into())],
        ])
        .unwrap();
        assert_eq!(cfg.get_i64("num.partitions"), 5);
        assert_eq!(cfg.get_i64("log.segment.bytes"), 1073741824);
        assert_eq!(cfg.lookup("num.partitions").unwrap().1, ConfigSource::StaticBroker);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = BrokerConfig::from_layers([vec![("num.partitions".into(), "x".into())]]).unwrap_err();
        assert!(err.to_string().contains("num.partitions"));
        let err = BrokerConfig::from_layers([vec![("no.such.key".into(), "1".into())]]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("no.such.key".into()));
    }

    #[test]
    fn a_brokers_own_dynamic_value_wins_over_the_cluster_default_over_static() {
        let mut cfg = BrokerConfig::from_layers([vec![("num.partitions".into(), "2".into())]]).unwrap();
        let values = |v: &str| BTreeMap::from([("num.partitions", v.to_string())]);
        cfg.set_dynamic(values("3"), BTreeMap::new());
        assert_eq!(cfg.lookup("num.partitions"), Some(("3".into(), ConfigSource::DynamicDefaultBroker)));
        cfg.set_dynamic(values("3"), values("4"));
        assert_eq!(cfg.lookup("num.partitions"), Some(("4".into(), ConfigSource::DynamicBroker)));
        let sources: Vec<ConfigSource> = cfg.set_layers("num.partitions").into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            sources,
            [ConfigSource::DynamicBroker, ConfigSource::DynamicDefaultBroker, ConfigSource::StaticBroker]
        );
        assert_eq!(cfg.dynamic_values(true).get("num.partitions").map(String::as_str), Some("3"));
        assert_eq!(cfg.dynamic_values(false).get("num.partitions").map(String::as_str), Some("4"));
    }

    #[test]
    fn env_names_map_to_kafka_names() {
        let got = read_env([
            ("WEIR_NUM_PARTITIONS".to_string(), "3".to_string()),
            ("WEIR_NOT_A_KEY".to_string(), "1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ]);
        assert_eq!(got, vec![("num.partitions".to_string(), "3".to_string())]);
    }

    #[test]
    fn kafkas_hour_and_minute_synonyms_set_the_millisecond_keys() {
        let cfg = BrokerConfig::from_layers([vec![("log.retention.hours".into(), "24".into())]]).unwrap();
        assert_eq!(cfg.get_i64("log.retention.ms"), 86_400_000);
        assert_eq!(LogConfig::resolve(&cfg, &BTreeMap::new()).retention_ms, 86_400_000);
        let cfg = BrokerConfig::from_layers([vec![
            ("log.retention.hours".into(), "24".into()),
            ("log.retention.minutes".into(), "30".into()),
            ("log.roll.hours".into(), "1".into()),
        ]])
        .unwrap();
        assert_eq!(cfg.get_i64("log.retention.ms"), 1_800_000, "minutes before hours");
        assert_eq!(cfg.get_i64("log.roll.ms"), 3_600_000);
        let cfg = BrokerConfig::from_layers([vec![
            ("log.retention.hours".into(), "-1".into()),
            ("log.retention.ms".into(), "5".into()),
        ]])
        .unwrap();
        assert_eq!(cfg.get_i64("log.retention.ms"), 5, "the millisecond key wins");
        let cfg = BrokerConfig::from_layers([vec![("log.retention.hours".into(), "-1".into())]]).unwrap();
        assert_eq!(cfg.get_i64("log.retention.ms"), -1);
    }

    #[test]
    fn topic_values_fall_back_to_broker_synonyms() {
        let cfg = BrokerConfig::from_layers([vec![("log.retention.ms".into(), "1000".into())]]).unwrap();
        let mut over = BTreeMap::new();
        assert_eq!(LogConfig::resolve(&cfg, &over).retention_ms, 1000);
        over.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(LogConfig::resolve(&cfg, &over).retention_ms, 5);
    }

    #[test]
    fn documented_config_file_is_current_and_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/weir.toml");
        let text = std::fs::read_to_string(&path).expect("config/weir.toml exists");
        assert_eq!(text, default_config_file(), "regenerate with: weir --print-default-config > config/weir.toml");
        let values = read_config_file(&path).unwrap();
        assert_eq!(values.len(), BROKER_CONFIGS.len());
        for (k, v) in values {
            assert_eq!(validate(broker_def(&k).unwrap(), &v).unwrap(), broker_def(&k).unwrap().default);
        }
    }

    /// Weir's keys against Kafka's catalogue: Kafka's names keep Kafka's types, and every
    /// difference in default is deliberate and listed here.
    #[test]
    fn weir_keys_match_kafkas_catalogue() {
        // Weir's own keys, and Kafka's StandardAuthorizer keys (read by the authorizer, so
        // outside the broker's config table).
        const NOT_IN_CATALOGUE: &[&str] = &[
            "log.flush.on.acks.all",
            "metrics.listener",
            "super.users",
            "allow.everyone.if.no.acl.found",
            "cluster.id",
            // Kafka's dynamic-only broker keys (DynamicConfig.Broker), absent from its static
            // config reference
            "leader.replication.throttled.rate",
            "follower.replication.throttled.rate",
            // Kafka's leader-rebalance threshold, gone from the 4.x reference (KRaft's
            // controller elects every imbalanced partition); Weir keeps its meaning
            "leader.imbalance.per.broker.percentage",
            // KIP-1191's dead-letter topics for share groups: accepted, not yet in Kafka
            "errors.deadletterqueue.topic.name.prefix",
            "errors.deadletterqueue.auto.create.topics.enable",
            "errors.deadletterqueue.group.enable",
            // duplicate detection by message id (Weir's own)
            "log.weir.dedup.window.ms",
            "log.weir.dedup.id",
            "log.weir.dedup.max.ids",
            "weir.dedup.window.ms",
            "weir.dedup.id",
            "weir.dedup.max.ids",
        ];
        // Keys whose Weir default differs from Kafka's, and why: Weir runs out of the box on
        // one machine (loopback listener, ./data, no replication), speaks PEM only, offers the
        // SASL mechanisms it implements, and states the values Kafka derives from synonyms.
        const OWN_DEFAULTS: &[&str] = &[
            "listeners",
            "listener.security.protocol.map",
            "log.dirs",
            "node.id",
            "sasl.enabled.mechanisms",
            "ssl.keystore.type",
            "ssl.truststore.type",
            "log.roll.ms",
            "log.retention.ms",
            "log.flush.interval.ms",
            "log.cleaner.io.max.bytes.per.second",
        ];
        let kafka = |scope| catalogue::kafka_defs(scope).map(|d| (d.name, d)).collect::<HashMap<_, _>>();
        let (kafka_broker, kafka_topic) = (kafka(catalogue::Scope::Broker), kafka(catalogue::Scope::Topic));
        let mut problems = Vec::new();
        for (weir, kafka) in [(BROKER_CONFIGS, &kafka_broker), (TOPIC_CONFIGS, &kafka_topic)] {
            for def in weir {
                let Some(k) = kafka.get(def.name) else {
                    if !NOT_IN_CATALOGUE.contains(&def.name) {
                        problems.push(format!("{}: not a Kafka config", def.name));
                    }
                    continue;
                };
                if k.kind != def.kind {
                    problems.push(format!("{}: type {:?}, Kafka's is {:?}", def.name, def.kind, k.kind));
                }
                let same_default = def.default == k.default || def.broker_synonym.is_some();
                if !same_default && !OWN_DEFAULTS.contains(&def.name) {
                    problems.push(format!("{}: default {:?}, Kafka's is {:?}", def.name, def.default, k.default));
                }
                if same_default && OWN_DEFAULTS.contains(&def.name) {
                    problems.push(format!("{}: listed as a different default, but it is Kafka's", def.name));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // and every Kafka name is known
        for name in kafka_broker.keys() {
            assert!(broker_def(name).is_some(), "{name}");
        }
        for name in kafka_topic.keys() {
            assert!(topic_def(name).is_some(), "{name}");
        }
    }

    #[test]
    fn documented_kafka_only_configs_are_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kafka-configs.md");
        let text = std::fs::read_to_string(&path).expect("docs/kafka-configs.md exists");
        assert_eq!(
            text,
            kafka_only_configs_markdown(),
            "regenerate with: weir --print-kafka-only-configs > docs/kafka-configs.md"
        );
    }

    #[test]
    fn every_topic_key_has_a_broker_synonym() {
        for def in topic_defs().iter().filter(|d| d.broker_synonym.is_some()) {
            assert!(broker_def(def.broker_synonym.unwrap()).is_some(), "{}", def.name);
        }
    }
}
