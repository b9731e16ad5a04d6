//! Kafka's share-state RPCs between brokers (KIP-932): ReadShareGroupState (84),
//! WriteShareGroupState (85) and DeleteShareGroupState (86), served by the leader of the
//! share-partition's `__share_group_state` partition. A partition leader reads a
//! share-partition's state from there when it takes the partition over, and writes every
//! change there. CLUSTER_ACTION only: brokers call these, clients do not.

use kafka_protocol::messages::{
    delete_share_group_state_response, read_share_group_state_response, write_share_group_state_response,
    DeleteShareGroupStateRequest, DeleteShareGroupStateResponse, ReadShareGroupStateRequest,
    ReadShareGroupStateResponse, WriteShareGroupStateRequest, WriteShareGroupStateResponse,
};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::security::acl::op;
use crate::share::state::{from_write, to_read_result};
use crate::share::SharePartitionKey;

/// Whether this broker may serve `key`'s state for this caller: the error to answer if not.
fn refusal(ctx: &RequestContext, key: &SharePartitionKey) -> Option<ResponseError> {
    if !ctx.cluster_authorized(op::CLUSTER_ACTION) {
        return Some(ResponseError::ClusterAuthorizationFailed);
    }
    ctx.broker.shares.state.ownership(&ctx.broker, key).err()
}

pub async fn read(ctx: &RequestContext, req: ReadShareGroupStateRequest) -> ReadShareGroupStateResponse {
    use read_share_group_state_response::{PartitionResult, ReadStateResult};
    let group = req.group_id.to_string();
    let results = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let key = SharePartitionKey { group: group.clone(), topic_id: t.topic_id, partition: p.partition };
                    match refusal(ctx, &key) {
                        Some(code) => {
                            PartitionResult::default().with_partition(p.partition).with_error_code(code.code())
                        }
                        None => to_read_result(p.partition, ctx.broker.shares.state.stored(&key).as_ref()),
                    }
                })
                .collect();
            ReadStateResult::default().with_topic_id(t.topic_id).with_partitions(partitions)
        })
        .collect();
    ReadShareGroupStateResponse::default().with_results(results)
}

pub async fn write(ctx: &RequestContext, req: WriteShareGroupStateRequest) -> WriteShareGroupStateResponse {
    use write_share_group_state_response::{PartitionResult, WriteStateResult};
    let group = req.group_id.to_string();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let (key, snapshot) = from_write(t.topic_id, &group, p);
            let code = match refusal(ctx, &key) {
                Some(code) => code.code(),
                None => match ctx.broker.shares.state.persist(&ctx.broker, &key, Some(snapshot)).await {
                    Ok(()) => 0,
                    Err(_) => ResponseError::CoordinatorNotAvailable.code(),
                },
            };
            partitions.push(PartitionResult::default().with_partition(p.partition).with_error_code(code));
        }
        results.push(WriteStateResult::default().with_topic_id(t.topic_id).with_partitions(partitions));
    }
    WriteShareGroupStateResponse::default().with_results(results)
}

pub async fn delete(ctx: &RequestContext, req: DeleteShareGroupStateRequest) -> DeleteShareGroupStateResponse {
    use delete_share_group_state_response::{DeleteStateResult, PartitionResult};
    let group = req.group_id.to_string();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let key = SharePartitionKey { group: group.clone(), topic_id: t.topic_id, partition: p.partition };
            let code = match refusal(ctx, &key) {
                Some(code) => code.code(),
                None => match ctx.broker.shares.state.persist(&ctx.broker, &key, None).await {
                    Ok(()) => 0,
                    Err(_) => ResponseError::CoordinatorNotAvailable.code(),
                },
            };
            partitions.push(PartitionResult::default().with_partition(p.partition).with_error_code(code));
        }
        results.push(DeleteStateResult::default().with_topic_id(t.topic_id).with_partitions(partitions));
    }
    DeleteShareGroupStateResponse::default().with_results(results)
}
