//! Incremental fetch sessions (KIP-227), the leader's side, for followers: a follower's first
//! (full) Fetch opens a session that remembers its partitions and what it was last told of
//! each; later Fetches name only partitions whose fetch position changed (and those to
//! forget), and the answer carries only partitions with something new — records, a moved high
//! watermark, log start or last stable offset, an error. An idle follower's Fetch and its
//! answer then name no partition at all, however many it follows.
//!
//! Consumers are still answered without a session (session id 0, as Kafka does when its cache
//! is full), so they keep sending full fetches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

/// The session epochs that mean "no session": 0 opens one (a full fetch), -1 closes one.
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;
/// A session unused this long is dropped (its follower reconnected, or went).
const IDLE_FOR: Duration = Duration::from_secs(120);
/// At most this many sessions (Kafka's `max.incremental.fetch.session.cache.slots`); the
/// least recently used goes first.
const MAX_SESSIONS: usize = 1000;

/// A topic of a session: by name (fetch v12 and below) or id (v13+).
type TopicKey = (String, Uuid);

struct Cached {
    req: FetchPartition,
    /// (high watermark, last stable offset, log start offset) as last sent; `None` before
    /// the partition was first answered.
    sent: Option<(i64, i64, i64)>,
}

struct Session {
    /// The follower's broker id.
    replica: i32,
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    partitions: BTreeMap<TopicKey, BTreeMap<i32, Cached>>,
    used: Instant,
    /// What wakes the session's parked fetch: kept from fetch to fetch, so a partition
    /// finds it already registered instead of collecting a new one each time.
    wake: Arc<Notify>,
}

/// The leader's fetch sessions by id.
#[derive(Default)]
pub struct FetchSessions {
    sessions: Mutex<HashMap<i32, Session>>,
    last_id: Mutex<i32>,
}

/// How a Fetch is answered: the partitions to read, and the session it belongs to.
pub struct Resolved {
    /// Every partition to read, grouped by topic: the request's, or its session's.
    pub topics: Vec<FetchTopic>,
    /// The session to answer with (0: none).
    pub session_id: i32,
    /// Only partitions with news go in the answer.
    pub incremental: bool,
    /// The session's wake-up for a parked fetch (none without a session).
    pub wake: Option<Arc<Notify>>,
}

impl FetchSessions {
    /// Resolves `req` against the sessions. Followers (`replica >= 0`, fetch v7+) get a new
    /// session with a full fetch; an incremental fetch must name a live session at its next
    /// epoch (else FETCH_SESSION_ID_NOT_FOUND or INVALID_FETCH_SESSION_EPOCH, and the
    /// follower starts over with a full fetch).
    pub fn resolve(&self, req: &mut FetchRequest, replica: i32, version: i16) -> Result<Resolved, ResponseError> {
        let topics = std::mem::take(&mut req.topics);
        if version < 7 {
            return Ok(Resolved { topics, session_id: 0, incremental: false, wake: None });
        }
        let mut sessions = self.sessions.lock();
        match req.session_epoch {
            INITIAL_EPOCH | FINAL_EPOCH => {
                // only its own follower closes a session (a client cannot end a broker's)
                if sessions.get(&req.session_id).is_some_and(|s| s.replica == replica) {
                    sessions.remove(&req.session_id);
                }
                if req.session_epoch == FINAL_EPOCH || replica < 0 {
                    return Ok(Resolved { topics, session_id: 0, incremental: false, wake: None });
                }
                let mut partitions = BTreeMap::new();
                cache(&mut partitions, &topics);
                let id = self.new_id(&sessions);
                evict(&mut sessions);
                let wake = Arc::new(Notify::new());
                let session = Session { replica, next_epoch: 1, partitions, used: Instant::now(), wake: wake.clone() };
                sessions.insert(id, session);
                Ok(Resolved { topics, session_id: id, incremental: false, wake: Some(wake) })
            }
            epoch => {
                let session = sessions
                    .get_mut(&req.session_id)
                    .filter(|s| s.replica == replica)
                    .ok_or(ResponseError::FetchSessionIdNotFound)?;
                if epoch != session.next_epoch {
                    return Err(ResponseError::InvalidFetchSessionEpoch);
                }
                session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
                session.used = Instant::now();
                for forgotten in &req.forgotten_topics_data {
                    let key = (forgotten.topic.0.to_string(), forgotten.topic_id);
                    if let Some(cached) = session.partitions.get_mut(&key) {
                        cached.retain(|p, _| !forgotten.partitions.contains(p));
                        if cached.is_empty() {
                            session.partitions.remove(&key);
                        }
                    }
                }
                cache(&mut session.partitions, &topics);
                Ok(Resolved {
                    topics: grouped(&session.partitions),
                    session_id: req.session_id,
                    incremental: true,
                    wake: Some(session.wake.clone()),
                })
            }
        }
    }

    /// Records what the answer tells the follower of each partition and, for an incremental
    /// fetch, drops the partitions with nothing new (and topics left empty).
    pub fn answered(&self, resolved: &Resolved, topics: &mut Vec<FetchableTopicResponse>) {
        if resolved.session_id == 0 {
            return;
        }
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&resolved.session_id) else { return };
        for t in topics.iter_mut() {
            let Some(cached) = session.partitions.get_mut(&(t.topic.0.to_string(), t.topic_id)) else { continue };
            t.partitions.retain(|pd| {
                let Some(cached) = cached.get_mut(&pd.partition_index) else { return true };
                let now = (pd.high_watermark, pd.last_stable_offset, pd.log_start_offset);
                let news = has_news(pd) || cached.sent != Some(now);
                cached.sent = Some(now);
                news || !resolved.incremental
            });
        }
        if resolved.incremental {
            topics.retain(|t| !t.partitions.is_empty());
        }
    }

    /// Partitions in the open sessions, by follower (for `/metrics`).
    pub fn partitions_by_follower(&self) -> BTreeMap<i32, usize> {
        let mut by = BTreeMap::new();
        for s in self.sessions.lock().values() {
            *by.entry(s.replica).or_default() += s.partitions.values().map(BTreeMap::len).sum::<usize>();
        }
        by
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn new_id(&self, sessions: &HashMap<i32, Session>) -> i32 {
        let mut last = self.last_id.lock();
        loop {
            *last = if *last == i32::MAX { 1 } else { *last + 1 };
            if !sessions.contains_key(&last) {
                return *last;
            }
        }
    }
}

/// Drops sessions idle for [`IDLE_FOR`], and the least recently used while the cache is full.
fn evict(sessions: &mut HashMap<i32, Session>) {
    sessions.retain(|_, s| s.used.elapsed() < IDLE_FOR);
    while sessions.len() >= MAX_SESSIONS {
        let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.used).map(|(id, _)| *id) else { break };
        sessions.remove(&oldest);
    }
}

/// Records, an error or a diverging epoch: always sent.
fn has_news(pd: &PartitionData) -> bool {
    pd.error_code != 0
        || pd.records.as_ref().is_some_and(|r| !r.is_empty())
        || pd.diverging_epoch.epoch >= 0
        || pd.diverging_epoch.end_offset >= 0
        || pd.preferred_read_replica.0 >= 0
}

/// Takes a request's partitions into the session (new ones, or new positions of known ones).
fn cache(partitions: &mut BTreeMap<TopicKey, BTreeMap<i32, Cached>>, topics: &[FetchTopic]) {
    for t in topics {
        let cached = partitions.entry((t.topic.0.to_string(), t.topic_id)).or_default();
        for p in &t.partitions {
            match cached.get_mut(&p.partition) {
                Some(c) => c.req = p.clone(),
                None => drop(cached.insert(p.partition, Cached { req: p.clone(), sent: None })),
            }
        }
    }
}

/// A session's partitions as a full request's topics.
fn grouped(partitions: &BTreeMap<TopicKey, BTreeMap<i32, Cached>>) -> Vec<FetchTopic> {
    partitions
        .iter()
        .map(|((name, id), cached)| {
            FetchTopic::default()
                .with_topic(super::topic_name(name))
                .with_topic_id(*id)
                .with_partitions(cached.values().map(|c| c.req.clone()).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(index: i32, offset: i64) -> FetchPartition {
        FetchPartition::default().with_partition(index).with_fetch_offset(offset)
    }

    fn request(id: i32, epoch: i32, parts: Vec<FetchPartition>) -> FetchRequest {
        let topic = FetchTopic::default().with_topic(super::super::topic_name("t")).with_partitions(parts);
        FetchRequest::default().with_session_id(id).with_session_epoch(epoch).with_topics(vec![topic])
    }

    fn answer(parts: &[(i32, i64)]) -> Vec<FetchableTopicResponse> {
        let partitions = parts
            .iter()
            .map(|(p, hw)| {
                PartitionData::default()
                    .with_partition_index(*p)
                    .with_high_watermark(*hw)
                    .with_records(Some(bytes::Bytes::new()))
            })
            .collect();
        vec![FetchableTopicResponse::default().with_topic(super::super::topic_name("t")).with_partitions(partitions)]
    }

    #[test]
    fn an_incremental_fetch_reads_the_whole_session_and_answers_only_news() {
        let sessions = FetchSessions::default();
        let mut full = request(0, INITIAL_EPOCH, vec![partition(0, 5), partition(1, 7)]);
        let first = sessions.resolve(&mut full, 2, 12).unwrap();
        assert!(first.session_id > 0 && !first.incremental);
        let mut topics = answer(&[(0, 5), (1, 7)]);
        sessions.answered(&first, &mut topics);
        assert_eq!(topics[0].partitions.len(), 2, "a full fetch answers everything");

        // nothing named: both partitions are read; only the one whose high watermark moved is sent
        let mut idle = request(first.session_id, 1, vec![]);
        let next = sessions.resolve(&mut idle, 2, 12).unwrap();
        assert!(next.incremental);
        assert_eq!(next.topics[0].partitions.len(), 2);
        let mut topics = answer(&[(0, 5), (1, 9)]);
        sessions.answered(&next, &mut topics);
        assert_eq!(topics[0].partitions.iter().map(|p| p.partition_index).collect::<Vec<_>>(), vec![1]);

        // a moved fetch offset replaces the cached one; a forgotten partition leaves
        let mut moved = request(first.session_id, 2, vec![partition(0, 6)]);
        moved.forgotten_topics_data = vec![kafka_protocol::messages::fetch_request::ForgottenTopic::default()
            .with_topic(super::super::topic_name("t"))
            .with_partitions(vec![1])];
        let third = sessions.resolve(&mut moved, 2, 12).unwrap();
        assert_eq!(third.topics[0].partitions, vec![partition(0, 6)]);

        // a wrong epoch or an unknown session is refused
        let mut stale = request(first.session_id, 2, vec![]);
        assert_eq!(sessions.resolve(&mut stale, 2, 12).err(), Some(ResponseError::InvalidFetchSessionEpoch));
        let mut unknown = request(first.session_id + 1, 1, vec![]);
        assert_eq!(sessions.resolve(&mut unknown, 2, 12).err(), Some(ResponseError::FetchSessionIdNotFound));
        // the final epoch closes it
        let mut close = request(first.session_id, FINAL_EPOCH, vec![]);
        assert_eq!(sessions.resolve(&mut close, 2, 12).unwrap().session_id, 0);
        assert!(sessions.is_empty());
    }

    #[test]
    fn only_its_follower_uses_or_closes_a_session() {
        let sessions = FetchSessions::default();
        let mut full = request(0, INITIAL_EPOCH, vec![partition(0, 5)]);
        let id = sessions.resolve(&mut full, 2, 12).unwrap().session_id;
        let mut other = request(id, 1, vec![]);
        assert_eq!(sessions.resolve(&mut other, 3, 12).err(), Some(ResponseError::FetchSessionIdNotFound));
        let mut close = request(id, FINAL_EPOCH, vec![]);
        sessions.resolve(&mut close, -1, 12).unwrap();
        assert_eq!(sessions.len(), 1, "a consumer's final fetch leaves a broker's session alone");
        let mut own = request(id, 1, vec![]);
        assert!(sessions.resolve(&mut own, 2, 12).unwrap().incremental);
    }

    #[test]
    fn consumers_get_no_session() {
        let sessions = FetchSessions::default();
        let mut full = request(0, INITIAL_EPOCH, vec![partition(0, 5)]);
        assert_eq!(sessions.resolve(&mut full, -1, 12).unwrap().session_id, 0);
        assert!(sessions.is_empty());
    }
}
