//! A partition kept on several brokers, as Kafka's `Partition` keeps it: the leader tracks
//! what each follower holds for good (with `log.flush.on.acks.all`, the durable offset its
//! Fetch reports beside the fetch offset: never bytes it has not fsynced), advances the high
//! watermark to the smallest among the in-sync replicas, and proposes ISR changes to the
//! controller; acks=all waits for the high watermark. A follower's fetching runs elsewhere (`crate::replica`); here it is only a
//! role with what to stop when the role changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::Partition;
use crate::cluster::metadata_log::PartitionState;

/// This broker's part in a partition.
#[derive(Debug, Default)]
pub enum Role {
    /// The only replica: appends move the high watermark (a single broker, or RF 1).
    #[default]
    Single,
    Leader(Leadership),
    Follower(Following),
    /// A replica with no leader to follow (the partition has none).
    Offline,
}

#[derive(Debug)]
pub struct Leadership {
    pub topic_id: Uuid,
    pub epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    followers: HashMap<i32, FollowerProgress>,
    /// The log end when this leadership began: a follower joins the ISR only once it has
    /// everything before it (it has truncated to this epoch and caught up).
    epoch_start: i64,
    /// An ISR change is with the controller; no other is proposed meanwhile.
    pub altering: bool,
}

impl Leadership {
    /// Takes in the replica list (a new leadership's, or a reassignment's): added followers
    /// are tracked from nothing (they join the ISR once caught up), removed ones forgotten.
    fn set_replicas(&mut self, replicas: &[i32], me: i32) {
        if self.replicas == replicas {
            return;
        }
        self.followers.retain(|id, _| replicas.contains(id));
        let now = Instant::now();
        for r in replicas.iter().filter(|r| **r != me) {
            self.followers.entry(*r).or_insert_with(|| FollowerProgress::new(now));
        }
        self.replicas = replicas.to_vec();
    }
}

#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// What the follower holds for good (durable, when acks=all means fsynced): everything
    /// below. It moves the high watermark.
    log_end: i64,
    /// When it last had everything the leader had.
    caught_up: Instant,
    /// The leader's log end and the time at the follower's previous fetch (Kafka's
    /// `lastFetchLeaderLogEndOffset`): a follower fetching from there has caught up to that
    /// moment, even when appends keep the leader ahead of every fetch.
    last_fetch: (i64, Instant),
}

impl FollowerProgress {
    fn new(now: Instant) -> FollowerProgress {
        FollowerProgress { log_end: -1, caught_up: now, last_fetch: (-1, now) }
    }

    /// Takes in a fetch from `fetch_offset` while the leader's log ends at `leader_end`.
    fn fetched(&mut self, fetch_offset: i64, leader_end: i64) {
        let now = Instant::now();
        if fetch_offset >= leader_end {
            self.caught_up = now;
        } else if fetch_offset >= self.last_fetch.0 && self.last_fetch.0 >= 0 {
            self.caught_up = self.caught_up.max(self.last_fetch.1);
        }
        self.last_fetch = (leader_end, now);
    }
}

#[derive(Debug)]
pub struct Following {
    pub leader: i32,
    pub epoch: i32,
    /// Takes the partition out of its replica fetcher when the role changes (dropped with it).
    _fetching: StopFetching,
}

/// Stops a follower's fetching when dropped (see `crate::replica`).
pub struct StopFetching(Option<Box<dyn FnOnce() + Send + Sync>>);

impl StopFetching {
    pub fn new(stop: impl FnOnce() + Send + Sync + 'static) -> StopFetching {
        StopFetching(Some(Box::new(stop)))
    }
}

impl Drop for StopFetching {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop();
        }
    }
}

impl std::fmt::Debug for StopFetching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopFetching")
    }
}

/// What acks=all waiters watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replication {
    pub high_watermark: i64,
    pub isr: usize,
    /// Bumped at every change of role, so waiters notice they no longer lead.
    pub generation: u64,
    pub leading: bool,
}

/// An ISR change the leader wants the controller to make.
#[derive(Debug, Clone)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl Partition {
    /// Whether clients may produce to and fetch from this broker's replica.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.lock(), Role::Single | Role::Leader(_))
    }

    /// Whether this is the partition's only replica (nothing to take over from anyone).
    pub fn is_only_replica(&self) -> bool {
        matches!(*self.role.lock(), Role::Single)
    }

    /// The leader epoch this replica knows (its own as leader, its leader's as follower).
    pub fn leader_epoch(&self) -> i32 {
        self.log.read().leader_epoch()
    }

    /// Takes the metadata's state for this partition where this broker leads it: a new
    /// epoch makes it leader (the epoch begins at its log end); the same epoch updates the
    /// ISR it knows. True when it became leader now.
    pub fn lead(&self, topic_id: Uuid, state: &PartitionState, me: i32) -> std::io::Result<bool> {
        let mut role = self.role.lock();
        if let Role::Leader(l) = &mut *role {
            if l.epoch == state.leader_epoch {
                if state.partition_epoch > l.partition_epoch {
                    l.partition_epoch = state.partition_epoch;
                    l.isr = state.isr.clone();
                    l.altering = false;
                    l.set_replicas(&state.replicas, me);
                }
                drop(role);
                self.update_high_watermark();
                return Ok(false);
            }
        }
        self.log.write().become_leader(state.leader_epoch, true)?;
        let epoch_start = self.log.read().log_end_offset();
        let mut leadership = Leadership {
            topic_id,
            epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: Vec::new(),
            isr: state.isr.clone(),
            followers: HashMap::new(),
            epoch_start,
            altering: false,
        };
        leadership.set_replicas(&state.replicas, me);
        *role = Role::Leader(leadership);
        drop(role);
        let (log_end, hw) = {
            let log = self.log.read();
            (log.log_end_offset(), log.high_watermark())
        };
        tracing::info!(topic = %self.topic, partition = self.index, epoch = state.leader_epoch, log_end, hw, isr = ?state.isr, "leading partition");
        self.replication.send_modify(|r| {
            r.generation += 1;
            r.leading = true;
        });
        self.update_high_watermark();
        Ok(true)
    }

    /// The only replica leads in the metadata's epoch (it changes when its broker was fenced
    /// and came back), so clients that send the epoch they saw are answered. True when this
    /// replica led with others, followed, or waited (a reassignment left it alone) until now.
    pub fn lead_alone(&self, epoch: i32) -> std::io::Result<bool> {
        let was_single = matches!(std::mem::replace(&mut *self.role.lock(), Role::Single), Role::Single);
        if !was_single {
            self.lost_leadership(); // acks=all waiters of a replicated leadership are answered
        }
        let log_epoch = self.log.read().leader_epoch();
        if log_epoch != epoch || !was_single {
            self.log.write().become_leader(epoch, false)?;
        }
        Ok(!was_single)
    }

    /// Whether this replica already follows `leader` in `epoch`.
    pub fn follows(&self, leader: i32, epoch: i32) -> bool {
        matches!(&*self.role.lock(), Role::Follower(f) if f.leader == leader && f.epoch == epoch)
    }

    /// Follows `leader` in `epoch`; `fetching` stops its replica fetcher's work on it when
    /// the role changes again.
    pub fn follow(&self, leader: i32, epoch: i32, fetching: StopFetching) {
        self.log.write().become_follower(epoch);
        *self.role.lock() = Role::Follower(Following { leader, epoch, _fetching: fetching });
        self.lost_leadership();
        let log_end = self.log.read().log_end_offset();
        tracing::info!(topic = %self.topic, partition = self.index, leader, epoch, log_end, "following partition");
    }

    /// Runs `change` on the log only while this replica still follows in `epoch`. A fetcher's
    /// abort lands at its next await, so one that just got an answer could otherwise append
    /// or truncate after this broker took the lead (or followed a newer epoch); holding the
    /// role lock orders it before or after [`Partition::lead`] as a whole.
    pub fn as_follower_in<T>(&self, epoch: i32, change: impl FnOnce(&mut crate::log::Log) -> T) -> Option<T> {
        let role = self.role.lock();
        if !matches!(&*role, Role::Follower(f) if f.epoch == epoch) {
            return None;
        }
        let mut log = self.log.write();
        let truncations = log.truncations();
        let changed = change(&mut log);
        if log.truncations() != truncations {
            self.truncated(&log);
        }
        Some(changed)
    }

    /// No replica can lead: this one waits.
    pub fn go_offline(&self) {
        *self.role.lock() = Role::Offline;
        self.lost_leadership();
    }

    fn lost_leadership(&self) {
        self.replication.send_modify(|r| {
            r.generation += 1;
            r.leading = false;
        });
        self.wake_waiters();
    }

    /// A follower fetched from `fetch_offset` holding everything below `durable` for good
    /// (see `crate::replica::follower_progress`): the durable part moves the high watermark
    /// and brings a follower out of the ISR back once it has caught up; the fetch offset
    /// says whether it keeps up. Returns FENCED_LEADER_EPOCH-style refusals as `Err` when this
    /// broker does not lead.
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        durable: i64,
    ) -> Result<Option<IsrChange>, ResponseError> {
        let log_end = self.log.read().log_end_offset();
        let mut role = self.role.lock();
        let Role::Leader(l) = &mut *role else { return Err(ResponseError::NotLeaderOrFollower) };
        let Some(progress) = l.followers.get_mut(&replica) else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        let moved = std::mem::replace(&mut progress.log_end, durable) != durable;
        progress.fetched(fetch_offset, log_end);
        let in_sync = l.isr.contains(&replica);
        let catching_up = !in_sync && !l.altering;
        let change = if catching_up && durable >= self.replication.borrow().high_watermark.max(l.epoch_start) {
            let mut isr = l.isr.clone();
            isr.push(replica);
            isr.sort_unstable();
            l.altering = true;
            Some(self.isr_change(l, isr))
        } else {
            None
        };
        drop(role);
        // the high watermark follows the in-sync followers' offsets (and the leader's own log
        // end, whose appends update it themselves): a follower fetching from where it was
        // moves nothing
        if moved || change.is_some() {
            self.update_high_watermark();
        }
        Ok(change)
    }

    /// The in-sync followers that have not caught up for `lag` (`replica.lag.time.max.ms`):
    /// the ISR without them, to propose to the controller.
    pub fn isr_shrink_due(&self, lag: Duration) -> Option<IsrChange> {
        let mut role = self.role.lock();
        let Role::Leader(l) = &mut *role else { return None };
        if l.altering {
            return None;
        }
        let now = Instant::now();
        let lagging: Vec<i32> = l
            .followers
            .iter()
            .filter(|(id, p)| l.isr.contains(id) && now.duration_since(p.caught_up) > lag)
            .map(|(id, _)| *id)
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = l.isr.iter().copied().filter(|r| !lagging.contains(r)).collect();
        l.altering = true;
        Some(self.isr_change(l, isr))
    }

    fn isr_change(&self, l: &Leadership, isr: Vec<i32>) -> IsrChange {
        IsrChange {
            topic_id: l.topic_id,
            partition: self.index,
            leader_epoch: l.epoch,
            partition_epoch: l.partition_epoch,
            isr,
        }
    }

    /// An ISR change the controller refused or never answered: another may be proposed.
    pub fn isr_change_failed(&self) {
        if let Role::Leader(l) = &mut *self.role.lock() {
            l.altering = false;
        }
    }

    /// The leader's high watermark: the smallest log end among the in-sync replicas (a
    /// follower's counts what is on its disk: it asks for more only after an fsync). It only
    /// moves forward. The leader's own durability is acks=all's other wait (its fsync).
    pub(super) fn update_high_watermark(&self) {
        let (followers, isr) = {
            let role = self.role.lock();
            let Role::Leader(l) = &*role else { return };
            let followers = l.isr.iter().filter_map(|r| l.followers.get(r)).map(|p| p.log_end).min();
            (followers, l.isr.len())
        };
        let (own, before) = {
            let log = self.log.read();
            (log.log_end_offset(), log.high_watermark())
        };
        let hw = followers.map_or(own, |f| f.min(own));
        let moved = hw > before && {
            let mut log = self.log.write();
            let before = log.high_watermark();
            if hw > before {
                log.set_high_watermark(hw);
            }
            log.high_watermark() != before
        };
        let hw = self.log.read().high_watermark();
        self.replication.send_if_modified(|r| {
            let changed = r.high_watermark != hw || r.isr != isr;
            r.high_watermark = hw;
            r.isr = isr;
            changed
        });
        if moved {
            self.wake_waiters();
        }
    }

    /// A follower's high watermark, from its leader's answer.
    pub fn follower_high_watermark(&self, epoch: i32, hw: i64) {
        let moved = self.as_follower_in(epoch, |log| {
            let before = log.high_watermark();
            log.set_high_watermark(hw);
            log.high_watermark() != before
        });
        if moved == Some(true) {
            self.wake_waiters();
        }
    }

    /// Whether this broker follows another's leadership of the partition.
    pub fn is_follower(&self) -> bool {
        matches!(&*self.role.lock(), Role::Follower(_))
    }

    /// The in-sync followers that have everything below `offset`: where a consumer fetching
    /// from `offset` may be sent instead (KIP-392).
    pub fn followers_caught_up_to(&self, offset: i64) -> Vec<i32> {
        match &*self.role.lock() {
            Role::Leader(l) => l
                .followers
                .iter()
                .filter(|(id, p)| l.isr.contains(id) && p.log_end >= offset)
                .map(|(id, _)| *id)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `replica` is in the ISR this broker leads with.
    pub fn is_in_sync(&self, replica: i32) -> bool {
        matches!(&*self.role.lock(), Role::Leader(l) if l.isr.contains(&replica))
    }

    /// How many replicas are in sync (1 for a partition with one replica).
    pub fn isr_size(&self) -> usize {
        match &*self.role.lock() {
            Role::Leader(l) => l.isr.len(),
            _ => 1,
        }
    }

    /// Whether this broker's appends wait for other replicas (acks=all).
    pub fn is_replicated_leader(&self) -> bool {
        matches!(&*self.role.lock(), Role::Leader(_))
    }

    /// Waits until every in-sync replica has `offset` (the high watermark passed it): the
    /// acks=all answer of a replicated partition. Fails as Kafka does when the ISR shrank
    /// below `min_isr` meanwhile, when this broker stopped leading, or after `timeout`.
    pub async fn await_replicated(
        self: &Arc<Self>,
        offset: i64,
        min_isr: usize,
        timeout: Duration,
    ) -> Result<(), ResponseError> {
        let mut watch = self.replication.subscribe();
        let generation = watch.borrow().generation;
        let wait = async {
            loop {
                let now = *watch.borrow_and_update();
                if now.generation != generation || !now.leading {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                if now.high_watermark >= offset {
                    return if now.isr < min_isr { Err(ResponseError::NotEnoughReplicasAfterAppend) } else { Ok(()) };
                }
                if watch.changed().await.is_err() {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Err(ResponseError::RequestTimedOut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, LogConfig};
    use crate::log::Log;

    #[test]
    fn the_high_watermark_follows_what_followers_hold_durably_not_what_they_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let (log, _) = Log::open(dir.path(), config, true, 0).unwrap();
        let p = Partition::new("t".into(), 0, log);
        let mut state = PartitionState::new(vec![1, 2, 3]);
        state.isr = vec![1, 2, 3];
        state.leader = 1;
        state.leader_epoch = 1;
        assert!(p.lead(Uuid::nil(), &state, 1).unwrap());
        for _ in 0..5 {
            p.append(&crate::log::batch::sample_batch(2), 0).unwrap();
        }
        let hw = || p.log().high_watermark();
        assert_eq!(hw(), 0);
        // both followers wrote everything, but have synced only part of it
        p.follower_fetched(2, 10, 4).unwrap();
        p.follower_fetched(3, 10, 6).unwrap();
        assert_eq!(hw(), 4, "unsynced bytes never count");
        p.follower_fetched(2, 10, 10).unwrap();
        assert_eq!(hw(), 6);
        p.follower_fetched(3, 10, 10).unwrap();
        assert_eq!(hw(), 10);
    }

    #[tokio::test]
    async fn a_truncated_follower_reports_nothing_beyond_its_log_end_as_durable() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let (log, _) = Log::open(dir.path(), config, true, 0).unwrap();
        let p = Arc::new(Partition::new("t".into(), 0, log));
        p.follow(2, 1, StopFetching::new(|| {}));
        let leader_dir = tempfile::tempdir().unwrap();
        let config = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let mut leader_log = Log::open(leader_dir.path(), config, true, 0).unwrap().0;
        leader_log.become_leader(1, true).unwrap();
        for _ in 0..4 {
            leader_log.append(&crate::log::batch::sample_batch(2), 0).unwrap();
        }
        let records = leader_log.read(0, 1 << 20, 8, true).unwrap().bytes().unwrap().unwrap();
        p.as_follower_in(1, |log| log.append_as_follower(&records, 0)).unwrap().unwrap();
        p.flush_to(8).await.unwrap();
        assert_eq!(p.durable_offset(), 8);
        p.as_follower_in(1, |log| log.truncate_to(4)).unwrap().unwrap();
        assert_eq!(p.durable_offset(), 4, "what was cut is not durable any more");
    }
}
