//! Weir: an event-streaming broker that speaks the Apache Kafka wire protocol.
//!
//! Start at [`server::start`]; requests flow through [`handlers`] to the [`broker::Broker`],
//! whose partitions keep their data in segmented [`log`]s.

pub mod alloc;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod fuzzing;
pub mod handlers;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod partition;
pub mod replica;
pub mod security;
pub mod server;
pub mod share;
pub mod telemetry;

pub use server::{start, RunningBroker};
