//! DeleteRecords: moves a partition's log start offset forward (-1 means the high watermark)
//! and deletes the segments wholly below it.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::produce::log_error_code;
use super::RequestContext;
use crate::broker::now_ms;
use crate::security::acl::{op, resource};

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topic(t.name.0.as_str());
            let denied = !ctx.authorized(op::DELETE, resource::TOPIC, t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if denied {
                        return r.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let partition = match topic.as_ref().map(|t| t.local(p.partition_index)) {
                        Some(Ok(p)) => p,
                        Some(Err(code)) => return r.with_error_code(code.code()),
                        None => return r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    };
                    let mut log = partition.log_mut();
                    let offset = if p.offset == -1 { log.high_watermark() } else { p.offset };
                    match log.delete_records_before(offset, now_ms()) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(log_error_code(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
