//! ListOffsets through the partitions' leaders.

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};

use super::{by_topic, Client, Result, Tp};

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

impl Client {
    /// For each partition, the offset of the first record at or after the timestamp (or
    /// [`LATEST`] / [`EARLIEST`]); -1 when no record is that new.
    pub async fn list_offsets(&mut self, wanted: Vec<(Tp, i64)>) -> Result<Vec<(Tp, Result<i64>)>> {
        self.per_leader(
            wanted,
            |share| {
                let topics = by_topic(share)
                    .into_iter()
                    .map(|(name, parts)| {
                        let parts = parts.into_iter().map(|(p, timestamp)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(*timestamp)
                                .with_current_leader_epoch(-1)
                        });
                        ListOffsetsTopic::default().with_name(name).with_partitions(parts.collect())
                    })
                    .collect();
                ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics)
            },
            |resp| {
                let mut out = Vec::new();
                for t in resp.topics {
                    for p in t.partitions {
                        out.push(((t.name.0.to_string(), p.partition_index), p.error_code, None, p.offset));
                    }
                }
                out
            },
        )
        .await
    }

    /// Log start offset and high watermark of each partition of `topic`.
    pub async fn watermarks(&mut self, tps: &[Tp]) -> Result<Vec<(Tp, Result<(i64, i64)>)>> {
        let starts = self.list_offsets(tps.iter().map(|tp| (tp.clone(), EARLIEST)).collect()).await?;
        let ends = self.list_offsets(tps.iter().map(|tp| (tp.clone(), LATEST)).collect()).await?;
        let mut ends: std::collections::HashMap<Tp, Result<i64>> = ends.into_iter().collect();
        Ok(starts
            .into_iter()
            .map(|(tp, start)| {
                let end = ends.remove(&tp).unwrap_or(Ok(-1));
                let both = start.and_then(|s| end.map(|e| (s, e)));
                (tp, both)
            })
            .collect())
    }
}
