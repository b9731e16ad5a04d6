//! ShareFetch and ShareAcknowledge (KIP-932): a share consumer's reads and acknowledgements
//! at a partition's leader. A fetch first applies the acknowledgements it carries, then reads
//! every partition of the member's share session where its share-partition wants, acquiring
//! what it read; it long-polls like Fetch until something is acquired or `max_wait_ms` ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{
    share_acknowledge_response, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse,
};
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::response::FileRecords;
use super::share_groups::SHARE_GROUPS_DISABLED;
use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::cluster::features::SHARE_VERSION;
use crate::partition::Partition;
use crate::security::acl::{op, resource};
use crate::share::partition::{ack, AckError, AcquireMode};
use crate::share::session::{SessionStep, TopicIdPartition, INITIAL_EPOCH};
use crate::share::{self, SharePartitionKey};

/// One acknowledgement batch: first and last offset, and the types.
type AckBatch = (i64, i64, Vec<i8>);

/// A partition a request names, with the acknowledgements it carries for it.
struct Named {
    tp: TopicIdPartition,
    acks: Vec<AckBatch>,
}

/// A partition resolved at this broker: its leader replica, or why not.
type Resolved = Result<Arc<Partition>, ResponseError>;

/// The request's group and member, both required.
fn ids(group: Option<&str>, member: Option<&str>) -> Result<(String, String), (ResponseError, &'static str)> {
    let group = group.filter(|g| !g.is_empty()).ok_or((ResponseError::InvalidRequest, "GroupId must be set."))?;
    let member = member.filter(|m| !m.is_empty()).ok_or((ResponseError::InvalidRequest, "MemberId must be set."))?;
    Ok((group.to_string(), member.to_string()))
}

/// Finds a partition this broker leads, checking READ on its topic.
fn resolve(ctx: &RequestContext, (topic_id, partition): TopicIdPartition) -> Resolved {
    let topic = ctx.broker.topic_by_id(&topic_id).ok_or(ResponseError::UnknownTopicId)?;
    if !ctx.authorized(op::READ, resource::TOPIC, &topic.name) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    topic.local(partition).cloned()
}

/// Applies a partition's acknowledgement batches in order; the first refusal is the
/// partition's acknowledgement error (later batches are still applied, as Kafka does).
/// RENEW exists from version 2 of ShareFetch and ShareAcknowledge on.
fn acknowledge(
    ctx: &RequestContext,
    group: &str,
    member: &str,
    named: &Named,
    resolved: &Resolved,
) -> Result<(), ResponseError> {
    let renew_allowed = ctx.version >= 2;
    if let Err(code) = resolved {
        return Err(*code);
    }
    let key = SharePartitionKey { group: group.to_string(), topic_id: named.tp.0, partition: named.tp.1 };
    let sp = ctx.broker.shares.get(&key).ok_or(ResponseError::InvalidRecordState)?;
    let now = now_ms();
    let mut first_error = None;
    {
        let mut sp = sp.lock();
        for (first, last, types) in &named.acks {
            if !renew_allowed && types.contains(&ack::RENEW) {
                first_error.get_or_insert(ResponseError::InvalidRequest);
                continue;
            }
            if let Err(e) = sp.acknowledge(member, *first, *last, types, now) {
                first_error.get_or_insert(match e {
                    AckError::InvalidRequest => ResponseError::InvalidRequest,
                    AckError::InvalidRecordState => ResponseError::InvalidRecordState,
                });
            }
        }
    }
    // released records may be acquired by waiting fetches
    ctx.broker.shares.wake();
    first_error.map_or(Ok(()), Err)
}

/// The acknowledgement outcome as a wire code (0 when every batch went in, or there were
/// none), once the share-partition's new state is durable.
async fn ack_code(ctx: &RequestContext, group: &str, member: &str, named: &Named, resolved: &Resolved) -> i16 {
    if named.acks.is_empty() {
        return 0;
    }
    let applied = acknowledge(ctx, group, member, named, resolved);
    let key = SharePartitionKey { group: group.to_string(), topic_id: named.tp.0, partition: named.tp.1 };
    if let Some(sp) = ctx.broker.shares.get(&key) {
        if let Err(e) = ctx.broker.shares.persist(&ctx.broker, &key, &sp).await {
            tracing::error!(group, topic_id = %key.topic_id, partition = key.partition, error = %e, "cannot persist acknowledgements");
            return ResponseError::CoordinatorNotAvailable.code();
        }
        ctx.broker.shares.copy_dead_letters_later(&ctx.broker, key, sp);
    }
    applied.err().map_or(0, |code| code.code())
}

/// Answers a share fetch; the returned [`FileRecords`] hold the file ranges of the records
/// (sent with `sendfile`, as Fetch sends them).
pub async fn fetch(ctx: &RequestContext, req: ShareFetchRequest) -> (ShareFetchResponse, FileRecords) {
    let mut files = FileRecords::default();
    let resp = fetch_into(ctx, req, &mut files).await;
    (resp, files)
}

async fn fetch_into(ctx: &RequestContext, req: ShareFetchRequest, files: &mut FileRecords) -> ShareFetchResponse {
    let top_error = |code: ResponseError, msg: &str| {
        ShareFetchResponse::default().with_error_code(code.code()).with_error_message(Some(str_bytes(msg)))
    };
    if let Err(code) = ctx.require_feature(SHARE_VERSION) {
        return top_error(code, SHARE_GROUPS_DISABLED);
    }
    let (group, member) = match ids(req.group_id.as_ref().map(|g| g.0.as_str()), req.member_id.as_deref()) {
        Ok(ids) => ids,
        Err((code, msg)) => return top_error(code, msg),
    };
    if !ctx.authorized(op::READ, resource::GROUP, &group) {
        return top_error(ResponseError::GroupAuthorizationFailed, "Not authorized to access group");
    }
    let Some(mode) = AcquireMode::from_wire(req.share_acquire_mode) else {
        return top_error(ResponseError::InvalidRequest, "Unknown ShareAcquireMode.");
    };
    // KIP-1222: a fetch that renews locks fetches nothing, and says so
    if req.is_renew_ack && (req.max_wait_ms != 0 || req.min_bytes != 0 || req.max_bytes != 0 || req.max_records != 0) {
        return top_error(ResponseError::InvalidRequest, "A renewing ShareFetch must not ask for records.");
    }
    let named: Vec<Named> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| Named {
                tp: (t.topic_id, p.partition_index),
                acks: p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect(),
            })
        })
        .collect();
    let has_acks = named.iter().any(|n| !n.acks.is_empty());
    if req.share_session_epoch == INITIAL_EPOCH && has_acks {
        return top_error(ResponseError::InvalidRequest, "Acknowledgements cannot open a share session.");
    }
    let add: Vec<TopicIdPartition> = named.iter().map(|n| n.tp).collect();
    let forget: Vec<TopicIdPartition> =
        req.forgotten_topics_data.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect();
    let max_sessions = ctx.broker.config_i64("group.share.max.share.sessions").max(1) as usize;
    let key = (group.clone(), member.clone());
    let step = ctx.broker.shares.sessions.lock().fetch(
        key,
        req.share_session_epoch,
        &add,
        &forget,
        ctx.session.id,
        max_sessions,
    );
    tracing::debug!(group, member, epoch = req.share_session_epoch, connection = ctx.session.id, ?add, ?forget,
        step = ?step, "share fetch session");
    let step = match step {
        Ok(step) => step,
        Err(code) => return top_error(code, code.to_string().as_str()),
    };
    let mut out: BTreeMap<TopicIdPartition, PartitionData> = BTreeMap::new();
    for n in &named {
        let resolved = resolve(ctx, n.tp);
        let mut pd = PartitionData::default().with_partition_index(n.tp.1);
        pd.acknowledge_error_code = ack_code(ctx, &group, &member, n, &resolved).await;
        if let Err(code) = resolved {
            pd.error_code = code.code();
        }
        out.insert(n.tp, pd);
    }
    let session_partitions = match step {
        SessionStep::Closed(partitions) => {
            ctx.broker.shares.session_ended(&ctx.broker, &group, &member, Some(&partitions));
            Default::default()
        }
        SessionStep::Open(partitions) if req.max_records > 0 => partitions,
        SessionStep::Open(_) => Default::default(),
    };
    if !session_partitions.is_empty() {
        let reads = read_long_polling(ctx, &group, &member, &session_partitions, &req, mode, files).await;
        for (tp, pd) in reads {
            let entry = out.entry(tp).or_insert_with(|| PartitionData::default().with_partition_index(tp.1));
            entry.error_code = pd.error_code;
            entry.records = pd.records;
            entry.acquired_records = pd.acquired_records;
        }
    }
    let resp =
        ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_timeout_ms(ctx, &group)).with_responses(
            by_topic(out, |t, ps| ShareFetchableTopicResponse::default().with_topic_id(t).with_partitions(ps)),
        );
    with_fetch_leaders(ctx, resp)
}

/// Reads the session's partitions until something is acquired or the wait is over.
async fn read_long_polling(
    ctx: &RequestContext,
    group: &str,
    member: &str,
    partitions: &std::collections::BTreeSet<TopicIdPartition>,
    req: &ShareFetchRequest,
    mode: AcquireMode,
    files: &mut FileRecords,
) -> Vec<(TopicIdPartition, PartitionData)> {
    let member: Arc<str> = Arc::from(member);
    let read_committed = share::read_committed(&ctx.broker, group);
    let mut resolved: Vec<(TopicIdPartition, Resolved)> =
        partitions.iter().map(|tp| (*tp, resolve(ctx, *tp))).collect();
    // Each fetch of a session starts at the next partition (Kafka's round-robin rotation), so
    // a busy partition that fills MaxRecords cannot starve the ones after it.
    if !resolved.is_empty() {
        let start = req.share_session_epoch.max(0) as usize % resolved.len();
        resolved.rotate_left(start);
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let notify = Arc::new(Notify::new());
    loop {
        ctx.broker.shares.add_waiter(&notify);
        for p in resolved.iter().filter_map(|(_, r)| r.as_ref().ok()) {
            p.add_waiter(&notify);
        }
        // MaxBytes bounds the records (past the first batch); 0 reads nothing, as in Kafka
        let mut budget = i64::from(req.max_bytes);
        let mut records_left = i64::from(req.max_records.max(1));
        let mut out = Vec::new();
        let mut got = false;
        let mut wake_at: Option<i64> = None;
        for (tp, r) in &resolved {
            let p = match r {
                Ok(p) => p,
                Err(code) => {
                    out.push((*tp, PartitionData::default().with_partition_index(tp.1).with_error_code(code.code())));
                    continue;
                }
            };
            if records_left <= 0 || budget <= 0 {
                continue;
            }
            let key = SharePartitionKey { group: group.to_string(), topic_id: tp.0, partition: tp.1 };
            let sp = match ctx.broker.shares.get_or_load(&ctx.broker, &key, p).await {
                Ok(sp) => sp,
                Err(e) => {
                    tracing::debug!(group, error = %e, "share-partition state unavailable");
                    let code = ResponseError::CoordinatorNotAvailable.code();
                    out.push((*tp, PartitionData::default().with_partition_index(tp.1).with_error_code(code)));
                    continue;
                }
            };
            // Kafka's leader initializes a share-partition on its first share fetch, and a
            // fetch that already has records answers without waiting for that: the
            // partition's records come with the next fetch (clients' tests count on it).
            if sp.first_fetch() && got {
                continue;
            }
            let log = p.log();
            let read = ctx.broker.shares.read_and_acquire(
                &sp,
                &log,
                &member,
                records_left,
                mode,
                budget.max(1) as usize,
                read_committed,
            );
            wake_at = match (wake_at, sp.lock().next_wakeup()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match read {
                Ok(read) if !read.acquired.is_empty() => {
                    let bytes = match read.records.map(|slice| files.records_for(slice)).transpose() {
                        Ok(bytes) => bytes.unwrap_or_default(),
                        Err(e) => {
                            // (the records stay acquired; their lock runs out)
                            tracing::error!(topic_id = %tp.0, partition = tp.1, error = %e, "share fetch read failed");
                            let code = ResponseError::KafkaStorageError.code();
                            out.push((*tp, PartitionData::default().with_partition_index(tp.1).with_error_code(code)));
                            continue;
                        }
                    };
                    got = true;
                    budget -= bytes.len() as i64;
                    records_left -= read.acquired.iter().map(|a| a.last - a.first + 1).sum::<i64>();
                    let acquired = read
                        .acquired
                        .iter()
                        .map(|a| {
                            AcquiredRecords::default()
                                .with_first_offset(a.first)
                                .with_last_offset(a.last)
                                .with_delivery_count(a.delivery_count)
                        })
                        .collect();
                    let pd = PartitionData::default()
                        .with_partition_index(tp.1)
                        .with_records(Some(bytes))
                        .with_acquired_records(acquired);
                    out.push((*tp, pd));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic_id = %tp.0, partition = tp.1, error = %e, "share fetch read failed");
                    let code = ResponseError::KafkaStorageError.code();
                    out.push((*tp, PartitionData::default().with_partition_index(tp.1).with_error_code(code)));
                }
            }
        }
        let now = Instant::now();
        if got || now >= deadline || resolved.iter().all(|(_, r)| r.is_err()) {
            let acquired: Vec<(i64, i64)> = out
                .iter()
                .flat_map(|(_, pd)| pd.acquired_records.iter().map(|a| (a.first_offset, a.last_offset)))
                .collect();
            tracing::debug!(group, member = %member, ?acquired, "share fetch answered");
            return out;
        }
        // records held back (delays, back-off) or locked become acquirable at `wake_at`
        let wake = wake_at
            .map(|t| now + Duration::from_millis(t.saturating_sub(now_ms()).clamp(1, 60_000) as u64))
            .map_or(deadline, |t| t.min(deadline));
        let _ = tokio::time::timeout_at(wake, notify.notified()).await;
    }
}

pub async fn acknowledge_request(ctx: &RequestContext, req: ShareAcknowledgeRequest) -> ShareAcknowledgeResponse {
    use share_acknowledge_response::{PartitionData as AckPartition, ShareAcknowledgeTopicResponse};
    let top_error = |code: ResponseError, msg: &str| {
        ShareAcknowledgeResponse::default().with_error_code(code.code()).with_error_message(Some(str_bytes(msg)))
    };
    if let Err(code) = ctx.require_feature(SHARE_VERSION) {
        return top_error(code, SHARE_GROUPS_DISABLED);
    }
    let (group, member) = match ids(req.group_id.as_ref().map(|g| g.0.as_str()), req.member_id.as_deref()) {
        Ok(ids) => ids,
        Err((code, msg)) => return top_error(code, msg),
    };
    if !ctx.authorized(op::READ, resource::GROUP, &group) {
        return top_error(ResponseError::GroupAuthorizationFailed, "Not authorized to access group");
    }
    let key = (group.clone(), member.clone());
    let step = match ctx.broker.shares.sessions.lock().acknowledge(key, req.share_session_epoch) {
        Ok(step) => step,
        Err(code) => return top_error(code, code.to_string().as_str()),
    };
    let mut out: BTreeMap<TopicIdPartition, AckPartition> = BTreeMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            let acks =
                p.acknowledgement_batches.iter().map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            let named = Named { tp: (t.topic_id, p.partition_index), acks: acks.collect() };
            let resolved = resolve(ctx, named.tp);
            let code = ack_code(ctx, &group, &member, &named, &resolved).await;
            tracing::debug!(group, member = %member, epoch = req.share_session_epoch, partition = named.tp.1,
                batches = named.acks.len(), code, "share acknowledge");
            out.insert(named.tp, AckPartition::default().with_partition_index(p.partition_index).with_error_code(code));
        }
    }
    if let SessionStep::Closed(partitions) = step {
        ctx.broker.shares.session_ended(&ctx.broker, &group, &member, Some(&partitions));
    }
    let mut resp = ShareAcknowledgeResponse::default().with_responses(by_topic(out, |t, ps| {
        ShareAcknowledgeTopicResponse::default().with_topic_id(t).with_partitions(ps)
    }));
    // version 2 tells a renewing consumer how long its locks now last
    if ctx.version >= 2 {
        resp.acquisition_lock_timeout_ms = lock_timeout_ms(ctx, &group);
    }
    with_ack_leaders(ctx, resp)
}

/// The group's acquisition lock duration, as responses carry it.
fn lock_timeout_ms(ctx: &RequestContext, group: &str) -> i32 {
    share::limits(&ctx.broker, group).lock_ms.clamp(0, i64::from(i32::MAX)) as i32
}

/// Groups per-partition answers by topic, in topic-id order.
fn by_topic<P, T>(parts: BTreeMap<TopicIdPartition, P>, topic: impl Fn(Uuid, Vec<P>) -> T) -> Vec<T> {
    let mut grouped: Vec<(Uuid, Vec<P>)> = Vec::new();
    for ((id, _), p) in parts {
        match grouped.last_mut() {
            Some((last, ps)) if *last == id => ps.push(p),
            _ => grouped.push((id, vec![p])),
        }
    }
    grouped.into_iter().map(|(id, ps)| topic(id, ps)).collect()
}

/// The current leader of a partition this broker does not lead (KIP-951 hints).
fn leader_of(ctx: &RequestContext, topic_id: &Uuid, partition: i32) -> Option<(i32, i32)> {
    let topic = ctx.broker.topic_by_id(topic_id)?;
    let state = topic.state(partition)?;
    (state.leader >= 0).then_some((state.leader, state.leader_epoch))
}

fn with_fetch_leaders(ctx: &RequestContext, mut resp: ShareFetchResponse) -> ShareFetchResponse {
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut leaders = Vec::new();
    for t in &mut resp.responses {
        for p in t.partitions.iter_mut().filter(|p| p.error_code == not_leader) {
            if let Some((leader, epoch)) = leader_of(ctx, &t.topic_id, p.partition_index) {
                p.current_leader = LeaderIdAndEpoch::default().with_leader_id(leader).with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    resp.node_endpoints = super::leader_hints::share_fetch_endpoints(ctx, leaders);
    resp
}

fn with_ack_leaders(ctx: &RequestContext, mut resp: ShareAcknowledgeResponse) -> ShareAcknowledgeResponse {
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut leaders = Vec::new();
    for t in &mut resp.responses {
        for p in t.partitions.iter_mut().filter(|p| p.error_code == not_leader) {
            if let Some((leader, epoch)) = leader_of(ctx, &t.topic_id, p.partition_index) {
                p.current_leader = share_acknowledge_response::LeaderIdAndEpoch::default()
                    .with_leader_id(leader)
                    .with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    resp.node_endpoints = super::leader_hints::share_acknowledge_endpoints(ctx, leaders);
    resp
}

/// The bytes a share fetch sends (for byte-rate quotas).
pub fn response_bytes(resp: &ShareFetchResponse) -> usize {
    resp.responses.iter().flat_map(|t| t.partitions.iter()).map(|p| p.records.as_ref().map_or(0, Bytes::len)).sum()
}
