//! Share sessions (KIP-932): the partitions a share consumer fetches from this broker, keyed
//! by group and member, with the epoch that orders its requests. ShareFetch epoch 0 opens a
//! session (replacing an old one), -1 closes it, and any other epoch must be the session's
//! next one. A session belongs to the connection that opened it: when that connection closes,
//! the session goes and the member's acquired records are released.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// The epoch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch that closes one.
pub const FINAL_EPOCH: i32 = -1;

/// A partition by topic id.
pub type TopicIdPartition = (Uuid, i32);

/// Group and member.
pub type SessionKey = (String, String);

#[derive(Debug)]
pub struct ShareSession {
    /// The epoch the next request must carry.
    pub epoch: i32,
    pub partitions: BTreeSet<TopicIdPartition>,
    /// The connection that opened the session.
    pub connection: u64,
}

/// What a request's epoch did to its session.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionStep {
    /// The session is open (new or continued); fetch these partitions.
    Open(BTreeSet<TopicIdPartition>),
    /// The request closed the session: these were its partitions.
    Closed(BTreeSet<TopicIdPartition>),
}

#[derive(Debug, Default)]
pub struct SessionCache {
    sessions: HashMap<SessionKey, ShareSession>,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl SessionCache {
    /// ShareFetch's session step: `add` are the partitions the request names, `forget` those
    /// it drops; `max_sessions` is `group.share.max.share.sessions`.
    pub fn fetch(
        &mut self,
        key: SessionKey,
        epoch: i32,
        add: &[TopicIdPartition],
        forget: &[TopicIdPartition],
        connection: u64,
        max_sessions: usize,
    ) -> Result<SessionStep, ResponseError> {
        match epoch {
            INITIAL_EPOCH => {
                let replaced = self.sessions.remove(&key).is_some();
                if !replaced && self.sessions.len() >= max_sessions {
                    return Err(ResponseError::ShareSessionLimitReached);
                }
                let partitions: BTreeSet<_> = add.iter().copied().collect();
                let session = ShareSession { epoch: 1, partitions: partitions.clone(), connection };
                self.sessions.insert(key, session);
                Ok(SessionStep::Open(partitions))
            }
            FINAL_EPOCH => {
                let session = self.sessions.remove(&key).ok_or(ResponseError::ShareSessionNotFound)?;
                Ok(SessionStep::Closed(session.partitions))
            }
            _ => {
                let session = self.next_in(&key, epoch)?;
                session.partitions.extend(add.iter().copied());
                for tp in forget {
                    session.partitions.remove(tp);
                }
                session.connection = connection;
                Ok(SessionStep::Open(session.partitions.clone()))
            }
        }
    }

    /// ShareAcknowledge's session step: it cannot open a session; -1 closes one.
    pub fn acknowledge(&mut self, key: SessionKey, epoch: i32) -> Result<SessionStep, ResponseError> {
        match epoch {
            INITIAL_EPOCH => Err(ResponseError::InvalidShareSessionEpoch),
            FINAL_EPOCH => {
                let session = self.sessions.remove(&key).ok_or(ResponseError::ShareSessionNotFound)?;
                Ok(SessionStep::Closed(session.partitions))
            }
            _ => Ok(SessionStep::Open(self.next_in(&key, epoch)?.partitions.clone())),
        }
    }

    /// The session a request at `epoch` continues, its epoch moved on; the request's error when
    /// there is none or the epoch is not the one expected.
    fn next_in(&mut self, key: &SessionKey, epoch: i32) -> Result<&mut ShareSession, ResponseError> {
        let session = self.sessions.get_mut(key).ok_or(ResponseError::ShareSessionNotFound)?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidShareSessionEpoch);
        }
        session.epoch = next_epoch(session.epoch);
        Ok(session)
    }

    /// Removes the sessions a closed connection opened; returns their keys and partitions.
    pub fn connection_closed(&mut self, connection: u64) -> Vec<(SessionKey, BTreeSet<TopicIdPartition>)> {
        let keys: Vec<SessionKey> =
            self.sessions.iter().filter(|(_, s)| s.connection == connection).map(|(k, _)| k.clone()).collect();
        keys.into_iter().filter_map(|k| self.sessions.remove(&k).map(|s| (k, s.partitions))).collect()
    }

    /// Removes a member's session (it left its group).
    pub fn remove(&mut self, key: &SessionKey) -> Option<BTreeSet<TopicIdPartition>> {
        self.sessions.remove(key).map(|s| s.partitions)
    }

    /// Whether any member of `group` has a session here.
    pub fn has_group(&self, group: &str) -> bool {
        self.sessions.keys().any(|(g, _)| g == group)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        ("g".into(), "m".into())
    }

    #[test]
    fn epochs_order_a_session() {
        let mut cache = SessionCache::default();
        let t = Uuid::new_v4();
        assert_eq!(cache.fetch(key(), 1, &[], &[], 7, 10), Err(ResponseError::ShareSessionNotFound));
        let step = cache.fetch(key(), 0, &[(t, 0)], &[], 7, 10).unwrap();
        assert_eq!(step, SessionStep::Open([(t, 0)].into()));
        assert_eq!(cache.fetch(key(), 2, &[], &[], 7, 10), Err(ResponseError::InvalidShareSessionEpoch));
        let step = cache.fetch(key(), 1, &[(t, 1)], &[(t, 0)], 7, 10).unwrap();
        assert_eq!(step, SessionStep::Open([(t, 1)].into()));
        assert_eq!(cache.acknowledge(key(), 0), Err(ResponseError::InvalidShareSessionEpoch));
        assert!(matches!(cache.acknowledge(key(), 2), Ok(SessionStep::Open(_))));
        assert_eq!(cache.fetch(key(), -1, &[], &[], 7, 10), Ok(SessionStep::Closed([(t, 1)].into())));
        assert_eq!(cache.fetch(key(), -1, &[], &[], 7, 10), Err(ResponseError::ShareSessionNotFound));
    }

    #[test]
    fn the_cache_is_bounded_and_sessions_die_with_their_connection() {
        let mut cache = SessionCache::default();
        cache.fetch(key(), 0, &[], &[], 1, 1).unwrap();
        let other = ("g".to_string(), "n".to_string());
        assert_eq!(cache.fetch(other.clone(), 0, &[], &[], 2, 1), Err(ResponseError::ShareSessionLimitReached));
        cache.fetch(key(), 0, &[], &[], 1, 1).expect("a member may replace its own session");
        assert_eq!(cache.connection_closed(1).len(), 1);
        assert!(cache.is_empty());
        cache.fetch(other, 0, &[], &[], 2, 1).unwrap();
    }
}
