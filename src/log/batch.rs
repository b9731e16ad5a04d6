//! A view of a magic-2 record batch header, and the whole-batch validation done on append.
//!
//! Layout (big-endian): baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//! crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records…
//! The CRC-32C covers everything from `attributes` to the end of the batch.

use thiserror::Error;

pub const BASE_OFFSET: usize = 0;
pub const LENGTH: usize = 8;
pub const LEADER_EPOCH: usize = 12;
pub const MAGIC: usize = 16;
pub const CRC: usize = 17;
pub const ATTRIBUTES: usize = 21;
pub const LAST_OFFSET_DELTA: usize = 23;
pub const BASE_TIMESTAMP: usize = 27;
pub const MAX_TIMESTAMP: usize = 35;
pub const PRODUCER_ID: usize = 43;
pub const PRODUCER_EPOCH: usize = 51;
pub const BASE_SEQUENCE: usize = 53;
pub const RECORD_COUNT: usize = 57;
/// Size of the fixed header; records follow.
pub const HEADER_SIZE: usize = 61;
/// `baseOffset` + `batchLength`: the part not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a batch was refused; the handler maps each to Kafka's error code.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Lengths or CRC do not hold together: `CORRUPT_MESSAGE`.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Well-formed but not acceptable: `INVALID_RECORD`.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// Larger than `max.message.bytes`: `MESSAGE_TOO_LARGE`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// Larger than a segment: `RECORD_BATCH_TOO_LARGE`.
    #[error("record batch of {size} bytes exceeds segment.bytes {max}")]
    LargerThanSegment { size: usize, max: usize },
    /// A CreateTime timestamp outside the allowed window: `INVALID_TIMESTAMP`.
    #[error("timestamp {0} is out of the accepted range")]
    Timestamp(i64),
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fixed header of one batch, read from at least [`HEADER_SIZE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// `batchLength`: bytes after the length field.
    pub length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header; `None` when fewer than [`HEADER_SIZE`] bytes are given.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_SIZE {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, BASE_OFFSET),
            length: be_i32(b, LENGTH),
            leader_epoch: be_i32(b, LEADER_EPOCH),
            magic: b[MAGIC] as i8,
            crc: u32::from_be_bytes([b[CRC], b[CRC + 1], b[CRC + 2], b[CRC + 3]]),
            attributes: be_i16(b, ATTRIBUTES),
            last_offset_delta: be_i32(b, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, BASE_TIMESTAMP),
            max_timestamp: be_i64(b, MAX_TIMESTAMP),
            producer_id: be_i64(b, PRODUCER_ID),
            producer_epoch: be_i16(b, PRODUCER_EPOCH),
            base_sequence: be_i32(b, BASE_SEQUENCE),
            record_count: be_i32(b, RECORD_COUNT),
        })
    }

    /// Total bytes of the batch on the wire / in the file.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        // saturating: headers read back from a damaged file may hold anything
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Reads only `baseOffset` and `batchLength`, which is all that walking a log needs.
pub fn offset_and_size(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(b, LENGTH);
    if len < 0 {
        return None;
    }
    Some((be_i64(b, BASE_OFFSET), LOG_OVERHEAD + len as usize))
}

/// The CRC-32C a batch should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Checks one batch's framing and checksum: what recovery checks on every batch it reads.
pub fn check_integrity(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch).ok_or_else(|| BatchError::Corrupt("batch shorter than its header".into()))?;
    if h.magic != 2 {
        return Err(BatchError::Invalid(format!("record batch magic {} is not supported; only magic 2", h.magic)));
    }
    if h.length < (HEADER_SIZE - LOG_OVERHEAD) as i32 || h.total_size() != batch.len() {
        return Err(BatchError::Corrupt(format!("batch length {} does not match {} bytes", h.length, batch.len())));
    }
    if compute_crc(batch) != h.crc {
        return Err(BatchError::Corrupt("CRC-32C mismatch".into()));
    }
    if h.last_offset_delta < 0 || h.record_count < 0 {
        return Err(BatchError::Corrupt("negative record count or offset delta".into()));
    }
    Ok(h)
}

/// Splits a produce request's `records` bytes into its batches, each whole.
pub fn split_batches(mut records: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let (_, size) = offset_and_size(records).ok_or_else(|| BatchError::Corrupt("truncated batch header".into()))?;
        if size < HEADER_SIZE || size > records.len() {
            return Err(BatchError::Corrupt(format!(
                "batch of {size} bytes does not fit the {} bytes sent",
                records.len()
            )));
        }
        out.push(&records[..size]);
        records = &records[size..];
    }
    Ok(out)
}

/// Limits a produced batch is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProduceLimits {
    pub max_message_bytes: usize,
    pub segment_bytes: usize,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub now_ms: i64,
}

/// Validates a batch a producer sent, as a whole. Uncompressed batches additionally have
/// their record framing and offset deltas checked; compressed ones are stored as sent.
pub fn validate_produced(batch: &[u8], limits: &ProduceLimits) -> Result<BatchHeader, BatchError> {
    if batch.len() > limits.max_message_bytes {
        return Err(BatchError::TooLarge { size: batch.len(), max: limits.max_message_bytes });
    }
    if batch.len() > limits.segment_bytes {
        return Err(BatchError::LargerThanSegment { size: batch.len(), max: limits.segment_bytes });
    }
    let h = check_integrity(batch)?;
    if h.is_control() {
        return Err(BatchError::Invalid("control batches may only be written by the broker".into()));
    }
    if h.record_count == 0 {
        return Err(BatchError::Invalid("record batch has no records".into()));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::Invalid(format!(
            "lastOffsetDelta {} does not match {} records",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.compression() > 4 {
        return Err(BatchError::Invalid(format!("unknown compression codec {}", h.compression())));
    }
    if h.compression() == 0 {
        check_uncompressed_records(&batch[HEADER_SIZE..], h.record_count)?;
    }
    if !limits.log_append_time && !h.is_log_append_time() {
        for ts in [h.base_timestamp, h.max_timestamp] {
            let too_old = limits.now_ms.saturating_sub(ts) > limits.timestamp_before_max_ms;
            let too_new = ts.saturating_sub(limits.now_ms) > limits.timestamp_after_max_ms;
            if ts >= 0 && (too_old || too_new) {
                return Err(BatchError::Timestamp(ts));
            }
        }
    }
    Ok(h)
}

/// Compacted topics need a key on every record: a keyless one is `INVALID_RECORD`. This is
/// the one per-record check on the append path, and only for compacted topics.
pub fn check_keys_present(batch: &[u8]) -> Result<(), BatchError> {
    let mut buf = bytes::Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Corrupt(format!("cannot decode records: {e}")))?;
    if set.records.iter().any(|r| r.key.is_none()) {
        return Err(BatchError::Invalid("Compacted topic cannot accept message without key.".into()));
    }
    Ok(())
}

/// Reads a zig-zag varint; returns the value and the bytes it used.
pub fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((v, i + 1));
        }
    }
    None
}

/// Walks uncompressed records: each length must fit, and offset deltas must be 0, 1, 2, …
fn check_uncompressed_records(mut records: &[u8], count: i32) -> Result<(), BatchError> {
    let corrupt = |why: &str| BatchError::Corrupt(why.to_string());
    for expected_delta in 0..i64::from(count) {
        let (len, used) = read_varint(records).ok_or_else(|| corrupt("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("negative record length"))?;
        let body = records.get(used..used + len).ok_or_else(|| corrupt("record overruns its batch"))?;
        // attributes (1 byte), timestampDelta (varint), offsetDelta (varint)
        let after_attrs = body.get(1..).ok_or_else(|| corrupt("empty record"))?;
        let (_, ts_used) = read_varint(after_attrs).ok_or_else(|| corrupt("bad timestamp"))?;
        let (delta, _) = after_attrs.get(ts_used..).and_then(read_varint).ok_or_else(|| corrupt("bad offset delta"))?;
        if delta != expected_delta {
            return Err(BatchError::Invalid(format!(
                "record offset delta {delta} where {expected_delta} was expected"
            )));
        }
        records = &records[used + len..];
    }
    if !records.is_empty() {
        return Err(corrupt("bytes after the last record"));
    }
    Ok(())
}

/// Rewrites the fields the broker owns before the batch is appended: `baseOffset` and
/// `partitionLeaderEpoch` (outside the CRC), and for `LogAppendTime` topics the timestamp type
/// and `maxTimestamp`, which are inside the CRC and so force a recompute.
pub fn assign(batch: &mut [u8], base_offset: i64, leader_epoch: i32, append_time: Option<i64>) {
    let (head, body) = batch.split_at_mut(HEADER_SIZE);
    if let Ok(head) = <&mut [u8; HEADER_SIZE]>::try_from(head) {
        assign_header(head, body, base_offset, leader_epoch, append_time);
    }
}

/// [`assign`] on a copy of the header, so the batch itself (`body`: everything after the
/// header) can be written from the request's buffer without copying it.
pub fn assign_header(
    head: &mut [u8; HEADER_SIZE],
    body: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    append_time: Option<i64>,
) {
    head[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    head[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = append_time {
        let attrs = be_i16(head, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
        head[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
        head[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES..]), body);
        head[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The two end-of-transaction control records (Kafka's `ControlRecordType` ABORT = 0,
/// COMMIT = 1). Other control types (KRaft's) never appear in a partition log here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// Reads the control type from a control batch's first record key (`version i16, type i16`).
/// Control batches are never compressed, so the key sits right after the record's prefix.
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let mut at = HEADER_SIZE;
    let field = |at: &mut usize| -> Option<i64> {
        let (v, n) = read_varint(batch.get(*at..)?)?;
        *at += n;
        Some(v)
    };
    field(&mut at)?; // record length
    at += 1; // attributes
    field(&mut at)?; // timestamp delta
    field(&mut at)?; // offset delta
    let len = usize::try_from(field(&mut at)?).ok()?;
    control_type_from_key(batch.get(at..at + len)?)
}

/// Reads a control record key: `version i16, type i16`.
pub fn control_type_from_key(key: &[u8]) -> Option<ControlType> {
    match key.get(2..4)? {
        [0, 0] => Some(ControlType::Abort),
        [0, 1] => Some(ControlType::Commit),
        _ => None,
    }
}

/// Builds the end-transaction marker the broker writes to each partition of a transaction:
/// a control batch of one record, key `(0, type)`, value `(0, coordinatorEpoch)`.
pub fn end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<bytes::BytesMut, BatchError> {
    use bytes::BufMut;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let mut key = bytes::BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if control == ControlType::Commit { 1 } else { 0 });
    let mut value = bytes::BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        delete_horizon: false,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut out = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, std::iter::once(&record), &options)
        .map_err(|e| BatchError::Invalid(format!("cannot encode a transaction marker: {e}")))?;
    Ok(out)
}

/// Builds an uncompressed batch of `n` small records (values `v0`, `v1`, …) stamped `ts`:
/// for tests and tools that need a valid batch without a client library.
pub fn sample_batch(n: i32) -> Vec<u8> {
    make_batch(n, 0)
}

fn varint(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Builds an uncompressed batch of `n` records with values `v0`, `v1`, …
pub(crate) fn make_batch(n: i32, ts: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..n {
        let mut body = vec![0u8];
        varint(0, &mut body); // timestamp delta
        varint(i64::from(i), &mut body); // offset delta
        varint(-1, &mut body); // null key
        let value = format!("v{i}");
        varint(value.len() as i64, &mut body);
        body.extend_from_slice(value.as_bytes());
        varint(0, &mut body); // headers
        varint(body.len() as i64, &mut records);
        records.extend_from_slice(&body);
    }
    let mut b = vec![0u8; HEADER_SIZE];
    b[LENGTH..LENGTH + 4].copy_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b[MAGIC] = 2;
    b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(n - 1).to_be_bytes());
    b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
    b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
    b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = compute_crc(&b);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::make_batch;
    use super::*;

    fn limits() -> ProduceLimits {
        ProduceLimits {
            max_message_bytes: 1 << 20,
            segment_bytes: 1 << 30,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            now_ms: 1_000_000,
        }
    }

    #[test]
    fn transaction_markers_round_trip() {
        for t in [ControlType::Abort, ControlType::Commit] {
            let m = end_txn_marker(42, 3, t, 0, 1_000).unwrap();
            let h = check_integrity(&m).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (42, 3, 1));
            assert_eq!(control_type(&m), Some(t));
        }
        assert_eq!(control_type(&make_batch(1, 0)), None);
    }

    #[test]
    fn a_good_batch_validates() {
        let b = make_batch(3, 1_000_000);
        let h = validate_produced(&b, &limits()).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.total_size(), b.len());
    }

    #[test]
    fn a_flipped_bit_is_corrupt() {
        let mut b = make_batch(3, 1_000_000);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate_produced(&b, &limits()), Err(BatchError::Corrupt(_))));
    }

    #[test]
    fn wrong_magic_and_sizes_are_refused() {
        let mut b = make_batch(1, 1_000_000);
        b[MAGIC] = 1;
        assert!(matches!(validate_produced(&b, &limits()), Err(BatchError::Invalid(_))));
        let b = make_batch(50, 1_000_000);
        let small = ProduceLimits { max_message_bytes: 100, ..limits() };
        assert!(matches!(validate_produced(&b, &small), Err(BatchError::TooLarge { .. })));
        assert!(split_batches(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn future_timestamps_are_refused() {
        let b = make_batch(1, 1_000_000 + 3_600_001);
        assert_eq!(validate_produced(&b, &limits()), Err(BatchError::Timestamp(4_600_001)));
    }

    #[test]
    fn assign_with_log_append_time_keeps_the_crc_valid() {
        let mut b = make_batch(2, 5);
        assign(&mut b, 42, 7, Some(99));
        let h = check_integrity(&b).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch, h.max_timestamp), (42, 7, 99));
        assert!(h.is_log_append_time());
    }
}
