//! A share-partition (KIP-932): one share group's view of one topic partition, Kafka's
//! `SharePartition`. Records between the **start offset** (SPSO) and the **end offset** (SPEO,
//! the next offset to read from the log) are *in flight*, each in one state:
//!
//! ```text
//!   (log) ──acquire──▶ ACQUIRED ──accept──▶ ACKNOWLEDGED
//!                       │  ▲  │──reject──▶ ARCHIVED
//!      release, lock ◀──┘  │  └──release / lock expiry, delivery count at the limit──▶ ARCHIVED
//!      expiry, member      │
//!      gone          AVAILABLE
//! ```
//!
//! A record's delivery count goes up each time it is acquired. The start offset moves past
//! acknowledged and archived records; records below it are done. Acquisition is bounded by
//! `group.share.partition.max.record.locks` (new records are taken from the log only while the
//! in-flight window is smaller than that).
//!
//! In-flight records are kept as ranges of offsets in one state, split only where an
//! acknowledgement or acquisition cuts one, so a batch acquired and accepted whole stays one
//! entry. Pure logic: times (epoch milliseconds) come in as arguments.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Kafka's acknowledge types (ShareFetch / ShareAcknowledge `AcknowledgeTypes`).
pub mod ack {
    /// The offset holds no record (a compacted or transactional gap): archived.
    pub const GAP: i8 = 0;
    pub const ACCEPT: i8 = 1;
    pub const RELEASE: i8 = 2;
    pub const REJECT: i8 = 3;
    /// Keeps the records acquired and restarts their lock (KIP-1222, version 2 requests).
    pub const RENEW: i8 = 4;
}

/// How a fetch counts its `max_records` (ShareFetch v2 `ShareAcquireMode`, KIP-1206).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcquireMode {
    /// Whole batches and runs: `max_records` may be exceeded to finish one (Kafka's default).
    #[default]
    BatchOptimized,
    /// Never more than `max_records` records: batches and runs are cut.
    RecordLimit,
}

impl AcquireMode {
    /// The mode a request's `ShareAcquireMode` names, if any.
    pub fn from_wire(mode: i8) -> Option<AcquireMode> {
        match mode {
            0 => Some(AcquireMode::BatchOptimized),
            1 => Some(AcquireMode::RecordLimit),
            _ => None,
        }
    }
}

/// A record's state, with Kafka's numbering (`RecordState`; persisted as `DeliveryState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    Available = 0,
    Acquired = 1,
    Acknowledged = 2,
    Archived = 4,
}

impl RecordState {
    fn is_done(self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }
}

/// Why a record was archived (a dead-letter copy says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReason {
    /// A consumer rejected it.
    Rejected,
    /// It was released or its lock expired with its delivery count at the limit.
    DeliveryLimit,
    /// GAP: the offset holds no record.
    Gap,
}

/// Offsets `first..=last` that were archived, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub first: i64,
    pub last: i64,
    pub delivery_count: i16,
    pub reason: ArchiveReason,
}

/// One run of in-flight offsets in the same state (keyed by its first offset).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    last: i64,
    state: RecordState,
    delivery_count: i16,
    /// The member holding an acquired run.
    member: Option<Arc<str>>,
    /// When an acquired run's lock expires (epoch ms).
    lock_deadline: i64,
    /// An available run is not acquirable before this (epoch ms; release back-off, delay).
    not_before: i64,
}

/// Records from `start_offset` to `high_watermark` not yet acknowledged or archived, given
/// the runs of in-flight records (Kafka's share-partition lag: end offset - start offset -
/// delivery complete count).
pub fn lag(start_offset: i64, high_watermark: i64, runs: impl Iterator<Item = (i64, i64, RecordState, i16)>) -> i64 {
    let done: i64 = runs
        .filter(|(first, last, state, _)| state.is_done() && *first < high_watermark && *last >= start_offset)
        .map(|(first, last, _, _)| last.min(high_watermark - 1) - first.max(start_offset) + 1)
        .sum();
    (high_watermark - start_offset - done).max(0)
}

/// Offsets acquired by one fetch, with their delivery count (ShareFetch `AcquiredRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: i64,
    pub last: i64,
    pub delivery_count: i16,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Malformed: offsets reversed, an unknown type, or a type list of the wrong length.
    #[error("invalid acknowledgement batch")]
    InvalidRequest,
    /// An offset that is not in flight, not acquired, or acquired by another member.
    #[error("records are not acquired by this member")]
    InvalidRecordState,
}

/// The limits a share-partition works within (group and broker configs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `share.delivery.count.limit`: a record delivered this often is archived when released.
    pub delivery_count_limit: i16,
    /// `group.share.partition.max.record.locks`: the largest in-flight window.
    pub max_in_flight: i64,
    /// `share.record.lock.duration.ms`.
    pub lock_ms: i64,
    /// `weir.share.release.backoff.ms`: delay before a released record is acquirable again,
    /// doubled per earlier delivery, capped by `release_backoff_max_ms` (0: none).
    pub release_backoff_ms: i64,
    pub release_backoff_max_ms: i64,
    /// The group has a dead-letter topic: rejected records and those at the delivery limit
    /// are kept as [`SharePartition::dead_letters`] until copied there.
    pub dead_letter: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            delivery_count_limit: 5,
            max_in_flight: 2000,
            lock_ms: 30_000,
            release_backoff_ms: 0,
            release_backoff_max_ms: 0,
            dead_letter: false,
        }
    }
}

/// A batch of the log as the share-partition sees it: its offsets and, for records that
/// must wait (delayed delivery), when each becomes acquirable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub base: i64,
    pub last: i64,
    /// Offsets of this batch not acquirable before a time (epoch ms), in offset order.
    pub delayed: Vec<(i64, i64)>,
    /// Never delivered: a control batch, or an aborted transaction's under read_committed.
    pub skip: bool,
}

impl LogBatch {
    pub fn new(base: i64, last: i64) -> LogBatch {
        LogBatch { base, last, delayed: Vec::new(), skip: false }
    }
}

/// What a share-partition has done since it was loaded (metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Records acknowledged, by type (gap, accept, release, reject, renew).
    pub acknowledged: [u64; 5],
    /// Records acquired, and those of them acquired not for the first time.
    pub acquired: u64,
    pub redelivered: u64,
    /// Records archived because a consumer rejected them, or at the delivery-count limit.
    pub archived_rejected: u64,
    pub archived_delivery_limit: u64,
}

impl Counters {
    /// Adds another share-partition's counts (a group's totals).
    pub fn add(&mut self, other: &Counters) {
        for (sum, n) in self.acknowledged.iter_mut().zip(other.acknowledged) {
            *sum += n;
        }
        self.acquired += other.acquired;
        self.redelivered += other.redelivered;
        self.archived_rejected += other.archived_rejected;
        self.archived_delivery_limit += other.archived_delivery_limit;
    }
}

#[derive(Debug, Clone)]
pub struct SharePartition {
    start_offset: i64,
    end_offset: i64,
    /// Bumped each time the state is re-initialised (AlterShareGroupOffsets, a reset).
    pub state_epoch: i32,
    runs: BTreeMap<i64, Run>,
    pub limits: Limits,
    /// Counts changes, so that unchanged state is not written again.
    version: u64,
    /// Archived records still to be copied to the group's dead-letter topic.
    pub dead_letters: Vec<Archived>,
    /// The dead-letter partition's end offset before any of `dead_letters` was copied there:
    /// after a crash, copies found from here on are not written again (-1: none pending).
    pub dead_letter_mark: i64,
    pub counters: Counters,
}

impl SharePartition {
    /// A share-partition starting at `start_offset` with nothing in flight.
    pub fn new(start_offset: i64, limits: Limits) -> SharePartition {
        SharePartition {
            start_offset,
            end_offset: start_offset,
            state_epoch: 0,
            runs: BTreeMap::new(),
            limits,
            version: 0,
            dead_letters: Vec::new(),
            dead_letter_mark: -1,
            counters: Counters::default(),
        }
    }

    /// The share-partition start offset (SPSO): every record below it is done.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// The share-partition end offset (SPEO): the next offset to read from the log.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Goes up with every change of state (see [`Self::persisted_runs`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The runs worth persisting: everything but records never delivered (which a restart
    /// reads from the log again anyway).
    pub fn persisted_runs(&self) -> Vec<(i64, i64, RecordState, i16)> {
        self.runs().filter(|(_, _, state, count)| *state != RecordState::Available || *count > 0).collect()
    }

    /// Records between the start offset and `high_watermark` not yet acknowledged or
    /// archived: the group's lag on this partition.
    pub fn lag(&self, high_watermark: i64) -> i64 {
        lag(self.start_offset, high_watermark, self.runs())
    }

    /// How many in-flight records are acquired now.
    pub fn acquired_count(&self) -> i64 {
        self.runs.iter().filter(|(_, r)| r.state == RecordState::Acquired).map(|(f, r)| r.last - f + 1).sum()
    }

    /// Where the next fetch reads the log: the first available in-flight record that may be
    /// acquired now, else the end offset while the in-flight window has room; `None` when
    /// there is nothing to acquire.
    pub fn next_fetch_offset(&self, now_ms: i64) -> Option<i64> {
        let available = self
            .runs
            .iter()
            .find(|(_, r)| r.state == RecordState::Available && r.not_before <= now_ms)
            .map(|(first, _)| *first);
        available.or_else(|| self.has_room().then_some(self.end_offset))
    }

    /// Whether new records may be taken from the log: fewer than
    /// `group.share.partition.max.record.locks` records are in flight (acquired, or available
    /// again, or waiting for their delivery time). Done records past the start offset do not
    /// count, so a long-delayed record holds one place, not the window behind it.
    fn has_room(&self) -> bool {
        let pending: i64 = self.runs.iter().filter(|(_, r)| !r.state.is_done()).map(|(f, r)| r.last - f + 1).sum();
        pending < self.limits.max_in_flight.max(1)
    }

    /// The earliest time something held back becomes acquirable or a lock expires: when to
    /// look again.
    pub fn next_wakeup(&self) -> Option<i64> {
        self.runs
            .values()
            .filter_map(|r| match r.state {
                RecordState::Acquired => Some(r.lock_deadline),
                RecordState::Available => Some(r.not_before),
                _ => None,
            })
            .min()
    }

    /// Acquires records of `batches` (read from the log at [`Self::next_fetch_offset`]) for
    /// `member`, up to `max_records`: in [`AcquireMode::BatchOptimized`] whole batches and runs
    /// are taken (as Kafka does, so `max_records` may be exceeded), in
    /// [`AcquireMode::RecordLimit`] they are cut at `max_records`.
    pub fn acquire(
        &mut self,
        member: &Arc<str>,
        batches: &[LogBatch],
        max_records: i64,
        mode: AcquireMode,
        now_ms: i64,
    ) -> Vec<Acquired> {
        let mut out: Vec<Acquired> = Vec::new();
        let mut count = 0i64;
        let deadline = now_ms + self.limits.lock_ms;
        let end_before = self.end_offset;
        // the last offset a fetch that has `count` records may still take from `first` on
        let cut = |count: i64, first: i64, last: i64| match mode {
            AcquireMode::BatchOptimized => last,
            AcquireMode::RecordLimit => last.min(first.saturating_add(max_records - count - 1)),
        };
        for batch in batches {
            if count >= max_records {
                break;
            }
            let last = batch.last;
            // in-flight records of this batch that are available again
            if batch.base < self.end_offset {
                let upto = last.min(self.end_offset - 1);
                let lo = batch.base.max(self.start_offset);
                if lo <= upto {
                    self.split_at(lo);
                    self.split_at(upto + 1);
                    self.hold_back_undelivered(&batch.delayed, lo, upto);
                    let firsts: Vec<i64> = self.runs.range(lo..=upto).map(|(f, _)| *f).collect();
                    for first in firsts {
                        if count >= max_records {
                            break;
                        }
                        let Some(run) = self.runs.get(&first) else { continue };
                        if run.state != RecordState::Available || run.not_before > now_ms {
                            continue;
                        }
                        self.split_at(cut(count, first, run.last) + 1);
                        let Some(run) = self.runs.get_mut(&first) else { continue };
                        run.state = RecordState::Acquired;
                        run.delivery_count = run.delivery_count.saturating_add(1);
                        run.member = Some(member.clone());
                        run.lock_deadline = deadline;
                        count += run.last - first + 1;
                        push_merged(&mut out, Acquired { first, last: run.last, delivery_count: run.delivery_count });
                    }
                    self.merge_around(lo, upto);
                }
            }
            // new records, while the window has room
            if last >= self.end_offset && count < max_records && self.has_room() {
                let first = self.end_offset.max(batch.base);
                if batch.skip {
                    let archived = Run {
                        last,
                        state: RecordState::Archived,
                        delivery_count: 0,
                        member: None,
                        lock_deadline: 0,
                        not_before: 0,
                    };
                    self.runs.insert(first, archived);
                    self.end_offset = last + 1;
                } else {
                    let upto = cut(count, first, last);
                    count += self.take_new(member, first, upto, &batch.delayed, deadline, &mut out);
                    self.end_offset = upto + 1;
                }
            }
        }
        if !out.is_empty() || self.end_offset != end_before {
            self.version += 1;
        }
        for a in &out {
            let n = (a.last - a.first + 1) as u64;
            self.counters.acquired += n;
            if a.delivery_count > 1 {
                self.counters.redelivered += n;
            }
        }
        out
    }

    /// Records never delivered yet whose delivery time (read again from their headers, as
    /// after a restart, which keeps no such times) is still ahead wait for it.
    fn hold_back_undelivered(&mut self, delayed: &[(i64, i64)], lo: i64, hi: i64) {
        for &(offset, at) in delayed.iter().filter(|(o, _)| (lo..=hi).contains(o)) {
            self.split_at(offset);
            self.split_at(offset + 1);
            if let Some(run) = self.runs.get_mut(&offset) {
                if run.state == RecordState::Available && run.delivery_count == 0 {
                    run.not_before = run.not_before.max(at);
                }
            }
        }
    }

    /// Adds `first..=last` to the in-flight records, acquired, except those that must wait
    /// (`delayed`, by offset), which become available at their time. Returns how many were
    /// acquired.
    fn take_new(
        &mut self,
        member: &Arc<str>,
        first: i64,
        last: i64,
        delayed: &[(i64, i64)],
        deadline: i64,
        out: &mut Vec<Acquired>,
    ) -> i64 {
        let acquired = |l: i64| Run {
            last: l,
            state: RecordState::Acquired,
            delivery_count: 1,
            member: Some(member.clone()),
            lock_deadline: deadline,
            not_before: 0,
        };
        let mut count = 0;
        let mut next = first;
        for &(offset, at) in delayed.iter().filter(|(o, _)| (first..=last).contains(o)) {
            if offset > next {
                self.runs.insert(next, acquired(offset - 1));
                push_merged(out, Acquired { first: next, last: offset - 1, delivery_count: 1 });
                count += offset - next;
            }
            let waiting = Run {
                last: offset,
                state: RecordState::Available,
                delivery_count: 0,
                member: None,
                lock_deadline: 0,
                not_before: at,
            };
            self.runs.insert(offset, waiting);
            next = offset + 1;
        }
        if next <= last {
            self.runs.insert(next, acquired(last));
            push_merged(out, Acquired { first: next, last, delivery_count: 1 });
            count += last - next + 1;
        }
        count
    }

    /// Applies one acknowledgement batch from `member`: one type for all of `first..=last`,
    /// or one type per offset. Nothing changes when any offset is refused.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first: i64,
        last: i64,
        types: &[i8],
        now_ms: i64,
    ) -> Result<Vec<Archived>, AckError> {
        let len = last
            .checked_sub(first)
            .and_then(|d| d.checked_add(1))
            .filter(|n| *n > 0)
            .ok_or(AckError::InvalidRequest)?;
        if types.is_empty() || (types.len() != 1 && types.len() as i64 != len) {
            return Err(AckError::InvalidRequest);
        }
        if types.iter().any(|t| !(ack::GAP..=ack::RENEW).contains(t)) {
            return Err(AckError::InvalidRequest);
        }
        if first < self.start_offset || last >= self.end_offset {
            return Err(AckError::InvalidRecordState);
        }
        let held = self
            .runs
            .range(..=last)
            .rev()
            .take_while(|(f, r)| r.last >= first && **f <= last)
            .all(|(_, r)| r.state == RecordState::Acquired && r.member.as_deref() == Some(member));
        if !held {
            return Err(AckError::InvalidRecordState);
        }
        let mut archived = Vec::new();
        if types.len() == 1 {
            self.apply(first, last, types[0], now_ms, &mut archived);
        } else {
            // consecutive offsets with the same type are applied together
            let mut start = 0usize;
            while start < types.len() {
                let kind = types[start];
                let end = start + types[start..].iter().take_while(|t| **t == kind).count();
                self.apply(first + start as i64, first + end as i64 - 1, kind, now_ms, &mut archived);
                start = end;
            }
        }
        self.merge_around(first, last);
        self.advance_start();
        // a renewed lock is not persisted state (locks die with the broker)
        if types.iter().any(|t| *t != ack::RENEW) {
            self.version += 1;
        }
        self.keep_dead_letters(&archived);
        Ok(archived)
    }

    /// Sets `first..=last` (all acquired) to the outcome of acknowledge type `kind`.
    fn apply(&mut self, first: i64, last: i64, kind: i8, now_ms: i64, archived: &mut Vec<Archived>) {
        self.split_at(first);
        self.split_at(last + 1);
        let firsts: Vec<i64> = self.runs.range(first..=last).map(|(f, _)| *f).collect();
        if let Some(count) = self.counters.acknowledged.get_mut(kind as usize) {
            *count += (last - first + 1) as u64;
        }
        for f in firsts {
            let limits = self.limits;
            let Some(run) = self.runs.get_mut(&f) else { continue };
            match kind {
                ack::ACCEPT => settle(run, RecordState::Acknowledged),
                ack::RENEW => run.lock_deadline = now_ms + limits.lock_ms,
                ack::RELEASE => {
                    if let Some(a) = release(run, f, &limits, now_ms) {
                        archived.push(a);
                    }
                }
                _ => {
                    let reason = if kind == ack::GAP { ArchiveReason::Gap } else { ArchiveReason::Rejected };
                    archived.push(Archived { first: f, last: run.last, delivery_count: run.delivery_count, reason });
                    settle(run, RecordState::Archived);
                }
            }
        }
    }

    /// Releases every record `member` holds (it left the group or closed its share session).
    pub fn release_member(&mut self, member: &str, now_ms: i64) -> Vec<Archived> {
        self.release_where(now_ms, |r| r.member.as_deref() == Some(member))
    }

    /// Releases records whose acquisition lock has expired.
    pub fn expire_locks(&mut self, now_ms: i64) -> Vec<Archived> {
        self.release_where(now_ms, |r| r.lock_deadline <= now_ms)
    }

    fn release_where(&mut self, now_ms: i64, held: impl Fn(&Run) -> bool) -> Vec<Archived> {
        let limits = self.limits;
        let mut archived = Vec::new();
        let mut touched = false;
        for (first, run) in self.runs.iter_mut() {
            if run.state == RecordState::Acquired && held(run) {
                touched = true;
                archived.extend(release(run, *first, &limits, now_ms));
            }
        }
        if touched {
            self.merge_all();
            self.advance_start();
            self.version += 1;
        }
        self.keep_dead_letters(&archived);
        archived
    }

    /// Counts archived records and keeps those bound for the dead-letter topic (not gaps:
    /// they hold nothing).
    fn keep_dead_letters(&mut self, archived: &[Archived]) {
        for a in archived {
            let n = (a.last - a.first + 1) as u64;
            match a.reason {
                ArchiveReason::Rejected => self.counters.archived_rejected += n,
                ArchiveReason::DeliveryLimit => self.counters.archived_delivery_limit += n,
                ArchiveReason::Gap => {}
            }
        }
        if self.limits.dead_letter {
            self.dead_letters.extend(archived.iter().filter(|a| a.reason != ArchiveReason::Gap).cloned());
        }
    }

    /// The dead letters up to `count` were copied: they are done.
    pub fn dead_letters_copied(&mut self, count: usize) {
        self.dead_letters.drain(..count.min(self.dead_letters.len()));
        if self.dead_letters.is_empty() {
            self.dead_letter_mark = -1;
        }
        self.version += 1;
    }

    /// The log start moved past the share-partition start (retention, DeleteRecords): the
    /// records below it are gone and leave the in-flight window.
    pub fn on_log_start(&mut self, log_start: i64) {
        if log_start <= self.start_offset {
            return;
        }
        self.split_at(log_start);
        self.runs = self.runs.split_off(&log_start);
        self.start_offset = log_start;
        self.version += 1;
        self.end_offset = self.end_offset.max(log_start);
    }

    /// Moves the start offset past leading acknowledged and archived records.
    fn advance_start(&mut self) {
        while let Some(entry) = self.runs.first_entry() {
            if !entry.get().state.is_done() {
                break;
            }
            self.start_offset = entry.get().last + 1;
            entry.remove();
        }
        if self.runs.is_empty() {
            self.start_offset = self.end_offset;
        }
    }

    /// Makes `offset` the first offset of a run (when a run spans it).
    fn split_at(&mut self, offset: i64) {
        let Some((&first, run)) = self.runs.range_mut(..offset).next_back() else { return };
        if run.last < offset {
            return;
        }
        let tail = run.clone();
        run.last = offset - 1;
        self.runs.insert(offset, tail);
        debug_assert!(first < offset);
    }

    /// Joins neighbouring runs in the same state again after a change within `lo..=hi`.
    fn merge_around(&mut self, lo: i64, hi: i64) {
        let from = self.runs.range(..lo).next_back().map_or(lo, |(f, _)| *f);
        let to = self.runs.range(hi + 1..).next().map_or(hi, |(f, _)| *f);
        let firsts: Vec<i64> = self.runs.range(from..=to).map(|(f, _)| *f).collect();
        self.merge_firsts(&firsts);
    }

    fn merge_all(&mut self) {
        let firsts: Vec<i64> = self.runs.keys().copied().collect();
        self.merge_firsts(&firsts);
    }

    fn merge_firsts(&mut self, firsts: &[i64]) {
        let mut current: Option<i64> = None;
        for &f in firsts {
            let Some(run) = self.runs.get(&f) else { continue };
            let joinable =
                current.and_then(|c| self.runs.get(&c)).filter(|prev| prev.last + 1 == f && mergeable(prev, run));
            if joinable.is_some() {
                let last = run.last;
                self.runs.remove(&f);
                if let Some(prev) = current.and_then(|c| self.runs.get_mut(&c)) {
                    prev.last = last;
                }
            } else {
                current = Some(f);
            }
        }
    }

    /// The in-flight runs `(first, last, state, delivery_count)` (persisted state, metrics).
    pub fn runs(&self) -> impl Iterator<Item = (i64, i64, RecordState, i16)> + '_ {
        self.runs.iter().map(|(f, r)| (*f, r.last, r.state, r.delivery_count))
    }

    /// Rebuilds a share-partition from persisted state: runs not listed are available with
    /// no delivery yet; acquired runs cannot be persisted (their locks died with the broker).
    pub fn restore(
        start_offset: i64,
        end_offset: i64,
        state_epoch: i32,
        runs: &[(i64, i64, RecordState, i16)],
        limits: Limits,
    ) -> SharePartition {
        let mut sp = SharePartition::new(start_offset, limits);
        sp.state_epoch = state_epoch;
        sp.end_offset = end_offset.max(start_offset);
        let blank = |last| Run {
            last,
            state: RecordState::Available,
            delivery_count: 0,
            member: None,
            lock_deadline: 0,
            not_before: 0,
        };
        let mut next = start_offset;
        for &(first, last, state, count) in runs {
            let first = first.max(next);
            if last < first || first >= sp.end_offset {
                continue;
            }
            let last = last.min(sp.end_offset - 1);
            if first > next {
                sp.runs.insert(next, blank(first - 1));
            }
            let state = if state == RecordState::Acquired { RecordState::Available } else { state };
            sp.runs.insert(first, Run { state, delivery_count: count, ..blank(last) });
            next = last + 1;
        }
        if next < sp.end_offset {
            sp.runs.insert(next, blank(sp.end_offset - 1));
        }
        sp.merge_all();
        sp.advance_start();
        sp
    }
}

fn mergeable(a: &Run, b: &Run) -> bool {
    // done records keep no per-record detail worth a run of its own
    if a.state == b.state && a.state.is_done() {
        return true;
    }
    a.state == b.state
        && a.delivery_count == b.delivery_count
        && a.member == b.member
        && a.lock_deadline == b.lock_deadline
        && a.not_before == b.not_before
}

fn settle(run: &mut Run, state: RecordState) {
    run.state = state;
    run.member = None;
    run.lock_deadline = 0;
    run.not_before = 0;
}

/// Releases an acquired run: available again (after the release back-off), or archived when
/// its delivery count has reached the limit.
fn release(run: &mut Run, first: i64, limits: &Limits, now_ms: i64) -> Option<Archived> {
    if run.delivery_count >= limits.delivery_count_limit {
        settle(run, RecordState::Archived);
        return Some(Archived {
            first,
            last: run.last,
            delivery_count: run.delivery_count,
            reason: ArchiveReason::DeliveryLimit,
        });
    }
    settle(run, RecordState::Available);
    run.not_before = now_ms + release_backoff(limits, run.delivery_count);
    None
}

/// The back-off before a record delivered `deliveries` times may be acquired again.
fn release_backoff(limits: &Limits, deliveries: i16) -> i64 {
    if limits.release_backoff_ms <= 0 {
        return 0;
    }
    let doublings = u32::try_from(deliveries.max(1) - 1).unwrap_or(0).min(30);
    let cap = if limits.release_backoff_max_ms > 0 { limits.release_backoff_max_ms } else { i64::MAX };
    limits.release_backoff_ms.saturating_mul(1i64 << doublings).min(cap)
}

/// Appends an acquired range, joining it to the previous one when they touch and share a
/// delivery count (fewer `AcquiredRecords` entries).
fn push_merged(out: &mut Vec<Acquired>, a: Acquired) {
    match out.last_mut() {
        Some(prev) if prev.last + 1 == a.first && prev.delivery_count == a.delivery_count => prev.last = a.last,
        _ => out.push(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn batches(ranges: &[(i64, i64)]) -> Vec<LogBatch> {
        ranges.iter().map(|(b, l)| LogBatch::new(*b, *l)).collect()
    }

    #[test]
    fn acquires_new_records_and_accepts_them() {
        let mut sp = SharePartition::new(0, Limits::default());
        let a = member("a");
        let got = sp.acquire(&a, &batches(&[(0, 4), (5, 9)]), 500, AcquireMode::BatchOptimized, 1000);
        assert_eq!(got, vec![Acquired { first: 0, last: 9, delivery_count: 1 }]);
        assert_eq!(sp.end_offset(), 10);
        assert_eq!(sp.next_fetch_offset(1000), Some(10));
        sp.acknowledge("a", 0, 9, &[ack::ACCEPT], 1001).unwrap();
        assert_eq!(sp.start_offset(), 10);
        assert_eq!(sp.runs().count(), 0);
    }

    #[test]
    fn record_limit_mode_cuts_batches_and_runs() {
        let mut sp = SharePartition::new(0, Limits::default());
        let got = sp.acquire(&member("a"), &batches(&[(0, 4), (5, 9)]), 3, AcquireMode::RecordLimit, 0);
        assert_eq!(got, vec![Acquired { first: 0, last: 2, delivery_count: 1 }]);
        assert_eq!(sp.end_offset(), 3, "the rest of the batch is read again by the next fetch");
        let got = sp.acquire(&member("b"), &batches(&[(0, 4), (5, 9)]), 4, AcquireMode::RecordLimit, 0);
        assert_eq!(got, vec![Acquired { first: 3, last: 6, delivery_count: 1 }]);
        // released records come back a few at a time too
        sp.acknowledge("a", 0, 2, &[ack::RELEASE], 0).unwrap();
        let got = sp.acquire(&member("c"), &batches(&[(0, 4), (5, 9)]), 2, AcquireMode::RecordLimit, 0);
        assert_eq!(got, vec![Acquired { first: 0, last: 1, delivery_count: 2 }]);
        assert_eq!(sp.acquired_count(), 6);
    }

    #[test]
    fn renew_restarts_the_lock_of_held_records_only() {
        let limits = Limits { lock_ms: 100, ..Limits::default() };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire(&member("a"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 0);
        let version = sp.version();
        sp.acknowledge("a", 0, 1, &[ack::RENEW], 90).unwrap();
        assert_eq!(sp.version(), version, "a renewed lock is not state to write");
        assert_eq!(sp.acknowledge("b", 2, 2, &[ack::RENEW], 90), Err(AckError::InvalidRecordState));
        // at 100 the records not renewed are released; the renewed ones stay acquired until 190
        sp.expire_locks(100);
        let runs: Vec<_> = sp.runs().collect();
        assert_eq!(runs[0], (0, 1, RecordState::Acquired, 1));
        assert_eq!(runs[1], (2, 4, RecordState::Available, 1));
        sp.acknowledge("a", 0, 1, &[ack::ACCEPT], 150).unwrap();
        assert_eq!(sp.start_offset(), 2);
        assert_eq!(sp.counters.acknowledged[ack::RENEW as usize], 2);
    }

    #[test]
    fn max_records_stops_at_batch_boundaries() {
        let mut sp = SharePartition::new(0, Limits::default());
        let got = sp.acquire(&member("a"), &batches(&[(0, 4), (5, 9), (10, 14)]), 6, AcquireMode::BatchOptimized, 0);
        assert_eq!(got, vec![Acquired { first: 0, last: 9, delivery_count: 1 }]);
        assert_eq!(sp.end_offset(), 10);
    }

    #[test]
    fn only_the_holder_may_acknowledge() {
        let mut sp = SharePartition::new(0, Limits::default());
        sp.acquire(&member("a"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 0);
        assert_eq!(sp.acknowledge("b", 0, 4, &[ack::ACCEPT], 1), Err(AckError::InvalidRecordState));
        assert_eq!(sp.acknowledge("a", 3, 7, &[ack::ACCEPT], 1), Err(AckError::InvalidRecordState));
        assert_eq!(sp.acknowledge("a", 4, 3, &[ack::ACCEPT], 1), Err(AckError::InvalidRequest));
        assert_eq!(sp.acknowledge("a", 0, 4, &[1, 1], 1), Err(AckError::InvalidRequest));
        assert_eq!(sp.acknowledge("a", 0, 4, &[7], 1), Err(AckError::InvalidRequest));
        assert_eq!(sp.acknowledge("a", 1, i64::MAX, &[1], 1), Err(AckError::InvalidRecordState));
        assert_eq!(sp.acknowledge("a", i64::MIN, i64::MAX, &[1], 1), Err(AckError::InvalidRequest));
        // refused acknowledgements changed nothing; accepting twice is refused the second time
        sp.acknowledge("a", 0, 4, &[ack::ACCEPT], 1).unwrap();
        assert_eq!(sp.acknowledge("a", 0, 0, &[ack::ACCEPT], 1), Err(AckError::InvalidRecordState));
    }

    #[test]
    fn per_offset_types_split_runs_and_release_makes_records_available() {
        let mut sp = SharePartition::new(0, Limits::default());
        sp.acquire(&member("a"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 0);
        let archived =
            sp.acknowledge("a", 0, 4, &[ack::ACCEPT, ack::RELEASE, ack::REJECT, ack::ACCEPT, ack::GAP], 10).unwrap();
        assert_eq!(archived.len(), 2);
        assert_eq!(archived[0].reason, ArchiveReason::Rejected);
        assert_eq!(archived[1].reason, ArchiveReason::Gap);
        assert_eq!(sp.start_offset(), 1);
        assert_eq!(sp.next_fetch_offset(10), Some(1));
        // offset 1 is acquired again by another member, delivery count 2
        let got = sp.acquire(&member("b"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 20);
        assert_eq!(got, vec![Acquired { first: 1, last: 1, delivery_count: 2 }]);
        sp.acknowledge("b", 1, 1, &[ack::ACCEPT], 21).unwrap();
        assert_eq!(sp.start_offset(), 5);
    }

    #[test]
    fn expired_locks_release_and_the_delivery_limit_archives() {
        let limits = Limits { delivery_count_limit: 2, lock_ms: 100, ..Limits::default() };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire(&member("a"), &batches(&[(0, 1)]), 500, AcquireMode::BatchOptimized, 0);
        assert_eq!(sp.next_wakeup(), Some(100));
        assert!(sp.expire_locks(99).is_empty());
        assert!(sp.expire_locks(100).is_empty());
        assert_eq!(sp.next_fetch_offset(100), Some(0));
        let got = sp.acquire(&member("b"), &batches(&[(0, 1)]), 500, AcquireMode::BatchOptimized, 100);
        assert_eq!(got, vec![Acquired { first: 0, last: 1, delivery_count: 2 }]);
        let archived = sp.expire_locks(200);
        assert_eq!(
            archived,
            vec![Archived { first: 0, last: 1, delivery_count: 2, reason: ArchiveReason::DeliveryLimit }]
        );
        assert_eq!(sp.start_offset(), 2);
    }

    #[test]
    fn a_leaving_member_releases_only_its_records() {
        let mut sp = SharePartition::new(0, Limits::default());
        sp.acquire(&member("a"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 0);
        sp.acquire(&member("b"), &batches(&[(5, 9)]), 500, AcquireMode::BatchOptimized, 0);
        sp.release_member("a", 1);
        assert_eq!(sp.next_fetch_offset(1), Some(0));
        assert_eq!(sp.acquired_count(), 5);
        sp.acknowledge("b", 5, 9, &[ack::ACCEPT], 2).unwrap();
        assert_eq!(sp.start_offset(), 0);
    }

    #[test]
    fn the_in_flight_window_bounds_new_records() {
        let limits = Limits { max_in_flight: 10, ..Limits::default() };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire(&member("a"), &batches(&[(0, 5), (6, 11), (12, 20)]), 500, AcquireMode::BatchOptimized, 0);
        assert_eq!(sp.end_offset(), 12);
        assert_eq!(sp.next_fetch_offset(0), None);
        sp.acknowledge("a", 0, 5, &[ack::ACCEPT], 1).unwrap();
        assert_eq!(sp.next_fetch_offset(1), Some(12));
    }

    #[test]
    fn release_back_off_grows_with_deliveries() {
        let limits = Limits { release_backoff_ms: 100, release_backoff_max_ms: 250, ..Limits::default() };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire(&member("a"), &batches(&[(0, 0)]), 500, AcquireMode::BatchOptimized, 0);
        sp.acknowledge("a", 0, 0, &[ack::RELEASE], 0).unwrap();
        assert_eq!(sp.next_fetch_offset(50), Some(1));
        assert_eq!(sp.next_fetch_offset(100), Some(0));
        sp.acquire(&member("a"), &batches(&[(0, 0)]), 500, AcquireMode::BatchOptimized, 100);
        sp.acknowledge("a", 0, 0, &[ack::RELEASE], 100).unwrap();
        assert_eq!(sp.next_wakeup(), Some(300));
        sp.acquire(&member("a"), &batches(&[(0, 0)]), 500, AcquireMode::BatchOptimized, 300);
        sp.acknowledge("a", 0, 0, &[ack::RELEASE], 300).unwrap();
        assert_eq!(sp.next_wakeup(), Some(550), "capped at 250 ms");
    }

    #[test]
    fn delayed_records_wait_without_blocking_later_ones() {
        let mut sp = SharePartition::new(0, Limits::default());
        let batch = LogBatch { delayed: vec![(1, 500), (2, 900)], ..LogBatch::new(0, 4) };
        let got = sp.acquire(&member("a"), &[batch], 500, AcquireMode::BatchOptimized, 0);
        assert_eq!(
            got,
            vec![Acquired { first: 0, last: 0, delivery_count: 1 }, Acquired { first: 3, last: 4, delivery_count: 1 }]
        );
        sp.acknowledge("a", 0, 0, &[ack::ACCEPT], 1).unwrap();
        sp.acknowledge("a", 3, 4, &[ack::ACCEPT], 1).unwrap();
        assert_eq!(sp.start_offset(), 1);
        assert_eq!(sp.next_fetch_offset(499), Some(5));
        assert_eq!(sp.next_fetch_offset(500), Some(1));
        let got = sp.acquire(&member("a"), &batches(&[(0, 4)]), 500, AcquireMode::BatchOptimized, 600);
        assert_eq!(got, vec![Acquired { first: 1, last: 1, delivery_count: 1 }]);
    }

    #[test]
    fn a_restart_keeps_delayed_records_waiting() {
        // after a restart the window is rebuilt without delivery times: they come from the log
        let back = SharePartition::restore(0, 3, 0, &[(1, 2, RecordState::Acknowledged, 1)], Limits::default());
        let mut sp = back;
        let batch = LogBatch { delayed: vec![(0, 500)], ..LogBatch::new(0, 4) };
        let got = sp.acquire(&member("a"), &[batch], 500, AcquireMode::BatchOptimized, 10);
        assert_eq!(got, vec![Acquired { first: 3, last: 4, delivery_count: 1 }]);
        assert_eq!(sp.next_fetch_offset(499), Some(5));
        assert_eq!(sp.next_fetch_offset(500), Some(0));
    }

    #[test]
    fn control_batches_are_never_delivered() {
        let mut sp = SharePartition::new(0, Limits::default());
        let marker = LogBatch { skip: true, ..LogBatch::new(5, 5) };
        let got = sp.acquire(
            &member("a"),
            &[LogBatch::new(0, 4), marker, LogBatch::new(6, 7)],
            500,
            AcquireMode::BatchOptimized,
            0,
        );
        assert_eq!(
            got,
            vec![Acquired { first: 0, last: 4, delivery_count: 1 }, Acquired { first: 6, last: 7, delivery_count: 1 }]
        );
        sp.acknowledge("a", 0, 4, &[ack::ACCEPT], 1).unwrap();
        assert_eq!(sp.start_offset(), 6);
    }

    #[test]
    fn rejected_and_exhausted_records_wait_for_the_dead_letter_topic() {
        let limits = Limits { delivery_count_limit: 1, dead_letter: true, ..Limits::default() };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire(&member("a"), &batches(&[(0, 3)]), 500, AcquireMode::BatchOptimized, 0);
        sp.acknowledge("a", 0, 3, &[ack::REJECT, ack::RELEASE, ack::GAP, ack::ACCEPT], 1).unwrap();
        let reasons: Vec<_> = sp.dead_letters.iter().map(|d| (d.first, d.reason)).collect();
        assert_eq!(reasons, vec![(0, ArchiveReason::Rejected), (1, ArchiveReason::DeliveryLimit)]);
        sp.dead_letters_copied(2);
        assert!(sp.dead_letters.is_empty());
        assert_eq!(sp.start_offset(), 4);
    }

    #[test]
    fn log_start_moving_drops_records() {
        let mut sp = SharePartition::new(0, Limits::default());
        sp.acquire(&member("a"), &batches(&[(0, 9)]), 500, AcquireMode::BatchOptimized, 0);
        sp.on_log_start(5);
        assert_eq!(sp.start_offset(), 5);
        assert_eq!(sp.acknowledge("a", 0, 4, &[ack::ACCEPT], 1), Err(AckError::InvalidRecordState));
        sp.acknowledge("a", 5, 9, &[ack::ACCEPT], 1).unwrap();
        assert_eq!(sp.start_offset(), 10);
    }

    #[test]
    fn restore_keeps_done_records_and_delivery_counts() {
        let mut sp = SharePartition::new(0, Limits::default());
        sp.acquire(&member("a"), &batches(&[(0, 9)]), 500, AcquireMode::BatchOptimized, 0);
        sp.acknowledge("a", 2, 3, &[ack::ACCEPT], 1).unwrap();
        let runs: Vec<_> = sp.runs().collect();
        let back = SharePartition::restore(sp.start_offset(), sp.end_offset(), 1, &runs, Limits::default());
        assert_eq!(back.next_fetch_offset(0), Some(0));
        let got = back.clone().acquire(&member("b"), &batches(&[(0, 9)]), 500, AcquireMode::BatchOptimized, 0);
        assert_eq!(
            got,
            vec![Acquired { first: 0, last: 1, delivery_count: 2 }, Acquired { first: 4, last: 9, delivery_count: 2 }]
        );
    }
}
