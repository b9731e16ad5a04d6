//! Idempotent-producer state of one partition: for every producer id, its epoch and the
//! sequence numbers and offsets of its last five batches. A retried batch is recognised and
//! answered with its original offsets instead of being appended again (Kafka's
//! `ProducerStateManager`). The state is rebuilt from the log's batch headers when it opens.

use std::collections::{HashMap, VecDeque};

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
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
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

/// `base + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
fn seq_add(base: i32, delta: i32) -> i32 {
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
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
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == first && b.last_seq == last) {
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
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: seq_add(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        entry.last_timestamp = h.max_timestamp;
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
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
}

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

    #[test]
    fn sequences_wrap_like_kafkas() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        s.record(&h(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&h(1, 0, 0, 1, 0)), Ok(SequenceCheck::New));
    }
}
