//! What a log does as one replica of a partition kept on several brokers: the leader stamps
//! its epoch on new batches and records where each epoch began; a follower appends the
//! leader's batches as they are (offsets, epochs and producer state kept) and cuts a tail
//! that diverged from the leader's; the high watermark is set from outside (by the leader
//! from its followers' progress, by a follower from the leader's answers).

use std::io;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::{track_batch, Log, LogError};

impl Log {
    /// Becomes the partition's leader in `epoch`: the epoch begins at the log end. With
    /// `replicated`, the high watermark waits for the other replicas.
    pub fn become_leader(&mut self, epoch: i32, replicated: bool) -> io::Result<()> {
        if epoch == self.leader_epoch && replicated == self.replica_of_many {
            return Ok(());
        }
        self.leader_epoch = epoch;
        self.replica_of_many = replicated;
        if !replicated {
            // the only replica: everything it holds is committed
            self.high_watermark = self.log_end_offset();
        }
        self.epochs.assign(epoch, self.log_end_offset())
    }

    /// Follows the leader of `epoch`; its batches bring their own epochs.
    pub fn become_follower(&mut self, epoch: i32) {
        self.leader_epoch = epoch;
        self.replica_of_many = true;
    }

    /// Whether appends move the high watermark themselves (a partition with one replica) or
    /// it is set from the replicas' progress.
    pub fn is_replicated(&self) -> bool {
        self.replica_of_many
    }

    /// Sets the high watermark, never past the log end.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset());
    }

    /// The largest epoch at most `epoch` and the offset where it ended in this log
    /// (OffsetForLeaderEpoch); `(-1, -1)` when none.
    ///
    /// An epoch older than any this log holds ended where this log's first epoch begins: a
    /// replica with records of it holds records this log never had there, and cuts them.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        match self.epochs.first() {
            // a log that never changed leader (one broker): all of it is the current epoch
            None => (self.leader_epoch.min(epoch.max(0)), self.log_end_offset()),
            Some((_, first_start)) => match self.epochs.end_offset_for(epoch, self.log_end_offset()) {
                (-1, _) => (-1, first_start),
                found => found,
            },
        }
    }

    /// The leader epoch cache's entries (epoch, start offset), for diagnostics.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries()
    }

    /// The newest leader epoch this log holds batches of.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|(e, _)| e)
    }

    /// Appends batches fetched from the leader without changing them. Batches wholly below
    /// the log end are skipped; a partial batch at the end of a fetch is left for the next.
    /// Returns how many records were appended.
    pub fn append_as_follower(&mut self, mut records: &[u8], now_ms: i64) -> Result<i64, LogError> {
        if self.offline {
            return Err(LogError::Offline);
        }
        let mut appended = 0i64;
        while records.len() >= HEADER_SIZE {
            let Some((_, size)) = batch::offset_and_size(records).filter(|(_, s)| *s <= records.len()) else {
                break;
            };
            let (bytes, rest) = records.split_at(size);
            records = rest;
            let h = batch::check_integrity(bytes)?;
            if h.last_offset() < self.log_end_offset() {
                continue;
            }
            if h.base_offset < self.log_end_offset() {
                return Err(LogError::Io(io::Error::other(format!(
                    "replicated batch at {} overlaps the log end {}",
                    h.base_offset,
                    self.log_end_offset()
                ))));
            }
            self.append_replicated_batch(bytes, &h, now_ms)?;
            appended += i64::from(h.record_count);
        }
        self.unflushed_records += appended;
        if appended > 0 {
            self.first_unflushed_ms.get_or_insert(now_ms);
        }
        Ok(appended)
    }

    fn append_replicated_batch(&mut self, bytes: &[u8], h: &BatchHeader, now_ms: i64) -> Result<(), LogError> {
        self.maybe_roll(bytes.len(), h.last_offset(), now_ms)?;
        if let Err(e) = self.active_mut().append(bytes, h) {
            if self.active_mut().discard_unacknowledged_tail().is_err() {
                self.offline = true;
            }
            return Err(e.into());
        }
        let control = h.is_control().then(|| batch::control_type(bytes)).flatten();
        if let Some(entry) = track_batch(&mut self.producers, h, control, 0) {
            let base = self.active().base_offset();
            self.aborted.append(base, entry)?;
        }
        self.dedup_replicated(bytes, h, control);
        if self.epochs.latest().is_none_or(|(e, _)| h.leader_epoch > e) {
            self.epochs.assign(h.leader_epoch, h.base_offset)?;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): a
    /// follower whose log ends before the leader's log start (a new replica of a partition
    /// whose head retention already deleted) continues from where the leader's log begins.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64, now_ms: i64) -> io::Result<()> {
        self.truncations += 1;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            self.remove_segment(base)?;
        }
        let seg = self.new_segment(offset, now_ms)?;
        self.segments.insert(offset, seg);
        self.remove_snapshots_after(-1); // every snapshot: none describes what follows
        self.log_start_offset = offset;
        super::write_log_start(&self.dir, offset)?;
        self.epochs.truncate_from_end(i64::MIN)?; // every epoch entry goes
        self.rebuild_producer_state()?;
        self.rebuild_dedup(crate::broker::now_ms())?;
        self.high_watermark = offset;
        self.synced = (offset, 0);
        self.failed_sync = None;
        super::sync_dir(&self.dir)
    }

    /// Cuts the log back to `offset` (a tail that diverged from the leader's): whole
    /// segments above it go, the active one is cut at the batch holding it, and the producer
    /// state and epochs are rebuilt from what is left.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let offset = offset.max(self.log_start_offset);
        if offset >= self.log_end_offset() {
            // nothing to cut, but epochs that begin here are not this log's any more
            return self.epochs.truncate_from_end(offset);
        }
        self.truncations += 1;
        while self.segments.len() > 1 && self.active().base_offset() >= offset {
            let base = self.active().base_offset();
            self.remove_segment(base)?;
        }
        self.active_mut().truncate_to(offset)?;
        let end = self.log_end_offset();
        self.remove_snapshots_after(end);
        self.epochs.truncate_from_end(end)?;
        self.rebuild_producer_state()?;
        self.rebuild_dedup(crate::broker::now_ms())?;
        self.high_watermark = self.high_watermark.min(end);
        self.synced = (self.active().base_offset(), self.active().size());
        self.failed_sync = None;
        super::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{BrokerConfig, LogConfig};
    use crate::log::batch::sample_batch;
    use crate::log::Log;

    fn open(dir: &std::path::Path) -> Log {
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        Log::open(dir, config, true, 0).unwrap().0
    }

    /// Everything in `log` as the bytes a follower's fetch gets.
    fn all_bytes(log: &Log) -> Vec<u8> {
        let end = log.log_end_offset();
        log.read(0, usize::MAX >> 1, end, true).unwrap().bytes().unwrap().unwrap_or_default().to_vec()
    }

    #[test]
    fn a_follower_keeps_the_leaders_batches_and_epochs_and_cuts_a_divergent_tail() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open(a.path());
        leader.become_leader(0, true).unwrap();
        for _ in 0..3 {
            leader.append(&sample_batch(2), 0).unwrap();
        }
        let mut follower = open(b.path());
        follower.become_follower(0);
        assert_eq!(follower.append_as_follower(&all_bytes(&leader), 0).unwrap(), 6);
        assert_eq!(follower.log_end_offset(), 6);
        assert_eq!(follower.epoch_entries(), vec![(0, 0)]);
        assert_eq!(all_bytes(&follower), all_bytes(&leader), "the same bytes");
        // the follower takes over in epoch 1; the old leader had written two more batches
        follower.become_leader(1, true).unwrap();
        assert_eq!(follower.epoch_entries(), vec![(0, 0), (1, 6)]);
        leader.append(&sample_batch(2), 0).unwrap();
        assert_eq!(follower.end_offset_for_epoch(0), (0, 6));
        leader.truncate_to(6).unwrap();
        assert_eq!(leader.log_end_offset(), 6);
        follower.append(&sample_batch(1), 0).unwrap();
        leader.become_follower(1);
        let tail = follower.read(6, usize::MAX >> 1, 7, true).unwrap().bytes().unwrap().unwrap().to_vec();
        assert_eq!(leader.append_as_follower(&tail, 0).unwrap(), 1);
        assert_eq!(leader.epoch_entries(), vec![(0, 0), (1, 6)]);
        assert_eq!(all_bytes(&leader), all_bytes(&follower));
    }

    #[test]
    fn an_epoch_the_leader_never_had_ends_where_the_leaders_first_epoch_begins() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // a leader whose log began in epoch 1 (it never had epoch 0's records)
        let mut leader = open(a.path());
        leader.become_leader(1, true).unwrap();
        leader.append(&sample_batch(2), 0).unwrap();
        assert_eq!(leader.end_offset_for_epoch(0), (-1, 0));
        // a replica that led epoch 0 with records of its own cuts them all and then follows
        let mut old = open(b.path());
        old.become_leader(0, true).unwrap();
        old.append(&sample_batch(3), 0).unwrap();
        old.become_follower(1);
        old.truncate_to(leader.end_offset_for_epoch(old.latest_epoch().unwrap()).1).unwrap();
        assert_eq!((old.log_end_offset(), old.latest_epoch()), (0, None));
        old.append_as_follower(&all_bytes(&leader), 0).unwrap();
        assert_eq!(all_bytes(&old), all_bytes(&leader));
        assert_eq!(old.epoch_entries(), vec![(1, 0)]);
    }
}
