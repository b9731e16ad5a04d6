//! Keys and values of `__consumer_offsets` records, in Kafka's own formats so Kafka tooling can
//! read a Weir offsets topic. kafka-protocol generates request/response codecs but not these
//! coordinator record schemas, so this module encodes the few fixed-layout versions Weir writes
//! (and reads them back), following Kafka's `OffsetCommitKey`, `OffsetCommitValue` (v3),
//! `GroupMetadataKey` and `GroupMetadataValue` (v3) definitions.
//!
//! Every key starts with an i16 record type (0/1 offset commit, 2 group metadata); every value
//! with an i16 version. Strings are i16-length-prefixed UTF-8 (-1 for null), bytes i32-prefixed.

use bytes::{BufMut, Bytes, BytesMut};

use crate::coordinator::codec::{put_bytes, put_opt_str, put_str, Reader};

const OFFSET_COMMIT_KEY: i16 = 1;
const LEGACY_OFFSET_COMMIT_KEY: i16 = 0;
const GROUP_METADATA_KEY: i16 = 2;
const CONSUMER_GROUP_KEY: i16 = 3;
const CONSUMER_MEMBER_KEY: i16 = 5;
const CONSUMER_TARGET_KEY: i16 = 6;
const CONSUMER_TARGET_MEMBER_KEY: i16 = 7;
const CONSUMER_CURRENT_KEY: i16 = 8;
const SHARE_GROUP_KEY: i16 = 11;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// What a `__consumer_offsets` key refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// KIP-848: the group epoch.
    ConsumerGroup {
        group: String,
    },
    /// KIP-932: a share group and its epoch (`ShareGroupMetadata`).
    ShareGroup {
        group: String,
    },
    /// KIP-848: a member's subscription and identity.
    ConsumerMember {
        group: String,
        member: String,
    },
    /// KIP-848: the target assignment's epoch.
    ConsumerTarget {
        group: String,
    },
    /// KIP-848: a member's target partitions.
    ConsumerTargetMember {
        group: String,
        member: String,
    },
    /// KIP-848: a member's epoch and current partitions.
    ConsumerCurrent {
        group: String,
        member: String,
    },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A classic group's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RecordKey::Offset { group, topic, partition } => {
                b.put_i16(OFFSET_COMMIT_KEY);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                b.put_i16(GROUP_METADATA_KEY);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerGroup { group }
            | RecordKey::ConsumerTarget { group }
            | RecordKey::ShareGroup { group } => {
                let kind = match self {
                    RecordKey::ConsumerGroup { .. } => CONSUMER_GROUP_KEY,
                    RecordKey::ShareGroup { .. } => SHARE_GROUP_KEY,
                    _ => CONSUMER_TARGET_KEY,
                };
                b.put_i16(kind);
                put_str(&mut b, group);
            }
            RecordKey::ConsumerMember { group, member }
            | RecordKey::ConsumerTargetMember { group, member }
            | RecordKey::ConsumerCurrent { group, member } => {
                let kind = match self {
                    RecordKey::ConsumerMember { .. } => CONSUMER_MEMBER_KEY,
                    RecordKey::ConsumerTargetMember { .. } => CONSUMER_TARGET_MEMBER_KEY,
                    _ => CONSUMER_CURRENT_KEY,
                };
                b.put_i16(kind);
                put_str(&mut b, group);
                put_str(&mut b, member);
            }
        }
        b.freeze()
    }

    /// `None` for record types Weir does not understand (they are skipped on replay).
    pub fn decode(bytes: Bytes) -> Option<RecordKey> {
        let mut r = Reader(bytes);
        match r.i16()? {
            OFFSET_COMMIT_KEY | LEGACY_OFFSET_COMMIT_KEY => {
                Some(RecordKey::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? })
            }
            GROUP_METADATA_KEY => Some(RecordKey::Group { group: r.str()? }),
            CONSUMER_GROUP_KEY => Some(RecordKey::ConsumerGroup { group: r.str()? }),
            SHARE_GROUP_KEY => Some(RecordKey::ShareGroup { group: r.str()? }),
            CONSUMER_TARGET_KEY => Some(RecordKey::ConsumerTarget { group: r.str()? }),
            CONSUMER_MEMBER_KEY => Some(RecordKey::ConsumerMember { group: r.str()?, member: r.str()? }),
            CONSUMER_TARGET_MEMBER_KEY => Some(RecordKey::ConsumerTargetMember { group: r.str()?, member: r.str()? }),
            CONSUMER_CURRENT_KEY => Some(RecordKey::ConsumerCurrent { group: r.str()?, member: r.str()? }),
            _ => None,
        }
    }
}

impl OffsetValue {
    /// What OffsetFetch reports for a partition without a committed offset.
    pub fn none() -> OffsetValue {
        OffsetValue { offset: -1, leader_epoch: -1, metadata: String::new(), commit_timestamp: -1 }
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    /// Reads versions 0–3 (v1 carries an expire timestamp, which is ignored).
    pub fn decode(bytes: Bytes) -> Option<OffsetValue> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.str()?;
        let commit_timestamp = r.i64()?;
        Some(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(GROUP_METADATA_VALUE_VERSION);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_opt_str(&mut b, self.protocol.as_deref());
        put_opt_str(&mut b, self.leader.as_deref());
        b.put_i64(self.current_state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_opt_str(&mut b, m.group_instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    /// Reads versions 0–3.
    pub fn decode(bytes: Bytes) -> Option<GroupValue> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let protocol_type = r.str()?;
        let generation = r.i32()?;
        let protocol = r.opt_str()?;
        let leader = r.opt_str()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = r.str()?;
            let group_instance_id = if version >= 3 { r.opt_str()? } else { None };
            let client_id = r.str()?;
            let client_host = r.str()?;
            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
            let session_timeout_ms = r.i32()?;
            let rebalance_timeout_ms = if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
            members.push(StoredMember {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Some(GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
    }
}

/// The `__consumer_offsets` partition that owns `group`: `abs(hashCode(group)) % partitions`,
/// with Java's `String.hashCode` over UTF-16 units and Kafka's `Utils.abs`.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        for key in [
            RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 7 },
            RecordKey::Group { group: "g".into() },
            RecordKey::ConsumerGroup { group: "g".into() },
            RecordKey::ShareGroup { group: "g".into() },
            RecordKey::ConsumerTarget { group: "g".into() },
            RecordKey::ConsumerMember { group: "g".into(), member: "m".into() },
            RecordKey::ConsumerTargetMember { group: "g".into(), member: "m".into() },
            RecordKey::ConsumerCurrent { group: "g".into(), member: "m".into() },
        ] {
            assert_eq!(RecordKey::decode(key.encode()), Some(key));
        }
        let v = OffsetValue { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp: 99 };
        assert_eq!(OffsetValue::decode(v.encode()), Some(v));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            current_state_timestamp: 1,
            members: vec![StoredMember {
                member_id: "a".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300000,
                session_timeout_ms: 45000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(g.encode()), Some(g));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(RecordKey::decode(Bytes::from_static(&[0, 1, 0, 9, b'x'])), None);
        assert_eq!(GroupValue::decode(Bytes::from_static(&[0, 3, 0])), None);
        assert_eq!(OffsetValue::decode(Bytes::from_static(&[0, 9])), None);
    }

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "group".hashCode() == 98629247 in Java
        assert_eq!(partition_for("group", 50), 98629247 % 50);
        assert_eq!(partition_for("", 50), 0);
    }
}
