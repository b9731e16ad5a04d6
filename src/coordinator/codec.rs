//! Primitive encodings shared by the coordinators' record formats (Kafka's non-flexible
//! schema types): i16-length strings (-1 for null), i32-length bytes, big-endian integers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

pub(crate) fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

/// A flexible-version (compact) record value being written: an i16 version, then compact
/// strings and arrays (unsigned varint length + 1, 0 for null) and, at the end, an empty
/// tagged-field section.
pub(crate) struct CompactWriter(pub(crate) BytesMut);

impl CompactWriter {
    pub(crate) fn new(version: i16) -> CompactWriter {
        let mut b = BytesMut::new();
        b.put_i16(version);
        CompactWriter(b)
    }
    pub(crate) fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.put_u8(v as u8);
    }
    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.uvarint(0),
            Some(s) => {
                self.uvarint(s.len() as u64 + 1);
                self.0.put_slice(s.as_bytes());
            }
        }
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.opt_str(Some(s));
    }
    pub(crate) fn finish(self) -> Bytes {
        self.finish_with_tags(&[])
    }
    /// Ends the value with these tagged fields (tag, data), in tag order.
    pub(crate) fn finish_with_tags(mut self, tags: &[(u64, Bytes)]) -> Bytes {
        self.uvarint(tags.len() as u64);
        for (tag, data) in tags {
            self.uvarint(*tag);
            self.uvarint(data.len() as u64);
            self.0.put_slice(data);
        }
        self.0.freeze()
    }
}

/// A cursor over a record key or value that fails instead of panicking on short or malformed
/// input. The KIP-848 records module adds the compact (flexible-version) reads.
pub(crate) struct Reader(pub(crate) Bytes);

impl Reader {
    pub(crate) fn need(&self, n: usize) -> Option<()> {
        (self.0.remaining() >= n).then_some(())
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<Bytes> {
        self.need(n)?;
        Some(self.0.split_to(n))
    }
    pub(crate) fn i8(&mut self) -> Option<i8> {
        self.need(1)?;
        Some(self.0.get_i8())
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.need(2)?;
        Some(self.0.get_i16())
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.need(4)?;
        Some(self.0.get_i32())
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.need(8)?;
        Some(self.0.get_i64())
    }
    pub(crate) fn opt_str(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        self.need(len as usize)?;
        let s = self.0.split_to(len as usize);
        Some(Some(String::from_utf8(s.to_vec()).ok()?))
    }
    pub(crate) fn str(&mut self) -> Option<String> {
        self.opt_str()?
    }
    pub(crate) fn bytes(&mut self) -> Option<Bytes> {
        let len = self.i32()?;
        if len < 0 {
            return Some(Bytes::new());
        }
        self.need(len as usize)?;
        Some(self.0.split_to(len as usize))
    }
}

/// The compact (flexible-version) reads: unsigned-varint lengths and tagged fields.
impl Reader {
    pub(crate) fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            self.need(1)?;
            let b = self.0.get_u8();
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    pub(crate) fn compact_opt_str(&mut self) -> Option<Option<String>> {
        let n = self.uvarint()? as usize;
        if n == 0 {
            return Some(None);
        }
        let b = self.take(n - 1)?;
        Some(Some(String::from_utf8(b.to_vec()).ok()?))
    }
    pub(crate) fn compact_str(&mut self) -> Option<String> {
        self.compact_opt_str()?
    }
    pub(crate) fn compact_count(&mut self) -> Option<usize> {
        let n = self.uvarint()? as usize;
        // every element takes at least one byte: a larger count is corrupt
        (n.saturating_sub(1) <= self.0.remaining()).then_some(n.saturating_sub(1))
    }
    /// Reads a tagged-field section: (tag, data) pairs.
    pub(crate) fn tags(&mut self) -> Option<Vec<(u64, Bytes)>> {
        let mut out = Vec::new();
        for _ in 0..self.uvarint()? {
            let tag = self.uvarint()?;
            let len = self.uvarint()? as usize;
            out.push((tag, self.take(len)?));
        }
        Some(out)
    }
    pub(crate) fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.take(len)?;
        }
        Some(())
    }
}
