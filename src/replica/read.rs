//! The replica manager's fetch (Kafka's `ReplicaManager.fetchMessages`): reads the partitions
//! a Fetch asks for — for a consumer up to the high watermark (or last stable offset), from
//! the leader or sent to a preferred follower (KIP-392); for a follower up to the log end,
//! with the divergence check (KIP-320), the leader's replication throttle, and the
//! follower's progress moving the high watermark and ISR — and long-polls on `max_wait_ms` /
//! `min_bytes`, woken by appends. Whole batches straight from segment files; the first batch
//! of the first non-empty partition is always returned whole (KIP-74).
//!
//! The handler decodes, authorizes and encodes; what is read goes to its [`RecordSink`] (file
//! ranges sent with `sendfile`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, EpochEndOffset, PartitionData};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::log::segment::Slice;
use crate::log::LogError;
use crate::partition::replica::IsrChange;
use crate::partition::Partition;

const READ_COMMITTED: i8 = 1;

/// Where read records go: bytes for the response, given the file range they are in.
pub trait RecordSink: Default {
    fn records_for(&mut self, slice: Slice) -> std::io::Result<Bytes>;
}

/// A requested partition, resolved (and authorized) by the handler.
pub struct FetchTarget {
    /// The follower fetching (a broker's id), or -1 for a consumer.
    pub replica: i32,
    pub topic: Option<Arc<Topic>>,
    /// The local replica to read; `None` answers `error`.
    pub partition: Option<Arc<Partition>>,
    pub error: ResponseError,
    pub req: FetchPartition,
}

/// A Fetch's request-wide settings.
pub struct FetchParams<'a> {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    /// A consumer's `client.rack` when it may be sent to a follower (Fetch v11+).
    pub client_rack: Option<&'a str>,
}

/// Reads `wanted` until `min_bytes` are there, an error is, or `max_wait_ms` passed (woken
/// through `wake` by appends and high-watermark moves); one answer per target, in order.
pub async fn fetch<F: RecordSink>(
    broker: &Arc<Broker>,
    wanted: &[FetchTarget],
    params: &FetchParams<'_>,
    wake: Arc<Notify>,
) -> (Vec<PartitionData>, F) {
    let read_committed = params.isolation_level == READ_COMMITTED;
    let selector = params.client_rack.and_then(|rack| ReadReplicaSelector::new(broker, rack));
    let deadline = Instant::now() + Duration::from_millis(params.max_wait_ms.max(0) as u64);
    loop {
        for w in wanted {
            if let Some(p) = &w.partition {
                p.add_waiter(&wake);
            }
        }
        let read = read_all::<F>(broker, wanted, params.max_bytes, read_committed, selector.as_ref());
        propose_isr_changes(broker, &read.isr_changes);
        let satisfied = read.bytes >= i64::from(params.min_bytes.max(0)) || read.any_error || wanted.is_empty();
        if satisfied || Instant::now() >= deadline {
            return (read.parts, read.files);
        }
        // a replica held back by its throttle is read again as soon as the quota allows
        let until = read.throttled.map_or(deadline, |d| deadline.min(Instant::now() + d));
        let woken = tokio::time::timeout_at(until, wake.notified()).await.is_ok();
        if !woken && until == deadline {
            // nothing was appended and no high watermark moved since this read (either would
            // have woken it): reading again would give the same answer
            return (read.parts, read.files);
        }
    }
}

/// Checks a client's `current_leader_epoch` (-1: not given) against the partition's: a newer
/// one is `UNKNOWN_LEADER_EPOCH`, an older one `FENCED_LEADER_EPOCH`, as Kafka answers.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ResponseError> {
    match requested {
        r if r < 0 || r == current => Ok(()),
        r if r > current => Err(ResponseError::UnknownLeaderEpoch),
        _ => Err(ResponseError::FencedLeaderEpoch),
    }
}

/// One pass over the wanted partitions.
struct ReadAll<F> {
    parts: Vec<PartitionData>,
    files: F,
    bytes: i64,
    any_error: bool,
    /// Followers that caught up, to be added back to their ISR.
    isr_changes: Vec<IsrChange>,
    /// How long until a replica held back by the leader's replication throttle may read.
    throttled: Option<Duration>,
}

/// Sends the ISR changes a follower's progress called for to the controller, in the
/// background (the fetch is not held up by them).
fn propose_isr_changes(broker: &Arc<Broker>, changes: &[IsrChange]) {
    for change in changes {
        let broker = broker.clone();
        let change = change.clone();
        tokio::spawn(async move { broker.alter_isr(change).await });
    }
}

/// Reads every wanted partition once, sharing the response's `max_bytes` budget.
fn read_all<F: RecordSink>(
    broker: &Broker,
    wanted: &[FetchTarget],
    max_bytes: i32,
    read_committed: bool,
    selector: Option<&ReadReplicaSelector>,
) -> ReadAll<F> {
    let mut budget = i64::from(if max_bytes <= 0 { i32::MAX } else { max_bytes });
    let mut total = 0i64;
    let mut any_error = false;
    let mut files = F::default();
    let mut out = Vec::with_capacity(wanted.len());
    let mut isr_changes = Vec::new();
    let mut throttled = None;
    for w in wanted {
        let pd = match &w.partition {
            None => {
                any_error = true;
                error_data(w.req.partition, w.error)
            }
            Some(p) if w.replica >= 0 => {
                let mut limit = i64::from(w.req.partition_max_bytes.max(0)).min(budget) as usize;
                let quota = leader_throttled(broker, w, p).then_some(&broker.leader_quota);
                if let Some(quota) = quota {
                    limit = quota.allowance(limit).unwrap_or(0);
                    if limit == 0 {
                        throttled = Some(quota.delay());
                    }
                }
                let first = total == 0 && limit > 0;
                let (pd, consistent) = read_for_follower(p, &w.req, limit, first, &mut files);
                if let (Some(quota), Some(records)) = (quota, &pd.records) {
                    quota.record(records.len());
                }
                // only a fetch from a log that agrees with this one is progress (a follower
                // that must still truncate has nothing of this epoch yet)
                let progress = if consistent {
                    p.follower_fetched(w.replica, w.req.fetch_offset, super::follower_progress(&w.req))
                } else {
                    Ok(None)
                };
                match progress {
                    Err(code) => {
                        any_error = true;
                        error_data(w.req.partition, code)
                    }
                    Ok(change) => {
                        isr_changes.extend(change);
                        let got = pd.records.as_ref().map_or(0, |r| r.len() as i64);
                        any_error |= pd.error_code != 0;
                        total += got;
                        budget = (budget - got).max(0);
                        pd
                    }
                }
            }
            Some(p) => {
                let limit = i64::from(w.req.partition_max_bytes.max(0)).min(budget);
                let preferred = selector.and_then(|s| s.preferred(p, w.req.fetch_offset));
                let pd = match preferred {
                    Some(replica) => sent_elsewhere(p, &w.req, replica),
                    None => read_partition(p, &w.req, limit as usize, total == 0, read_committed, &mut files),
                };
                let got = pd.records.as_ref().map_or(0, |r| r.len() as i64);
                any_error |= pd.error_code != 0;
                total += got;
                budget = (budget - got).max(0);
                pd
            }
        };
        out.push(pd);
    }
    ReadAll { parts: out, files, bytes: total, any_error, isr_changes, throttled }
}

/// Whether the leader's replication throttle holds back this follower's fetch: the topic
/// lists this broker's replica in `leader.replication.throttled.replicas`, a rate is set,
/// and the follower is out of the ISR (a caught-up follower is never throttled).
fn leader_throttled(broker: &Broker, w: &FetchTarget, p: &Partition) -> bool {
    use crate::broker::throttle::is_throttled;
    let Some(topic) = &w.topic else { return false };
    broker.leader_quota.is_limited()
        && is_throttled(&topic.configs, "leader.replication.throttled.replicas", p.index, broker.node_id)
        && !p.is_in_sync(w.replica)
}

/// A follower's fetch: up to the log end (not the high watermark), or where its log
/// diverged from this one (KIP-320: the epoch it last fetched ended earlier here). True with
/// the data when the follower's log agrees with this one up to its fetch offset.
fn read_for_follower(
    p: &Partition,
    req: &FetchPartition,
    limit: usize,
    first: bool,
    files: &mut impl RecordSink,
) -> (PartitionData, bool) {
    let log = p.log();
    let base = match answer_from(&log, req) {
        Ok(base) => base,
        Err(code) => return (error_data(req.partition, code), false),
    };
    if req.last_fetched_epoch >= 0 {
        let (epoch, end) = log.end_offset_for_epoch(req.last_fetched_epoch);
        if epoch < req.last_fetched_epoch || end < req.fetch_offset {
            let diverging = EpochEndOffset::default().with_epoch(epoch).with_end_offset(end);
            return (base.with_diverging_epoch(diverging).with_records(Some(Bytes::new())), false);
        }
    }
    let read = log.read(req.fetch_offset, limit, log.log_end_offset(), first).map(|r| r.records);
    match read.and_then(|slice| Ok(slice.map(|s| files.records_for(s)).transpose()?)) {
        Ok(records) => (base.with_records(Some(records.unwrap_or_default())), true),
        // with where this log starts: a follower behind it starts over there
        Err(LogError::OffsetOutOfRange { .. }) => (
            error_data(req.partition, ResponseError::OffsetOutOfRange).with_log_start_offset(log.log_start_offset()),
            false,
        ),
        Err(e) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "replica fetch read failed");
            (error_data(req.partition, ResponseError::KafkaStorageError), false)
        }
    }
}

/// Kafka's `RackAwareReplicaSelector` (KIP-392), on when `replica.selector.class` names it:
/// a leader tells a consumer in another rack to fetch from an in-sync follower in the
/// consumer's rack (`client.rack`) that has the offset it asks for.
pub struct ReadReplicaSelector {
    client_rack: String,
    /// Each live broker's rack.
    racks: std::collections::HashMap<i32, Option<String>>,
    own: i32,
}

impl ReadReplicaSelector {
    const RACK_AWARE: &'static str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    fn new(broker: &Broker, client_rack: &str) -> Option<ReadReplicaSelector> {
        if client_rack.is_empty() || broker.config_str("replica.selector.class") != Self::RACK_AWARE {
            return None;
        }
        let image = broker.metadata_image();
        let racks = image.brokers.values().filter(|b| !b.fenced).map(|b| (b.id, b.rack.clone())).collect();
        Some(ReadReplicaSelector { client_rack: client_rack.to_string(), racks, own: broker.node_id })
    }

    /// The follower to send the consumer to; `None` to read here (this broker does not lead,
    /// is in the consumer's rack, or no in-sync follower there has the offset).
    fn preferred(&self, p: &Partition, fetch_offset: i64) -> Option<i32> {
        let in_rack = |id: &i32| self.racks.get(id).is_some_and(|r| r.as_deref() == Some(self.client_rack.as_str()));
        if !p.is_replicated_leader() || in_rack(&self.own) {
            return None;
        }
        p.followers_caught_up_to(fetch_offset).into_iter().filter(in_rack).min()
    }
}

/// A leader's answer sending a consumer to `replica`: no records, the offsets it needs.
fn sent_elsewhere(p: &Partition, req: &FetchPartition, replica: i32) -> PartitionData {
    let log = p.log();
    answer_from(&log, req).map_or_else(
        |code| error_data(req.partition, code),
        |base| {
            base.with_preferred_read_replica(kafka_protocol::messages::BrokerId(replica))
                .with_records(Some(Bytes::new()))
        },
    )
}

/// A partition's answer from `log`: its offsets (no records yet), once the client's leader
/// epoch checks out; else the epoch error.
fn answer_from(log: &crate::log::Log, req: &FetchPartition) -> Result<PartitionData, ResponseError> {
    check_leader_epoch(req.current_leader_epoch, log.leader_epoch())?;
    Ok(PartitionData::default()
        .with_partition_index(req.partition)
        .with_high_watermark(log.high_watermark())
        .with_last_stable_offset(log.last_stable_offset())
        .with_log_start_offset(log.log_start_offset()))
}

fn error_data(partition: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

fn read_partition(
    p: &Partition,
    req: &FetchPartition,
    limit: usize,
    first: bool,
    read_committed: bool,
    files: &mut impl RecordSink,
) -> PartitionData {
    let log = p.log();
    let base = match answer_from(&log, req) {
        Ok(base) => base,
        Err(code) => return error_data(req.partition, code),
    };
    let bound = if read_committed { log.last_stable_offset() } else { log.high_watermark() };
    let records = if limit == 0 && !first {
        Ok(None)
    } else {
        log.read(req.fetch_offset, limit, bound, first).map(|r| r.records)
    };
    let records = records.and_then(|slice| {
        let end = slice.as_ref().map_or(req.fetch_offset, |s| s.end_offset);
        let bytes = slice.map(|s| files.records_for(s)).transpose()?;
        Ok((bytes, end))
    });
    match records {
        Ok((records, end)) => {
            let aborted = read_committed.then(|| {
                log.aborted_transactions(req.fetch_offset, end)
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            });
            base.with_aborted_transactions(aborted).with_records(Some(records.unwrap_or_default()))
        }
        Err(e @ LogError::OffsetOutOfRange { .. }) => {
            tracing::debug!(topic = %p.topic, partition = p.index, error = %e, "fetch out of range");
            error_data(req.partition, ResponseError::OffsetOutOfRange)
        }
        Err(e) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fetch read failed");
            error_data(req.partition, ResponseError::KafkaStorageError)
        }
    }
}
