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
pub const TIMESTAMP_TYPE_BIT: i16 = 0x08;
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
    /// Records refused by per-record checks (a key on compacted topics, timestamps): the
    /// batch is refused whole and each bad record named by its index in the batch, as in
    /// Kafka's `RecordValidationException`: `INVALID_TIMESTAMP` when any timestamp failed,
    /// else `INVALID_RECORD`. The message is Kafka's.
    #[error("{}", records_message(*.invalid_timestamp, .errors))]
    Records { invalid_timestamp: bool, errors: Vec<RecordError> },
}

/// One record a per-record check refused: its index in its batch and why, in Kafka's words
/// (the Produce response's `record_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordError(batchIndex={}, message='{}')", self.batch_index, self.message)
    }
}

/// Kafka's summary of a batch's record errors (`LogValidator.processRecordErrors`).
fn records_message(invalid_timestamp: bool, errors: &[RecordError]) -> String {
    if invalid_timestamp {
        return "One or more records have been rejected due to invalid timestamp".into();
    }
    let shown: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first \
         three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    )
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

/// Stores the CRC of a batch whose CRC-covered fields the broker changed.
pub fn reseal(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
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

/// Limits and per-record rules a produced batch is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProduceLimits<'a> {
    pub max_message_bytes: usize,
    pub segment_bytes: usize,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub now_ms: i64,
    /// `cleanup.policy` includes compact: every record needs a key.
    pub compacted: bool,
    /// `<topic>-<partition>`, for Kafka's record-error messages.
    pub topic_partition: &'a str,
}

impl ProduceLimits<'_> {
    /// True when a CreateTime timestamp lies outside
    /// `message.timestamp.{before,after}.max.ms` around now.
    fn timestamp_out_of_range(&self, ts: i64) -> bool {
        let diff = self.now_ms.saturating_sub(ts);
        diff > self.timestamp_before_max_ms || diff.saturating_neg() > self.timestamp_after_max_ms
    }

    /// The CreateTime timestamps in range, `earliest..=latest`: a cheaper form of
    /// [`Self::timestamp_out_of_range`] for walking many records (a timestamp outside it is
    /// checked again by the exact rule).
    fn timestamp_bounds(&self) -> (i64, i64) {
        let earliest = self.now_ms.saturating_sub(self.timestamp_before_max_ms);
        let latest = self.now_ms.saturating_add(self.timestamp_after_max_ms);
        (earliest, latest)
    }

    /// Kafka's `LogValidator.validateRecord` for one record (magic 2): a key on compacted
    /// topics first, then the timestamp.
    fn check_record(&self, batch: &BatchHeader, index: i32, record: &RecordFields) -> Option<(bool, RecordError)> {
        let error = |timestamp, message| Some((timestamp, RecordError { batch_index: index, message }));
        if self.compacted && record.key_len < 0 {
            let tp = self.topic_partition;
            return error(false, format!("Compacted topic cannot accept message without key in topic partition {tp}"));
        }
        // A LogAppendTime batch gives every record its maxTimestamp.
        let ts = if batch.is_log_append_time() { batch.max_timestamp } else { record.timestamp };
        if !self.log_append_time && ts != NO_TIMESTAMP {
            if self.timestamp_out_of_range(ts) {
                // Java's long arithmetic, so the bounds read as Kafka prints them
                let (lo, hi) = (
                    self.now_ms.wrapping_sub(self.timestamp_before_max_ms),
                    self.now_ms.wrapping_add(self.timestamp_after_max_ms),
                );
                return error(
                    true,
                    format!(
                        "Timestamp {ts} of message with offset {} is out of range. The timestamp should be within \
                         [{lo}, {hi}]",
                        record.offset
                    ),
                );
            }
        } else if batch.is_log_append_time() {
            return error(
                true,
                format!(
                    "Invalid timestamp type in message {record}. Producer should not set timestamp type to \
                     LogAppendTime."
                ),
            );
        }
        None
    }
}

/// `RecordBatch.NO_TIMESTAMP`.
const NO_TIMESTAMP: i64 = -1;

/// What the per-record checks read of a record.
struct RecordFields {
    offset: i64,
    timestamp: i64,
    key_len: i64,
    value_len: i64,
}

impl std::fmt::Display for RecordFields {
    /// As Kafka's `DefaultRecord.toString`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |n: i64| if n < 0 { "null".to_string() } else { format!("{n} bytes") };
        write!(
            f,
            "DefaultRecord(offset={}, timestamp={}, key={}, value={})",
            self.offset,
            self.timestamp,
            size(self.key_len),
            size(self.value_len)
        )
    }
}

/// Collects per-record failures over one batch.
#[derive(Default)]
struct RecordFaults {
    invalid_timestamp: bool,
    errors: Vec<RecordError>,
}

impl RecordFaults {
    fn add(&mut self, fault: Option<(bool, RecordError)>) {
        if let Some((timestamp, e)) = fault {
            self.invalid_timestamp |= timestamp;
            self.errors.push(e);
        }
    }

    fn into_result(self) -> Result<(), BatchError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(BatchError::Records { invalid_timestamp: self.invalid_timestamp, errors: self.errors })
        }
    }
}

/// Validates a batch a producer sent. Uncompressed batches have every record's framing,
/// offset delta, key (compacted topics) and timestamp checked in one walk of the bytes;
/// compressed ones are decompressed only when a record-level rule could fail (a compacted
/// topic, or batch timestamps out of range) and otherwise stored as sent.
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
    let mut faults = RecordFaults::default();
    if h.compression() == 0 {
        check_uncompressed_records(&batch[HEADER_SIZE..], &h, limits, &mut faults)?;
    } else if needs_record_checks(&h, limits) {
        check_compressed_records(batch, &h, limits, &mut faults)?;
    }
    faults.into_result()?;
    Ok(h)
}

/// Whether a compressed batch must be opened: its header alone cannot clear it.
fn needs_record_checks(h: &BatchHeader, limits: &ProduceLimits) -> bool {
    let header_timestamps_bad = !limits.log_append_time
        && [h.base_timestamp, h.max_timestamp]
            .iter()
            .any(|&ts| ts != NO_TIMESTAMP && limits.timestamp_out_of_range(ts));
    limits.compacted || header_timestamps_bad || h.is_log_append_time()
}

/// Decompresses a batch (kafka-protocol's decoder) and runs the per-record checks.
fn check_compressed_records(
    batch: &[u8],
    h: &BatchHeader,
    limits: &ProduceLimits,
    faults: &mut RecordFaults,
) -> Result<(), BatchError> {
    let mut buf = bytes::Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Corrupt(format!("cannot decode records: {e}")))?;
    for (i, r) in set.records.iter().enumerate() {
        let fields = RecordFields {
            offset: r.offset,
            timestamp: r.timestamp,
            key_len: r.key.as_ref().map_or(-1, |k| k.len() as i64),
            value_len: r.value.as_ref().map_or(-1, |v| v.len() as i64),
        };
        faults.add(limits.check_record(h, i as i32, &fields));
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

/// Walks uncompressed records: each length must fit, offset deltas must be 0, 1, 2, …, and
/// each record passes the per-record rules (collected in `faults`, as Kafka reports them all).
/// The common case (a CreateTime batch on a topic that is not compacted) reads only the
/// framing, the timestamp and the offset delta of each record and compares the timestamp with
/// bounds computed once; a record's key and value lengths are read only when a rule needs them.
fn check_uncompressed_records(
    mut records: &[u8],
    h: &BatchHeader,
    limits: &ProduceLimits,
    faults: &mut RecordFaults,
) -> Result<(), BatchError> {
    let corrupt = |why: &str| BatchError::Corrupt(why.to_string());
    let every_field = limits.compacted || h.is_log_append_time();
    let check_time = !limits.log_append_time;
    let (earliest, latest) = limits.timestamp_bounds();
    for expected_delta in 0..i64::from(h.record_count) {
        let (len, used) = read_varint(records).ok_or_else(|| corrupt("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("negative record length"))?;
        let body = records.get(used..used + len).ok_or_else(|| corrupt("record overruns its batch"))?;
        // attributes (1 byte), timestampDelta, offsetDelta, keyLength (varints), key, valueLength
        let mut at = 1usize;
        let mut field = |what: &str| -> Result<i64, BatchError> {
            let (v, n) = body.get(at..).and_then(read_varint).ok_or_else(|| corrupt(what))?;
            at += n;
            Ok(v)
        };
        let timestamp_delta = field("bad timestamp")?;
        let delta = field("bad offset delta")?;
        if delta != expected_delta {
            return Err(BatchError::Invalid(format!(
                "record offset delta {delta} where {expected_delta} was expected"
            )));
        }
        let timestamp = h.base_timestamp.saturating_add(timestamp_delta);
        let late_or_early = check_time && timestamp != NO_TIMESTAMP && !(earliest..=latest).contains(&timestamp);
        if every_field || late_or_early {
            let key_len = field("bad key length")?;
            at += usize::try_from(key_len).unwrap_or(0);
            let value_len = body.get(at..).and_then(read_varint).map_or(-1, |(v, _)| v);
            let fields = RecordFields { offset: h.base_offset.saturating_add(delta), timestamp, key_len, value_len };
            faults.add(limits.check_record(h, delta as i32, &fields));
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

    fn limits() -> ProduceLimits<'static> {
        ProduceLimits {
            max_message_bytes: 1 << 20,
            segment_bytes: 1 << 30,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            now_ms: 1_000_000,
            compacted: false,
            topic_partition: "t-0",
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
    fn future_timestamps_are_refused_per_record() {
        let b = make_batch(2, 1_000_000 + 3_600_001);
        let Err(BatchError::Records { invalid_timestamp: true, errors }) = validate_produced(&b, &limits()) else {
            panic!("record errors expected");
        };
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].batch_index, 1);
        assert_eq!(
            errors[1].message,
            "Timestamp 4600001 of message with offset 1 is out of range. The timestamp should be within \
             [-9223372036853775807, 4600000]"
        );
    }

    #[test]
    fn keyless_records_on_compacted_topics_are_named() {
        let b = make_batch(3, 1_000_000);
        let compacted = ProduceLimits { compacted: true, ..limits() };
        let Err(e @ BatchError::Records { invalid_timestamp: false, .. }) = validate_produced(&b, &compacted) else {
            panic!("record errors expected");
        };
        let BatchError::Records { errors, .. } = &e else { unreachable!() };
        assert_eq!(errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(errors[0].message, "Compacted topic cannot accept message without key in topic partition t-0");
        assert!(e.to_string().starts_with(
            "One or more records have been rejected due to 3 record errors in total, and only showing the first \
             three errors at most: [RecordError(batchIndex=0, message='Compacted topic"
        ));
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
