//! The group coordinator: classic consumer groups and their committed offsets.
//!
//! Every group and offset change is a record in the internal compacted topic
//! `__consumer_offsets` (Kafka's key/value formats, see [`records`]); the group lives in the
//! partition `abs(hashCode(group)) % offsets.topic.num.partitions`, as in Kafka. On start-up
//! the coordinator replays the topic to rebuild groups and offsets.

pub mod classic;
pub mod consumer;
pub mod consumer_records;
pub mod records;
pub mod share;

use std::collections::BTreeMap;
use std::sync::Arc;

use std::collections::HashMap;

use dashmap::DashMap;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use super::{
    append_durably, encode_batch, ensure_internal_topic, replay_partitions, CoordinatorRecord, InternalTopic, Ownership,
};
use crate::broker::{now_ms, AdminError, Broker};
use crate::log::batch::{control_type_from_key, ControlType};
use crate::log::LogError;
use crate::partition::Partition;
use classic::{ClassicGroup, GroupConfig, GroupState};
use records::{partition_for, GroupValue, OffsetValue, RecordKey};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often group timers (sessions, rebalance deadlines) are checked.
pub const TICK: Duration = Duration::from_millis(100);

/// A group with its committed offsets, behind one lock. A group id names either a classic
/// group or (once a member sent ConsumerGroupHeartbeat) a KIP-848 consumer group.
pub struct GroupEntry {
    pub group: ClassicGroup,
    pub consumer: Option<consumer::ConsumerGroup>,
    /// A share group (KIP-932) owns the id once a member sent ShareGroupHeartbeat.
    pub share: Option<share::ShareGroup>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed inside open transactions, by producer id: applied on commit,
    /// dropped on abort.
    pub pending_txn: PendingTxnOffsets,
}

impl GroupEntry {
    fn new(group: ClassicGroup, offsets: BTreeMap<(String, i32), OffsetValue>) -> GroupEntry {
        GroupEntry { group, consumer: None, share: None, offsets, pending_txn: HashMap::new() }
    }

    /// True when a consumer-protocol group with members owns this id.
    pub fn is_consumer_group(&self) -> bool {
        self.consumer.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// True when an open transaction has committed an offset for this partition
    /// (OffsetFetch with `require_stable` answers `UNSTABLE_OFFSET_COMMIT`).
    pub fn has_pending_txn_offset(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn.values().any(|offsets| offsets.contains_key(&key))
    }

    /// Ends a producer's transaction for this group: its offsets become visible on commit.
    fn complete_txn(&mut self, producer_id: i64, commit: bool) {
        if let Some(offsets) = self.pending_txn.remove(&producer_id) {
            if commit {
                self.offsets.extend(offsets);
            }
        }
    }

    /// Whether an (Txn)OffsetCommit of `partitions` may go in: checked by the protocol of the
    /// group that owns the id (a consumer-protocol group while it has members, else the
    /// classic one).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        transactional: bool,
        api_version: i16,
        partitions: &[consumer::TopicPartition],
    ) -> Result<(), kafka_protocol::ResponseError> {
        match self.consumer.as_ref().filter(|c| !c.is_empty()) {
            Some(c) => c.validate_offset_commit(member_id, generation, transactional, api_version, partitions),
            None => self.group.validate_offset_commit(member_id, instance, generation, transactional),
        }
    }

    /// No members of any protocol.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && !self.is_consumer_group() && self.share.as_ref().is_none_or(|s| s.is_empty())
    }

    /// The group's state, type and protocol type, as ListGroups names them.
    pub fn describe_kind(&self) -> (&'static str, &'static str, String) {
        let g = &self.group;
        match (&self.consumer, &self.share) {
            (_, Some(s)) if g.members.is_empty() => (s.state(), "share", "share".to_string()),
            (Some(c), _) if g.members.is_empty() => (c.state(), "consumer", "consumer".to_string()),
            _ => (g.state.name(), "classic", g.protocol_type.clone().unwrap_or_default()),
        }
    }

    /// `offsets.retention.minutes`: once a group has had no members for the retention time,
    /// offsets committed longer ago than that are deleted (tombstones returned), and a group
    /// left with no offsets is dead.
    pub fn expire_offsets(&mut self, id: &str, now_ms: i64, retention_ms: i64) -> Vec<CoordinatorRecord> {
        let idle = self.is_empty()
            && self.group.state == GroupState::Empty
            && now_ms.saturating_sub(self.group.state_timestamp_ms) > retention_ms;
        if !idle {
            return Vec::new();
        }
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, v)| now_ms.saturating_sub(v.commit_timestamp) > retention_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut records = Vec::new();
        for (t, p) in expired {
            self.offsets.remove(&(t.clone(), p));
            records.push(GroupCoordinator::offset_record(id, &t, p, None));
        }
        if self.offsets.is_empty() {
            self.group.state = GroupState::Dead;
            self.group.dirty = true;
        }
        records
    }
}

pub type GroupHandle = Arc<Mutex<GroupEntry>>;

/// Offsets committed in open transactions: producer id → (topic, partition) → offset.
pub type PendingTxnOffsets = HashMap<i64, BTreeMap<(String, i32), OffsetValue>>;

#[derive(Default)]
pub struct GroupCoordinator {
    groups: DashMap<String, GroupHandle>,
    /// The offsets partitions whose groups are loaded here.
    loaded: Ownership,
    /// Serialises creation of the offsets topic.
    topic_lock: Mutex<()>,
}

impl GroupCoordinator {
    pub fn config(broker: &Broker) -> GroupConfig {
        let cfg = broker.config();
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(
                cfg.get_i64("group.initial.rebalance.delay.ms").max(0) as u64
            ),
            min_session_timeout_ms: cfg.get_i64("group.min.session.timeout.ms") as i32,
            max_session_timeout_ms: cfg.get_i64("group.max.session.timeout.ms") as i32,
            max_size: cfg.get_i64("group.max.size").max(1) as usize,
        }
    }

    /// A KIP-848 group's timing: its `GROUP` config overrides, else the broker's defaults.
    pub fn consumer_config(broker: &Broker, group_id: &str) -> consumer::ConsumerGroupConfig {
        let ms = |name: &str| broker.group_config_i64(group_id, name).unwrap_or(1);
        consumer::ConsumerGroupConfig {
            session_timeout: Duration::from_millis(ms("consumer.session.timeout.ms").max(1) as u64),
            heartbeat_interval_ms: ms("consumer.heartbeat.interval.ms") as i32,
        }
    }

    /// A share group's membership settings: its group configs, else the broker's.
    pub fn share_config(broker: &Broker, group_id: &str) -> share::ShareGroupConfig {
        let ms = |name: &str| broker.group_config_i64(group_id, name).unwrap_or(1);
        share::ShareGroupConfig {
            session_timeout: Duration::from_millis(ms("share.session.timeout.ms").max(1) as u64),
            heartbeat_interval_ms: ms("share.heartbeat.interval.ms") as i32,
            max_size: broker.config_i64("group.share.max.size").max(1) as usize,
        }
    }

    /// The topics a consumer-group assignor may see: every topic but the internal ones.
    pub fn topic_infos(broker: &Broker) -> Vec<consumer::TopicInfo> {
        broker
            .topics()
            .iter()
            .filter(|t| !t.is_internal())
            .map(|t| consumer::TopicInfo { name: t.name.clone(), id: t.id, partitions: t.partition_count })
            .collect()
    }

    pub fn group(&self, id: &str) -> Option<GroupHandle> {
        self.groups.get(id).map(|g| g.clone())
    }

    /// The group, created empty if it does not exist yet.
    pub fn group_or_create(&self, id: &str) -> GroupHandle {
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(GroupEntry::new(ClassicGroup::new(id, now_ms()), BTreeMap::new()))))
            .clone()
    }

    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.groups.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    pub fn remove(&self, id: &str) {
        self.groups.remove(id);
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does.
    pub async fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), AdminError> {
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions_key: "offsets.topic.num.partitions",
            segment_bytes_key: "offsets.topic.segment.bytes",
            replication_factor_key: "offsets.topic.replication.factor",
        };
        ensure_internal_topic(broker, &topic, &self.topic_lock).await
    }

    /// The offsets-topic partition that stores `group`.
    fn partition_of(broker: &Broker, group: &str) -> Option<Arc<Partition>> {
        let topic = broker.topic(OFFSETS_TOPIC)?;
        let n = topic.partition_count;
        topic.partition(partition_for(group, n)).cloned()
    }

    /// Appends records for `group` and makes them durable before returning.
    pub async fn write(&self, broker: &Broker, group: &str, records: Vec<CoordinatorRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_offsets_topic(broker).await.map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
        let partition = Self::partition_of(broker, group).ok_or(LogError::Offline)?;
        let batch = encode_batch(records, None)?;
        append_durably(&partition, &batch).await.map(|_| ())
    }

    /// Appends offsets committed inside a transaction as a transactional batch of producer
    /// `(id, epoch)`, durable before returning; they stay pending until the transaction ends.
    pub async fn write_txn_offsets(
        &self,
        broker: &Broker,
        group: &str,
        producer: (i64, i16),
        records: Vec<CoordinatorRecord>,
    ) -> Result<(), LogError> {
        self.ensure_offsets_topic(broker).await.map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
        let partition = Self::partition_of(broker, group).ok_or(LogError::Offline)?;
        let batch = encode_batch(records, Some(producer))?;
        append_durably(&partition, &batch).await.map(|_| ())
    }

    /// Whether this broker coordinates `group` (see [`Ownership`]). NOT_COORDINATOR sends the
    /// client to look again; COORDINATOR_LOAD_IN_PROGRESS asks it to retry here.
    pub fn ownership(broker: &Broker, group: &str) -> Result<(), kafka_protocol::ResponseError> {
        broker.groups.loaded.check(broker, OFFSETS_TOPIC, group).map(|_| ())
    }

    /// Becoming the leader of offsets partition `index`: its groups are loaded from its log
    /// (whatever this broker had of them before is replaced).
    pub fn take_over(&self, broker: &Broker, index: i32) -> Result<usize, LogError> {
        self.resign(broker, index);
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else { return Ok(0) };
        let Some(p) = topic.partition(index).cloned() else { return Ok(0) };
        let records = self.load_from(&[p])?;
        self.loaded.loaded([index]);
        Ok(records)
    }

    /// No longer the leader of offsets partition `index`: its groups go (their new
    /// coordinator answers for them).
    pub fn resign(&self, broker: &Broker, index: i32) {
        self.loaded.unloaded(index);
        let n = broker.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count);
        self.groups.retain(|id, _| partition_for(id, n) != index);
    }

    /// Called after the transaction coordinator wrote a marker for `producer_id` to offsets
    /// partition `partition`: every group stored there ends that transaction.
    pub async fn complete_txn(&self, broker: &Broker, partition: i32, producer_id: i64, commit: bool) {
        let n = broker.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count);
        for id in self.group_ids() {
            if partition_for(&id, n) != partition {
                continue;
            }
            if let Some(handle) = self.group(&id) {
                handle.lock().await.complete_txn(producer_id, commit);
            }
        }
    }

    /// The group-metadata record for the group's current state (a tombstone once it is dead).
    pub fn group_record(group: &ClassicGroup) -> CoordinatorRecord {
        let key = RecordKey::Group { group: group.id.clone() }.encode();
        let value = (group.state != GroupState::Dead).then(|| group.stored().encode());
        (key, value)
    }

    pub fn offset_record(group: &str, topic: &str, partition: i32, value: Option<&OffsetValue>) -> CoordinatorRecord {
        let key = RecordKey::Offset { group: group.to_string(), topic: topic.to_string(), partition }.encode();
        (key, value.map(OffsetValue::encode))
    }

    /// Replays `__consumer_offsets` into groups and offsets (start-up). Offsets committed in
    /// a transaction apply when its commit marker is replayed; those of transactions still
    /// open stay pending.
    pub fn load(&self, broker: &Broker) -> Result<usize, LogError> {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else { return Ok(0) };
        let leading: Vec<Arc<Partition>> = topic.partitions.iter().filter(|p| p.is_leader()).cloned().collect();
        let records = self.load_from(&leading)?;
        self.loaded.loaded(leading.iter().map(|p| p.index));
        Ok(records)
    }

    fn load_from(&self, partitions: &[Arc<Partition>]) -> Result<usize, LogError> {
        let now = Instant::now();
        let mut stored_groups: BTreeMap<String, Option<GroupValue>> = BTreeMap::new();
        let mut offsets: BTreeMap<String, BTreeMap<(String, i32), OffsetValue>> = BTreeMap::new();
        let mut consumer: BTreeMap<String, StoredConsumerGroup> = BTreeMap::new();
        let mut share: BTreeMap<String, Option<i32>> = BTreeMap::new();
        // producer id → (group, topic, partition, offset) committed in its open transaction
        type Pending = Vec<(String, String, i32, OffsetValue)>;
        let mut pending: HashMap<i64, Pending> = HashMap::new();
        let records = replay_partitions(partitions, |r| {
            if r.control {
                let done = pending.remove(&r.producer_id).unwrap_or_default();
                if r.key.as_deref().and_then(control_type_from_key) == Some(ControlType::Commit) {
                    for (group, t, p, v) in done {
                        offsets.entry(group).or_default().insert((t, p), v);
                    }
                }
                return;
            }
            let Some(key) = r.key.clone().and_then(RecordKey::decode) else { return };
            match key {
                RecordKey::Group { group } => {
                    stored_groups.insert(group, r.value.clone().and_then(GroupValue::decode));
                }
                RecordKey::ConsumerGroup { group } => {
                    consumer.entry(group).or_default().epoch =
                        r.value.clone().and_then(consumer_records::decode_group_epoch);
                }
                RecordKey::ShareGroup { group } => {
                    share.insert(group, r.value.clone().and_then(consumer_records::decode_group_epoch));
                }
                RecordKey::ConsumerTarget { group } => {
                    consumer.entry(group).or_default().assignment_epoch =
                        r.value.clone().and_then(consumer_records::decode_assignment_epoch);
                }
                RecordKey::ConsumerMember { group, member } => {
                    let m = r.value.clone().and_then(consumer_records::MemberMetadata::decode);
                    set_or_remove(&mut consumer.entry(group).or_default().members, member, m);
                }
                RecordKey::ConsumerTargetMember { group, member } => {
                    let t = r.value.clone().and_then(consumer_records::decode_target);
                    set_or_remove(&mut consumer.entry(group).or_default().targets, member, t);
                }
                RecordKey::ConsumerCurrent { group, member } => {
                    let c = r.value.clone().and_then(consumer_records::CurrentAssignment::decode);
                    set_or_remove(&mut consumer.entry(group).or_default().current, member, c);
                }
                RecordKey::Offset { group, topic, partition } => {
                    let value = r.value.clone().and_then(OffsetValue::decode);
                    if r.transactional {
                        if let Some(v) = value {
                            pending.entry(r.producer_id).or_default().push((group, topic, partition, v));
                        }
                        return;
                    }
                    let map = offsets.entry(group).or_default();
                    match value {
                        Some(v) => map.insert((topic, partition), v),
                        None => map.remove(&(topic, partition)),
                    };
                }
            }
        })?;
        let mut open_txns: BTreeMap<String, PendingTxnOffsets> = BTreeMap::new();
        for (pid, list) in pending {
            for (group, t, p, v) in list {
                open_txns.entry(group).or_default().entry(pid).or_default().insert((t, p), v);
            }
        }
        share.retain(|_, epoch| epoch.is_some());
        let mut ids: Vec<String> = stored_groups
            .keys()
            .chain(offsets.keys())
            .chain(consumer.keys())
            .chain(share.keys())
            .chain(open_txns.keys())
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let has_consumer_group = consumer.get(&id).is_some_and(|c| c.epoch.is_some()) || share.contains_key(&id);
            let group = match stored_groups.remove(&id) {
                Some(Some(v)) => ClassicGroup::from_stored(&id, v, now),
                Some(None)
                    if offsets.get(&id).is_none_or(|o| o.is_empty())
                        && !has_consumer_group
                        && !open_txns.contains_key(&id) =>
                {
                    continue
                }
                _ => ClassicGroup::new(&id, now_ms()),
            };
            let group_offsets = offsets.remove(&id).unwrap_or_default();
            let mut entry = GroupEntry::new(group, group_offsets);
            entry.pending_txn = open_txns.remove(&id).unwrap_or_default();
            if let Some(c) = consumer.remove(&id).filter(|c| c.epoch.is_some()) {
                entry.consumer = Some(c.restore(&id, now));
            }
            if let Some(Some(epoch)) = share.remove(&id) {
                entry.share = Some(share::ShareGroup::restore(&id, epoch));
            }
            self.groups.insert(id, Arc::new(Mutex::new(entry)));
        }
        Ok(records)
    }

    /// The records for whatever changed in the group's membership since they were last
    /// written.
    fn take_changes(entry: &mut GroupEntry) -> Vec<CoordinatorRecord> {
        let mut records = Vec::new();
        if entry.group.dirty {
            entry.group.dirty = false;
            records.push(Self::group_record(&entry.group));
        }
        if let Some(c) = entry.consumer.as_mut().filter(|c| c.dirty) {
            records.extend(c.take_records().into_iter().map(|(k, v)| (k.encode(), v)));
        }
        if let Some(s) = entry.share.as_mut() {
            records.extend(s.take_record());
        }
        records
    }

    /// Writes the group's changed membership now, before the request that changed it is
    /// answered (Kafka 4's coordinator answers once such records are committed), so a new
    /// coordinator after a failover does not wait out the session of a member that left.
    pub async fn write_changes(&self, broker: &Broker, id: &str) -> Result<(), LogError> {
        let Some(handle) = self.group(id) else { return Ok(()) };
        let mut entry = handle.lock().await;
        let records = Self::take_changes(&mut entry);
        self.write(broker, id, records).await
    }

    /// Drives group timers and writes group metadata that changed; expires offsets of groups
    /// that stayed empty for `offsets.retention.minutes`.
    pub async fn run_timers(self: Arc<Self>, broker: Arc<Broker>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cfg = Self::config(&broker);
            let retention_ms = broker.config_i64("offsets.retention.minutes").saturating_mul(60_000);
            let topics = Self::topic_infos(&broker);
            for id in self.group_ids() {
                let Some(handle) = self.group(&id) else { continue };
                let mut entry = handle.lock().await;
                let (now, wall) = (Instant::now(), now_ms());
                entry.group.tick(now, wall, &cfg);
                if let Some(c) = entry.consumer.as_mut() {
                    c.tick(now, &Self::consumer_config(&broker, &id));
                }
                if let Some(s) = entry.share.as_mut() {
                    for member in s.tick(now, &Self::share_config(&broker, &id), &topics) {
                        broker.shares.member_left(&broker, &id, &member);
                    }
                }
                let mut records = entry.expire_offsets(&id, wall, retention_ms);
                records.extend(Self::take_changes(&mut entry));
                let dead = entry.group.state == GroupState::Dead;
                // written under the group's lock, so no later state can be written before it
                if let Err(e) = self.write(&broker, &id, records).await {
                    tracing::error!(group = %id, error = %e, "cannot persist group state");
                }
                drop(entry);
                if dead {
                    self.remove(&id);
                }
            }
        }
    }
}

/// A KIP-848 group as replayed from its records.
#[derive(Default)]
struct StoredConsumerGroup {
    epoch: Option<i32>,
    assignment_epoch: Option<i32>,
    members: BTreeMap<String, consumer_records::MemberMetadata>,
    targets: BTreeMap<String, consumer_records::TopicPartitions>,
    current: BTreeMap<String, consumer_records::CurrentAssignment>,
}

impl StoredConsumerGroup {
    fn restore(mut self, id: &str, now: Instant) -> consumer::ConsumerGroup {
        let members = std::mem::take(&mut self.members)
            .into_iter()
            .map(|(mid, meta)| {
                let target = self.targets.remove(&mid).unwrap_or_default();
                let current = self.current.remove(&mid);
                (mid, meta, target, current)
            })
            .collect();
        let epoch = self.epoch.unwrap_or(0);
        consumer::ConsumerGroup::restore(id, epoch, self.assignment_epoch.unwrap_or(epoch), members, now)
    }
}

/// Applies a replayed record: a value sets the entry, a tombstone (or garbage) removes it.
fn set_or_remove<V>(map: &mut BTreeMap<String, V>, key: String, value: Option<V>) {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

/// An owned `StrBytes`.
pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_with_offset(committed_at: i64) -> GroupEntry {
        let mut e = GroupEntry::new(ClassicGroup::new("g", 0), BTreeMap::new());
        let v = OffsetValue { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp: committed_at };
        e.offsets.insert(("t".into(), 0), v);
        e
    }

    #[test]
    fn offsets_of_long_empty_groups_expire() {
        let mut e = entry_with_offset(0);
        assert!(e.expire_offsets("g", 1_000, 1_000).is_empty(), "not yet past the retention");
        let tombstones = e.expire_offsets("g", 1_001, 1_000);
        assert_eq!(tombstones.len(), 1);
        assert!(tombstones[0].1.is_none());
        assert_eq!(e.group.state, GroupState::Dead);
    }

    #[test]
    fn offsets_of_groups_with_members_never_expire() {
        let mut e = entry_with_offset(0);
        let mut c = consumer::ConsumerGroup::new("g");
        let t = vec![consumer::TopicInfo { name: "t".into(), id: uuid::Uuid::new_v4(), partitions: 1 }];
        let hb = consumer::Heartbeat {
            member_id: "m".into(),
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Default::default()
        };
        let cfg = consumer::ConsumerGroupConfig { session_timeout: Duration::from_secs(45), heartbeat_interval_ms: 1 };
        c.heartbeat(hb, &t, Instant::now(), &cfg);
        e.consumer = Some(c);
        assert!(e.expire_offsets("g", i64::MAX, 1_000).is_empty(), "a consumer-protocol group is in use");
        assert_eq!(e.offsets.len(), 1);
    }
}
