//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), the
//! tiered-storage specials (-5, -6: none here), and lookups by timestamp via the time index.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::{check_leader_epoch, RequestContext};
use crate::log::{Log, LogError, TimestampOffset};
use crate::security::acl::{op, resource};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == READ_COMMITTED;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topic(t.name.0.as_str());
            let denied = !ctx.authorized(op::DESCRIBE, resource::TOPIC, t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    if denied {
                        return resp.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let partition = match topic.as_ref().map(|t| t.local(p.partition_index)) {
                        Some(Ok(p)) => p,
                        Some(Err(code)) => return resp.with_error_code(code.code()),
                        None => return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    };
                    let log = partition.log();
                    let epoch = log.leader_epoch();
                    if let Err(code) = check_leader_epoch(p.current_leader_epoch, epoch) {
                        return resp.with_error_code(code.code());
                    }
                    match lookup(&log, p.timestamp, read_committed) {
                        Ok(Some(found)) => {
                            // leader_epoch exists from v4 on
                            let epoch = if ctx.version >= 4 { epoch } else { -1 };
                            resp.with_timestamp(found.timestamp).with_offset(found.offset).with_leader_epoch(epoch)
                        }
                        Ok(None) => resp.with_timestamp(-1).with_offset(-1).with_leader_epoch(-1),
                        Err(e) => {
                            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "offset lookup failed");
                            resp.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(log: &Log, timestamp: i64, read_committed: bool) -> Result<Option<TimestampOffset>, LogError> {
    let at = |offset| Ok(Some(TimestampOffset { timestamp: -1, offset }));
    let visible = if read_committed { log.last_stable_offset() } else { log.high_watermark() };
    match timestamp {
        LATEST => at(visible),
        EARLIEST | EARLIEST_LOCAL => at(log.log_start_offset()),
        MAX_TIMESTAMP => log.max_timestamp_offset(),
        ts if ts >= 0 => Ok(log.offset_for_timestamp(ts)?.filter(|f| f.offset < visible)),
        // -5 (earliest pending upload), -6 (latest tiered): no tiered storage here.
        _ => Ok(None),
    }
}
