//! The KIP-848 consumer group protocol (`ConsumerGroupHeartbeat`): the broker computes the
//! assignment, and members converge on it through heartbeats.
//!
//! * Any change to membership, subscriptions or the subscribed topics' partitions bumps the
//!   **group epoch** and recomputes the **target assignment** (`uniform` or `range` assignor).
//! * A member whose assignment must shrink is first told to revoke (its assignment without the
//!   revoked partitions, member epoch unchanged); only when its heartbeat reports it no longer
//!   owns them does it move to the target epoch. A partition is given to its new owner only
//!   once nobody else still holds it, so no partition ever has two owners.
//!
//! Pure logic: time and topic metadata come in as arguments.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::consumer_records::TopicPartitions as StoredPartitions;

/// Used until a member states its rebalance timeout (Kafka's max.poll.interval.ms default).
const DEFAULT_REBALANCE_TIMEOUT_MS: i32 = 300_000;

/// A partition by topic id, as the consumer protocol names them.
pub type TopicPartition = (Uuid, i32);

/// A topic as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
}

#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval_ms: i32,
}

/// A heartbeat's content.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member reports owning (`None`: unchanged since its last heartbeat).
    pub owned: Option<BTreeSet<TopicPartition>>,
    pub client_id: String,
    pub client_host: String,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatResult {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it differs from what the member was last told.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

impl HeartbeatResult {
    fn error(code: ResponseError, msg: &str) -> HeartbeatResult {
        HeartbeatResult { error: code.code(), error_message: Some(msg.to_string()), ..Default::default() }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    previous_epoch: i32,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// What the member is allowed to own now.
    pub assigned: BTreeSet<TopicPartition>,
    /// Partitions the member was asked to give up and has not yet confirmed.
    pub revoking: BTreeSet<TopicPartition>,
    /// The member epoch at which each partition in `assigned` or `revoking` was given to the
    /// member (KIP-1251): a commit carrying an older member epoch is still the member's own
    /// for partitions it has held since that epoch.
    assignment_epochs: BTreeMap<TopicPartition, i32>,
    revoke_deadline: Option<Instant>,
    last_sent: Option<BTreeSet<TopicPartition>>,
    last_heartbeat: Instant,
    /// A static member that left temporarily (epoch -2): its place is kept for a session.
    static_left: bool,
}

impl ConsumerMember {
    /// Drops the assignment epochs of partitions the member no longer holds.
    fn forget_released(&mut self) {
        let (assigned, revoking) = (&self.assigned, &self.revoking);
        self.assignment_epochs.retain(|tp, _| assigned.contains(tp) || revoking.contains(tp));
    }
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// The subscribed topics' partition counts the target was computed from.
    topology: Vec<TopicInfo>,
    /// False after a restore: the first heartbeat records the topology without a new epoch.
    topology_known: bool,
    /// Durable state changed since the last [`ConsumerGroup::take_records`].
    pub dirty: bool,
    /// Members removed since the last records were taken (their records become tombstones).
    removed: Vec<String>,
}

/// What identifies a member's durable state, to notice changes.
type MemberFingerprint =
    Option<(i32, i32, BTreeSet<TopicPartition>, BTreeSet<TopicPartition>, Vec<String>, Option<String>, bool)>;

fn to_sets(tps: &[(Uuid, Vec<i32>)]) -> BTreeSet<TopicPartition> {
    tps.iter().flat_map(|(id, ps)| ps.iter().map(move |p| (*id, *p))).collect()
}

/// Groups partitions by topic id, as the protocol's messages and records list them.
pub fn to_lists(set: &BTreeSet<TopicPartition>) -> Vec<(Uuid, Vec<i32>)> {
    let mut out: Vec<(Uuid, Vec<i32>)> = Vec::new();
    for (id, p) in set {
        match out.last_mut() {
            Some((last, ps)) if last == id => ps.push(*p),
            _ => out.push((*id, vec![*p])),
        }
    }
    out
}

/// Matches a Java-style (RE2J) subscription regex against a whole topic name.
fn regex_matches(pattern: &str, name: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(name))
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: "uniform".to_string(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topology: Vec::new(),
            topology_known: true,
            dirty: false,
            removed: Vec::new(),
        }
    }

    fn fingerprint(&self, member_id: &str) -> (i32, i32, MemberFingerprint) {
        let m = self.members.get(member_id).map(|m| {
            (
                m.epoch,
                m.previous_epoch,
                m.assigned.clone(),
                m.revoking.clone(),
                m.subscribed_names.clone(),
                m.subscribed_regex.clone(),
                m.static_left,
            )
        });
        (self.group_epoch, self.assignment_epoch, m)
    }

    fn remove_member(&mut self, id: &str) {
        self.members.remove(id);
        self.target.remove(id);
        self.removed.push(id.to_string());
        self.dirty = true;
    }

    /// The group's durable state as `__consumer_offsets` records (Kafka's KIP-848 formats),
    /// with tombstones for members removed since the last call.
    pub fn take_records(&mut self) -> Vec<(super::records::RecordKey, Option<bytes::Bytes>)> {
        use super::consumer_records::{
            encode_assignment_epoch, encode_group_epoch, encode_target, CurrentAssignment, MemberMetadata,
        };
        use super::records::RecordKey as K;
        let g = self.id.clone();
        let mut out = Vec::new();
        for member in std::mem::take(&mut self.removed) {
            if self.members.contains_key(&member) {
                continue;
            }
            out.push((K::ConsumerCurrent { group: g.clone(), member: member.clone() }, None));
            out.push((K::ConsumerTargetMember { group: g.clone(), member: member.clone() }, None));
            out.push((K::ConsumerMember { group: g.clone(), member }, None));
        }
        out.push((K::ConsumerGroup { group: g.clone() }, Some(encode_group_epoch(self.group_epoch))));
        for m in self.members.values() {
            let meta = MemberMetadata {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_names.clone(),
                subscribed_topic_regex: m.subscribed_regex.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: Some(self.assignor.clone()),
            };
            out.push((K::ConsumerMember { group: g.clone(), member: m.id.clone() }, Some(meta.encode())));
            let target = self.target.get(&m.id).map(to_lists).unwrap_or_default();
            out.push((
                K::ConsumerTargetMember { group: g.clone(), member: m.id.clone() },
                Some(encode_target(&target)),
            ));
            let current = CurrentAssignment {
                member_epoch: m.epoch,
                previous_member_epoch: m.previous_epoch,
                state: if !m.revoking.is_empty() { 1 } else { 0 },
                assigned: to_lists(&m.assigned),
                pending_revocation: to_lists(&m.revoking),
            };
            out.push((K::ConsumerCurrent { group: g.clone(), member: m.id.clone() }, Some(current.encode())));
        }
        out.push((K::ConsumerTarget { group: g }, Some(encode_assignment_epoch(self.assignment_epoch))));
        self.dirty = false;
        out
    }

    /// Rebuilds a group from its replayed records. Members get a fresh session; the topology
    /// is taken from the first heartbeat without starting a new epoch.
    pub fn restore(
        id: &str,
        group_epoch: i32,
        assignment_epoch: i32,
        members: Vec<(
            String,
            super::consumer_records::MemberMetadata,
            StoredPartitions,
            Option<super::consumer_records::CurrentAssignment>,
        )>,
        now: Instant,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(id);
        g.group_epoch = group_epoch;
        g.assignment_epoch = assignment_epoch;
        g.topology_known = false;
        for (member_id, meta, target, current) in members {
            if let Some(a) = meta.server_assignor.clone() {
                g.assignor = a;
            }
            let current = current.unwrap_or(super::consumer_records::CurrentAssignment {
                member_epoch: 0,
                previous_member_epoch: 0,
                state: 0,
                assigned: Vec::new(),
                pending_revocation: Vec::new(),
            });
            g.target.insert(member_id.clone(), to_sets(&target));
            g.members.insert(
                member_id.clone(),
                ConsumerMember {
                    id: member_id,
                    instance_id: meta.instance_id,
                    rack_id: meta.rack_id,
                    client_id: meta.client_id,
                    client_host: meta.client_host,
                    epoch: current.member_epoch,
                    previous_epoch: current.previous_member_epoch,
                    subscribed_names: meta.subscribed_topic_names,
                    subscribed_regex: meta.subscribed_topic_regex,
                    rebalance_timeout_ms: meta.rebalance_timeout_ms.max(1),
                    assignment_epochs: to_sets(&current.assigned)
                        .union(&to_sets(&current.pending_revocation))
                        .map(|tp| (*tp, current.member_epoch.max(0)))
                        .collect(),
                    assigned: to_sets(&current.assigned),
                    revoking: to_sets(&current.pending_revocation),
                    revoke_deadline: None,
                    last_sent: None,
                    last_heartbeat: now,
                    static_left: false,
                },
            );
        }
        g
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// KIP-848 state names, as ListGroups and ConsumerGroupDescribe report them.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty()) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Topics a member subscribes to, by name and regex.
    fn subscription(m: &ConsumerMember, topics: &[TopicInfo]) -> BTreeSet<String> {
        topics
            .iter()
            .filter(|t| {
                m.subscribed_names.contains(&t.name)
                    || m.subscribed_regex.as_deref().is_some_and(|r| regex_matches(r, &t.name))
            })
            .map(|t| t.name.clone())
            .collect()
    }

    /// Serves one heartbeat.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &[TopicInfo],
        now: Instant,
        cfg: &ConsumerGroupConfig,
    ) -> HeartbeatResult {
        if hb.member_epoch == -1 || hb.member_epoch == -2 {
            return self.leave(&hb, now);
        }
        let member_id = if hb.member_id.is_empty() { Uuid::new_v4().to_string() } else { hb.member_id.clone() };
        let before = self.fingerprint(&member_id);
        let result = self.heartbeat_inner(hb, member_id.clone(), topics, now, cfg);
        if self.fingerprint(&member_id) != before {
            self.dirty = true;
        }
        result
    }

    fn heartbeat_inner(
        &mut self,
        hb: Heartbeat,
        member_id: String,
        topics: &[TopicInfo],
        now: Instant,
        cfg: &ConsumerGroupConfig,
    ) -> HeartbeatResult {
        let mut bump = false;
        let full_request = hb.rebalance_timeout_ms != -1
            && (hb.subscribed_topic_names.is_some() || hb.subscribed_topic_regex.is_some())
            && hb.owned.is_some();
        if hb.member_epoch == 0 {
            let taken_over = hb.instance_id.as_ref().and_then(|inst| {
                self.members.values().find(|m| m.instance_id.as_ref() == Some(inst)).map(|m| m.id.clone())
            });
            match taken_over {
                Some(old) if old != member_id => {
                    let prior = self.members.get(&old).is_some_and(|m| m.static_left);
                    if !prior {
                        return HeartbeatResult::error(
                            ResponseError::UnreleasedInstanceId,
                            "the static member's previous instance has not left",
                        );
                    }
                    // the new incarnation inherits the old one's place and partitions
                    if let Some(mut m) = self.members.remove(&old) {
                        self.removed.push(old.clone());
                        m.id = member_id.clone();
                        m.static_left = false;
                        m.last_sent = None;
                        if let Some(t) = self.target.remove(&old) {
                            self.target.insert(member_id.clone(), t);
                        }
                        self.members.insert(member_id.clone(), m);
                    }
                }
                _ => {
                    if !self.members.contains_key(&member_id) {
                        self.members.insert(
                            member_id.clone(),
                            ConsumerMember {
                                id: member_id.clone(),
                                instance_id: hb.instance_id.clone(),
                                rack_id: hb.rack_id.clone(),
                                client_id: hb.client_id.clone(),
                                client_host: hb.client_host.clone(),
                                epoch: 0,
                                previous_epoch: 0,
                                subscribed_names: Vec::new(),
                                subscribed_regex: None,
                                rebalance_timeout_ms: DEFAULT_REBALANCE_TIMEOUT_MS,
                                assigned: BTreeSet::new(),
                                revoking: BTreeSet::new(),
                                assignment_epochs: BTreeMap::new(),
                                revoke_deadline: None,
                                last_sent: None,
                                last_heartbeat: now,
                                static_left: false,
                            },
                        );
                        bump = true;
                    }
                }
            }
        }
        let group_epoch = self.group_epoch;
        let Some(m) = self.members.get_mut(&member_id) else {
            return HeartbeatResult::error(ResponseError::UnknownMemberId, "unknown member id");
        };
        if hb.member_epoch > 0 && hb.member_epoch != m.epoch && hb.member_epoch != m.previous_epoch {
            return HeartbeatResult::error(ResponseError::FencedMemberEpoch, "the member epoch is fenced");
        }
        if hb.member_epoch > group_epoch {
            return HeartbeatResult::error(
                ResponseError::FencedMemberEpoch,
                "the member epoch is newer than the group's",
            );
        }
        m.last_heartbeat = now;
        if hb.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = hb.rebalance_timeout_ms; // -1: unchanged
        }
        if let Some(names) = hb.subscribed_topic_names {
            if names != m.subscribed_names {
                m.subscribed_names = names;
                bump = true;
            }
        }
        if hb.subscribed_topic_regex.is_some() && hb.subscribed_topic_regex != m.subscribed_regex {
            m.subscribed_regex = hb.subscribed_topic_regex;
            bump = true;
        }
        if let Some(assignor) = hb.server_assignor.filter(|a| a != &self.assignor) {
            if assignor == "uniform" || assignor == "range" {
                self.assignor = assignor;
                bump = true;
            } else {
                return HeartbeatResult::error(
                    ResponseError::UnsupportedAssignor,
                    "supported assignors: uniform, range",
                );
            }
        }
        if let (Some(owned), Some(m)) = (hb.owned.as_ref(), self.members.get_mut(&member_id)) {
            m.revoking.retain(|tp| owned.contains(tp));
            if m.revoking.is_empty() {
                m.revoke_deadline = None;
            }
            m.forget_released();
        }
        let subscribed: Vec<TopicInfo> = {
            let wanted: BTreeSet<String> = self.members.values().flat_map(|m| Self::subscription(m, topics)).collect();
            topics.iter().filter(|t| wanted.contains(&t.name)).cloned().collect()
        };
        if !self.topology_known {
            self.topology = subscribed.clone();
            self.topology_known = true;
        }
        if bump || subscribed != self.topology {
            self.group_epoch += 1;
            self.topology = subscribed;
            self.compute_target(topics);
        }
        self.reconcile(&member_id, hb.owned.as_ref(), now);
        let m = &self.members[&member_id];
        // as Kafka: a full request (sent after a lost response or an error) is answered with
        // the whole assignment, whatever the member was told before
        let assignment = (m.last_sent.as_ref() != Some(&m.assigned) || hb.member_epoch == 0 || full_request)
            .then(|| m.assigned.clone());
        let result = HeartbeatResult {
            member_id: member_id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            assignment,
            ..Default::default()
        };
        if let Some(m) = self.members.get_mut(&member_id) {
            m.last_sent = Some(m.assigned.clone());
        }
        result
    }

    fn leave(&mut self, hb: &Heartbeat, now: Instant) -> HeartbeatResult {
        let id = hb.member_id.clone();
        let result = HeartbeatResult { member_id: id.clone(), member_epoch: hb.member_epoch, ..Default::default() };
        let Some(m) = self.members.get_mut(&id) else {
            return HeartbeatResult::error(ResponseError::UnknownMemberId, "unknown member id");
        };
        if hb.member_epoch == -2 && m.instance_id.is_some() {
            m.static_left = true;
            m.last_heartbeat = now;
            self.dirty = true;
            return result;
        }
        self.remove_member(&id);
        self.group_epoch += 1;
        let topics = self.topology.clone();
        self.compute_target(&topics);
        result
    }

    /// Moves `member_id` toward its target: revocation first, then new partitions once free.
    /// `owned`: what the heartbeat says the member owns; partitions to take away that it
    /// already does not own need no revocation round (as Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, owned: Option<&BTreeSet<TopicPartition>>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_elsewhere: BTreeSet<TopicPartition> = self
            .members
            .values()
            .filter(|o| o.id != member_id)
            .flat_map(|o| o.assigned.iter().chain(o.revoking.iter()).copied())
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else { return };
        let to_revoke: BTreeSet<TopicPartition> = m.assigned.difference(&target).copied().collect();
        if !to_revoke.is_empty() {
            m.assigned.retain(|tp| target.contains(tp));
            if owned.is_none_or(|owned| !owned.is_disjoint(&to_revoke)) {
                m.revoking.extend(to_revoke);
                m.revoke_deadline = Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
                return;
            }
            m.forget_released();
        }
        if !m.revoking.is_empty() {
            return;
        }
        for tp in target.difference(&m.assigned.clone()) {
            if !held_elsewhere.contains(tp) {
                m.assigned.insert(*tp);
                m.assignment_epochs.insert(*tp, assignment_epoch);
            }
        }
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
    }

    /// Recomputes the target assignment for the current members and topics.
    fn compute_target(&mut self, topics: &[TopicInfo]) {
        let active: Vec<&ConsumerMember> = self.members.values().collect();
        let subs: BTreeMap<String, BTreeSet<String>> =
            active.iter().map(|m| (m.id.clone(), Self::subscription(m, topics))).collect();
        self.target = if self.assignor == "range" {
            range_assign(&subs, topics)
        } else {
            uniform_assign(&subs, topics, &self.target)
        };
        self.assignment_epoch = self.group_epoch;
    }

    /// Session expiry and revocations that took longer than the rebalance timeout.
    pub fn tick(&mut self, now: Instant, cfg: &ConsumerGroupConfig) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now >= m.last_heartbeat + cfg.session_timeout || m.revoke_deadline.is_some_and(|d| now >= d))
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in expired {
            self.remove_member(&id);
        }
        self.group_epoch += 1;
        let topics = self.topology.clone();
        self.compute_target(&topics);
    }

    /// Whether an (Txn)OffsetCommit from `member_id` at `epoch` for `partitions` may go in, as
    /// Kafka's `ConsumerGroup.validateOffsetCommit`: a member of this protocol must commit with
    /// OffsetCommit v9+ (older versions cannot carry `STALE_MEMBER_EPOCH`). The member's
    /// current epoch always commits; an older one commits partitions the member has held
    /// since that epoch (KIP-1251: a commit sent just before a heartbeat moved the member to
    /// a new epoch is still its own); anything else is `STALE_MEMBER_EPOCH` (TxnOffsetCommit
    /// turns it into `ILLEGAL_GENERATION`).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        epoch: i32,
        transactional: bool,
        api_version: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        // a TxnOffsetCommit need not say who commits
        if transactional && epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if !transactional && api_version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        if epoch == m.epoch {
            return Ok(());
        }
        let held_since = |tp: &TopicPartition| m.assignment_epochs.get(tp).is_some_and(|since| *since <= epoch);
        if epoch > m.epoch || !partitions.iter().all(held_since) {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Every partition of the subscribed topics, in a stable order.
fn partitions_of(subs: &BTreeMap<String, BTreeSet<String>>, topics: &[TopicInfo]) -> Vec<(String, TopicPartition)> {
    let wanted: BTreeSet<&String> = subs.values().flatten().collect();
    topics
        .iter()
        .filter(|t| wanted.contains(&t.name))
        .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), (t.id, p))))
        .collect()
}

/// Balanced and sticky: partitions stay with their previous owner while it is subscribed and
/// under its fair share; the rest go to the least-loaded subscribed member.
fn uniform_assign(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &[TopicInfo],
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let all = partitions_of(subs, topics);
    let quota = all.len().div_ceil(subs.len().max(1));
    let mut unassigned = Vec::new();
    for (topic, tp) in all {
        let keeper = previous
            .iter()
            .find(|(m, owned)| owned.contains(&tp) && subs.get(*m).is_some_and(|s| s.contains(&topic)))
            .map(|(m, _)| m.clone());
        match keeper {
            Some(m) if out[&m].len() < quota => {
                out.entry(m).or_default().insert(tp);
            }
            _ => unassigned.push((topic, tp)),
        }
    }
    for (topic, tp) in unassigned {
        let best = subs
            .iter()
            .filter(|(_, s)| s.contains(&topic))
            .map(|(m, _)| m)
            .min_by_key(|m| (out[*m].len(), (*m).clone()))
            .cloned();
        if let Some(m) = best {
            out.entry(m).or_default().insert(tp);
        }
    }
    out
}

/// Per topic, contiguous ranges of partitions over the subscribed members in id order.
fn range_assign(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &[TopicInfo],
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for t in topics {
        let members: Vec<&String> = subs.iter().filter(|(_, s)| s.contains(&t.name)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let (n, k) = (t.partitions as usize, members.len());
        let mut p = 0usize;
        for (i, m) in members.iter().enumerate() {
            let count = n / k + usize::from(i < n % k);
            for q in p..p + count {
                out.entry((*m).clone()).or_default().insert((t.id, q as i32));
            }
            p += count;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ConsumerGroupConfig {
        ConsumerGroupConfig { session_timeout: Duration::from_secs(45), heartbeat_interval_ms: 5000 }
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &BTreeSet<TopicPartition>) -> Heartbeat {
        Heartbeat { member_id: id.into(), member_epoch: epoch, owned: Some(owned.clone()), ..Default::default() }
    }

    #[test]
    fn partitions_move_only_after_revocation() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 6 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        let a = g.heartbeat(join("a", &["t"]), &t, now, &c);
        let a_owned = a.assignment.clone().unwrap();
        assert_eq!((a.member_epoch, a_owned.len()), (1, 6));
        let b = g.heartbeat(join("b", &["t"]), &t, now, &c);
        assert_eq!(b.assignment.unwrap().len(), 0, "b waits: a still owns everything");
        // a is told to give up three partitions, keeping its epoch
        let a2 = g.heartbeat(beat("a", 1, &a_owned), &t, now, &c);
        let a_kept = a2.assignment.clone().unwrap();
        assert_eq!((a2.member_epoch, a_kept.len()), (1, 3));
        // until a confirms, b gets nothing
        assert!(g.heartbeat(beat("b", b.member_epoch, &BTreeSet::new()), &t, now, &c).assignment.is_none());
        let a3 = g.heartbeat(beat("a", 1, &a_kept), &t, now, &c);
        assert_eq!(a3.member_epoch, 2);
        let b2 = g.heartbeat(beat("b", 2, &BTreeSet::new()), &t, now, &c);
        let b_owned = b2.assignment.unwrap();
        assert_eq!(b_owned.len(), 3);
        assert!(b_owned.is_disjoint(&a_kept));
        assert_eq!(g.state(), "Stable");
    }

    /// KIP-1251: a commit sent with the epoch a heartbeat has just replaced still goes in for
    /// the partitions the member has held since that epoch, and only for those.
    #[test]
    fn a_commit_with_the_previous_epoch_covers_partitions_held_since() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 4 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        let a_all = g.heartbeat(join("a", &["t"]), &t, now, &c).assignment.unwrap();
        g.heartbeat(join("b", &["t"]), &t, now, &c);
        let a_kept = g.heartbeat(beat("a", 1, &a_all), &t, now, &c).assignment.unwrap();
        assert_eq!(g.heartbeat(beat("a", 1, &a_kept), &t, now, &c).member_epoch, 2);
        let kept: Vec<TopicPartition> = a_kept.iter().copied().collect();
        let given_up: Vec<TopicPartition> = a_all.difference(&a_kept).copied().collect();
        assert_eq!(g.validate_offset_commit("a", 1, false, 9, &kept), Ok(()), "held since epoch 1");
        assert_eq!(g.validate_offset_commit("a", 2, false, 9, &kept), Ok(()));
        let stale = Err(ResponseError::StaleMemberEpoch);
        assert_eq!(g.validate_offset_commit("a", 1, false, 9, &given_up), stale, "no longer a's");
        assert_eq!(g.validate_offset_commit("a", 3, false, 9, &kept), stale, "an epoch from the future");
        // b receives the freed partitions at epoch 2: epoch 1 never covered them
        let b = g.heartbeat(beat("b", 2, &BTreeSet::new()), &t, now, &c);
        let b_owned: Vec<TopicPartition> = b.assignment.unwrap().into_iter().collect();
        assert_eq!(b_owned, given_up);
        assert_eq!(g.validate_offset_commit("b", 1, false, 9, &b_owned), stale);
        assert_eq!(g.validate_offset_commit("b", 2, false, 9, &b_owned), Ok(()));
    }

    /// A member whose heartbeat response was lost sends a full heartbeat, and must hear its
    /// assignment again even though the coordinator already sent it.
    #[test]
    fn a_full_heartbeat_is_told_the_whole_assignment() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 2 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        let owned = g.heartbeat(join("a", &["t"]), &t, now, &c).assignment.unwrap();
        assert!(g.heartbeat(beat("a", 1, &owned), &t, now, &c).assignment.is_none(), "nothing new");
        let full = Heartbeat { rebalance_timeout_ms: 30_000, ..join("a", &["t"]) };
        let full = Heartbeat { member_epoch: 1, owned: Some(BTreeSet::new()), ..full };
        assert_eq!(g.heartbeat(full, &t, now, &c).assignment, Some(owned));
    }

    /// As Kafka's `CurrentAssignmentBuilder`: partitions a member reports it no longer owns are
    /// taken away without a revocation round.
    #[test]
    fn partitions_already_given_up_need_no_revocation() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 2 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("a", &["t"]), &t, now, &c);
        g.heartbeat(join("b", &["t"]), &t, now, &c);
        let a = g.heartbeat(beat("a", 1, &BTreeSet::new()), &t, now, &c);
        assert_eq!((a.member_epoch, a.assignment.map(|x| x.len())), (2, Some(1)), "straight to the new epoch");
        assert!(g.members["a"].revoking.is_empty());
    }

    #[test]
    fn range_assigns_contiguous_ranges_and_regex_subscribes() {
        let t = vec![
            TopicInfo { name: "orders".into(), id: Uuid::new_v4(), partitions: 5 },
            TopicInfo { name: "other".into(), id: Uuid::new_v4(), partitions: 2 },
        ];
        let subs = BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["orders".to_string()])),
            ("b".to_string(), BTreeSet::from(["orders".to_string()])),
        ]);
        let out = range_assign(&subs, &t);
        assert_eq!(out["a"].iter().map(|x| x.1).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(out["b"].iter().map(|x| x.1).collect::<Vec<_>>(), vec![3, 4]);
        let m = ConsumerMember {
            id: "a".into(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            subscribed_names: vec![],
            subscribed_regex: Some("ord.*".into()),
            rebalance_timeout_ms: 0,
            assigned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            assignment_epochs: BTreeMap::new(),
            revoke_deadline: None,
            last_sent: None,
            last_heartbeat: Instant::now(),
            static_left: false,
        };
        assert_eq!(ConsumerGroup::subscription(&m, &t), BTreeSet::from(["orders".to_string()]));
    }

    #[test]
    fn a_restored_group_continues_without_a_new_epoch() {
        use super::super::consumer_records::{
            decode_assignment_epoch, decode_group_epoch, decode_target, CurrentAssignment, MemberMetadata,
        };
        use super::super::records::RecordKey as K;
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 4 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        let a = g.heartbeat(join("a", &["t"]), &t, now, &c);
        let owned = a.assignment.unwrap();
        assert!(g.dirty);
        let (mut epoch, mut target_epoch, mut members) = (0, 0, BTreeMap::new());
        for (k, v) in g.take_records() {
            let v = v.unwrap();
            match k {
                K::ConsumerGroup { .. } => epoch = decode_group_epoch(v).unwrap(),
                K::ConsumerTarget { .. } => target_epoch = decode_assignment_epoch(v).unwrap(),
                K::ConsumerMember { member, .. } => {
                    members.entry(member).or_insert((None, None, None)).0 = MemberMetadata::decode(v);
                }
                K::ConsumerTargetMember { member, .. } => {
                    members.entry(member).or_insert((None, None, None)).1 = decode_target(v);
                }
                K::ConsumerCurrent { member, .. } => {
                    members.entry(member).or_insert((None, None, None)).2 = CurrentAssignment::decode(v);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(!g.dirty);
        let members = members.into_iter().map(|(id, (m, t, cur))| (id, m.unwrap(), t.unwrap(), cur)).collect();
        let mut r = ConsumerGroup::restore("g", epoch, target_epoch, members, now);
        let hb = r.heartbeat(beat("a", 1, &owned), &t, now, &c);
        assert_eq!((hb.error, hb.member_epoch, r.group_epoch), (0, 1, 1), "same epochs after the restore");
        assert_eq!(hb.assignment, Some(owned), "the member is told its unchanged assignment again");
    }

    #[test]
    fn a_static_member_returns_to_its_place() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 2 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        let st = |id: &str| Heartbeat { instance_id: Some("i".into()), ..join(id, &["t"]) };
        let a = g.heartbeat(st("a1"), &t, now, &c);
        let owned = a.assignment.unwrap();
        // a second incarnation while the first is alive is refused
        assert_eq!(g.heartbeat(st("a2"), &t, now, &c).error, ResponseError::UnreleasedInstanceId.code());
        // the first leaves temporarily (epoch -2): the new one takes its place and partitions
        let leave = Heartbeat { member_id: "a1".into(), member_epoch: -2, ..Default::default() };
        assert_eq!(g.heartbeat(leave, &t, now, &c).error, 0);
        let epoch = g.group_epoch;
        let a2 = g.heartbeat(st("a2"), &t, now, &c);
        assert_eq!((a2.error, a2.assignment, g.group_epoch), (0, Some(owned), epoch), "no new epoch");
        assert!(!g.members.contains_key("a1"));
    }

    #[test]
    fn fenced_epochs_and_expiry() {
        let t = vec![TopicInfo { name: "t".into(), id: Uuid::new_v4(), partitions: 2 }];
        let (now, c) = (Instant::now(), cfg());
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("a", &["t"]), &t, now, &c);
        let r = g.heartbeat(beat("a", 7, &BTreeSet::new()), &t, now, &c);
        assert_eq!(r.error, ResponseError::FencedMemberEpoch.code());
        g.tick(now + Duration::from_secs(46), &c);
        assert!(g.is_empty());
        let r = g.heartbeat(beat("a", 1, &BTreeSet::new()), &t, now, &c);
        assert_eq!(r.error, ResponseError::UnknownMemberId.code());
    }
}
