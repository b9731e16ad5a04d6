//! Cluster metadata: the metadata log and the image it replays into.

pub mod controller;
pub mod features;
pub mod metadata_log;
pub mod partition_change;
pub mod quorum;
pub mod quorum_link;
pub mod raft_log;
pub mod raft_net;
pub mod raft_state;
