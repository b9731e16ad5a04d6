//! Queues: share groups (KIP-932) on the partition leader's side — Kafka's
//! `SharePartitionManager`. A partition's leader keeps, for every share group reading it, a
//! [`partition::SharePartition`] (which records are acquired, by whom, until when, and how
//! often delivered), serves ShareFetch by reading the log where that state says and acquiring
//! what it read, applies acknowledgements, and releases records whose locks expire or whose
//! member went away. Share sessions ([`session`]) say which partitions a member fetches.
//!
//! Group membership and assignment live with the group coordinator
//! (`coordinator::group::share`).

pub mod delay;
pub mod dlq;
pub mod partition;
pub mod session;
pub mod state;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::broker::{now_ms, Broker};
use crate::log::batch::BatchHeader;
use crate::log::segment::Slice;
use crate::log::{Log, LogError};
use partition::{AcquireMode, Acquired, Counters, Limits, LogBatch, SharePartition};
use session::{SessionCache, TopicIdPartition};

/// How often acquisition locks are checked for expiry.
/// The written version of a share-partition whose state was never written.
const NEVER_WRITTEN: u64 = u64::MAX;
/// How long a new share-partition waits for this broker's metadata to catch up.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// One share group's view of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharePartitionKey {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// A share-partition and what orders its writes to `__share_group_state`.
pub struct ShareEntry {
    state: parking_lot::Mutex<SharePartition>,
    /// Held while the state is written: each write takes its snapshot under it, so writes go
    /// in order and a later one always carries everything an earlier one did.
    persisting: tokio::sync::Mutex<u64>,
    /// One dead-letter copier at a time.
    copying: tokio::sync::Mutex<()>,
    /// Whether a share fetch has read it yet (see [`ShareEntry::first_fetch`]).
    fetched: std::sync::atomic::AtomicBool,
}

impl ShareEntry {
    /// A share-partition as its stored state was read.
    fn new(sp: SharePartition) -> ShareEntry {
        let version = sp.version();
        ShareEntry::written_at(sp, version)
    }

    /// A share-partition no state was stored for: its first [`ShareManager::persist`] writes it.
    fn unwritten(sp: SharePartition) -> ShareEntry {
        ShareEntry::written_at(sp, NEVER_WRITTEN)
    }

    fn written_at(sp: SharePartition, written: u64) -> ShareEntry {
        ShareEntry {
            state: parking_lot::Mutex::new(sp),
            persisting: tokio::sync::Mutex::new(written),
            copying: tokio::sync::Mutex::new(()),
            fetched: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True the first time a share fetch reaches this share-partition (Kafka's leader
    /// initializes it then), false after.
    pub fn first_fetch(&self) -> bool {
        !self.fetched.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn lock(&self) -> parking_lot::MutexGuard<'_, SharePartition> {
        self.state.lock()
    }
}

pub type SharePartitionHandle = Arc<ShareEntry>;

/// What one read of a share-partition acquired: where in the log the records are (whole
/// batches, sent from the file as Fetch sends them) and the acquired offset ranges within.
#[derive(Debug, Default)]
pub struct AcquiredRead {
    pub records: Option<Slice>,
    pub acquired: Vec<Acquired>,
}

/// Bytes a worker thread keeps for reading batches it must look into (delay headers,
/// transaction markers); larger reads are not kept.
const SCRATCH_KEPT: usize = 8 << 20;

thread_local! {
    /// Reused for every share fetch on the thread: a fresh buffer per fetch cost more in page
    /// faults and zeroing than reading the bytes did.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads `slice` into the thread's scratch buffer and hands it to `f`.
fn with_slice_bytes<T>(slice: &Slice, f: impl FnOnce(&[u8]) -> T) -> std::io::Result<T> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        if buf.len() < slice.len {
            buf.resize(slice.len, 0);
        }
        slice.file.read_exact_at(&mut buf[..slice.len], slice.position)?;
        let out = f(&buf[..slice.len]);
        if buf.len() > SCRATCH_KEPT {
            *buf = Vec::new();
        }
        Ok(out)
    })
}

#[derive(Default)]
pub struct ShareManager {
    partitions: DashMap<SharePartitionKey, SharePartitionHandle>,
    /// The persisted state (`__share_group_state`).
    pub state: state::ShareStateStore,
    pub sessions: parking_lot::Mutex<SessionCache>,
    /// Long-polling ShareFetches, woken when records become acquirable again.
    waiters: parking_lot::Mutex<Vec<Weak<Notify>>>,
    /// What share-partitions dropped from memory had counted, by group: a group's metrics
    /// are counters, and must not go down when one of its share-partitions is unloaded.
    retired: parking_lot::Mutex<std::collections::BTreeMap<String, Counters>>,
}

/// A share group's limits from its group configs and the broker's.
pub fn limits(broker: &Broker, group: &str) -> Limits {
    let value = |name: &str, default: i64| broker.group_config_i64(group, name).unwrap_or(default);
    let dead_letter_topic = broker.group_configs(group).get("errors.deadletterqueue.topic.name").cloned();
    Limits {
        delivery_count_limit: value("share.delivery.count.limit", 5).clamp(1, i64::from(i16::MAX)) as i16,
        max_in_flight: value("share.partition.max.record.locks", 2000).max(1),
        lock_ms: value("share.record.lock.duration.ms", 30_000).max(1),
        release_backoff_ms: value("weir.share.release.backoff.ms", 0),
        release_backoff_max_ms: value("weir.share.release.backoff.max.ms", 0),
        dead_letter: dead_letter_topic.is_some_and(|t| !t.is_empty()),
    }
}

/// Whether the group reads only committed transactional records (`share.isolation.level`).
pub fn read_committed(broker: &Broker, group: &str) -> bool {
    let overrides = broker.group_configs(group);
    overrides.get("share.isolation.level").is_some_and(|v| v == "read_committed")
}

/// Where a share group starts reading a partition it has no state for
/// (`share.auto.offset.reset`): `latest` (the default), `earliest`, or
/// `by_duration:<ISO-8601 duration>` (the first record no older than that).
pub fn initial_offset(broker: &Broker, group: &str, log: &Log) -> i64 {
    let reset = broker.group_configs(group).get("share.auto.offset.reset").cloned().unwrap_or_default();
    if reset == "earliest" {
        return log.log_start_offset();
    }
    if let Some(ms) = reset.strip_prefix("by_duration:").and_then(crate::config::iso8601_duration_ms) {
        let since = now_ms().saturating_sub(ms);
        if let Ok(Some(found)) = log.offset_for_timestamp(since) {
            return found.offset;
        }
    }
    log.high_watermark()
}

/// A share-partition from its stored state, held within the log as it is now (stored state
/// is read from disk or another broker: a start or end beyond the log is clamped to it).
pub fn restore_snapshot(s: state::StateSnapshot, log_start: i64, log_end: i64, limits: Limits) -> SharePartition {
    let start = s.start_offset.clamp(log_start.max(0), log_end.max(0));
    let end = s.batches.last().map_or(start, |b| b.1.saturating_add(1)).clamp(start, log_end.max(start));
    let mut sp = SharePartition::restore(start, end, s.state_epoch, &s.batches, limits);
    sp.dead_letters = s.dead_letters;
    sp.dead_letter_mark = s.dead_letter_mark;
    sp
}

impl ShareManager {
    /// The share-partition for `key` on the partition this broker leads: from its persisted
    /// state (read from its state coordinator, wherever that is), else new at the group's
    /// reset offset.
    pub async fn get_or_load(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        partition: &crate::partition::Partition,
    ) -> Result<SharePartitionHandle, state::StateError> {
        if let Some(sp) = self.partitions.get(key) {
            return Ok(sp.clone());
        }
        let stored = self.state.read(broker, key).await?;
        if stored.is_none() {
            // a new share-partition follows the group's configs (share.auto.offset.reset,
            // lock duration), which a client may have set through another broker just
            // before it subscribed
            broker.catch_up_metadata(CATCH_UP_WAIT).await;
        }
        let limits = limits(broker, &key.group);
        let entry = match stored {
            Some(s) => {
                let log = partition.log();
                ShareEntry::new(restore_snapshot(s, log.log_start_offset(), log.log_end_offset(), limits))
            }
            None => {
                ShareEntry::unwritten(SharePartition::new(initial_offset(broker, &key.group, &partition.log()), limits))
            }
        };
        // a concurrent load may have won: its state is as good as this one
        let sp = self.partitions.entry(key.clone()).or_insert_with(|| Arc::new(entry)).clone();
        // A new share-partition's start offset is written at once (Kafka's
        // InitializeShareGroupState): "latest" means when the group first read the partition,
        // also for records nobody fetched before a restart.
        if let Err(e) = self.persist(broker, key, &sp).await {
            self.partitions.remove_if(key, |_, current| Arc::ptr_eq(current, &sp));
            return Err(e);
        }
        Ok(sp)
    }

    /// Writes a share-partition's state if it changed since it was last written, durably
    /// before returning.
    pub async fn persist(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        sp: &SharePartitionHandle,
    ) -> Result<(), state::StateError> {
        let mut written = sp.persisting.lock().await;
        self.persist_locked(broker, key, sp, &mut written).await
    }

    /// [`Self::persist`] with the share-partition's write lock held (`written`: the version
    /// last written).
    async fn persist_locked(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        sp: &SharePartitionHandle,
        written: &mut u64,
    ) -> Result<(), state::StateError> {
        // a share-partition replaced or deleted meanwhile must not write its old state back
        if !self.partitions.get(key).is_some_and(|current| Arc::ptr_eq(&current, sp)) {
            return Ok(());
        }
        let (version, snapshot) = {
            let state = sp.lock();
            let leader_epoch = broker
                .topic_by_id(&key.topic_id)
                .and_then(|t| t.state(key.partition).map(|s| s.leader_epoch))
                .unwrap_or(-1);
            let created = self.state.created_at(key).unwrap_or_else(now_ms);
            let snapshot = state::StateSnapshot {
                state_epoch: state.state_epoch,
                leader_epoch,
                start_offset: state.start_offset(),
                create_timestamp: created,
                batches: state.persisted_runs(),
                dead_letters: state.dead_letters.clone(),
                dead_letter_mark: state.dead_letter_mark,
            };
            (state.version(), snapshot)
        };
        if version == *written {
            return Ok(());
        }
        self.state.write(broker, key, Some(snapshot)).await?;
        *written = version;
        Ok(())
    }

    /// [`Self::persist`] in the background (changes no response waits for: acquisitions,
    /// expired locks).
    pub fn persist_later(self: &Arc<Self>, broker: &Arc<Broker>, key: SharePartitionKey, sp: SharePartitionHandle) {
        let (me, broker) = (self.clone(), broker.clone());
        tokio::spawn(async move {
            match me.persist(&broker, &key, &sp).await {
                Ok(()) => me.copy_dead_letters_later(&broker, key, sp),
                Err(e) => tracing::warn!(group = %key.group, topic_id = %key.topic_id, partition = key.partition,
                    error = %e, "cannot persist share-partition state"),
            }
        });
    }

    /// A partition's leadership changed here: its share-partitions are dropped, to be read
    /// again from the persisted state by the next fetch (this broker's copy may be stale).
    pub fn leadership_changed(&self, topic_id: Uuid, partition: i32) {
        self.partitions.retain(|k, sp| {
            let keep = k.topic_id != topic_id || k.partition != partition;
            if !keep {
                self.retire(k, sp);
            }
            keep
        });
    }

    /// Keeps the counts of a share-partition leaving memory.
    fn retire(&self, key: &SharePartitionKey, sp: &SharePartitionHandle) {
        let counters = sp.lock().counters;
        self.retired.lock().entry(key.group.clone()).or_default().add(&counters);
    }

    /// Each group's counts since this broker started: share-partitions loaded now and those
    /// dropped from memory (metrics).
    pub fn group_counters(&self) -> std::collections::BTreeMap<String, Counters> {
        let mut totals = self.retired.lock().clone();
        for e in self.partitions.iter() {
            let counters = e.value().lock().counters;
            totals.entry(e.key().group.clone()).or_default().add(&counters);
        }
        totals
    }

    /// Every share-partition here (metrics).
    pub fn all(&self) -> Vec<(SharePartitionKey, SharePartitionHandle)> {
        self.partitions.iter().map(|e| (e.key().clone(), e.value().clone())).collect()
    }

    pub fn get(&self, key: &SharePartitionKey) -> Option<SharePartitionHandle> {
        self.partitions.get(key).map(|sp| sp.clone())
    }

    /// Every share-partition of `group` here.
    pub fn of_group(&self, group: &str) -> Vec<(SharePartitionKey, SharePartitionHandle)> {
        self.partitions
            .iter()
            .filter(|e| e.key().group == group)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Registers a long-polling fetch to be woken when records become acquirable again.
    pub fn add_waiter(&self, notify: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        waiters.retain(|w| w.strong_count() > 0);
        waiters.push(Arc::downgrade(notify));
    }

    /// Wakes long-polling fetches: records may be acquirable again.
    pub fn wake(&self) {
        for w in self.waiters.lock().iter().filter_map(Weak::upgrade) {
            w.notify_one();
        }
    }

    /// Releases what `member` of `group` holds in `partitions` (its session closed), or in
    /// every partition here when `None` (it left the group).
    pub fn release(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        group: &str,
        member: &str,
        partitions: Option<&BTreeSet<TopicIdPartition>>,
    ) {
        let now = now_ms();
        let mut any = false;
        for (key, sp) in self.of_group(group) {
            if partitions.is_some_and(|ps| !ps.contains(&(key.topic_id, key.partition))) {
                continue;
            }
            let released = {
                let mut state = sp.lock();
                let before = state.version();
                state.release_member(member, now);
                state.version() != before
            };
            if released {
                any = true;
                self.persist_later(broker, key, sp);
            }
        }
        if any {
            self.wake();
        }
    }

    /// A connection closed: its share sessions end and their members' records are released.
    pub fn connection_closed(self: &Arc<Self>, broker: &Arc<Broker>, connection: u64) {
        let closed = self.sessions.lock().connection_closed(connection);
        for ((group, member), partitions) in closed {
            self.session_ended(broker, &group, &member, Some(&partitions));
        }
    }

    /// A member left its group (or was expired): its session here ends and its records go back.
    pub fn member_left(self: &Arc<Self>, broker: &Arc<Broker>, group: &str, member: &str) {
        self.sessions.lock().remove(&(group.to_string(), member.to_string()));
        self.session_ended(broker, group, member, None);
    }

    /// A member's share session ended (closed, its connection gone, the member gone): what it
    /// held is released; once no session of the group is left here, the group's
    /// share-partitions are written and dropped from memory, to be read again from the state
    /// store by the next fetch — which then sees any reset or deletion made meanwhile
    /// (Kafka's share-partition manager does the same when a group empties).
    pub fn session_ended(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        group: &str,
        member: &str,
        partitions: Option<&BTreeSet<TopicIdPartition>>,
    ) {
        self.release(broker, group, member, partitions);
        if self.sessions.lock().has_group(group) {
            return;
        }
        let (me, broker, group) = (self.clone(), broker.clone(), group.to_string());
        tokio::spawn(async move {
            for (key, sp) in me.of_group(&group) {
                let mut written = sp.persisting.lock().await;
                if let Err(e) = me.persist_locked(&broker, &key, &sp, &mut written).await {
                    tracing::warn!(group = %key.group, error = %e, "cannot persist share-partition state; kept in memory");
                    continue;
                }
                // a session that started meanwhile keeps the group's share-partitions here
                let sessions = me.sessions.lock();
                if !sessions.has_group(&group) && sp.lock().dead_letters.is_empty() {
                    if let Some((key, sp)) = me.partitions.remove_if(&key, |_, current| Arc::ptr_eq(current, &sp)) {
                        me.retire(&key, &sp);
                    }
                }
            }
        });
    }

    /// Starts a share-partition afresh at `start_offset` (AlterShareGroupOffsets): nothing in
    /// flight, a new state epoch, written durably.
    pub async fn reset(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        start_offset: i64,
    ) -> Result<(), state::StateError> {
        let epoch = self.state.stored(key).map_or(0, |s| s.state_epoch) + 1;
        let mut sp = SharePartition::new(start_offset.max(0), limits(broker, &key.group));
        sp.state_epoch = epoch;
        let snapshot = state::StateSnapshot {
            state_epoch: epoch,
            leader_epoch: -1,
            start_offset: sp.start_offset(),
            create_timestamp: now_ms(),
            dead_letter_mark: -1,
            ..Default::default()
        };
        self.replace(broker, key, Some((snapshot, sp))).await?;
        self.wake();
        Ok(())
    }

    /// Forgets a group's state for every partition of a topic (DeleteShareGroupOffsets).
    pub async fn forget_topic(&self, broker: &Broker, group: &str, topic_id: Uuid) -> Result<(), state::StateError> {
        for key in self.keys_of(group).into_iter().filter(|k| k.topic_id == topic_id) {
            self.replace(broker, &key, None).await?;
        }
        Ok(())
    }

    /// Deletes a group's share-partitions and their persisted state (DeleteGroups).
    pub async fn delete_group(&self, broker: &Broker, group: &str) -> Result<(), state::StateError> {
        for key in self.keys_of(group) {
            self.replace(broker, &key, None).await?;
        }
        self.retired.lock().remove(group);
        Ok(())
    }

    /// Every share-partition of `group` known here, stored or loaded.
    fn keys_of(&self, group: &str) -> BTreeSet<SharePartitionKey> {
        let mut keys: BTreeSet<SharePartitionKey> = self.state.of_group(group).into_iter().map(|(k, _)| k).collect();
        keys.extend(self.of_group(group).into_iter().map(|(k, _)| k));
        keys
    }

    /// Writes a share-partition's new state (`None`: deletes it) and puts its new in-memory
    /// form in place, holding the old one's write lock throughout: a write of the old state
    /// still under way finishes first, and none starts after (see [`Self::persist`]).
    async fn replace(
        &self,
        broker: &Broker,
        key: &SharePartitionKey,
        new: Option<(state::StateSnapshot, SharePartition)>,
    ) -> Result<(), state::StateError> {
        let old = self.partitions.get(key).map(|e| e.clone());
        let _old_writes = match &old {
            Some(entry) => Some(entry.persisting.lock().await),
            None => None,
        };
        if let Some((key, sp)) = self.partitions.remove(key) {
            self.retire(&key, &sp);
        }
        match new {
            Some((snapshot, sp)) => {
                self.state.write(broker, key, Some(snapshot)).await?;
                self.partitions.insert(key.clone(), Arc::new(ShareEntry::new(sp)));
            }
            None => self.state.write(broker, key, None).await?,
        }
        Ok(())
    }

    /// Reads `log` where the share-partition wants and acquires what was read for `member`:
    /// at most about `max_records` records (exactly, in [`AcquireMode::RecordLimit`]) and
    /// `max_bytes` bytes (the first batch always).
    #[allow(clippy::too_many_arguments)]
    pub fn read_and_acquire(
        &self,
        sp: &SharePartitionHandle,
        log: &Log,
        member: &Arc<str>,
        max_records: i64,
        mode: AcquireMode,
        max_bytes: usize,
        read_committed: bool,
    ) -> Result<AcquiredRead, LogError> {
        let now = now_ms();
        let bound = if read_committed { log.last_stable_offset() } else { log.high_watermark() };
        let offset = {
            let mut sp = sp.lock();
            sp.on_log_start(log.log_start_offset());
            match sp.next_fetch_offset(now) {
                Some(o) if o < bound => o,
                _ => return Ok(AcquiredRead::default()),
            }
        };
        // batches up to about max_records, located, not read
        let Some(slice) = log.read_up_to(offset, max_bytes, bound, true, max_records)?.records else {
            return Ok(AcquiredRead::default());
        };
        let aborted = if read_committed { log.aborted_transactions(offset, bound) } else { Vec::new() };
        let (batches, ends) = with_slice_bytes(&slice, |bytes| {
            (log_batches(bytes, bound, &aborted, now), batch_ends(bytes).collect::<Vec<_>>())
        })?;
        let acquired = sp.lock().acquire(member, &batches, max_records, mode, now);
        let Some(last) = acquired.last().map(|a| a.last) else { return Ok(AcquiredRead::default()) };
        // send the batches up to the one holding the last acquired record
        let (end, end_last) =
            ends.iter().find(|(_, last_offset)| *last_offset >= last).copied().unwrap_or((slice.len, last));
        let records = Slice { len: end, end_offset: end_last + 1, ..slice };
        Ok(AcquiredRead { records: Some(records), acquired })
    }

    /// Expires acquisition locks and follows log start offsets, waking fetches when records
    /// become acquirable again; changed state is written.
    pub async fn run_timers(self: Arc<Self>, broker: Arc<Broker>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let mut released = false;
            let entries: Vec<(SharePartitionKey, SharePartitionHandle)> =
                self.partitions.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
            for (key, sp) in entries {
                let log_start = broker
                    .topic_by_id(&key.topic_id)
                    .and_then(|t| t.partition(key.partition).map(|p| p.log().log_start_offset()));
                let mut state = sp.lock();
                if let Some(start) = log_start {
                    state.on_log_start(start);
                }
                // dead letters restored after a restart, or left by a failed copy
                if !state.dead_letters.is_empty() && sp.copying.try_lock().is_ok() {
                    drop(state);
                    self.copy_dead_letters_later(&broker, key.clone(), sp.clone());
                    state = sp.lock();
                }
                if state.next_wakeup().is_some_and(|t| t <= now) {
                    let before = state.version();
                    state.expire_locks(now);
                    released = true;
                    if state.version() != before {
                        drop(state);
                        self.persist_later(&broker, key, sp);
                    }
                }
            }
            if released {
                self.wake();
            }
        }
    }
}

/// The batches in `bytes` as the share-partition sees them; control batches, and with
/// `aborted` the batches of aborted transactions, are never delivered; records with a
/// delivery time after `now` wait for it.
fn log_batches(bytes: &[u8], bound: i64, aborted: &[crate::log::txn_index::AbortedTxn], now: i64) -> Vec<LogBatch> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(h) = BatchHeader::parse(rest) {
        if h.base_offset >= bound || h.total_size() > rest.len() {
            break;
        }
        let was_aborted = h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id && a.first_offset <= h.base_offset && h.base_offset <= a.last_offset
            });
        let mut batch = LogBatch::new(h.base_offset, h.last_offset().min(bound - 1));
        // (a batch with no records: what duplicate detection or compaction left of one)
        batch.skip = h.is_control() || was_aborted || h.record_count == 0;
        if !batch.skip {
            batch.delayed = delay::delayed_records(&rest[..h.total_size()], h.compression() != 0, now);
        }
        out.push(batch);
        rest = &rest[h.total_size()..];
    }
    out
}

/// Each batch's end position in `bytes` and last offset.
pub(crate) fn batch_ends(bytes: &[u8]) -> impl Iterator<Item = (usize, i64)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(bytes.get(pos..)?)?;
        pos += h.total_size();
        (pos <= bytes.len()).then_some((pos, h.last_offset()))
    })
}
