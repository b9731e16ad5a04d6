//! Durable share-partition state: the internal compacted topic `__share_group_state`, in
//! Kafka's share-coordinator record formats, so that a restart (or a new leader) redelivers
//! exactly what was not acknowledged.
//!
//! Each share-partition's state is one `ShareSnapshot` record (key type 0: group, topic id,
//! partition; value: state epoch, leader epoch, start offset, create and write times, and the
//! state batches — runs of offsets with their delivery state 0 available / 2 acknowledged /
//! 4 archived and their delivery count). Weir writes a whole snapshot on every change
//! (compaction keeps the last), where Kafka also writes `ShareUpdate` deltas (key type 1),
//! which Weir reads. The state lives in partition `abs(hash("group:topicId:partition")) %
//! share.coordinator.state.topic.num.partitions`, as Kafka places it.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use kafka_protocol::messages::{
    ApiKey, DeleteShareGroupStateRequest, DeleteShareGroupStateResponse, ReadShareGroupStateRequest,
    ReadShareGroupStateResponse, WriteShareGroupStateRequest, WriteShareGroupStateResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::partition::{ArchiveReason, Archived, RecordState};
use super::SharePartitionKey;
use crate::broker::{now_ms, AdminError, Broker};
use crate::coordinator::codec::{put_str, CompactWriter, Reader};
use crate::coordinator::group::records::partition_for;
use crate::coordinator::{
    append_durably, encode_batch, ensure_internal_topic, replay_partitions, InternalTopic, Ownership,
};
use crate::log::LogError;
use crate::partition::Partition;
use kafka_protocol::ResponseError;

pub const STATE_TOPIC: &str = "__share_group_state";

const SNAPSHOT: i16 = 0;
const UPDATE: i16 = 1;
const VALUE_VERSION: i16 = 0;

/// One run of a share-partition's persisted state.
pub type StateBatch = (i64, i64, RecordState, i16);

/// A share-partition's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateSnapshot {
    pub state_epoch: i32,
    pub leader_epoch: i32,
    pub start_offset: i64,
    pub create_timestamp: i64,
    pub batches: Vec<StateBatch>,
    /// Weir's: records still to be copied to the dead-letter topic, and that topic
    /// partition's end offset before the first of them was (a tagged field Kafka skips).
    pub dead_letters: Vec<Archived>,
    pub dead_letter_mark: i64,
}

/// The tagged field of a snapshot that carries Weir's pending dead letters.
const DEAD_LETTERS_TAG: u64 = 10_000;

/// Kafka's `SharePartitionKey.asCoordinatorKey()`: what places the state in a partition.
fn coordinator_key(key: &SharePartitionKey) -> String {
    format!("{}:{}:{}", key.group, URL_SAFE_NO_PAD.encode(key.topic_id.as_bytes()), key.partition)
}

pub fn encode_key(key: &SharePartitionKey) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(SNAPSHOT);
    put_str(&mut b, &key.group);
    b.put_slice(key.topic_id.as_bytes());
    b.put_i32(key.partition);
    b.freeze()
}

/// A key's record type (snapshot or update) and share-partition.
pub fn decode_key(b: Bytes) -> Option<(i16, SharePartitionKey)> {
    let mut r = Reader(b);
    let kind = r.i16()?;
    let group = r.str()?;
    let topic_id = Uuid::from_slice(&r.take(16)?).ok()?;
    let partition = r.i32()?;
    Some((kind, SharePartitionKey { group, topic_id, partition }))
}

fn delivery_state(state: RecordState) -> i8 {
    match state {
        RecordState::Acknowledged => 2,
        RecordState::Archived => 4,
        // acquired records are stored as available: their locks die with this broker
        RecordState::Available | RecordState::Acquired => 0,
    }
}

fn record_state(code: i8) -> Option<RecordState> {
    match code {
        0 => Some(RecordState::Available),
        2 => Some(RecordState::Acknowledged),
        4 => Some(RecordState::Archived),
        _ => None,
    }
}

pub fn encode_snapshot(s: &StateSnapshot) -> Bytes {
    let mut w = CompactWriter::new(VALUE_VERSION);
    w.0.put_i32(0); // snapshot epoch
    w.0.put_i32(s.state_epoch);
    w.0.put_i32(s.leader_epoch);
    w.0.put_i64(s.start_offset);
    w.0.put_i64(s.create_timestamp);
    w.0.put_i64(now_ms());
    put_batches(&mut w, &s.batches);
    match encode_dead_letters(s) {
        None => w.finish(),
        Some(tag) => w.finish_with_tags(&[(DEAD_LETTERS_TAG, tag)]),
    }
}

/// Weir's dead-letter tagged field, when any are pending.
fn encode_dead_letters(s: &StateSnapshot) -> Option<Bytes> {
    if s.dead_letters.is_empty() {
        return None;
    }
    let mut tag = BytesMut::new();
    tag.put_i64(s.dead_letter_mark);
    tag.put_i32(s.dead_letters.len() as i32);
    for d in &s.dead_letters {
        tag.put_i64(d.first);
        tag.put_i64(d.last);
        tag.put_i16(d.delivery_count);
        tag.put_i8(matches!(d.reason, ArchiveReason::DeliveryLimit) as i8);
    }
    Some(tag.freeze())
}

fn decode_dead_letters(b: Bytes) -> Option<(i64, Vec<Archived>)> {
    let mut r = Reader(b);
    let mark = r.i64()?;
    let n = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let (first, last, delivery_count) = (r.i64()?, r.i64()?, r.i16()?);
        let reason = if r.i8()? == 1 { ArchiveReason::DeliveryLimit } else { ArchiveReason::Rejected };
        out.push(Archived { first, last, delivery_count, reason });
    }
    Some((mark, out))
}

fn put_batches(w: &mut CompactWriter, batches: &[StateBatch]) {
    w.uvarint(batches.len() as u64 + 1);
    for (first, last, state, count) in batches {
        w.0.put_i64(*first);
        w.0.put_i64(*last);
        w.0.put_i8(delivery_state(*state));
        w.0.put_i16(*count);
        w.uvarint(0);
    }
}

impl Reader {
    fn state_batches(&mut self) -> Option<Vec<StateBatch>> {
        let mut out = Vec::new();
        for _ in 0..self.compact_count()? {
            let first = self.i64()?;
            let last = self.i64()?;
            let state = record_state(self.i8()?)?;
            let count = self.i16()?;
            self.skip_tags()?;
            out.push((first, last, state, count));
        }
        Some(out)
    }
}

pub fn decode_snapshot(b: Bytes) -> Option<StateSnapshot> {
    let mut r = Reader(b);
    (r.i16()? == VALUE_VERSION).then_some(())?;
    let _snapshot_epoch = r.i32()?;
    let state_epoch = r.i32()?;
    let leader_epoch = r.i32()?;
    let start_offset = r.i64()?;
    let create_timestamp = r.i64()?;
    let _write_timestamp = r.i64()?;
    let batches = r.state_batches()?;
    let (dead_letter_mark, dead_letters) = r
        .tags()
        .unwrap_or_default()
        .into_iter()
        .find(|(tag, _)| *tag == DEAD_LETTERS_TAG)
        .and_then(|(_, data)| decode_dead_letters(data))
        .unwrap_or((-1, Vec::new()));
    Some(StateSnapshot {
        state_epoch,
        leader_epoch,
        start_offset,
        create_timestamp,
        batches,
        dead_letters,
        dead_letter_mark,
    })
}

/// A Kafka `ShareUpdate` applied to the snapshot it follows: a new start offset (unless -1)
/// and the batches it lists laid over the earlier ones.
fn apply_update(base: &mut StateSnapshot, b: Bytes) -> Option<()> {
    let mut r = Reader(b);
    (r.i16()? == VALUE_VERSION).then_some(())?;
    let _snapshot_epoch = r.i32()?;
    base.leader_epoch = r.i32()?;
    let start = r.i64()?;
    let batches = r.state_batches()?;
    if start >= 0 {
        base.start_offset = start;
    }
    let mut by_offset: BTreeMap<i64, StateBatch> = BTreeMap::new();
    for batch in base.batches.drain(..).chain(batches) {
        // a later batch replaces the offsets it covers
        let (first, last) = (batch.0, batch.1);
        let overlapping: Vec<i64> = by_offset.range(..=last).filter(|(_, b)| b.1 >= first).map(|(f, _)| *f).collect();
        for f in overlapping {
            if let Some(old) = by_offset.remove(&f) {
                if old.0 < first {
                    by_offset.insert(old.0, (old.0, first - 1, old.2, old.3));
                }
                if old.1 > last {
                    by_offset.insert(last + 1, (last + 1, old.1, old.2, old.3));
                }
            }
        }
        by_offset.insert(first, batch);
    }
    let start = base.start_offset;
    base.batches = by_offset.into_values().filter(|b| b.1 >= start).map(|b| (b.0.max(start), b.1, b.2, b.3)).collect();
    Some(())
}

/// Why share state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("share state coordinator unavailable: {0}")]
    Unavailable(String),
    #[error("share state coordinator answered error code {0}")]
    Code(i16),
}

impl StateError {
    /// Whether trying again soon may succeed: the coordinator is moving or loading.
    fn is_retriable(&self) -> bool {
        const RETRIABLE: [ResponseError; 3] = [
            ResponseError::NotCoordinator,
            ResponseError::CoordinatorLoadInProgress,
            ResponseError::CoordinatorNotAvailable,
        ];
        match self {
            StateError::Unavailable(_) => true,
            StateError::Code(code) => RETRIABLE.iter().any(|e| e.code() == *code),
            StateError::Log(_) => false,
        }
    }
}

impl From<AdminError> for StateError {
    fn from(e: AdminError) -> Self {
        StateError::Unavailable(e.to_string())
    }
}

/// Where a share-partition's state lives: a state partition this broker leads, or the
/// broker that does.
enum Coordinator {
    Local,
    Remote(i32),
}

/// The RPC forms of a snapshot (Write/ReadShareGroupState v0); Weir's pending dead letters
/// travel in an unknown tagged field, as in the record.
pub mod rpc {
    use super::*;
    use kafka_protocol::messages::{read_share_group_state_response as read, write_share_group_state_request as write};

    /// The dead-letter mark and pending copies carried in a message's unknown tagged fields.
    fn dead_letters_in(tags: &std::collections::BTreeMap<i32, Bytes>) -> (i64, Vec<Archived>) {
        tags.get(&(DEAD_LETTERS_TAG as i32)).and_then(|t| decode_dead_letters(t.clone())).unwrap_or((-1, Vec::new()))
    }

    pub fn to_write(key: &SharePartitionKey, s: &StateSnapshot) -> WriteShareGroupStateRequest {
        let batches = s
            .batches
            .iter()
            .map(|(first, last, state, count)| {
                write::StateBatch::default()
                    .with_first_offset(*first)
                    .with_last_offset(*last)
                    .with_delivery_state(delivery_state(*state))
                    .with_delivery_count(*count)
            })
            .collect();
        let mut partition = write::PartitionData::default()
            .with_partition(key.partition)
            .with_state_epoch(s.state_epoch)
            .with_leader_epoch(s.leader_epoch)
            .with_start_offset(s.start_offset)
            .with_state_batches(batches);
        if let Some(tag) = encode_dead_letters(s) {
            partition.unknown_tagged_fields.insert(DEAD_LETTERS_TAG as i32, tag);
        }
        WriteShareGroupStateRequest::default().with_group_id(StrBytes::from_string(key.group.clone())).with_topics(
            vec![write::WriteStateData::default().with_topic_id(key.topic_id).with_partitions(vec![partition])],
        )
    }

    pub fn from_write(topic_id: Uuid, group: &str, p: &write::PartitionData) -> (SharePartitionKey, StateSnapshot) {
        let batches = p
            .state_batches
            .iter()
            .filter_map(|b| Some((b.first_offset, b.last_offset, record_state(b.delivery_state)?, b.delivery_count)))
            .collect();
        let (dead_letter_mark, dead_letters) = dead_letters_in(&p.unknown_tagged_fields);
        let key = SharePartitionKey { group: group.to_string(), topic_id, partition: p.partition };
        let snapshot = StateSnapshot {
            state_epoch: p.state_epoch,
            leader_epoch: p.leader_epoch,
            start_offset: p.start_offset,
            create_timestamp: now_ms(),
            batches,
            dead_letters,
            dead_letter_mark,
        };
        (key, snapshot)
    }

    pub fn to_read_result(partition: i32, s: Option<&StateSnapshot>) -> read::PartitionResult {
        let Some(s) = s else {
            return read::PartitionResult::default()
                .with_partition(partition)
                .with_state_epoch(-1)
                .with_start_offset(-1);
        };
        let batches = s
            .batches
            .iter()
            .map(|(first, last, state, count)| {
                read::StateBatch::default()
                    .with_first_offset(*first)
                    .with_last_offset(*last)
                    .with_delivery_state(delivery_state(*state))
                    .with_delivery_count(*count)
            })
            .collect();
        let mut r = read::PartitionResult::default()
            .with_partition(partition)
            .with_state_epoch(s.state_epoch)
            .with_start_offset(s.start_offset)
            .with_state_batches(batches);
        if let Some(tag) = encode_dead_letters(s) {
            r.unknown_tagged_fields.insert(DEAD_LETTERS_TAG as i32, tag);
        }
        r
    }

    pub fn from_read_result(r: &read::PartitionResult) -> Option<StateSnapshot> {
        if r.start_offset < 0 {
            return None;
        }
        let batches = r
            .state_batches
            .iter()
            .filter_map(|b| Some((b.first_offset, b.last_offset, record_state(b.delivery_state)?, b.delivery_count)))
            .collect();
        let (dead_letter_mark, dead_letters) = dead_letters_in(&r.unknown_tagged_fields);
        Some(StateSnapshot {
            state_epoch: r.state_epoch,
            leader_epoch: -1,
            start_offset: r.start_offset,
            create_timestamp: now_ms(),
            batches,
            dead_letters,
            dead_letter_mark,
        })
    }
}

pub use rpc::{from_write, to_read_result};

/// The share-state store: persisted snapshots of the `__share_group_state` partitions this
/// broker leads, and the writes that keep them.
#[derive(Default)]
pub struct ShareStateStore {
    stored: DashMap<SharePartitionKey, StateSnapshot>,
    topic_lock: Mutex<()>,
    /// The state partitions this broker leads and has read: until a new leader has replayed
    /// one, it answers COORDINATOR_LOAD_IN_PROGRESS (an empty answer would start a
    /// share-partition afresh, at its reset offset, skipping records still to deliver).
    loaded: Ownership,
}

/// How long a state read or write keeps trying while its coordinator is elected, moves or
/// loads (Kafka's persister retries these too); longer is an error for the caller.
const COORDINATOR_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

impl ShareStateStore {
    fn topic() -> InternalTopic {
        InternalTopic {
            name: STATE_TOPIC,
            partitions_key: "share.coordinator.state.topic.num.partitions",
            segment_bytes_key: "share.coordinator.state.topic.segment.bytes",
            replication_factor_key: "share.coordinator.state.topic.replication.factor",
        }
    }

    pub async fn ensure_topic(&self, broker: &Broker) -> Result<(), AdminError> {
        ensure_internal_topic(broker, &Self::topic(), &self.topic_lock).await
    }

    fn partition_of(broker: &Broker, key: &SharePartitionKey) -> Option<Arc<Partition>> {
        let topic = broker.topic(STATE_TOPIC)?;
        topic.partition(partition_for(&coordinator_key(key), topic.partition_count)).cloned()
    }

    /// The state last persisted for a share-partition.
    pub fn stored(&self, key: &SharePartitionKey) -> Option<StateSnapshot> {
        self.stored.get(key).map(|s| s.clone())
    }

    /// When a share-partition's stored state was created (without copying the state: every
    /// write asks).
    pub fn created_at(&self, key: &SharePartitionKey) -> Option<i64> {
        self.stored.get(key).map(|s| s.create_timestamp)
    }

    /// Every persisted share-partition of `group`.
    pub fn of_group(&self, group: &str) -> Vec<(SharePartitionKey, StateSnapshot)> {
        self.stored.iter().filter(|e| e.key().group == group).map(|e| (e.key().clone(), e.value().clone())).collect()
    }

    /// Whether this broker serves `key`'s state: NOT_COORDINATOR where it does not lead its
    /// state partition, COORDINATOR_LOAD_IN_PROGRESS while it has not read it yet.
    pub fn ownership(&self, broker: &Broker, key: &SharePartitionKey) -> Result<(), ResponseError> {
        self.loaded.check(broker, STATE_TOPIC, &coordinator_key(key)).map(|_| ())
    }

    /// Finds the coordinator of a share-partition's state.
    async fn coordinator(&self, broker: &Broker, key: &SharePartitionKey) -> Result<Coordinator, StateError> {
        self.ensure_topic(broker).await?;
        let topic = broker.topic(STATE_TOPIC).ok_or_else(|| StateError::Unavailable("no state topic".into()))?;
        let index = partition_for(&coordinator_key(key), topic.partition_count);
        let partition = topic.partition(index).cloned().ok_or(LogError::Offline)?;
        if partition.is_leader() {
            return self.ownership(broker, key).map(|()| Coordinator::Local).map_err(|e| StateError::Code(e.code()));
        }
        let leader = topic.state(index).map_or(-1, |s| s.leader);
        if broker.inter_broker_addr(leader).is_none() {
            return Err(StateError::Unavailable(format!("no leader for {STATE_TOPIC}-{index}")));
        }
        Ok(Coordinator::Remote(leader))
    }

    /// Writes a share-partition's state durably where it lives (`None`: deletes it): here
    /// when this broker leads its state partition, else with Write/DeleteShareGroupState at
    /// the broker that does.
    pub async fn write(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        snapshot: Option<StateSnapshot>,
    ) -> Result<(), StateError> {
        retrying(|| self.write_once(broker, key, snapshot.clone())).await
    }

    async fn write_once(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        snapshot: Option<StateSnapshot>,
    ) -> Result<(), StateError> {
        let leader = match self.coordinator(broker, key).await? {
            Coordinator::Local => return Ok(self.persist(broker, key, snapshot).await?),
            Coordinator::Remote(leader) => leader,
        };
        let code = match snapshot {
            Some(s) => {
                let r: WriteShareGroupStateResponse =
                    call(broker, leader, ApiKey::WriteShareGroupState, &rpc::to_write(key, &s)).await?;
                r.results.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code)
            }
            None => {
                use kafka_protocol::messages::delete_share_group_state_request::{DeleteStateData, PartitionData};
                let req = DeleteShareGroupStateRequest::default()
                    .with_group_id(StrBytes::from_string(key.group.clone()))
                    .with_topics(vec![DeleteStateData::default()
                        .with_topic_id(key.topic_id)
                        .with_partitions(vec![PartitionData::default().with_partition(key.partition)])]);
                let r: DeleteShareGroupStateResponse =
                    call(broker, leader, ApiKey::DeleteShareGroupState, &req).await?;
                r.results.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code)
            }
        };
        if code != 0 {
            return Err(StateError::Code(code));
        }
        Ok(())
    }

    /// Reads a share-partition's state where it lives (ReadShareGroupState when elsewhere).
    pub async fn read(&self, broker: &Broker, key: &SharePartitionKey) -> Result<Option<StateSnapshot>, StateError> {
        retrying(|| self.read_once(broker, key)).await
    }

    async fn read_once(&self, broker: &Broker, key: &SharePartitionKey) -> Result<Option<StateSnapshot>, StateError> {
        let leader = match self.coordinator(broker, key).await? {
            Coordinator::Local => return Ok(self.stored(key)),
            Coordinator::Remote(leader) => leader,
        };
        use kafka_protocol::messages::read_share_group_state_request::{PartitionData, ReadStateData};
        let req = ReadShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_string(key.group.clone()))
            .with_topics(vec![ReadStateData::default()
                .with_topic_id(key.topic_id)
                .with_partitions(vec![PartitionData::default().with_partition(key.partition).with_leader_epoch(-1)])]);
        let r: ReadShareGroupStateResponse = call(broker, leader, ApiKey::ReadShareGroupState, &req).await?;
        let p = r.results.first().and_then(|t| t.partitions.first()).ok_or(StateError::Code(-1))?;
        if p.error_code != 0 {
            return Err(StateError::Code(p.error_code));
        }
        Ok(rpc::from_read_result(p))
    }

    /// Writes a share-partition's state durably to a state partition this broker leads
    /// (`None`: deletes it).
    pub async fn persist(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        snapshot: Option<StateSnapshot>,
    ) -> Result<(), LogError> {
        self.ensure_topic(broker).await.map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
        let partition = Self::partition_of(broker, key).ok_or(LogError::Offline)?;
        let record = (encode_key(key), snapshot.as_ref().map(encode_snapshot));
        let batch = encode_batch(vec![record], None)?;
        append_durably(&partition, &batch).await?;
        match snapshot {
            Some(s) => self.stored.insert(key.clone(), s),
            None => self.stored.remove(key).map(|(_, s)| s),
        };
        Ok(())
    }

    /// Replays the state partitions this broker leads (start-up).
    pub fn load(&self, broker: &Broker) -> Result<usize, LogError> {
        let Some(topic) = broker.topic(STATE_TOPIC) else { return Ok(0) };
        let leading: Vec<Arc<Partition>> = topic.partitions.iter().filter(|p| p.is_leader()).cloned().collect();
        let records = self.load_from(&leading)?;
        self.loaded.loaded(leading.iter().map(|p| p.index));
        Ok(records)
    }

    /// Becoming the leader of state partition `index`: its snapshots are read again.
    pub fn take_over(&self, broker: &Broker, index: i32) -> Result<usize, LogError> {
        self.resign(broker, index);
        let Some(p) = broker.topic(STATE_TOPIC).and_then(|t| t.partition(index).cloned()) else { return Ok(0) };
        let records = self.load_from(&[p])?;
        self.loaded.loaded([index]);
        Ok(records)
    }

    /// No longer the leader of state partition `index`: its snapshots go.
    pub fn resign(&self, broker: &Broker, index: i32) {
        self.loaded.unloaded(index);
        let n = broker.topic(STATE_TOPIC).map_or(1, |t| t.partition_count);
        self.stored.retain(|k, _| partition_for(&coordinator_key(k), n) != index);
    }

    fn load_from(&self, partitions: &[Arc<Partition>]) -> Result<usize, LogError> {
        let mut found: BTreeMap<SharePartitionKey, Option<StateSnapshot>> = BTreeMap::new();
        let records = replay_partitions(partitions, |r| {
            let Some((kind, key)) = r.key.clone().and_then(decode_key) else { return };
            match (kind, r.value.clone()) {
                (_, None) => {
                    found.insert(key, None);
                }
                (SNAPSHOT, Some(v)) => {
                    found.insert(key, decode_snapshot(v));
                }
                (UPDATE, Some(v)) => {
                    if let Some(Some(base)) = found.get_mut(&key) {
                        apply_update(base, v);
                    }
                }
                _ => {}
            }
        })?;
        for (key, snapshot) in found {
            match snapshot {
                Some(s) => self.stored.insert(key, s),
                None => self.stored.remove(&key).map(|(_, s)| s),
            };
        }
        Ok(records)
    }
}

/// One share-state RPC to the coordinator broker `to`.
/// Runs a state read or write again while its coordinator is being elected, moves or loads
/// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, unreachable),
/// for up to [`COORDINATOR_RETRY`], re-finding the coordinator each time.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StateError>>,
{
    let deadline = tokio::time::Instant::now() + COORDINATOR_RETRY;
    let mut backoff = std::time::Duration::from_millis(20);
    loop {
        match attempt().await {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(error = %e, "share state coordinator not ready; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
    broker: &Broker,
    to: i32,
    key: ApiKey,
    req: &Req,
) -> Result<Resp, StateError> {
    broker
        .call_broker(to, key, 0, req, std::time::Duration::from_secs(15))
        .await
        .map_err(|e| StateError::Unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SharePartitionKey {
        SharePartitionKey { group: "g".into(), topic_id: Uuid::from_u128(42), partition: 3 }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = StateSnapshot {
            state_epoch: 2,
            leader_epoch: 5,
            start_offset: 10,
            create_timestamp: 123,
            batches: vec![(10, 12, RecordState::Available, 2), (13, 13, RecordState::Archived, 5)],
            dead_letter_mark: -1,
            ..Default::default()
        };
        assert_eq!(decode_snapshot(encode_snapshot(&s)), Some(s.clone()));
        let pending = Archived { first: 13, last: 13, delivery_count: 5, reason: ArchiveReason::DeliveryLimit };
        let with_dead_letters = StateSnapshot { dead_letters: vec![pending], dead_letter_mark: 77, ..s };
        assert_eq!(decode_snapshot(encode_snapshot(&with_dead_letters)), Some(with_dead_letters));
        assert_eq!(decode_key(encode_key(&key())), Some((SNAPSHOT, key())));
        assert_eq!(decode_snapshot(Bytes::from_static(&[0, 0, 1])), None);
    }

    #[test]
    fn updates_lay_batches_over_the_snapshot() {
        let mut base = StateSnapshot {
            state_epoch: 0,
            leader_epoch: 0,
            start_offset: 0,
            create_timestamp: 0,
            batches: vec![(0, 9, RecordState::Available, 1)],
            ..Default::default()
        };
        let mut w = CompactWriter::new(VALUE_VERSION);
        w.0.put_i32(0);
        w.0.put_i32(1);
        w.0.put_i64(2);
        put_batches(&mut w, &[(4, 5, RecordState::Acknowledged, 1)]);
        apply_update(&mut base, w.finish()).unwrap();
        assert_eq!(
            base.batches,
            vec![
                (2, 3, RecordState::Available, 1),
                (4, 5, RecordState::Acknowledged, 1),
                (6, 9, RecordState::Available, 1)
            ]
        );
    }

    #[test]
    fn the_coordinator_key_uses_kafkas_topic_id_text() {
        let key = SharePartitionKey { group: "g".into(), topic_id: Uuid::nil(), partition: 0 };
        assert_eq!(coordinator_key(&key), "g:AAAAAAAAAAAAAAAAAAAAAA:0");
    }
}
