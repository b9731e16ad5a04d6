//! OffsetForLeaderEpoch: where a leader epoch ended in the leader's log. A follower asks it
//! before fetching, to cut a tail a previous leader wrote (KIP-101); a consumer asks it to
//! check its position after a leader change (KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::{check_leader_epoch, RequestContext};
use crate::security::acl::{op, resource};

pub async fn handle(ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let from_replica = req.replica_id.0 >= 0;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.as_str();
            let allowed = if from_replica {
                ctx.cluster_authorized(op::CLUSTER_ACTION)
            } else {
                ctx.authorized(op::DESCRIBE, resource::TOPIC, name)
            };
            let topic = ctx.broker.topic(name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r =
                        EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    if !allowed {
                        return r.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let partition = match topic.as_ref().map(|t| t.local(p.partition)) {
                        Some(Ok(partition)) => partition,
                        Some(Err(code)) => return r.with_error_code(code.code()),
                        None => return r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    };
                    let log = partition.log();
                    if let Err(code) = check_leader_epoch(p.current_leader_epoch, log.leader_epoch()) {
                        return r.with_error_code(code.code());
                    }
                    let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                    tracing::debug!(asked = p.leader_epoch, epoch, end, log_end = log.log_end_offset(), epochs = ?log.epoch_entries(), "OffsetForLeaderEpoch");
                    r.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
