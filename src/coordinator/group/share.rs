//! Share groups' membership (KIP-932 `ShareGroupHeartbeat`): the broker assigns partitions to
//! members, several members may share one partition, and a member takes its assignment at
//! once (records, not partitions, are what members hold, so nothing is revoked first).
//!
//! Any change of members, subscriptions or the subscribed topics' partitions bumps the group
//! epoch and recomputes the assignment with Kafka's `simple` assignor: each partition to one
//! member while members are fewer than partitions, else each member to one partition, so
//! every member has work and every partition has a reader.
//!
//! Pure logic: time and topic metadata come in as arguments.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use tokio::time::{Duration, Instant};

use super::consumer::{HeartbeatResult, TopicInfo, TopicPartition};

#[derive(Debug, Clone, Copy)]
pub struct ShareGroupConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval_ms: i32,
    /// `group.share.max.size`.
    pub max_size: usize,
}

/// A ShareGroupHeartbeat's content.
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    /// `None`: unchanged since the member's last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone)]
pub struct ShareMember {
    pub id: String,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub subscribed: Vec<String>,
    pub assigned: BTreeSet<TopicPartition>,
    last_sent: Option<BTreeSet<TopicPartition>>,
    last_heartbeat: Instant,
}

#[derive(Debug)]
pub struct ShareGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ShareMember>,
    /// The subscribed topics the assignment was computed from.
    topology: Vec<TopicInfo>,
    /// The group epoch last written to `__consumer_offsets`.
    written_epoch: Option<i32>,
    /// The share-partitions that may have state (on whichever broker): every partition a
    /// member was assigned or whose start offset was set since this coordinator loaded the
    /// group. DescribeShareGroupOffsets lists them when asked for all. Kept in memory only.
    pub state_partitions: BTreeSet<TopicPartition>,
}

impl ShareGroup {
    pub fn new(id: &str) -> ShareGroup {
        ShareGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            topology: Vec::new(),
            written_epoch: None,
            state_partitions: BTreeSet::new(),
        }
    }

    /// A group known from its stored epoch, without members (they rejoin after a restart).
    pub fn restore(id: &str, epoch: i32) -> ShareGroup {
        ShareGroup { group_epoch: epoch, assignment_epoch: epoch, written_epoch: Some(epoch), ..ShareGroup::new(id) }
    }

    /// The `ShareGroupMetadata` record (Kafka's record type 11: the group epoch) when the
    /// epoch changed since it was last taken. Members are not stored: after a coordinator
    /// change they join again, as their heartbeats get UNKNOWN_MEMBER_ID.
    pub fn take_record(&mut self) -> Option<(bytes::Bytes, Option<bytes::Bytes>)> {
        if self.written_epoch == Some(self.group_epoch) {
            return None;
        }
        self.written_epoch = Some(self.group_epoch);
        let key = super::records::RecordKey::ShareGroup { group: self.id.clone() }.encode();
        Some((key, Some(super::consumer_records::encode_group_epoch(self.group_epoch))))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's share group states: `Empty` without members, else `Stable`.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// Every partition some member is assigned.
    pub fn assigned_partitions(&self) -> BTreeSet<TopicPartition> {
        self.members.values().flat_map(|m| m.assigned.iter().copied()).collect()
    }

    /// Serves one heartbeat (epoch -1: the member leaves).
    pub fn heartbeat(
        &mut self,
        hb: ShareHeartbeat,
        topics: &[TopicInfo],
        now: Instant,
        cfg: &ShareGroupConfig,
    ) -> HeartbeatResult {
        let fail = |code: ResponseError, msg: String| HeartbeatResult {
            error: code.code(),
            error_message: Some(msg),
            ..Default::default()
        };
        if hb.member_epoch == -1 {
            if self.members.remove(&hb.member_id).is_some() {
                self.group_epoch += 1;
            }
            self.reassign(topics);
            return HeartbeatResult { member_id: hb.member_id, member_epoch: -1, ..Default::default() };
        }
        let mut changed = false;
        match self.members.get_mut(&hb.member_id) {
            None if hb.member_epoch != 0 => {
                return fail(
                    ResponseError::UnknownMemberId,
                    format!("Member {} is not a member of group {}.", hb.member_id, self.id),
                );
            }
            None => {
                if self.members.len() >= cfg.max_size {
                    return fail(
                        ResponseError::GroupMaxSizeReached,
                        format!("The share group has reached its maximum capacity of {} members.", cfg.max_size),
                    );
                }
                let member = ShareMember {
                    id: hb.member_id.clone(),
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    epoch: 0,
                    subscribed: Vec::new(),
                    assigned: BTreeSet::new(),
                    last_sent: None,
                    last_heartbeat: now,
                };
                self.members.insert(hb.member_id.clone(), member);
                changed = true;
            }
            Some(m) if hb.member_epoch != 0 && hb.member_epoch != m.epoch => {
                return fail(
                    ResponseError::FencedMemberEpoch,
                    format!("The share group member has a epoch {} different from {}.", hb.member_epoch, m.epoch),
                );
            }
            Some(m) if hb.member_epoch == 0 => m.last_sent = None, // rejoining: send it all again
            Some(_) => {}
        }
        let Some(m) = self.members.get_mut(&hb.member_id) else {
            return fail(ResponseError::UnknownServerError, "member vanished".into());
        };
        m.last_heartbeat = now;
        m.client_id = hb.client_id;
        m.client_host = hb.client_host;
        if hb.rack_id.is_some() {
            m.rack_id = hb.rack_id;
        }
        if let Some(mut names) = hb.subscribed_topic_names {
            names.sort();
            names.dedup();
            if names != m.subscribed {
                m.subscribed = names;
                changed = true;
            }
        }
        if changed {
            self.group_epoch += 1;
        }
        self.reassign(topics);
        let Some(m) = self.members.get_mut(&hb.member_id) else {
            return fail(ResponseError::UnknownServerError, "member vanished".into());
        };
        m.epoch = self.assignment_epoch;
        let assignment = (m.last_sent.as_ref() != Some(&m.assigned)).then(|| m.assigned.clone());
        if assignment.is_some() {
            m.last_sent = Some(m.assigned.clone());
        }
        HeartbeatResult {
            member_id: hb.member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            assignment,
            ..Default::default()
        }
    }

    /// Removes members whose session timed out; returns their ids.
    pub fn tick(&mut self, now: Instant, cfg: &ShareGroupConfig, topics: &[TopicInfo]) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now >= m.last_heartbeat + cfg.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                self.members.remove(id);
            }
            self.group_epoch += 1;
            self.reassign(topics);
        }
        expired
    }

    /// Recomputes the assignment when the group epoch moved or the subscribed topics'
    /// partitions changed.
    fn reassign(&mut self, topics: &[TopicInfo]) {
        let subscribed: BTreeSet<&str> =
            self.members.values().flat_map(|m| m.subscribed.iter().map(String::as_str)).collect();
        let topology: Vec<TopicInfo> =
            topics.iter().filter(|t| subscribed.contains(t.name.as_str())).cloned().collect();
        if topology != self.topology {
            self.topology = topology;
            if self.assignment_epoch == self.group_epoch {
                self.group_epoch += 1;
            }
        }
        if self.assignment_epoch == self.group_epoch {
            return;
        }
        let mut target: BTreeMap<String, BTreeSet<TopicPartition>> =
            self.members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
        for topic in &self.topology {
            let members: Vec<&String> =
                self.members.values().filter(|m| m.subscribed.contains(&topic.name)).map(|m| &m.id).collect();
            if members.is_empty() || topic.partitions <= 0 {
                continue;
            }
            let partitions = topic.partitions as usize;
            for i in 0..partitions.max(members.len()) {
                let (member, partition) = (members[i % members.len()], (i % partitions) as i32);
                if let Some(set) = target.get_mut(member) {
                    set.insert((topic.id, partition));
                }
            }
        }
        for (id, parts) in target {
            if let Some(m) = self.members.get_mut(&id) {
                self.state_partitions.extend(parts.iter().copied());
                m.assigned = parts;
            }
        }
        self.assignment_epoch = self.group_epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShareGroupConfig {
        ShareGroupConfig { session_timeout: Duration::from_secs(45), heartbeat_interval_ms: 5000, max_size: 3 }
    }

    fn join(g: &mut ShareGroup, id: &str, topics: &[TopicInfo], now: Instant) -> HeartbeatResult {
        let hb = ShareHeartbeat {
            member_id: id.into(),
            member_epoch: 0,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Default::default()
        };
        g.heartbeat(hb, topics, now, &cfg())
    }

    fn topic(partitions: i32) -> Vec<TopicInfo> {
        vec![TopicInfo { name: "t".into(), id: uuid::Uuid::from_u128(7), partitions }]
    }

    #[test]
    fn members_share_partitions_when_they_outnumber_them() {
        let mut g = ShareGroup::new("g");
        let now = Instant::now();
        let t = topic(2);
        let a = join(&mut g, "a", &t, now);
        assert_eq!(a.assignment.unwrap().len(), 2);
        join(&mut g, "b", &t, now);
        join(&mut g, "c", &t, now);
        let sizes: Vec<usize> = g.members.values().map(|m| m.assigned.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert_eq!(g.assigned_partitions().len(), 2);
        assert_eq!(g.group_epoch, 3);
        assert_eq!(g.members["c"].epoch, 3);
    }

    #[test]
    fn epochs_are_checked_and_the_group_is_bounded() {
        let mut g = ShareGroup::new("g");
        let now = Instant::now();
        let t = topic(4);
        for id in ["a", "b", "c"] {
            assert_eq!(join(&mut g, id, &t, now).error, 0);
        }
        assert_eq!(join(&mut g, "d", &t, now).error, ResponseError::GroupMaxSizeReached.code());
        let stale = ShareHeartbeat { member_id: "a".into(), member_epoch: 2, ..Default::default() };
        assert_eq!(g.heartbeat(stale, &t, now, &cfg()).error, ResponseError::FencedMemberEpoch.code());
        let unknown = ShareHeartbeat { member_id: "z".into(), member_epoch: 3, ..Default::default() };
        assert_eq!(g.heartbeat(unknown, &t, now, &cfg()).error, ResponseError::UnknownMemberId.code());
        let leave = ShareHeartbeat { member_id: "a".into(), member_epoch: -1, ..Default::default() };
        assert_eq!(g.heartbeat(leave, &t, now, &cfg()).member_epoch, -1);
        assert!(!g.members.contains_key("a"));
        assert_eq!(g.assigned_partitions().len(), 4);
    }

    #[test]
    fn silent_members_expire_and_new_partitions_are_assigned() {
        let mut g = ShareGroup::new("g");
        let now = Instant::now();
        join(&mut g, "a", &topic(1), now);
        join(&mut g, "b", &topic(1), now + Duration::from_secs(30));
        let gone = g.tick(now + Duration::from_secs(46), &cfg(), &topic(3));
        assert_eq!(gone, vec!["a".to_string()]);
        assert_eq!(g.members["b"].assigned.len(), 3);
    }
}
