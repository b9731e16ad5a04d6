//! The metadata quorum on this node: openraft running the metadata log ([`RaftLog`]) into the
//! image ([`MetadataState`]), with the other voters reached over the controller listener.
//! The Raft leader is the active controller. A broker without quorum settings is a quorum of
//! one: the same code, with no peers.
//!
//! Formation needs no format step: every voter starts with the same voter set and
//! initializes the quorum with it; whoever's election wins first makes the membership entry,
//! and the others' `initialize` is refused (they already voted), which is expected.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use super::metadata_log::MetadataImage;
use super::quorum_link::QuorumLink;
use super::raft_log::{MetadataBatch, NodeId, RaftLog};
use super::raft_net::{Identity, MetadataFetcher, Network, Raft, Served, Suspects};
use super::raft_state::MetadataState;
use crate::config::BrokerConfig;

/// What a node needs to join the quorum.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: NodeId,
    /// Voter id → `HOST:PORT` of its controller listener (Kafka's `controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, String>,
    /// Kafka's `controller.quorum.election.timeout.ms`: how long followers wait for the
    /// leader before one of them stands for election (randomized up to one and a half times
    /// this).
    pub election_timeout_ms: u64,
    /// The cluster id this node knows before joining (`meta.properties`, or `cluster.id`):
    /// members of another cluster are refused, and refuse this node.
    pub cluster_id: Option<String>,
    /// A broker that is not a voter (`process.roles=broker`): it follows the metadata from
    /// the voters and never stands for election.
    pub observer: bool,
    /// A controller started with `controller.quorum.bootstrap.servers` and no static voters
    /// (KIP-853): it waits, serving its controller listener, until the active controller
    /// adds it (AddRaftVoter), or finds the quorum it already joined in its own log.
    pub joining: bool,
    /// How quorum connections are secured (the controller listener's protocol).
    pub link: Arc<QuorumLink>,
}

impl QuorumSettings {
    /// A quorum of one: the single broker that is its own controller.
    pub fn single(node_id: NodeId) -> QuorumSettings {
        QuorumSettings {
            node_id,
            voters: BTreeMap::from([(node_id, String::new())]),
            election_timeout_ms: 1000,
            cluster_id: None,
            observer: false,
            joining: false,
            link: Default::default(),
        }
    }

    /// Reads Kafka's KRaft settings; a broker without `process.roles` is a quorum of one.
    /// Returns the settings and, for a voter, the address its controller listener binds.
    pub fn from_config(config: &BrokerConfig) -> Result<(QuorumSettings, Option<String>), String> {
        let node_id = config.node_id().max(0) as NodeId;
        let list = |key: &str| -> Vec<String> {
            config.get(key).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        };
        let roles: Vec<String> = list("process.roles").iter().map(|r| r.to_ascii_lowercase()).collect();
        let voter_entries = list("controller.quorum.voters");
        if roles.is_empty() {
            if !voter_entries.is_empty() {
                return Err("controller.quorum.voters is set but process.roles is not (use broker,controller)".into());
            }
            return Ok((QuorumSettings::single(node_id), None));
        }
        if let Some(r) = roles.iter().find(|r| *r != "broker" && *r != "controller") {
            return Err(format!("process.roles: unknown role '{r}' (broker, controller)"));
        }
        let (broker, controller) = (roles.iter().any(|r| r == "broker"), roles.iter().any(|r| r == "controller"));
        if !broker {
            return Err("process.roles: Weir runs controllers combined with brokers (broker,controller)".into());
        }
        let mut voters = BTreeMap::new();
        for v in &voter_entries {
            let parsed = v.split_once('@').and_then(|(id, addr)| Some((id.trim().parse::<NodeId>().ok()?, addr)));
            let Some((id, addr)) = parsed.filter(|(_, a)| a.contains(':')) else {
                return Err(format!("controller.quorum.voters: '{v}' is not ID@HOST:PORT"));
            };
            if voters.insert(id, addr.trim().to_string()).is_some() {
                return Err(format!("controller.quorum.voters: voter {id} appears twice"));
            }
        }
        let election_timeout_ms = config.get_i64("controller.quorum.election.timeout.ms").max(10) as u64;
        let settings = |observer| QuorumSettings {
            node_id,
            voters: voters.clone(),
            election_timeout_ms,
            cluster_id: None,
            observer,
            joining: false,
            link: Default::default(),
        };
        if !controller {
            if voters.is_empty() {
                return Err("process.roles=broker: controller.quorum.voters must name the controllers".into());
            }
            if voters.contains_key(&node_id) {
                return Err(format!(
                    "node.id {node_id} is among controller.quorum.voters, but process.roles has no controller"
                ));
            }
            let link = QuorumLink::from_config(config, node_id as i32, false)?;
            return Ok((QuorumSettings { link: Arc::new(link), ..settings(true) }, None));
        }
        let joining = voters.is_empty() && !list("controller.quorum.bootstrap.servers").is_empty();
        if !joining && !voters.contains_key(&node_id) {
            return Err(format!(
                "node.id {node_id} is not among controller.quorum.voters, as a controller must be (or set \
                 controller.quorum.bootstrap.servers instead to join a running quorum)"
            ));
        }
        let listener = crate::security::listeners::controller_listener(config)?
            .ok_or("process.roles includes controller, but controller.listener.names names no listener in listeners")?;
        let link = Arc::new(QuorumLink::from_config(config, node_id as i32, true)?);
        Ok((QuorumSettings { joining, link, ..settings(false) }, Some(listener.bind)))
    }

    /// Whether this is a quorum of one (a single broker with no quorum settings).
    pub fn is_single(&self) -> bool {
        self.voters.len() == 1 && self.voters.values().all(String::is_empty)
    }

    /// openraft's timers for Kafka's election timeout E. A follower of openraft stands for
    /// election after the leader lease (`election_timeout_max`) plus a random timeout in
    /// `election_timeout_min..election_timeout_max`; with min E/4 and max 3E/4 that is E to
    /// 1.5E without a heartbeat — Kafka's own range is E to 2E — where passing E as both
    /// bounds' base would make it 3E to 4E.
    fn raft_config(&self) -> io::Result<openraft::Config> {
        let election = self.election_timeout_ms.max(20);
        openraft::Config {
            cluster_name: "weir-metadata".into(),
            heartbeat_interval: (election / 5).max(2),
            election_timeout_min: election / 4,
            election_timeout_max: election * 3 / 4,
            ..Default::default()
        }
        .validate()
        .map_err(io::Error::other)
    }
}

/// The quorum as its leader sees it, in Kafka's terms: log end offsets are the index after
/// a member's last entry (-1 when the leader does not know it yet).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub leader: NodeId,
    pub epoch: u64,
    pub high_watermark: i64,
    /// (id, log end offset)
    pub voters: Vec<(NodeId, i64)>,
    /// (id, log end offset, last fetch time in ms)
    pub observers: Vec<(NodeId, i64, i64)>,
}

/// Why a voter could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum VoterChangeError {
    #[error("this node is not the active controller")]
    NotLeader(Option<NodeId>),
    #[error("node {0} is already a voter")]
    Duplicate(NodeId),
    #[error("node {0} is not a voter")]
    NotFound(NodeId),
    #[error("node {0} did not catch up with the metadata log in time")]
    TimedOut(NodeId),
    #[error("{0}")]
    Invalid(String),
}

impl VoterChangeError {
    fn of<E: std::fmt::Display>(e: RaftError<NodeId, E>) -> VoterChangeError {
        match e {
            RaftError::APIError(e) => VoterChangeError::Invalid(e.to_string()),
            RaftError::Fatal(f) => VoterChangeError::Invalid(f.to_string()),
        }
    }
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// This node is not the leader; the leader, if one is known.
    #[error("this node is not the active controller")]
    NotLeader(Option<NodeId>),
    #[error("metadata quorum failed: {0}")]
    Fatal(String),
}

/// This node's member of the metadata quorum: a voter running Raft, or an observer following
/// the metadata from the voters.
pub struct Quorum {
    pub node_id: NodeId,
    /// A quorum of one (a broker without quorum settings).
    pub single: bool,
    /// Raft, on a voter.
    raft: Option<Raft>,
    /// The leader as an observer last heard of it (voters read Raft's own view).
    observed_leader: tokio::sync::watch::Receiver<Option<NodeId>>,
    /// An observer's metadata fetcher.
    observer: Option<tokio::task::JoinHandle<()>>,
    pub state: MetadataState,
    /// Who this node is to the other members (checked on every quorum connection).
    pub identity: Identity,
    /// Members whose connection from here just failed.
    pub suspects: Arc<Suspects>,
    /// Observers fetching the metadata from this voter: id → (entry applied, last fetch ms).
    pub observers: Arc<parking_lot::Mutex<BTreeMap<NodeId, (u64, i64)>>>,
    voters: BTreeMap<NodeId, BasicNode>,
}

impl Quorum {
    /// Opens the metadata log in `dir`, starts Raft, and initializes the quorum if this node
    /// never joined one (a voter); or starts following the voters' metadata (an observer).
    /// Peers reach a voter once the controller listener is served.
    pub async fn start(dir: &Path, settings: &QuorumSettings) -> io::Result<Quorum> {
        let state = MetadataState::open(dir)?;
        let identity = Identity {
            node_id: settings.node_id,
            known: settings.cluster_id.clone(),
            image: Some(state.image.clone()),
            refusals: Default::default(),
            link: settings.link.clone(),
        };
        let voters: BTreeMap<NodeId, BasicNode> =
            settings.voters.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        let suspects = Arc::new(Suspects::default());
        let (leader_tx, observed_leader) = tokio::sync::watch::channel(None);
        let mut quorum = Quorum {
            node_id: settings.node_id,
            single: settings.is_single(),
            raft: None,
            observed_leader,
            observer: None,
            state: state.clone(),
            identity: identity.clone(),
            suspects: suspects.clone(),
            observers: Default::default(),
            voters,
        };
        if settings.observer {
            let observe = observe(settings.voters.clone(), identity, state, leader_tx);
            quorum.observer = Some(tokio::spawn(observe));
            return Ok(quorum);
        }
        let log = RaftLog::open(dir)?;
        let config = Arc::new(settings.raft_config()?);
        let network = Network { addrs: Arc::new(settings.voters.clone()), identity, suspects };
        let raft = Raft::new(settings.node_id, config, network, log, state).await.map_err(io::Error::other)?;
        tokio::spawn(Quorum::log_leader_changes(raft.clone(), settings.node_id));
        let initialized = raft.is_initialized().await.map_err(io::Error::other)?;
        if settings.joining && !initialized {
            tracing::info!("waiting for the active controller to add this node to the metadata quorum (AddRaftVoter)");
        } else if !initialized {
            if let Err(e) = raft.initialize(quorum.voters.clone()).await {
                tracing::debug!(error = %e, "metadata quorum already being formed by another voter");
            }
        }
        quorum.raft = Some(raft);
        Ok(quorum)
    }

    /// What a voter serves its quorum connections from (none on an observer).
    pub fn served(&self) -> Option<Served> {
        let raft = self.raft.clone()?;
        Some(Served {
            raft,
            identity: self.identity.clone(),
            state: self.state.clone(),
            suspects: self.suspects.clone(),
            observers: self.observers.clone(),
        })
    }

    /// Logs every change of the quorum's leader (openraft's own logs are off by default).
    pub async fn log_leader_changes(raft: Raft, node_id: NodeId) {
        let mut metrics = raft.metrics();
        let mut last = None;
        loop {
            let (leader, term) = {
                let m = metrics.borrow_and_update();
                (m.current_leader, m.current_term)
            };
            if leader != last {
                match leader {
                    Some(l) if l == node_id => tracing::info!(term, "this node is the active controller"),
                    Some(l) => tracing::info!(leader = l, term, "metadata quorum leader"),
                    None => tracing::info!(term, "metadata quorum has no leader"),
                }
                last = leader;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Resolves, with the reason, if this node's Raft stops by itself (a storage failure or
    /// a bug): the node can no longer take part in the quorum, so the broker stops rather
    /// than linger without a controller. Never resolves on an observer.
    pub async fn failure(&self) -> String {
        let Some(raft) = &self.raft else { return std::future::pending().await };
        let mut metrics = raft.metrics();
        let reason = match metrics.wait_for(|m| m.running_state.is_err()).await {
            Ok(m) => m.running_state.as_ref().err().map(|e| e.to_string()),
            // the metrics channel closes when Raft is shut down on purpose
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// The quorum as its leader sees it (DescribeQuorum); `None` on a node that does not lead.
    pub fn status(&self) -> Option<QuorumStatus> {
        let raft = self.raft.as_ref()?;
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(self.node_id) {
            return None;
        }
        let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
        let matched = m.replication.clone().unwrap_or_default();
        let voters = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| {
                let log_end = match id == self.node_id {
                    true => end(m.last_log_index),
                    false => matched.get(&id).map_or(-1, |l| end(l.map(|l| l.index))),
                };
                (id, log_end)
            })
            .collect();
        let observers =
            self.observers.lock().iter().map(|(id, (applied, at))| (*id, *applied as i64 + 1, *at)).collect();
        Some(QuorumStatus {
            leader: self.node_id,
            epoch: m.current_term,
            high_watermark: end(m.last_applied.map(|l| l.index)),
            voters,
            observers,
        })
    }

    /// The leader (active controller) as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.raft {
            Some(raft) => raft.metrics().borrow().current_leader,
            None => *self.observed_leader.borrow(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// Why this node cannot join the quorum, when a majority of the voters refuse it (it
    /// belongs to another cluster).
    pub fn refused(&self) -> Option<String> {
        let refusals = self.identity.refusals.lock();
        (refusals.len() > self.voters.len() / 2)
            .then(|| refusals.iter().map(|(id, why)| format!("voter {id}: {why}")).collect::<Vec<_>>().join("; "))
    }

    /// The controller address of a voter: this node's `controller.quorum.voters` entry, or the
    /// one the voter was added with (KIP-853).
    pub fn voter_addr(&self, id: NodeId) -> Option<String> {
        if let Some(n) = self.voters.get(&id) {
            return Some(n.addr.clone());
        }
        let raft = self.raft.as_ref()?;
        let metrics = raft.metrics();
        let node = metrics.borrow().membership_config.membership().get_node(&id).map(|n| n.addr.clone());
        node
    }

    /// AddRaftVoter on the leader: the node first joins as a learner and copies the metadata
    /// log, then the voter set grows by it in a joint membership change. A node that has not caught up within `timeout` (unreachable, a
    /// wrong address) is taken out again, so the leader stops replicating to it.
    pub async fn add_voter(&self, id: NodeId, addr: String, timeout: Duration) -> Result<(), VoterChangeError> {
        let (raft, mut voters) = self.voter_set()?;
        if !voters.insert(id) {
            return Err(VoterChangeError::Duplicate(id));
        }
        // openraft's own blocking add gives up waiting after a moment and reports success
        // anyway: wait here for the learner to hold the entry that added it
        let added = raft.add_learner(id, BasicNode { addr }, false).await.map_err(VoterChangeError::of)?;
        let target = added.log_id.index;
        let mut metrics = raft.metrics();
        let caught_up = metrics.wait_for(|m| {
            let matched = m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten());
            matched.is_some_and(|l| l.index >= target)
        });
        if !matches!(tokio::time::timeout(timeout, caught_up).await, Ok(Ok(_))) {
            let forget = openraft::ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([id]));
            if let Err(e) = raft.change_membership(forget, false).await {
                tracing::warn!(node = id, error = %e, "cannot take out a node that did not catch up");
            }
            return Err(VoterChangeError::TimedOut(id));
        }
        raft.change_membership(voters, false).await.map_err(VoterChangeError::of)?;
        tracing::info!(voter = id, "added a voter to the metadata quorum");
        Ok(())
    }

    /// RemoveRaftVoter on the leader: the voter set shrinks by the node (which may be this one:
    /// it leads until the change commits, then another voter is elected). The node stays a
    /// learner, so while it runs it follows the metadata as Kafka's removed controllers
    /// observe it (and serves on as a broker).
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), VoterChangeError> {
        let (raft, mut voters) = self.voter_set()?;
        if !voters.remove(&id) {
            return Err(VoterChangeError::NotFound(id));
        }
        if voters.is_empty() {
            return Err(VoterChangeError::Invalid("the last voter cannot be removed".into()));
        }
        raft.change_membership(voters, true).await.map_err(VoterChangeError::of)?;
        tracing::info!(voter = id, "removed a voter from the metadata quorum");
        if id == self.node_id {
            Quorum::hand_over(raft.clone(), id);
        }
        Ok(())
    }

    /// A leader that removed itself goes on leading as a learner (openraft does not step
    /// down while its heartbeats keep the voters quiet): it stops its heartbeats so that the
    /// voters elect one of theirs, and turns them back on once it follows that leader.
    fn hand_over(raft: Raft, me: NodeId) {
        raft.runtime_config().heartbeat(false);
        tokio::spawn(async move {
            let mut metrics = raft.metrics();
            let _ = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != me)).await;
            raft.runtime_config().heartbeat(true);
        });
    }

    /// This node's Raft and the current voter ids; an error unless this node leads.
    fn voter_set(&self) -> Result<(&Raft, std::collections::BTreeSet<NodeId>), VoterChangeError> {
        let raft = self.raft.as_ref().filter(|_| self.is_leader()).ok_or(VoterChangeError::NotLeader(self.leader()))?;
        let metrics = raft.metrics();
        let voters = metrics.borrow().membership_config.membership().voter_ids().collect();
        Ok((raft, voters))
    }

    /// Waits up to `timeout` for a known leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let wait = async {
            match &self.raft {
                Some(raft) => {
                    let mut metrics = raft.metrics();
                    let m = metrics.wait_for(|m| m.current_leader.is_some()).await.ok()?;
                    m.current_leader
                }
                None => *self.observed_leader.clone().wait_for(Option::is_some).await.ok()?,
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Commits a batch through this node, which must lead; returns the index of its entry
    /// once it is committed and applied here.
    pub async fn commit(&self, batch: MetadataBatch) -> Result<u64, CommitError> {
        let Some(raft) = &self.raft else { return Err(CommitError::NotLeader(self.leader())) };
        match raft.client_write(batch).await {
            Ok(r) => Ok(r.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(CommitError::NotLeader(f.leader_id)),
            Err(e) => Err(CommitError::Fatal(e.to_string())),
        }
    }

    /// Waits up to `timeout` until the entry at `index` is applied to this node's image.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.state.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|i| *i >= index)).await.is_ok_and(|r| r.is_ok())
    }

    /// A copy of the image as applied so far.
    pub fn image(&self) -> MetadataImage {
        self.state.image.read().clone()
    }

    pub async fn shutdown(&self) {
        if let Some(observer) = &self.observer {
            observer.abort();
        }
        if let Some(raft) = &self.raft {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "metadata quorum did not stop cleanly");
            }
        }
    }
}

/// An observer's life: fetches the metadata from the leader (or, while none is known, from
/// each voter in turn), applies it, and keeps `leader` up to date.
async fn observe(
    voters: BTreeMap<NodeId, String>,
    identity: Identity,
    mut state: MetadataState,
    leader: tokio::sync::watch::Sender<Option<NodeId>>,
) {
    const RETRY: Duration = Duration::from_millis(100);
    let ids: Vec<NodeId> = voters.keys().copied().collect();
    let mut fetcher = MetadataFetcher::new(identity);
    let mut turn = 0usize;
    loop {
        let known = *leader.borrow();
        let to = known.filter(|l| voters.contains_key(l)).unwrap_or(ids[turn % ids.len()]);
        let addr = voters.get(&to).map(String::as_str).unwrap_or_default();
        match fetcher.fetch(to, addr, state.applied_index()).await {
            Ok(update) => {
                if let Err(e) = state.take(update.changes).await {
                    tracing::warn!(voter = to, error = %e, "cannot apply the metadata fetched");
                    tokio::time::sleep(RETRY).await;
                }
                if update.leader != known {
                    match update.leader {
                        Some(l) => tracing::info!(leader = l, "metadata quorum leader"),
                        None => tracing::info!("metadata quorum has no leader"),
                    }
                    leader.send_replace(update.leader);
                }
            }
            Err(e) => {
                tracing::debug!(voter = to, error = %e, "cannot fetch the metadata");
                if known.is_some() {
                    leader.send_replace(None);
                }
                turn += 1;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<(QuorumSettings, Option<String>), String> {
        let layer = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        QuorumSettings::from_config(&BrokerConfig::from_layers([layer]).unwrap())
    }

    #[test]
    fn kraft_settings_make_a_voter_and_no_settings_a_quorum_of_one() {
        let (single, bind) = settings(&[]).unwrap();
        assert!(single.is_single() && bind.is_none());
        let voter = [
            ("node.id", "2"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@127.0.0.1:9093, 2@127.0.0.1:9094,3@127.0.0.1:9095"),
            ("controller.listener.names", "CONTROLLER"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094"),
        ];
        let (s, bind) = settings(&voter).unwrap();
        assert_eq!(s.node_id, 2);
        assert_eq!(s.voters.len(), 3);
        assert_eq!(s.voters[&2], "127.0.0.1:9094");
        assert_eq!(bind.as_deref(), Some("127.0.0.1:9094"));
        assert!(!s.is_single());
    }

    #[test]
    fn inconsistent_kraft_settings_are_refused_with_a_reason() {
        let base = [
            ("process.roles", "broker,controller"),
            ("controller.listener.names", "CONTROLLER"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            settings(&all).err().unwrap_or_default()
        };
        assert!(with(&[("controller.quorum.voters", "2@h:1")]).contains("not among"));
        assert!(with(&[("controller.quorum.voters", "1@nohostport")]).contains("ID@HOST:PORT"));
        assert!(with(&[("controller.quorum.voters", "1@h:1,1@h:2")]).contains("twice"));
        assert!(with(&[("controller.quorum.voters", "1@h:1"), ("process.roles", "controller")]).contains("combined"));
        let broker_only = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![("process.roles", "broker"), ("node.id", "4")];
            all.extend_from_slice(extra);
            settings(&all)
        };
        let (observer, bind) = broker_only(&[("controller.quorum.voters", "1@h:1,2@h:2,3@h:3")]).unwrap();
        assert!(observer.observer && bind.is_none() && !observer.is_single());
        let voter_as_broker = broker_only(&[("controller.quorum.voters", "4@h:1")]).err().unwrap_or_default();
        assert!(voter_as_broker.contains("has no controller"), "{voter_as_broker}");
        let no_voters = settings(&[("process.roles", "broker")]).err().unwrap_or_default();
        assert!(no_voters.contains("must name the controllers"), "{no_voters}");
        let no_roles = settings(&[("controller.quorum.voters", "1@h:1")]).err().unwrap_or_default();
        assert!(no_roles.contains("process.roles"));
        let joining = settings(&[
            ("node.id", "4"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.bootstrap.servers", "127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9099"),
        ]);
        let (joining, bind) = joining.unwrap();
        assert!(joining.joining && joining.voters.is_empty() && !joining.is_single());
        assert_eq!(bind.as_deref(), Some("127.0.0.1:9099"));
        let no_listener = settings(&[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@h:1"),
            ("controller.listener.names", "CONTROLLER"),
        ]);
        assert!(no_listener.err().unwrap_or_default().contains("controller.listener.names"));
    }
}
