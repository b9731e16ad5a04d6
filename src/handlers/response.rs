//! Response frames, and the zero-copy path for fetched records.
//!
//! A Fetch response is mostly record batches that already sit in segment files. Rather than
//! read them into memory and copy them again into the encoded response, the fetch handler
//! gives each partition's `records` a *stand-in*: a slice of a static, never-touched zero
//! region with the batches' exact length. kafka-protocol encodes the response as usual (it
//! only needs the length), and [`SpliceBuf`] — the buffer it encodes into — recognises each
//! stand-in by its address and records a file range in its place. The connection then writes
//! the encoded parts and `sendfile`s the ranges, so record bytes go from the page cache to the
//! socket without passing through Weir's memory.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::FrameError;
use crate::log::segment::Slice;

/// Bytes of stand-ins one response can use; a fetch larger than this copies the rest.
const STAND_IN_LEN: usize = 64 << 20;
/// Zero-initialised, so it lives in `.bss` and is never written or read.
static STAND_IN: [u8; STAND_IN_LEN] = [0; STAND_IN_LEN];

/// One frame to write to the client.
pub enum Response {
    Frame(Bytes),
    /// Encoded bytes with file ranges between them, in order.
    Spliced(Vec<Part>),
}

pub enum Part {
    Bytes(Bytes),
    File(Slice),
}

/// The file ranges a response's stand-ins represent.
#[derive(Default)]
pub struct FileRecords {
    /// (offset of the stand-in in [`STAND_IN`], the range it stands for), by offset.
    ranges: Vec<(usize, Slice)>,
    used: usize,
}

impl FileRecords {
    /// Bytes to put in the response for `slice`: a stand-in when there is room, else the
    /// batches copied out of the file.
    pub fn records_for(&mut self, slice: Slice) -> std::io::Result<Bytes> {
        if slice.len == 0 || self.used + slice.len > STAND_IN_LEN {
            return slice.to_bytes();
        }
        let start = self.used;
        self.used += slice.len;
        let stand_in = Bytes::from_static(&STAND_IN[start..start + slice.len]);
        self.ranges.push((start, slice));
        Ok(stand_in)
    }

    /// The range a slice handed to `put_slice` stands for, if it is one of ours.
    fn lookup(&self, src: &[u8]) -> Option<&Slice> {
        let base = STAND_IN.as_ptr() as usize;
        let at = (src.as_ptr() as usize).checked_sub(base)?;
        if src.is_empty() || at + src.len() > STAND_IN_LEN {
            return None;
        }
        let i = self.ranges.binary_search_by_key(&at, |(start, _)| *start).ok()?;
        let (_, slice) = &self.ranges[i];
        (slice.len == src.len()).then_some(slice)
    }
}

/// The buffer a spliced response is encoded into: inline bytes, with a file part wherever a
/// stand-in is put. Messages never seek back into earlier bytes (only record-batch encoding
/// does, which never runs here), so seeking and ranges work within the current inline part.
pub struct SpliceBuf<'a> {
    files: &'a FileRecords,
    parts: Vec<Part>,
    current: BytesMut,
    /// Logical offset at which `current` starts.
    current_start: usize,
}

impl<'a> SpliceBuf<'a> {
    fn new(files: &'a FileRecords, capacity: usize) -> SpliceBuf<'a> {
        SpliceBuf { files, parts: Vec::new(), current: BytesMut::with_capacity(capacity), current_start: 0 }
    }

    fn finish(mut self) -> Vec<Part> {
        if !self.current.is_empty() {
            self.parts.push(Part::Bytes(self.current.freeze()));
        }
        self.parts
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, which upholds BufMut's contract.
unsafe impl BufMut for SpliceBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the chunk this buffer handed out.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.files.lookup(src) {
            Some(slice) => {
                let done = std::mem::take(&mut self.current);
                self.current_start += done.len() + slice.len;
                if !done.is_empty() {
                    self.parts.push(Part::Bytes(done.freeze()));
                }
                self.parts.push(Part::File(slice.clone()));
            }
            None => self.current.put_slice(src),
        }
    }
}

impl ByteBufMut for SpliceBuf<'_> {
    fn offset(&self) -> usize {
        self.current_start + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        let local = offset.saturating_sub(self.current_start);
        self.current.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.current_start).min(self.current.len());
        let end = r.end.saturating_sub(self.current_start).clamp(start, self.current.len());
        &mut self.current[start..end]
    }
}

/// Frames a response (size, header, body); with file records, as spliced parts.
pub fn encode<Resp: Encodable + HeaderVersion>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    resp: &Resp,
    files: Option<&FileRecords>,
) -> Result<Response, FrameError> {
    let err = |e: anyhow::Error| FrameError::Encode(key, version, e.to_string());
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = Resp::header_version(version);
    let size = header.compute_size(header_version).map_err(err)? + resp.compute_size(version).map_err(err)?;
    let size_prefix = i32::try_from(size).map_err(|_| FrameError::Encode(key, version, "too large".into()))?;
    match files.filter(|f| !f.ranges.is_empty()) {
        None => {
            let mut buf = BytesMut::with_capacity(4 + size);
            buf.put_i32(size_prefix);
            header.encode(&mut buf, header_version).map_err(err)?;
            resp.encode(&mut buf, version).map_err(err)?;
            Ok(Response::Frame(buf.freeze()))
        }
        Some(files) => {
            let inline = (4 + size).saturating_sub(files.used).min(1 << 20);
            let mut buf = SpliceBuf::new(files, inline);
            buf.put_i32(size_prefix);
            header.encode(&mut buf, header_version).map_err(err)?;
            resp.encode(&mut buf, version).map_err(err)?;
            Ok(Response::Spliced(buf.finish()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn stand_ins_become_file_parts_and_everything_else_stays_inline() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let file = Arc::new(f);
        let slice =
            |position: u64, len: usize| Slice { file: file.clone(), position, len, first_offset: 0, end_offset: 1 };
        let mut files = FileRecords::default();
        let a = files.records_for(slice(2, 3)).unwrap();
        let b = files.records_for(slice(6, 4)).unwrap();
        let mut buf = SpliceBuf::new(&files, 16);
        buf.put_slice(b"head");
        buf.put_slice(&a);
        buf.put_slice(b"mid");
        buf.put_slice(&b);
        assert_eq!(buf.offset(), 4 + 3 + 3 + 4);
        let parts = buf.finish();
        let shape: Vec<String> = parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                Part::File(s) => String::from_utf8_lossy(&s.to_bytes().unwrap()).into_owned(),
            })
            .collect();
        assert_eq!(shape, ["head", "234", "mid", "6789"]);
        // a slice of the stand-in region that is not a registered range is copied like any other
        let mut other = SpliceBuf::new(&files, 16);
        other.put_slice(&STAND_IN[1..3]);
        assert!(matches!(other.finish().as_slice(), [Part::Bytes(b)] if b.len() == 2));
    }
}
