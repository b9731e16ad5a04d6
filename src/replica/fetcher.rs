//! One replica fetcher (Kafka's `ReplicaFetcherThread`): one connection to a source broker
//! and a loop over the partitions it follows there. Each round first asks the leader, in one
//! OffsetForLeaderEpoch, where the newest epoch of each newly followed partition ended and
//! cuts any divergent tail; then sends one Fetch naming every partition that is not backing
//! off, and appends what comes back.
//!
//! Durable followers (`log.flush.on.acks.all`) do not stop and wait: the fsync of what one
//! Fetch brought runs while the next Fetch is on the way, and each partition's durable offset
//! travels beside its fetch offset (`super::with_durable_offset`), so the leader counts only
//! synced bytes towards the high watermark. A Fetch sent while syncs are pending does not
//! park at the leader (it must come back to report them); once a Fetch brings nothing, the
//! fetcher waits for the pending syncs and reports them with the next one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::FetcherKey;
use crate::broker::throttle::{is_throttled, MIN_CHUNK};
use crate::broker::{now_ms, Broker};
use crate::client::connection::Connection;
use crate::client::ClientError;
use crate::partition::Partition;

/// Fetch versions a follower speaks: 12 has the diverging epoch (KIP-320) and topic names.
const FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// How long a fetcher with nothing to fetch sleeps before looking again (it is woken at
/// once when a partition is added).
const IDLE: Duration = Duration::from_secs(1);

/// A partition as its fetcher keeps it.
#[derive(Clone)]
pub(super) struct FetchState {
    pub partition: Arc<Partition>,
    pub epoch: i32,
    pub registration: u64,
    /// Its log has been truncated to what the leader holds of its newest epoch.
    truncated: bool,
    /// Backing off after an error for the partition (`replica.fetch.backoff.ms`).
    delayed_until: Option<Instant>,
}

impl FetchState {
    pub fn new(partition: Arc<Partition>, epoch: i32, registration: u64) -> FetchState {
        FetchState { partition, epoch, registration, truncated: false, delayed_until: None }
    }
}

/// What a fetcher shares with the manager: its partitions by (topic, partition), and a
/// wake-up for when one is added.
#[derive(Default)]
pub(super) struct FetcherShared {
    pub partitions: Mutex<BTreeMap<Tp, FetchState>>,
    pub changed: Notify,
    /// Fetch requests sent, and the partitions they named in all (for `/metrics`).
    pub requests: AtomicU64,
    pub partitions_named: AtomicU64,
    /// The most partitions one request named (a full fetch names all).
    pub most_named: AtomicU64,
}

/// A partition by topic name and index (the name shared, so keys are cheap to copy).
pub(super) type Tp = (Arc<str>, i32);
type Ready = Vec<(Tp, FetchState)>;
/// The positions to fetch from, and the partitions held to the follower throttle.
type Wanted = (BTreeMap<Tp, FetchPartition>, Vec<Tp>);

impl FetcherShared {
    /// The partitions not backing off, and when the next one stops backing off.
    fn ready(&self, now: Instant) -> (Ready, Option<Instant>) {
        let partitions = self.partitions.lock();
        let mut next = None::<Instant>;
        let mut ready = Vec::with_capacity(partitions.len());
        for (tp, s) in partitions.iter() {
            match s.delayed_until {
                Some(until) if until > now => next = Some(next.map_or(until, |n| n.min(until))),
                _ => ready.push((tp.clone(), s.clone())),
            }
        }
        (ready, next)
    }

    /// Changes a partition's state if it is still the same registration.
    fn update(&self, tp: &Tp, registration: u64, change: impl FnOnce(&mut FetchState)) {
        if let Some(s) = self.partitions.lock().get_mut(tp).filter(|s| s.registration == registration) {
            change(s);
        }
    }

    fn delay(&self, tp: &Tp, registration: u64, backoff: Duration) {
        self.update(tp, registration, |s| s.delayed_until = Some(Instant::now() + backoff));
    }
}

/// Kafka's replica fetch settings (read-only broker configs).
struct Settings {
    max_bytes: i32,
    response_max_bytes: i32,
    min_bytes: i32,
    max_wait_ms: i32,
    backoff: Duration,
    durable: bool,
}

impl Settings {
    fn of(broker: &Broker) -> Settings {
        let int = |key: &str| broker.config_i64(key).clamp(0, i64::from(i32::MAX)) as i32;
        Settings {
            max_bytes: int("replica.fetch.max.bytes"),
            response_max_bytes: int("replica.fetch.response.max.bytes"),
            min_bytes: int("replica.fetch.min.bytes"),
            max_wait_ms: int("replica.fetch.wait.max.ms"),
            backoff: Duration::from_millis(int("replica.fetch.backoff.ms") as u64),
            durable: broker.config_bool("log.flush.on.acks.all"),
        }
    }
}

/// The fetcher's life: rounds until the manager aborts it (its last partition went).
pub(super) async fn run(shared: Arc<FetcherShared>, broker: Arc<Broker>, key: FetcherKey) {
    let settings = Settings::of(&broker);
    let mut fetcher = Fetcher {
        shared,
        broker,
        leader: key.leader,
        settings,
        conn: None,
        session: Session::default(),
        syncing: BTreeMap::new(),
        brought: false,
    };
    loop {
        let (ready, next) = fetcher.shared.ready(Instant::now());
        if ready.is_empty() {
            let until = next.unwrap_or_else(|| Instant::now() + IDLE);
            let _ = tokio::time::timeout_at(until, fetcher.shared.changed.notified()).await;
            continue;
        }
        if let Err(e) = fetcher.round(&ready).await {
            let (topic, partition) = &ready[0].0;
            fetcher.broker.replica_fetch_failed(fetcher.leader, topic, *partition, &e);
            fetcher.conn = None;
            fetcher.session.reset();
            tokio::time::sleep(fetcher.settings.backoff).await;
        }
    }
}

struct Fetcher {
    shared: Arc<FetcherShared>,
    broker: Arc<Broker>,
    leader: i32,
    settings: Settings,
    conn: Option<Connection>,
    session: Session,
    /// Partitions whose appended records are being fsynced, with the offset to reach.
    syncing: BTreeMap<Tp, (FetchState, i64)>,
    /// The last Fetch appended records (the leader may well have more right away).
    brought: bool,
}

/// The follower's side of its incremental fetch session with the leader (KIP-227): what the
/// leader holds of each partition, so that a fetch names only the partitions whose position
/// changed and the ones to forget.
#[derive(Default)]
struct Session {
    /// 0: none yet (the next fetch is a full one, which opens it).
    id: i32,
    epoch: i32,
    /// A session to close with the next full fetch (after an error).
    stale: i32,
    sent: BTreeMap<Tp, FetchPartition>,
}

impl Session {
    fn reset(&mut self) {
        if self.id != 0 {
            self.stale = self.id;
        }
        self.id = 0;
        self.epoch = 0;
        self.sent.clear();
    }

    /// Splits the partitions to fetch into what the request names and what it forgets: all of
    /// them without a session, else those whose position changed and those no longer fetched.
    fn request(&self, wanted: &BTreeMap<Tp, FetchPartition>, req: FetchRequest) -> FetchRequest {
        let full = self.id == 0;
        let (named, forgotten) = if full { (wanted.iter().collect(), Vec::new()) } else { self.changes(wanted) };
        let forgotten = by_topic(forgotten.into_iter().map(|tp| (tp, tp.1)))
            .into_iter()
            .map(|(t, parts)| ForgottenTopic::default().with_topic(super::topic_name(t)).with_partitions(parts))
            .collect();
        let topics = by_topic(named.into_iter().map(|(tp, p)| (tp, p.clone())))
            .into_iter()
            .map(|(t, parts)| FetchTopic::default().with_topic(super::topic_name(t)).with_partitions(parts))
            .collect();
        let (id, epoch) = if full { (self.stale, 0) } else { (self.id, self.epoch) };
        req.with_session_id(id).with_session_epoch(epoch).with_topics(topics).with_forgotten_topics_data(forgotten)
    }

    /// The partitions whose position differs from what the leader holds, and those it holds
    /// that are no longer fetched: one walk over both maps (same key order).
    #[allow(clippy::type_complexity)]
    fn changes<'a>(
        &'a self,
        wanted: &'a BTreeMap<Tp, FetchPartition>,
    ) -> (Vec<(&'a Tp, &'a FetchPartition)>, Vec<&'a Tp>) {
        let (mut named, mut forgotten) = (Vec::new(), Vec::new());
        let mut sent = self.sent.iter().peekable();
        for (tp, p) in wanted {
            while let Some((gone, _)) = sent.next_if(|(s, _)| *s < tp) {
                forgotten.push(gone);
            }
            match sent.next_if(|(s, _)| *s == tp) {
                Some((_, held)) if held == p => {}
                _ => named.push((tp, p)),
            }
        }
        forgotten.extend(sent.map(|(tp, _)| tp));
        (named, forgotten)
    }

    /// The leader answered `session_id` to a fetch of `wanted`: it now holds those positions.
    fn answered(&mut self, session_id: i32, wanted: BTreeMap<Tp, FetchPartition>) {
        if self.id == 0 {
            self.id = session_id;
            self.stale = 0;
            self.epoch = 1;
        } else {
            self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        }
        self.sent = if self.id == 0 { BTreeMap::new() } else { wanted };
    }
}

/// Items grouped by their (topic, partition) key's topic, in key order.
fn by_topic<'a, T>(items: impl Iterator<Item = (&'a Tp, T)>) -> Vec<(&'a str, Vec<T>)> {
    let mut grouped: Vec<(&str, Vec<T>)> = Vec::new();
    for (tp, item) in items {
        match grouped.last_mut() {
            Some((t, list)) if *t == &*tp.0 => list.push(item),
            _ => grouped.push((&*tp.0, vec![item])),
        }
    }
    grouped
}

impl Fetcher {
    /// One round over the ready partitions. An error is the link's (connecting,
    /// authenticating, the call, a top-level error code): every partition waits for it.
    async fn round(&mut self, ready: &Ready) -> Result<(), ClientError> {
        if self.conn.is_none() {
            self.conn = Some(self.broker.connect_to_broker(self.leader).await?);
        }
        let untruncated: Vec<_> = ready.iter().filter(|(_, s)| !s.truncated).collect();
        if !untruncated.is_empty() {
            return self.truncate(&untruncated).await;
        }
        self.fetch(ready).await
    }

    fn conn(&mut self) -> Result<&mut Connection, ClientError> {
        self.conn.as_mut().ok_or_else(|| ClientError::Protocol("no connection to the leader".into()))
    }

    /// Asks the leader where each partition's newest epoch ends there (one request for all)
    /// and cuts whatever the local log has beyond it: records a previous leader wrote that
    /// the new one never had.
    async fn truncate(&mut self, partitions: &[&(Tp, FetchState)]) -> Result<(), ClientError> {
        let mut asked = Vec::new();
        for (tp, s) in partitions.iter().map(|e| (&e.0, &e.1)) {
            match s.partition.log().latest_epoch() {
                // nothing written yet: nothing to cut
                None => self.shared.update(tp, s.registration, |s| s.truncated = true),
                Some(latest) => asked.push((tp.clone(), s.clone(), latest)),
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let questions = asked.iter().map(|(tp, s, latest)| {
            let question = OffsetForLeaderPartition::default()
                .with_partition(tp.1)
                .with_current_leader_epoch(s.epoch)
                .with_leader_epoch(*latest);
            (tp, question)
        });
        // the partitions come in (topic, partition) order, as the fetcher keeps them
        let topics = by_topic(questions)
            .into_iter()
            .map(|(t, parts)| OffsetForLeaderTopic::default().with_topic(super::topic_name(t)).with_partitions(parts))
            .collect();
        let req =
            OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(self.broker.node_id)).with_topics(topics);
        let resp: OffsetForLeaderEpochResponse =
            self.conn()?.call_at(ApiKey::OffsetForLeaderEpoch, OFFSET_FOR_LEADER_EPOCH_VERSION, &req).await?;
        self.broker.replica_fetch_succeeded(self.leader);
        let mut answers = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                answers.insert((Arc::<str>::from(t.topic.0.as_str()), p.partition), p);
            }
        }
        for (tp, s, latest) in asked {
            let Some(answer) = answers.get(&tp) else { continue };
            link_error(answer.error_code)?;
            if answer.error_code != 0 {
                self.partition_error(&tp, &s, answer.error_code);
                continue;
            }
            let end = s.partition.log().log_end_offset();
            if answer.end_offset >= 0 && answer.end_offset < end {
                tracing::info!(
                    topic = &*tp.0,
                    partition = tp.1,
                    log_end = end,
                    to = answer.end_offset,
                    asked_epoch = latest,
                    leader_answer_epoch = answer.leader_epoch,
                    "truncating a divergent tail"
                );
                match s.partition.as_follower_in(s.epoch, |log| log.truncate_to(answer.end_offset)) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        self.local_error(&tp, &s, &e);
                        continue;
                    }
                    None => continue, // the role changed; the partition is leaving this fetcher
                }
            }
            self.shared.update(&tp, s.registration, |s| s.truncated = true);
        }
        Ok(())
    }

    /// One Fetch for every ready partition, then what it brought: appended, its fsyncs started
    /// (when durable), and the leader's high watermark and log start followed.
    async fn fetch(&mut self, ready: &Ready) -> Result<(), ClientError> {
        self.await_syncs_when_idle().await;
        let Some((wanted, throttled)) = self.wanted(ready) else {
            // every partition is held back by the follower throttle
            tokio::time::sleep(self.broker.follower_quota.delay().max(Duration::from_millis(10))).await;
            return Ok(());
        };
        let req = self.fetch_request(&wanted);
        let named: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        self.shared.partitions_named.fetch_add(named as u64, Ordering::Relaxed);
        self.shared.most_named.fetch_max(named as u64, Ordering::Relaxed);
        let resp: FetchResponse = self.conn()?.call_at(ApiKey::Fetch, FETCH_VERSION, &req).await?;
        link_error(resp.error_code)?;
        let session_lost = [ResponseError::FetchSessionIdNotFound, ResponseError::InvalidFetchSessionEpoch]
            .map(|e| e.code())
            .contains(&resp.error_code);
        if session_lost {
            // the leader lost or moved past the session (it restarted, evicted it): start over
            tracing::debug!(leader = self.leader, error_code = resp.error_code, "replica fetch session reset");
            self.session.reset();
            return Ok(());
        }
        if resp.error_code != 0 {
            return Err(ClientError::kafka("replica fetch", resp.error_code, None));
        }
        self.broker.replica_fetch_succeeded(self.leader);
        self.session.answered(resp.session_id, wanted);
        let states: BTreeMap<&Tp, &FetchState> = ready.iter().map(|(tp, s)| (tp, s)).collect();
        let mut grew = Vec::new();
        for t in resp.responses {
            let topic: Arc<str> = Arc::from(t.topic.0.as_str());
            for data in t.partitions {
                let tp = (topic.clone(), data.partition_index);
                let Some(s) = states.get(&tp) else { continue };
                if let (true, Some(records)) = (throttled.contains(&tp), &data.records) {
                    self.broker.follower_quota.record(records.len());
                }
                if let Some(end) = self.take(&tp, s, data) {
                    grew.push((tp, (*s).clone(), end));
                }
            }
        }
        self.brought = !grew.is_empty();
        self.sync(grew);
        Ok(())
    }

    /// The positions to fetch the ready partitions from, and which of them count against the
    /// follower throttle; `None` when the throttle holds back every one.
    fn wanted(&self, ready: &Ready) -> Option<Wanted> {
        let quota = &self.broker.follower_quota;
        let mut allowance = None::<Option<usize>>;
        let mut throttled = Vec::new();
        let mut wanted = BTreeMap::new();
        for (tp, s) in ready {
            let mut max_bytes = self.settings.max_bytes;
            if quota.is_limited() && self.follower_throttled(&tp.0, tp.1) {
                // the throttled replicas share what the quota allows now
                match *allowance.get_or_insert_with(|| quota.allowance(max_bytes as usize)) {
                    None => continue,
                    Some(allowed) => max_bytes = allowed.max(MIN_CHUNK) as i32,
                }
                throttled.push(tp.clone());
            }
            let (fetch_offset, log_start, last_epoch) = {
                let log = s.partition.log();
                (log.log_end_offset(), log.log_start_offset(), log.latest_epoch().unwrap_or(-1))
            };
            let mut partition = FetchPartition::default()
                .with_partition(tp.1)
                .with_current_leader_epoch(s.epoch)
                .with_fetch_offset(fetch_offset)
                .with_last_fetched_epoch(last_epoch)
                .with_log_start_offset(log_start)
                .with_partition_max_bytes(max_bytes);
            // the durable offset only when it is behind (a sync pending): an idle follower's
            // partitions carry no tag, and the leader reads none as "all of it is durable"
            let durable = s.partition.durable_offset();
            if self.settings.durable && durable < fetch_offset {
                partition = super::with_durable_offset(partition, durable);
            }
            wanted.insert(tp.clone(), partition);
        }
        (!wanted.is_empty()).then_some((wanted, throttled))
    }

    fn fetch_request(&self, wanted: &BTreeMap<Tp, FetchPartition>) -> FetchRequest {
        // with syncs pending, the leader must answer at once: the next Fetch reports them
        let max_wait_ms = if self.syncing.is_empty() { self.settings.max_wait_ms } else { 0 };
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(self.broker.node_id))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(self.settings.min_bytes)
            .with_max_bytes(self.settings.response_max_bytes);
        self.session.request(wanted, req)
    }

    /// Whether this follower's fetches of a partition count against
    /// `follower.replication.throttled.rate`: its topic lists the replica in
    /// `follower.replication.throttled.replicas` and it is out of the ISR.
    fn follower_throttled(&self, topic: &str, partition: i32) -> bool {
        let Some(t) = self.broker.topic(topic) else { return false };
        let me = self.broker.node_id;
        is_throttled(&t.configs, "follower.replication.throttled.replicas", partition, me)
            && !t.state(partition).is_some_and(|s| s.isr.contains(&me))
    }

    /// Takes one partition's answer; returns its new log end when records were appended.
    fn take(&self, tp: &Tp, s: &FetchState, data: PartitionData) -> Option<i64> {
        let p = &s.partition;
        let fetch_offset = p.log().log_end_offset();
        if data.error_code == ResponseError::OffsetOutOfRange.code() && fetch_offset < data.log_start_offset {
            tracing::info!(
                topic = &*tp.0,
                partition = tp.1,
                log_end = fetch_offset,
                leader_log_start = data.log_start_offset,
                "the leader's log starts past this replica's end; starting over there"
            );
            let start = data.log_start_offset;
            if let Some(Err(e)) = p.as_follower_in(s.epoch, |log| log.truncate_fully_and_start_at(start, now_ms())) {
                self.local_error(tp, s, &e);
            }
            return None;
        }
        if data.error_code != 0 {
            self.partition_error(tp, s, data.error_code);
            return None;
        }
        if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
            let end = data.diverging_epoch.end_offset;
            if end < fetch_offset {
                tracing::info!(
                    topic = &*tp.0,
                    partition = tp.1,
                    end,
                    "truncating a tail that diverged from the leader's"
                );
            }
            if let Some(Err(e)) = p.as_follower_in(s.epoch, |log| log.truncate_to(end)) {
                self.local_error(tp, s, &e);
            }
            return None;
        }
        let mut grew = None;
        if let Some(records) = data.records.filter(|r| !r.is_empty()) {
            match p.as_follower_in(s.epoch, |log| log.append_as_follower(&records, now_ms())) {
                None => return None, // the role changed; the partition is leaving this fetcher
                Some(Err(e)) => {
                    self.local_error(tp, s, &e);
                    return None;
                }
                Some(Ok(_)) => grew = Some(p.log().log_end_offset()),
            }
        }
        p.follower_high_watermark(s.epoch, data.high_watermark);
        let log_start = p.log().log_start_offset();
        if data.log_start_offset > log_start {
            // the leader's head went (retention, DeleteRecords): this copy's goes too
            let moved = p.as_follower_in(s.epoch, |log| {
                log.delete_records_before(data.log_start_offset.min(log.high_watermark()), now_ms())
            });
            if let Some(Err(e)) = moved {
                tracing::warn!(topic = &*tp.0, partition = tp.1, error = %e, "cannot follow the leader's log start");
            }
        }
        grew
    }

    /// With `log.flush.on.acks.all`: starts the fsync of every partition that grew (each on
    /// its partition's flusher, all at once) without waiting for them.
    fn sync(&mut self, grew: Vec<(Tp, FetchState, i64)>) {
        if !self.settings.durable {
            return;
        }
        for (tp, s, end) in grew {
            s.partition.want_flushed(end);
            self.syncing.insert(tp, (s, end));
        }
    }

    /// Before a Fetch: forgets the syncs that finished and, when the last Fetch brought
    /// nothing (no more records to overlap them with), waits for the rest, so that this
    /// Fetch reports them and may park at the leader.
    async fn await_syncs_when_idle(&mut self) {
        self.syncing.retain(|_, (s, end)| s.partition.durable_offset() < *end);
        if self.syncing.is_empty() || self.brought {
            return;
        }
        for (tp, (s, end)) in std::mem::take(&mut self.syncing) {
            if let Err(e) = s.partition.flush_to(end).await {
                self.local_error(&tp, &s, &e);
            }
        }
    }

    /// The leader answered an error for one partition (it moved, or does not know this
    /// epoch yet): that partition backs off; the metadata will say where it went.
    fn partition_error(&self, tp: &Tp, s: &FetchState, code: i16) {
        let error = ResponseError::try_from_code(code);
        tracing::debug!(
            topic = &*tp.0,
            partition = tp.1,
            leader = self.leader,
            ?error,
            "replica fetch: partition error"
        );
        self.shared.update(tp, s.registration, |s| s.truncated = false);
        self.shared.delay(tp, s.registration, self.settings.backoff);
    }

    /// The local log failed (a write, an fsync): reported (this replica leaves the ISR, see
    /// `super::storage`), and the partition backs off and truncates again.
    fn local_error(&self, tp: &Tp, s: &FetchState, e: &dyn std::fmt::Display) {
        s.partition.storage_failed(e);
        self.shared.update(tp, s.registration, |s| s.truncated = false);
        self.shared.delay(tp, s.registration, self.settings.backoff);
    }
}

/// Error codes about the link itself (this broker's principal), not a partition.
fn link_error(code: i16) -> Result<(), ClientError> {
    if code == ResponseError::ClusterAuthorizationFailed.code()
        || code == ResponseError::SaslAuthenticationFailed.code()
    {
        return Err(ClientError::kafka("replica fetch", code, None));
    }
    Ok(())
}
