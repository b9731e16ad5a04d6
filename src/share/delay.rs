//! Delayed delivery (Weir's, beyond Kafka): a record with the header `weir.deliver.at`
//! (epoch milliseconds, decimal) or `weir.deliver.after.ms` (milliseconds after the record's
//! timestamp) cannot be acquired by a share group before that time — Pulsar's `deliverAt`,
//! RocketMQ's delay levels, SQS's delay. Plain consumer groups read the log as always.
//!
//! A waiting record stays in the share-partition's in-flight window as *available, not
//! before T*: records after it are delivered meanwhile, and it holds one of the
//! `group.share.partition.max.record.locks` places until delivered. Headers are only decoded
//! for batches that can hold them: an uncompressed batch whose bytes do not contain
//! `weir.deliver.` is skipped without decoding.

use std::sync::LazyLock;

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

pub const DELIVER_AT: &str = "weir.deliver.at";
pub const DELIVER_AFTER_MS: &str = "weir.deliver.after.ms";

/// Finds the header names' common prefix in raw bytes (a SIMD-backed substring search).
static MARKER: LazyLock<Option<regex::bytes::Regex>> =
    LazyLock::new(|| regex::bytes::Regex::new(r"weir\.deliver\.").ok());

/// The offsets of `batch` (one whole record batch) not deliverable before a time after
/// `now`, with that time, in offset order.
pub fn delayed_records(batch: &[u8], compressed: bool, now: i64) -> Vec<(i64, i64)> {
    if !compressed && MARKER.as_ref().is_some_and(|m| !m.is_match(batch)) {
        return Vec::new();
    }
    let mut buf = bytes::Bytes::copy_from_slice(batch);
    let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) else { return Vec::new() };
    sets.iter()
        .flat_map(|s| s.records.iter())
        .filter_map(|r| deliver_at(r).filter(|at| *at > now).map(|at| (r.offset, at)))
        .collect()
}

/// When a record may be delivered, if its headers say.
pub fn deliver_at(r: &Record) -> Option<i64> {
    let number = |name: &'static str| {
        let value = r.headers.get(&StrBytes::from_static_str(name))?.as_ref()?;
        std::str::from_utf8(value).ok()?.trim().parse::<i64>().ok()
    };
    number(DELIVER_AT).or_else(|| number(DELIVER_AFTER_MS).map(|ms| r.timestamp.saturating_add(ms.max(0))))
}
