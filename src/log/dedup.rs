//! Duplicate detection by message id (Weir's, beyond Kafka; NATS JetStream's `Nats-Msg-Id`,
//! Azure Service Bus's duplicate detection, SQS FIFO's deduplication id). A topic with
//! `weir.dedup.window.ms` > 0 remembers, per partition, the id of every record appended in
//! that window — a header's value (`weir.dedup.id=header:<name>`, default
//! `header:message-id`) or the key (`key`) — and drops a record whose id it remembers before
//! it is written. Records without an id are appended as usual.
//!
//! **What is written.** A batch keeps every offset it would have had: each record's offset is
//! the batch's base offset plus its index in the batch the producer sent, whether kept or
//! dropped, so a client's `base_offset + index` is right for every record kept and a dropped
//! record's offset holds nothing (a gap, as after compaction). Duplicates inside the batch
//! are holes in the rewritten batch, which keeps the producer's codec, producer id and epoch
//! and ends at the sequence number of its last record; leading duplicates become a batch
//! with no records before it (what Kafka's compaction leaves of an emptied batch), so that
//! batches still follow each other offset by offset and sequence by sequence. A batch whose
//! records are all duplicates writes nothing — except for an idempotent producer, whose
//! sequence must advance: then one batch with no records spans its offsets.
//!
//! **Remembering.** Ids are kept in memory with the offset and time they were appended; the
//! oldest are forgotten first once the window has passed or `weir.dedup.max.ids` are kept.
//! Ids of a transaction are forgotten again if it aborts. The index is saved to
//! `<offset>.dedup` when a segment rolls and at clean shutdown (as producer snapshots are);
//! opening a log loads the newest one at or below the log end and reads the ids of the
//! batches after it from the log. Without one, the window is read back from the log (the
//! records' timestamps standing for their append times).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use super::batch::{self, read_varint, BatchError, BatchHeader};
use super::LogError;

/// Where a record's id is: `weir.dedup.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// The value of the first header with this name.
    Header(String),
    /// The record's key.
    Key,
}

impl std::fmt::Display for IdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdSource::Header(name) => write!(f, "header:{name}"),
            IdSource::Key => f.write_str("key"),
        }
    }
}

impl IdSource {
    /// `key` or `header:<name>`.
    pub fn parse(s: &str) -> Option<IdSource> {
        match s.strip_prefix("header:") {
            Some(name) if !name.is_empty() => Some(IdSource::Header(name.to_string())),
            Some(_) => None,
            None => (s == "key").then_some(IdSource::Key),
        }
    }
}

/// A topic's deduplication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupConfig {
    /// `weir.dedup.window.ms`: how long an id is remembered.
    pub window_ms: i64,
    pub id: IdSource,
    /// `weir.dedup.max.ids`: ids kept per partition at most.
    pub max_ids: usize,
}

/// Why a batch's records could not be looked into.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the records of a batch for deduplication: {0}")]
pub struct DedupError(pub String);

/// A record's offset delta in its batch and its id (`None`: it has none).
pub type RecordId = (i64, Option<Vec<u8>>);

/// The id of each record of `batch` (one whole batch) in record order. Uncompressed records
/// are walked in place; compressed ones are decoded.
pub fn record_ids(batch: &[u8], source: &IdSource) -> Result<Vec<RecordId>, DedupError> {
    let h = BatchHeader::parse(batch).ok_or_else(|| DedupError("short batch".into()))?;
    if h.compression() == 0 {
        return walk_ids(&batch[batch::HEADER_SIZE..], h.record_count, source)
            .ok_or_else(|| DedupError("malformed record".into()));
    }
    Ok(decode(batch)?.iter().map(|r| (r.offset - h.base_offset, id_of(r, source))).collect())
}

fn decode(batch: &[u8]) -> Result<Vec<Record>, DedupError> {
    let mut buf = Bytes::copy_from_slice(batch);
    RecordBatchDecoder::decode(&mut buf).map(|set| set.records).map_err(|e| DedupError(e.to_string()))
}

/// A decoded record's id.
fn id_of(r: &Record, source: &IdSource) -> Option<Vec<u8>> {
    match source {
        IdSource::Key => r.key.as_ref().map(|k| k.to_vec()),
        IdSource::Header(name) => {
            r.headers.get(&StrBytes::from_string(name.clone())).and_then(|v| v.as_ref()).map(|v| v.to_vec())
        }
    }
}

/// Walks `count` uncompressed records (Kafka's record layout: length, attributes,
/// timestampDelta, offsetDelta, key, value, headers) picking each one's id.
fn walk_ids(mut records: &[u8], count: i32, source: &IdSource) -> Option<Vec<RecordId>> {
    let mut ids = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let (len, used) = read_varint(records)?;
        let body = records.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
        records = &records[used + body.len()..];
        let mut at = 1usize; // attributes
        let varint = |at: &mut usize| -> Option<i64> {
            let (v, n) = read_varint(body.get(*at..)?)?;
            *at += n;
            Some(v)
        };
        varint(&mut at)?; // timestampDelta
        let delta = varint(&mut at)?;
        let bytes = |at: &mut usize, len: i64| -> Option<Option<&[u8]>> {
            if len < 0 {
                return Some(None);
            }
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            let b = body.get(*at..end)?;
            *at = end;
            Some(Some(b))
        };
        let key_len = varint(&mut at)?;
        let key = bytes(&mut at, key_len)?;
        if *source == IdSource::Key {
            ids.push((delta, key.map(<[u8]>::to_vec)));
            continue;
        }
        let value_len = varint(&mut at)?;
        bytes(&mut at, value_len)?;
        let headers = varint(&mut at)?;
        let mut id = None;
        for _ in 0..headers {
            let name_len = varint(&mut at)?;
            let name = bytes(&mut at, name_len)?.unwrap_or_default();
            let value_len = varint(&mut at)?;
            let value = bytes(&mut at, value_len)?;
            if id.is_none() && matches!(source, IdSource::Header(n) if n.as_bytes() == name) {
                id = value.map(<[u8]>::to_vec);
            }
        }
        ids.push((delta, id));
    }
    Some(ids)
}

/// What deduplication makes of one batch.
#[derive(Debug)]
pub enum Filtered {
    /// Nothing to drop: the batch is written as sent.
    Unchanged,
    /// Some records dropped: write `leading` (a batch without records standing for leading
    /// duplicates, if any) and `batch` instead; `keep` says which records of the sent batch
    /// `batch` holds.
    Rewritten { leading: Option<BytesMut>, batch: BytesMut, keep: Vec<bool> },
    /// Every record is a duplicate; the first is a copy of the record at `original`.
    /// `placeholder`: for an idempotent producer, a batch with no records that keeps its
    /// sequence numbers, to be written instead.
    AllDuplicates { original: i64, placeholder: Option<BytesMut> },
}

/// Version of the `<offset>.dedup` layout.
const SNAPSHOT_VERSION: u16 = 1;
/// File extension of duplicate-detection snapshots.
pub(super) const SNAPSHOT_EXTENSION: &str = "dedup";

/// An id appended in an open transaction, and where.
type OpenId = (Arc<[u8]>, i64);

/// One remembered id.
#[derive(Debug, Clone, Copy)]
struct Seen {
    offset: i64,
    at_ms: i64,
}

/// The ids one partition remembers.
#[derive(Debug)]
pub struct DedupIndex {
    config: DedupConfig,
    ids: HashMap<Arc<[u8]>, Seen>,
    /// The same ids in the order they were remembered: the oldest are forgotten first.
    order: VecDeque<(Arc<[u8]>, Seen)>,
    /// Ids appended by each producer's open transaction (forgotten if it aborts), with the
    /// offset each was remembered at.
    open: HashMap<i64, Vec<OpenId>>,
    /// Records dropped as duplicates since the partition was opened (metrics).
    pub dropped: u64,
}

impl DedupIndex {
    pub fn new(config: DedupConfig) -> DedupIndex {
        DedupIndex { config, ids: HashMap::new(), order: VecDeque::new(), open: HashMap::new(), dropped: 0 }
    }

    pub fn config(&self) -> &DedupConfig {
        &self.config
    }

    /// Takes new settings; ids remembered so far stay, within the new bounds.
    pub fn set_config(&mut self, config: DedupConfig, now_ms: i64) {
        self.config = config;
        self.forget_old(now_ms);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Decides what to write for `batch` (one whole, validated batch) given the ids
    /// remembered and those of its own earlier records. `ids` are the batch's
    /// [`record_ids`]; the kept ones are passed to [`Self::remember`] once written.
    pub fn filter(&mut self, batch: &[u8], ids: &[RecordId], now_ms: i64) -> Result<Filtered, DedupError> {
        self.forget_old(now_ms);
        let mut in_batch: HashMap<&[u8], usize> = HashMap::new();
        // for each record: None to keep it, Some(original offset or -1: an earlier record
        // of this batch) to drop it
        let mut verdicts: Vec<Option<i64>> = Vec::with_capacity(ids.len());
        for (i, (_, id)) in ids.iter().enumerate() {
            let verdict = id.as_deref().and_then(|id| match self.ids.get(id) {
                Some(seen) => Some(seen.offset),
                None => in_batch.insert(id, i).map(|_| -1),
            });
            verdicts.push(verdict);
        }
        let dropped = verdicts.iter().filter(|v| v.is_some()).count();
        if dropped == 0 {
            return Ok(Filtered::Unchanged);
        }
        self.dropped += dropped as u64;
        let h = BatchHeader::parse(batch).ok_or_else(|| DedupError("short batch".into()))?;
        if dropped == verdicts.len() {
            let original = verdicts.iter().flatten().copied().find(|o| *o >= 0).unwrap_or(-1);
            let placeholder =
                (h.producer_id >= 0 && h.base_sequence >= 0).then(|| empty_batch(batch, h.last_offset_delta));
            return Ok(Filtered::AllDuplicates { original, placeholder });
        }
        let keep: Vec<bool> = verdicts.iter().map(Option::is_none).collect();
        let leading = keep.iter().take_while(|k| !**k).count() as i32;
        let leading = (leading > 0).then(|| empty_batch(batch, leading - 1));
        Ok(Filtered::Rewritten { leading, batch: without(batch, &h, &keep)?, keep })
    }

    /// Remembers the ids of records written at `base_offset` plus their offset deltas.
    /// `producer_id` is given for a transactional batch.
    pub fn remember<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a RecordId>,
        base_offset: i64,
        at_ms: i64,
        producer_id: Option<i64>,
    ) {
        for (delta, id) in ids {
            let Some(id) = id else { continue };
            let id: Arc<[u8]> = Arc::from(id.as_slice());
            let seen = Seen { offset: base_offset + delta, at_ms };
            self.ids.insert(id.clone(), seen);
            self.order.push_back((id.clone(), seen));
            if let Some(pid) = producer_id {
                self.open.entry(pid).or_default().push((id, seen.offset));
            }
        }
        self.forget_old(at_ms);
    }

    /// A producer's transaction ended here: an abort forgets the ids it appended, so that a
    /// record resent after it is written.
    pub fn end_transaction(&mut self, producer_id: i64, committed: bool) {
        let Some(ids) = self.open.remove(&producer_id) else { return };
        if committed {
            return;
        }
        for (id, offset) in ids {
            if self.ids.get(&id).is_some_and(|s| s.offset == offset) {
                self.ids.remove(&id);
            }
        }
    }

    /// The index as `<offset>.dedup` holds it: version u16, CRC-32C u32 of the rest, the id
    /// setting (u16 length, text), then each id oldest first: offset i64, time i64, the
    /// producer of its open transaction i64 (-1: none), the id (u32 length, bytes). Big-endian.
    fn encode_snapshot(&self) -> Vec<u8> {
        let open: HashMap<i64, i64> =
            self.open.iter().flat_map(|(pid, ids)| ids.iter().map(move |(_, offset)| (*offset, *pid))).collect();
        let mut body = Vec::with_capacity(16 + self.ids.len() * 40);
        let setting = self.config.id.to_string();
        body.extend_from_slice(&(setting.len().min(u16::MAX as usize) as u16).to_be_bytes());
        body.extend_from_slice(&setting.as_bytes()[..setting.len().min(u16::MAX as usize)]);
        for (id, seen) in &self.order {
            if self.ids.get(id).is_none_or(|s| s.offset != seen.offset) {
                continue;
            }
            body.extend_from_slice(&seen.offset.to_be_bytes());
            body.extend_from_slice(&seen.at_ms.to_be_bytes());
            body.extend_from_slice(&open.get(&seen.offset).copied().unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&(id.len() as u32).to_be_bytes());
            body.extend_from_slice(id);
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// An index from a snapshot taken with the same id setting; `None` when it is damaged,
    /// of another version, or for another setting.
    pub fn decode_snapshot(config: DedupConfig, bytes: &[u8]) -> Option<DedupIndex> {
        let version = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
        let crc = u32::from_be_bytes(bytes.get(2..6)?.try_into().ok()?);
        let body = bytes.get(6..)?;
        if version != SNAPSHOT_VERSION || crc32c::crc32c(body) != crc {
            return None;
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let b = body.get(at..at.checked_add(n)?)?;
            at += n;
            Some(b)
        };
        let setting_len = u16::from_be_bytes(take(2)?.try_into().ok()?) as usize;
        if take(setting_len)? != config.id.to_string().as_bytes() {
            return None;
        }
        let mut index = DedupIndex::new(config);
        let i64_at = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
        while let Some(head) = take(28) {
            let (offset, at_ms, pid) = (i64_at(&head[..8])?, i64_at(&head[8..16])?, i64_at(&head[16..24])?);
            let len = u32::from_be_bytes(head[24..28].try_into().ok()?) as usize;
            let id: Arc<[u8]> = Arc::from(take(len)?);
            let seen = Seen { offset, at_ms };
            index.ids.insert(id.clone(), seen);
            index.order.push_back((id.clone(), seen));
            if pid >= 0 {
                index.open.entry(pid).or_default().push((id, offset));
            }
        }
        (at == body.len()).then_some(index)
    }

    /// Forgets ids older than the window, then the oldest beyond `max_ids`.
    fn forget_old(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.config.window_ms);
        while let Some((id, seen)) = self.order.front() {
            let expired = seen.at_ms < cutoff;
            let stale = self.ids.get(id).is_none_or(|s| s.offset != seen.offset);
            if !(expired || stale || self.ids.len() > self.config.max_ids) {
                break;
            }
            if !stale {
                self.ids.remove(id);
            }
            self.order.pop_front();
        }
    }
}

/// `batch` with only the records `keep` says, re-encoded with its codec by kafka-protocol:
/// the kept records keep their offsets (the batch now starts at the first of them) and
/// sequence numbers, and the header still ends at the sent batch's last offset and sequence.
fn without(batch: &[u8], h: &BatchHeader, keep: &[bool]) -> Result<BytesMut, DedupError> {
    let records = decode(batch)?;
    let kept: Vec<&Record> = records.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r).collect();
    let Some(first) = kept.first() else { return Err(DedupError("nothing kept".into())) };
    let compression = match h.compression() {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let mut out = BytesMut::with_capacity(batch.len());
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut out, kept.iter().copied(), &options).map_err(|e| DedupError(e.to_string()))?;
    // the header parts the encoder cannot know: where the sent batch ended, its time type
    let last_offset_delta = i32::try_from(h.last_offset() - first.offset).map_err(|e| DedupError(e.to_string()))?;
    out[batch::LAST_OFFSET_DELTA..batch::LAST_OFFSET_DELTA + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
    let attributes = i16::from_be_bytes([out[batch::ATTRIBUTES], out[batch::ATTRIBUTES + 1]])
        | (h.attributes & batch::TIMESTAMP_TYPE_BIT);
    out[batch::ATTRIBUTES..batch::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    if h.base_sequence < 0 {
        // a batch without sequence numbers stays without
        out[batch::BASE_SEQUENCE..batch::BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    }
    batch::reseal(&mut out);
    Ok(out)
}

/// The sent batch's header alone, with no records and ending `last_offset_delta` after its
/// first offset: keeps those offsets and sequence numbers taken.
fn empty_batch(batch: &[u8], last_offset_delta: i32) -> BytesMut {
    let mut out = BytesMut::from(&batch[..batch::HEADER_SIZE]);
    let length = (batch::HEADER_SIZE - batch::LOG_OVERHEAD) as i32;
    out[batch::LENGTH..batch::LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[batch::RECORD_COUNT..batch::RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
    out[batch::LAST_OFFSET_DELTA..batch::LAST_OFFSET_DELTA + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
    // no records, nothing compressed
    let attributes = i16::from_be_bytes([out[batch::ATTRIBUTES], out[batch::ATTRIBUTES + 1]]) & !0x07;
    out[batch::ATTRIBUTES..batch::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch::reseal(&mut out);
    out
}

/// What [`super::Log::append`] writes for one batch a producer sent.
pub(super) enum Deduplicated<'a> {
    /// `batches`, one after the other from the log end; `ids` to remember (offset deltas from
    /// where the first begins), when the topic detects duplicates; `answer`: the offset to
    /// answer with instead of the first written batch's.
    Write { batches: Vec<Cow<'a, [u8]>>, ids: Option<Vec<RecordId>>, answer: Option<i64> },
    /// Nothing: every record was a copy of one already written, the first at `original`.
    Nothing { original: i64 },
}

impl super::Log {
    /// Drops the records of `bytes` (one sent batch) whose ids were appended within the
    /// window, or earlier in the same batch.
    pub(super) fn without_duplicates<'a>(
        &mut self,
        bytes: &'a [u8],
        now_ms: i64,
    ) -> Result<Deduplicated<'a>, LogError> {
        let Some(index) = self.dedup.as_mut() else {
            return Ok(Deduplicated::Write { batches: vec![Cow::Borrowed(bytes)], ids: None, answer: None });
        };
        let corrupt = |e: DedupError| LogError::Batch(BatchError::Corrupt(e.0));
        let ids = record_ids(bytes, &index.config().id).map_err(corrupt)?;
        Ok(match index.filter(bytes, &ids, now_ms).map_err(corrupt)? {
            Filtered::Unchanged => {
                Deduplicated::Write { batches: vec![Cow::Borrowed(bytes)], ids: Some(ids), answer: None }
            }
            Filtered::Rewritten { leading, batch, keep } => {
                let kept = ids.into_iter().zip(keep).map(|((delta, id), k)| (delta, id.filter(|_| k))).collect();
                let batches = leading.into_iter().chain([batch]).map(|b| Cow::Owned(b.into())).collect();
                Deduplicated::Write { batches, ids: Some(kept), answer: None }
            }
            Filtered::AllDuplicates { original, placeholder: Some(empty) } => {
                Deduplicated::Write { batches: vec![Cow::Owned(empty.into())], ids: None, answer: Some(original) }
            }
            Filtered::AllDuplicates { original, placeholder: None } => Deduplicated::Nothing { original },
        })
    }

    /// Duplicate detection's view of this log: ids remembered and records dropped, when on.
    pub fn dedup_stats(&self) -> Option<(usize, u64)> {
        self.dedup.as_ref().map(|d| (d.len(), d.dropped))
    }

    /// Takes the topic's `weir.dedup.*` settings: starts remembering (from the log's last
    /// window), adjusts the bounds, or stops.
    pub(super) fn configure_dedup(&mut self, now_ms: i64) -> std::io::Result<()> {
        match (self.config.dedup.clone(), self.dedup.as_mut()) {
            (None, _) => self.dedup = None,
            (Some(config), Some(index)) if index.config().id == config.id => index.set_config(config, now_ms),
            (Some(_), _) => self.rebuild_dedup(now_ms)?,
        }
        Ok(())
    }

    /// Reads the ids of the records appended within the window back from the log (after a
    /// restart, a truncation, or a new id setting): committed and open transactions' records
    /// count, aborted ones do not. Record timestamps stand for append times.
    pub(super) fn rebuild_dedup(&mut self, now_ms: i64) -> std::io::Result<()> {
        let Some(config) = self.config.dedup.clone() else {
            self.dedup = None;
            return Ok(());
        };
        let end = self.log_end_offset();
        let (mut index, from) = match self.load_dedup_snapshot(&config, end) {
            Some((index, offset)) => (index, offset.max(self.log_start_offset)),
            None => {
                let from = match self.offset_for_timestamp(now_ms.saturating_sub(config.window_ms)) {
                    Ok(Some(found)) => found.offset.max(self.log_start_offset),
                    _ => end,
                };
                (DedupIndex::new(config.clone()), from)
            }
        };
        index.dropped = self.dedup.as_ref().map_or(0, |d| d.dropped);
        index.forget_old(now_ms);
        let aborted = self.aborted_transactions(from, end);
        let mut offset = from;
        while offset < end {
            let read = self.read(offset, 1 << 20, end, true).map_err(std::io::Error::other)?;
            let Some(bytes) = read.bytes()? else { break };
            let mut rest = &bytes[..];
            let mut next = offset;
            while let Some(h) = BatchHeader::parse(rest).filter(|h| h.total_size() <= rest.len()) {
                let (one, tail) = rest.split_at(h.total_size());
                rest = tail;
                next = h.last_offset().saturating_add(1);
                let was_aborted = h.is_transactional()
                    && aborted.iter().any(|a| {
                        a.producer_id == h.producer_id
                            && a.first_offset <= h.base_offset
                            && h.base_offset <= a.last_offset
                    });
                if h.is_control() || was_aborted || h.record_count == 0 {
                    continue;
                }
                let Ok(ids) = record_ids(one, &config.id) else { continue };
                let open = self
                    .producers
                    .open_transaction_start(h.producer_id)
                    .filter(|start| h.is_transactional() && h.base_offset >= *start)
                    .map(|_| h.producer_id);
                let at = if h.max_timestamp >= 0 { h.max_timestamp } else { now_ms };
                index.remember(&ids, h.base_offset, at, open);
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        self.dedup = Some(index);
        Ok(())
    }

    /// The newest `<offset>.dedup` at or below `end` taken with `config`'s id setting, and its
    /// offset.
    fn load_dedup_snapshot(&self, config: &DedupConfig, end: i64) -> Option<(DedupIndex, i64)> {
        let offsets = super::snapshot_offsets_with(&self.dir, SNAPSHOT_EXTENSION);
        offsets.into_iter().rev().filter(|o| *o <= end).find_map(|o| {
            let path = self.dir.join(format!("{}.{SNAPSHOT_EXTENSION}", super::segment::file_stem(o)));
            let bytes = std::fs::read(path).ok()?;
            let index = DedupIndex::decode_snapshot(config.clone(), &bytes);
            if index.is_none() {
                tracing::info!(dir = %self.dir.display(), offset = o, "not using a duplicate-detection snapshot (damaged or another id setting)");
            }
            Some((index?, o))
        })
    }

    /// Saves the ids remembered to `<log end>.dedup` (at a roll and at clean shutdown), keeping
    /// the two newest such files.
    pub(super) fn write_dedup_snapshot(&self, sync: bool) -> std::io::Result<()> {
        let Some(index) = self.dedup.as_ref() else { return Ok(()) };
        let stem = super::segment::file_stem(self.log_end_offset());
        let path = self.dir.join(format!("{stem}.{SNAPSHOT_EXTENSION}"));
        let tmp = path.with_extension(format!("{SNAPSHOT_EXTENSION}.tmp"));
        std::fs::write(&tmp, index.encode_snapshot())?;
        if sync {
            std::fs::File::open(&tmp)?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let offsets = super::snapshot_offsets_with(&self.dir, SNAPSHOT_EXTENSION);
        for old in offsets.iter().rev().skip(super::SNAPSHOTS_KEPT) {
            let stem = super::segment::file_stem(*old);
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.{SNAPSHOT_EXTENSION}")));
        }
        Ok(())
    }

    /// Tracks a batch a follower appended as the leader wrote it: its ids, or the end of a
    /// transaction.
    pub(super) fn dedup_replicated(&mut self, bytes: &[u8], h: &BatchHeader, control: Option<batch::ControlType>) {
        let Some(index) = self.dedup.as_mut() else { return };
        if h.is_control() {
            index.end_transaction(h.producer_id, control == Some(batch::ControlType::Commit));
            return;
        }
        if let Ok(ids) = record_ids(bytes, &index.config().id) {
            let at = crate::broker::now_ms();
            index.remember(&ids, h.base_offset, at, h.is_transactional().then_some(h.producer_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::TimestampType;

    fn config() -> DedupConfig {
        DedupConfig { window_ms: 1000, id: IdSource::Header("message-id".into()), max_ids: 100 }
    }

    /// A batch as a producer sends it (base offset 0): `(key, message-id header)` per record.
    fn sent(records: &[(Option<&str>, Option<&str>)], compression: Compression, producer_id: i64) -> BytesMut {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, id))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                delete_horizon: false,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // (the decoder's view of a batch without sequences: -1 plus the offset delta)
                sequence: if producer_id >= 0 { 7 + i as i32 } else { i as i32 - 1 },
                timestamp: 1000 + i as i64,
                key: key.map(|k| Bytes::from(k.to_string())),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers: id
                    .iter()
                    .map(|id| (StrBytes::from_static_str("message-id"), Some(Bytes::from(id.to_string()))))
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
        buf
    }

    fn ids(b: &[u8]) -> Vec<RecordId> {
        record_ids(b, &config().id).unwrap()
    }

    fn id(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    fn only_ids(ids: Vec<RecordId>) -> Vec<Option<Vec<u8>>> {
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Ids at offset deltas 0, 1, 2…
    fn at(ids: &[Option<Vec<u8>>]) -> Vec<RecordId> {
        ids.iter().cloned().enumerate().map(|(i, id)| (i as i64, id)).collect()
    }

    #[test]
    fn ids_come_from_a_header_or_the_key_compressed_or_not() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let b = sent(&[(Some("k0"), Some("a")), (None, None), (Some("k2"), Some("c"))], compression, -1);
            assert_eq!(ids(&b), at(&[id("a"), None, id("c")]), "{compression:?}");
            assert_eq!(only_ids(record_ids(&b, &IdSource::Key).unwrap()), vec![id("k0"), None, id("k2")]);
        }
        assert_eq!(IdSource::parse("key"), Some(IdSource::Key));
        assert_eq!(IdSource::parse("header:x-id"), Some(IdSource::Header("x-id".into())));
        assert_eq!(IdSource::parse("header:"), None);
        assert_eq!(IdSource::parse("value"), None);
    }

    #[test]
    fn duplicates_are_cut_out_and_offsets_and_sequences_kept() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut index = DedupIndex::new(config());
            let first = sent(&[(None, Some("a")), (None, Some("b"))], Compression::None, -1);
            assert!(matches!(index.filter(&first, &ids(&first), 1000).unwrap(), Filtered::Unchanged));
            index.remember(&ids(&first), 50, 1000, None);
            // a, b again (from the log), c new, c again (earlier in this batch), d new, no id
            let b = sent(
                &[
                    (None, Some("a")),
                    (None, Some("c")),
                    (None, Some("b")),
                    (None, Some("c")),
                    (None, Some("d")),
                    (None, None),
                ],
                compression,
                9,
            );
            let Filtered::Rewritten { leading: Some(leading), batch, keep } = index.filter(&b, &ids(&b), 1001).unwrap()
            else {
                panic!()
            };
            let lead = batch::check_integrity(&leading).unwrap();
            assert_eq!((lead.base_offset, lead.last_offset(), lead.record_count), (0, 0, 0), "the leading duplicate");
            assert_eq!((lead.base_sequence, lead.compression()), (7, 0));
            assert_eq!(keep, vec![false, true, false, false, true, true]);
            // what is written: the kept records' ids, at their offsets
            assert_eq!(ids(&batch), vec![(0, id("c")), (3, id("d")), (4, None)]);
            let h = batch::check_integrity(&batch).unwrap();
            assert_eq!((h.base_offset, h.last_offset(), h.record_count), (1, 5, 3), "{compression:?}");
            assert_eq!((h.base_sequence, h.producer_id, h.compression()), (8, 9, compression as i16));
            let records = decode(&batch).unwrap();
            let kept: Vec<(i64, i32, Option<Bytes>)> =
                records.iter().map(|r| (r.offset, r.sequence, r.value.clone())).collect();
            assert_eq!(
                kept,
                vec![
                    (1, 8, Some(Bytes::from("value-1"))),
                    (4, 11, Some(Bytes::from("value-4"))),
                    (5, 12, Some(Bytes::from("value-5")))
                ]
            );
            assert_eq!(index.dropped, 3);
        }
    }

    #[test]
    fn a_batch_of_duplicates_writes_nothing_or_keeps_an_idempotent_sequence() {
        let mut index = DedupIndex::new(config());
        let first = sent(&[(None, Some("a")), (None, Some("b"))], Compression::None, -1);
        index.remember(&ids(&first), 50, 1000, None);
        let again = sent(&[(None, Some("b")), (None, Some("a"))], Compression::Lz4, -1);
        let Filtered::AllDuplicates { original, placeholder } = index.filter(&again, &ids(&again), 1001).unwrap()
        else {
            panic!()
        };
        assert_eq!((original, placeholder.is_none()), (51, true));
        let idempotent = sent(&[(None, Some("a")), (None, Some("b"))], Compression::Lz4, 9);
        let Filtered::AllDuplicates { original, placeholder: Some(empty) } =
            index.filter(&idempotent, &ids(&idempotent), 1001).unwrap()
        else {
            panic!()
        };
        assert_eq!(original, 50);
        let h = batch::check_integrity(&empty).unwrap();
        assert_eq!((h.record_count, h.last_offset_delta, h.base_sequence, h.compression()), (0, 1, 7, 0));
        assert_eq!(empty.len(), batch::HEADER_SIZE);
    }

    #[test]
    fn ids_are_forgotten_after_the_window_beyond_the_limit_and_when_a_transaction_aborts() {
        let mut index = DedupIndex::new(DedupConfig { max_ids: 3, ..config() });
        let b = sent(&[(None, Some("a"))], Compression::None, -1);
        index.remember(&at(&[id("a")]), 0, 1000, None);
        assert!(matches!(index.filter(&b, &ids(&b), 1999).unwrap(), Filtered::AllDuplicates { .. }));
        assert!(matches!(index.filter(&b, &ids(&b), 2001).unwrap(), Filtered::Unchanged), "past the window");
        assert!(index.is_empty());
        // the limit: the oldest go first; an id remembered again is not forgotten with its old entry
        index.remember(&at(&[id("a"), id("b"), id("c")]), 10, 3000, None);
        index.remember(&at(&[id("a")]), 20, 3000, None);
        index.remember(&at(&[id("d")]), 21, 3000, None);
        assert_eq!(index.len(), 3);
        assert!(index.ids.contains_key(b"a".as_slice()) && !index.ids.contains_key(b"b".as_slice()));
        // an aborted transaction's ids are forgotten, a committed one's kept
        index.remember(&at(&[id("t1")]), 30, 3000, Some(5));
        index.remember(&at(&[id("t2")]), 31, 3000, Some(6));
        index.end_transaction(5, false);
        index.end_transaction(6, true);
        assert!(!index.ids.contains_key(b"t1".as_slice()));
        assert!(index.ids.contains_key(b"t2".as_slice()));
    }

    #[test]
    fn snapshots_round_trip_and_belong_to_one_id_setting() {
        let mut index = DedupIndex::new(config());
        index.remember(&at(&[id("a"), id("b")]), 10, 5000, None);
        index.remember(&at(&[id("a")]), 20, 5001, None);
        index.remember(&at(&[id("t")]), 21, 5002, Some(9));
        let bytes = index.encode_snapshot();
        let mut back = DedupIndex::decode_snapshot(config(), &bytes).expect("decodes");
        assert_eq!(back.len(), 3);
        assert_eq!(back.ids.get(b"a".as_slice()).map(|s| (s.offset, s.at_ms)), Some((20, 5001)));
        back.end_transaction(9, false);
        assert!(!back.ids.contains_key(b"t".as_slice()), "the open transaction came back open");
        let by_key = DedupConfig { id: IdSource::Key, ..config() };
        assert!(DedupIndex::decode_snapshot(by_key, &bytes).is_none(), "another id setting");
        let mut damaged = bytes.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(DedupIndex::decode_snapshot(config(), &damaged).is_none());
        assert!(DedupIndex::decode_snapshot(config(), &bytes[..bytes.len() - 1]).is_none());
    }

    /// Records stamped in 1970 but appended now: a scan of the log over the window finds none
    /// of them, the snapshot written at close remembers them.
    #[test]
    fn a_reopened_log_remembers_ids_from_its_snapshot() {
        use crate::config::{BrokerConfig, LogConfig};
        let dir = tempfile::tempdir().unwrap();
        let overrides = [("weir.dedup.window.ms".to_string(), "3600000".to_string())].into();
        let config = LogConfig::resolve(&BrokerConfig::default(), &overrides);
        let now = crate::broker::now_ms();
        let open = || super::super::Log::open(dir.path(), config.clone(), true, now).unwrap().0;
        let mut log = open();
        log.append(&sent(&[(None, Some("a")), (None, Some("b"))], Compression::None, -1), now).unwrap();
        log.close().unwrap();
        let mut log = open();
        assert_eq!(log.dedup_stats().map(|s| s.0), Some(2), "read from the snapshot");
        let again = log.append(&sent(&[(None, Some("b"))], Compression::None, -1), now).unwrap();
        assert_eq!((again.base_offset, again.records), (1, 0), "b is a copy of offset 1");
        drop(log);
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == SNAPSHOT_EXTENSION) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        assert_eq!(open().dedup_stats().map(|s| s.0), Some(0), "the log alone: too old to remember");
    }
}
