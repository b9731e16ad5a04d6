//! Producer state of one partition (Kafka's `ProducerStateManager`): for every producer id,
//! its epoch, the sequence numbers and offsets of its last five batches, and the first offset
//! of its open transaction. A retried batch is recognised and answered with its original
//! offsets instead of being appended again; open transactions give the last stable offset.
//!
//! The state is saved in snapshot files (`<offset>.snapshot`, Kafka's `ProducerSnapshot` v1
//! layout: version i16, CRC-32C u32 over the rest, then entries) when a segment rolls and at
//! clean shutdown; opening a log loads the newest valid snapshot and replays the batch headers
//! after it. Each remembered batch is one entry, so all five survive a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

use super::batch::BatchHeader;

/// Batches remembered per producer, as in Kafka (and `max.in.flight.requests.per.connection`).
pub const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_timestamp: i64,
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition.
    txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    /// A newer epoch starts the producer's sequence numbers again.
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, or -1.
    pub txn_start_offset: i64,
}

/// Why a producer's batch was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProducerError {
    /// `INVALID_PRODUCER_EPOCH`: an older epoch of a producer that has moved on.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch { producer_id: i64, epoch: i16, current: i16 },
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`: a gap in the producer's sequence numbers.
    #[error("out of order sequence number for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrder { producer_id: i64, expected: i32, got: i32 },
}

/// What a batch is, for a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Next in sequence (or from a producer this partition does not know): append it.
    New,
    /// Already appended at these offsets: answer with them, append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// `base + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0. Computed in
/// i64 so that garbage read from a damaged log cannot overflow.
fn seq_add(base: i32, delta: i32) -> i32 {
    let sum = i64::from(base) + i64::from(delta);
    let wrapped = if sum > i64::from(i32::MAX) { sum - i64::from(i32::MAX) - 1 } else { sum };
    wrapped.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// `last - delta` in the same wrapping sequence space.
fn seq_sub(last: i32, delta: i32) -> i32 {
    let diff = i64::from(last) - i64::from(delta);
    let wrapped = if diff < 0 && last >= 0 && delta >= 0 { diff + i64::from(i32::MAX) + 1 } else { diff };
    wrapped.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Batches the broker writes for a producer (transactional offset commits) carry no sequence
/// number and are not deduplicated.
fn has_sequence(h: &BatchHeader) -> bool {
    h.base_sequence >= 0
}

#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions by first offset: the smallest is the last stable offset.
    ongoing: BTreeMap<i64, i64>,
}

/// A transaction a marker closed on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

impl ProducerState {
    /// Classifies a batch before it is appended.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if !is_idempotent(h) {
            return Ok(SequenceCheck::New);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state left with deleted segments): accept, as
            // Kafka does since KIP-360.
            return Ok(SequenceCheck::New);
        };
        let (first, last) = (h.base_sequence, seq_add(h.base_sequence, h.last_offset_delta));
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return match first {
                0 => Ok(SequenceCheck::New),
                got => Err(ProducerError::OutOfOrder { producer_id: h.producer_id, expected: 0, got }),
            };
        }
        if !has_sequence(h) {
            return Ok(SequenceCheck::New);
        }
        // (a batch whose leading records duplicate detection dropped was stored from a later
        // first sequence: a retry of it still ends at the same last one)
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.last_seq == last && (b.first_seq == first || (first..=last).contains(&b.first_seq)))
        {
            return Ok(SequenceCheck::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = entry.batches.back().map_or(0, |b| seq_add(b.last_seq, 1));
        if first != expected {
            return Err(ProducerError::OutOfOrder { producer_id: h.producer_id, expected, got: first });
        }
        Ok(SequenceCheck::New)
    }

    /// Records an appended batch (offsets assigned), or one replayed from the log.
    pub fn record(&mut self, h: &BatchHeader) {
        if !is_idempotent(h) {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        entry.set_epoch(h.producer_epoch);
        entry.last_timestamp = h.max_timestamp;
        if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        if !has_sequence(h) {
            return;
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: seq_add(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
    }

    /// Checks that a transaction marker is not from an epoch the producer has left behind.
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => Err(ProducerError::InvalidEpoch { producer_id, epoch, current: e.epoch }),
            _ => Ok(()),
        }
    }

    /// Applies an end-transaction marker (appended or replayed): the producer's transaction
    /// on this partition is over, and the marker's epoch becomes the producer's epoch.
    pub fn complete_txn(&mut self, h: &BatchHeader, coordinator_epoch: i32) -> Option<CompletedTxn> {
        let entry = self.producers.entry(h.producer_id).or_default();
        entry.set_epoch(h.producer_epoch);
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = h.max_timestamp;
        let first_offset = entry.txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        Some(CompletedTxn { producer_id: h.producer_id, first_offset })
    }

    /// The first offset of the oldest open transaction: the last stable offset when it is
    /// below the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Where a producer's open transaction on this partition began, if it has one.
    pub fn open_transaction_start(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id).and_then(|e| e.txn_first_offset)
    }

    /// Whether `(producer_id, epoch)` has a transaction open on this partition.
    pub fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers.get(&producer_id).is_some_and(|e| e.epoch == epoch && e.txn_first_offset.is_some())
    }

    /// Open transactions as (producer id, first offset), oldest first.
    pub fn ongoing(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(offset, pid)| (*pid, *offset)).collect()
    }

    /// `producer.id.expiration.ms`: forgets producers without an open transaction whose last
    /// batch is older than the expiration. Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// Every producer this partition knows, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Base offsets of every producer's newest batch. The cleaner leaves these batches whole,
    /// so that rebuilding this state from the log still finds each producer's last sequence.
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers.values().filter_map(|e| e.batches.back().map(|b| b.base_offset)).collect()
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Serialises the state as a snapshot file body.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut body = BytesMut::new();
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut count = 0i32;
        for id in ids {
            let e = &self.producers[id];
            let txn = e.txn_first_offset.unwrap_or(-1);
            let mut put = |seq: i32, last: i64, delta: i32| {
                body.put_i64(*id);
                body.put_i16(e.epoch);
                body.put_i32(seq);
                body.put_i64(last);
                body.put_i32(delta);
                body.put_i64(e.last_timestamp);
                body.put_i32(e.coordinator_epoch);
                body.put_i64(txn);
                count += 1;
            };
            if e.batches.is_empty() {
                put(-1, -1, 0);
            }
            for b in &e.batches {
                put(b.last_seq, b.last_offset, (b.last_offset - b.base_offset) as i32);
            }
        }
        let mut rest = BytesMut::with_capacity(4 + body.len());
        rest.put_i32(count);
        rest.put_slice(&body);
        let mut out = Vec::with_capacity(6 + rest.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&rest).to_be_bytes());
        out.extend_from_slice(&rest);
        out
    }

    /// Reads a snapshot file body; `None` when its version, CRC or layout is wrong.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<ProducerState> {
        let mut b = bytes;
        if b.remaining() < 10 || b.get_i16() != SNAPSHOT_VERSION {
            return None;
        }
        let crc = b.get_u32();
        if crc32c::crc32c(b) != crc {
            return None;
        }
        let count = b.get_i32();
        if count < 0 || b.remaining() != count as usize * SNAPSHOT_ENTRY {
            return None;
        }
        let mut state = ProducerState::default();
        for _ in 0..count {
            let (id, epoch, last_seq, last_offset) = (b.get_i64(), b.get_i16(), b.get_i32(), b.get_i64());
            let (delta, timestamp, coordinator_epoch, txn) = (b.get_i32(), b.get_i64(), b.get_i32(), b.get_i64());
            let e = state.producers.entry(id).or_default();
            e.epoch = epoch;
            e.last_timestamp = timestamp;
            e.coordinator_epoch = coordinator_epoch;
            if txn >= 0 && e.txn_first_offset.is_none() {
                e.txn_first_offset = Some(txn);
                state.ongoing.insert(txn, id);
            }
            if last_offset >= 0 && last_seq >= 0 {
                let first_seq = seq_sub(last_seq, delta.max(0));
                let meta = BatchMeta { first_seq, last_seq, base_offset: last_offset - i64::from(delta), last_offset };
                e.batches.push_back(meta);
            }
        }
        Some(state)
    }
}

/// Version 1 of Kafka's producer snapshot layout.
const SNAPSHOT_VERSION: i16 = 1;
/// Bytes per snapshot entry: id, epoch, last sequence, last offset, offset delta, timestamp,
/// coordinator epoch, transaction first offset.
const SNAPSHOT_ENTRY: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            length: 0,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SequenceCheck::New));
        s.record(&h(7, 0, 0, 3, 10));
        s.record(&h(7, 0, 3, 2, 13));
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SequenceCheck::Duplicate { base_offset: 10, last_offset: 12 }));
        assert_eq!(s.check(&h(7, 0, 5, 1, 0)), Ok(SequenceCheck::New));
        assert!(matches!(s.check(&h(7, 0, 9, 1, 0)), Err(ProducerError::OutOfOrder { expected: 5, got: 9, .. })));
        // a bumped epoch starts again at 0; the old epoch is then fenced
        assert!(matches!(s.check(&h(7, 1, 5, 1, 0)), Err(ProducerError::OutOfOrder { .. })));
        s.record(&h(7, 1, 0, 1, 15));
        assert!(matches!(s.check(&h(7, 0, 5, 1, 0)), Err(ProducerError::InvalidEpoch { .. })));
        // only the last five batches are remembered
        for i in 1..=5 {
            s.record(&h(7, 1, i, 1, 15 + i64::from(i)));
        }
        let old = s.check(&h(7, 1, 0, 1, 0));
        assert!(matches!(old, Err(ProducerError::OutOfOrder { .. })), "batch 0 fell out of the window");
        // non-idempotent batches are never checked
        assert_eq!(s.check(&h(-1, -1, -1, 1, 0)), Ok(SequenceCheck::New));
    }

    fn txn(pid: i64, epoch: i16, seq: i32, n: i32, offset: i64) -> BatchHeader {
        BatchHeader { attributes: 0x10, ..h(pid, epoch, seq, n, offset) }
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader { attributes: 0x30, base_sequence: -1, ..h(pid, epoch, -1, 1, offset) }
    }

    #[test]
    fn transactions_hold_back_the_stable_offset_until_their_marker() {
        let mut s = ProducerState::default();
        s.record(&txn(1, 0, 0, 2, 10));
        s.record(&txn(2, 0, 0, 1, 12));
        s.record(&txn(1, 0, 2, 1, 13));
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.complete_txn(&marker(1, 0, 14), 0), Some(CompletedTxn { producer_id: 1, first_offset: 10 }));
        assert_eq!(s.first_unstable_offset(), Some(12));
        assert_eq!(s.complete_txn(&marker(2, 1, 15), 0).map(|c| c.first_offset), Some(12));
        assert_eq!(s.first_unstable_offset(), None);
        // the bumped epoch of the marker fences the producer's old epoch
        assert!(s.check_marker(2, 0).is_err());
        assert!(matches!(s.check(&txn(2, 0, 1, 1, 0)), Err(ProducerError::InvalidEpoch { .. })));
        // a marker without an open transaction completes nothing
        assert_eq!(s.complete_txn(&marker(1, 0, 16), 0), None);
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&h(7, 2, i * 3, 3, 100 + i64::from(i) * 3));
        }
        s.record(&txn(8, 0, i32::MAX - 1, 4, 200));
        s.complete_txn(&marker(9, 4, 300), 5);
        let bytes = s.encode_snapshot();
        let back = ProducerState::decode_snapshot(&bytes).unwrap();
        assert_eq!(back.active(), s.active());
        assert_eq!(back.first_unstable_offset(), Some(200));
        assert_eq!(back.check(&h(7, 2, 12, 3, 0)), Ok(SequenceCheck::Duplicate { base_offset: 112, last_offset: 114 }));
        assert_eq!(back.check(&h(7, 2, 21, 1, 0)), Ok(SequenceCheck::New));
        assert_eq!(back.check(&txn(8, 0, 2, 1, 0)), Ok(SequenceCheck::New), "sequence wrapped past i32::MAX");
        assert_eq!(
            back.check(&txn(8, 0, i32::MAX - 1, 4, 0)),
            Ok(SequenceCheck::Duplicate { base_offset: 200, last_offset: 203 })
        );
        for cut in [0, 5, bytes.len() - 1] {
            assert!(ProducerState::decode_snapshot(&bytes[..cut]).is_none());
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(ProducerState::decode_snapshot(&flipped).is_none());
    }

    #[test]
    fn idle_producers_expire_but_open_transactions_stay() {
        let mut s = ProducerState::default();
        s.record(&BatchHeader { max_timestamp: 1_000, ..h(1, 0, 0, 1, 0) });
        s.record(&BatchHeader { max_timestamp: 1_000, ..txn(2, 0, 0, 1, 1) });
        assert_eq!(s.remove_expired(5_000, 10_000), 0);
        assert_eq!(s.remove_expired(20_000, 10_000), 1);
        assert_eq!(s.producer_count(), 1);
    }

    #[test]
    fn sequences_wrap_like_kafkas() {
        assert_eq!(seq_sub(0, 1), i32::MAX);
        assert_eq!(seq_sub(5, 2), 3);
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        s.record(&h(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&h(1, 0, 0, 1, 0)), Ok(SequenceCheck::New));
    }
}
