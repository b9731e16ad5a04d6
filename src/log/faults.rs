//! The storage layer's fault seam: tests make appends or fsyncs under a directory fail with a
//! chosen errno (ENOSPC, EIO, …) to check that a failing disk never produces a false
//! success and that a partition recovers once the disk works again. With nothing injected a
//! check is one relaxed atomic load.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// The storage operations that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Appending a batch to a segment.
    Write,
    /// fdatasync of a segment.
    Sync,
}

static ANY: AtomicBool = AtomicBool::new(false);
static FAULTS: Mutex<Vec<(PathBuf, Op, i32)>> = Mutex::new(Vec::new());

/// Makes `op` fail with `errno` for every file under `dir` until [`clear`] is called.
pub fn inject(dir: &Path, op: Op, errno: i32) {
    let mut f = FAULTS.lock();
    f.push((dir.to_path_buf(), op, errno));
    ANY.store(true, Ordering::Release);
}

/// Removes every fault injected under `dir`.
pub fn clear(dir: &Path) {
    let mut f = FAULTS.lock();
    f.retain(|(d, _, _)| d != dir);
    ANY.store(!f.is_empty(), Ordering::Release);
}

/// The injected error for `op` on `path`, if any.
pub(crate) fn check(path: &Path, op: Op) -> io::Result<()> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    let f = FAULTS.lock();
    match f.iter().find(|(d, o, _)| *o == op && path.starts_with(d)) {
        Some((_, _, errno)) => Err(io::Error::from_raw_os_error(*errno)),
        None => Ok(()),
    }
}
