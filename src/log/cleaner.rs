//! Log compaction for `cleanup.policy=compact`: keep the latest record of every key, drop
//! tombstones older than `delete.retention.ms`, never change the offset of a kept record.
//!
//! A clean has two phases so that producers are only blocked for the swap:
//! 1. [`Log::plan_clean`] (read lock): build the key → latest-offset map over the closed
//!    segments, and write each segment's survivors to `<base>.log.cleaned`, fsynced.
//! 2. [`Log::apply_clean`] (write lock): for each planned segment still as it was, rename
//!    `.cleaned` → `.swap`, delete the old files, rename `.swap` → `.log`, rebuild its indexes.
//!
//! Crash safety: at start-up a `.cleaned` file is an unfinished clean and is deleted; a
//! `.swap` file is a finished one whose old files may linger, so those are deleted and the swap
//! completed ([`finish_interrupted_cleans`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use super::batch::BatchHeader;
use super::segment::{file_stem, Segment, SegmentSnapshot};
use super::{sync_dir, Log, LogError};

/// A segment's cleaned replacement, written but not yet swapped in.
pub struct CleanedSegment {
    base_offset: i64,
    /// Size of the segment when it was read; a changed size means it must not be swapped.
    source_size: u64,
    path: PathBuf,
    pub kept_records: u64,
    pub removed_records: u64,
}

/// What one clean did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub segments: usize,
    pub kept_records: u64,
    pub removed_records: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn decode(batch: Bytes) -> Option<(BatchHeader, Vec<Record>, kafka_protocol::records::Compression)> {
    let h = BatchHeader::parse(&batch)?;
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    Some((h, set.records, set.compression))
}

impl Log {
    /// The closed segments a clean may touch: all but the active one, and none whose newest
    /// record is younger than `min.compaction.lag.ms`.
    fn cleanable(&self, now_ms: i64) -> Vec<&Segment> {
        let lag = self.config.min_compaction_lag_ms;
        let active = self.active().base_offset();
        self.segments
            .values()
            .filter(|s| s.base_offset() != active && !s.is_empty())
            .take_while(|s| now_ms.saturating_sub(s.max_timestamp()) >= lag)
            .collect()
    }

    /// Share of the cleanable bytes written since the last clean.
    pub fn dirty_ratio(&self, now_ms: i64) -> f64 {
        let segs = self.cleanable(now_ms);
        let total: u64 = segs.iter().map(|s| s.size()).sum();
        let dirty: u64 = segs.iter().filter(|s| s.next_offset() > self.cleaned_up_to).map(|s| s.size()).sum();
        if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        }
    }

    /// What a clean needs, taken under the lock so that the rewrite can run without it.
    pub fn clean_input(&self, now_ms: i64) -> Result<CleanInput, LogError> {
        let segments = self.cleanable(now_ms).iter().map(|s| s.snapshot()).collect::<io::Result<Vec<_>>>()?;
        Ok(CleanInput {
            dir: self.dir.clone(),
            segments,
            delete_retention_ms: self.config.delete_retention_ms,
            now_ms,
            io_limit: None,
            keep_whole: self.producers.last_batch_offsets(),
        })
    }

    /// Phase 1 in one call (tests): snapshot, then rewrite.
    pub fn plan_clean(&self, now_ms: i64) -> Result<Vec<CleanedSegment>, LogError> {
        self.clean_input(now_ms)?.plan()
    }
}

/// Closed segments to clean, detached from the log's lock.
pub struct CleanInput {
    dir: PathBuf,
    segments: Vec<SegmentSnapshot>,
    delete_retention_ms: i64,
    now_ms: i64,
    /// `log.cleaner.io.max.bytes.per.second`; `None` reads as fast as the disk allows.
    pub io_limit: Option<Throttle>,
    /// Each idempotent producer's newest batch, kept whole: compaction only promises that the
    /// latest value of a key survives, and the producer state is rebuilt from these headers.
    keep_whole: std::collections::HashSet<i64>,
}

/// Keeps the cleaner's reads under a byte rate by sleeping when it gets ahead.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    started: std::time::Instant,
    bytes: f64,
}

impl Throttle {
    pub fn new(bytes_per_second: f64) -> Throttle {
        Throttle { bytes_per_second, started: std::time::Instant::now(), bytes: 0.0 }
    }

    fn account(&mut self, bytes: usize) {
        self.bytes += bytes as f64;
        let due = std::time::Duration::from_secs_f64(self.bytes / self.bytes_per_second);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

impl CleanInput {
    /// Phase 1: writes the survivors of every snapshotted segment to `.cleaned` files. Runs
    /// without the partition's lock, so producers and consumers are not held up.
    pub fn plan(mut self) -> Result<Vec<CleanedSegment>, LogError> {
        let segments = std::mem::take(&mut self.segments);
        let segments = &segments;
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for seg in segments {
            seg.for_each_batch(|batch| {
                if let Some(t) = self.io_limit.as_mut() {
                    t.account(batch.len());
                }
                if let Some((h, records, _)) = decode(batch) {
                    // Transactional batches are kept whole and may be aborted: they never
                    // make an older committed value of their key obsolete.
                    if !h.is_control() && !h.is_transactional() {
                        for r in records {
                            if let Some(k) = r.key {
                                latest.insert(k, r.offset);
                            }
                        }
                    }
                }
            })?;
        }
        let horizon = self.now_ms.saturating_sub(self.delete_retention_ms);
        let mut planned = Vec::new();
        for seg in segments {
            planned.push(self.clean_segment(seg, &latest, horizon)?);
        }
        Ok(planned)
    }

    fn clean_segment(
        &mut self,
        seg: &SegmentSnapshot,
        latest: &HashMap<Bytes, i64>,
        horizon: i64,
    ) -> Result<CleanedSegment, LogError> {
        let path = self.dir.join(format!("{}.log.cleaned", file_stem(seg.base_offset)));
        let mut out = io::BufWriter::new(File::create(&path)?);
        let (mut kept_records, mut removed_records) = (0u64, 0u64);
        let mut failure = None;
        seg.for_each_batch(|batch| {
            if failure.is_some() {
                return;
            }
            if let Some(t) = self.io_limit.as_mut() {
                t.account(batch.len());
            }
            let raw = batch.clone();
            let Some((h, records, compression)) = decode(batch) else {
                // Not decodable: keep it untouched rather than lose data.
                failure = out.write_all(&raw).err();
                return;
            };
            if h.is_control() || h.is_transactional() || self.keep_whole.contains(&h.base_offset) {
                failure = out.write_all(&raw).err();
                return;
            }
            let total = records.len() as u64;
            let mut keep: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    let newest = r.key.as_ref().is_none_or(|k| latest.get(k) == Some(&r.offset));
                    let live_tombstone = r.value.is_some() || h.max_timestamp >= horizon;
                    newest && live_tombstone
                })
                .collect();
            kept_records += keep.len() as u64;
            removed_records += total - keep.len() as u64;
            if keep.len() as u64 == total {
                failure = out.write_all(&raw).err();
                return;
            }
            if keep.is_empty() {
                return;
            }
            if h.producer_id < 0 {
                // keep baseSequence -1 for non-idempotent batches
                let first = keep[0].offset;
                for r in &mut keep {
                    r.sequence = (r.offset - first) as i32 - 1;
                }
            }
            let mut buf = bytes::BytesMut::new();
            let options = RecordEncodeOptions { version: 2, compression };
            match RecordBatchEncoder::encode(&mut buf, keep.iter(), &options) {
                Ok(()) => failure = out.write_all(&buf).err(),
                Err(e) => failure = Some(io::Error::other(e.to_string())),
            }
        })?;
        if let Some(e) = failure {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(CleanedSegment { base_offset: seg.base_offset, source_size: seg.size, path, kept_records, removed_records })
    }
}

impl Log {
    /// Phase 2: swaps cleaned segments in. A segment that changed or vanished since phase 1
    /// (retention, DeleteRecords) keeps its old files and the cleaned copy is dropped.
    pub fn apply_clean(&mut self, planned: Vec<CleanedSegment>, now_ms: i64) -> Result<CleanStats, LogError> {
        let mut stats = CleanStats::default();
        let mut cleaned_up_to = self.cleaned_up_to;
        for c in planned {
            let unchanged = self.segments.get(&c.base_offset).is_some_and(|s| s.size() == c.source_size);
            if !unchanged {
                let _ = std::fs::remove_file(&c.path);
                continue;
            }
            let Some(old) = self.segments.remove(&c.base_offset) else { continue };
            cleaned_up_to = cleaned_up_to.max(old.next_offset());
            stats.bytes_before += old.size();
            let swap = self.dir.join(format!("{}.log.swap", file_stem(c.base_offset)));
            std::fs::rename(&c.path, &swap)?;
            sync_dir(&self.dir)?;
            old.delete()?;
            let seg = complete_swap(&self.dir, c.base_offset, &self.config, now_ms)?;
            stats.bytes_after += seg.size();
            self.segments.insert(c.base_offset, seg);
            stats.segments += 1;
            stats.kept_records += c.kept_records;
            stats.removed_records += c.removed_records;
        }
        self.cleaned_up_to = cleaned_up_to;
        Ok(stats)
    }
}

/// Renames `<base>.log.swap` to `<base>.log` and opens it with rebuilt indexes.
fn complete_swap(dir: &Path, base: i64, config: &crate::config::LogConfig, now_ms: i64) -> io::Result<Segment> {
    let stem = file_stem(base);
    for ext in ["index", "timeindex"] {
        match std::fs::remove_file(dir.join(format!("{stem}.{ext}"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(dir.join(format!("{stem}.log.swap")), dir.join(format!("{stem}.log")))?;
    sync_dir(dir)?;
    // its indexes are gone, so opening rebuilds them from the (CRC-checked) batches; not
    // `recover`, whose checks assume the contiguous offsets of an active segment
    let (mut seg, _) =
        Segment::open(dir, base, config.segment_index_bytes, config.index_interval_bytes, false, now_ms)?;
    seg.close_for_writes()?;
    Ok(seg)
}

/// Start-up: drops unfinished `.cleaned` files and completes interrupted swaps.
pub fn finish_interrupted_cleans(dir: &Path, config: &crate::config::LogConfig, now_ms: i64) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.ends_with(".log.cleaned") {
            std::fs::remove_file(dir.join(&name))?;
        } else if let Some(stem) = name.strip_suffix(".log.swap") {
            if let Ok(base) = stem.parse::<i64>() {
                let _ = std::fs::remove_file(dir.join(format!("{stem}.log")));
                tracing::warn!(dir = %dir.display(), base, "completing a log clean interrupted by a crash");
                complete_swap(dir, base, config, now_ms)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, LogConfig};
    use kafka_protocol::records::{Compression, TimestampType};

    fn config() -> LogConfig {
        let overrides = [("cleanup.policy", "compact"), ("segment.bytes", "2000"), ("delete.retention.ms", "1000")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = LogConfig::resolve(&BrokerConfig::default(), &overrides);
        c.timestamp_after_max_ms = i64::MAX;
        c
    }

    /// A batch of keyed records (`None` value: a tombstone), lz4-compressed.
    fn keyed(records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
        keyed_from(-1, -1, records, ts)
    }

    /// The same from idempotent producer `pid`, sequences starting at `seq`.
    fn keyed_from(pid: i64, seq: i32, records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
        encode_keyed(pid, seq, false, records, ts)
    }

    fn encode_keyed(pid: i64, seq: i32, transactional: bool, records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: if pid < 0 { -1 } else { 0 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: ts,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions { version: 2, compression: Compression::Lz4 },
        )
        .unwrap();
        buf.to_vec()
    }

    /// Every record in the log: (offset, key, value).
    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let Some(bytes) = log.read(offset, 1 << 20, i64::MAX, true).unwrap().bytes().unwrap() else { break };
            let mut buf = bytes;
            for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
                for r in set.records {
                    offset = r.offset + 1;
                    let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    out.push((r.offset, s(r.key).unwrap(), s(r.value)));
                }
            }
        }
        out
    }

    /// 3 versions of 20 keys, then tombstones for k0..k4, then filler so all of it is closed.
    fn fill(log: &mut Log) -> Vec<(i64, String, Option<String>)> {
        for v in 0..3 {
            for k in 0..20 {
                log.append(&keyed(&[(&format!("k{k}"), Some(&format!("v{v}")))], 1_000), 1_000).unwrap();
            }
        }
        for k in 0..5 {
            log.append(&keyed(&[(&format!("k{k}"), None)], 1_000), 1_000).unwrap();
        }
        for f in 0..30 {
            log.append(&keyed(&[(&format!("filler{f}"), Some("x"))], 1_000), 1_000).unwrap();
        }
        contents(log)
    }

    #[test]
    fn keeps_the_latest_value_per_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(), true, 0).unwrap();
        let before = fill(&mut log);
        let active = log.active().base_offset();
        // tombstones still inside delete.retention.ms are kept
        let planned = log.plan_clean(1_500).unwrap();
        log.apply_clean(planned, 1_500).unwrap();
        let after = contents(&log);
        let latest =
            |o: &(i64, String, Option<String>)| !before.iter().any(|x| x.1 == o.1 && x.0 > o.0 && x.0 < active);
        let want: Vec<_> = before.iter().filter(|o| o.0 >= active || latest(o)).cloned().collect();
        assert_eq!(after, want, "only the latest per key survives, at its original offset");
        assert!(after.iter().any(|o| o.2.is_none()), "fresh tombstones are kept");
        // later, the tombstones' delete horizon has passed: they go too
        let planned = log.plan_clean(10_000).unwrap();
        let stats = log.apply_clean(planned, 10_000).unwrap();
        assert!(stats.removed_records >= 5);
        let after = contents(&log);
        assert!(after.iter().all(|o| o.2.is_some() || o.0 >= active), "old tombstones removed");
        assert_eq!(log.log_end_offset(), before.last().unwrap().0 + 1, "the log end does not move");
        // the cleaned log still takes appends and survives a reopen
        log.append(&keyed(&[("k9", Some("v9"))], 1_000), 10_000).unwrap();
        log.close().unwrap();
        drop(log);
        let (log, _) = Log::open(dir.path(), config(), true, 0).unwrap();
        assert_eq!(contents(&log).last().unwrap().2.as_deref(), Some("v9"));
    }

    #[test]
    fn a_producers_last_batch_survives_cleaning_for_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(), true, 0).unwrap();
        log.append(&keyed_from(9, 0, &[("a", Some("1")), ("b", Some("1"))], 1_000), 1_000).unwrap();
        log.append(&keyed_from(9, 2, &[("a", Some("2")), ("c", Some("2"))], 1_000), 1_000).unwrap();
        // both keys of the producer's last batch are superseded by later, non-idempotent writes
        log.append(&keyed(&[("a", Some("3")), ("c", Some("3"))], 1_000), 1_000).unwrap();
        for f in 0..40 {
            log.append(&keyed(&[(&format!("filler{f}"), Some("x"))], 1_000), 1_000).unwrap();
        }
        let planned = log.plan_clean(10_000).unwrap();
        log.apply_clean(planned, 10_000).unwrap();
        let after = contents(&log);
        assert!(after.iter().any(|o| o.0 == 2 && o.2.as_deref() == Some("2")), "the last batch is kept whole");
        assert!(!after.iter().any(|o| o.0 == 0), "older superseded records are still removed");
        log.close().unwrap();
        drop(log);
        // after a restart the producer's next batch continues its sequence
        let (mut log, _) = Log::open(dir.path(), config(), false, 0).unwrap();
        let next = log.append(&keyed_from(9, 4, &[("d", Some("4"))], 1_000), 1_000);
        assert!(next.is_ok(), "{next:?}");
    }

    #[test]
    fn an_aborted_transaction_never_removes_the_committed_value_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(), true, 0).unwrap();
        log.append(&keyed(&[("k", Some("committed"))], 1_000), 1_000).unwrap();
        log.append(&encode_keyed(9, 0, true, &[("k", Some("aborted"))], 1_000), 1_000).unwrap();
        log.append_end_txn_marker(9, 0, crate::log::batch::ControlType::Abort, 0, 1_000).unwrap();
        for f in 0..40 {
            log.append(&keyed(&[(&format!("filler{f}"), Some("x"))], 1_000), 1_000).unwrap();
        }
        let planned = log.plan_clean(10_000).unwrap();
        log.apply_clean(planned, 10_000).unwrap();
        let after = contents(&log);
        assert!(after.contains(&(0, "k".into(), Some("committed".into()))), "{after:?}");
        assert!(after.iter().any(|o| o.0 == 1), "the transactional batch is kept whole");
    }

    #[test]
    fn the_io_limit_holds_the_cleaner_back() {
        let mut t = Throttle::new(10_000.0);
        let started = std::time::Instant::now();
        for _ in 0..10 {
            t.account(200); // 2,000 bytes at 10,000 B/s: at least 200 ms
        }
        assert!(started.elapsed() >= std::time::Duration::from_millis(190));
    }

    #[test]
    fn a_crash_mid_clean_leaves_old_or_new_data_never_a_mix() {
        // crash before the swap: the .cleaned files are discarded
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(), true, 0).unwrap();
        let before = fill(&mut log);
        let planned = log.plan_clean(10_000).unwrap();
        assert!(!planned.is_empty());
        drop(log);
        let (log, _) = Log::open(dir.path(), config(), false, 0).unwrap();
        assert_eq!(contents(&log), before);
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".cleaned")));

        // crash after one .cleaned became .swap: the swap is completed at start-up
        let planned = log.plan_clean(10_000).unwrap();
        let first = &planned[0];
        let swap = dir.path().join(format!("{}.log.swap", file_stem(first.base_offset)));
        std::fs::rename(&first.path, &swap).unwrap();
        drop(log);
        let (log, _) = Log::open(dir.path(), config(), false, 0).unwrap();
        assert!(!swap.exists());
        let after = contents(&log);
        assert!(after.len() < before.len(), "the swapped segment is the cleaned one");
        for o in &after {
            assert!(before.contains(o), "every surviving record is an original, at its offset: {o:?}");
        }
    }
}
