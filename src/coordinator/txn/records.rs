//! Keys and values of `__transaction_state` records in Kafka's formats: `TransactionLogKey`
//! (i16 version 0, transactional id) and `TransactionLogValue` version 0 (producer id,
//! producer epoch, timeout, state, partitions by topic, last update and start timestamps).
//! Version 1 values (flexible, Kafka 4's transaction version 2) are read too.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::{TxnMetadata, TxnState};
use crate::coordinator::codec::{put_str, Reader};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn decode_key(bytes: Bytes) -> Option<String> {
    let mut r = Reader(bytes);
    (r.i16()? == KEY_VERSION).then_some(())?;
    r.str()
}

/// Groups partitions by topic, as the value stores them.
fn by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in partitions {
        match out.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => out.push((t.as_str(), vec![*p])),
        }
    }
    out
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    let topics = by_topic(&m.partitions);
    b.put_i32(topics.len() as i32);
    for (topic, parts) in topics {
        put_str(&mut b, topic);
        b.put_i32(parts.len() as i32);
        for p in parts {
            b.put_i32(p);
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

/// Decodes a value; `None` for garbage or an unknown version.
pub fn decode_value(id: &str, bytes: Bytes) -> Option<TxnMetadata> {
    let mut r = Reader(bytes);
    let flexible = match r.i16()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_i8(r.i8()?)?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible { r.compact_count()? } else { r.i32()?.max(0) as usize };
    for _ in 0..topics {
        let topic = if flexible { r.compact_str()? } else { r.str()? };
        let n = if flexible { r.compact_count()? } else { r.i32()?.max(0) as usize };
        for _ in 0..n {
            partitions.insert((topic.clone(), r.i32()?));
        }
        if flexible {
            r.skip_tags()?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Some(TxnMetadata {
        id: id.to_string(),
        producer_id,
        prev_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let m = TxnMetadata {
            id: "tx".into(),
            producer_id: 4000,
            prev_producer_id: -1,
            producer_epoch: 3,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect(),
            start_ms: 10,
            last_update_ms: 20,
        };
        assert_eq!(decode_key(encode_key("tx")).as_deref(), Some("tx"));
        let back = decode_value("tx", encode_value(&m)).unwrap();
        assert_eq!(back, m);
        let bytes = encode_value(&m);
        for cut in 0..bytes.len() {
            assert!(decode_value("tx", bytes.slice(..cut)).is_none(), "cut at {cut}");
        }
        assert!(decode_key(Bytes::from_static(&[0, 9, 0])).is_none());
    }
}
