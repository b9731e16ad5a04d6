//! Share groups' membership APIs (KIP-932): ShareGroupHeartbeat and ShareGroupDescribe. The
//! protocol logic lives in `coordinator::group::share`; the records members acquire are the
//! partition leaders' business (`share`, `handlers::share_fetch`).

use std::collections::BTreeSet;

use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::groups::{check_group_here, check_heartbeat, group_operations};
use super::{str_bytes, RequestContext};
use crate::cluster::features::SHARE_VERSION;
use crate::coordinator::group::consumer::{to_lists, TopicPartition};
use crate::coordinator::group::share::{ShareGroup, ShareHeartbeat};
use crate::coordinator::group::GroupCoordinator;
use crate::security::acl::op;
use crate::share::SharePartitionKey;

/// What share-group APIs answer while share.version is 0.
pub(super) const SHARE_GROUPS_DISABLED: &str = "Share groups are disabled (share.version is 0).";

pub async fn heartbeat(ctx: &RequestContext, req: ShareGroupHeartbeatRequest) -> ShareGroupHeartbeatResponse {
    let error = |code: ResponseError, msg: &str| {
        ShareGroupHeartbeatResponse::default().with_error_code(code.code()).with_error_message(Some(str_bytes(msg)))
    };
    if let Err(code) = ctx.require_feature(SHARE_VERSION) {
        return error(code, SHARE_GROUPS_DISABLED);
    }
    let group_id = req.group_id.0.to_string();
    if let Err((code, msg)) = check_heartbeat(ctx, &group_id, req.subscribed_topic_names.as_deref()) {
        return error(code, &msg);
    }
    if req.member_id.is_empty() {
        return error(ResponseError::InvalidRequest, "MemberId can't be empty.");
    }
    if req.member_epoch < -1 {
        return error(ResponseError::InvalidRequest, "MemberEpoch is invalid.");
    }
    if req.member_epoch == 0 && req.subscribed_topic_names.as_ref().is_none_or(|n| n.is_empty()) {
        return error(ResponseError::InvalidRequest, "SubscribedTopicNames must be set in first request.");
    }
    let coordinator = &ctx.broker.groups;
    let topics = GroupCoordinator::topic_infos(&ctx.broker);
    let cfg = GroupCoordinator::share_config(&ctx.broker, &group_id);
    let hb = ShareHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.map(|s| s.to_string()),
        subscribed_topic_names: req.subscribed_topic_names.map(|v| v.iter().map(|t| t.0.to_string()).collect()),
        client_id: ctx.header.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    if let Err(e) = coordinator.ensure_offsets_topic(&ctx.broker).await {
        return error(ResponseError::CoordinatorNotAvailable, &e.to_string());
    }
    let handle = coordinator.group_or_create(&group_id);
    let mut entry = handle.lock().await;
    if !entry.group.members.is_empty() || entry.is_consumer_group() {
        return error(ResponseError::GroupIdNotFound, &format!("Group {group_id} is not a share group."));
    }
    let group = entry.share.get_or_insert_with(|| ShareGroup::new(&group_id));
    // A member that leaves closes its share sessions itself (its last acknowledgements go in
    // first): what it still holds is released then, or when its connection closes.
    let r = group.heartbeat(hb, &topics, Instant::now(), &cfg);
    let assigned = group.assigned_partitions();
    if let Some(record) = group.take_record() {
        // the new epoch is durable before the member acts on it
        if let Err(e) = coordinator.write(&ctx.broker, &group_id, vec![record]).await {
            tracing::error!(group = %group_id, error = %e, "cannot persist share group state");
            return error(ResponseError::CoordinatorNotAvailable, "the group state could not be written");
        }
    }
    drop(entry);
    start_share_partitions(ctx, &group_id, &assigned).await;
    let mut resp = ShareGroupHeartbeatResponse::default()
        .with_error_code(r.error)
        .with_error_message(r.error_message.map(str_bytes))
        .with_member_id((r.error == 0).then(|| str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms);
    tracing::debug!(group = %group_id, member = %req.member_id, asked_epoch = req.member_epoch, epoch = r.member_epoch,
        error = r.error, assignment = ?r.assignment, "share group heartbeat");
    if let Some(parts) = r.assignment {
        let topic_partitions = to_lists(&parts)
            .into_iter()
            .map(|(id, ps)| TopicPartitions::default().with_topic_id(id).with_partitions(ps))
            .collect();
        resp.assignment = Some(Assignment::default().with_topic_partitions(topic_partitions));
    }
    resp
}

/// Starts the share-partitions this broker leads as soon as they are assigned, so that
/// `share.auto.offset.reset=latest` means "from when the group subscribed", not "from the
/// first fetch" (Kafka's coordinator initialises them at assignment too).
async fn start_share_partitions(ctx: &RequestContext, group: &str, assigned: &BTreeSet<TopicPartition>) {
    for (topic_id, partition) in assigned {
        let Some(p) = ctx.broker.topic_by_id(topic_id).and_then(|t| t.local(*partition).ok().cloned()) else {
            continue;
        };
        let key = SharePartitionKey { group: group.to_string(), topic_id: *topic_id, partition: *partition };
        if ctx.broker.shares.get(&key).is_none() {
            if let Err(e) = ctx.broker.shares.get_or_load(&ctx.broker, &key, &p).await {
                tracing::debug!(group, error = %e, "share-partition not started yet");
            }
        }
    }
}

pub async fn describe(ctx: &RequestContext, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    let name_of = |id: &uuid::Uuid| ctx.broker.topic_by_id(id).map(|t| t.name.clone()).unwrap_or_default();
    let described = |parts: &BTreeSet<TopicPartition>| {
        let topic_partitions = to_lists(parts)
            .into_iter()
            .map(|(id, ps)| {
                DescribedPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(str_bytes(name_of(&id))))
                    .with_partitions(ps)
            })
            .collect();
        DescribedAssignment::default().with_topic_partitions(topic_partitions)
    };
    let mut groups = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let ops = group_operations(ctx, id.0.as_str(), req.include_authorized_operations);
        let mut d = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(ops);
        if let Err(code) =
            ctx.require_feature(SHARE_VERSION).and_then(|()| check_group_here(ctx, op::DESCRIBE, id.0.as_str()))
        {
            groups.push(d.with_error_code(code.code()));
            continue;
        }
        let handle = ctx.broker.groups.group(id.0.as_str());
        let entry = match &handle {
            Some(h) => Some(h.lock().await),
            None => None,
        };
        let Some(s) = entry.as_ref().and_then(|e| e.share.as_ref()) else {
            let message = match &entry {
                Some(_) => format!("Group {} is not a share group.", id.0.as_str()),
                None => format!("Group {} not found.", id.0.as_str()),
            };
            d.error_code = ResponseError::GroupIdNotFound.code();
            d.error_message = Some(str_bytes(message));
            d.group_state = str_bytes("Dead");
            groups.push(d);
            continue;
        };
        d.group_state = str_bytes(s.state());
        d.group_epoch = s.group_epoch;
        d.assignment_epoch = s.assignment_epoch;
        d.assignor_name = str_bytes("simple");
        d.members = s
            .members
            .values()
            .map(|m| {
                Member::default()
                    .with_member_id(str_bytes(m.id.clone()))
                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                    .with_member_epoch(m.epoch)
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()))
                    .with_subscribed_topic_names(m.subscribed.iter().map(|t| TopicName(str_bytes(t.clone()))).collect())
                    .with_assignment(described(&m.assigned))
            })
            .collect();
        groups.push(d);
    }
    ShareGroupDescribeResponse::default().with_groups(groups)
}
