//! Produce: decodes, authorizes and verifies transactional batches (KIP-890), hands each
//! partition's batches to the replica manager (`crate::replica::append`: min ISR, append,
//! fsync and ISR waits for acks=all), and encodes the answer. acks=0 gets no response.

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::transactions::txn_error_code;
use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::coordinator::txn::verification::verify_at_coordinator;
use crate::coordinator::txn::TxnError;
use crate::log::batch::{BatchError, BatchHeader, RecordError};
use crate::log::producer_state::ProducerError;
use crate::log::LogError;
use crate::partition::Partition;
use crate::replica::append::{AppendError, PendingAck};
use crate::security::acl::{op, resource};

/// Maps a log failure to the code Kafka sends for it.
pub fn log_error_code(e: &LogError) -> ResponseError {
    match e {
        LogError::Batch(BatchError::Corrupt(_)) => ResponseError::CorruptMessage,
        LogError::Batch(BatchError::Invalid(_)) => ResponseError::InvalidRecord,
        LogError::Batch(BatchError::TooLarge { .. }) => ResponseError::MessageTooLarge,
        LogError::Batch(BatchError::LargerThanSegment { .. }) => ResponseError::RecordListTooLarge,
        LogError::Batch(BatchError::Records { invalid_timestamp: true, .. }) => ResponseError::InvalidTimestamp,
        LogError::Batch(BatchError::Records { invalid_timestamp: false, .. }) => ResponseError::InvalidRecord,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Io(_) | LogError::Offline => ResponseError::KafkaStorageError,
        LogError::Producer(ProducerError::InvalidEpoch { .. }) => ResponseError::InvalidProducerEpoch,
        LogError::Producer(ProducerError::OutOfOrder { .. }) => ResponseError::OutOfOrderSequenceNumber,
    }
}

fn failed(index: i32, code: ResponseError, message: Option<String>, version: i16) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= 8 {
        r.error_message = message.map(str_bytes);
    }
    r
}

/// Names the records that failed a per-record check (Produce v8+), so a client can fail just
/// those and resend the rest of the batch; Kafka also reports the log start offset then.
fn with_record_errors(r: &mut PartitionProduceResponse, errors: &[RecordError], log_start: i64, version: i16) {
    r.log_start_offset = log_start;
    if version >= 8 {
        r.record_errors = errors
            .iter()
            .map(|e| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(e.batch_index)
                    .with_batch_index_error_message(Some(str_bytes(e.message.clone())))
            })
            .collect();
    }
}

/// A produce request whose batches are appended, with what remains before it is answered.
pub struct Appended {
    acks: i16,
    version: i16,
    responses: Vec<TopicProduceResponse>,
    /// (topic response index, partition response index, what the answer waits for)
    pending: Vec<(usize, usize, PendingAck)>,
    timeout: std::time::Duration,
}

impl Appended {
    /// True when the answer waits for an fsync or the replicas (acks=all): the connection
    /// may read its next request meanwhile, so fsyncs are shared between them.
    pub fn waits_for_disk(&self) -> bool {
        self.pending.iter().any(|(_, _, p)| p.waits())
    }

    /// Waits for what the acks promised; `None` for acks=0 (no response). Waiting for the
    /// partitions one after another takes only as long as the slowest (they all run already).
    pub async fn complete(mut self) -> Option<ProduceResponse> {
        for (ti, pi, pending) in self.pending {
            if let Err((code, message)) = pending.complete(self.timeout).await {
                let index = self.responses[ti].partition_responses[pi].index;
                self.responses[ti].partition_responses[pi] = failed(index, code, message, self.version);
            }
        }
        (self.acks != 0).then(|| ProduceResponse::default().with_responses(self.responses))
    }
}

/// Validates and appends every partition's batches, in request order.
pub async fn append(ctx: &RequestContext, req: ProduceRequest) -> Appended {
    let broker = &ctx.broker;
    let acks = req.acks;
    let durable_policy = broker.config_bool("log.flush.on.acks.all");
    let now = now_ms();
    let verify_txns = broker.config_bool("transaction.partition.verification.enable");
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut pending = Vec::new();
    // A transactional producer needs WRITE on its transactional id for any of it.
    let txn_denied =
        req.transactional_id.as_ref().is_some_and(|id| !ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, id));
    let transactional_id = req.transactional_id.as_ref().map(|id| id.as_str());
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let topic = if ctx.version >= 13 { broker.topic_by_id(&td.topic_id) } else { broker.topic(td.name.0.as_str()) };
        let unknown =
            if ctx.version >= 13 { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
        // Unknown names are checked too, so the answer does not tell whether a topic exists.
        let name = topic.as_ref().map_or(td.name.0.as_str(), |t| t.name.as_str());
        let denied = if txn_denied {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else {
            (!ctx.authorized(op::WRITE, resource::TOPIC, name)).then_some(ResponseError::TopicAuthorizationFailed)
        };
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            if !matches!(acks, -1..=1) {
                parts.push(failed(pd.index, ResponseError::InvalidRequiredAcks, None, ctx.version));
                continue;
            }
            if let Some(code) = denied {
                parts.push(failed(pd.index, code, None, ctx.version));
                continue;
            }
            let Some(t) = topic.as_ref() else {
                parts.push(failed(pd.index, unknown, None, ctx.version));
                continue;
            };
            let partition = match t.local(pd.index) {
                Ok(p) => p,
                Err(code) => {
                    parts.push(failed(pd.index, code, None, ctx.version));
                    continue;
                }
            };
            let records = pd.records.unwrap_or_default();
            if verify_txns {
                if let Err(code) = verify_transactional(ctx, transactional_id, &records, partition).await {
                    parts.push(failed(pd.index, code, None, ctx.version));
                    continue;
                }
            }
            match crate::replica::append::append(partition, &records, acks, durable_policy, now) {
                Ok((info, waits)) => {
                    t.traffic.bytes_in.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(pd.index)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(partition.log().log_start_offset()),
                    );
                    pending.push((ti, pi, waits));
                }
                Err(AppendError::NotEnoughReplicas) => {
                    parts.push(failed(pd.index, ResponseError::NotEnoughReplicas, None, ctx.version));
                }
                Err(AppendError::Log(e)) => {
                    // a storage failure was logged and reported by the partition
                    let mut r = failed(pd.index, log_error_code(&e), Some(e.to_string()), ctx.version);
                    if let LogError::Batch(BatchError::Records { errors, .. }) = &e {
                        with_record_errors(&mut r, errors, partition.log().log_start_offset(), ctx.version);
                    }
                    parts.push(r);
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_topic_id(td.topic_id)
                .with_partition_responses(parts),
        );
    }
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    Appended { acks, version: ctx.version, responses, pending, timeout }
}

/// KIP-890 verification: a transactional batch is accepted only for a partition its
/// producer added to its open transaction, so a late or fenced producer cannot leave a
/// transaction hanging on a partition the coordinator will never send a marker to. Checked
/// here when this broker is the transactional id's coordinator; otherwise the coordinator is
/// asked, once per transaction and partition (a producer whose transaction is already open
/// here was verified when it began).
async fn verify_transactional(
    ctx: &RequestContext,
    transactional_id: Option<&str>,
    records: &[u8],
    partition: &Partition,
) -> Result<(), ResponseError> {
    let Some(h) = BatchHeader::parse(records).filter(|h| h.is_transactional() && h.producer_id >= 0) else {
        return Ok(());
    };
    let producer = (h.producer_id, h.producer_epoch);
    let (topic, index) = (partition.topic.as_str(), partition.index);
    let local = ctx.broker.txns.verify_produce(&ctx.broker, transactional_id, producer, topic, index).await;
    let result = match (local, transactional_id) {
        (Err(TxnError::NotCoordinator), Some(id)) => {
            if partition.log().in_transaction(producer.0, producer.1) {
                return Ok(());
            }
            verify_at_coordinator(&ctx.broker, id, producer, topic, index).await
        }
        (local, _) => local.map_err(|e| txn_error_code(e, ctx.version, i16::MAX)),
    };
    result.map_err(verification_error)
}

/// A verification that could not complete is answered NOT_ENOUGH_REPLICAS, as Kafka does:
/// retriable for every producer, and no reason to re-read metadata.
fn verification_error(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
        e => e,
    }
}
