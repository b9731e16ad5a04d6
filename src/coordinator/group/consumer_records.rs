//! Values of the KIP-848 consumer-group records in `__consumer_offsets`, in Kafka's formats:
//! `ConsumerGroupMetadataValue` (record type 3), `ConsumerGroupMemberMetadataValue` (5),
//! `ConsumerGroupTargetAssignmentMetadataValue` (6), `ConsumerGroupTargetAssignmentMemberValue`
//! (7) and `ConsumerGroupCurrentMemberAssignmentValue` (8), all version 0.
//!
//! These are "flexible" versions: an i16 version, then compact strings and arrays (unsigned
//! varint length + 1, 0 for null) and a tagged-field section. Weir writes no tagged fields and
//! skips any it reads.

use bytes::{BufMut, Bytes};
use uuid::Uuid;

use crate::coordinator::codec::{CompactWriter as Writer, Reader};

const VERSION: i16 = 0;

/// Partitions grouped by topic id, as these records store them.
pub type TopicPartitions = Vec<(Uuid, Vec<i32>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

/// A version-0 value being written.
fn writer() -> Writer {
    Writer::new(VERSION)
}

/// KIP-848 structures on the shared compact writer.
trait TopicPartitionsWriter {
    fn topic_partitions(&mut self, tps: &TopicPartitions);
}

impl TopicPartitionsWriter for Writer {
    fn topic_partitions(&mut self, tps: &TopicPartitions) {
        self.uvarint(tps.len() as u64 + 1);
        for (id, parts) in tps {
            self.0.put_slice(id.as_bytes());
            self.uvarint(parts.len() as u64 + 1);
            for p in parts {
                self.0.put_i32(*p);
            }
            self.uvarint(0); // struct's tagged fields
        }
    }
}

/// Opens a version-0 value.
fn open(b: Bytes) -> Option<Reader> {
    let mut r = Reader(b);
    (r.i16()? == VERSION).then_some(r)
}

/// KIP-848 structures on the shared record cursor.
impl Reader {
    fn topic_partitions(&mut self) -> Option<TopicPartitions> {
        let mut out = Vec::new();
        for _ in 0..self.compact_count()? {
            let id = Uuid::from_slice(&self.take(16)?).ok()?;
            let mut parts = Vec::new();
            for _ in 0..self.compact_count()? {
                parts.push(self.i32()?);
            }
            self.skip_tags()?;
            out.push((id, parts));
        }
        Some(out)
    }
}

/// `ConsumerGroupMetadataValue`: the group epoch.
pub fn encode_group_epoch(epoch: i32) -> Bytes {
    let mut w = writer();
    w.0.put_i32(epoch);
    w.finish()
}

pub fn decode_group_epoch(b: Bytes) -> Option<i32> {
    open(b)?.i32()
}

/// `ConsumerGroupTargetAssignmentMetadataValue`: the assignment epoch.
pub fn encode_assignment_epoch(epoch: i32) -> Bytes {
    encode_group_epoch(epoch)
}

pub fn decode_assignment_epoch(b: Bytes) -> Option<i32> {
    decode_group_epoch(b)
}

impl MemberMetadata {
    pub fn encode(&self) -> Bytes {
        let mut w = writer();
        w.opt_str(self.instance_id.as_deref());
        w.opt_str(self.rack_id.as_deref());
        w.str(&self.client_id);
        w.str(&self.client_host);
        w.uvarint(self.subscribed_topic_names.len() as u64 + 1);
        for t in &self.subscribed_topic_names {
            w.str(t);
        }
        w.opt_str(self.subscribed_topic_regex.as_deref());
        w.0.put_i32(self.rebalance_timeout_ms);
        w.opt_str(self.server_assignor.as_deref());
        w.finish()
    }

    pub fn decode(b: Bytes) -> Option<MemberMetadata> {
        let mut r = open(b)?;
        let instance_id = r.compact_opt_str()?;
        let rack_id = r.compact_opt_str()?;
        let client_id = r.compact_str()?;
        let client_host = r.compact_str()?;
        let mut subscribed_topic_names = Vec::new();
        for _ in 0..r.compact_count()? {
            subscribed_topic_names.push(r.compact_str()?);
        }
        Some(MemberMetadata {
            instance_id,
            rack_id,
            client_id,
            client_host,
            subscribed_topic_names,
            subscribed_topic_regex: r.compact_opt_str()?,
            rebalance_timeout_ms: r.i32()?,
            server_assignor: r.compact_opt_str()?,
        })
    }
}

/// `ConsumerGroupTargetAssignmentMemberValue`: a member's target partitions.
pub fn encode_target(tps: &TopicPartitions) -> Bytes {
    let mut w = writer();
    w.topic_partitions(tps);
    w.finish()
}

pub fn decode_target(b: Bytes) -> Option<TopicPartitions> {
    open(b)?.topic_partitions()
}

impl CurrentAssignment {
    pub fn encode(&self) -> Bytes {
        let mut w = writer();
        w.0.put_i32(self.member_epoch);
        w.0.put_i32(self.previous_member_epoch);
        w.0.put_i8(self.state);
        w.topic_partitions(&self.assigned);
        w.topic_partitions(&self.pending_revocation);
        w.finish()
    }

    pub fn decode(b: Bytes) -> Option<CurrentAssignment> {
        let mut r = open(b)?;
        Some(CurrentAssignment {
            member_epoch: r.i32()?,
            previous_member_epoch: r.i32()?,
            state: r.i8()?,
            assigned: r.topic_partitions()?,
            pending_revocation: r.topic_partitions()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let m = MemberMetadata {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 300000,
            server_assignor: Some("uniform".into()),
        };
        assert_eq!(MemberMetadata::decode(m.encode()), Some(m));
        let id = Uuid::new_v4();
        let c = CurrentAssignment {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned: vec![(id, vec![0, 2])],
            pending_revocation: vec![(id, vec![1])],
        };
        assert_eq!(CurrentAssignment::decode(c.encode()), Some(c));
        assert_eq!(decode_target(encode_target(&vec![(id, vec![5])])), Some(vec![(id, vec![5])]));
        assert_eq!(decode_group_epoch(encode_group_epoch(9)), Some(9));
        assert_eq!(CurrentAssignment::decode(Bytes::from_static(&[0, 0, 0, 0])), None);
        assert_eq!(decode_target(Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f])), None);
    }
}
