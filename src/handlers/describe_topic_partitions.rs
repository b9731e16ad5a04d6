//! DescribeTopicPartitions (API 75, KIP-966): topics' partitions a page at a time, as the
//! Java admin client's `describeTopics` asks for them. Topics go in name order from the
//! cursor's topic and partition; at `response_partition_limit` partitions (bounded by
//! `max.request.partition.size.limit`) the answer ends with the cursor to continue from.
//! Each partition is described exactly as Metadata describes it.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::metadata::{partition_view, TOPIC_OPERATIONS};
use super::{str_bytes, RequestContext};
use crate::broker::{is_internal_topic, validate_topic_name};
use crate::security::acl::{op, resource};

pub async fn handle(ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let broker = &ctx.broker;
    let all = req.topics.is_empty();
    let (cursor_topic, cursor_partition) =
        req.cursor.as_ref().map_or((String::new(), 0), |c| (c.topic_name.0.to_string(), c.partition_index));
    let mut names: Vec<String> = if all {
        broker.topics().into_iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort();
    names.dedup();
    let bad_cursor = match &req.cursor {
        Some(_) if !all && !names.contains(&cursor_topic) => {
            Some(format!("DescribeTopicPartitionsRequest topic list should contain the cursor topic: {cursor_topic}"))
        }
        Some(_) if cursor_partition < 0 => {
            Some(format!("DescribeTopicPartitionsRequest cursor partition must be valid: {cursor_partition}"))
        }
        _ => None,
    };
    if let Some(message) = bad_cursor {
        // Kafka fails the request: every topic asked for gets INVALID_REQUEST
        tracing::debug!(message, "invalid DescribeTopicPartitions cursor");
        let topics = req.topics.iter().map(|t| topic_error(t.name.0.as_str(), ResponseError::InvalidRequest));
        return DescribeTopicPartitionsResponse::default().with_topics(topics.collect());
    }
    let limit = req.response_partition_limit.min(broker.config_i64("max.request.partition.size.limit") as i32).max(1);
    let view = broker.cluster_view(&ctx.session.listener.name);
    let mut remaining = limit;
    let mut topics = Vec::new();
    let mut denied = Vec::new();
    let mut next_cursor = None;
    for name in names {
        let authorized = ctx.authorized(op::DESCRIBE, resource::TOPIC, &name);
        if !authorized {
            // named topics the client may not describe are answered without saying whether they exist
            if !all {
                denied.push(topic_error(&name, ResponseError::TopicAuthorizationFailed));
            }
            continue;
        }
        if remaining == 0 {
            next_cursor = Some(cursor(&name, 0));
            break;
        }
        let Some(t) = broker.topic(&name) else {
            if !all {
                let code = match validate_topic_name(&name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition,
                    Err(_) => ResponseError::InvalidTopicException,
                };
                topics.push(topic_error(&name, code));
            }
            continue;
        };
        let start = if name == cursor_topic { cursor_partition } else { 0 };
        let end = t.partition_count.min(start.saturating_add(remaining));
        let partitions: Vec<_> = (start..end)
            .map(|index| {
                let p = partition_view(broker, &view, &t, index);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas)
                    .with_isr_nodes(p.isr)
                    .with_offline_replicas(p.offline)
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
            })
            .collect();
        remaining -= partitions.len() as i32;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(name.clone()))))
                .with_topic_id(t.id)
                .with_is_internal(t.is_internal())
                .with_partitions(partitions)
                .with_topic_authorized_operations(ctx.authorized_operations(resource::TOPIC, &name, TOPIC_OPERATIONS)),
        );
        if end < t.partition_count {
            next_cursor = Some(cursor(&name, end));
            break;
        }
    }
    topics.extend(denied);
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

fn topic_error(name: &str, code: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(TopicName(str_bytes(name))))
        .with_is_internal(is_internal_topic(name))
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default().with_topic_name(TopicName(str_bytes(topic))).with_partition_index(partition)
}
