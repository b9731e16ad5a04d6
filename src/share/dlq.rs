//! Dead-letter topics for share groups (KIP-1191, ahead of Kafka). A group whose
//! `errors.deadletterqueue.topic.name` is set gets a copy of every record it gives up on — one
//! a consumer rejected, or one released or timed out at the delivery-count limit — on that
//! topic: key, value, headers and timestamp kept, plus context headers saying where it came
//! from and why. The topic must start with the broker's
//! `errors.deadletterqueue.topic.name.prefix` (`dlq.`) and have
//! `errors.deadletterqueue.group.enable=true`; with
//! `errors.deadletterqueue.auto.create.topics.enable` the broker creates it on first use.
//!
//! **Written once, even across a crash.** The records to copy are part of the
//! share-partition's persisted state, together with the dead-letter partition's end offset
//! from before the first copy (the *mark*). After a crash, copies already found past the mark
//! (same group, topic, partition and offset headers) are not written again. A dead-letter
//! partition led by another broker is reached with Kafka's own requests — ListOffsets for the
//! mark, Fetch for the copies past it, Produce (acks=all) for new ones — so the same holds
//! whichever broker leads it, before or after a crash. (A copy whose Produce was cut short by
//! the crash and is not yet below that partition's high watermark when the scan runs is not
//! seen, and written again: the window is the replication delay of one batch.)

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::partition::{ArchiveReason, Archived};
use super::{ShareManager, SharePartitionHandle, SharePartitionKey};
use crate::broker::{now_ms, AdminError, Broker, NewTopic, Topic};
use crate::coordinator::read_records;
use crate::log::{Log, LogError};
use crate::partition::Partition;

pub const HEADER_TOPIC: &str = "__dlq.errors.topic";
pub const HEADER_PARTITION: &str = "__dlq.errors.partition";
pub const HEADER_OFFSET: &str = "__dlq.errors.offset";
pub const HEADER_GROUP: &str = "__dlq.errors.group.id";
pub const HEADER_DELIVERY_COUNT: &str = "__dlq.errors.delivery.count";
pub const HEADER_REASON: &str = "__dlq.errors.reason";

/// Why a dead-letter copy exists, as its reason header says.
fn reason_text(reason: ArchiveReason) -> &'static str {
    match reason {
        ArchiveReason::Rejected => "REJECTED",
        ArchiveReason::DeliveryLimit => "DELIVERY_COUNT_LIMIT",
        ArchiveReason::Gap => "GAP",
    }
}

/// Why a group's dead letters cannot be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeadLetterError {
    #[error("dead-letter topic {0} does not start with errors.deadletterqueue.topic.name.prefix {1}")]
    Prefix(String, String),
    #[error("dead-letter topic {0} does not set errors.deadletterqueue.group.enable=true")]
    NotEnabled(String),
    #[error("dead-letter topic {0} does not exist (errors.deadletterqueue.auto.create.topics.enable is false)")]
    Missing(String),
    #[error("cannot create dead-letter topic: {0}")]
    Create(#[from] AdminError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error("dead-letter partition not reachable: {0}")]
    Remote(String),
}

impl DeadLetterError {
    /// A misconfigured dead-letter topic: the records are archived without a copy. Other
    /// errors (a partition offline, a failed write) are retried.
    fn is_permanent(&self) -> bool {
        matches!(self, Self::Prefix(..) | Self::NotEnabled(_) | Self::Missing(_) | Self::Create(_))
    }
}

/// The group's dead-letter topic, created when allowed; `None` when the group has none.
async fn target(broker: &Broker, group: &str) -> Result<Option<Arc<Topic>>, DeadLetterError> {
    let Some(name) = broker.group_configs(group).get("errors.deadletterqueue.topic.name").cloned() else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    let prefix = broker.config_str("errors.deadletterqueue.topic.name.prefix");
    if !name.starts_with(&prefix) {
        return Err(DeadLetterError::Prefix(name, prefix));
    }
    let topic = match broker.topic(&name) {
        Some(t) => t,
        None if broker.config_bool("errors.deadletterqueue.auto.create.topics.enable") => {
            let cfg = broker.config();
            let new = NewTopic {
                name: name.clone(),
                partitions: cfg.get_i64("num.partitions").max(1) as i32,
                replication_factor: cfg.get_i64("default.replication.factor").max(1) as i16,
                configs: BTreeMap::from([("errors.deadletterqueue.group.enable".to_string(), "true".to_string())]),
                assignments: Vec::new(),
            };
            match broker.create_topic(&new).await {
                Ok(t) => t,
                Err(AdminError::TopicAlreadyExists(_)) => {
                    broker.topic(&name).ok_or_else(|| DeadLetterError::Missing(name.clone()))?
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => return Err(DeadLetterError::Missing(name)),
    };
    if topic.configs.get("errors.deadletterqueue.group.enable").map(String::as_str) != Some("true") {
        return Err(DeadLetterError::NotEnabled(name));
    }
    Ok(Some(topic))
}

impl ShareManager {
    /// Copies a share-partition's pending dead letters in the background, if it has any.
    pub fn copy_dead_letters_later(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        key: SharePartitionKey,
        sp: SharePartitionHandle,
    ) {
        if sp.lock().dead_letters.is_empty() {
            return;
        }
        let (me, broker) = (self.clone(), broker.clone());
        tokio::spawn(async move {
            match me.copy_dead_letters(&broker, &key, &sp).await {
                Ok(()) => {}
                Err(e) if e.is_permanent() => {
                    tracing::warn!(group = %key.group, topic_id = %key.topic_id, partition = key.partition,
                        error = %e, "dead letters not copied; the records stay archived");
                    let n = sp.lock().dead_letters.len();
                    sp.lock().dead_letters_copied(n);
                    let _ = me.persist(&broker, &key, &sp).await;
                }
                Err(e) => tracing::debug!(group = %key.group, error = %e, "dead-letter copy will be retried"),
            }
        });
    }

    async fn copy_dead_letters(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        sp: &SharePartitionHandle,
    ) -> Result<(), DeadLetterError> {
        let _one_copier = sp.copying.lock().await;
        let Some(dlq) = target(broker, &key.group).await? else { return Ok(()) };
        let Some(origin) = broker.topic_by_id(&key.topic_id) else { return Ok(()) };
        let Some(origin_partition) = origin.partition(key.partition).cloned() else { return Ok(()) };
        let target = Target::of(&dlq, key.partition % dlq.partition_count.max(1));
        // the mark is durable before any copy is written
        if sp.lock().dead_letter_mark < 0 {
            let end = target.end_offset(broker).await?;
            let mut state = sp.lock();
            if state.dead_letter_mark < 0 {
                state.dead_letter_mark = end;
            }
        }
        let mark = sp.lock().dead_letter_mark;
        self.persist(broker, key, sp).await?;
        let pending = sp.lock().dead_letters.clone();
        if pending.is_empty() {
            return Ok(());
        }
        let copied = target.copied_since(broker, mark, key, &origin.name).await?;
        let records = originals(&origin_partition.log(), &pending, key, &origin.name, &copied)?;
        if !records.is_empty() {
            target.append(broker, encode(&records)?).await?;
        }
        tracing::debug!(group = %key.group, dead_letters = records.len(), topic = %dlq.name, "dead letters copied");
        sp.lock().dead_letters_copied(pending.len());
        self.persist(broker, key, sp).await?;
        Ok(())
    }
}

/// A group's dead-letter partition for one origin partition: led by this broker, or reached
/// with requests to the broker that leads it.
enum Target {
    Local(Arc<Partition>),
    Remote { topic: String, partition: i32 },
}

impl Target {
    fn of(dlq: &Topic, partition: i32) -> Target {
        match dlq.partition(partition).filter(|p| p.is_leader()) {
            Some(p) => Target::Local(p.clone()),
            None => Target::Remote { topic: dlq.name.clone(), partition },
        }
    }

    /// Where the next copy will go: the mark.
    async fn end_offset(&self, broker: &Broker) -> Result<i64, DeadLetterError> {
        match self {
            Target::Local(p) => Ok(p.log().log_end_offset()),
            Target::Remote { topic, partition } => latest_offset(broker, topic, *partition).await,
        }
    }
}

/// A partition's latest offset (ListOffsets LATEST: its high watermark) as its leader, on
/// another broker, answers it.
pub(crate) async fn latest_offset(broker: &Broker, topic: &str, partition: i32) -> Result<i64, DeadLetterError> {
    let req = ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1)]),
    ]);
    let resp: ListOffsetsResponse = call_leader(broker, topic, partition, ApiKey::ListOffsets, 4, &req).await?;
    let p = resp.topics.first().and_then(|t| t.partitions.first());
    match p {
        Some(p) if p.error_code == 0 => Ok(p.offset),
        other => Err(remote_error("ListOffsets", other.map_or(-1, |p| p.error_code))),
    }
}

impl Target {
    /// Offsets of `key`'s records already copied to the partition at or after `mark`.
    async fn copied_since(
        &self,
        broker: &Broker,
        mark: i64,
        key: &SharePartitionKey,
        origin: &str,
    ) -> Result<HashSet<i64>, DeadLetterError> {
        let mut found = HashSet::new();
        let mut note = |r: &Record| found.extend(copy_of(r, key, origin));
        match self {
            Target::Local(p) => {
                let log = p.log();
                read_records(&log, mark, log.log_end_offset(), &mut note)?;
            }
            Target::Remote { topic, partition } => fetch_records(broker, topic, *partition, mark, &mut note).await?,
        }
        Ok(found)
    }

    async fn append(&self, broker: &Broker, batch: BytesMut) -> Result<(), DeadLetterError> {
        match self {
            Target::Local(p) => {
                crate::coordinator::append_durably(p, &batch).await?;
                Ok(())
            }
            Target::Remote { topic, partition } => produce_remote(broker, topic, *partition, batch.freeze()).await,
        }
    }
}

/// The origin offset a record copied for `key` came from, if it is such a copy.
fn copy_of(r: &Record, key: &SharePartitionKey, origin: &str) -> Option<i64> {
    let header = |name: &'static str| {
        r.headers.get(&StrBytes::from_static_str(name)).and_then(|v| v.as_ref()).map(|v| v.as_ref())
    };
    let same = header(HEADER_GROUP) == Some(key.group.as_bytes())
        && header(HEADER_TOPIC) == Some(origin.as_bytes())
        && header(HEADER_PARTITION) == Some(key.partition.to_string().as_bytes());
    let offset = header(HEADER_OFFSET).filter(|_| same)?;
    std::str::from_utf8(offset).ok()?.parse().ok()
}

/// The original records of `pending` (read from the origin log), as dead-letter copies:
/// key, value, headers and timestamp kept, context headers added.
fn originals(
    log: &Log,
    pending: &[Archived],
    key: &SharePartitionKey,
    topic: &str,
    copied: &HashSet<i64>,
) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    for dead in pending {
        let end = log.high_watermark().min(dead.last.saturating_add(1));
        read_records(log, dead.first, end, |r| {
            if !r.control && (dead.first..=dead.last).contains(&r.offset) && !copied.contains(&r.offset) {
                out.push(dead_letter(r, dead, key, topic));
            }
        })?;
    }
    Ok(out)
}

fn dead_letter(r: &Record, dead: &Archived, key: &SharePartitionKey, topic: &str) -> Record {
    let mut headers = r.headers.clone();
    let mut put = |name: &str, value: String| {
        headers.insert(StrBytes::from_string(name.to_string()), Some(Bytes::from(value)));
    };
    put(HEADER_TOPIC, topic.to_string());
    put(HEADER_PARTITION, key.partition.to_string());
    put(HEADER_OFFSET, r.offset.to_string());
    put(HEADER_GROUP, key.group.clone());
    put(HEADER_DELIVERY_COUNT, dead.delivery_count.to_string());
    put(HEADER_REASON, reason_text(dead.reason).to_string());
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        delete_horizon: false,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: if r.timestamp >= 0 { r.timestamp } else { now_ms() },
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
    }
}

fn encode(records: &[Record]) -> Result<BytesMut, LogError> {
    let records: Vec<Record> =
        records.iter().enumerate().map(|(i, r)| Record { offset: i as i64, ..r.clone() }).collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
    Ok(buf)
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn remote_error(api: &str, code: i16) -> DeadLetterError {
    DeadLetterError::Remote(format!("{api} answered error code {code}"))
}

/// One request to the broker leading `topic`'s `partition`, on a connection of its own.
async fn call_leader<Req: Encodable, Resp: Decodable + HeaderVersion>(
    broker: &Broker,
    topic: &str,
    partition: i32,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> Result<Resp, DeadLetterError> {
    let leader = broker.topic(topic).and_then(|t| t.state(partition).map(|s| s.leader)).unwrap_or(-1);
    if leader < 0 {
        return Err(DeadLetterError::Remote("no leader".into()));
    }
    broker
        .call_broker(leader, api, version, req, Duration::from_secs(35))
        .await
        .map_err(|e| DeadLetterError::Remote(e.to_string()))
}

/// Writes dead letters to a partition another broker leads (acks=all).
async fn produce_remote(broker: &Broker, topic: &str, partition: i32, batch: Bytes) -> Result<(), DeadLetterError> {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch))]),
    ]);
    let resp: ProduceResponse = call_leader(broker, topic, partition, ApiKey::Produce, 9, &req).await?;
    let code = resp.responses.first().and_then(|t| t.partition_responses.first()).map_or(-1, |p| p.error_code);
    if code != 0 {
        return Err(remote_error("Produce", code));
    }
    Ok(())
}

/// Reads a partition another broker leads from `from` to its high watermark, as a consumer.
async fn fetch_records(
    broker: &Broker,
    topic: &str,
    partition: i32,
    from: i64,
    f: &mut impl FnMut(&Record),
) -> Result<(), DeadLetterError> {
    let mut offset = from;
    loop {
        let req = FetchRequest::default().with_max_bytes(8 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
        let resp: FetchResponse = call_leader(broker, topic, partition, ApiKey::Fetch, 12, &req).await?;
        let p = resp.responses.first().and_then(|t| t.partitions.first());
        let p = match p {
            Some(p) if p.error_code == 0 => p,
            other => return Err(remote_error("Fetch", other.map_or(-1, |p| p.error_code))),
        };
        let bytes = p.records.clone().unwrap_or_default();
        // whole batches only (a fetch may end with part of one)
        let whole = super::batch_ends(&bytes).last().map_or(0, |(end, _)| end);
        let mut buf = bytes.slice(..whole);
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| DeadLetterError::Remote(e.to_string()))?;
        let mut last = None;
        for r in sets.iter().flat_map(|s| s.records.iter()) {
            f(r);
            last = Some(r.offset);
        }
        match last {
            Some(l) if l.saturating_add(1) < p.high_watermark => offset = l + 1,
            _ => return Ok(()),
        }
    }
}
