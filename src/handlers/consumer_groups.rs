//! KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe. The protocol
//! logic lives in `coordinator::group::consumer`.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::groups::{check_group_here, check_heartbeat, group_operations};
use super::{str_bytes, RequestContext};
use crate::cluster::features::GROUP_VERSION;
use crate::coordinator::group::consumer::{to_lists, ConsumerGroup, Heartbeat, TopicPartition};
use crate::coordinator::group::GroupCoordinator;
use crate::security::acl::op;

pub async fn heartbeat(ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let error = |code: ResponseError, msg: &str| {
        ConsumerGroupHeartbeatResponse::default().with_error_code(code.code()).with_error_message(Some(str_bytes(msg)))
    };
    if let Err(code) = ctx.require_feature(GROUP_VERSION) {
        return error(code, "The consumer group protocol is disabled (group.version is 0).");
    }
    let group_id = req.group_id.0.to_string();
    if let Err((code, msg)) = check_heartbeat(ctx, &group_id, req.subscribed_topic_names.as_deref()) {
        return error(code, &msg);
    }
    if ctx.version >= 1 && req.member_id.is_empty() {
        return error(ResponseError::InvalidRequest, "MemberId can't be empty.");
    }
    if req.member_epoch == 0 && req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
        return error(
            ResponseError::InvalidRequest,
            "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
        );
    }
    let coordinator = &ctx.broker.groups;
    let topics = GroupCoordinator::topic_infos(&ctx.broker);
    let cfg = GroupCoordinator::consumer_config(&ctx.broker, &group_id);
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.map(|v| v.iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req
            .topic_partitions
            .map(|tps| tps.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect()),
        client_id: ctx.header.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    if let Err(e) = coordinator.ensure_offsets_topic(&ctx.broker).await {
        return error(ResponseError::CoordinatorNotAvailable, &e.to_string());
    }
    let handle = coordinator.group_or_create(&group_id);
    let mut entry = handle.lock().await;
    if !entry.group.members.is_empty() || entry.share.is_some() {
        return error(ResponseError::GroupIdNotFound, &format!("Group {group_id} is not a consumer group."));
    }
    let group = entry.consumer.get_or_insert_with(|| ConsumerGroup::new(&group_id));
    let r = group.heartbeat(hb, &topics, Instant::now(), &cfg);
    if group.dirty {
        // the new epochs and assignments are durable before the member acts on them
        let records = group.take_records().into_iter().map(|(k, v)| (k.encode(), v)).collect();
        if let Err(e) = coordinator.write(&ctx.broker, &group_id, records).await {
            tracing::error!(group = %group_id, error = %e, "cannot persist consumer group state");
            return error(ResponseError::CoordinatorNotAvailable, "the group state could not be written");
        }
    }
    let mut resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error)
        .with_error_message(r.error_message.map(str_bytes))
        .with_member_id((r.error == 0).then(|| str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms);
    if let Some(parts) = r.assignment {
        let topic_partitions = to_lists(&parts)
            .into_iter()
            .map(|(id, ps)| TopicPartitions::default().with_topic_id(id).with_partitions(ps))
            .collect();
        resp.assignment = Some(Assignment::default().with_topic_partitions(topic_partitions));
    }
    resp
}

pub async fn describe(ctx: &RequestContext, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
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
            ctx.require_feature(GROUP_VERSION).and_then(|()| check_group_here(ctx, op::DESCRIBE, id.0.as_str()))
        {
            groups.push(d.with_error_code(code.code()));
            continue;
        }
        let handle = ctx.broker.groups.group(id.0.as_str());
        let entry = match &handle {
            Some(h) => Some(h.lock().await),
            None => None,
        };
        let Some(c) = entry.as_ref().and_then(|e| e.consumer.as_ref()) else {
            d.error_code = ResponseError::GroupIdNotFound.code();
            d.error_message = Some(str_bytes(format!("Group {} not found.", id.0.as_str())));
            d.group_state = str_bytes("Dead");
            groups.push(d);
            continue;
        };
        d.group_state = str_bytes(c.state());
        d.group_epoch = c.group_epoch;
        d.assignment_epoch = c.assignment_epoch;
        d.assignor_name = str_bytes(c.assignor.clone());
        d.members = c
            .members
            .values()
            .map(|m| {
                let mut member = Member::default()
                    .with_member_id(str_bytes(m.id.clone()))
                    .with_instance_id(m.instance_id.clone().map(str_bytes))
                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                    .with_member_epoch(m.epoch)
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed_names.iter().map(|t| TopicName(str_bytes(t.clone()))).collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_regex.clone().map(str_bytes))
                    .with_assignment(described(&m.assigned))
                    .with_target_assignment(described(&c.target.get(&m.id).cloned().unwrap_or_default()));
                if ctx.version >= 1 {
                    member.member_type = 1; // consumer protocol member
                }
                member
            })
            .collect();
        groups.push(d);
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
