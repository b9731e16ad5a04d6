//! A partition as the request path sees it: its [`Log`] behind a lock, the fetches waiting for
//! new data, and group-committed fsyncs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::log::{AppendInfo, Log, LogError};

pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: RwLock<Log>,
    /// Fetches parked until this partition's high watermark moves.
    waiters: Mutex<Vec<Arc<Notify>>>,
    /// Everything below this offset is known to be on disk.
    flushed_offset: AtomicI64,
    /// Serialises fsyncs: a producer that finds a flush running waits for it and usually
    /// finds its own data covered (group commit).
    flush_lock: tokio::sync::Mutex<()>,
}

impl Partition {
    pub fn new(topic: String, index: i32, log: Log) -> Partition {
        let flushed = log.log_end_offset();
        Partition {
            topic,
            index,
            log: RwLock::new(log),
            waiters: Mutex::new(Vec::new()),
            flushed_offset: AtomicI64::new(flushed),
            flush_lock: tokio::sync::Mutex::new(()),
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
        let info = self.log.write().append(records, now_ms)?;
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
        self.wake_waiters();
        Ok(info)
    }

    /// Registers a fetch to be woken on the next append.
    pub fn add_waiter(&self, notify: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        // Drop registrations of fetches that already returned, so an idle partition's list
        // stays as long as its live fetchers.
        waiters.retain(|w| Arc::strong_count(w) > 1);
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

    /// Makes everything up to `offset` durable, sharing fsyncs between concurrent callers.
    pub async fn flush_to(&self, offset: i64) -> Result<(), LogError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _turn = self.flush_lock.lock().await;
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let target = self.log.read().flush_target()?;
        let (covered, segment, size) = (target.covered, target.segment, target.size);
        let started = std::time::Instant::now();
        let synced = tokio::task::spawn_blocking(move || target.sync())
            .await
            .map_err(|e| LogError::Io(std::io::Error::other(e)))?;
        if let Err(e) = synced {
            self.log.write().mark_sync_failed();
            return Err(e.into());
        }
        crate::metrics::FSYNC.observe(started.elapsed());
        self.flushed_offset.fetch_max(covered, Ordering::AcqRel);
        self.log.write().mark_flushed(covered, segment, size);
        Ok(())
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

    /// Flushes when `flush.messages` unflushed records have piled up.
    pub async fn flush_if_due(&self) -> Result<(), LogError> {
        let (due, leo) = {
            let log = self.log.read();
            (log.unflushed_records() >= log.config().flush_messages, log.log_end_offset())
        };
        if due {
            self.flush_to(leo).await?;
        }
        Ok(())
    }
}
