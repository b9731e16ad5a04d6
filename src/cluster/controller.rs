//! The controller: admin changes checked against the metadata image and committed through the
//! quorum, one at a time, as Kafka's `QuorumController` does. A change is planned on the
//! active controller (the Raft leader) into metadata records; the broker that asked learns
//! the outcome and waits until its own image has the change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use parking_lot::RwLock;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::features::{self, FeatureUpdate, Finalized};
use super::metadata_log::{BrokerRegistration, MetadataImage, MetadataRecord, PartitionState, TopicMeta};
use super::partition_change::{self, Change, Election};
use super::quorum::{CommitError, Quorum, QuorumStatus, VoterChangeError};
use super::raft_log::NodeId;
use super::raft_net::{forward, ForwardResult, RemoteAdminError};
use crate::broker::{AdminError, NewTopic};
use crate::config::BrokerConfig;

/// Producer ids are handed to brokers a block at a time (Kafka's AllocateProducerIds).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// How long a change may wait for a controller to be elected.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Pause between attempts while a controller is being elected.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// An admin change, as a broker asks the controller for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOp {
    CreateTopic {
        topic: NewTopic,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        /// Replica lists of the new partitions when placed by hand.
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// Replaces a topic's config overrides (already validated).
    TopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces dynamic broker config overrides (already validated): the cluster-wide
    /// defaults, or with `node` one broker's own.
    BrokerConfigs {
        configs: BTreeMap<String, String>,
        #[serde(default)]
        node: Option<i32>,
    },
    GroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    ClientMetrics {
        name: String,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds,
    /// Security records (credentials, ACLs, quotas) committed as they are.
    Records {
        records: Vec<MetadataRecord>,
    },
    /// Sets the cluster id unless the cluster has one; the outcome is the cluster's id.
    ClusterId {
        proposed: String,
    },
    RegisterBroker {
        registration: BrokerRegistration,
    },
    /// A broker's heartbeat: keeps it unfenced, or unfences it.
    Heartbeat {
        id: i32,
        incarnation: Uuid,
    },
    /// Fences a broker whose heartbeats stopped, or whose process is `gone`; its
    /// leaderships move.
    Fence {
        id: i32,
        #[serde(default)]
        gone: bool,
    },
    /// A broker about to stop (its heartbeats already stopped): fenced at once, so its
    /// leaderships move and it leaves the ISRs before it goes.
    ControlledShutdown {
        id: i32,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition), naming the leader and
    /// partition epochs it holds so that a stale leader cannot.
    AlterPartition {
        topic: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// A broker whose storage failed for these partitions (Kafka's offline log directories):
    /// it leaves their ISRs, and another in-sync replica leads where it led. A partition it
    /// is the only in-sync replica of is left as it is (nobody else has every record).
    OfflineReplicas {
        id: i32,
        partitions: Vec<(String, i32)>,
    },
    /// AddRaftVoter (KIP-853): the node reached at `addr` (its controller listener) becomes a
    /// voter of the metadata quorum. Not a metadata record: a Raft membership change.
    AddVoter {
        id: i32,
        addr: String,
        /// How long the node may take to copy the metadata log (the request's timeout).
        #[serde(default = "default_voter_timeout_ms")]
        timeout_ms: u64,
    },
    /// RemoveRaftVoter (KIP-853).
    RemoveVoter {
        id: i32,
    },
    /// UnregisterBroker: a broker gone for good leaves the metadata and every ISR.
    UnregisterBroker {
        id: i32,
    },
    /// ElectLeaders: preferred (or, `unclean`, any live replica) leaders for the partitions
    /// named, or for all with `None`.
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments: each partition's target replicas, `None` to cancel.
    Reassign {
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_rf_change: bool,
    },
    /// UpdateFeatures: new finalized levels, all or none.
    UpdateFeatures {
        updates: Vec<FeatureUpdate>,
        validate_only: bool,
    },
    /// DescribeQuorum: the quorum as the active controller sees it (not a change; forwarded
    /// like one so that any broker can answer it, as Kafka's brokers forward it).
    DescribeQuorum,
}

fn default_voter_timeout_ms() -> u64 {
    30_000
}

/// What a committed change gives back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Outcome {
    Done,
    Topic {
        id: Uuid,
    },
    /// Producer ids `start..end` belong to the broker that asked.
    ProducerIds {
        start: i64,
        end: i64,
    },
    ClusterId {
        id: String,
    },
    /// The answer to a heartbeat: whether the controller knows this incarnation of the broker
    /// (if not, it registers again).
    Heartbeat {
        registered: bool,
    },
    /// A partition's state after an AlterPartition.
    Partition {
        state: PartitionState,
    },
    /// Each partition's result of an ElectLeaders or a reassignment.
    Partitions {
        results: Vec<PartitionResult>,
    },
    Quorum {
        status: QuorumStatus,
    },
}

/// Plans a change against the image: the records that make it, and its outcome.
pub fn plan(
    op: &ControllerOp,
    image: &MetadataImage,
    config: &BrokerConfig,
) -> Result<(Vec<MetadataRecord>, Outcome), AdminError> {
    let topic_id = |name: &str| image.topics.get(name).map(|t| t.id).ok_or(AdminError::UnknownTopic);
    let done = |record: MetadataRecord| (vec![record], Outcome::Done);
    Ok(match op {
        ControllerOp::CreateTopic { topic } => {
            let (partitions, rf, configs) = check_new_topic(image, config, topic)?;
            let replicas = match &topic.assignments {
                manual if !manual.is_empty() => manual.clone(),
                _ => place(image, config, 0..partitions, rf)?,
            };
            let id = Uuid::new_v4();
            let create = MetadataRecord::CreateTopic { name: topic.name.clone(), id, partitions, configs, replicas };
            (vec![create], Outcome::Topic { id })
        }
        ControllerOp::DeleteTopic { name } => {
            if !config.get_bool("delete.topic.enable") {
                return Err(AdminError::DeletionDisabled);
            }
            let id = topic_id(name)?;
            (vec![MetadataRecord::DeleteTopic { id }], Outcome::Topic { id })
        }
        ControllerOp::CreatePartitions { name, count, assignments } => {
            let id = topic_id(name)?;
            let topic = &image.topics[name];
            let manual = (!assignments.is_empty()).then_some(assignments.as_slice());
            check_partition_growth(image, topic.partitions, *count, manual)?;
            let rf = topic.replicas_of(0).map_or(1, <[i32]>::len) as i16;
            let replicas = match manual {
                Some(manual) => manual.to_vec(),
                None => place(image, config, topic.partitions..*count, rf)?,
            };
            done(MetadataRecord::CreatePartitions { id, count: *count, replicas })
        }
        ControllerOp::TopicConfigs { name, configs } => {
            done(MetadataRecord::TopicConfigs { id: topic_id(name)?, configs: configs.clone() })
        }
        ControllerOp::BrokerConfigs { configs, node } => {
            done(MetadataRecord::BrokerConfigs { configs: configs.clone(), node: *node })
        }
        ControllerOp::GroupConfigs { group, configs } => {
            done(MetadataRecord::GroupConfigs { group: group.clone(), configs: configs.clone() })
        }
        ControllerOp::ClientMetrics { name, configs } => {
            done(MetadataRecord::ClientMetrics { name: name.clone(), configs: configs.clone() })
        }
        ControllerOp::AllocateProducerIds => {
            let start = image.producer_id_block_end;
            let end = start + PRODUCER_ID_BLOCK;
            (vec![MetadataRecord::ProducerIds { block_end: end }], Outcome::ProducerIds { start, end })
        }
        ControllerOp::Records { records } => (records.clone(), Outcome::Done),
        ControllerOp::ClusterId { proposed } => {
            let id = image.cluster_id.clone().unwrap_or_else(|| proposed.clone());
            // a new cluster finalizes its feature levels with its id
            let records = match image.cluster_id {
                Some(_) => vec![],
                None => vec![
                    MetadataRecord::ClusterId { id: id.clone() },
                    MetadataRecord::Features { finalized: Finalized::bootstrap() },
                ],
            };
            (records, Outcome::ClusterId { id })
        }
        ControllerOp::RegisterBroker { registration } => {
            let register = MetadataRecord::RegisterBroker { registration: registration.clone() };
            (then_elect(image, config, register, None), Outcome::Done)
        }
        ControllerOp::Heartbeat { id, incarnation } => {
            let known = image.brokers.get(id).filter(|b| b.incarnation == *incarnation);
            let records = match known {
                Some(b) if b.fenced => {
                    let unfence = MetadataRecord::FenceBroker { id: *id, fenced: false, gone: false };
                    then_elect(image, config, unfence, None)
                }
                _ => vec![],
            };
            (records, Outcome::Heartbeat { registered: known.is_some() })
        }
        ControllerOp::Fence { id, gone } => {
            if image.brokers.get(id).is_none_or(|b| b.fenced) {
                return Ok((vec![], Outcome::Done));
            }
            let fence = MetadataRecord::FenceBroker { id: *id, fenced: true, gone: *gone };
            (then_elect(image, config, fence, None), Outcome::Done)
        }
        ControllerOp::ControlledShutdown { id } => {
            let fence = MetadataRecord::FenceBroker { id: *id, fenced: true, gone: true };
            (then_elect(image, config, fence, Some(*id)), Outcome::Done)
        }
        ControllerOp::AlterPartition { topic, partition, leader, leader_epoch, partition_epoch, isr } => {
            let state = image
                .topics
                .values()
                .find(|t| t.id == *topic)
                .and_then(|t| t.state(*partition))
                .ok_or(AdminError::UnknownTopic)?;
            if state.leader != *leader || state.leader_epoch != *leader_epoch {
                return Err(AdminError::FencedLeaderEpoch);
            }
            if state.partition_epoch != *partition_epoch {
                return Err(AdminError::InvalidUpdateVersion);
            }
            if !isr.contains(leader) || !isr.iter().all(|b| state.replicas.contains(b) && image.is_live(*b)) {
                return Err(AdminError::InvalidRequest(format!("ISR {isr:?} is not live replicas with the leader")));
            }
            // the new ISR may finish a reassignment (and move leadership off a removed replica)
            let Some(new) = Change::new(image, state).isr(isr.clone()).build() else {
                return Ok((vec![], Outcome::Partition { state: state.clone() }));
            };
            let change = MetadataRecord::PartitionChange { id: *topic, partition: *partition, state: new.clone() };
            (vec![change], Outcome::Partition { state: new })
        }
        ControllerOp::OfflineReplicas { id, partitions } => (offline_replicas(image, *id, partitions), Outcome::Done),
        ControllerOp::AddVoter { .. } | ControllerOp::RemoveVoter { .. } => {
            return Err(AdminError::InvalidRequest("a quorum change is made by the active controller's Raft".into()))
        }
        ControllerOp::UnregisterBroker { id } => {
            if !image.brokers.contains_key(id) {
                return Err(AdminError::BrokerIdNotRegistered(*id));
            }
            (then_elect(image, config, MetadataRecord::UnregisterBroker { id: *id }, None), Outcome::Done)
        }
        ControllerOp::ElectLeaders { unclean, partitions } => {
            let election = if *unclean { Election::Unclean } else { Election::Preferred };
            let (records, results) = plan_elections(image, config, election, partitions.as_deref());
            (records, Outcome::Partitions { results })
        }
        ControllerOp::Reassign { partitions, allow_rf_change } => {
            let (records, results) = plan_reassignments(image, config, partitions, *allow_rf_change);
            (records, Outcome::Partitions { results })
        }
        ControllerOp::UpdateFeatures { updates, validate_only } => {
            let finalized =
                features::update(&image.features(), updates, config.node_id()).map_err(AdminError::FeatureUpdate)?;
            match validate_only {
                true => (vec![], Outcome::Done),
                false => done(MetadataRecord::Features { finalized }),
            }
        }
        ControllerOp::DescribeQuorum => {
            return Err(AdminError::InvalidRequest("the quorum is described by the active controller's Raft".into()))
        }
    })
}

/// `record` and the leader elections it calls for (a broker fenced or back).
/// The changes taking broker `id` out of the ISR (and leadership) of `partitions`.
fn offline_replicas(image: &MetadataImage, id: i32, partitions: &[(String, i32)]) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (topic, partition) in partitions {
        let Some(t) = image.topics.get(topic) else { continue };
        let Some(state) = t.state(*partition) else { continue };
        if !state.isr.contains(&id) || state.isr.iter().all(|r| *r == id) {
            continue;
        }
        let isr = state.isr.iter().copied().filter(|r| *r != id).collect();
        if let Some(next) = Change::new(image, state).isr(isr).leaving(Some(id)).build() {
            records.push(MetadataRecord::PartitionChange { id: t.id, partition: *partition, state: next });
        }
    }
    records
}

fn then_elect(
    image: &MetadataImage,
    config: &BrokerConfig,
    record: MetadataRecord,
    leaving: Option<i32>,
) -> Vec<MetadataRecord> {
    let mut next = image.clone();
    next.apply(&record);
    let mut records = vec![record];
    records.extend(elect_leaders(&next, config, leaving));
    records
}

/// Leaders for the partitions whose leader is gone (fenced, or `leaving` in a controlled
/// shutdown), chosen from the ISR as Kafka's controller does, with the leader epoch bumped;
/// replicas that are gone leave the ISR unless they are its last member (only they have
/// every acknowledged record). A partition with no live ISR member has no leader (-1)
/// unless `unclean.leader.election.enable` lets an out-of-sync replica take over.
fn elect_leaders(image: &MetadataImage, config: &BrokerConfig, leaving: Option<i32>) -> Vec<MetadataRecord> {
    let live = |b: i32| Some(b) != leaving && image.is_live(b);
    let mut records = Vec::new();
    for t in image.topics.values() {
        let unclean = unclean_allowed(t, config);
        for (p, s) in t.states.iter().enumerate() {
            let mut isr: Vec<i32> = s.isr.iter().copied().filter(|b| live(*b)).collect();
            if isr.is_empty() {
                isr = s.isr.clone();
            }
            let change = Change::new(image, s).isr(isr).leaving(leaving).unclean_allowed(unclean);
            if let Some(state) = change.build() {
                records.push(MetadataRecord::PartitionChange { id: t.id, partition: p as i32, state });
            }
        }
    }
    records
}

/// `unclean.leader.election.enable` for a topic: its override, else the broker's.
fn unclean_allowed(topic: &TopicMeta, config: &BrokerConfig) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .map_or_else(|| config.get_bool("unclean.leader.election.enable"), |v| v == "true")
}

/// A partition's outcome in a request about many (ElectLeaders, reassignments).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
    pub message: Option<String>,
}

impl PartitionResult {
    fn of(topic: &str, partition: i32, result: Result<(), (ResponseError, String)>) -> PartitionResult {
        let (error, message) = match result {
            Ok(()) => (0, None),
            Err((e, m)) => (e.code(), Some(m)),
        };
        PartitionResult { topic: topic.to_string(), partition, error, message }
    }
}

/// A topic's partition state for a request naming it, or UNKNOWN_TOPIC_OR_PARTITION.
fn partition_of<'a>(
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<(&'a TopicMeta, &'a PartitionState), (ResponseError, String)> {
    let t = image
        .topics
        .get(topic)
        .ok_or_else(|| (ResponseError::UnknownTopicOrPartition, format!("Unable to find a topic named {topic}.")))?;
    let s = t.state(partition).ok_or_else(|| {
        (ResponseError::UnknownTopicOrPartition, format!("Unable to find partition {topic}:{partition}."))
    })?;
    Ok((t, s))
}

/// ElectLeaders (Kafka's `ReplicationControlManager.electLeaders`): each partition's result
/// and the records of the elections made; `None` partitions means all of them, reporting only
/// the ones an election was needed for.
fn plan_elections(
    image: &MetadataImage,
    config: &BrokerConfig,
    election: Election,
    partitions: Option<&[(String, i32)]>,
) -> (Vec<MetadataRecord>, Vec<PartitionResult>) {
    let all: Vec<(String, i32)>;
    let asked = match partitions {
        Some(p) => p,
        None => {
            all = image.topics.values().flat_map(|t| (0..t.states.len() as i32).map(|p| (t.name.clone(), p))).collect();
            &all
        }
    };
    let mut records = Vec::new();
    let mut results = Vec::new();
    for (topic, partition) in asked {
        let result = partition_of(image, topic, *partition).and_then(|(t, s)| {
            let needed = match election {
                Election::Preferred => s.replicas.first() != Some(&s.leader),
                _ => s.leader < 0,
            };
            if !needed {
                return Err((ResponseError::ElectionNotNeeded, "Leader election not needed for topic partition.".into()));
            }
            let change = Change::new(image, s).election(election).unclean_allowed(unclean_allowed(t, config));
            match change.build() {
                Some(state) if election != Election::Preferred || s.replicas.first() == Some(&state.leader) => {
                    records.push(MetadataRecord::PartitionChange { id: t.id, partition: *partition, state });
                    Ok(())
                }
                _ if election == Election::Preferred => Err((
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy"),
                )),
                _ => Err((
                    ResponseError::EligibleLeadersNotAvailable,
                    format!("Failed to elect leader for partition {topic}-{partition} under strategy UncleanLeaderElectionStrategy"),
                )),
            }
        });
        let skip = partitions.is_none() && matches!(&result, Err((ResponseError::ElectionNotNeeded, _)));
        if !skip {
            results.push(PartitionResult::of(topic, *partition, result));
        }
    }
    (records, results)
}

/// AlterPartitionReassignments (Kafka's `alterPartitionReassignments`): each partition moves
/// to its target replicas (`None`: its running reassignment is cancelled).
fn plan_reassignments(
    image: &MetadataImage,
    config: &BrokerConfig,
    partitions: &[(String, i32, Option<Vec<i32>>)],
    allow_rf_change: bool,
) -> (Vec<MetadataRecord>, Vec<PartitionResult>) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    for (topic, partition, target) in partitions {
        let result = partition_of(image, topic, *partition).and_then(|(t, s)| {
            let change = match target {
                None if !s.reassigning() => {
                    return Err((ResponseError::NoReassignmentInProgress, "No partition reassignment is in progress for this topic-partition.".into()))
                }
                None => {
                    let (change, unclean) = partition_change::revert(image, s);
                    if unclean && !unclean_allowed(t, config) {
                        return Err((ResponseError::InvalidReplicaAssignment, format!("Unable to revert partition assignment for {topic}:{partition} because it would require an unclean leader election.")));
                    }
                    change.unclean_allowed(unclean)
                }
                Some(target) => {
                    check_manual_assignment(image, std::slice::from_ref(target))
                        .map_err(|e| (ResponseError::InvalidReplicaAssignment, e.to_string()))?;
                    let original = s.original_replicas().len();
                    if !allow_rf_change && target.len() != original {
                        return Err((ResponseError::InvalidReplicationFactor, format!("The replication factor is changed from {original} to {}", target.len())));
                    }
                    partition_change::reassign(image, s, target)
                }
            };
            if let Some(state) = change.build() {
                records.push(MetadataRecord::PartitionChange { id: t.id, partition: *partition, state });
            }
            Ok(())
        });
        results.push(PartitionResult::of(topic, *partition, result));
    }
    (records, results)
}

/// The partitions whose preferred leader should take over again: those of every broker
/// whose share of preferred partitions led elsewhere is above `percentage`, where that
/// broker is live and in sync.
fn imbalanced(image: &MetadataImage, percentage: i64) -> Vec<(String, i32)> {
    /// A preferred leader's partitions: how many, how many led elsewhere, and which of those
    /// it can take back now.
    #[derive(Default)]
    struct Preferred {
        total: usize,
        elsewhere: usize,
        ready: Vec<(String, i32)>,
    }
    let mut by_preferred: BTreeMap<i32, Preferred> = BTreeMap::new();
    for t in image.topics.values() {
        for (p, s) in t.states.iter().enumerate() {
            let Some(&preferred) = s.replicas.first() else { continue };
            let entry = by_preferred.entry(preferred).or_default();
            entry.total += 1;
            if s.leader == preferred {
                continue;
            }
            entry.elsewhere += 1;
            if image.is_live(preferred) && s.isr.contains(&preferred) {
                entry.ready.push((t.name.clone(), p as i32));
            }
        }
    }
    by_preferred
        .into_values()
        .filter(|b| (b.elsewhere * 100) as i64 > percentage * b.total as i64)
        .flat_map(|b| b.ready)
        .collect()
}

/// Places the replicas of `partitions` on the unfenced brokers: from a random start, shifted
/// by one per partition (so leaders spread), each partition takes the next brokers in turn.
/// With `broker.rack` set the brokers are ordered rack by rack in turn (Kafka's
/// rack-alternated list) and a broker whose rack already holds one of the partition's
/// replicas is passed over until every rack holds one, as Kafka's rack-aware assignment does.
fn place(
    image: &MetadataImage,
    config: &BrokerConfig,
    partitions: std::ops::Range<i32>,
    rf: i16,
) -> Result<Vec<Vec<i32>>, AdminError> {
    let live = rack_alternated(image, placeable_brokers(image, config, rf)?);
    let rack = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.clone());
    let racks = live.iter().map(|b| rack(*b)).collect::<std::collections::BTreeSet<_>>().len();
    let n = live.len();
    let start = (Uuid::new_v4().as_u128() % n as u128) as usize;
    let replicas_of = |p: usize| {
        let mut chosen: Vec<i32> = Vec::with_capacity(rf as usize);
        let mut used = std::collections::BTreeSet::new();
        // two passes: the first skips racks already used while some rack has none
        for pass in 0..2 {
            for b in (0..n).map(|j| live[(start + p + j) % n]) {
                let spread = pass == 1 || used.len() == racks || !used.contains(&rack(b));
                if chosen.len() < rf as usize && !chosen.contains(&b) && spread {
                    used.insert(rack(b));
                    chosen.push(b);
                }
            }
        }
        chosen
    };
    Ok(partitions.map(|p| replicas_of(p as usize)).collect())
}

/// `brokers` ordered so that racks take turns: the first broker of each rack, then the second
/// of each, and so on (brokers without a rack form one rack of their own).
fn rack_alternated(image: &MetadataImage, brokers: Vec<i32>) -> Vec<i32> {
    let mut racks: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for id in brokers {
        let rack = image.brokers.get(&id).and_then(|b| b.rack.clone());
        racks.entry(rack).or_default().push(id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest).flat_map(|i| racks.values().filter_map(move |r| r.get(i).copied()).collect::<Vec<_>>()).collect()
}

/// Kafka's checks of a manual replica assignment: every partition has replicas, none twice,
/// all partitions as many, and only registered brokers.
pub fn check_manual_assignment(image: &MetadataImage, assignments: &[Vec<i32>]) -> Result<(), AdminError> {
    let invalid = |m: String| Err(AdminError::InvalidReplicaAssignment(m));
    let rf = assignments.first().map_or(0, Vec::len);
    for (p, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return invalid(format!(
                "The manual partition assignment includes an empty replica list for partition {p}."
            ));
        }
        if replicas.len() != rf {
            return invalid("All partitions should have the same number of replicas.".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in replicas {
            if !seen.insert(*b) {
                return invalid(format!("The manual partition assignment includes broker {b} more than once."));
            }
            if !image.brokers.contains_key(b) {
                return invalid(format!(
                    "The manual partition assignment includes broker {b}, but no such broker is registered."
                ));
            }
        }
    }
    Ok(())
}

/// The brokers replicas may go to, once `rf` is known to fit them.
fn placeable_brokers(image: &MetadataImage, config: &BrokerConfig, rf: i16) -> Result<Vec<i32>, AdminError> {
    let mut live: Vec<i32> = image.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect();
    if live.is_empty() {
        live.push(config.node_id());
    }
    let n = live.len();
    if rf as usize > n {
        return Err(AdminError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."
        )));
    }
    Ok(live)
}

/// CreatePartitions' checks of growing a topic from `current` to `count` partitions: a manual
/// assignment (`Some`, even empty) needs one valid replica list per added partition, checked
/// first, then the count must grow the topic. The broker that takes the request runs them
/// (and answers `validate_only` with them), the controller again against its image.
pub fn check_partition_growth(
    image: &MetadataImage,
    current: i32,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<(), AdminError> {
    if let Some(assignments) = assignments {
        if assignments.len() as i32 != count - current {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "Increasing the number of partitions by {} but {} assignments provided.",
                count - current,
                assignments.len()
            )));
        }
        check_manual_assignment(image, assignments)?;
    }
    check_partition_count(current, count)
}

/// Kafka's answer to growing a topic to `count` partitions when it has `current`.
fn check_partition_count(current: i32, count: i32) -> Result<(), AdminError> {
    if count > current {
        return Ok(());
    }
    Err(AdminError::InvalidPartitions(if count == current {
        format!("Topic already has {current} partitions.")
    } else {
        format!("Topic currently has {current} partitions, which is higher than the requested {count}.")
    }))
}

/// Checks a topic creation against the image without performing it; returns the resolved
/// partition count, replication factor and validated configs.
pub fn check_new_topic(
    image: &MetadataImage,
    config: &BrokerConfig,
    t: &NewTopic,
) -> Result<(i32, i16, BTreeMap<String, String>), AdminError> {
    crate::broker::validate_topic_name(&t.name)?;
    if image.topics.contains_key(&t.name) {
        return Err(AdminError::TopicAlreadyExists(t.name.clone()));
    }
    let normal = t.name.replace('.', "_");
    if let Some(other) = image.topics.keys().find(|o| o.replace('.', "_") == normal) {
        return Err(AdminError::InvalidTopic(format!("Topic '{}' collides with existing topic: {other}", t.name)));
    }
    let partitions = match t.partitions {
        -1 => config.get_i64("num.partitions") as i32,
        n if n >= 1 => n,
        n => {
            return Err(AdminError::InvalidPartitions(format!(
                "Number of partitions was set to an invalid non-positive value: {n}."
            )))
        }
    };
    let rf = match t.replication_factor {
        -1 => config.get_i64("default.replication.factor") as i16,
        n if n >= 1 => n,
        n => {
            return Err(AdminError::InvalidReplicationFactor(format!(
                "Replication factor must be larger than 0, or -1 to use the default value. Got {n}."
            )))
        }
    };
    if t.assignments.is_empty() {
        placeable_brokers(image, config, rf)?;
    } else {
        check_manual_assignment(image, &t.assignments)?;
    }
    let configs = crate::config::validate_topic_configs(&t.configs)?;
    Ok((partitions, rf, configs))
}

/// The controller side of this node: plans and commits changes while this node leads, and
/// forwards them to the active controller otherwise.
pub struct Controller {
    pub quorum: Quorum,
    /// The broker's configuration (defaults of new topics, whether deletion is allowed).
    config: Arc<RwLock<BrokerConfig>>,
    /// Changes are planned and committed one at a time, so each is checked against an image
    /// that has every earlier one.
    serial: tokio::sync::Mutex<()>,
    /// When each broker last heartbeat, as this node saw it while leading (cleared when it
    /// does not lead, so a new controller gives every broker a whole session).
    heartbeats: parking_lot::Mutex<HashMap<i32, Instant>>,
}

impl Controller {
    pub fn new(quorum: Quorum, config: Arc<RwLock<BrokerConfig>>) -> Controller {
        Controller { quorum, config, serial: tokio::sync::Mutex::new(()), heartbeats: Default::default() }
    }

    /// Makes a change through the active controller, here or forwarded; returns its outcome
    /// and the index of the entry that holds it (0 when nothing needed committing). Waits up
    /// to [`LEADER_WAIT`] for a controller when there is none.
    pub async fn submit(&self, op: &ControllerOp) -> Result<(Outcome, u64), AdminError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader = match self.submit_here(op).await {
                Err(ControllerError::NotLeader(leader)) => leader,
                Err(ControllerError::Admin(e)) => return Err(e),
                Ok(done) => return Ok(done),
            };
            if let Some((to, addr)) = leader.and_then(|l| Some((l, self.quorum.voter_addr(l)?))) {
                match forward(&self.quorum.identity, to, &addr, op).await {
                    Ok(Ok(done)) => return Ok(done),
                    Ok(Err(e)) if e.code != ResponseError::NotController.code() => {
                        return Err(AdminError::Remote { code: e.code, message: e.message })
                    }
                    Ok(Err(_)) => {}
                    Err(e) => tracing::debug!(error = %e, addr, "cannot reach the active controller"),
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(AdminError::NotController);
            }
            tokio::time::sleep(RETRY_BACKOFF.min(left)).await;
        }
    }

    /// A change forwarded by another broker: made here if this node leads.
    pub async fn execute_forwarded(&self, op: &ControllerOp) -> ForwardResult {
        self.submit_here(op)
            .await
            .map_err(|e| match e {
                ControllerError::NotLeader(_) => AdminError::NotController,
                ControllerError::Admin(e) => e,
            })
            .map_err(|e| RemoteAdminError { code: e.code(), message: e.to_string() })
    }

    /// A quorum change (AddVoter, RemoveVoter) made here if this node leads; `None` for any
    /// other change. Raft makes one membership change at a time itself, so these do not take
    /// the serial lock (a new voter's catch-up would hold up every other change).
    async fn change_voters(&self, op: &ControllerOp) -> Option<Result<(), ControllerError>> {
        let changed = match op {
            ControllerOp::AddVoter { id, addr, timeout_ms } => {
                let timeout = Duration::from_millis((*timeout_ms).max(1));
                self.quorum.add_voter(*id as NodeId, addr.clone(), timeout).await
            }
            ControllerOp::RemoveVoter { id } => self.quorum.remove_voter(*id as NodeId).await,
            _ => return None,
        };
        Some(changed.map_err(|e| match e {
            VoterChangeError::NotLeader(l) => ControllerError::NotLeader(l),
            VoterChangeError::Duplicate(id) => ControllerError::Admin(AdminError::DuplicateVoter(id as i32)),
            VoterChangeError::NotFound(id) => ControllerError::Admin(AdminError::VoterNotFound(id as i32)),
            VoterChangeError::TimedOut(id) => ControllerError::Admin(AdminError::VoterTimedOut(id as i32)),
            VoterChangeError::Invalid(m) => ControllerError::Admin(AdminError::InvalidRequest(m)),
        }))
    }

    /// Plans and commits a change on this node, if it leads.
    async fn submit_here(&self, op: &ControllerOp) -> Result<(Outcome, u64), ControllerError> {
        if let Some(changed) = self.change_voters(op).await {
            return changed.map(|()| (Outcome::Done, 0));
        }
        if let ControllerOp::DescribeQuorum = op {
            let status = self.quorum.status().ok_or_else(|| ControllerError::NotLeader(self.quorum.leader()))?;
            return Ok((Outcome::Quorum { status }, 0));
        }
        let _serial = self.serial.lock().await;
        if !self.quorum.is_leader() {
            return Err(ControllerError::NotLeader(self.quorum.leader()));
        }
        if let ControllerOp::Heartbeat { id, .. }
        | ControllerOp::RegisterBroker { registration: BrokerRegistration { id, .. } } = op
        {
            self.heartbeats.lock().insert(*id, Instant::now());
        }
        let (records, outcome) = plan(op, &self.quorum.state.image.read(), &self.config.read())?;
        if records.is_empty() {
            return Ok((outcome, 0));
        }
        let index = self.quorum.commit(records).await.map_err(|e| match e {
            CommitError::NotLeader(l) => ControllerError::NotLeader(l),
            CommitError::Fatal(m) => ControllerError::Admin(AdminError::Storage(std::io::Error::other(m))),
        })?;
        Ok((outcome, index))
    }
}

impl Controller {
    /// While this node leads: fences the brokers whose heartbeats stopped for
    /// `broker.session.timeout.ms`, as Kafka's controller does, and sooner the ones that are
    /// provably gone (see [`Controller::is_gone`]): checked when their heartbeats are late,
    /// when this node's Raft connection to them fails, and when this node takes the lead.
    pub async fn run_fencing(self: Arc<Self>) {
        let (session, heartbeat, listener) = {
            let c = self.config.read();
            let ms = |key: &str| Duration::from_millis(c.get_i64(key).max(1) as u64);
            (
                ms("broker.session.timeout.ms"),
                ms("broker.heartbeat.interval.ms"),
                crate::client::peers::inter_broker_listener_name(&c),
            )
        };
        // late: one and a half heartbeat intervals without one (at most a session)
        let late = (heartbeat * 3 / 2).min(session);
        let mut tick = tokio::time::interval((session / 4).min(Duration::from_millis(250)).min(heartbeat));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let suspects = self.quorum.suspects.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = suspects.reported() => {}
            }
            let suspects = suspects.take();
            if !self.quorum.is_leader() {
                self.heartbeats.lock().clear();
                continue;
            }
            let now = Instant::now();
            // (id, silent for, inter-broker address) of every unfenced broker to check: late,
            // suspected, or not yet heard from since this node took the lead (a new controller
            // checks at once whether the broker that died with the old one is gone)
            let checks: Vec<(i32, Duration, Option<String>)> = {
                let image = self.quorum.state.image.read();
                let mut seen = self.heartbeats.lock();
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .filter_map(|b| {
                        let unheard = !seen.contains_key(&b.id);
                        let silent = now.duration_since(*seen.entry(b.id).or_insert(now));
                        let suspect = u64::try_from(b.id).is_ok_and(|id| suspects.contains(&id));
                        (unheard || suspect || silent > late).then(|| (b.id, silent, b.inter_broker_addr(&listener)))
                    })
                    .collect()
            };
            for (id, silent, addr) in checks {
                let gone = Controller::is_gone(addr.as_deref(), heartbeat).await;
                let reason = if gone {
                    "its listener refuses connections"
                } else if silent > session {
                    "no heartbeat for a whole session"
                } else {
                    continue;
                };
                tracing::warn!(broker = id, silent_ms = silent.as_millis() as u64, reason, "fencing a broker");
                let fence = ControllerOp::Fence { id, gone };
                if let Err(e) = self.submit_here(&fence).await {
                    tracing::warn!(broker = id, error = ?e, "could not fence a broker");
                }
            }
        }
    }

    /// While this node leads: every `leader.imbalance.check.interval.seconds`, elects the
    /// preferred leaders of the brokers whose share of preferred partitions led elsewhere is
    /// above `leader.imbalance.per.broker.percentage` (`auto.leader.rebalance.enable`), as
    /// Kafka's controller does: leadership that moved away in a failover comes back.
    pub async fn run_leader_rebalance(self: Arc<Self>) {
        loop {
            let (enabled, interval, percentage) = {
                let c = self.config.read();
                let secs = c.get_i64("leader.imbalance.check.interval.seconds").max(1) as u64;
                let pct = c.get_i64("leader.imbalance.per.broker.percentage");
                (c.get_bool("auto.leader.rebalance.enable"), Duration::from_secs(secs), pct)
            };
            tokio::time::sleep(interval).await;
            if !enabled || !self.quorum.is_leader() {
                continue;
            }
            let partitions = imbalanced(&self.quorum.state.image.read(), percentage);
            if partitions.is_empty() {
                continue;
            }
            tracing::info!(partitions = partitions.len(), "electing preferred leaders (leader imbalance)");
            let elect = ControllerOp::ElectLeaders { unclean: false, partitions: Some(partitions) };
            if let Err(e) = self.submit_here(&elect).await {
                tracing::warn!(error = ?e, "could not rebalance leaders");
            }
        }
    }

    /// Whether a broker's process is provably gone: its host answers, but nothing listens on
    /// its inter-broker port any more (connection refused). A process that crashed on a live
    /// host is fenced at once instead of after a whole session; a paused, overloaded or
    /// unreachable one (no answer, or an accepted connection) waits out the session as in
    /// Kafka, so this never fences a broker that could still be serving.
    async fn is_gone(addr: Option<&str>, within: Duration) -> bool {
        let Some(addr) = addr else { return false };
        let within = within.min(Duration::from_millis(250));
        match tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await {
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            _ => false,
        }
    }
}

#[derive(Debug)]
enum ControllerError {
    NotLeader(Option<NodeId>),
    Admin(AdminError),
}

impl From<AdminError> for ControllerError {
    fn from(e: AdminError) -> Self {
        ControllerError::Admin(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata_log::Endpoint;

    fn image_with_brokers(ids: &[i32], fenced: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in ids {
            let registration = BrokerRegistration {
                id: *id,
                incarnation: Uuid::new_v4(),
                endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host: "h".into(), port: 9092 }],
                rack: None,
                fenced: fenced.contains(id),
                gone: false,
            };
            image.apply(&MetadataRecord::RegisterBroker { registration });
        }
        image
    }

    fn config() -> BrokerConfig {
        BrokerConfig::from_layers([Vec::<(String, String)>::new()]).unwrap()
    }

    #[test]
    fn partitions_spread_over_the_live_brokers() {
        let image = image_with_brokers(&[1, 2, 3, 4], &[4]);
        let replicas = place(&image, &config(), 0..9, 1).unwrap();
        let mut per_broker = BTreeMap::new();
        for r in &replicas {
            *per_broker.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(per_broker, BTreeMap::from([(1, 3), (2, 3), (3, 3)]), "fenced broker 4 gets none");
        let err = place(&image, &config(), 0..1, 4).unwrap_err();
        assert!(err.to_string().contains("only 3 broker(s)"), "{err}");
    }

    #[test]
    fn the_first_cluster_id_committed_stays() {
        let mut image = MetadataImage::default();
        let op = |p: &str| ControllerOp::ClusterId { proposed: p.into() };
        let (records, outcome) = plan(&op("a"), &image, &config()).unwrap();
        assert_eq!(outcome, Outcome::ClusterId { id: "a".into() });
        records.iter().for_each(|r| image.apply(r));
        let (records, outcome) = plan(&op("b"), &image, &config()).unwrap();
        assert!(records.is_empty());
        assert_eq!(outcome, Outcome::ClusterId { id: "a".into() });
    }

    #[test]
    fn a_heartbeat_unfences_only_the_registered_incarnation() {
        let image = image_with_brokers(&[1], &[1]);
        let incarnation = image.brokers[&1].incarnation;
        let (records, outcome) = plan(&ControllerOp::Heartbeat { id: 1, incarnation }, &image, &config()).unwrap();
        assert_eq!(records, vec![MetadataRecord::FenceBroker { id: 1, fenced: false, gone: false }]);
        assert_eq!(outcome, Outcome::Heartbeat { registered: true });
        let stale = ControllerOp::Heartbeat { id: 1, incarnation: Uuid::new_v4() };
        let (records, outcome) = plan(&stale, &image, &config()).unwrap();
        assert!(records.is_empty());
        assert_eq!(outcome, Outcome::Heartbeat { registered: false });
    }
}
