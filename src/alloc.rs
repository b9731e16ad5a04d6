//! The process allocator: the system allocator, except that very large requests get lazily
//! committed virtual memory.
//!
//! Why: kafka-protocol's array decoders reserve `Vec::with_capacity(n)` for the element
//! count a request claims, before reading any element. A 20-byte request claiming two billion
//! topics would ask for hundreds of GB; the system allocator refuses, and a refused allocation
//! aborts the process. Here any request of 1 GiB or more is served by an anonymous
//! `MAP_NORESERVE` mapping instead: address space only, no memory is committed until touched,
//! and the decoder fails on the request's real length long before touching much of it. Weir
//! itself never allocates that much (frames are capped by `socket.request.max.bytes`).
//!
//! The `weir` binary and the fuzz targets install it with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at or above this size are mapped lazily.
const HUGE: usize = 1 << 30;

pub struct LazyHugeAlloc;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= page_size()
}

// SAFETY: huge blocks come from mmap and go back to munmap with the same size; every other
// request is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping; no file or existing memory is involved.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` was mapped by `alloc` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, filled from the old one, which is freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_requests_are_mapped_lazily_and_small_ones_pass_through() {
        let a = LazyHugeAlloc;
        let huge = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: layouts are valid and every block is freed with its own layout.
        unsafe {
            let p = a.alloc(huge);
            assert!(!p.is_null(), "64 GiB of address space, not memory");
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            a.dealloc(p, huge);
            let small = Layout::from_size_align(100, 8).unwrap();
            let q = a.alloc(small);
            let q = a.realloc(q, small, HUGE);
            assert!(!q.is_null());
            a.dealloc(q, Layout::from_size_align(HUGE, 8).unwrap());
        }
    }
}
