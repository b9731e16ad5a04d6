//! The aborted-transaction index: for every transaction aborted on a partition, the producer
//! and the offset range its records span. `read_committed` fetches return the entries that
//! overlap what they read, so clients can drop aborted records without the broker touching
//! them (Kafka's `TransactionIndex`).
//!
//! One `<base offset>.txnindex` file per segment holds the aborts whose marker landed in that
//! segment, in Kafka's layout: 34-byte entries of version i16 (0), producer id i64, first
//! offset i64, last offset i64, last stable offset i64. All entries are also kept in memory,
//! ordered by marker offset, since a partition sees few aborts compared with records.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::segment::file_stem;

const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(i64::from_be_bytes);
        if b.get(0..2)? != VERSION.to_be_bytes() {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

/// The aborted transactions of one partition, by segment.
#[derive(Debug, Default)]
pub struct TxnIndex {
    dir: PathBuf,
    /// Segment base offset → the aborts whose marker is in that segment, in offset order.
    by_segment: BTreeMap<i64, Vec<AbortedTxn>>,
}

fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", file_stem(base_offset)))
}

impl TxnIndex {
    /// Loads the index files of the given segments, keeping only entries whose marker is
    /// below `trusted_below` (the rest is rebuilt by replaying the log). Unreadable entries
    /// end a file: what follows them is rebuilt or was never acknowledged.
    pub fn load(dir: &Path, segment_bases: &[i64], trusted_below: i64) -> TxnIndex {
        let mut index = TxnIndex { dir: dir.to_path_buf(), by_segment: BTreeMap::new() };
        for &base in segment_bases {
            let Ok(bytes) = std::fs::read(path(dir, base)) else { continue };
            let entries: Vec<AbortedTxn> = bytes
                .chunks_exact(ENTRY_SIZE)
                .map_while(AbortedTxn::decode)
                .filter(|e| e.last_offset < trusted_below)
                .collect();
            if !entries.is_empty() {
                index.by_segment.insert(base, entries);
            }
        }
        index
    }

    /// Records an abort whose marker is in the segment at `segment_base`.
    pub fn append(&mut self, segment_base: i64, entry: AbortedTxn) -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(path(&self.dir, segment_base))?;
        f.write_all(&entry.encode())?;
        self.push(segment_base, entry);
        Ok(())
    }

    /// Records an abort in memory only (a replay, followed by [`TxnIndex::rewrite`]).
    pub fn push(&mut self, segment_base: i64, entry: AbortedTxn) {
        self.by_segment.entry(segment_base).or_default().push(entry);
    }

    /// Rewrites every segment's file from memory (after a replay rebuilt entries).
    pub fn rewrite(&self, segment_bases: &[i64]) -> io::Result<()> {
        for &base in segment_bases {
            let entries = self.by_segment.get(&base).map(Vec::as_slice).unwrap_or_default();
            let p = path(&self.dir, base);
            if entries.is_empty() {
                remove_if_present(&p)?;
                continue;
            }
            let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
            std::fs::write(&p, bytes)?;
        }
        Ok(())
    }

    /// fsyncs a segment's file (when the segment closes).
    pub fn sync(&self, segment_base: i64) -> io::Result<()> {
        if self.by_segment.contains_key(&segment_base) {
            std::fs::File::open(path(&self.dir, segment_base))?.sync_data()?;
        }
        Ok(())
    }

    /// Drops a deleted segment's entries and file.
    pub fn remove_segment(&mut self, segment_base: i64) -> io::Result<()> {
        self.by_segment.remove(&segment_base);
        remove_if_present(&path(&self.dir, segment_base))
    }

    /// Aborted transactions with records in `[from, to)`, as a fetch returns them. An entry
    /// lives with its marker, which is at or after `from` when it overlaps, so segments
    /// before the one holding `from` are skipped.
    pub fn overlapping(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.by_segment.range(..=from).next_back().map_or(i64::MIN, |(base, _)| *base);
        self.by_segment
            .range(start..)
            .flat_map(|(_, entries)| entries)
            .filter(|e| e.last_offset >= from && e.first_offset < to)
            .copied()
            .collect()
    }
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: last + 1 }
    }

    #[test]
    fn entries_persist_per_segment_and_filter_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::load(dir.path(), &[0, 100], i64::MAX);
        idx.append(0, abort(1, 5, 20)).unwrap();
        idx.append(100, abort(2, 90, 120)).unwrap();
        idx.append(100, abort(3, 130, 140)).unwrap();
        assert_eq!(idx.overlapping(0, 10), vec![abort(1, 5, 20)]);
        assert_eq!(idx.overlapping(21, 100).len(), 1);
        assert_eq!(idx.overlapping(121, 1000), vec![abort(3, 130, 140)]);
        let again = TxnIndex::load(dir.path(), &[0, 100], 130);
        assert_eq!(again.overlapping(0, i64::MAX), vec![abort(1, 5, 20), abort(2, 90, 120)]);
        idx.remove_segment(0).unwrap();
        assert_eq!(TxnIndex::load(dir.path(), &[0, 100], i64::MAX).overlapping(0, i64::MAX).len(), 2);
    }
}
