//! Coordinators: state machines whose durable state is a compacted internal topic. Both keep
//! their records in Kafka's formats, append them as ordinary batches (transactional ones for
//! offsets committed inside a transaction) and replay the topic at start-up.

pub mod codec;
pub mod group;
pub mod txn;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::Mutex;

use std::sync::Arc;

use crate::broker::{now_ms, AdminError, Broker, NewTopic, Topic};
use crate::log::{AppendInfo, LogError};
use crate::partition::Partition;
use kafka_protocol::ResponseError;

/// One record to write: key and value (`None` is a tombstone).
pub type CoordinatorRecord = (Bytes, Option<Bytes>);

/// An internal topic and the broker keys that size it.
pub struct InternalTopic {
    pub name: &'static str,
    pub partitions_key: &'static str,
    pub segment_bytes_key: &'static str,
    pub replication_factor_key: &'static str,
}

/// Appends a coordinator's batch to its partition, which this broker must lead, and waits
/// until it is as durable as acks=all makes a produce: on disk here, and on every in-sync
/// replica when the partition has others.
pub async fn append_durably(partition: &Arc<Partition>, batch: &[u8]) -> Result<AppendInfo, LogError> {
    if !partition.is_leader() {
        return Err(LogError::Offline);
    }
    let info = partition.append(batch, now_ms())?;
    await_durable(partition, info.last_offset + 1).await?;
    Ok(info)
}

/// Which partitions of a coordinator's internal topic this broker serves: those it leads and
/// has loaded. A broker that has just come to lead one answers COORDINATOR_LOAD_IN_PROGRESS
/// until it has read it; one that does not lead it, NOT_COORDINATOR.
#[derive(Default)]
pub struct Ownership {
    loaded: parking_lot::Mutex<std::collections::HashSet<i32>>,
}

impl Ownership {
    /// Whether this broker coordinates `key` of internal topic `topic`; the key's partition
    /// when it does. When the topic does not exist yet, a single broker creates it on first
    /// use, while in a cluster the coordinator is a partition this broker has not heard of.
    pub fn check(&self, broker: &Broker, topic: &str, key: &str) -> Result<Option<i32>, ResponseError> {
        let Some(topic) = broker.topic(topic) else {
            return if broker.controller().quorum.single {
                Ok(None)
            } else {
                Err(ResponseError::CoordinatorNotAvailable)
            };
        };
        let index = group::records::partition_for(key, topic.partition_count);
        let Some(p) = topic.partition(index).filter(|p| p.is_leader()) else {
            return Err(ResponseError::NotCoordinator);
        };
        if !p.is_only_replica() && !self.loaded.lock().contains(&index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(Some(index))
    }

    pub fn loaded(&self, partitions: impl IntoIterator<Item = i32>) {
        self.loaded.lock().extend(partitions);
    }

    pub fn unloaded(&self, index: i32) {
        self.loaded.lock().remove(&index);
    }
}

/// Waits until the partition, which this broker leads, holds everything below `end` as
/// durably as acks=all makes a produce: on disk here, and on every in-sync replica when the
/// partition has others.
pub async fn await_durable(partition: &Arc<Partition>, end: i64) -> Result<(), LogError> {
    partition.want_flushed(end);
    partition.flush_to(end).await?;
    if partition.is_replicated_leader() {
        let min_isr = partition.log().config().min_insync_replicas;
        partition.await_replicated(end, min_isr, REPLICATION_WAIT).await.map_err(|_| LogError::Offline)?;
    }
    Ok(())
}

/// How long a coordinator's write waits for the in-sync replicas.
const REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Creates a compacted internal topic on first use, as Kafka does; `lock` serialises
/// concurrent first uses.
pub async fn ensure_internal_topic(broker: &Broker, topic: &InternalTopic, lock: &Mutex<()>) -> Result<(), AdminError> {
    if broker.topic(topic.name).is_some() {
        return Ok(());
    }
    let _guard = lock.lock().await;
    if broker.topic(topic.name).is_some() {
        return Ok(());
    }
    let cfg = broker.config();
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), cfg.get(topic.segment_bytes_key)),
    ]);
    // Kafka's `*.replication.factor`, capped at the live brokers when the topic is first
    // created (one on a single broker)
    let live = broker.metadata_image().brokers.values().filter(|b| !b.fenced).count().max(1);
    let replication_factor = cfg.get_i64(topic.replication_factor_key).clamp(1, live as i64) as i16;
    let new = NewTopic {
        name: topic.name.to_string(),
        partitions: cfg.get_i64(topic.partitions_key) as i32,
        replication_factor,
        configs,
        assignments: Vec::new(),
    };
    match broker.create_topic(&new).await {
        Ok(_) | Err(AdminError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Encodes coordinator records as one uncompressed batch; with a producer id and epoch it is
/// a transactional batch (offsets committed inside a transaction), without a sequence number.
pub fn encode_batch(records: Vec<CoordinatorRecord>, producer: Option<(i64, i16)>) -> Result<BytesMut, LogError> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            delete_horizon: false,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
    Ok(buf)
}

/// Calls `f` with every record of every partition of an internal topic, in offset order per
/// partition (start-up). Returns how many records were read.
pub fn replay(topic: &Topic, f: impl FnMut(&Record)) -> Result<usize, LogError> {
    replay_partitions(&topic.partitions, f)
}

/// [`replay`] over some of a topic's partitions, each to its log end (a new leader's log is
/// what its followers will hold).
pub fn replay_partitions(partitions: &[Arc<Partition>], mut f: impl FnMut(&Record)) -> Result<usize, LogError> {
    let mut records = 0usize;
    for p in partitions {
        let log = p.log();
        records += read_records(&log, log.log_start_offset(), log.log_end_offset(), &mut f)?;
    }
    Ok(records)
}

/// Calls `f` with every record of the batches of `log` from the one holding `from` up to
/// `end` (exclusive), decoded, in offset order; returns how many.
pub fn read_records(log: &crate::log::Log, from: i64, end: i64, mut f: impl FnMut(&Record)) -> Result<usize, LogError> {
    let mut records = 0usize;
    let mut offset = from.max(log.log_start_offset());
    while offset < end {
        let Some(bytes) = log.read(offset, 1 << 20, end, true)?.bytes()? else { break };
        let mut buf = bytes;
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| LogError::Io(std::io::Error::other(e)))?;
        let Some(last) = sets.iter().flat_map(|s| s.records.iter()).map(|r| r.offset).max() else { break };
        for r in sets.iter().flat_map(|s| s.records.iter()) {
            records += 1;
            f(r);
        }
        offset = last + 1;
    }
    Ok(records)
}
