//! Produce and Fetch through the partitions' leaders, with record batches encoded and
//! decoded by `kafka-protocol`.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::{by_topic, Client, Result, Tp};

/// A fetch response's bound over all partitions (Kafka's `fetch.max.bytes` default), well
/// under the largest response a connection accepts.
const FETCH_MAX_BYTES: i32 = 50 << 20;

/// What one partition's fetch gave.
#[derive(Debug, Default)]
pub struct Fetched {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Data records (control records left out), in offset order.
    pub records: Vec<Record>,
    /// Where the next fetch starts: past every whole batch returned.
    pub next_offset: Option<i64>,
}

impl Client {
    /// Appends one encoded record batch to each partition with acks=all; each partition's
    /// base offset.
    pub async fn produce(&mut self, batches: Vec<(Tp, Bytes)>, timeout_ms: i32) -> Result<Vec<(Tp, Result<i64>)>> {
        self.per_leader(
            batches,
            |share| {
                let topics = by_topic(share)
                    .into_iter()
                    .map(|(name, parts)| {
                        let parts = parts.into_iter().map(|(p, batch)| {
                            PartitionProduceData::default().with_index(p).with_records(Some(batch.clone()))
                        });
                        TopicProduceData::default().with_name(name).with_partition_data(parts.collect())
                    })
                    .collect();
                ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(topics)
            },
            |resp| {
                let mut out = Vec::new();
                for t in resp.responses {
                    for p in t.partition_responses {
                        let msg = p.error_message.map(|m| m.to_string());
                        out.push(((t.name.0.to_string(), p.index), p.error_code, msg, p.base_offset));
                    }
                }
                out
            },
        )
        .await
    }

    /// Fetches from each partition at its offset, waiting up to `max_wait_ms` for data.
    pub async fn fetch(
        &mut self,
        positions: Vec<(Tp, i64)>,
        max_wait_ms: i32,
        partition_max_bytes: i32,
        isolation_level: i8,
    ) -> Result<Vec<(Tp, Result<Fetched>)>> {
        self.per_leader(
            positions,
            |share| {
                let topics = by_topic(share)
                    .into_iter()
                    .map(|(name, parts)| {
                        let parts = parts.into_iter().map(|(p, offset)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(*offset)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(partition_max_bytes)
                        });
                        FetchTopic::default().with_topic(name).with_partitions(parts.collect())
                    })
                    .collect();
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(max_wait_ms)
                    .with_min_bytes(1)
                    .with_max_bytes(
                        partition_max_bytes
                            .saturating_mul(share.len() as i32)
                            .clamp(partition_max_bytes, FETCH_MAX_BYTES),
                    )
                    .with_isolation_level(isolation_level)
                    .with_session_epoch(-1)
                    .with_topics(topics)
            },
            |resp| {
                let mut out = Vec::new();
                for t in resp.responses {
                    for p in t.partitions {
                        let tp = (t.topic.0.to_string(), p.partition_index);
                        let (records, next_offset) = decode_batches(p.records.unwrap_or_default());
                        let fetched = Fetched {
                            high_watermark: p.high_watermark,
                            log_start_offset: p.log_start_offset,
                            records,
                            next_offset,
                        };
                        out.push((tp, p.error_code, None, fetched));
                    }
                }
                out
            },
        )
        .await
    }
}

/// Decodes the whole batches in `data` (a fetch may end in a partial one); returns the data
/// records and the offset after the last whole batch. A batch with no records left (after
/// compaction or duplicate detection) still moves the offset on.
pub fn decode_batches(mut data: Bytes) -> (Vec<Record>, Option<i64>) {
    let mut records = Vec::new();
    let mut next = None;
    // base offset (8), length (4), leader epoch (4), magic (1), crc (4), attributes (2), last offset delta (4)
    while data.len() >= 27 {
        let base = (&data[0..8]).get_i64();
        let len = (&data[8..12]).get_i32();
        let total = 12usize.saturating_add(len.max(0) as usize);
        if len <= 0 || data.len() < total {
            break;
        }
        let last_delta = (&data[23..27]).get_i32();
        let mut batch = data.split_to(total);
        match RecordBatchDecoder::decode(&mut batch) {
            Ok(set) => records.extend(set.records.into_iter().filter(|r| !r.control)),
            Err(_) => break,
        }
        next = Some(base.saturating_add(i64::from(last_delta)).saturating_add(1));
    }
    (records, next)
}
