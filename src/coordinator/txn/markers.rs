//! Transaction markers: the commit or abort control batch the coordinator writes to every
//! partition of a finished transaction. A partition this broker leads gets it directly; one
//! led elsewhere gets it through WriteTxnMarkers to its leader, as Kafka's
//! `TransactionMarkerChannelManager` sends them. Either way the marker is as durable as an
//! acks=all write before the coordinator records the transaction complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::coordinator::await_durable;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::handlers::str_bytes;
use crate::log::batch::ControlType;
use crate::log::producer_state::ProducerError;
use crate::log::LogError;
use crate::partition::Partition;

const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long the coordinator keeps trying one marker while the partition's leadership moves.
const MARKER_RETRY_FOR: Duration = Duration::from_secs(15);
const MARKER_BACKOFF: Duration = Duration::from_millis(100);
/// How long one WriteTxnMarkers may wait for its answer: a guard against a leader that never
/// answers, longer than the leader itself waits for its in-sync replicas.
const MARKER_CALL_TIMEOUT: Duration = Duration::from_secs(35);

/// One marker: which producer's transaction ends, and how.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The leader epoch of the coordinator's `__transaction_state` partition.
    pub coordinator_epoch: i32,
}

impl Marker {
    fn control(&self) -> ControlType {
        if self.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        }
    }
}

/// Writes `marker` to partition `index` of `topic` wherever it is led, retrying while the
/// partition has no reachable leader. A partition that no longer exists is skipped.
pub async fn write_marker(broker: &Broker, topic: &str, index: i32, marker: Marker) -> Result<(), ResponseError> {
    let deadline = Instant::now() + MARKER_RETRY_FOR;
    loop {
        let result = match broker.topic(topic) {
            None => return Ok(()), // deleted since it joined the transaction
            Some(t) => match t.state(index).map_or(broker.node_id, |s| s.leader) {
                leader if leader == broker.node_id => match t.local(index) {
                    Ok(p) => write_here(broker, p, marker).await,
                    Err(code) => Err(code),
                },
                leader if leader < 0 => Err(ResponseError::LeaderNotAvailable),
                leader => write_at(broker, leader, topic, index, marker).await,
            },
        };
        match result {
            Err(ResponseError::UnknownTopicOrPartition) => return Ok(()),
            Err(code) if Instant::now() < deadline => {
                tracing::debug!(topic, partition = index, error = ?code, "transaction marker: trying again");
                tokio::time::sleep(MARKER_BACKOFF).await;
            }
            done => return done,
        }
    }
}

/// Appends `marker` to a partition this broker leads and waits until it is durable; offsets
/// a transaction committed to `__consumer_offsets` then apply (or are dropped).
pub async fn write_here(broker: &Broker, partition: &Arc<Partition>, marker: Marker) -> Result<(), ResponseError> {
    let written =
        partition.append_end_txn_marker(marker.producer_id, marker.producer_epoch, marker.control(), now_ms());
    match written {
        Ok(info) => await_durable(partition, info.last_offset + 1).await.map_err(|e| {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "transaction marker not durable");
            storage_code(&e)
        })?,
        Err(LogError::Producer(e @ ProducerError::InvalidEpoch { .. })) => {
            // a newer producer epoch already wrote here: this transaction was fenced
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "marker skipped");
        }
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "cannot write marker");
            return Err(storage_code(&e));
        }
    }
    if partition.topic == OFFSETS_TOPIC {
        broker.groups.complete_txn(broker, partition.index, marker.producer_id, marker.commit).await;
    }
    Ok(())
}

fn storage_code(e: &LogError) -> ResponseError {
    match e {
        LogError::Offline => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::KafkaStorageError,
    }
}

/// Sends `marker` for one partition to its leader, broker `leader`.
async fn write_at(broker: &Broker, leader: i32, topic: &str, index: i32, marker: Marker) -> Result<(), ResponseError> {
    if broker.inter_broker_addr(leader).is_none() {
        return Err(ResponseError::LeaderNotAvailable);
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(marker.commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(str_bytes(topic.to_string())))
            .with_partition_indexes(vec![index])])]);
    let (key, version) = (ApiKey::WriteTxnMarkers, WRITE_TXN_MARKERS_VERSION);
    let resp: WriteTxnMarkersResponse =
        broker.call_broker(leader, key, version, &req, MARKER_CALL_TIMEOUT).await.map_err(|e| {
            tracing::debug!(leader, error = %e, "cannot send a transaction marker");
            ResponseError::NetworkException
        })?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == index)
        .map_or(ResponseError::UnknownServerError.code(), |p| p.error_code);
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}
