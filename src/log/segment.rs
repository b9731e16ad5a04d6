//! One log segment: a `.log` file of record batches exactly as appended, with its sparse
//! offset and time indexes. The analogue of Kafka's `LogSegment`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, ControlType, HEADER_SIZE, LAST_OFFSET_DELTA, LOG_OVERHEAD};
use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// File name stem of a segment: its base offset, zero-padded to 20 digits as in Kafka.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// What recovering a segment found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub batches: u64,
    /// Bytes cut after the last whole batch that were written: a torn or garbled tail.
    pub truncated_bytes: u64,
    /// Zero bytes cut after those: space reserved ahead of the writes and never written.
    pub reserved_bytes: u64,
}

/// The first step of space reserved ahead of a segment's writes; each later step is as large
/// as the file already is, up to [`MAX_RESERVE_STEP`], so a quiet partition reserves little.
const MIN_RESERVE_STEP: u64 = 64 * 1024;
const MAX_RESERVE_STEP: u64 = 16 * 1024 * 1024;

/// Bytes read at once while walking batch headers: enough for `lastOffsetDelta`.
const WALK_HEADER: usize = LAST_OFFSET_DELTA + 4;
/// Control batches larger than this are not transaction markers (those are about 80 bytes).
const MAX_MARKER_SIZE: usize = 256;

pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared so that a fetch can send from the file after the log's lock is released.
    log: Arc<File>,
    size: u64,
    /// The file's length as far as known: `size` plus space reserved ahead of the writes (see
    /// [`Segment::reserve_plan`]).
    allocated: u64,
    /// Cleared when the file system cannot reserve space; the file then just grows.
    reserving: bool,
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    index_interval: u64,
    bytes_since_index: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Wall-clock time the segment started receiving data, for `segment.ms`.
    pub created_ms: i64,
}

/// A closed segment's file and length, readable after the log's lock is released: closed
/// segments never change, and an open descriptor stays valid even if the file is deleted.
pub struct SegmentSnapshot {
    pub base_offset: i64,
    pub size: u64,
    pub file: File,
}

impl SegmentSnapshot {
    pub fn for_each_batch(&self, f: impl FnMut(Bytes)) -> io::Result<()> {
        for_each_batch_in(&self.file, self.size, f)
    }
}

/// Calls `f` with every whole batch in the first `len` bytes of `log`, reading in large chunks.
pub fn for_each_batch_in(log: &File, len: u64, mut f: impl FnMut(Bytes)) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut pos = 0u64;
    while pos < len {
        let want = ((len - pos) as usize).min(CHUNK);
        let mut buf = BytesMut::zeroed(want);
        log.read_exact_at(&mut buf, pos)?;
        let mut at = 0usize;
        while let Some((_, size)) = buf.get(at..).and_then(batch::offset_and_size) {
            if at + size > buf.len() {
                break;
            }
            at += size;
        }
        if at == 0 {
            // one batch larger than the chunk: read it whole
            let Some((_, size)) = batch::offset_and_size(&buf) else { return Ok(()) };
            if pos + size as u64 > len || size < HEADER_SIZE {
                return Ok(());
            }
            let mut big = BytesMut::zeroed(size);
            log.read_exact_at(&mut big, pos)?;
            f(big.freeze());
            pos += size as u64;
            continue;
        }
        let mut chunk = buf.freeze();
        let mut taken = 0usize;
        while taken < at {
            let Some((_, size)) = batch::offset_and_size(&chunk) else { break };
            f(chunk.split_to(size));
            taken += size;
        }
        pos += at as u64;
    }
    Ok(())
}

/// Writes all of `parts` at `pos`, retrying short writes.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut pos: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while !parts.is_empty() {
        let iov: Vec<libc::iovec> =
            parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }).collect();
        // SAFETY: every iovec points into a live slice borrowed for the duration of the call.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, pos as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        pos += n as u64;
        let mut written = n as usize;
        while let Some(first) = parts.first_mut() {
            if written < first.len() {
                *first = &first[written..];
                break;
            }
            written -= first.len();
            parts.remove(0);
        }
    }
    Ok(())
}

/// Reserves `len` bytes of `file` from `offset`, extending its length (Linux `fallocate`);
/// bytes already written there are left as they are.
#[cfg(target_os = "linux")]
pub fn reserve(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor the File keeps open.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as libc::off_t, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn reserve(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Runs `work` on the runtime's blocking threads, or here when there is no runtime (tools).
fn run_blocking(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(work)),
        Err(_) => work(),
    }
}

/// A run of whole batches in a segment file, located but not read: fetches send it
/// straight from the file (`sendfile`), other readers copy it out with [`Slice::to_bytes`].
/// Batches never change once written, so the range stays valid without the log's lock.
#[derive(Debug, Clone)]
pub struct Slice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// The offset after the last batch.
    pub end_offset: i64,
}

impl Slice {
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len);
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf.freeze())
    }
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base_offset);
        (dir.join(format!("{stem}.log")), dir.join(format!("{stem}.index")), dir.join(format!("{stem}.timeindex")))
    }

    /// Opens or creates the segment at `base_offset`. With `recover`, or when an index looks
    /// damaged, every batch is re-checked, a torn or garbled tail is truncated and the indexes
    /// are rebuilt; otherwise only the tail after the last index entry is walked.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_bytes: u64,
        index_interval: u64,
        recover: bool,
        now_ms: i64,
    ) -> io::Result<(Segment, Option<Recovered>)> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let log = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&log_path)?;
        let size = log.metadata()?.len();
        let index = OffsetIndex::open(&index_path, index_bytes)?;
        let time_index = TimeIndex::open(&time_path, index_bytes)?;
        let mut seg = Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            allocated: size,
            reserving: true,
            next_offset: base_offset,
            index,
            time_index,
            index_interval,
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
        };
        if recover {
            let report = seg.recover()?;
            return Ok((seg, Some(report)));
        }
        if !seg.indexes_look_right()? {
            tracing::warn!(segment = %seg.log_path.display(), "missing or damaged index: rebuilding it from the log");
            seg.rebuild_indexes()?;
            return Ok((seg, None));
        }
        seg.load_tail()?;
        Ok((seg, None))
    }

    /// Checks the indexes against the log before trusting them: entries in order, the last
    /// offset entry pointing at the batch it names, and no index missing from a segment that
    /// must have entries (a non-empty closed segment always has a time-index entry).
    fn indexes_look_right(&self) -> io::Result<bool> {
        if !(self.index.is_sane() && self.time_index.is_sane()) {
            return Ok(false);
        }
        if self.size > 0 && self.time_index.is_empty() {
            return Ok(false);
        }
        if self.index.is_empty() && self.size > 2 * self.index_interval.max(1) {
            return Ok(false);
        }
        let Some(last) = self.index.last() else { return Ok(true) };
        let pos = u64::from(last.position);
        if pos + WALK_HEADER as u64 > self.size {
            return Ok(false);
        }
        let mut head = [0u8; WALK_HEADER];
        self.log.read_exact_at(&mut head, pos)?;
        let expected = self.base_offset + i64::from(last.relative_offset);
        Ok(batch::offset_and_size(&head).is_some_and(|(base, _)| base == expected))
    }

    /// Rebuilds both indexes from the batches, checking each one's CRC on the way: a batch
    /// that fails it but whose framing holds is reported and kept (the batches around it
    /// stay readable; clients see the damage in that batch alone), while broken framing
    /// ends the readable part of the segment.
    fn rebuild_indexes(&mut self) -> io::Result<()> {
        self.index.clear();
        self.time_index.clear();
        let end = self.size;
        self.size_reset();
        let mut pos = 0u64;
        let mut buf = Vec::new();
        while pos + HEADER_SIZE as u64 <= end {
            let mut head = [0u8; HEADER_SIZE];
            self.log.read_exact_at(&mut head, pos)?;
            let Some(h) = BatchHeader::parse(&head).filter(|h| h.total_size() >= HEADER_SIZE) else { break };
            if pos + h.total_size() as u64 > end || h.base_offset < self.next_offset {
                break;
            }
            buf.resize(h.total_size(), 0);
            self.log.read_exact_at(&mut buf, pos)?;
            if let Err(e) = batch::check_integrity(&buf) {
                tracing::error!(
                    segment = %self.log_path.display(),
                    offset = h.base_offset,
                    position = pos,
                    error = %e,
                    "corrupt record batch in a segment: kept as it is, the batches around it are served"
                );
            }
            self.note_appended(&h, pos, h.total_size() as u64)?;
            pos += h.total_size() as u64;
        }
        if pos < end && !self.trim_reserved_tail(pos, end)? {
            // the files are left as they are, for inspection; reads stop at the damage
            tracing::error!(
                segment = %self.log_path.display(),
                position = pos,
                unreadable_bytes = end - pos,
                "damaged batch framing in a segment: the batches after it cannot be served"
            );
        }
        self.size = pos;
        if !self.is_empty() && self.max_timestamp >= 0 {
            self.time_index.reserve_next()?;
            self.time_index.append(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            });
        }
        self.index.flush()?;
        self.time_index.flush()
    }

    /// Re-validates every batch and rebuilds both indexes, truncating at the first batch that
    /// does not check out.
    pub fn recover(&mut self) -> io::Result<Recovered> {
        self.index.clear();
        self.time_index.clear();
        self.size_reset();
        let file_len = self.log.metadata()?.len();
        let mut report = Recovered::default();
        let mut pos = 0u64;
        let mut buf = Vec::new();
        while pos < file_len {
            let Some(h) = self.check_batch_at(pos, file_len, &mut buf)? else {
                break;
            };
            self.note_appended(&h, pos, h.total_size() as u64)?;
            pos += h.total_size() as u64;
            report.batches += 1;
        }
        if pos < file_len {
            report.reserved_bytes = self.trailing_zeros(pos, file_len)?;
            report.truncated_bytes = file_len - pos - report.reserved_bytes;
            // cut, not just overwritten later: a shorter batch written here must not be
            // followed by whole-looking batches left over from before the crash
            self.log.set_len(pos)?;
            self.log.sync_all()?;
        }
        self.size = pos;
        self.allocated = pos;
        Ok(report)
    }

    /// How many bytes at the end of `from..to` are zero (reserved space never written).
    fn trailing_zeros(&self, from: u64, to: u64) -> io::Result<u64> {
        const CHUNK: u64 = 64 * 1024;
        let mut end = to;
        let mut buf = vec![0u8; CHUNK as usize];
        while end > from {
            let start = end.saturating_sub(CHUNK).max(from);
            let chunk = &mut buf[..(end - start) as usize];
            self.log.read_exact_at(chunk, start)?;
            if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
                return Ok(to - (start + last as u64 + 1));
            }
            end = start;
        }
        Ok(to - from)
    }

    /// When `from..to` (the end of the file) is all zeros — reserved space left untrimmed by a
    /// crash, or by a reserve that raced with a roll — cuts it off there and returns true.
    fn trim_reserved_tail(&mut self, from: u64, to: u64) -> io::Result<bool> {
        if self.trailing_zeros(from, to)? < to - from {
            return Ok(false);
        }
        self.log.set_len(from)?;
        self.size = from;
        self.allocated = from;
        Ok(true)
    }

    fn size_reset(&mut self) {
        self.size = 0;
        self.next_offset = self.base_offset;
        self.bytes_since_index = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
    }

    /// Reads the batch at `pos` and checks it whole; `None` if it is torn or garbled.
    fn check_batch_at(&self, pos: u64, file_len: u64, buf: &mut Vec<u8>) -> io::Result<Option<BatchHeader>> {
        let mut head = [0u8; LOG_OVERHEAD];
        if pos + LOG_OVERHEAD as u64 > file_len {
            return Ok(None);
        }
        self.log.read_exact_at(&mut head, pos)?;
        let Some((offset, total)) = batch::offset_and_size(&head) else {
            return Ok(None);
        };
        // The base offset is outside the CRC, so a torn write there passes the CRC check:
        // batches of the (never compacted) active segment must follow each other exactly.
        if total < HEADER_SIZE || pos + total as u64 > file_len || offset != self.next_offset {
            return Ok(None);
        }
        buf.resize(total, 0);
        self.log.read_exact_at(buf, pos)?;
        Ok(batch::check_integrity(buf).ok())
    }

    /// After a clean open, walks the batches after the last index entry to learn the next
    /// offset and the newest timestamps.
    fn load_tail(&mut self) -> io::Result<()> {
        let start = self.index.last().map_or(0, |e| u64::from(e.position));
        let mut pos = start;
        if let Some(t) = self.time_index.last() {
            self.max_timestamp = t.timestamp;
            self.offset_of_max_timestamp = self.base_offset + i64::from(t.relative_offset);
        }
        let mut head = [0u8; HEADER_SIZE];
        while pos + HEADER_SIZE as u64 <= self.size {
            self.log.read_exact_at(&mut head, pos)?;
            let Some(h) = BatchHeader::parse(&head) else {
                break;
            };
            if h.total_size() < HEADER_SIZE {
                break;
            }
            self.next_offset = h.last_offset().saturating_add(1);
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            pos += h.total_size() as u64;
        }
        if pos < self.size {
            self.trim_reserved_tail(pos, self.size)?;
        }
        self.bytes_since_index = self.size - start;
        Ok(())
    }

    /// Updates indexes and in-memory state for a batch written at `pos`; fails only when the
    /// index entries it adds cannot be given disk space.
    fn note_appended(&mut self, h: &BatchHeader, pos: u64, len: u64) -> io::Result<()> {
        if self.bytes_since_index >= self.index_interval && pos > 0 {
            self.reserve_index_entry()?;
            self.index.append(OffsetEntry { relative_offset: self.relative(h.base_offset), position: pos as u32 });
            self.time_index.append(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        self.next_offset = h.last_offset().saturating_add(1);
        self.size = pos + len;
        Ok(())
    }

    /// Room for one more entry in each index, on blocks the files already have.
    fn reserve_index_entry(&mut self) -> io::Result<()> {
        self.index.reserve_next()?;
        self.time_index.reserve_next()
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// True when a batch ending at `last_offset` of `len` bytes must go to a new segment.
    pub fn must_roll(&self, len: usize, last_offset: i64, segment_bytes: u64) -> bool {
        let full_bytes = self.size > 0 && self.size + len as u64 > segment_bytes;
        let offset_overflow = last_offset - self.base_offset > i64::from(i32::MAX);
        full_bytes || offset_overflow || self.index.is_full() || self.time_index.is_full()
    }

    /// Cuts off whatever a failed append left past the segment's size (and the reserved
    /// space with it).
    pub fn discard_unacknowledged_tail(&mut self) -> io::Result<()> {
        if self.log.metadata()?.len() > self.size {
            self.log.set_len(self.size)?;
        }
        self.allocated = self.size;
        Ok(())
    }

    /// Cuts the segment before the batch holding `offset` (a replica dropping a tail that
    /// diverged from the leader's), durably, and rebuilds its indexes.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        if offset >= self.next_offset {
            return Ok(());
        }
        let pos = self.position_of(offset, self.size)?.unwrap_or(self.size);
        self.log.set_len(pos)?;
        self.log.sync_all()?;
        self.size = pos;
        self.allocated = pos;
        self.rebuild_indexes()
    }

    /// The file range to reserve (`fallocate`) ahead of the writes, when less than half a
    /// step is left: steps grow with the file, never past `segment_bytes`. An fdatasync after
    /// an append into reserved space need not commit a new file length or allocate blocks,
    /// so acks=all waits less (docs/DESIGN.md, Durability). Reads and recovery stop at the
    /// last whole batch; rolling and closing trim the reserve. The flusher reserves, after
    /// an fsync and without the log's lock, so an append never waits for it.
    pub fn reserve_plan(&self, segment_bytes: u64) -> Option<(u64, u64)> {
        let end = self.allocated.max(self.size);
        let step = self.reserve_step();
        if !self.reserving || end - self.size >= step / 2 {
            return None;
        }
        let target = (end + step).min(segment_bytes);
        (target > end).then_some((end, target - end))
    }

    /// How much to reserve at a time: as much as the file holds, within bounds.
    fn reserve_step(&self) -> u64 {
        self.allocated.max(self.size).clamp(MIN_RESERVE_STEP, MAX_RESERVE_STEP)
    }

    /// Reserves the first step of a segment that follows `previous` at a roll, as large as
    /// the step the previous one had reached: a partition busy enough to fill a segment does
    /// not start the next with small steps (each append past the reserve costs its fsync a
    /// metadata commit). Done before the roll's directory sync, which commits it.
    pub fn reserve_after(&mut self, previous: &Segment, segment_bytes: u64) {
        let len = previous.reserve_step().min(segment_bytes);
        if !previous.reserving || !self.reserving || self.allocated >= len {
            return;
        }
        match reserve(&self.log, self.allocated, len - self.allocated) {
            Ok(()) => self.allocated = len,
            Err(e) => {
                tracing::debug!(segment = %self.log_path.display(), error = %e, "cannot reserve log space ahead of writes");
                self.reserving = false;
            }
        }
    }

    /// Records space reserved by [`reserve`] up to `end`, or (`None`) that the file system
    /// cannot reserve, after which the file just grows with each append.
    pub fn note_reserved(&mut self, end: Option<u64>) {
        match end {
            Some(end) => self.allocated = self.allocated.max(end),
            None => self.reserving = false,
        }
    }

    /// Appends one batch whose header has already been assigned its offset.
    pub fn append(&mut self, bytes: &[u8], h: &BatchHeader) -> io::Result<()> {
        self.append_parts(&[bytes], h)
    }

    /// Appends one batch given in pieces (an assigned header copy and the rest), with one
    /// `pwritev`.
    pub fn append_parts(&mut self, parts: &[&[u8]], h: &BatchHeader) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        super::faults::check(&self.log_path, super::faults::Op::Write)?;
        // the index space first: a batch is written only when it can be indexed
        if self.bytes_since_index >= self.index_interval {
            self.reserve_index_entry()?;
        }
        write_all_vectored_at(&self.log, parts, self.size)?;
        self.note_appended(h, self.size, len as u64)
    }

    /// The position of the batch holding `offset`, found from the sparse index and a short
    /// walk of batch headers; `None` when the segment has no such batch below `limit`.
    fn position_of(&self, offset: i64, limit: u64) -> io::Result<Option<u64>> {
        let mut pos = self.index.floor(offset - self.base_offset).map_or(0, |e| u64::from(e.position));
        let mut head = [0u8; WALK_HEADER];
        while pos + WALK_HEADER as u64 <= limit {
            self.log.read_exact_at(&mut head, pos)?;
            let Some((base, size)) = batch::offset_and_size(&head) else {
                return Ok(None);
            };
            let last = base
                + i64::from(i32::from_be_bytes([
                    head[LAST_OFFSET_DELTA],
                    head[LAST_OFFSET_DELTA + 1],
                    head[LAST_OFFSET_DELTA + 2],
                    head[LAST_OFFSET_DELTA + 3],
                ]));
            if last >= offset {
                return Ok(Some(pos));
            }
            pos += size as u64;
        }
        Ok(None)
    }

    /// Locates whole batches starting with the one holding `offset`, up to `max_bytes`, never
    /// past byte `limit` or a batch whose base offset is `>= max_offset`. With `min_one`, the
    /// first batch is returned whole even when larger than `max_bytes` (KIP-74). Only batch
    /// headers are read, a window at a time.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> io::Result<Option<Slice>> {
        self.read_up_to(offset, max_bytes, max_offset, min_one, i64::MAX)
    }

    /// [`Self::read`], stopping after the batch that takes the slice to `max_records` offsets
    /// from `offset` (a share fetch wants about that many records, not `max_bytes` of them).
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
        max_records: i64,
    ) -> io::Result<Option<Slice>> {
        const WINDOW: usize = 16 * 1024;
        let limit = self.size;
        let Some(start) = self.position_of(offset, limit)? else {
            return Ok(None);
        };
        let mut window = vec![0u8; WINDOW];
        let (mut window_pos, mut window_len) = (start, 0usize);
        let mut end = start;
        let mut first_offset = None;
        let mut end_offset = offset;
        while end + WALK_HEADER as u64 <= limit {
            let in_window = end >= window_pos && end + WALK_HEADER as u64 <= window_pos + window_len as u64;
            if !in_window {
                window_len = ((limit - end) as usize).min(WINDOW);
                window_pos = end;
                self.log.read_exact_at(&mut window[..window_len], end)?;
            }
            let at = (end - window_pos) as usize;
            let head = &window[at..at + WALK_HEADER];
            let Some((base, size)) = batch::offset_and_size(head) else { break };
            let next = end + size as u64;
            if base >= max_offset || size < WALK_HEADER || next > limit {
                break;
            }
            let fits = next - start <= max_bytes as u64;
            let first_whole = first_offset.is_none() && min_one; // KIP-74
            if !(fits || first_whole) {
                break;
            }
            let delta = i32::from_be_bytes([
                head[LAST_OFFSET_DELTA],
                head[LAST_OFFSET_DELTA + 1],
                head[LAST_OFFSET_DELTA + 2],
                head[LAST_OFFSET_DELTA + 3],
            ]);
            first_offset.get_or_insert(base);
            end_offset = base + i64::from(delta) + 1;
            end = next;
            if !fits || end_offset.saturating_sub(offset) >= max_records {
                break;
            }
        }
        Ok(first_offset.map(|first_offset| Slice {
            file: self.log.clone(),
            position: start,
            len: (end - start) as usize,
            first_offset,
            end_offset,
        }))
    }

    /// The first batch holding offsets `>= from` (from the time index's hint on) whose max
    /// timestamp is `>= ts`.
    pub fn find_batch_by_timestamp(&self, ts: i64, from: i64) -> io::Result<Option<Bytes>> {
        let start_offset = self
            .time_index
            .floor(ts.saturating_sub(1))
            .map_or(self.base_offset, |e| self.base_offset + i64::from(e.relative_offset))
            .max(from);
        let Some(mut pos) = self.position_of(start_offset, self.size)? else {
            return Ok(None);
        };
        let mut head = [0u8; HEADER_SIZE];
        while pos + HEADER_SIZE as u64 <= self.size {
            self.log.read_exact_at(&mut head, pos)?;
            let Some(h) = BatchHeader::parse(&head) else {
                return Ok(None);
            };
            if h.max_timestamp >= ts {
                let mut buf = BytesMut::zeroed(h.total_size());
                self.log.read_exact_at(&mut buf, pos)?;
                return Ok(Some(buf.freeze()));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads the whole batch whose base offset is `offset`'s batch (used for max-timestamp).
    pub fn batch_containing(&self, offset: i64) -> io::Result<Option<Bytes>> {
        let Some(pos) = self.position_of(offset, self.size)? else {
            return Ok(None);
        };
        let mut head = [0u8; LOG_OVERHEAD];
        self.log.read_exact_at(&mut head, pos)?;
        let Some((_, size)) = batch::offset_and_size(&head) else {
            return Ok(None);
        };
        let mut buf = BytesMut::zeroed(size);
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(Some(buf.freeze()))
    }

    /// Calls `f` with every whole batch of the segment, in order.
    pub fn for_each_batch(&self, f: impl FnMut(Bytes)) -> io::Result<()> {
        for_each_batch_in(&self.log, self.size, f)
    }

    /// Calls `f` with the header of every batch, reading only headers (start-up rebuilds),
    /// plus the control type of transaction markers, which are small enough to read whole.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader, Option<ControlType>)) -> io::Result<()> {
        let mut head = [0u8; HEADER_SIZE];
        let mut pos = 0u64;
        while pos + HEADER_SIZE as u64 <= self.size {
            self.log.read_exact_at(&mut head, pos)?;
            let Some(h) = BatchHeader::parse(&head) else { break };
            if h.total_size() < HEADER_SIZE || pos + h.total_size() as u64 > self.size {
                break;
            }
            let control = if h.is_control() && h.total_size() <= MAX_MARKER_SIZE {
                let mut whole = vec![0u8; h.total_size()];
                self.log.read_exact_at(&mut whole, pos)?;
                batch::control_type(&whole)
            } else {
                None
            };
            f(&h, control);
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// A frozen view of this (closed) segment for reading without the log's lock.
    pub fn snapshot(&self) -> io::Result<SegmentSnapshot> {
        Ok(SegmentSnapshot { base_offset: self.base_offset, size: self.size, file: self.log.as_ref().try_clone()? })
    }

    /// Called when the segment stops being the active one at shutdown or after a clean:
    /// records its final time-index entry, trims both indexes and makes it all durable.
    pub fn close_for_writes(&mut self) -> io::Result<()> {
        self.append_final_time_entry()?;
        self.index.trim()?;
        self.time_index.trim()?;
        // the file, not `allocated`: a reserve made just before the roll may not be noted yet
        if self.log.metadata()?.len() > self.size {
            self.log.set_len(self.size)?;
            self.allocated = self.size;
            // sync_all: the cut length must be durable, whatever fdatasync counts as data
            return self.log.sync_all();
        }
        self.log.sync_data()
    }

    /// [`Self::close_for_writes`] at a roll, on the append path, without waiting for the disk
    /// more than an ordinary fsync does: the log's records are fdatasynced first (into space
    /// reserved ahead, so no metadata to commit), then the reserve and (in the background) the
    /// indexes are cut to size without a sync. A crash that loses those cuts leaves a zero tail that opening
    /// trims, or indexes that opening finds wrong and rebuilds from the durable log.
    pub fn seal(&mut self) -> io::Result<()> {
        self.append_final_time_entry()?;
        self.log.sync_data()?;
        // cutting an index file takes milliseconds (its pages, its reserved blocks): done on
        // a blocking thread, through handles opened now (so a later clean's rename of the
        // path is never cut instead); nothing reads past the entries meanwhile
        let (cut_index, cut_time_index) = (self.index.cut_later()?, self.time_index.cut_later()?);
        run_blocking(move || {
            cut_index();
            cut_time_index();
        });
        if self.log.metadata()?.len() > self.size {
            self.log.set_len(self.size)?;
        }
        self.allocated = self.size;
        Ok(())
    }

    /// A closed segment's newest timestamp, as the time index's last entry.
    fn append_final_time_entry(&mut self) -> io::Result<()> {
        if self.max_timestamp >= 0 {
            self.time_index.reserve_next()?;
            self.time_index.append(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            });
        }
        Ok(())
    }

    /// Removes the segment's files.
    pub fn delete(self) -> io::Result<()> {
        let paths = [self.log_path.clone(), self.index.path().to_path_buf(), self.time_index.path().to_path_buf()];
        drop(self);
        for p in paths {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// A second handle on the log file, so it can be fsynced without holding the log's lock.
    pub fn file_handle(&self) -> io::Result<File> {
        self.log.as_ref().try_clone()
    }

    pub fn flush_indexes(&self) -> io::Result<()> {
        self.index.flush()?;
        self.time_index.flush()
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn append(seg: &mut Segment, n: i32, ts: i64) {
        let mut b = make_batch(n, ts);
        batch::assign(&mut b, seg.next_offset(), 0, None);
        let h = BatchHeader::parse(&b).unwrap();
        seg.append(&b, &h).unwrap();
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seg, _) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        for i in 0..20 {
            append(&mut seg, 3, i);
        }
        assert_eq!(seg.next_offset(), 60);
        let s = seg.read(31, 1 << 20, i64::MAX, true).unwrap().unwrap();
        assert_eq!((s.first_offset, s.end_offset), (30, 60));
        assert_eq!(s.len as u64, seg.size() - s.position);
        let s = seg.read(31, 10, i64::MAX, true).unwrap().unwrap();
        assert_eq!(BatchHeader::parse(&s.to_bytes().unwrap()).unwrap().record_count, 3, "KIP-74: one whole batch");
        assert_eq!(s.end_offset, 33);
        let s = seg.read(0, 1 << 20, 9, true).unwrap().unwrap();
        assert_eq!(s.end_offset, 9, "stops before the batch at max_offset");
        assert!(seg.read(31, 10, i64::MAX, false).unwrap().is_none());
        assert!(seg.read(60, 1 << 20, i64::MAX, true).unwrap().is_none());
        let found = seg.find_batch_by_timestamp(7, 0).unwrap().unwrap();
        assert_eq!(BatchHeader::parse(&found).unwrap().base_offset, 21);
    }

    #[tokio::test]
    async fn a_roll_seals_without_syncing_indexes_and_the_next_segment_starts_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seg, _) = Segment::open(dir.path(), 0, 1 << 20, 64, false, 0).unwrap();
        for i in 0..400 {
            append_reserving(&mut seg, 3, i);
        }
        let (size, entries) = (seg.size(), seg.index.len());
        assert!(file_len(dir.path()) > size, "space reserved ahead");
        seg.seal().unwrap();
        assert_eq!(file_len(dir.path()), size, "the reserve is cut at once");
        let mut next = Segment::open(dir.path(), seg.next_offset(), 1 << 20, 64, false, 0).unwrap().0;
        next.reserve_after(&seg, 1 << 30);
        assert_eq!(next.allocated, seg.reserve_step(), "the next segment starts with the step reached");
        assert!(next.allocated >= MIN_RESERVE_STEP);
        // the indexes are cut on a blocking thread; reads meanwhile see every entry
        assert_eq!(seg.read(100, 1 << 20, i64::MAX, true).unwrap().unwrap().first_offset, 99);
        let index_len = || std::fs::metadata(seg.index.path()).unwrap().len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while index_len() != (entries * 8) as u64 {
            assert!(std::time::Instant::now() < deadline, "the index is cut to its entries");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop((seg, next));
        // reopened (as after a crash, before any trim was durable): the same entries
        let (seg, _) = Segment::open(dir.path(), 0, 1 << 20, 64, false, 0).unwrap();
        assert_eq!((seg.size(), seg.index.len()), (size, entries));
    }

    /// An append followed by what the flusher does after its fsync: reserve when due.
    fn append_reserving(seg: &mut Segment, n: i32, ts: i64) {
        append(seg, n, ts);
        if let Some((offset, len)) = seg.reserve_plan(1 << 30) {
            reserve(&seg.log, offset, len).unwrap();
            seg.note_reserved(Some(offset + len));
        }
    }

    fn file_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("00000000000000000000.log")).unwrap().len()
    }

    #[test]
    fn space_reserved_ahead_of_writes_is_trimmed_on_close_and_released_by_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seg, _) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        for i in 0..5 {
            append_reserving(&mut seg, 2, i);
        }
        let good = seg.size();
        assert!(file_len(dir.path()) >= good + MIN_RESERVE_STEP / 2, "space reserved ahead");
        let s = seg.read(0, 1 << 20, i64::MAX, true).unwrap().unwrap();
        assert_eq!((s.len as u64, s.end_offset), (good, 10), "reads stop at the last batch");
        seg.close_for_writes().unwrap();
        assert_eq!(file_len(dir.path()), good, "closing trims the reserve");
        drop(seg);

        // a crash with space reserved: recovery releases it, and reports it apart from damage
        let (mut seg, _) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        assert_eq!(seg.next_offset(), 10);
        append_reserving(&mut seg, 2, 9);
        let good = seg.size();
        let reserved_to = file_len(dir.path());
        drop(seg);
        let (mut seg, rec) = Segment::open(dir.path(), 0, 1024, 64, true, 0).unwrap();
        let rec = rec.unwrap();
        assert_eq!((rec.batches, rec.truncated_bytes, rec.reserved_bytes), (6, 0, reserved_to - good));
        assert_eq!((seg.size(), seg.next_offset(), file_len(dir.path())), (good, 12, good));

        // a torn batch inside reserved space: its written bytes are damage, the zeros are not
        append_reserving(&mut seg, 2, 10);
        let torn_at = good;
        let reserved_to = file_len(dir.path());
        drop(seg);
        let path = dir.path().join("00000000000000000000.log");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let junk = [0x5au8; 30];
        f.write_all_at(&junk, torn_at).unwrap(); // the next batch's header, torn
        drop(f);
        let (seg, rec) = Segment::open(dir.path(), 0, 1024, 64, true, 0).unwrap();
        let rec = rec.unwrap();
        assert_eq!(rec.batches, 6, "the batch written over the torn bytes goes too");
        assert_eq!(rec.truncated_bytes + rec.reserved_bytes, reserved_to - good);
        assert!(rec.truncated_bytes >= 30 && rec.reserved_bytes > 0, "{rec:?}");
        assert_eq!((seg.size(), seg.next_offset()), (good, 12));
    }

    #[test]
    fn a_clean_open_ignores_an_untrimmed_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seg, _) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        for i in 0..3 {
            append_reserving(&mut seg, 2, i);
        }
        let good = seg.size();
        seg.flush_indexes().unwrap();
        drop(seg);
        assert!(file_len(dir.path()) > good);
        let (mut seg, rec) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        assert!(rec.is_none());
        assert_eq!((seg.size(), seg.next_offset(), file_len(dir.path())), (good, 6, good));
        append_reserving(&mut seg, 2, 3);
        let s = seg.read(6, 1 << 20, i64::MAX, true).unwrap().unwrap();
        assert_eq!((s.position, s.end_offset), (good, 8), "appends continue right after the data");
    }

    #[test]
    fn recovery_truncates_a_torn_tail_and_a_garbled_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seg, _) = Segment::open(dir.path(), 0, 1024, 64, false, 0).unwrap();
        for i in 0..5 {
            append(&mut seg, 2, i);
        }
        let good = seg.size();
        drop(seg);
        let path = dir.path().join("00000000000000000000.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&make_batch(2, 9)[..30]);
        std::fs::write(&path, &bytes).unwrap();
        let (seg, rec) = Segment::open(dir.path(), 0, 1024, 64, true, 0).unwrap();
        let rec = rec.unwrap();
        // written zeros at the end of a torn write cannot be told from unwritten space
        assert_eq!(rec.truncated_bytes + rec.reserved_bytes, 30);
        assert_eq!((seg.size(), seg.next_offset()), (good, 10));
        drop(seg);
        // garble the third batch: everything from it on goes
        let mut bytes = std::fs::read(&path).unwrap();
        let third = 2 * (bytes.len() / 5) + HEADER_SIZE + 2;
        bytes[third] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (seg, rec) = Segment::open(dir.path(), 0, 1024, 64, true, 0).unwrap();
        assert_eq!(rec.unwrap().batches, 2);
        assert_eq!(seg.next_offset(), 4);
        drop(seg);
        // a torn base offset (outside the CRC) in the second batch: cut there too
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.len() / 2;
        bytes[second + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (seg, rec) = Segment::open(dir.path(), 0, 1024, 64, true, 0).unwrap();
        assert_eq!(rec.unwrap().batches, 1, "a batch must start where the one before ended");
        assert_eq!(seg.next_offset(), 2);
    }
}
