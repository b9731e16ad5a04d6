//! The cluster metadata log: every change to topics, partitions and configs is a record
//! appended (and fsynced) here, and the [`MetadataImage`] is rebuilt by replaying it. A
//! Raft engine can later replicate the same records between brokers.
//!
//! Frame: length u32 | CRC-32C u32 of the payload | payload (JSON of [`MetadataRecord`]).
//! A torn or garbled tail (crash mid-write) is truncated on open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::features::{self, Finalized};
use crate::security::acl::AclBinding;
use crate::security::scram::{Credential, Mechanism};
use crate::security::SecurityImage;

/// One change to cluster metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum MetadataRecord {
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Each partition's replicas, the preferred leader first (empty in records written
        /// before clusters: every partition on the one broker).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    CreatePartitions {
        id: Uuid,
        count: i32,
        /// The added partitions' replicas.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    /// The id the cluster was formed with (the first record a quorum commits).
    ClusterId {
        id: String,
    },
    /// A broker (re)registers: its endpoints and rack; a new incarnation replaces the old.
    RegisterBroker {
        registration: BrokerRegistration,
    },
    /// A broker gone for good leaves the cluster (UnregisterBroker).
    UnregisterBroker {
        id: i32,
    },
    /// A partition's leader, ISR or epochs changed (Kafka's `PartitionChangeRecord`, here
    /// with the whole new state).
    PartitionChange {
        id: Uuid,
        partition: i32,
        state: PartitionState,
    },
    /// A broker is fenced (its heartbeats stopped) or unfenced (they resumed).
    FenceBroker {
        id: i32,
        fenced: bool,
        /// Fenced because its process is gone or stopping (not merely silent).
        #[serde(default)]
        gone: bool,
    },
    /// Replaces a topic's config overrides.
    TopicConfigs {
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        id: Uuid,
    },
    /// Replaces dynamic broker config overrides: the cluster-wide defaults, or with `node`
    /// one broker's own (an empty map removes them).
    BrokerConfigs {
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<i32>,
    },
    /// Producer ids below `block_end` are handed out; the next block starts there.
    ProducerIds {
        block_end: i64,
    },
    /// Sets a user's salted SCRAM credential for one mechanism.
    ScramCredential {
        user: String,
        mechanism: Mechanism,
        credential: Credential,
    },
    RemoveScramCredential {
        user: String,
        mechanism: Mechanism,
    },
    CreateAcl {
        id: Uuid,
        binding: AclBinding,
    },
    RemoveAcl {
        id: Uuid,
    },
    /// Sets (or with `None` removes) one quota of a client-quota entity.
    ClientQuota {
        entity: Vec<(String, Option<String>)>,
        key: String,
        value: Option<f64>,
    },
    /// Replaces a `GROUP` resource's config overrides (empty: removes them).
    GroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces a `CLIENT_METRICS` subscription's configs (empty: removes it).
    ClientMetrics {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the finalized feature levels (Kafka's `FeatureLevelRecord`s, all at once).
    Features {
        finalized: Finalized,
    },
}

/// A topic as metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// Each partition's replicas, leader and ISR; shorter than `partitions` (empty for
    /// topics from before clusters) where a partition lives on the one broker there is.
    pub states: Vec<PartitionState>,
}

/// Where a partition lives and who leads it (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: those that have every acknowledged record.
    pub isr: Vec<i32>,
    /// -1 when no replica can lead.
    pub leader: i32,
    /// Bumped at every change of leader.
    pub leader_epoch: i32,
    /// Bumped at every change of this state; a leader changing the ISR names the one it saw.
    pub partition_epoch: i32,
    /// While a reassignment runs: the replicas it adds (they copy the partition and join the
    /// ISR) and the ones it removes once they have; `replicas` holds both (Kafka's
    /// `addingReplicas` / `removingReplicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// A new partition: led by its first replica, every replica in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionState {
        let leader = replicas.first().copied().unwrap_or(-1);
        PartitionState {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        }
    }

    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas before the running reassignment (what cancelling it restores).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.adding.contains(r)).collect()
    }
}

impl TopicMeta {
    pub fn state(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition).ok().and_then(|p| self.states.get(p))
    }

    /// The replicas of a partition; `None` for a partition of a single-broker topic.
    pub fn replicas_of(&self, partition: i32) -> Option<&[i32]> {
        self.state(partition).map(|s| s.replicas.as_slice())
    }

    /// Whether `broker` holds a replica of `partition` (every partition of a topic from
    /// before clusters is on whichever broker opened it).
    pub fn is_replica(&self, partition: i32, broker: i32) -> bool {
        self.replicas_of(partition).is_none_or(|r| r.contains(&broker))
    }
}

/// A listener of a broker as other brokers and clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

/// A broker as the cluster knows it (Kafka's `BrokerRegistration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// New at every start: tells a restarted broker from its old self.
    pub incarnation: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is left out of Metadata.
    #[serde(default)]
    pub fenced: bool,
    /// Fenced because its process is gone or stopping: Metadata may list it a moment longer
    /// (see the broker's `FENCED_BROKER_LISTED_FOR`), as it cannot serve anyone.
    #[serde(default)]
    pub gone: bool,
}

impl BrokerRegistration {
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }

    /// `HOST:PORT` where other brokers reach this one: its endpoint on `listener` (Kafka's
    /// `inter.broker.listener.name`), which every broker of a cluster has.
    pub fn inter_broker_addr(&self, listener: &str) -> Option<String> {
        let e = self.endpoint(&listener.to_ascii_uppercase())?;
        Some(format!("{}:{}", e.host, e.port))
    }
}

/// The state the metadata records add up to.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The cluster-wide dynamic broker config defaults.
    pub broker_configs: BTreeMap<String, String>,
    /// Each broker's own dynamic configs, by node id.
    pub node_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// End of the last producer-id block handed out.
    pub producer_id_block_end: i64,
    /// SCRAM credentials and ACLs.
    pub security: SecurityImage,
    /// Group config overrides by group id.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Client telemetry subscriptions by name.
    pub client_metrics: BTreeMap<String, BTreeMap<String, String>>,
    /// The finalized feature levels; `None` until the log has them (a log from before
    /// features: the bootstrap levels apply).
    pub features: Option<Finalized>,
}

impl MetadataImage {
    /// The finalized feature levels.
    pub fn features(&self) -> Finalized {
        self.features.clone().unwrap_or_else(Finalized::bootstrap)
    }

    /// A feature's finalized level.
    pub fn feature_level(&self, name: &str) -> i16 {
        self.features.as_ref().map_or_else(|| features::bootstrap_level(name), |f| f.level(name))
    }

    /// Whether `broker` is registered and unfenced: it may lead and stay in ISRs.
    pub fn is_live(&self, broker: i32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::CreateTopic { name, id, partitions, configs, replicas } => {
                let meta = TopicMeta {
                    name: name.clone(),
                    id: *id,
                    partitions: *partitions,
                    configs: configs.clone(),
                    states: replicas.iter().cloned().map(PartitionState::new).collect(),
                };
                self.topics.insert(name.clone(), meta);
            }
            MetadataRecord::CreatePartitions { id, count, replicas } => {
                if let Some(t) = self.topics.values_mut().find(|t| t.id == *id) {
                    if t.states.len() == t.partitions as usize {
                        t.states.extend(replicas.iter().cloned().map(PartitionState::new));
                    }
                    t.partitions = t.partitions.max(*count);
                }
            }
            MetadataRecord::PartitionChange { id, partition, state } => {
                let topic = self.topics.values_mut().find(|t| t.id == *id);
                if let Some(s) = topic.and_then(|t| t.states.get_mut(usize::try_from(*partition).ok()?)) {
                    *s = state.clone();
                }
            }
            MetadataRecord::ClusterId { id } => {
                self.cluster_id.get_or_insert_with(|| id.clone());
            }
            MetadataRecord::RegisterBroker { registration } => {
                self.brokers.insert(registration.id, registration.clone());
            }
            MetadataRecord::UnregisterBroker { id } => {
                self.brokers.remove(id);
            }
            MetadataRecord::FenceBroker { id, fenced, gone } => {
                if let Some(b) = self.brokers.get_mut(id) {
                    b.fenced = *fenced;
                    b.gone = *fenced && *gone;
                }
            }
            MetadataRecord::TopicConfigs { id, configs } => {
                if let Some(t) = self.topics.values_mut().find(|t| t.id == *id) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::DeleteTopic { id } => self.topics.retain(|_, t| t.id != *id),
            MetadataRecord::BrokerConfigs { configs, node: None } => self.broker_configs = configs.clone(),
            MetadataRecord::BrokerConfigs { configs, node: Some(node) } if configs.is_empty() => {
                self.node_configs.remove(node);
            }
            MetadataRecord::BrokerConfigs { configs, node: Some(node) } => {
                self.node_configs.insert(*node, configs.clone());
            }
            MetadataRecord::ProducerIds { block_end } => {
                self.producer_id_block_end = self.producer_id_block_end.max(*block_end)
            }
            MetadataRecord::GroupConfigs { group, configs } if configs.is_empty() => {
                self.group_configs.remove(group);
            }
            MetadataRecord::GroupConfigs { group, configs } => {
                self.group_configs.insert(group.clone(), configs.clone());
            }
            MetadataRecord::ClientMetrics { name, configs } if configs.is_empty() => {
                self.client_metrics.remove(name);
            }
            MetadataRecord::ClientMetrics { name, configs } => {
                self.client_metrics.insert(name.clone(), configs.clone());
            }
            MetadataRecord::Features { finalized } => self.features = Some(finalized.clone()),
            MetadataRecord::ScramCredential { .. }
            | MetadataRecord::RemoveScramCredential { .. }
            | MetadataRecord::CreateAcl { .. }
            | MetadataRecord::RemoveAcl { .. }
            | MetadataRecord::ClientQuota { .. } => self.security.apply(record),
        }
    }
}

impl MetadataImage {
    /// Records that rebuild this image when applied to an empty one, as Kafka's metadata
    /// snapshots are: what a Raft snapshot of the metadata holds.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(id) = &self.cluster_id {
            out.push(MetadataRecord::ClusterId { id: id.clone() });
        }
        if let Some(finalized) = &self.features {
            out.push(MetadataRecord::Features { finalized: finalized.clone() });
        }
        for registration in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker { registration: registration.clone() });
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::CreateTopic {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partitions,
                configs: t.configs.clone(),
                replicas: t.states.iter().map(|s| s.replicas.clone()).collect(),
            });
            for (p, s) in t.states.iter().enumerate() {
                if *s != PartitionState::new(s.replicas.clone()) {
                    out.push(MetadataRecord::PartitionChange { id: t.id, partition: p as i32, state: s.clone() });
                }
            }
        }
        if !self.broker_configs.is_empty() {
            out.push(MetadataRecord::BrokerConfigs { configs: self.broker_configs.clone(), node: None });
        }
        for (node, configs) in &self.node_configs {
            out.push(MetadataRecord::BrokerConfigs { configs: configs.clone(), node: Some(*node) });
        }
        if self.producer_id_block_end > 0 {
            out.push(MetadataRecord::ProducerIds { block_end: self.producer_id_block_end });
        }
        for ((user, mechanism), credential) in &self.security.scram {
            out.push(MetadataRecord::ScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            });
        }
        for (id, binding) in &self.security.acls.by_id {
            out.push(MetadataRecord::CreateAcl { id: *id, binding: binding.clone() });
        }
        for (entity, values) in &self.security.quotas.by_entity {
            for (key, value) in values {
                out.push(MetadataRecord::ClientQuota {
                    entity: entity.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    key: key.clone(),
                    value: Some(*value),
                });
            }
        }
        for (group, configs) in &self.group_configs {
            out.push(MetadataRecord::GroupConfigs { group: group.clone(), configs: configs.clone() });
        }
        for (name, configs) in &self.client_metrics {
            out.push(MetadataRecord::ClientMetrics { name: name.clone(), configs: configs.clone() });
        }
        out
    }
}

pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

const FRAME_HEADER: usize = 8;

impl MetadataLog {
    /// Opens the log in `dir`, replays it, and truncates a damaged tail.
    pub fn open(dir: &Path) -> io::Result<(MetadataLog, MetadataImage)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metadata.log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut image = MetadataImage::default();
        let mut pos = 0usize;
        while let Some(record) = decode_frame(&bytes[pos..]) {
            image.apply(&record.0);
            pos += record.1;
        }
        let file = OpenOptions::new().create(true).append(true).read(true).open(&path)?;
        if pos < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                truncated_bytes = bytes.len() - pos,
                "metadata log had a damaged tail; truncating"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        crate::log::sync_dir(dir)?;
        Ok((MetadataLog { path, file }, image))
    }

    /// Appends a record durably.
    pub fn append(&mut self, record: &MetadataRecord) -> io::Result<()> {
        let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        self.file.write_all(&frame)?;
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Decodes one frame; `None` at the end or at a damaged frame.
fn decode_frame(b: &[u8]) -> Option<(MetadataRecord, usize)> {
    let len = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    let payload = b.get(FRAME_HEADER..FRAME_HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    Some((record, FRAME_HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_rebuilds_from_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let configs = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let records = [
            MetadataRecord::CreateTopic {
                name: "t".into(),
                id,
                partitions: 2,
                configs: configs("retention.ms", "1"),
                replicas: vec![],
            },
            MetadataRecord::CreateTopic {
                name: "gone".into(),
                id: Uuid::new_v4(),
                partitions: 1,
                configs: BTreeMap::new(),
                replicas: vec![],
            },
            MetadataRecord::CreatePartitions { id, count: 5, replicas: vec![] },
            MetadataRecord::BrokerConfigs { configs: configs("log.retention.ms", "9"), node: None },
            MetadataRecord::BrokerConfigs { configs: configs("log.cleaner.threads", "2"), node: Some(2) },
            MetadataRecord::BrokerConfigs { configs: configs("log.cleaner.threads", "3"), node: Some(3) },
            MetadataRecord::BrokerConfigs { configs: BTreeMap::new(), node: Some(3) },
            MetadataRecord::ProducerIds { block_end: 3000 },
            MetadataRecord::ClientQuota {
                entity: vec![("user".into(), Some("alice".into()))],
                key: "producer_byte_rate".into(),
                value: Some(1024.0),
            },
            MetadataRecord::GroupConfigs { group: "g".into(), configs: configs("share.auto.offset.reset", "earliest") },
            MetadataRecord::ClientMetrics { name: "m".into(), configs: configs("interval.ms", "1000") },
            MetadataRecord::ClusterId { id: "c1".into() },
            MetadataRecord::RegisterBroker {
                registration: BrokerRegistration {
                    id: 2,
                    incarnation: Uuid::new_v4(),
                    endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host: "h".into(), port: 1 }],
                    rack: Some("r1".into()),
                    fenced: false,
                    gone: false,
                },
            },
            MetadataRecord::FenceBroker { id: 2, fenced: true, gone: false },
        ];
        let mut image = MetadataImage::default();
        for r in &records {
            log.append(r).unwrap();
            image.apply(r);
        }
        let gone = image.topics["gone"].id;
        image.apply(&MetadataRecord::DeleteTopic { id: gone });
        let mut rebuilt = MetadataImage::default();
        for r in image.to_records() {
            rebuilt.apply(&r);
        }
        assert_eq!(rebuilt.topics, image.topics);
        assert_eq!(rebuilt.topics["t"].partitions, 5);
        assert!(!rebuilt.topics.contains_key("gone"));
        assert_eq!(rebuilt.broker_configs, image.broker_configs);
        assert_eq!(rebuilt.node_configs, BTreeMap::from([(2, configs("log.cleaner.threads", "2"))]));
        assert_eq!(rebuilt.producer_id_block_end, 3000);
        assert_eq!(rebuilt.group_configs, image.group_configs);
        assert_eq!(rebuilt.client_metrics, image.client_metrics);
        assert_eq!(rebuilt.cluster_id.as_deref(), Some("c1"));
        assert_eq!(rebuilt.brokers, image.brokers);
        assert!(rebuilt.brokers[&2].fenced);
        assert_eq!(rebuilt.security.quotas.by_entity, image.security.quotas.by_entity);
        let json = |i: &MetadataImage| serde_json::to_string(&i.to_records()).unwrap();
        assert_eq!(json(&rebuilt), json(&image));
    }

    #[test]
    fn replays_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        {
            let (mut log, image) = MetadataLog::open(dir.path()).unwrap();
            assert!(image.topics.is_empty());
            log.append(&MetadataRecord::CreateTopic {
                name: "t".into(),
                id,
                partitions: 2,
                configs: BTreeMap::new(),
                replicas: vec![],
            })
            .unwrap();
            log.append(&MetadataRecord::CreatePartitions { id, count: 4, replicas: vec![] }).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 50, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, image) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(image.topics["t"].partitions, 4);
        assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len() - 6);
    }
}
