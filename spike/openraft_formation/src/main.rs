//! Spike: three openraft 0.9 nodes, all initialized with the same voter set at once (as Weir
//! voters would be from controller.quorum.voters), elect one leader and replicate writes.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership, Vote};

openraft::declare_raft_types!(pub Cfg: D = String, R = u64);
type NodeId = u64;
type Raft = openraft::Raft<Cfg>;

#[derive(Default, Clone)]
struct LogStore(Arc<Mutex<LogInner>>);
#[derive(Default)]
struct LogInner { log: BTreeMap<u64, Entry<Cfg>>, vote: Option<Vote<NodeId>>, committed: Option<LogId<NodeId>>, purged: Option<LogId<NodeId>> }

impl RaftLogReader<Cfg> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(&mut self, range: RB) -> Result<Vec<Entry<Cfg>>, StorageError<NodeId>> {
        Ok(self.0.lock().unwrap().log.range(range).map(|(_, e)| e.clone()).collect())
    }
}
impl RaftLogStorage<Cfg> for LogStore {
    type LogReader = Self;
    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, StorageError<NodeId>> {
        let i = self.0.lock().unwrap();
        let last = i.log.values().next_back().map(|e| e.log_id).or(i.purged);
        Ok(LogState { last_purged_log_id: i.purged, last_log_id: last })
    }
    async fn get_log_reader(&mut self) -> Self { self.clone() }
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> { self.0.lock().unwrap().vote = Some(*vote); Ok(()) }
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> { Ok(self.0.lock().unwrap().vote) }
    async fn save_committed(&mut self, c: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> { self.0.lock().unwrap().committed = c; Ok(()) }
    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> { Ok(self.0.lock().unwrap().committed) }
    async fn append<I: IntoIterator<Item = Entry<Cfg>> + Send>(&mut self, entries: I, callback: LogFlushed<Cfg>) -> Result<(), StorageError<NodeId>> {
        { let mut i = self.0.lock().unwrap(); for e in entries { i.log.insert(e.log_id.index, e); } }
        callback.log_io_completed(Ok(()));
        Ok(())
    }
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> { self.0.lock().unwrap().log.split_off(&log_id.index); Ok(()) }
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut i = self.0.lock().unwrap(); i.purged = Some(log_id); let keep = i.log.split_off(&(log_id.index + 1)); i.log = keep; Ok(())
    }
}

#[derive(Default, Clone)]
struct Machine(Arc<Mutex<MachineInner>>);
#[derive(Default)]
struct MachineInner { applied: Option<LogId<NodeId>>, membership: StoredMembership<NodeId, BasicNode>, records: Vec<String>, snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)> }

impl RaftSnapshotBuilder<Cfg> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Cfg>, StorageError<NodeId>> {
        let mut i = self.0.lock().unwrap();
        let data = serde_json::to_vec(&i.records).unwrap_or_default();
        let meta = SnapshotMeta { last_log_id: i.applied, last_membership: i.membership.clone(), snapshot_id: format!("{:?}", i.applied) };
        i.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
impl RaftStateMachine<Cfg> for Machine {
    type SnapshotBuilder = Self;
    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let i = self.0.lock().unwrap(); Ok((i.applied, i.membership.clone()))
    }
    async fn apply<I: IntoIterator<Item = Entry<Cfg>> + Send>(&mut self, entries: I) -> Result<Vec<u64>, StorageError<NodeId>> {
        let mut i = self.0.lock().unwrap(); let mut out = Vec::new();
        for e in entries {
            i.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Normal(r) => i.records.push(r),
                EntryPayload::Membership(m) => i.membership = StoredMembership::new(Some(e.log_id), m),
                EntryPayload::Blank => {}
            }
            out.push(i.records.len() as u64);
        }
        Ok(out)
    }
    async fn get_snapshot_builder(&mut self) -> Self { self.clone() }
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> { Ok(Box::new(Cursor::new(Vec::new()))) }
    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner(); let mut i = self.0.lock().unwrap();
        i.records = serde_json::from_slice(&data).unwrap_or_default(); i.applied = meta.last_log_id; i.membership = meta.last_membership.clone();
        i.snapshot = Some((meta.clone(), data)); Ok(())
    }
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Cfg>>, StorageError<NodeId>> {
        let i = self.0.lock().unwrap();
        Ok(i.snapshot.clone().map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// In-process network: every node's Raft, by id.
#[derive(Clone, Default)]
struct Router(Arc<Mutex<BTreeMap<NodeId, Raft>>>);
struct Conn { router: Router, target: NodeId }
impl RaftNetworkFactory<Cfg> for Router {
    type Network = Conn;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Conn { Conn { router: self.clone(), target } }
}
impl Conn {
    fn raft(&self) -> Raft { self.router.0.lock().unwrap().get(&self.target).cloned().expect("node") }
}
impl RaftNetwork<Cfg> for Conn {
    async fn append_entries(&mut self, rpc: AppendEntriesRequest<Cfg>, _o: RPCOption) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft().append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
    async fn install_snapshot(&mut self, rpc: InstallSnapshotRequest<Cfg>, _o: RPCOption) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.raft().install_snapshot(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _o: RPCOption) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft().vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[tokio::main]
async fn main() {
    let router = Router::default();
    let config = Arc::new(openraft::Config { heartbeat_interval: 100, election_timeout_min: 300, election_timeout_max: 600, ..Default::default() }.validate().unwrap());
    let mut machines = BTreeMap::new();
    for id in 1..=3u64 {
        let m = Machine::default();
        let raft = Raft::new(id, config.clone(), router.clone(), LogStore::default(), m.clone()).await.unwrap();
        router.0.lock().unwrap().insert(id, raft);
        machines.insert(id, m);
    }
    let voters: BTreeSet<NodeId> = (1..=3).collect();
    // every voter initializes with the same set, at once
    let rafts: Vec<Raft> = router.0.lock().unwrap().values().cloned().collect();
    let inits = rafts.iter().map(|r| { let v = voters.clone(); let r = r.clone(); tokio::spawn(async move { r.initialize(v).await.map_err(|e| e.to_string()) }) });
    for h in inits { println!("initialize: {:?}", h.await.unwrap()); }
    let leader = rafts[0].wait(Some(std::time::Duration::from_secs(5))).metrics(|m| m.current_leader.is_some(), "leader").await.unwrap().current_leader.unwrap();
    println!("leader {leader}");
    let lr = router.0.lock().unwrap().get(&leader).cloned().unwrap();
    for n in 0..5 { lr.client_write(format!("record-{n}")).await.unwrap(); }
    // a write on a follower is refused with ForwardToLeader
    let follower = rafts.iter().find(|r| r.metrics().borrow().id != leader).unwrap();
    println!("follower write: {:?}", follower.client_write("x".into()).await.err().map(|e| e.to_string()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (id, m) in &machines { println!("node {id}: {:?}", m.0.lock().unwrap().records); }
    let leaders: BTreeSet<_> = rafts.iter().map(|r| r.metrics().borrow().current_leader).collect();
    println!("leaders seen: {leaders:?}");
    for r in rafts { r.shutdown().await.unwrap(); }
}
