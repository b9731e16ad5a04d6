//! The replica manager (Kafka's `ReplicaManager`, `ReplicaFetcherManager` and log directory
//! failure handling): everything about the partitions this broker hosts that is replication
//! rather than storage or protocol.
//!
//! - [`append`]: a produce's records on a partition led here, and what acks=all waits for
//!   (min ISR, the fsync, the in-sync replicas);
//! - [`read`]: a Fetch's reads, for consumers (leader or preferred follower) and followers
//!   (their progress moves the high watermark and the ISR), long-polled;
//! - `roles`: the role the metadata gives each partition (lead, follow, wait) and the ISR a
//!   leader keeps with the controller;
//! - the follower side, as `ReplicaFetcherManager` runs it: every partition this broker
//!   follows is assigned to one of `num.replica.fetchers` fetchers per source broker (the
//!   partition's leader); each fetcher holds one connection to its leader and sends one Fetch
//!   for all of its partitions ([`fetch_sessions`] make an idle one name none), so the cost of
//!   following does not grow with the number of partitions followed. Following hands a
//!   partition to [`FetcherManager::add`], and the [`crate::partition::replica::StopFetching`]
//!   it returns takes it out again when the role changes;
//! - [`storage`]: a partition whose write or fsync failed leaves the ISR and its leadership.
//!
//! Handlers decode, authorize and encode; they run no replication themselves.

pub mod append;
pub mod fetch_sessions;
mod fetcher;
mod manager;
pub mod read;
mod roles;
pub mod storage;

pub use manager::{FetcherKey, FetcherManager, FetcherStats};

/// A topic name as the protocol carries it.
fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(name.to_string()))
}

/// A Weir follower's durable offset rides in its Fetch as a tagged field of each partition
/// (unknown tags are skipped by any Kafka decoder): with `log.flush.on.acks.all` a follower
/// fsyncs what it fetched while its next Fetch is already on the way, so the fetch offset
/// says what it has written, and this says what is on its disk. The leader counts only the
/// latter towards the high watermark (see [`follower_progress`]).
const DURABLE_OFFSET_TAG: i32 = 0x5745;

/// `partition` carrying the follower's durable offset.
fn with_durable_offset(
    partition: kafka_protocol::messages::fetch_request::FetchPartition,
    durable: i64,
) -> kafka_protocol::messages::fetch_request::FetchPartition {
    partition.with_unknown_tagged_fields(
        std::iter::once((DURABLE_OFFSET_TAG, durable.to_be_bytes().to_vec().into())).collect(),
    )
}

/// What a follower's fetch of `partition` proves it holds for good: its durable offset when
/// it sent one (never beyond its fetch offset), else its fetch offset (a follower that syncs
/// before fetching again, or a broker that does not fsync per acknowledgement).
pub fn follower_progress(partition: &kafka_protocol::messages::fetch_request::FetchPartition) -> i64 {
    let durable = partition
        .unknown_tagged_fields
        .get(&DURABLE_OFFSET_TAG)
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(i64::from_be_bytes);
    durable.map_or(partition.fetch_offset, |d| d.min(partition.fetch_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn the_durable_offset_travels_in_a_tagged_field_and_never_exceeds_the_fetch_offset() {
        let synced = with_durable_offset(FetchPartition::default().with_fetch_offset(90), 70);
        let req = FetchRequest::default()
            .with_topics(vec![FetchTopic::default().with_topic(topic_name("t")).with_partitions(vec![synced])]);
        let mut buf = BytesMut::new();
        req.encode(&mut buf, 12).unwrap();
        let back = FetchRequest::decode(&mut buf.freeze(), 12).unwrap();
        assert_eq!(follower_progress(&back.topics[0].partitions[0]), 70);
        // without the field (Kafka, or a follower that syncs before fetching): the fetch offset
        assert_eq!(follower_progress(&FetchPartition::default().with_fetch_offset(90)), 90);
        let ahead = with_durable_offset(FetchPartition::default().with_fetch_offset(90), 95);
        assert_eq!(follower_progress(&ahead), 90);
    }
}
