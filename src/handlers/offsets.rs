//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete. Commits are written to
//! `__consumer_offsets` and made durable before the reply.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::groups::check_group_here;
use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::coordinator::group::records::OffsetValue;
use crate::coordinator::group::GroupCoordinator;
use crate::security::acl::{op, resource};

pub async fn offset_commit(ctx: &RequestContext, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let generation = req.generation_id_or_member_epoch;
    let member_id = req.member_id.to_string();
    let max_metadata = broker.config_i64("offset.metadata.max.bytes") as usize;
    let by_id = ctx.version >= 10;
    // Resolve topics first: (response topic, partition, error or the value to commit)
    let mut planned: Vec<(usize, i32, Result<OffsetValue, ResponseError>, String)> = Vec::new();
    let mut committing: Vec<(Uuid, i32)> = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    let now = now_ms();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = if by_id { broker.topic_by_id(&t.topic_id) } else { broker.topic(t.name.0.as_str()) };
        let readable =
            ctx.authorized(op::READ, resource::TOPIC, topic.as_ref().map_or(t.name.0.as_str(), |tp| &tp.name));
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or_default().to_string();
            let value = match &topic {
                _ if !readable => Err(ResponseError::TopicAuthorizationFailed),
                None => Err(if by_id { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition }),
                Some(tp) if !tp.has_partition(p.partition_index) => Err(ResponseError::UnknownTopicOrPartition),
                Some(_) if metadata.len() > max_metadata => Err(ResponseError::OffsetMetadataTooLarge),
                Some(_) => Ok(OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp: now,
                }),
            };
            let name = topic.as_ref().map(|tp| tp.name.clone()).unwrap_or_default();
            if let (Ok(_), Some(tp)) = (&value, &topic) {
                committing.push((tp.id, p.partition_index));
            }
            planned.push((ti, p.partition_index, value, name));
        }
        topics.push(OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_topic_id(t.topic_id));
    }
    let group_error = match check_group_here(ctx, op::READ, &group_id) {
        Err(e) => Some(e),
        Ok(()) if group_id.is_empty() => Some(ResponseError::InvalidGroupId),
        Ok(()) => None,
    };
    // A commit with no generation to a group that does not exist creates a "simple" group.
    let handle = match group_error {
        Some(_) => None,
        None if generation < 0 => Some(broker.groups.group_or_create(&group_id)),
        None => broker.groups.group(&group_id),
    };
    let outcome: Result<(), ResponseError> = match (group_error, &handle) {
        (Some(e), _) => Err(e),
        // v9 can say what happened; older versions keep the code they always had.
        (None, None) if ctx.version >= 9 => Err(ResponseError::GroupIdNotFound),
        (None, None) => Err(ResponseError::IllegalGeneration),
        (None, Some(handle)) => {
            let mut entry = handle.lock().await;
            let instance = req.group_instance_id.as_deref();
            match entry.validate_offset_commit(&member_id, instance, generation, false, ctx.version, &committing) {
                Err(e) => Err(e),
                Ok(()) => {
                    let records: Vec<_> = planned
                        .iter()
                        .filter_map(|(_, p, v, name)| v.as_ref().ok().map(|v| (name, *p, v)))
                        .map(|(name, p, v)| GroupCoordinator::offset_record(&group_id, name, p, Some(v)))
                        .collect();
                    match broker.groups.write(broker, &group_id, records).await {
                        Ok(()) => {
                            for (_, p, v, name) in &planned {
                                if let Ok(v) = v {
                                    entry.offsets.insert((name.clone(), *p), v.clone());
                                }
                            }
                            Ok(())
                        }
                        Err(e) => {
                            tracing::error!(group = %group_id, error = %e, "offset commit failed");
                            Err(ResponseError::KafkaStorageError)
                        }
                    }
                }
            }
        }
    };
    for (ti, p, v, _) in planned {
        let code = match (&outcome, v) {
            (Err(e), _) => e.code(),
            (Ok(()), Err(e)) => e.code(),
            (Ok(()), Ok(_)) => 0,
        };
        topics[ti]
            .partitions
            .push(OffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code));
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// One requested topic of an OffsetFetch: its name (or id) and partitions (`None`: all).
struct FetchTopic {
    name: String,
    id: Uuid,
    partitions: Vec<i32>,
}

/// A topic's committed offsets as OffsetFetch reports them: name, id, (partition, offset).
type CommittedTopic = (String, Uuid, Vec<(i32, Committed)>);

/// A partition's committed offset, or the error that replaces it.
type Committed = Result<Option<OffsetValue>, ResponseError>;

/// The committed offsets of `group` for `topics` (`None`: everything the group committed).
/// With `require_stable`, a partition with an offset pending in an open transaction is
/// `UNSTABLE_OFFSET_COMMIT`, so the consumer retries instead of reading a stale offset.
async fn fetch_group(
    ctx: &RequestContext,
    group: &str,
    topics: Option<Vec<FetchTopic>>,
    require_stable: bool,
) -> Vec<CommittedTopic> {
    let handle = ctx.broker.groups.group(group);
    let entry = match &handle {
        Some(h) => Some(h.lock().await),
        None => None,
    };
    let committed: BTreeMap<(String, i32), OffsetValue> = entry.as_ref().map(|e| e.offsets.clone()).unwrap_or_default();
    let lookup = |topic: &str, p: i32| -> Committed {
        if !ctx.authorized(op::DESCRIBE, resource::TOPIC, topic) {
            return Err(ResponseError::TopicAuthorizationFailed);
        }
        if require_stable && entry.as_ref().is_some_and(|e| e.has_pending_txn_offset(topic, p)) {
            return Err(ResponseError::UnstableOffsetCommit);
        }
        Ok(committed.get(&(topic.to_string(), p)).cloned())
    };
    let id_of = |name: &str| ctx.broker.topic(name).map(|t| t.id).unwrap_or_default();
    match topics {
        Some(list) => list
            .into_iter()
            .map(|t| {
                let parts = t.partitions.iter().map(|p| (*p, lookup(&t.name, *p))).collect();
                (t.name, t.id, parts)
            })
            .collect(),
        None => {
            let mut out: Vec<CommittedTopic> = Vec::new();
            // Topics the client may not describe are left out of "everything".
            for (topic, p) in committed.keys().filter(|(t, _)| ctx.authorized(op::DESCRIBE, resource::TOPIC, t)) {
                let v = lookup(topic, *p);
                match out.last_mut() {
                    Some((name, _, parts)) if name == topic => parts.push((*p, v)),
                    _ => out.push((topic.clone(), id_of(topic), vec![(*p, v)])),
                }
            }
            out
        }
    }
}

pub async fn offset_fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    if v < 8 {
        if let Err(code) = check_group_here(ctx, op::DESCRIBE, req.group_id.0.as_str()) {
            return OffsetFetchResponse::default().with_error_code(code.code());
        }
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| FetchTopic { name: t.name.0.to_string(), id: Uuid::nil(), partitions: t.partition_indexes })
                .collect()
        });
        let found = fetch_group(ctx, req.group_id.0.as_str(), topics, v >= 7 && req.require_stable).await;
        let topics = found
            .into_iter()
            .map(|(name, _, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(p, o)| {
                        let code = o.as_ref().err().map_or(0, |e| e.code());
                        let o = o.ok().flatten().unwrap_or_else(OffsetValue::none);
                        let mut r = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o.offset)
                            .with_error_code(code)
                            .with_metadata(Some(str_bytes(o.metadata)));
                        if v >= 5 {
                            r.committed_leader_epoch = o.leader_epoch;
                        }
                        r
                    })
                    .collect();
                OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        if let Err(code) = check_group_here(ctx, op::DESCRIBE, g.group_id.0.as_str()) {
            groups.push(OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(code.code()));
            continue;
        }
        let topics = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| {
                    let name = if v >= 10 {
                        ctx.broker.topic_by_id(&t.topic_id).map(|tp| tp.name.clone()).unwrap_or_default()
                    } else {
                        t.name.0.to_string()
                    };
                    FetchTopic { name, id: t.topic_id, partitions: t.partition_indexes }
                })
                .collect()
        });
        let found = fetch_group(ctx, g.group_id.0.as_str(), topics, req.require_stable).await;
        let topics = found
            .into_iter()
            .map(|(name, id, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(p, o)| {
                        let code = o.as_ref().err().map_or(0, |e| e.code());
                        let o = o.ok().flatten().unwrap_or_else(OffsetValue::none);
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                            .with_committed_offset(o.offset)
                            .with_committed_leader_epoch(o.leader_epoch)
                            .with_metadata(Some(str_bytes(o.metadata)))
                    })
                    .collect();
                let mut t = OffsetFetchResponseTopics::default().with_partitions(partitions);
                if v >= 10 {
                    t.topic_id = id;
                } else {
                    t.name = TopicName(str_bytes(name));
                }
                t
            })
            .collect();
        groups.push(OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics));
    }
    OffsetFetchResponse::default().with_groups(groups)
}

pub async fn offset_delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    if let Err(code) = check_group_here(ctx, op::DELETE, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(code.code());
    }
    let Some(handle) = ctx.broker.groups.group(&group_id) else {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code());
    };
    let mut entry = handle.lock().await;
    let subscribed = match entry.consumer.as_ref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.members.values().flat_map(|m| m.subscribed_names.clone()).collect()),
        None if entry.group.members.is_empty() => Some(Vec::new()),
        None => entry.group.subscribed_topics(),
    };
    let Some(subscribed) = subscribed else {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::NonEmptyGroup.code());
    };
    let mut records = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let busy = subscribed.contains(&name);
        let readable = ctx.authorized(op::READ, resource::TOPIC, &name);
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let code = match () {
                    _ if !readable => ResponseError::TopicAuthorizationFailed.code(),
                    _ if busy => ResponseError::GroupSubscribedToTopic.code(),
                    _ => 0,
                };
                if readable && !busy && entry.offsets.remove(&(name.clone(), p.partition_index)).is_some() {
                    records.push(GroupCoordinator::offset_record(&group_id, &name, p.partition_index, None));
                }
                OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
            })
            .collect();
        topics.push(OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions));
    }
    if let Err(e) = ctx.broker.groups.write(&ctx.broker, &group_id, records).await {
        tracing::error!(group = %group_id, error = %e, "offset delete failed");
        return OffsetDeleteResponse::default().with_error_code(ResponseError::KafkaStorageError.code());
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
