//! The storage layer's fault seam: tests make appends or fsyncs under a directory fail with a
//! chosen errno (ENOSPC, EIO, …) to check that a failing disk never produces a false
//! success and that a partition recovers once the disk works again. With nothing injected a
//! check is one relaxed atomic load.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

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
    ANY.store(!f.is_empty() || !GATES.lock().is_empty(), Ordering::Release);
}

/// The injected error for `op` on `path`, if any; first waits at a gate closed on `path`.
pub(crate) fn check(path: &Path, op: Op) -> io::Result<()> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    if op == Op::Sync {
        pass_gate(path);
    }
    let f = FAULTS.lock();
    match f.iter().find(|(d, o, _)| *o == op && path.starts_with(d)) {
        Some((_, _, errno)) => Err(io::Error::from_raw_os_error(*errno)),
        None => Ok(()),
    }
}

/// A closed gate on fsyncs under a directory: `waiting` fsyncs are blocked in it, `permits`
/// may still pass.
struct Gate {
    dir: PathBuf,
    waiting: usize,
    permits: usize,
}

static GATES: Mutex<Vec<Gate>> = Mutex::new(Vec::new());
static GATE_MOVED: Condvar = Condvar::new();

/// Holds every fsync of a file under `dir` (blocking its caller) until [`allow_syncs`] lets
/// some through or [`open_gate`] lets all.
pub fn hold_syncs(dir: &Path) {
    GATES.lock().push(Gate { dir: dir.to_path_buf(), waiting: 0, permits: 0 });
    ANY.store(true, Ordering::Release);
}

/// Lets `n` more fsyncs under `dir` pass its gate.
pub fn allow_syncs(dir: &Path, n: usize) {
    let mut gates = GATES.lock();
    gates.iter_mut().filter(|g| g.dir == dir).for_each(|g| g.permits += n);
    GATE_MOVED.notify_all();
}

/// How many fsyncs are blocked at `dir`'s gate now.
pub fn held_syncs(dir: &Path) -> usize {
    GATES.lock().iter().filter(|g| g.dir == dir).map(|g| g.waiting).sum()
}

/// Removes `dir`'s gate; the fsyncs it held go on.
pub fn open_gate(dir: &Path) {
    GATES.lock().retain(|g| g.dir != dir);
    GATE_MOVED.notify_all();
}

fn pass_gate(path: &Path) {
    let mut gates = GATES.lock();
    let mut counted = false;
    loop {
        let Some(gate) = gates.iter_mut().find(|g| path.starts_with(&g.dir)) else { return };
        if gate.permits > 0 {
            gate.permits -= 1;
            gate.waiting -= usize::from(counted);
            return;
        }
        if !counted {
            gate.waiting += 1;
            counted = true;
        }
        GATE_MOVED.wait(&mut gates);
    }
}
