//! Coordinators: state machines whose durable state is a compacted internal topic.

pub mod group;
