//! The classic group protocol's state machine (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup), following Kafka's `ClassicGroup`:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                 ▲        │                                    │ leader's SyncGroup
//!   └──last member────┴────────┴──── member joins/leaves/expires ◀── Stable
//! ```
//!
//! Pure logic: time comes in as an argument and responses leave through the oneshot channels
//! of the requests waiting on the group. No I/O here; the coordinator persists what changed.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::records::{GroupValue, StoredMember};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The state's name as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Group settings from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, group instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a static leader rejoining a stable group must not recompute the assignment.
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(code: ResponseError, member_id: &str) -> JoinResult {
        JoinResult { error: code.code(), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(code: ResponseError) -> SyncResult {
        SyncResult { error: code.code(), ..Default::default() }
    }
}

/// A response now, or one that arrives when the group moves on.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A JoinGroup request's content.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is first handed one (`MEMBER_ID_REQUIRED`).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the client understands `skip_assignment`.
    pub supports_skip_assignment: bool,
}

/// A SyncGroup request's content.
#[derive(Debug, Clone, Default)]
pub struct SyncArgs {
    pub member_id: String,
    pub generation: i32,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: checked against the group's when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    last_heartbeat: Instant,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol.and_then(|p| self.protocols.iter().find(|(n, _)| n == p)).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn session_expired(&self, now: Instant) -> bool {
        let awaiting = self.join_waiter.is_some() || self.sync_waiter.is_some();
        !awaiting && now >= self.last_heartbeat + ms(self.session_timeout_ms)
    }
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

/// The initial-delay window of a group's first rebalance (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining: Duration,
    member_added: bool,
}

#[derive(Debug)]
pub struct ClassicGroup {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with `MEMBER_ID_REQUIRED`, valid until their deadline.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id, for static members.
    static_members: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    sync_deadline: Option<Instant>,
    /// Wall-clock time of the last state change, for offsets expiry and DescribeGroups.
    pub state_timestamp_ms: i64,
    /// Set when the durable group metadata changed and must be written.
    pub dirty: bool,
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl ClassicGroup {
    pub fn new(id: &str, now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            state_timestamp_ms: now_ms,
            dirty: false,
        }
    }

    /// Rebuilds a group from its stored metadata (replay of `__consumer_offsets`). Members
    /// get a fresh session: those that are gone expire after their session timeout.
    pub fn from_stored(id: &str, v: GroupValue, now: Instant) -> ClassicGroup {
        let mut g = ClassicGroup::new(id, v.current_state_timestamp);
        g.protocol_type = Some(v.protocol_type).filter(|p| !p.is_empty());
        g.protocol_name = v.protocol;
        g.generation = v.generation;
        g.leader = v.leader;
        for m in v.members {
            if let Some(inst) = &m.group_instance_id {
                g.static_members.insert(inst.clone(), m.member_id.clone());
            }
            let protocols = g.protocol_name.clone().map(|p| vec![(p, m.subscription.clone())]).unwrap_or_default();
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                },
            );
        }
        g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        g
    }

    /// The durable form of the group.
    pub fn stored(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol_name.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Whether an (Txn)OffsetCommit from `member_id` at `generation` may go in, with Kafka's
    /// checks in Kafka's order (`ClassicGroup.validateOffsetCommit`): the member and its
    /// generation before the group's state, so a consumer of an older generation gets
    /// `ILLEGAL_GENERATION` (which clients expect) even while a rebalance completes.
    /// Transactional commits skip the state check: the group's state is not enforced for them.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(()); // the admin client, or a consumer that assigns partitions itself
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_member(member_id, instance)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !transactional && self.state != GroupState::Empty {
            // No member id and no generation: only an empty group takes such commits.
            return Err(ResponseError::UnknownMemberId);
        }
        if !transactional && self.state == GroupState::CompletingRebalance {
            // The member and generation are current, so it has the new generation's JoinGroup
            // answer but not yet its assignment.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Kafka's `validateMember` for offset commits: [`Self::check_member`], and an instance id
    /// the group does not know is `UNKNOWN_MEMBER_ID` whatever the member id.
    fn validate_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
        if instance.is_some_and(|inst| !self.static_members.contains_key(inst)) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance)
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    fn max_rebalance_timeout(&self) -> Duration {
        ms(self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0))
    }

    /// Serves a JoinGroup.
    pub fn join(&mut self, a: JoinArgs, now: Instant, now_ms: i64, cfg: &GroupConfig) -> Reply<JoinResult> {
        if a.session_timeout_ms < cfg.min_session_timeout_ms || a.session_timeout_ms > cfg.max_session_timeout_ms {
            return Reply::Now(JoinResult::error(ResponseError::InvalidSessionTimeout, &a.member_id));
        }
        if !self.supports_protocols(&a.protocol_type, &a.protocols) {
            return Reply::Now(JoinResult::error(ResponseError::InconsistentGroupProtocol, &a.member_id));
        }
        if a.member_id.is_empty() {
            if let Some(inst) = a.group_instance_id.clone() {
                if let Some(old) = self.static_members.get(&inst).cloned() {
                    return self.rejoin_static(old, a, now, now_ms, cfg);
                }
                return self.add_member(new_member_id(&a.client_id), a, now, now_ms, cfg);
            }
            let id = new_member_id(&a.client_id);
            if a.require_known_member_id {
                if self.members.len() + self.pending.len() >= cfg.max_size {
                    return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
                }
                self.pending.insert(id.clone(), now + ms(a.session_timeout_ms));
                return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &id));
            }
            return self.add_member(id, a, now, now_ms, cfg);
        }
        if self.pending.remove(&a.member_id).is_some() {
            let id = a.member_id.clone();
            return self.add_member(id, a, now, now_ms, cfg);
        }
        if let Err(code) = self.check_member(&a.member_id, a.group_instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(code, &a.member_id));
        }
        let unchanged = self.members.get(&a.member_id).is_some_and(|m| m.protocols == a.protocols);
        let is_leader = self.leader.as_deref() == Some(a.member_id.as_str());
        match self.state {
            GroupState::CompletingRebalance if unchanged => Reply::Now(self.join_result_for(&a.member_id)),
            GroupState::Stable if unchanged && !is_leader => Reply::Now(self.join_result_for(&a.member_id)),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance | GroupState::Stable => {
                let rx = self.update_member(&a, now);
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now, now_ms, cfg);
                }
                self.try_complete_join(now, now_ms);
                Reply::Later(rx)
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, &a.member_id))
            }
        }
    }

    /// Checks that `member_id` belongs to the group and is not a fenced static incarnation.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
        if let Some(inst) = instance {
            match self.static_members.get(inst) {
                Some(id) if id == member_id => return Ok(()),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn update_member(&mut self, a: &JoinArgs, now: Instant) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&a.member_id) {
            m.protocols = a.protocols.clone();
            m.session_timeout_ms = a.session_timeout_ms;
            m.rebalance_timeout_ms = a.rebalance_timeout_ms;
            m.client_id = a.client_id.clone();
            m.last_heartbeat = now;
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult::error(ResponseError::UnknownMemberId, &a.member_id));
            }
        }
        rx
    }

    fn add_member(
        &mut self,
        id: String,
        a: JoinArgs,
        now: Instant,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinResult> {
        if self.members.len() >= cfg.max_size {
            return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, &id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(a.protocol_type.clone());
        }
        let (tx, rx) = oneshot::channel();
        if let Some(inst) = &a.group_instance_id {
            self.static_members.insert(inst.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                group_instance_id: a.group_instance_id,
                client_id: a.client_id,
                client_host: a.client_host,
                session_timeout_ms: a.session_timeout_ms,
                rebalance_timeout_ms: a.rebalance_timeout_ms,
                protocols: a.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                last_heartbeat: now,
            },
        );
        if let Some(d) = self.initial_delay.as_mut() {
            d.member_added = true;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, now_ms, cfg);
        }
        self.try_complete_join(now, now_ms);
        Reply::Later(rx)
    }

    /// A static member came back with a new incarnation: it takes over the old member's
    /// place. In a stable group with unchanged protocols this needs no rebalance (KIP-345); a
    /// returning leader gets the member list with `skip_assignment` (KIP-814), and older
    /// clients' recomputed assignment is ignored by the stable group's SyncGroup, as in Kafka.
    fn rejoin_static(
        &mut self,
        old: String,
        a: JoinArgs,
        now: Instant,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Reply<JoinResult> {
        let Some(mut member) = self.members.remove(&old) else {
            return self.add_member(new_member_id(&a.client_id), a, now, now_ms, cfg);
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, &old));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let new_id = new_member_id(&a.client_id);
        let unchanged = member.protocols == a.protocols;
        member.id = new_id.clone();
        member.last_heartbeat = now;
        member.client_host = a.client_host.clone();
        self.members.insert(new_id.clone(), member);
        if let Some(inst) = &a.group_instance_id {
            self.static_members.insert(inst.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.dirty = true;
        if self.state == GroupState::Stable && unchanged {
            let mut result = self.join_result_for(&new_id);
            result.skip_assignment = was_leader && a.supports_skip_assignment;
            return Reply::Now(result);
        }
        let args = JoinArgs { member_id: new_id, ..a };
        let rx = self.update_member(&args, now);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, now_ms, cfg);
        }
        self.try_complete_join(now, now_ms);
        Reply::Later(rx)
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.group_instance_id.clone(), m.metadata(self.protocol_name.as_deref())))
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64, cfg: &GroupConfig) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let first = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.sync_deadline = None;
        let rebalance_timeout = self.max_rebalance_timeout();
        if first && !cfg.initial_rebalance_delay.is_zero() {
            let delay = cfg.initial_rebalance_delay.min(rebalance_timeout);
            self.initial_delay =
                Some(InitialDelay { remaining: rebalance_timeout.saturating_sub(delay), member_added: false });
            self.rebalance_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.rebalance_deadline = Some(now + rebalance_timeout);
        }
    }

    /// Completes the join phase when every member has rejoined (outside an initial delay).
    fn try_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if all_joined {
            self.complete_join(now, now_ms);
        }
    }

    fn complete_join(&mut self, now: Instant, now_ms: i64) {
        self.rebalance_deadline = None;
        self.initial_delay = None;
        let gone: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.dirty = true;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        // the most votes; ties go to the first member's preference order
        votes.iter().rev().max_by_key(|(n, _)| *n).map(|(_, c)| (*c).clone())
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let mut m = self.members.remove(id)?;
        if let Some(inst) = &m.group_instance_id {
            if self.static_members.get(inst).map(String::as_str) == Some(id) {
                self.static_members.remove(inst);
            }
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        Some(m)
    }

    /// After members left or expired: rebalance the rest, or finish a pending join.
    fn rebalance_after_removal(&mut self, now: Instant, now_ms: i64, cfg: &GroupConfig) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, now_ms, cfg);
                self.try_complete_join(now, now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Serves a SyncGroup.
    pub fn sync(&mut self, a: SyncArgs, now: Instant, now_ms: i64) -> Reply<SyncResult> {
        let SyncArgs { member_id, generation, group_instance_id, protocol_type, protocol_name, assignments } = a;
        let member_id = member_id.as_str();
        if let Err(code) = self.check_member(member_id, group_instance_id.as_deref()) {
            return Reply::Now(SyncResult::error(code));
        }
        if generation != self.generation {
            return Reply::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(&t) != self.protocol_type.as_ref())
            || protocol_name.is_some_and(|n| Some(&n) != self.protocol_name.as_ref())
        {
            return Reply::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Reply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
            GroupState::Stable => Reply::Now(self.sync_result_for(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = now;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now_ms);
                    self.sync_deadline = None;
                    self.dirty = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let result = self.sync_result_for(&id);
                        if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                            let _ = w.send(result);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Serves a Heartbeat; returns the error code.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, instance: Option<&str>, now: Instant) -> i16 {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return ResponseError::UnknownMemberId.code();
        }
        if let Err(code) = self.check_member(member_id, instance) {
            return code.code();
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration.code();
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return ResponseError::RebalanceInProgress.code();
        }
        0
    }

    /// Serves a LeaveGroup for several members; returns an error code per member.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Instant,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Vec<i16> {
        let mut codes = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance) in leaving {
            let id = match instance.as_ref().and_then(|i| self.static_members.get(i)) {
                Some(known) if member_id.is_empty() || known == member_id => known.clone(),
                Some(_) => {
                    codes.push(ResponseError::FencedInstanceId.code());
                    continue;
                }
                None => member_id.clone(),
            };
            if self.pending.remove(&id).is_some() {
                codes.push(0);
                continue;
            }
            if self.remove_member(&id).is_some() {
                removed = true;
                codes.push(0);
            } else {
                codes.push(ResponseError::UnknownMemberId.code());
            }
        }
        if removed {
            self.dirty = true;
            self.rebalance_after_removal(now, now_ms, cfg);
        }
        codes
    }

    /// Time-driven transitions: expired sessions and pending ids, the end of a join phase, and
    /// members that never sent their SyncGroup.
    pub fn tick(&mut self, now: Instant, now_ms: i64, cfg: &GroupConfig) {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> =
            self.members.values().filter(|m| m.session_expired(now)).map(|m| m.id.clone()).collect();
        if !expired.is_empty() {
            for id in &expired {
                self.remove_member(id);
            }
            self.dirty = true;
            self.rebalance_after_removal(now, now_ms, cfg);
        }
        if self.state == GroupState::PreparingRebalance && self.rebalance_deadline.is_some_and(|d| now >= d) {
            match self.initial_delay {
                Some(d) if d.member_added && !d.remaining.is_zero() => {
                    let step = cfg.initial_rebalance_delay.min(d.remaining);
                    self.initial_delay = Some(InitialDelay { remaining: d.remaining - step, member_added: false });
                    self.rebalance_deadline = Some(now + step);
                }
                _ => self.complete_join(now, now_ms),
            }
        } else if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now, now_ms);
        }
        if self.state == GroupState::CompletingRebalance && self.sync_deadline.is_some_and(|d| now >= d) {
            let laggards: Vec<String> =
                self.members.values().filter(|m| m.sync_waiter.is_none()).map(|m| m.id.clone()).collect();
            for id in &laggards {
                self.remove_member(id);
            }
            self.dirty = true;
            self.prepare_rebalance(now, now_ms, cfg);
            self.try_complete_join(now, now_ms);
        }
    }

    /// The group's subscribed topics, from the members' consumer-protocol metadata.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = Vec::new();
        for m in self.members.values() {
            let mut meta = m.metadata(self.protocol_name.as_deref());
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            let mut body = meta.split_off(2);
            let sub = ConsumerProtocolSubscription::decode(&mut body, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(delay_ms: u64) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(delay_ms),
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: 10,
        }
    }

    fn args(member_id: &str) -> JoinArgs {
        JoinArgs {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    fn now_result<T: std::fmt::Debug>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Later(_) => panic!("expected an immediate reply"),
        }
    }

    fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected a pending reply"),
        }
    }

    #[test]
    fn two_members_join_sync_and_rebalance_when_one_leaves() {
        let (t0, c) = (Instant::now(), cfg(0));
        let mut g = ClassicGroup::new("g", 0);
        let a = now_result(g.join(args(""), t0, 0, &c));
        assert_eq!(a.error, ResponseError::MemberIdRequired.code());
        let mut ja = later(g.join(args(&a.member_id), t0, 0, &c));
        let ra = ja.try_recv().expect("alone: join completes at once");
        assert_eq!((ra.generation, ra.leader.as_str()), (1, a.member_id.as_str()));
        let assign = vec![(a.member_id.clone(), Bytes::from_static(b"all"))];
        let mut sa = later(g.sync(
            SyncArgs {
                member_id: a.member_id.to_string(),
                generation: 1,
                group_instance_id: None,
                assignments: assign,
                ..Default::default()
            },
            t0,
            0,
        ));
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from_static(b"all"));
        assert_eq!(g.state, GroupState::Stable);

        // a second member arrives: rebalance, the first learns it from its heartbeat
        let b = now_result(g.join(args(""), t0, 0, &c));
        let mut jb = later(g.join(args(&b.member_id), t0, 0, &c));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a.member_id, 1, None, t0), ResponseError::RebalanceInProgress.code());
        let mut ja = later(g.join(args(&a.member_id), t0, 0, &c));
        let (ra, rb) = (ja.try_recv().unwrap(), jb.try_recv().unwrap());
        assert_eq!((ra.generation, rb.generation), (2, 2));
        assert_eq!(ra.members.len(), 2, "the leader gets the member list");
        assert!(rb.members.is_empty());
        assert_eq!(g.heartbeat(&a.member_id, 1, None, t0), ResponseError::IllegalGeneration.code());

        // b leaves: a must rejoin for generation 3
        assert_eq!(g.leave(&[(b.member_id.clone(), None)], t0, 0, &c), vec![0]);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let mut ja = later(g.join(args(&a.member_id), t0, 0, &c));
        assert_eq!(ja.try_recv().unwrap().generation, 3);
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        let (t0, c) = (Instant::now(), cfg(0));
        let mut g = ClassicGroup::new("g", 0);
        let mut ja = later(g.join(JoinArgs { require_known_member_id: false, ..args("") }, t0, 0, &c));
        let a = ja.try_recv().unwrap().member_id;
        let _ = g.sync(SyncArgs { member_id: a.clone(), generation: 1, ..Default::default() }, t0, 0);
        let mut jb = later(g.join(JoinArgs { require_known_member_id: false, ..args("") }, t0, 0, &c));
        assert!(jb.try_recv().is_err(), "waits for a to rejoin");
        // a keeps heartbeating (so its session lives) but never rejoins
        for s in (5..30).step_by(5) {
            let t = t0 + Duration::from_secs(s);
            assert_eq!(g.heartbeat(&a, 1, None, t), ResponseError::RebalanceInProgress.code());
            g.tick(t, 0, &c);
            assert!(jb.try_recv().is_err(), "still waiting at {s} s");
        }
        g.tick(t0 + Duration::from_millis(30_000), 0, &c);
        let rb = jb.try_recv().expect("completed at the rebalance timeout");
        assert_eq!((rb.generation, g.members.len()), (2, 1));
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn group_max_size_and_batched_leave() {
        let (t0, c) = (Instant::now(), GroupConfig { max_size: 2, ..cfg(0) });
        let mut g = ClassicGroup::new("g", 0);
        let plain = || JoinArgs { require_known_member_id: false, ..args("") };
        let mut j1 = later(g.join(plain(), t0, 0, &c));
        let m1 = j1.try_recv().unwrap().member_id;
        let mut j2 = later(g.join(plain(), t0, 0, &c));
        let mut j1 = later(g.join(args(&m1), t0, 0, &c));
        let (r1, r2) = (j1.try_recv().unwrap(), j2.try_recv().unwrap());
        let r3 = now_result(g.join(plain(), t0, 0, &c));
        assert_eq!(r3.error, ResponseError::GroupMaxSizeReached.code());
        let codes =
            g.leave(&[(r1.member_id.clone(), None), (r2.member_id.clone(), None), ("nobody".into(), None)], t0, 0, &c);
        assert_eq!(codes, vec![0, 0, ResponseError::UnknownMemberId.code()]);
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn expired_sessions_are_removed() {
        let (t0, c) = (Instant::now(), cfg(0));
        let mut g = ClassicGroup::new("g", 0);
        let mut ja = later(g.join(JoinArgs { require_known_member_id: false, ..args("") }, t0, 0, &c));
        let id = ja.try_recv().unwrap().member_id;
        let _s = g.sync(
            SyncArgs {
                member_id: id.to_string(),
                generation: 1,
                group_instance_id: None,
                assignments: vec![],
                ..Default::default()
            },
            t0,
            0,
        );
        g.tick(t0 + Duration::from_millis(9_000), 0, &c);
        assert_eq!(g.members.len(), 1);
        g.tick(t0 + Duration::from_millis(10_001), 0, &c);
        assert!(g.members.is_empty());
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn initial_delay_waits_for_more_members() {
        let (t0, c) = (Instant::now(), cfg(3000));
        let mut g = ClassicGroup::new("g", 0);
        let mut ja = later(g.join(JoinArgs { require_known_member_id: false, ..args("") }, t0, 0, &c));
        assert!(ja.try_recv().is_err(), "held for the initial delay");
        g.tick(t0 + Duration::from_millis(3000), 0, &c);
        assert_eq!(ja.try_recv().unwrap().generation, 1);
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let (t0, c) = (Instant::now(), cfg(0));
        let mut g = ClassicGroup::new("g", 0);
        let st = |id: &str, inst: &str| JoinArgs { group_instance_id: Some(inst.into()), ..args(id) };
        let mut j1 = later(g.join(st("", "i1"), t0, 0, &c));
        let leader = j1.try_recv().unwrap().member_id;
        let mut j2 = later(g.join(st("", "i2"), t0, 0, &c));
        let mut j1 = later(g.join(st(&leader, "i1"), t0, 0, &c));
        let (r1, r2) = (j1.try_recv().unwrap(), j2.try_recv().unwrap());
        assert_eq!(r1.generation, 2);
        let assign =
            vec![(leader.clone(), Bytes::from_static(b"a1")), (r2.member_id.clone(), Bytes::from_static(b"a2"))];
        let _ = g.sync(
            SyncArgs {
                member_id: leader.to_string(),
                generation: 2,
                group_instance_id: Some(String::from("i1")),
                assignments: assign,
                ..Default::default()
            },
            t0,
            0,
        );
        // i2 restarts with a new incarnation: same generation, its old assignment
        let r = now_result(g.join(st("", "i2"), t0, 0, &c));
        assert_eq!((r.error, r.generation), (0, 2));
        assert_eq!(g.state, GroupState::Stable);
        let s = now_result(g.sync(
            SyncArgs {
                member_id: r.member_id.to_string(),
                generation: 2,
                group_instance_id: Some(String::from("i2")),
                assignments: vec![],
                ..Default::default()
            },
            t0,
            0,
        ));
        assert_eq!(s.assignment, Bytes::from_static(b"a2"));
        // the old incarnation is fenced
        assert_eq!(g.heartbeat(&r2.member_id, 2, Some("i2"), t0), ResponseError::FencedInstanceId.code());
        // the static leader restarts too: still no rebalance, and it must not reassign
        let r = now_result(g.join(st("", "i1"), t0, 0, &c));
        assert_eq!((r.error, r.generation, r.skip_assignment), (0, 2, true));
        assert_eq!(r.members.len(), 2);
        assert_eq!(g.state, GroupState::Stable);
        let s = now_result(g.sync(
            SyncArgs {
                member_id: r.member_id.to_string(),
                generation: 2,
                group_instance_id: Some(String::from("i1")),
                assignments: vec![],
                ..Default::default()
            },
            t0,
            0,
        ));
        assert_eq!(s.assignment, Bytes::from_static(b"a1"), "a stable group keeps its assignment");
    }
}
