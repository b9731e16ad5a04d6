//! A partition as the request path sees it: its [`Log`] behind a lock, the fetches waiting for
//! new data, and group-committed fsyncs.
//!
//! Group commit: a partition's flusher task, started when a durable append is announced, runs
//! fsyncs back to back, each covering everything appended when it starts, while anyone waits
//! for more, then exits. Producers only wait for the flushed offset to pass theirs. A finished
//! fsync wakes all its waiters at once (a watch channel), so no acknowledgement waits behind
//! another's wake-up or behind its connection's earlier responses, and the next fsync starts
//! as soon as the previous one returns.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use crate::log::{AppendInfo, Log, LogError};

pub mod replica;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: RwLock<Log>,
    /// Fetches parked until this partition's high watermark moves.
    waiters: Mutex<Vec<Arc<Notify>>>,
    /// What the flusher publishes: everything below `offset` is on disk; `failures` counts
    /// failed fsyncs, so waiters can fail too.
    flushed: watch::Sender<Flushed>,
    /// Whether a flusher task is running.
    flushing: AtomicBool,
    /// The highest offset anyone waits to see flushed.
    wanted: AtomicI64,
    /// This broker's part in the partition's replication (one replica, leader, follower).
    role: Mutex<replica::Role>,
    /// A replicated partition's high watermark and ISR as acks=all waiters see them.
    replication: watch::Sender<replica::Replication>,
    /// Told when a write or fsync of this partition failed (see [`Partition::storage_failed`]).
    on_storage_failure: std::sync::OnceLock<StorageFailureHook>,
}

/// What a partition calls when its storage failed: the broker's replica manager takes the
/// replica out of leadership and the ISR (`crate::replica::storage`).
pub type StorageFailureHook = Box<dyn Fn(&Partition) + Send + Sync>;

/// The flusher's progress, as waiters see it.
#[derive(Debug, Clone, Copy)]
struct Flushed {
    offset: i64,
    failures: u64,
}

/// The running flusher task. Its end (idle, failed, or the runtime shutting down) clears the
/// flag and wakes every waiter, so one of them starts a new flusher if still needed.
struct Flusher(Arc<Partition>);

impl Drop for Flusher {
    fn drop(&mut self) {
        self.0.flushing.store(false, Ordering::SeqCst);
        self.0.flushed.send_modify(|_| ());
    }
}

impl Partition {
    pub fn new(topic: String, index: i32, log: Log) -> Partition {
        let flushed = log.log_end_offset();
        Partition {
            topic,
            index,
            log: RwLock::new(log),
            waiters: Mutex::new(Vec::new()),
            flushed: watch::Sender::new(Flushed { offset: flushed, failures: 0 }),
            flushing: AtomicBool::new(false),
            wanted: AtomicI64::new(flushed),
            role: Mutex::new(replica::Role::Single),
            replication: watch::Sender::new(replica::Replication::default()),
            on_storage_failure: std::sync::OnceLock::new(),
        }
    }

    /// Sets what a storage failure of this partition calls (once, when it is created).
    pub fn on_storage_failure(&self, hook: StorageFailureHook) {
        let _ = self.on_storage_failure.set(hook);
    }

    /// A write or an fsync of this partition failed: logged, and reported to the hook.
    pub fn storage_failed(&self, error: &dyn std::fmt::Display) {
        tracing::error!(topic = %self.topic, partition = self.index, %error, "partition storage failed");
        if let Some(hook) = self.on_storage_failure.get() {
            hook(self);
        }
    }

    /// Shared access to the log for reads.
    pub fn log(&self) -> parking_lot::RwLockReadGuard<'_, Log> {
        self.log.read()
    }

    /// Exclusive access for admin operations (retention, DeleteRecords, config changes).
    pub fn log_mut(&self) -> parking_lot::RwLockWriteGuard<'_, Log> {
        self.log.write()
    }

    /// Appends a produce request's records and wakes parked fetches.
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let appended = self.log.write().append(records, now_ms);
        if let Err(e @ LogError::Io(_)) = &appended {
            self.storage_failed(e);
        }
        let info = appended?;
        self.update_high_watermark();
        self.wake_waiters();
        Ok(info)
    }

    /// Writes a transaction's commit or abort marker and wakes fetches (the last stable
    /// offset may have moved).
    pub fn append_end_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: crate::log::batch::ControlType,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let info = self.log.write().append_end_txn_marker(producer_id, producer_epoch, control, 0, now_ms)?;
        self.update_high_watermark();
        self.wake_waiters();
        Ok(info)
    }

    /// Registers a fetch to be woken on the next append.
    pub fn add_waiter(&self, notify: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        // Drop registrations of fetches that already returned, so an idle partition's list
        // stays about as long as its live fetchers. Pruned only once it holds a few: a
        // follower's session registers the same wake-up on every fetch, and pruning on each
        // registration was a visible share of an idle leader's CPU.
        if waiters.len() >= 4 {
            waiters.retain(|w| Arc::strong_count(w) > 1);
        }
        if !waiters.iter().any(|w| Arc::ptr_eq(w, notify)) {
            waiters.push(notify.clone());
        }
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for w in waiters {
            w.notify_one();
        }
    }

    /// Announces that `offset` will be waited for and makes sure a flusher is running to
    /// cover it; a running one keeps going until it has.
    pub fn want_flushed(self: &Arc<Self>, offset: i64) {
        self.wanted.fetch_max(offset, Ordering::SeqCst);
        if self.flushed.borrow().offset < offset && !self.flushing.swap(true, Ordering::SeqCst) {
            let flusher = Flusher(self.clone());
            // one blocking thread runs the whole burst of fsyncs: no hop back to the runtime
            // between one fsync's end and the next one's start
            tokio::task::spawn_blocking(move || {
                if let Err(e) = flusher.0.flush_while_wanted() {
                    flusher.0.storage_failed(&format!("fsync failed: {e}"));
                }
            });
        }
    }

    /// Everything below this offset is on disk (fsynced since it was last written).
    pub fn durable_offset(&self) -> i64 {
        self.flushed.borrow().offset
    }

    /// After the log end moved back: what was flushed beyond it is no longer the log's, so
    /// the flushed offset comes back with it (called with the log's write lock held).
    fn truncated(&self, log: &Log) {
        let end = log.log_end_offset();
        self.flushed.send_if_modified(|f| {
            let above = f.offset > end;
            f.offset = f.offset.min(end);
            above
        });
    }

    /// Makes everything up to `offset` durable, sharing fsyncs between concurrent callers;
    /// fails when an fsync fails before `offset` is covered.
    pub async fn flush_to(self: &Arc<Self>, offset: i64) -> Result<(), LogError> {
        // nothing beyond the log end can be flushed: waiting for it would wait forever
        let offset = offset.min(self.log.read().log_end_offset());
        let mut flushed = self.flushed.subscribe();
        let failures = flushed.borrow_and_update().failures;
        loop {
            let now = *flushed.borrow_and_update();
            if now.offset >= offset {
                return Ok(());
            }
            if now.failures != failures {
                return Err(LogError::Io(std::io::Error::other("fsync failed")));
            }
            // starts a flusher if none runs (the last one may have stopped short of us)
            self.want_flushed(offset);
            if flushed.changed().await.is_err() {
                return Ok(()); // unreachable: the sender lives as long as the partition
            }
        }
    }

    /// The flusher's loop (blocking): fsync everything appended so far, publish it, and go
    /// again while someone waits for an offset beyond what was covered. A failure is counted
    /// in the published value, so the waiters fail instead of starting flusher after flusher.
    fn flush_while_wanted(&self) -> Result<(), LogError> {
        let result = self.flush_back_to_back();
        if result.is_err() {
            self.flushed.send_modify(|f| f.failures += 1);
        }
        result
    }

    fn flush_back_to_back(&self) -> Result<(), LogError> {
        loop {
            let target = self.log.read().flush_target()?;
            let (covered, segment) = (target.covered, target.segment);
            if covered <= self.flushed.borrow().offset {
                return Ok(()); // nothing appended since the last fsync
            }
            let started = std::time::Instant::now();
            if let Err(e) = target.sync() {
                self.log.write().mark_sync_failed();
                return Err(e.into());
            }
            crate::metrics::FSYNC.observe(started.elapsed());
            {
                let mut log = self.log.write();
                if log.truncations() != target.truncations {
                    // a follower cut its tail meanwhile: what was synced may not be what the
                    // log holds below `covered` now, so sync again
                    continue;
                }
                log.mark_flushed(&target);
                // published under the log's lock, so a truncation is ordered before or after
                self.flushed.send_modify(|f| f.offset = f.offset.max(covered));
            }
            if let Some(reserved) = target.reserve_ahead() {
                self.log.write().note_reserved(segment, reserved);
            }
            if self.wanted.load(Ordering::SeqCst) <= covered {
                return Ok(());
            }
        }
    }

    /// Compacts the log when it is a compacted topic dirty enough (`min.cleanable.dirty.ratio`)
    /// or when `force` is set. Blocking: call from a blocking thread. Producers wait only for
    /// the swap at the end, not for the rewrite.
    pub fn clean(
        &self,
        now_ms: i64,
        force: bool,
        io_limit: Option<f64>,
    ) -> Result<Option<crate::log::cleaner::CleanStats>, LogError> {
        let mut input = {
            let log = self.log.read();
            let c = log.config();
            if !c.compact || (!force && log.dirty_ratio(now_ms) < c.min_cleanable_dirty_ratio.max(f64::MIN_POSITIVE)) {
                return Ok(None);
            }
            log.clean_input(now_ms)?
        };
        input.io_limit = io_limit.map(crate::log::cleaner::Throttle::new);
        // the rewrite runs without the lock; apply_clean skips segments that changed meanwhile
        let planned = input.plan()?;
        if planned.is_empty() {
            return Ok(None);
        }
        let stats = self.log.write().apply_clean(planned, now_ms)?;
        Ok(Some(stats))
    }

    /// The log end offset when `flush.messages` unflushed records have piled up (a flush is
    /// due), else `None`.
    pub fn flush_due(&self) -> Option<i64> {
        let log = self.log.read();
        (log.unflushed_records() >= log.config().flush_messages).then(|| log.log_end_offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::{BrokerConfig, LogConfig};

    fn partition(dir: &std::path::Path) -> Arc<Partition> {
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let (log, _) = Log::open(dir, config, true, 0).unwrap();
        Arc::new(Partition::new("t".into(), 0, log))
    }

    fn now() -> i64 {
        crate::broker::now_ms()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_are_all_covered_by_shared_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let p = p.clone();
            tasks.spawn(async move {
                let info = p.append(&crate::log::batch::sample_batch(3), now()).unwrap();
                p.want_flushed(info.last_offset + 1);
                p.flush_to(info.last_offset + 1).await.unwrap();
                info.last_offset + 1
            });
        }
        while let Some(done) = tasks.join_next().await {
            let offset = done.unwrap();
            assert!(p.flushed.borrow().offset >= offset);
        }
        assert_eq!(p.flushed.borrow().offset, 64 * 3);
        // the flusher publishes its last fsync a moment before it exits
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.flushing.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the flusher exits when nobody waits");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_waiter_does_not_stall_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        let info = p.append(&crate::log::batch::sample_batch(2), now()).unwrap();
        // a produce whose connection went away mid-wait
        let waiting = tokio::time::timeout(Duration::from_nanos(1), p.flush_to(info.last_offset + 1));
        let _ = waiting.await;
        let info = p.append(&crate::log::batch::sample_batch(2), now()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), p.flush_to(info.last_offset + 1))
            .await
            .expect("later producers are still flushed")
            .unwrap();
        // and nothing to flush returns at once
        p.flush_to(1).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_beyond_the_log_end_neither_hangs_nor_keeps_a_flusher_busy() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        let info = p.append(&crate::log::batch::sample_batch(2), now()).unwrap();
        p.want_flushed(info.last_offset + 5);
        tokio::time::timeout(Duration::from_secs(10), p.flush_to(info.last_offset + 5))
            .await
            .expect("an offset the log does not hold is not waited for")
            .unwrap();
        assert_eq!(p.flushed.borrow().offset, info.last_offset + 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.flushing.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the flusher stops when there is nothing to flush");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
