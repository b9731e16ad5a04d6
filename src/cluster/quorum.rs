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
use super::raft_log::{MetadataBatch, NodeId, RaftLog};
use super::raft_net::{Identity, Network, Raft};
use super::raft_state::MetadataState;
use crate::config::BrokerConfig;

/// What a node needs to join the quorum.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: NodeId,
    /// Voter id → `HOST:PORT` of its controller listener (Kafka's `controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, String>,
    /// Kafka's `controller.quorum.election.timeout.ms`: how long followers wait for the
    /// leader before one of them stands for election (randomized up to twice this).
    pub election_timeout_ms: u64,
    /// The cluster id this node knows before joining (`meta.properties`, or `cluster.id`):
    /// members of another cluster are refused, and refuse this node.
    pub cluster_id: Option<String>,
}

impl QuorumSettings {
    /// A quorum of one: the single broker that is its own controller.
    pub fn single(node_id: NodeId) -> QuorumSettings {
        QuorumSettings {
            node_id,
            voters: BTreeMap::from([(node_id, String::new())]),
            election_timeout_ms: 1000,
            cluster_id: None,
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
        if !(roles.iter().any(|r| r == "broker") && roles.iter().any(|r| r == "controller")) {
            return Err("process.roles: Weir runs every node as broker,controller (combined mode) for now".into());
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
        if !voters.contains_key(&node_id) {
            return Err(format!("node.id {node_id} is not among controller.quorum.voters, as a controller must be"));
        }
        let listener = crate::security::listeners::controller_listener(config)?
            .ok_or("process.roles includes controller, but controller.listener.names names no listener in listeners")?;
        let election_timeout_ms = config.get_i64("controller.quorum.election.timeout.ms").max(10) as u64;
        Ok((QuorumSettings { node_id, voters, election_timeout_ms, cluster_id: None }, Some(listener.bind)))
    }

    /// Whether this is a quorum of one (a single broker with no quorum settings).
    pub fn is_single(&self) -> bool {
        self.voters.len() == 1 && self.voters.values().all(String::is_empty)
    }

    fn raft_config(&self) -> io::Result<openraft::Config> {
        let election = self.election_timeout_ms.max(10);
        openraft::Config {
            cluster_name: "weir-metadata".into(),
            heartbeat_interval: (election / 5).max(5),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            ..Default::default()
        }
        .validate()
        .map_err(io::Error::other)
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

/// This node's member of the metadata quorum.
pub struct Quorum {
    pub node_id: NodeId,
    /// A quorum of one (a broker without quorum settings).
    pub single: bool,
    pub raft: Raft,
    pub state: MetadataState,
    /// Who this node is to the other members (checked on every quorum connection).
    pub identity: Identity,
    voters: BTreeMap<NodeId, BasicNode>,
}

impl Quorum {
    /// Opens the metadata log in `dir`, starts Raft, and initializes the quorum if this node
    /// never joined one. Peers reach it once the controller listener is served.
    pub async fn start(dir: &Path, settings: &QuorumSettings) -> io::Result<Quorum> {
        let log = RaftLog::open(dir)?;
        let state = MetadataState::open(dir)?;
        let config = Arc::new(settings.raft_config()?);
        let identity = Identity {
            node_id: settings.node_id,
            known: settings.cluster_id.clone(),
            image: Some(state.image.clone()),
            refusals: Default::default(),
        };
        let network = Network { addrs: Arc::new(settings.voters.clone()), identity: identity.clone() };
        let raft = Raft::new(settings.node_id, config, network, log, state.clone()).await.map_err(io::Error::other)?;
        let voters: BTreeMap<NodeId, BasicNode> =
            settings.voters.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        tokio::spawn(Quorum::log_leader_changes(raft.clone(), settings.node_id));
        if !raft.is_initialized().await.map_err(io::Error::other)? {
            if let Err(e) = raft.initialize(voters.clone()).await {
                tracing::debug!(error = %e, "metadata quorum already being formed by another voter");
            }
        }
        Ok(Quorum { node_id: settings.node_id, single: settings.is_single(), raft, state, identity, voters })
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

    /// The leader (active controller) as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
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

    /// The controller address of a voter.
    pub fn voter_addr(&self, id: NodeId) -> Option<&str> {
        self.voters.get(&id).map(|n| n.addr.as_str())
    }

    /// Waits up to `timeout` for a known leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = metrics.borrow_and_update().current_leader {
                    return Some(l);
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Commits a batch through this node, which must lead; returns the index of its entry
    /// once it is committed and applied here.
    pub async fn commit(&self, batch: MetadataBatch) -> Result<u64, CommitError> {
        match self.raft.client_write(batch).await {
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
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not stop cleanly");
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
        let no_roles = settings(&[("controller.quorum.voters", "1@h:1")]).err().unwrap_or_default();
        assert!(no_roles.contains("process.roles"));
        let no_listener = settings(&[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@h:1"),
            ("controller.listener.names", "CONTROLLER"),
        ]);
        assert!(no_listener.err().unwrap_or_default().contains("controller.listener.names"));
    }
}
