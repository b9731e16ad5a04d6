//! A partition's log: an ordered set of segments with the offsets that matter to clients —
//! log start offset, log end offset and high watermark. The analogue of Kafka's `UnifiedLog`;
//! everything here is synchronous and called under the partition's lock.

pub mod batch;
pub mod cleaner;
pub mod dedup;
pub mod epochs;
pub mod faults;
pub mod index;
pub mod producer_state;
mod replica;
pub mod segment;
pub mod txn_index;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use thiserror::Error;

use crate::config::LogConfig;
use batch::{BatchError, BatchHeader, ControlType, ProduceLimits};
use producer_state::ProducerState;
use segment::{Recovered, Segment};
use txn_index::{AbortedTxn, TxnIndex};

/// File holding the log start offset when DeleteRecords or retention moved it past the first
/// segment's base offset.
const LOG_START_FILE: &str = "log-start-offset";

#[derive(Debug, Error)]
pub enum LogError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error("the log is offline after an earlier storage error")]
    Offline,
    #[error(transparent)]
    Producer(#[from] producer_state::ProducerError),
}

/// Where an append landed.
#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    pub records: i64,
}

/// Batches located for a fetch.
pub struct ReadResult {
    pub records: Option<segment::Slice>,
}

impl ReadResult {
    /// The batches' bytes, copied out of the file.
    pub fn bytes(&self) -> io::Result<Option<Bytes>> {
        self.records.as_ref().map(segment::Slice::to_bytes).transpose()
    }
}

/// A timestamp/offset pair, as ListOffsets answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

pub struct Log {
    dir: PathBuf,
    /// `<topic>-<partition>` (the directory's name): Kafka's `TopicPartition` as text.
    topic_partition: String,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    high_watermark: i64,
    leader_epoch: i32,
    /// Where each leader epoch began (`leader-epoch-checkpoint`).
    epochs: epochs::LeaderEpochCache,
    /// The partition has replicas on other brokers: appends leave the high watermark to
    /// the replicas' progress.
    replica_of_many: bool,
    unflushed_records: i64,
    /// Producers' recent batches (deduplicating retries) and open transactions.
    producers: ProducerState,
    /// Ids of records appended recently, when the topic detects duplicates by message id.
    dedup: Option<dedup::DedupIndex>,
    /// Aborted transactions, for `read_committed` fetches.
    aborted: TxnIndex,
    /// (segment base, size) of the last successful fsync of the active segment.
    synced: (i64, u64),
    /// (active segment base, size it was durable to) after an fsync failed.
    failed_sync: Option<(i64, u64)>,
    /// Offsets below this were compacted by the last clean (in memory: a restart re-cleans).
    cleaned_up_to: i64,
    /// When the oldest unflushed append happened, for `flush.ms`.
    first_unflushed_ms: Option<i64>,
    offline: bool,
    /// Bumped whenever the log end moves back (a follower cut a divergent tail): an fsync
    /// taken before it may have covered bytes that are no longer the log's.
    truncations: u64,
    /// Rolls whose new files' directory entries are not yet known durable: counted, and
    /// how many of them the last directory fsync covered.
    dir_changes: u64,
    dir_synced: u64,
}

/// What opening a log found.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenReport {
    pub segments: usize,
    pub recovered: Option<Recovered>,
}

impl Log {
    /// Opens the log in `dir`, creating it if needed. After an unclean shutdown the active
    /// segment is re-validated and truncated at the first bad batch.
    pub fn open(dir: &Path, config: LogConfig, clean_shutdown: bool, now_ms: i64) -> io::Result<(Log, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        cleaner::finish_interrupted_cleans(dir, &config, now_ms)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let mut report = OpenReport { segments: bases.len(), ..Default::default() };
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let (seg, rec) = Segment::open(
                dir,
                base,
                config.segment_index_bytes,
                config.index_interval_bytes,
                is_last && !clean_shutdown,
                now_ms,
            )?;
            if rec.is_some() {
                report.recovered = rec;
            }
            segments.insert(base, seg);
        }
        let stored_start = read_log_start(dir);
        if segments.is_empty() {
            let base = stored_start.unwrap_or(0);
            let (seg, _) =
                Segment::open(dir, base, config.segment_index_bytes, config.index_interval_bytes, false, now_ms)?;
            segments.insert(base, seg);
            sync_dir(dir)?;
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let mut log = Log {
            dir: dir.to_path_buf(),
            topic_partition: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            config,
            segments,
            log_start_offset: first_base.max(stored_start.unwrap_or(first_base)),
            high_watermark: 0,
            leader_epoch: 0,
            epochs: epochs::LeaderEpochCache::load(dir),
            replica_of_many: false,
            unflushed_records: 0,
            producers: Default::default(),
            dedup: None,
            aborted: Default::default(),
            synced: (-1, 0),
            failed_sync: None,
            cleaned_up_to: 0,
            first_unflushed_ms: None,
            offline: false,
            truncations: 0,
            dir_changes: 0,
            dir_synced: 0,
        };
        log.log_start_offset = log.log_start_offset.min(log.log_end_offset());
        log.high_watermark = log.log_end_offset();
        // what is in the files now was fsynced at clean shutdown or re-checked by recovery
        log.synced = (log.active().base_offset(), log.active().size());
        log.rebuild_producer_state()?;
        log.configure_dedup(now_ms)?;
        Ok((log, report))
    }

    /// Loads the newest usable producer snapshot and replays the batch headers after it, so
    /// that retries arriving after a restart are still recognised and open transactions still
    /// hold back the last stable offset. Aborts found by the replay rebuild the txn indexes.
    fn rebuild_producer_state(&mut self) -> io::Result<()> {
        let (mut state, from) = load_snapshot(&self.dir, self.log_end_offset()).unwrap_or_default();
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut aborted = TxnIndex::load(&self.dir, &bases, from);
        let mut replayed = Vec::new();
        for seg in self.segments.values().filter(|s| s.next_offset() > from || s.is_empty()) {
            replayed.push(seg.base_offset());
            seg.for_each_header(|h, control| {
                if h.base_offset >= from {
                    if let Some(entry) = track_batch(&mut state, h, control, 0) {
                        aborted.push(seg.base_offset(), entry);
                    }
                }
            })?;
        }
        aborted.rewrite(&replayed)?;
        self.producers = state;
        self.aborted = aborted;
        Ok(())
    }

    /// Writes the producer state as of `offset` (the log end) to `<offset>.snapshot`, keeping
    /// the two newest snapshots.
    fn write_snapshot(&self, sync: bool) -> io::Result<()> {
        let offset = self.log_end_offset();
        let path = self.dir.join(format!("{}.snapshot", segment::file_stem(offset)));
        let tmp = path.with_extension("snapshot.tmp");
        std::fs::write(&tmp, self.producers.encode_snapshot())?;
        if sync {
            File::open(&tmp)?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let offsets = snapshot_offsets(&self.dir);
        for old in offsets.iter().rev().skip(SNAPSHOTS_KEPT) {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.snapshot", segment::file_stem(*old))));
        }
        if sync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        // A log always has at least one segment: open creates one and deletion keeps one.
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// The idempotent producers this partition knows (DescribeProducers).
    pub fn active_producers(&self) -> Vec<producer_state::ActiveProducer> {
        self.producers.active()
    }

    /// Whether `(producer_id, epoch)` has a transaction open on this partition.
    pub fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers.in_transaction(producer_id, epoch)
    }

    /// Open transactions on this partition as (producer id, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.ongoing()
    }

    /// Aborted transactions with records in `[from, to)` (read_committed fetches).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted.overlapping(from, to)
    }

    /// `producer.id.expiration.ms`: forgets idle producers; returns how many.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.remove_expired(now_ms, expiration_ms)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The first offset of the oldest open transaction, or the high watermark when none is
    /// open: `read_committed` consumers read up to here.
    pub fn last_stable_offset(&self) -> i64 {
        self.producers.first_unstable_offset().map_or(self.high_watermark, |o| o.min(self.high_watermark))
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Takes a topic's new settings (duplicate detection may start, change or stop).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
        if let Err(e) = self.configure_dedup(crate::broker::now_ms()) {
            tracing::warn!(log = %self.topic_partition, error = %e, "cannot read the log's recent ids; duplicates of them are not detected");
        }
    }

    pub fn unflushed_records(&self) -> i64 {
        self.unflushed_records
    }

    /// How many times the log end moved back (see [`FlushTarget::truncations`]).
    pub fn truncations(&self) -> u64 {
        self.truncations
    }

    /// Validates every batch of a produce request's records, then appends them all.
    pub fn append(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        if self.offline {
            return Err(LogError::Offline);
        }
        let limits = ProduceLimits {
            max_message_bytes: self.config.max_message_bytes,
            segment_bytes: self.config.segment_bytes as usize,
            log_append_time: self.config.log_append_time,
            timestamp_before_max_ms: self.config.timestamp_before_max_ms,
            timestamp_after_max_ms: self.config.timestamp_after_max_ms,
            now_ms,
            compacted: self.config.compact,
            topic_partition: &self.topic_partition,
        };
        let mut spans = Vec::new();
        let mut at = 0usize;
        for b in batch::split_batches(records)? {
            batch::validate_produced(b, &limits)?;
            spans.push(at..at + b.len());
            at += b.len();
        }
        if spans.is_empty() {
            return Err(BatchError::Invalid("produce request without record batches".into()).into());
        }
        let append_time = self.config.log_append_time.then_some(now_ms);
        let base_offset = self.log_end_offset();
        // `last_offset` starts below the log end: a request of only retried batches ends at
        // their original offsets, never at an offset the log does not hold yet
        let mut info = AppendInfo {
            base_offset,
            last_offset: base_offset - 1,
            log_append_time: append_time.unwrap_or(-1),
            records: 0,
        };
        let mut first = true;
        for span in spans {
            let bytes = &records[span];
            let Some(sent) = BatchHeader::parse(bytes) else {
                continue;
            };
            if let producer_state::SequenceCheck::Duplicate { base_offset, last_offset } =
                self.producers.check(&sent)?
            {
                // a retry of a batch already in the log: answer with its original offsets
                if first {
                    info.base_offset = base_offset;
                }
                info.last_offset = info.last_offset.max(last_offset);
                first = false;
                continue;
            }
            let (batches, ids, answer) = match self.without_duplicates(bytes, now_ms)? {
                dedup::Deduplicated::Write { batches, ids, answer } => (batches, ids, answer),
                dedup::Deduplicated::Nothing { original } => {
                    // every record was a copy: the answer points at the first original
                    if first {
                        info.base_offset = original;
                        first = false;
                    }
                    continue;
                }
            };
            let start = self.log_end_offset();
            for batch in &batches {
                let Some(h) = self.write_batch(batch, append_time, now_ms)? else {
                    continue;
                };
                self.producers.record(&h);
                if first {
                    info.base_offset = answer.unwrap_or(h.base_offset);
                    first = false;
                }
                info.last_offset = h.last_offset();
                info.records += i64::from(h.record_count);
            }
            if let (Some(index), Some(ids)) = (self.dedup.as_mut(), ids) {
                let txn = sent.is_transactional().then_some(sent.producer_id);
                index.remember(&ids, start, now_ms, txn);
            }
        }
        self.unflushed_records += info.records;
        self.first_unflushed_ms.get_or_insert(now_ms);
        if !self.replica_of_many {
            self.high_watermark = self.log_end_offset();
        }
        Ok(info)
    }

    /// Gives a batch its offsets and writes it to the active segment (rolling first when
    /// due). `None` when the bytes are not a batch (callers validated them already).
    /// The batch is not modified: its header is copied and assigned, and the copy and the
    /// rest of the batch are written together, so produce data is never copied in memory.
    fn write_batch(
        &mut self,
        bytes: &[u8],
        append_time: Option<i64>,
        now_ms: i64,
    ) -> Result<Option<BatchHeader>, LogError> {
        let Some((head, body)) = bytes.split_first_chunk::<{ batch::HEADER_SIZE }>() else {
            return Ok(None);
        };
        let mut head = *head;
        batch::assign_header(&mut head, body, self.log_end_offset(), self.leader_epoch, append_time);
        let Some(h) = BatchHeader::parse(&head) else {
            return Ok(None);
        };
        self.maybe_roll(bytes.len(), h.last_offset(), now_ms)?;
        if let Err(e) = self.active_mut().append_parts(&[&head, body], &h) {
            // The segment's size did not move, so the next append overwrites whatever part of
            // this one reached the file; cutting it off now keeps a clean shutdown clean.
            // Only if that fails too is the log taken offline.
            if self.active_mut().discard_unacknowledged_tail().is_err() {
                self.offline = true;
            }
            return Err(e.into());
        }
        Ok(Some(h))
    }

    /// Writes the commit or abort marker that ends a producer's transaction on this partition
    /// (only the transaction coordinator calls this). An abort is added to the txn index.
    pub fn append_end_txn_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        if self.offline {
            return Err(LogError::Offline);
        }
        self.producers.check_marker(producer_id, producer_epoch)?;
        let bytes = batch::end_txn_marker(producer_id, producer_epoch, control, coordinator_epoch, now_ms)?;
        let Some(h) = self.write_batch(&bytes, None, now_ms)? else {
            return Err(BatchError::Invalid("unreadable transaction marker".into()).into());
        };
        if let Some(entry) = track_batch(&mut self.producers, &h, Some(control), coordinator_epoch) {
            let base = self.active().base_offset();
            self.aborted.append(base, entry)?;
        }
        if let Some(index) = self.dedup.as_mut() {
            index.end_transaction(producer_id, control == ControlType::Commit);
        }
        self.unflushed_records += 1;
        self.first_unflushed_ms.get_or_insert(now_ms);
        if !self.replica_of_many {
            self.high_watermark = self.log_end_offset();
        }
        Ok(AppendInfo { base_offset: h.base_offset, last_offset: h.base_offset, log_append_time: -1, records: 1 })
    }

    fn maybe_roll(&mut self, len: usize, last_offset: i64, now_ms: i64) -> io::Result<()> {
        let segment_bytes = self.config.segment_bytes;
        let segment_ms = self.config.segment_ms;
        let active = self.active_mut();
        if active.is_empty() {
            active.created_ms = now_ms;
            return Ok(());
        }
        let too_old = now_ms.saturating_sub(active.created_ms) >= segment_ms;
        if too_old || active.must_roll(len, last_offset, segment_bytes) {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        let base = self.log_end_offset();
        if self.active().base_offset() == base {
            return Ok(());
        }
        self.active_mut().seal()?;
        self.aborted.sync(self.active().base_offset())?;
        self.failed_sync = None;
        let mut seg = self.new_segment(base, now_ms)?;
        seg.reserve_after(self.active(), self.config.segment_bytes);
        self.segments.insert(base, seg);
        self.write_snapshot(false)?;
        self.write_dedup_snapshot(false)?;
        // the new file's directory entry is made durable by the next flush, before it covers
        // anything written to it (a directory fsync is a journal commit: milliseconds)
        self.dir_changes += 1;
        Ok(())
    }

    /// Reads whole batches from `offset`, bounded by `max_bytes` and by `max_offset` (the high
    /// watermark or last stable offset the reader may see).
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> Result<ReadResult, LogError> {
        self.read_up_to(offset, max_bytes, max_offset, min_one, i64::MAX)
    }

    /// [`Self::read`], stopping after the batch that reaches `max_records` offsets past
    /// `offset` (at least one batch).
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
        max_records: i64,
    ) -> Result<ReadResult, LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.log_end_offset(),
            });
        }
        if offset >= max_offset {
            return Ok(ReadResult { records: None });
        }
        let start_key = self.segments.range(..=offset).next_back().map_or(offset, |(k, _)| *k);
        for seg in self.segments.range(start_key..).map(|(_, s)| s) {
            if let Some(slice) = seg.read_up_to(offset, max_bytes, max_offset, min_one, max_records)? {
                return Ok(ReadResult { records: Some(slice) });
            }
        }
        Ok(ReadResult { records: None })
    }

    /// The first record at or after the log start whose timestamp is `>= ts`, for
    /// ListOffsets. A batch the log start cut into may hold only earlier offsets that match;
    /// the search goes on past it.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>, LogError> {
        for seg in self.segments.values() {
            if seg.max_timestamp() < ts || seg.next_offset() <= self.log_start_offset {
                continue;
            }
            let mut from = self.log_start_offset;
            while let Some(batch) = seg.find_batch_by_timestamp(ts, from)? {
                let Some(h) = BatchHeader::parse(&batch) else { break };
                if let Some(found) = self.first_record_at_or_after(batch, ts) {
                    return Ok(Some(found));
                }
                from = h.last_offset().saturating_add(1);
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the earliest such), for ListOffsets -3.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, LogError> {
        let mut best: Option<&Segment> = None;
        for seg in self.segments.values() {
            if seg.max_timestamp() >= 0 && best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp()) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return Ok(None) };
        let ts = seg.max_timestamp();
        match seg.batch_containing(seg.offset_of_max_timestamp())? {
            Some(batch) => Ok(self.first_record_at_or_after(batch, ts)),
            None => Ok(None),
        }
    }

    /// Finds, inside one batch, the first record with a timestamp `>= ts`.
    fn first_record_at_or_after(&self, batch: Bytes, ts: i64) -> Option<TimestampOffset> {
        let h = BatchHeader::parse(&batch)?;
        if h.is_log_append_time() {
            return Some(TimestampOffset {
                timestamp: h.max_timestamp,
                offset: h.base_offset.max(self.log_start_offset),
            });
        }
        let mut buf = batch;
        let set = RecordBatchDecoder::decode(&mut buf).ok()?;
        set.records
            .iter()
            .filter(|r| r.offset >= self.log_start_offset)
            .find(|r| r.timestamp >= ts)
            .map(|r| TimestampOffset { timestamp: r.timestamp, offset: r.offset })
    }

    /// Moves the log start offset to `offset` (DeleteRecords), deleting whole segments below.
    pub fn delete_records_before(&mut self, offset: i64, now_ms: i64) -> Result<i64, LogError> {
        if offset > self.high_watermark || offset < 0 {
            return Err(LogError::OffsetOutOfRange { offset, start: self.log_start_offset, end: self.high_watermark });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            write_log_start(&self.dir, offset)?;
            self.delete_segments_below_start(now_ms)?;
        }
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_start(&mut self, now_ms: i64) -> io::Result<()> {
        if self.log_start_offset >= self.log_end_offset() && !self.active().is_empty() {
            self.roll(now_ms)?;
        }
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.next_offset() <= self.log_start_offset)
            .map(|(k, _)| *k)
            .filter(|k| *k != self.active().base_offset())
            .collect();
        for base in doomed {
            self.remove_segment(base)?;
        }
        Ok(())
    }

    /// Deletes the segment at `base` with its files and its aborted-transaction index.
    fn remove_segment(&mut self, base: i64) -> io::Result<()> {
        match self.segments.remove(&base) {
            Some(seg) => {
                seg.delete()?;
                self.aborted.remove_segment(base)
            }
            None => Ok(()),
        }
    }

    /// A new empty segment at `base`, with this log's index settings.
    fn new_segment(&self, base: i64, now_ms: i64) -> io::Result<Segment> {
        let c = &self.config;
        Segment::open(&self.dir, base, c.segment_index_bytes, c.index_interval_bytes, false, now_ms).map(|(s, _)| s)
    }

    /// Removes the producer and duplicate-detection snapshots taken past `end` (they describe
    /// records no longer here).
    fn remove_snapshots_after(&self, end: i64) {
        for extension in ["snapshot", dedup::SNAPSHOT_EXTENSION] {
            for stale in snapshot_offsets_with(&self.dir, extension).into_iter().filter(|o| *o > end) {
                let _ = std::fs::remove_file(self.dir.join(format!("{}.{extension}", segment::file_stem(stale))));
            }
        }
    }

    /// Applies `retention.ms` and `retention.bytes`, deleting whole segments from the oldest.
    /// Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        if !self.config.delete {
            return Ok(0);
        }
        let (retention_ms, retention_bytes) = (self.config.retention_ms, self.config.retention_bytes);
        let mut remaining = self.size_bytes() as i64;
        let mut new_start = None;
        let mut count = 0;
        for seg in self.segments.values() {
            if seg.is_empty() {
                break;
            }
            let expired = retention_ms >= 0
                && seg.max_timestamp() >= 0
                && now_ms.saturating_sub(seg.max_timestamp()) > retention_ms;
            let oversize = retention_bytes >= 0 && remaining - seg.size() as i64 >= retention_bytes;
            if !(expired || oversize) {
                break;
            }
            remaining -= seg.size() as i64;
            new_start = Some(seg.next_offset());
            count += 1;
        }
        if let Some(start) = new_start {
            if start > self.log_start_offset {
                self.log_start_offset = start;
                write_log_start(&self.dir, start)?;
                self.delete_segments_below_start(now_ms)?;
            }
        }
        Ok(count)
    }

    /// A file handle on the active segment and the offset it covers, so the caller can
    /// fsync without holding the lock.
    pub fn flush_target(&self) -> io::Result<FlushTarget> {
        let active = self.active();
        let redirty = self.failed_sync.filter(|(base, _)| *base == active.base_offset()).map(|(_, from)| from);
        Ok(FlushTarget {
            file: active.file_handle()?,
            covered: self.log_end_offset(),
            segment: active.base_offset(),
            size: active.size(),
            redirty_from: redirty,
            reserve: active.reserve_plan(self.config.segment_bytes),
            dir: self.dir.clone(),
            truncations: self.truncations,
            dir_changes: (self.dir_changes != self.dir_synced).then_some(self.dir_changes),
        })
    }

    /// Records what [`FlushTarget::reserve_ahead`] reserved (`None`: it could not).
    pub fn note_reserved(&mut self, segment: i64, end: Option<u64>) {
        if self.active().base_offset() == segment {
            self.active_mut().note_reserved(end);
        }
    }

    /// After a failed fsync: the kernel may have dropped the dirty pages' error state along
    /// with the data, so the next flush rewrites the active segment from its last durable
    /// size before syncing (see [`FlushTarget::sync`]).
    pub fn mark_sync_failed(&mut self) {
        if self.failed_sync.is_none() {
            let active = self.active();
            let durable = if self.synced.0 == active.base_offset() { self.synced.1.min(active.size()) } else { 0 };
            self.failed_sync = Some((active.base_offset(), durable));
        }
    }

    /// Records that everything below `covered` is durable; appends that raced with the fsync
    /// stay counted as unflushed.
    pub fn mark_flushed(&mut self, target: &FlushTarget) {
        if let Some(changes) = target.dir_changes {
            self.dir_synced = self.dir_synced.max(changes);
        }
        let (covered, segment, size) = (target.covered, target.segment, target.size);
        if self.active().base_offset() == segment {
            self.failed_sync = None;
            self.synced = (segment, size);
        }
        if covered >= self.log_end_offset() {
            self.unflushed_records = 0;
            self.first_unflushed_ms = None;
        }
    }

    /// True when unflushed data has waited longer than `flush.ms`.
    pub fn flush_overdue(&self, now_ms: i64) -> bool {
        self.first_unflushed_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms)
    }

    /// Clean shutdown: make everything durable and trim the active indexes.
    pub fn close(&mut self) -> io::Result<()> {
        for seg in self.segments.values() {
            seg.flush_indexes()?;
        }
        self.active_mut().close_for_writes()?;
        self.aborted.sync(self.active().base_offset())?;
        self.write_dedup_snapshot(true)?;
        self.write_snapshot(true)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Producer snapshots kept per partition.
const SNAPSHOTS_KEPT: usize = 2;

/// Applies one batch to the producer state (appended or replayed); an abort marker that
/// closes a transaction yields the txn-index entry to record.
fn track_batch(
    state: &mut ProducerState,
    h: &BatchHeader,
    control: Option<ControlType>,
    coordinator_epoch: i32,
) -> Option<AbortedTxn> {
    if !h.is_control() {
        state.record(h);
        return None;
    }
    let control = control?;
    let done = state.complete_txn(h, coordinator_epoch)?;
    (control == ControlType::Abort).then(|| AbortedTxn {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: h.base_offset,
        last_stable_offset: state.first_unstable_offset().unwrap_or(h.base_offset + 1),
    })
}

/// Offsets of the producer snapshots in `dir`, ascending.
fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    snapshot_offsets_with(dir, "snapshot")
}

/// Offsets of the `<offset>.<extension>` files in `dir`, ascending.
fn snapshot_offsets_with(dir: &Path, extension: &str) -> Vec<i64> {
    let mut offsets: Vec<i64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(extension)?.strip_suffix('.')?.parse().ok())
        .collect();
    offsets.sort_unstable();
    offsets
}

/// The newest snapshot at or below the log end that decodes, with its offset.
fn load_snapshot(dir: &Path, log_end: i64) -> Option<(ProducerState, i64)> {
    snapshot_offsets(dir).into_iter().rev().filter(|o| *o <= log_end).find_map(|o| {
        let bytes = std::fs::read(dir.join(format!("{}.snapshot", segment::file_stem(o)))).ok()?;
        let state = ProducerState::decode_snapshot(&bytes);
        if state.is_none() {
            tracing::warn!(dir = %dir.display(), offset = o, "ignoring a damaged producer snapshot");
        }
        Some((state?, o))
    })
}

/// What a flush needs, taken under the log's lock and used after it is released.
pub struct FlushTarget {
    file: File,
    /// Everything below this offset is covered by the fsync.
    pub covered: i64,
    /// The active segment's base offset.
    pub segment: i64,
    /// The active segment's size when the target was taken.
    pub size: u64,
    /// Rewrite the segment from here before syncing (an earlier fsync failed).
    redirty_from: Option<u64>,
    /// File space to reserve after the fsync (see [`Segment::reserve_plan`]).
    reserve: Option<(u64, u64)>,
    dir: PathBuf,
    /// The log's truncation count when the target was taken: if it changed by the time the
    /// fsync is recorded, the fsync proves nothing about what the log holds now.
    pub truncations: u64,
    /// The directory is fsynced first, covering this many rolls (`None`: no roll since the
    /// last directory fsync).
    dir_changes: Option<u64>,
}

impl FlushTarget {
    /// fdatasync, after rewriting the bytes an earlier failed fsync may have left only in
    /// memory (blocking).
    pub fn sync(&self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if let Some(from) = self.redirty_from.filter(|f| *f < self.size) {
            let mut buf = vec![0u8; (self.size - from) as usize];
            self.file.read_exact_at(&mut buf, from)?;
            self.file.write_all_at(&buf, from)?;
        }
        faults::check(&self.dir, faults::Op::Sync)?;
        if self.dir_changes.is_some() {
            sync_dir(&self.dir)?;
        }
        self.file.sync_data()
    }

    /// Reserves the planned space ahead of the writes (blocking), if any was due; the end of
    /// the reserved range, or `None` when the file system cannot reserve. Called between
    /// fsyncs, without the log's lock, so appends do not wait for it.
    pub fn reserve_ahead(&self) -> Option<Option<u64>> {
        let (offset, len) = self.reserve?;
        Some(match segment::reserve(&self.file, offset, len) {
            Ok(()) => Some(offset + len),
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot reserve log space ahead of writes");
                None
            }
        })
    }
}

fn read_log_start(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(LOG_START_FILE)).ok()?.trim().parse().ok()
}

fn write_log_start(dir: &Path, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    std::fs::write(&tmp, offset.to_string())?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(LOG_START_FILE))?;
    sync_dir(dir)
}

/// fsyncs a directory so that file creations and renames in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use batch::tests::make_batch;

    fn config(segment_bytes: u64) -> LogConfig {
        let mut c = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        c.segment_bytes = segment_bytes;
        c.timestamp_after_max_ms = i64::MAX;
        c.index_interval_bytes = 100;
        c.segment_index_bytes = 4096;
        c
    }

    #[test]
    fn appends_roll_and_reads_cross_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(500), true, 0).unwrap();
        for i in 0..50 {
            let info = log.append(&make_batch(2, i), 0).unwrap();
            assert_eq!(info.base_offset, 2 * i);
        }
        assert!(log.segments.len() > 3);
        assert_eq!(log.high_watermark(), 100);
        let mut offset = 0;
        while offset < 100 {
            let r = log.read(offset, 1 << 20, 100, true).unwrap();
            let bytes = r.bytes().unwrap().unwrap();
            let mut at = 0;
            while let Some((base, size)) = batch::offset_and_size(&bytes[at..]) {
                assert_eq!(base, offset);
                offset += 2;
                at += size;
            }
        }
        assert!(matches!(log.read(101, 100, 100, true), Err(LogError::OffsetOutOfRange { .. })));
        let ts = log.offset_for_timestamp(7).unwrap().unwrap();
        assert_eq!(ts, TimestampOffset { timestamp: 7, offset: 14 });
        assert_eq!(log.max_timestamp_offset().unwrap().unwrap().offset, 98);
    }

    #[test]
    fn timestamps_are_found_after_the_log_start_moves_inside_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(1 << 20), true, 0).unwrap();
        log.append(&make_batch(20, 1_000), 0).unwrap();
        log.delete_records_before(5, 0).unwrap();
        let found = log.offset_for_timestamp(0).unwrap().expect("a record at or after 0");
        assert_eq!(found.offset, 5, "the first record still in the log");
        // twenty one-record batches (the sequence -1 of each makes kafka-protocol's encoder
        // start a new batch per record), the log start moved into the middle of them
        let records: Vec<kafka_protocol::records::Record> = (0..20)
            .map(|i| kafka_protocol::records::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 5_000,
                key: None,
                value: Some(bytes::Bytes::from_static(b"x")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression: kafka_protocol::records::Compression::None,
        };
        kafka_protocol::records::RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        log.append(&buf, 0).unwrap();
        assert_eq!(log.offset_for_timestamp(4_000).unwrap().map(|f| f.offset), Some(20));
        log.delete_records_before(25, 0).unwrap();
        let found = log.offset_for_timestamp(4_000).unwrap().expect("a record at or after 4000");
        assert_eq!(found.offset, 25);
    }

    /// A transactional batch of `n` records from producer `pid`, epoch 0, at sequence `seq`.
    fn txn_batch(pid: i64, seq: i32, n: i32) -> Vec<u8> {
        let mut b = make_batch(n, 0);
        b[batch::ATTRIBUTES..batch::ATTRIBUTES + 2].copy_from_slice(&0x10i16.to_be_bytes());
        b[batch::PRODUCER_ID..batch::PRODUCER_ID + 8].copy_from_slice(&pid.to_be_bytes());
        b[batch::PRODUCER_EPOCH..batch::PRODUCER_EPOCH + 2].copy_from_slice(&0i16.to_be_bytes());
        b[batch::BASE_SEQUENCE..batch::BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[batch::CRC..batch::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn transactions_move_the_stable_offset_and_aborts_survive_reopen() {
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = Log::open(dir.path(), config(400), true, 0).unwrap();
            log.append(&make_batch(2, 0), 0).unwrap(); // 0-1
            log.append(&txn_batch(7, 0, 3), 0).unwrap(); // 2-4
            log.append(&txn_batch(8, 0, 2), 0).unwrap(); // 5-6
            assert_eq!((log.last_stable_offset(), log.high_watermark()), (2, 7));
            log.append_end_txn_marker(7, 0, ControlType::Abort, 0, 0).unwrap(); // 7
            assert_eq!(log.last_stable_offset(), 5);
            log.append_end_txn_marker(8, 0, ControlType::Commit, 0, 0).unwrap(); // 8
            assert_eq!(log.last_stable_offset(), 9);
            log.append(&txn_batch(7, 3, 1), 0).unwrap(); // 9, still open
            assert!(matches!(
                log.append_end_txn_marker(7, -1, ControlType::Abort, 0, 0),
                Err(LogError::Producer(producer_state::ProducerError::InvalidEpoch { .. }))
            ));
            let aborted = vec![AbortedTxn { producer_id: 7, first_offset: 2, last_offset: 7, last_stable_offset: 5 }];
            assert_eq!(log.aborted_transactions(0, 10), aborted);
            assert!(log.aborted_transactions(8, 10).is_empty());
            if clean {
                log.close().unwrap();
            }
            drop(log);
            let (log, _) = Log::open(dir.path(), config(400), clean, 0).unwrap();
            assert_eq!(log.aborted_transactions(0, 10), aborted, "clean={clean}");
            assert_eq!(log.last_stable_offset(), 9, "clean={clean}");
            assert_eq!(log.ongoing_transactions(), vec![(7, 9)]);
            assert!(log.segments.len() > 1, "the test spans segments");
        }
    }

    #[test]
    fn a_damaged_snapshot_falls_back_to_an_older_one_or_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(300), true, 0).unwrap();
        for seq in 0..6 {
            log.append(&txn_batch(3, seq * 2, 2), 0).unwrap();
        }
        log.close().unwrap();
        drop(log);
        let snapshots = snapshot_offsets(dir.path());
        assert_eq!(snapshots.len(), SNAPSHOTS_KEPT);
        let newest = dir.path().join(format!("{}.snapshot", segment::file_stem(snapshots[1])));
        std::fs::write(&newest, b"garbage").unwrap();
        for _ in 0..2 {
            let (mut log, _) = Log::open(dir.path(), config(300), true, 0).unwrap();
            assert_eq!(log.ongoing_transactions(), vec![(3, 0)]);
            let again = log.append(&txn_batch(3, 10, 2), 0).unwrap();
            assert_eq!(again.base_offset, 10, "the last batch is still recognised as a duplicate");
            assert_eq!(again.last_offset, 11, "a retry ends at its original last offset, not the log end");
            assert_eq!(log.log_end_offset(), 12);
            drop(log);
            for s in snapshot_offsets(dir.path()) {
                std::fs::remove_file(dir.path().join(format!("{}.snapshot", segment::file_stem(s)))).unwrap();
            }
        }
    }

    #[test]
    fn missing_truncated_or_garbled_indexes_are_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(2000), true, 0).unwrap();
        for i in 0..200 {
            log.append(&make_batch(2, 1_000 + i), 0).unwrap();
        }
        log.close().unwrap();
        let bases: Vec<i64> = log.segments.keys().copied().collect();
        drop(log);
        assert!(bases.len() >= 5, "{bases:?}");
        let file = |base: i64, ext: &str| dir.path().join(format!("{}.{ext}", segment::file_stem(base)));
        std::fs::remove_file(file(bases[0], "index")).unwrap();
        std::fs::remove_file(file(bases[1], "timeindex")).unwrap();
        let garbage: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(97).wrapping_add(13)).collect();
        std::fs::write(file(bases[2], "index"), &garbage).unwrap();
        std::fs::write(file(bases[3], "timeindex"), &garbage[..30]).unwrap();
        // an index whose entries are in order but point at the wrong places
        let idx = std::fs::read(file(bases[4], "index")).unwrap();
        let mut shifted = idx.clone();
        for e in shifted.chunks_exact_mut(8) {
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]) + 7;
            e[4..8].copy_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(file(bases[4], "index"), &shifted).unwrap();
        let (log, _) = Log::open(dir.path(), config(2000), true, 0).unwrap();
        for offset in 0..400 {
            let r = log.read(offset, 1, 400, true).unwrap().bytes().unwrap().unwrap();
            let h = BatchHeader::parse(&r).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset(), "offset {offset}");
        }
        for i in [0i64, 37, 111, 199] {
            let found = log.offset_for_timestamp(1_000 + i).unwrap().unwrap();
            assert_eq!(found.offset, 2 * i, "timestamp {}", 1_000 + i);
        }
        let rebuilt = std::fs::read(file(bases[4], "index")).unwrap();
        assert_eq!(&rebuilt[..idx.len().min(rebuilt.len())], &idx[..idx.len().min(rebuilt.len())]);
    }

    #[test]
    fn flush_ms_marks_unflushed_data_overdue() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20);
        c.flush_ms = 100;
        let (mut log, _) = Log::open(dir.path(), c, true, 0).unwrap();
        assert!(!log.flush_overdue(1_000));
        log.append(&make_batch(1, 0), 1_000).unwrap();
        assert!(!log.flush_overdue(1_050));
        assert!(log.flush_overdue(1_100));
        let mut target = log.flush_target().unwrap();
        target.covered = 0;
        log.mark_flushed(&target);
        assert!(log.flush_overdue(1_100), "a flush that did not cover the append changes nothing");
        log.mark_flushed(&log.flush_target().unwrap());
        assert!(!log.flush_overdue(5_000));
    }

    #[test]
    fn segments_roll_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20);
        c.segment_ms = 1000;
        let (mut log, _) = Log::open(dir.path(), c, true, 0).unwrap();
        log.append(&make_batch(1, 0), 10_000).unwrap();
        log.append(&make_batch(1, 0), 10_500).unwrap();
        assert_eq!(log.segments.len(), 1);
        log.append(&make_batch(1, 0), 11_000).unwrap();
        assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn delete_records_and_retention_move_the_start_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(500), true, 0).unwrap();
        for i in 0..50 {
            log.append(&make_batch(2, i), 0).unwrap();
        }
        assert_eq!(log.delete_records_before(33, 0).unwrap(), 33);
        assert!(log.read(32, 100, 100, true).is_err());
        log.close().unwrap();
        drop(log);
        let (mut log, _) = Log::open(dir.path(), config(500), true, 0).unwrap();
        assert_eq!(log.log_start_offset(), 33);
        assert_eq!(log.log_end_offset(), 100);
        let mut c = config(500);
        c.retention_bytes = 0;
        log.set_config(c);
        log.apply_retention(0).unwrap();
        assert_eq!(log.log_start_offset(), 100);
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(log.append(&make_batch(1, 0), 0).unwrap().base_offset, 100);
    }
}
