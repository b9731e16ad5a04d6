//! Sparse, memory-mapped segment indexes.
//!
//! * the **offset index** maps a relative offset to the file position of the batch holding it
//!   (entries of 8 bytes: relative offset u32, position u32);
//! * the **time index** maps a maximum timestamp to the relative offset after which it was
//!   reached (entries of 12 bytes: timestamp i64, relative offset u32).
//!
//! As in Kafka, the file of the active segment is pre-sized to `segment.index.bytes` so the
//! mapping never moves, and is trimmed to its entries when the segment is closed. A file whose
//! entries are not monotonic is reported as insane and rebuilt from the log.
//!
//! The pre-sized file is sparse, and a store into a mapped page that has no disk block yet
//! must allocate one: on a full disk the kernel cannot, and kills the process with SIGBUS.
//! So entries are only ever stored into blocks reserved beforehand (`fallocate`, in steps of
//! `RESERVE_STEP`); a reservation that fails is an ordinary write error.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use memmap2::MmapMut;
use parking_lot::Mutex;

/// The fixed-size entry of one index kind.
pub trait IndexEntry: Copy {
    const SIZE: usize;
    fn read(b: &[u8]) -> Self;
    fn write(&self, b: &mut [u8]);
    /// The key entries are ordered by.
    fn key(&self) -> i64;
    /// What the key maps to; never decreases along the index.
    fn value(&self) -> i64;
}

/// Offset index entry: relative offset → byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn read(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn write(&self, b: &mut [u8]) {
        b[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        b[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
    fn value(&self) -> i64 {
        i64::from(self.position)
    }
}

/// Time index entry: max timestamp so far → relative offset of the batch that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn read(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry { timestamp: i64::from_be_bytes(ts), relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]) }
    }
    fn write(&self, b: &mut [u8]) {
        b[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn value(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

/// One memory-mapped index file. The file descriptor is closed once the file is mapped (the
/// mapping stays valid), so a partition costs one open descriptor per segment, its log —
/// what lets a broker hold tens of thousands of partitions under a default `ulimit -n`.
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    mmap: Option<MmapMut>,
    entries: usize,
    /// Bytes from the start of the file known to have disk blocks (written or reserved):
    /// entries are stored only below this.
    allocated: u64,
    /// Bumped whenever entries may be stored past where a pending [`Self::cut_later`] would
    /// cut the file (which then does not): a store into a page cut off the file is a SIGBUS.
    cuts: Arc<Mutex<u64>>,
    _kind: std::marker::PhantomData<E>,
}

/// How much index file is reserved at a time: 8,192 offset-index entries, the index of about
/// 32 MiB of log at the default `index.interval.bytes`.
const RESERVE_STEP: u64 = 64 * 1024;

pub type OffsetIndex = Index<OffsetEntry>;
pub type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    /// Opens (creating if needed) an index whose valid entries fill the file's current length,
    /// and sizes the file to `max_bytes` so entries can be appended in place.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let len = Self::open_file(path)?.metadata()?.len();
        let entries = (len / E::SIZE as u64) as usize;
        let mut index = Index {
            path: path.to_path_buf(),
            mmap: None,
            entries,
            allocated: len,
            cuts: Arc::default(),
            _kind: std::marker::PhantomData,
        };
        index.resize(max_bytes.max(len))?;
        Ok(index)
    }

    fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
    }

    /// Sizes the file and maps it again; returns the file for a caller that wants to sync it.
    fn resize(&mut self, bytes: u64) -> io::Result<File> {
        let bytes = bytes - bytes % E::SIZE as u64;
        self.mmap = None;
        let file = Self::open_file(&self.path)?;
        file.set_len(bytes)?;
        if bytes > 0 {
            // SAFETY: the file belongs to this index and is only resized through `resize`,
            // which drops the mapping first; no other process is expected to truncate it.
            self.mmap = Some(unsafe { MmapMut::map_mut(&file)? });
        }
        Ok(file)
    }

    fn capacity(&self) -> usize {
        self.mmap.as_ref().map_or(0, |m| m.len() / E::SIZE)
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }

    pub fn entry(&self, i: usize) -> Option<E> {
        if i >= self.entries {
            return None;
        }
        let m = self.mmap.as_ref()?;
        Some(E::read(&m[i * E::SIZE..(i + 1) * E::SIZE]))
    }

    pub fn last(&self) -> Option<E> {
        self.entries.checked_sub(1).and_then(|i| self.entry(i))
    }

    /// Makes sure the next entry will be stored into a disk block the file already has (see
    /// the module's doc): reserves the next step when it would not. An error (ENOSPC) fails
    /// the append that needed the entry.
    pub fn reserve_next(&mut self) -> io::Result<()> {
        let need = ((self.entries + 1) * E::SIZE) as u64;
        let capacity = (self.capacity() * E::SIZE) as u64;
        if need <= self.allocated || need > capacity {
            return Ok(());
        }
        let end = (self.allocated + RESERVE_STEP).min(capacity).max(need);
        *self.cuts.lock() += 1;
        let file = Self::open_file(&self.path)?;
        match super::segment::reserve(&file, self.allocated, end - self.allocated) {
            Ok(()) => {}
            // a file system without fallocate: zeros written allocate the blocks (nothing
            // below `allocated`, where the entries are, is touched)
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.kind() == io::ErrorKind::Unsupported => {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&vec![0u8; (end - self.allocated) as usize], self.allocated)?;
            }
            Err(e) => return Err(e),
        }
        self.allocated = end;
        Ok(())
    }

    /// Appends an entry; returns false when the index is full (the segment must roll). The
    /// entry's place must have been reserved ([`Self::reserve_next`]); an entry that was not
    /// is dropped rather than stored into a sparse page (a sparse index only costs reads a
    /// longer walk).
    pub fn append(&mut self, e: E) -> bool {
        if self.is_full() {
            return false;
        }
        if ((self.entries + 1) * E::SIZE) as u64 > self.allocated {
            return true;
        }
        if let Some(last) = self.last() {
            if e.key() <= last.key() {
                return true; // not an advance: nothing to index
            }
        }
        let at = self.entries * E::SIZE;
        if let Some(m) = self.mmap.as_mut() {
            e.write(&mut m[at..at + E::SIZE]);
            self.entries += 1;
        }
        true
    }

    /// The last entry whose key is `<= key`, by binary search.
    pub fn floor(&self, key: i64) -> Option<E> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry(mid) {
                Some(e) if e.key() <= key => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1).and_then(|i| self.entry(i))
    }

    /// True when keys strictly increase, as every index written by Weir does.
    pub fn is_sane(&self) -> bool {
        let mut prev: Option<E> = None;
        for i in 0..self.entries {
            let Some(e) = self.entry(i) else { return false };
            if prev.is_some_and(|p| e.key() <= p.key() || e.value() < p.value()) {
                return false;
            }
            prev = Some(e);
        }
        true
    }

    /// Drops all entries from `n` on.
    pub fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    /// Drops every entry (before a rebuild). Nothing is known of the file's blocks any more
    /// (it may be a sparse file a crash left untrimmed), so they are reserved again.
    pub fn clear(&mut self) {
        self.entries = 0;
        self.allocated = 0;
        *self.cuts.lock() += 1;
    }

    /// Flushes the mapping to disk.
    pub fn flush(&self) -> io::Result<()> {
        match &self.mmap {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }

    /// Shrinks the file to its entries (segment closed or broker shutting down).
    pub fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        let len = (self.entries * E::SIZE) as u64;
        self.allocated = self.allocated.min(len);
        self.resize(len)?.sync_all()
    }

    /// What cuts the file to its entries, to run later without waiting for the disk (a
    /// segment sealed at a roll: no entry is added any more, the mapping stays and is read
    /// only below the entries; they reach the disk with the kernel's writeback, and an index
    /// a crash left short or untrimmed is rebuilt when the segment is opened).
    pub fn cut_later(&mut self) -> io::Result<impl FnOnce() + Send + 'static> {
        let len = (self.entries * E::SIZE) as u64;
        self.allocated = self.allocated.min(len);
        let file = Self::open_file(&self.path)?;
        let path = self.path.clone();
        let (cuts, seen) = (self.cuts.clone(), *self.cuts.lock());
        Ok(move || {
            let cuts = cuts.lock();
            if *cuts != seen {
                return; // the index grows again (a follower's truncation reopened it)
            }
            if let Err(e) = file.set_len(len) {
                tracing::warn!(index = %path.display(), error = %e, "cannot trim a closed segment's index");
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_finds_the_last_entry_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("a.index"), 80).unwrap();
        for (o, p) in [(0, 0), (10, 100), (20, 200)] {
            idx.reserve_next().unwrap();
            assert!(idx.append(OffsetEntry { relative_offset: o, position: p }));
        }
        assert_eq!(idx.floor(15).unwrap().position, 100);
        assert_eq!(idx.floor(20).unwrap().position, 200);
        assert_eq!(idx.floor(-1), None);
        assert!(idx.is_sane());
    }

    #[test]
    fn trimmed_index_reopens_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.timeindex");
        let mut idx = TimeIndex::open(&path, 120).unwrap();
        for (timestamp, relative_offset) in [(5, 1), (9, 3)] {
            idx.reserve_next().unwrap();
            idx.append(TimeEntry { timestamp, relative_offset });
        }
        idx.trim().unwrap();
        drop(idx);
        let idx = TimeIndex::open(&path, 120).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.floor(8).unwrap().relative_offset, 1);
    }

    #[test]
    fn entries_are_stored_only_into_reserved_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.index");
        let mut idx = OffsetIndex::open(&path, 8 << 20).unwrap();
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        assert_eq!(blocks(&path), 0, "the pre-sized file is sparse");
        // without a reservation an entry is not stored (no store into a sparse page)
        assert!(idx.append(OffsetEntry { relative_offset: 1, position: 1 }));
        assert_eq!(idx.len(), 0);
        for i in 0..10_000u32 {
            idx.reserve_next().unwrap();
            assert!(idx.append(OffsetEntry { relative_offset: i + 1, position: i * 10 }));
        }
        assert_eq!(idx.len(), 10_000);
        let reserved = blocks(&path);
        assert!((80_000..=80_000 + 2 * RESERVE_STEP).contains(&reserved), "reserved in steps: {reserved}");
        assert_eq!(idx.floor(5_000).unwrap().position, 49_990);
        // a rebuild starts from nothing known and reserves again
        idx.clear();
        idx.reserve_next().unwrap();
        assert!(idx.append(OffsetEntry { relative_offset: 3, position: 3 }));
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn full_index_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&dir.path().join("b.index"), 8).unwrap();
        idx.reserve_next().unwrap();
        assert!(idx.append(OffsetEntry { relative_offset: 1, position: 1 }));
        assert!(!idx.append(OffsetEntry { relative_offset: 2, position: 2 }));
    }
}
