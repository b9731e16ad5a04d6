//! Replication's follower side, as Kafka's `ReplicaFetcherManager` runs it: every partition
//! this broker follows is assigned to one of `num.replica.fetchers` fetchers per source broker
//! (the partition's leader); each fetcher holds one connection to its leader and sends one
//! Fetch for all of its partitions, so the cost of following does not grow with the number
//! of partitions followed.
//!
//! The partition's role (lead, follow whom in which epoch) is decided from the metadata in
//! `broker::replication`; following hands the partition to [`FetcherManager::add`], and the
//! [`crate::partition::replica::StopFetching`] it returns takes it out again when the role
//! changes.

pub mod fetch_sessions;
mod fetcher;
mod manager;

pub use manager::{FetcherKey, FetcherManager, FetcherStats};

/// A topic name as the protocol carries it.
fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(name.to_string()))
}
