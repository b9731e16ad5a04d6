//! Transactions: AddPartitionsToTxn (client versions and the KIP-890 `verify_only` batches),
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and ListTransactions. The
//! state machine is `coordinator::txn`; offsets committed in a transaction are held by the
//! group coordinator until the transaction ends.

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::groups::{check_group, check_group_here};
use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::coordinator::group::records::{partition_for, OffsetValue};
use crate::coordinator::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::coordinator::txn::verification::verify_at_coordinator;
use crate::coordinator::txn::{TxnError, TxnState};
use crate::security::acl::{op, resource};

/// Maps a coordinator refusal to Kafka's code. `fenced_since` is the first request version
/// that knows `PRODUCER_FENCED`; older clients get `INVALID_PRODUCER_EPOCH` (KIP-588).
pub fn txn_error_code(e: TxnError, version: i16, fenced_since: i16) -> ResponseError {
    match e {
        TxnError::InvalidTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::ProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::Fenced if version >= fenced_since => ResponseError::ProducerFenced,
        TxnError::Fenced => ResponseError::InvalidProducerEpoch,
        TxnError::Concurrent => ResponseError::ConcurrentTransactions,
        TxnError::InvalidState => ResponseError::InvalidTxnState,
        TxnError::NotFound => ResponseError::TransactionalIdNotFound,
        TxnError::NotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
    }
}

fn code_of(result: Result<(), TxnError>, version: i16, fenced_since: i16) -> i16 {
    result.err().map_or(0, |e| txn_error_code(e, version, fenced_since).code())
}

/// AddPartitionsToTxn and AddOffsetsToTxn know `PRODUCER_FENCED` from version 2.
const ADD_FENCED_SINCE: i16 = 2;
const END_FENCED_SINCE: i16 = 2;

/// One transaction's AddPartitionsToTxn: unknown topics or partitions fail alone and the
/// others are `OPERATION_NOT_ATTEMPTED`, as in Kafka; otherwise all are added (or, with
/// `verify_only`, each is checked to be in the open transaction).
async fn add_partitions_for(
    ctx: &RequestContext,
    id: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let broker = &ctx.broker;
    let mut wanted: Vec<(String, i32)> = Vec::new();
    // Partitions refused, with why; any refusal leaves the others not attempted.
    let mut refused = Vec::new();
    let txn_allowed = ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, id);
    for t in &topics {
        let name = t.name.0.to_string();
        let topic = broker.topic(&name);
        let writable = ctx.authorized(op::WRITE, resource::TOPIC, &name);
        for p in &t.partitions {
            match &topic {
                _ if !txn_allowed => {
                    refused.push(((name.clone(), *p), ResponseError::TransactionalIdAuthorizationFailed))
                }
                _ if !writable => refused.push(((name.clone(), *p), ResponseError::TopicAuthorizationFailed)),
                // a broker verifying a transactional offset commit asks about `__consumer_offsets`
                Some(tp) if tp.has_partition(*p) && (verify_only || !tp.is_internal()) => {
                    wanted.push((name.clone(), *p))
                }
                _ => refused.push(((name.clone(), *p), ResponseError::UnknownTopicOrPartition)),
            }
        }
    }
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    if !refused.is_empty() {
        for (p, code) in refused {
            codes.insert(p, code.code());
        }
        for p in wanted {
            codes.insert(p, ResponseError::OperationNotAttempted.code());
        }
    } else if verify_only {
        let owned = broker.txns.ownership(broker, id);
        for p in wanted {
            let r = match owned {
                Ok(()) => broker.txns.verify(id, producer_id, epoch, &p).await,
                Err(e) => Err(e),
            };
            codes.insert(p, code_of(r, ctx.version, ADD_FENCED_SINCE));
        }
    } else {
        let r = broker.txns.add_partitions(broker, id, producer_id, epoch, &wanted).await;
        let code = code_of(r, ctx.version, ADD_FENCED_SINCE);
        for p in wanted {
            codes.insert(p, code);
        }
    }
    topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.get(&(name.clone(), *p)).copied().unwrap_or(0))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name).with_results_by_partition(results)
        })
        .collect()
}

pub async fn add_partitions_to_txn(ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_partitions_for(
            ctx,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            req.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in req.transactions {
        let id = t.transactional_id.0.to_string();
        let results = add_partitions_for(ctx, &id, t.producer_id.0, t.producer_epoch, t.verify_only, t.topics).await;
        out.push(
            AddPartitionsToTxnResult::default().with_transactional_id(t.transactional_id).with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction.
pub async fn add_offsets_to_txn(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let broker = &ctx.broker;
    let group = req.group_id.0.to_string();
    if !ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, req.transactional_id.0.as_str()) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if let Err(code) = check_group(ctx, op::READ, &group) {
        return AddOffsetsToTxnResponse::default().with_error_code(code.code());
    }
    if group.is_empty() {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    if broker.groups.ensure_offsets_topic(broker).await.is_err() {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    let n = broker.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count);
    let partition = (OFFSETS_TOPIC.to_string(), partition_for(&group, n));
    let r = broker
        .txns
        .add_partitions(broker, req.transactional_id.0.as_str(), req.producer_id.0, req.producer_epoch, &[partition])
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(code_of(r, ctx.version, ADD_FENCED_SINCE))
}

/// EndTxn: commit or abort.
pub async fn end_txn(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let broker = &ctx.broker;
    if !ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, req.transactional_id.0.as_str()) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let r = broker
        .txns
        .end_txn(broker, req.transactional_id.0.as_str(), req.producer_id.0, req.producer_epoch, req.committed)
        .await;
    EndTxnResponse::default()
        .with_error_code(code_of(r, ctx.version, END_FENCED_SINCE))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// TxnOffsetCommit: offsets written now (transactionally) and visible when the transaction
/// commits. The group's member and generation are checked like OffsetCommit when given.
pub async fn txn_offset_commit(ctx: &RequestContext, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let max_metadata = broker.config_i64("offset.metadata.max.bytes") as usize;
    let now = now_ms();
    let mut planned: Vec<(usize, i32, Result<OffsetValue, ResponseError>)> = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = broker.topic(t.name.0.as_str());
        let readable = ctx.authorized(op::READ, resource::TOPIC, t.name.0.as_str());
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or_default().to_string();
            let value = match &topic {
                _ if !readable => Err(ResponseError::TopicAuthorizationFailed),
                Some(tp) if tp.has_partition(p.partition_index) && metadata.len() <= max_metadata => Ok(OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp: now,
                }),
                Some(tp) if tp.has_partition(p.partition_index) => Err(ResponseError::OffsetMetadataTooLarge),
                _ => Err(ResponseError::UnknownTopicOrPartition),
            };
            planned.push((ti, p.partition_index, value));
        }
        topics.push(TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()));
    }
    let outcome = async {
        if !ctx.authorized(op::WRITE, resource::TRANSACTIONAL_ID, req.transactional_id.0.as_str()) {
            return Err(ResponseError::TransactionalIdAuthorizationFailed);
        }
        check_group_here(ctx, op::READ, &group_id)?;
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        // TxnOffsetCommit has no PRODUCER_FENCED: a fenced producer is INVALID_PRODUCER_EPOCH
        let fenced_never = i16::MAX;
        let n = broker.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count);
        let offsets_partition = (OFFSETS_TOPIC.to_string(), partition_for(&group_id, n));
        let id = req.transactional_id.0.as_str();
        match broker.txns.check_offset_commit(broker, id, (pid, epoch), &offsets_partition).await {
            Ok(()) => {}
            Err(TxnError::NotCoordinator) => {
                let (topic, index) = (offsets_partition.0.as_str(), offsets_partition.1);
                verify_at_coordinator(broker, id, (pid, epoch), topic, index).await.map_err(|e| match e {
                    // the verification could not complete: the client retries as it does
                    // while a coordinator loads
                    ResponseError::NetworkException
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::ConcurrentTransactions => ResponseError::CoordinatorLoadInProgress,
                    e => e,
                })?
            }
            Err(e) => return Err(txn_error_code(e, ctx.version, fenced_never)),
        }
        // Kafka's order: a missing group is created only for a commit without a generation.
        let handle = match broker.groups.group(&group_id) {
            Some(h) => h,
            None if req.generation_id < 0 => broker.groups.group_or_create(&group_id),
            None => return Err(ResponseError::IllegalGeneration),
        };
        let mut entry = handle.lock().await;
        let (member, instance) = (req.member_id.as_str(), req.group_instance_id.as_deref());
        let committing: Vec<(uuid::Uuid, i32)> = planned
            .iter()
            .filter(|(_, _, v)| v.is_ok())
            .filter_map(|(ti, p, _)| broker.topic(req.topics[*ti].name.0.as_str()).map(|t| (t.id, *p)))
            .collect();
        entry.validate_offset_commit(member, instance, req.generation_id, true, ctx.version, &committing).map_err(
            |e| {
                if e == ResponseError::StaleMemberEpoch {
                    ResponseError::IllegalGeneration
                } else {
                    e
                }
            },
        )?;
        let valid: Vec<(String, i32, OffsetValue)> = planned
            .iter()
            .filter_map(|(ti, p, v)| v.as_ref().ok().map(|v| (req.topics[*ti].name.0.to_string(), *p, v.clone())))
            .collect();
        let records =
            valid.iter().map(|(t, p, v)| GroupCoordinator::offset_record(&group_id, t, *p, Some(v))).collect();
        if let Err(e) = broker.groups.write_txn_offsets(broker, &group_id, (pid, epoch), records).await {
            tracing::error!(group = %group_id, error = %e, "transactional offset commit failed");
            return Err(ResponseError::KafkaStorageError);
        }
        let pending = entry.pending_txn.entry(pid).or_default();
        for (t, p, v) in valid {
            pending.insert((t, p), v);
        }
        Ok(())
    }
    .await;
    for (ti, p, v) in planned {
        let code = match (outcome, v) {
            (Err(e), _) | (Ok(()), Err(e)) => e.code(),
            (Ok(()), Ok(_)) => 0,
        };
        topics[ti]
            .partitions
            .push(TxnOffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code));
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub async fn describe_transactions(
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let out = describe_transactions_response::TransactionState::default().with_transactional_id(id.clone());
        let failed = |code: ResponseError| {
            out.clone()
                .with_error_code(code.code())
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
        };
        if !ctx.authorized(op::DESCRIBE, resource::TRANSACTIONAL_ID, id.0.as_str()) {
            states.push(failed(ResponseError::TransactionalIdAuthorizationFailed));
            continue;
        }
        let Some(handle) = ctx.broker.txns.get(id.0.as_str()) else {
            states.push(failed(ResponseError::TransactionalIdNotFound));
            continue;
        };
        let meta = handle.lock().await.clone();
        let mut topics: Vec<TopicData> = Vec::new();
        for (t, p) in &meta.partitions {
            match topics.last_mut() {
                Some(last) if last.topic.0.as_str() == t => last.partitions.push(*p),
                _ => topics
                    .push(TopicData::default().with_topic(TopicName(str_bytes(t.clone()))).with_partitions(vec![*p])),
            }
        }
        states.push(
            out.with_transaction_state(str_bytes(meta.state.name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.start_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.producer_epoch)
                .with_topics(topics),
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub async fn list_transactions(ctx: &RequestContext, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut wanted_states = Vec::new();
    for s in &req.state_filters {
        match TxnState::from_name(s.as_str()) {
            Some(st) => wanted_states.push(st),
            None => unknown.push(s.clone()),
        }
    }
    let pattern = match req.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
        None => None,
    };
    let now = now_ms();
    let mut listed = Vec::new();
    for id in ctx.broker.txns.ids() {
        if !ctx.authorized(op::DESCRIBE, resource::TRANSACTIONAL_ID, &id) {
            continue;
        }
        let Some(handle) = ctx.broker.txns.get(&id) else { continue };
        let meta = handle.lock().await.clone();
        let state_ok = wanted_states.is_empty() || wanted_states.contains(&meta.state);
        let pid_ok =
            req.producer_id_filters.is_empty() || req.producer_id_filters.iter().any(|p| p.0 == meta.producer_id);
        let duration_ok = req.duration_filter < 0 || now.saturating_sub(meta.start_ms) >= req.duration_filter;
        let pattern_ok = pattern.as_ref().is_none_or(|r| r.is_match(&id));
        if state_ok && pid_ok && duration_ok && pattern_ok {
            listed.push(
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(id)))
                    .with_producer_id(ProducerId(meta.producer_id))
                    .with_transaction_state(str_bytes(meta.state.name())),
            );
        }
    }
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(listed)
}
