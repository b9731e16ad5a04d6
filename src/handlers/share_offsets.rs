//! Share groups' offsets for administrators (KIP-932): DescribeShareGroupOffsets (90),
//! AlterShareGroupOffsets (91) and DeleteShareGroupOffsets (92) — what
//! `kafka-share-groups.sh --describe / --reset-offsets / --delete-offsets` send. A share
//! group's "offset" for a partition is its share-partition start offset (SPSO); altering it
//! starts the partition afresh there (a new state epoch), deleting it forgets the partition's
//! state so the group starts by `share.auto.offset.reset` again. Both need an empty group.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::groups::check_group_here;
use super::{str_bytes, RequestContext};
use crate::broker::Topic;
use crate::cluster::features::SHARE_VERSION;
use crate::coordinator::group::share::ShareGroup;
use crate::coordinator::group::GroupEntry;
use crate::security::acl::{op, resource};
use crate::share::dlq::latest_offset;
use crate::share::partition::lag;
use crate::share::state::StateBatch;
use crate::share::SharePartitionKey;

/// A share group's start offset and leader epoch for a partition (-1s when it has none): as
/// this broker has it loaded, else from the state's coordinator, wherever that is.
async fn start_of(ctx: &RequestContext, key: &SharePartitionKey) -> Result<Described, ResponseError> {
    let shares = &ctx.broker.shares;
    if let Some(sp) = shares.get(key) {
        let leader_epoch = shares.state.stored(key).map_or(-1, |s| s.leader_epoch);
        let sp = sp.lock();
        let runs = sp.runs().collect();
        return Ok(Described { start_offset: sp.start_offset(), leader_epoch, runs });
    }
    match shares.state.read(&ctx.broker, key).await {
        Ok(Some(s)) => Ok(Described { start_offset: s.start_offset, leader_epoch: s.leader_epoch, runs: s.batches }),
        Ok(None) => Ok(Described { start_offset: -1, leader_epoch: -1, runs: vec![] }),
        Err(_) => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// A share-partition's start offset, leader epoch and in-flight runs, wherever its state is.
struct Described {
    start_offset: i64,
    leader_epoch: i32,
    runs: Vec<StateBatch>,
}

impl Described {
    /// The share-partition lag (DescribeShareGroupOffsets v1): records up to the partition's
    /// latest offset not yet acknowledged or archived; -1 where it cannot be known.
    async fn lag(&self, ctx: &RequestContext, topic: &Topic, partition: i32) -> i64 {
        if self.start_offset < 0 {
            return -1;
        }
        let local = topic.partition(partition).filter(|p| p.is_leader()).map(|p| p.log().high_watermark());
        let latest = match local {
            Some(hw) => Ok(hw),
            None => latest_offset(&ctx.broker, &topic.name, partition).await,
        };
        match latest {
            Ok(latest) => lag(self.start_offset, latest, self.runs.iter().copied()),
            Err(e) => {
                tracing::debug!(topic = topic.name, partition, error = %e, "no latest offset for the share lag");
                -1
            }
        }
    }
}

/// Whether `group` is a share group here; the error to answer otherwise.
async fn share_group(ctx: &RequestContext, group: &str, operation: i8) -> Result<bool, ResponseError> {
    ctx.require_feature(SHARE_VERSION)?;
    check_group_here(ctx, operation, group)?;
    let handle = ctx.broker.groups.group(group).ok_or(ResponseError::GroupIdNotFound)?;
    let entry = handle.lock().await;
    let share = entry.share.as_ref().ok_or(ResponseError::GroupIdNotFound)?;
    Ok(share.is_empty())
}

pub async fn describe(
    ctx: &RequestContext,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let group = g.group_id.0.to_string();
        let mut out = DescribeShareGroupOffsetsResponseGroup::default().with_group_id(g.group_id.clone());
        if let Err(code) = share_group(ctx, &group, op::DESCRIBE).await {
            groups.push(out.with_error_code(code.code()).with_error_message(Some(str_bytes(code.to_string()))));
            continue;
        }
        // the topics asked for, or every one the group has state for
        let all = g.topics.is_none();
        let wanted: Vec<(String, Vec<i32>)> = match g.topics {
            Some(topics) => topics.into_iter().map(|t| (t.topic_name.0.to_string(), t.partitions)).collect(),
            None => known_partitions(ctx, &group).await,
        };
        for (name, partitions) in wanted {
            if !ctx.authorized(op::DESCRIBE, resource::TOPIC, &name) {
                continue;
            }
            let topic = ctx.broker.topic(&name);
            let mut described = Vec::with_capacity(partitions.len());
            for p in partitions {
                let part = DescribeShareGroupOffsetsResponsePartition::default().with_partition_index(p);
                let Some(t) = topic.as_ref().filter(|t| t.partition(p).is_some()) else {
                    let code = ResponseError::UnknownTopicOrPartition.code();
                    described.push(part.with_start_offset(-1).with_leader_epoch(-1).with_error_code(code));
                    continue;
                };
                let key = SharePartitionKey { group: group.clone(), topic_id: t.id, partition: p };
                match start_of(ctx, &key).await {
                    // asked for all: only the partitions the group has state for
                    Ok(d) if d.start_offset == -1 && all => {}
                    Ok(d) => {
                        let lag = if ctx.version >= 1 { d.lag(ctx, t, p).await } else { -1 };
                        described.push(
                            part.with_start_offset(d.start_offset).with_leader_epoch(d.leader_epoch).with_lag(lag),
                        )
                    }
                    Err(code) => {
                        described.push(part.with_start_offset(-1).with_leader_epoch(-1).with_error_code(code.code()))
                    }
                }
            }
            if described.is_empty() {
                continue;
            }
            out.topics.push(
                DescribeShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_topic_id(topic.map_or(uuid::Uuid::nil(), |t| t.id))
                    .with_partitions(described),
            );
        }
        groups.push(out);
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

/// The partitions `group` may have share state for, by topic name: those known here, and
/// every partition of the topics its members subscribe to (their state may live on another
/// broker).
async fn known_partitions(ctx: &RequestContext, group: &str) -> Vec<(String, Vec<i32>)> {
    let shares = &ctx.broker.shares;
    let mut keys: BTreeSet<(uuid::Uuid, i32)> = shares
        .state
        .of_group(group)
        .into_iter()
        .map(|(k, _)| (k.topic_id, k.partition))
        .chain(shares.of_group(group).into_iter().map(|(k, _)| (k.topic_id, k.partition)))
        .collect();
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    if let Some(handle) = ctx.broker.groups.group(group) {
        if let Some(s) = handle.lock().await.share.as_ref() {
            subscribed.extend(s.members.values().flat_map(|m| m.subscribed.iter().cloned()));
            keys.extend(s.state_partitions.iter().copied());
        }
    }
    for topic in subscribed.iter().filter_map(|name| ctx.broker.topic(name)) {
        keys.extend((0..topic.partition_count).map(|p| (topic.id, p)));
    }
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for (id, p) in keys {
        let Some(topic) = ctx.broker.topic_by_id(&id) else { continue };
        match out.last_mut() {
            Some((name, ps)) if *name == topic.name => ps.push(p),
            _ => out.push((topic.name.clone(), vec![p])),
        }
    }
    out
}

/// Checks an alter or delete: READ on the group (Kafka's check for changing offsets), a share
/// group, and no members.
async fn changeable(ctx: &RequestContext, group: &str) -> Result<(), ResponseError> {
    match share_group(ctx, group, op::READ).await? {
        true => Ok(()),
        false => Err(ResponseError::NonEmptyGroup),
    }
}

/// The topic, when it exists and the client may read it.
fn readable_topic(ctx: &RequestContext, name: &str) -> Result<std::sync::Arc<Topic>, ResponseError> {
    if !ctx.authorized(op::READ, resource::TOPIC, name) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    ctx.broker.topic(name).ok_or(ResponseError::UnknownTopicOrPartition)
}

/// AlterShareGroupOffsets on a group id nobody uses yet creates the share group, empty (as
/// Kafka does), so that its start offsets can be set before any member joins.
async fn create_if_missing(ctx: &RequestContext, group: &str) -> Result<(), ResponseError> {
    ctx.require_feature(SHARE_VERSION)?;
    check_group_here(ctx, op::READ, group)?;
    let coordinator = &ctx.broker.groups;
    let unused = |e: &GroupEntry| e.share.is_none() && e.is_empty() && e.offsets.is_empty();
    match coordinator.group(group) {
        Some(handle) if !unused(&*handle.lock().await) => return Ok(()),
        _ => {}
    }
    coordinator.ensure_offsets_topic(&ctx.broker).await.map_err(|_| ResponseError::CoordinatorNotAvailable)?;
    let handle = coordinator.group_or_create(group);
    let mut entry = handle.lock().await;
    if !unused(&entry) {
        return Ok(()); // taken meanwhile: the checks that follow say by what
    }
    let share = entry.share.insert(ShareGroup::new(group));
    let record = share.take_record();
    coordinator.write(&ctx.broker, group, record.into_iter().collect()).await.map_err(|e| {
        tracing::error!(group, error = %e, "cannot persist a new share group");
        entry.share = None;
        ResponseError::CoordinatorNotAvailable
    })
}

/// Notes that a share-partition of `group` has state now (see `ShareGroup::state_partitions`).
async fn note_state(ctx: &RequestContext, group: &str, partition: (uuid::Uuid, i32)) {
    if let Some(handle) = ctx.broker.groups.group(group) {
        if let Some(share) = handle.lock().await.share.as_mut() {
            share.state_partitions.insert(partition);
        }
    }
}

pub async fn alter(ctx: &RequestContext, req: AlterShareGroupOffsetsRequest) -> AlterShareGroupOffsetsResponse {
    let group = req.group_id.0.to_string();
    let checked = match create_if_missing(ctx, &group).await {
        Ok(()) => changeable(ctx, &group).await,
        Err(code) => Err(code),
    };
    if let Err(code) = checked {
        return AlterShareGroupOffsetsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(code.to_string())));
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let topic = readable_topic(ctx, &name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = match &topic {
                Err(code) => Err(*code),
                Ok(topic) if topic.partition(p.partition_index).is_none() => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                Ok(topic) => {
                    let key =
                        SharePartitionKey { group: group.clone(), topic_id: topic.id, partition: p.partition_index };
                    let reset = ctx.broker.shares.reset(&ctx.broker, &key, p.start_offset).await;
                    if reset.is_ok() {
                        note_state(ctx, &group, (topic.id, p.partition_index)).await;
                    }
                    reset.map_err(|e| {
                        tracing::error!(group = %group, error = %e, "cannot alter share group offsets");
                        ResponseError::KafkaStorageError
                    })
                }
            };
            let code = result.err().map_or(0, |c| c.code());
            partitions.push(
                AlterShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        responses.push(
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_topic_id(topic.map_or(uuid::Uuid::nil(), |t| t.id))
                .with_partitions(partitions),
        );
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

pub async fn delete(ctx: &RequestContext, req: DeleteShareGroupOffsetsRequest) -> DeleteShareGroupOffsetsResponse {
    let group = req.group_id.0.to_string();
    if let Err(code) = changeable(ctx, &group).await {
        return DeleteShareGroupOffsetsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(code.to_string())));
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let result = match readable_topic(ctx, &name) {
            Err(code) => Err(code),
            Ok(topic) => {
                ctx.broker.shares.forget_topic(&ctx.broker, &group, topic.id).await.map(|()| topic.id).map_err(|e| {
                    tracing::error!(group = %group, error = %e, "cannot delete share group offsets");
                    ResponseError::KafkaStorageError
                })
            }
        };
        let (id, code) = match result {
            Ok(id) => (id, 0),
            Err(code) => (uuid::Uuid::nil(), code.code()),
        };
        responses.push(
            DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_topic_id(id)
                .with_error_code(code),
        );
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}
