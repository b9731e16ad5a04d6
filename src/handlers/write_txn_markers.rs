//! WriteTxnMarkers: a transaction coordinator on another broker ends a transaction on
//! partitions this broker leads. Broker-to-broker only (CLUSTER_ACTION); each marker is
//! answered once it is as durable as an acks=all write.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::coordinator::txn::markers::{write_here, Marker};
use crate::security::acl::op;

pub async fn handle(ctx: &RequestContext, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let allowed = ctx.cluster_authorized(op::CLUSTER_ACTION);
    let mut results = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let topic = ctx.broker.topic(t.name.0.as_str());
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for index in t.partition_indexes {
                let written = match topic.as_ref().map(|t| t.local(index)) {
                    _ if !allowed => Err(ResponseError::ClusterAuthorizationFailed),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                    Some(Err(code)) => Err(code),
                    Some(Ok(p)) => write_here(&ctx.broker, p, marker).await,
                };
                let code = written.err().map_or(0, |e| e.code());
                partitions.push(
                    WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(code),
                );
            }
            topics.push(WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(partitions));
        }
        results.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
