//! DescribeQuorum (API 55): the metadata quorum as its leader sees it — leader, epoch, high
//! watermark, each voter's log end offset and the observers (brokers that only follow the
//! metadata) — what `kafka-metadata-quorum.sh describe --status / --replication` prints.
//! Any broker answers it: one that is not the active controller asks the controller, as
//! Kafka's brokers forward it. Weir's metadata log is openraft's, so offsets are its entry
//! indexes.

use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::cluster::quorum::QuorumStatus;
use crate::security::acl::op;

/// The name Kafka gives the metadata log, the one partition DescribeQuorum asks about.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    if !ctx.cluster_authorized(op::DESCRIBE) {
        return DescribeQuorumResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let asked =
        req.topics.first().map(|t| (t.topic_name.0.to_string(), t.partitions.first().map(|p| p.partition_index)));
    let partition = match &asked {
        Some((topic, Some(0))) if topic.as_str() == METADATA_TOPIC => match ctx.broker.describe_quorum().await {
            Ok(status) => describe(&status),
            Err(e) => {
                tracing::debug!(error = %e, "no active controller described the quorum");
                PartitionData::default().with_error_code(ResponseError::NotLeaderOrFollower.code())
            }
        },
        _ => PartitionData::default().with_error_code(ResponseError::UnknownTopicOrPartition.code()),
    };
    let name = asked.map_or_else(|| METADATA_TOPIC.to_string(), |(t, _)| t);
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(str_bytes(name)))
        .with_partitions(vec![partition])])
}

/// Partition 0 of the metadata log.
fn describe(status: &QuorumStatus) -> PartitionData {
    let replica = |id: u64, log_end: i64, fetched: i64| {
        ReplicaState::default()
            .with_replica_id(BrokerId(id as i32))
            .with_log_end_offset(log_end)
            .with_last_fetch_timestamp(fetched)
            .with_last_caught_up_timestamp(-1)
    };
    PartitionData::default()
        .with_leader_id(BrokerId(status.leader as i32))
        .with_leader_epoch(status.epoch as i32)
        .with_high_watermark(status.high_watermark)
        .with_current_voters(status.voters.iter().map(|(id, end)| replica(*id, *end, -1)).collect())
        .with_observers(status.observers.iter().map(|(id, end, at)| replica(*id, *end, *at)).collect())
}
