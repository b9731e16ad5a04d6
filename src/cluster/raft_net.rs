//! The metadata quorum's network for openraft: Raft RPCs between voters over TCP, one frame
//! per message (`u32 length | JSON`), a request answered before the next is read. These are
//! openraft's messages, not KRaft's, so they stay between Weir nodes on the controller
//! listener. The same connections carry admin changes forwarded from other brokers to the
//! active controller. Every connection opens with a [`Hello`]: nodes of different clusters
//! refuse each other before any Raft message is taken (Kafka answers such a node
//! INCONSISTENT_CLUSTER_ID).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use crate::client::config::SaslMechanism;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::controller::{Controller, ControllerOp, Outcome};
use super::metadata_log::MetadataImage;
use super::quorum_link::{QuorumLink, Stream};
use super::raft_log::{MetadataRaft, NodeId};
use super::raft_state::{MetadataChanges, MetadataState};

pub type Raft = openraft::Raft<MetadataRaft>;

/// Frames larger than this are refused (a snapshot of the metadata image is far smaller).
const MAX_FRAME: usize = 256 << 20;
/// How long a voter holds an observer's metadata fetch when nothing changed.
const FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long an observer waits for a voter's answer to a fetch before it gives up on it.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The first frame on every quorum connection: who calls whom, in which cluster.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    /// The caller's cluster id, when it knows one.
    cluster_id: Option<String>,
    from: NodeId,
    /// The node the caller means to reach (none for a broker forwarding to whoever leads).
    to: Option<NodeId>,
}

/// Who this node is on quorum connections, to check callers against and to introduce itself.
#[derive(Clone, Default)]
pub struct Identity {
    pub node_id: NodeId,
    /// The cluster id known before the image has one (`meta.properties`, or `cluster.id`).
    pub known: Option<String>,
    /// The metadata image, which holds the cluster id once it is committed.
    pub image: Option<Arc<parking_lot::RwLock<MetadataImage>>>,
    /// Voters that refused this node, with their reasons (cleared when one accepts).
    pub refusals: Arc<parking_lot::Mutex<BTreeMap<NodeId, String>>>,
    /// How connections are secured (TLS, SASL) and who is let in.
    pub link: Arc<QuorumLink>,
}

impl Identity {
    pub fn cluster_id(&self) -> Option<String> {
        self.image.as_ref().and_then(|i| i.read().cluster_id.clone()).or_else(|| self.known.clone())
    }

    fn hello(&self, to: Option<NodeId>) -> Hello {
        Hello { cluster_id: self.cluster_id(), from: self.node_id, to }
    }

    /// Why a caller must be refused, if it must: it belongs to another cluster, or it meant
    /// another node (a wrong address in its `controller.quorum.voters`). A node that knows no
    /// cluster id yet (a new one, first start) is let in.
    fn check(&self, hello: &Hello) -> Result<(), String> {
        if let Some(to) = hello.to.filter(|to| *to != self.node_id) {
            return Err(format!("node {} called node {to}, but this is node {}", hello.from, self.node_id));
        }
        match (&hello.cluster_id, self.cluster_id()) {
            (Some(theirs), Some(ours)) if *theirs != ours => {
                Err(format!("node {} is of cluster {theirs}, this node of cluster {ours}", hello.from))
            }
            _ => Ok(()),
        }
    }

    /// Notes whether voter `to` accepted this node, logging a refusal the first time.
    fn note(&self, to: Option<NodeId>, answer: &Result<(), String>) {
        let Some(to) = to else { return };
        let mut refusals = self.refusals.lock();
        match answer {
            Ok(()) => {
                refusals.remove(&to);
            }
            Err(why) => {
                if refusals.insert(to, why.clone()).is_none() {
                    tracing::error!(voter = to, reason = %why, "a voter of the metadata quorum refuses this node");
                }
            }
        }
    }
}

/// Quorum members whose connection just failed (reported by this node's Raft client), so that
/// the controller checks at once whether their process is gone rather than waiting for their
/// heartbeats to be late.
#[derive(Default)]
pub struct Suspects {
    ids: parking_lot::Mutex<std::collections::BTreeSet<NodeId>>,
    wake: tokio::sync::Notify,
}

impl Suspects {
    pub fn report(&self, id: NodeId) {
        if self.ids.lock().insert(id) {
            self.wake.notify_one();
        }
    }

    /// Waits for a report.
    pub async fn reported(&self) {
        self.wake.notified().await
    }

    /// The members reported since the last call.
    pub fn take(&self) -> std::collections::BTreeSet<NodeId> {
        std::mem::take(&mut *self.ids.lock())
    }
}

/// Connects to the quorum member at `addr` (TLS and SASL as the link says) and introduces
/// this node; a refusal is an error of kind `PermissionDenied` carrying the member's reason.
async fn connect(identity: &Identity, to: Option<NodeId>, addr: &str) -> io::Result<Stream> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let secured = async {
        let mut stream = identity.link.connect(tcp, addr).await?;
        if let Some((mechanism, user, password)) = &identity.link.sasl {
            authenticate(&mut stream, mechanism, user, password).await?;
        }
        Ok::<_, io::Error>(stream)
    };
    let mut stream = match secured.await {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            identity.note(to, &Err(e.to_string()));
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    write_frame(&mut stream, &Request::Hello(identity.hello(to))).await?;
    let answer = match read_frame::<Response>(&mut stream).await? {
        Response::Hello(answer) => answer,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "quorum member answered another request")),
    };
    identity.note(to, &answer);
    answer.map(|()| stream).map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))
}

/// The caller's side of a SASL exchange on the controller listener.
async fn authenticate(stream: &mut Stream, mechanism: &SaslMechanism, user: &str, password: &str) -> io::Result<()> {
    let denied = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    match mechanism {
        SaslMechanism::Plain => {
            sasl_step(stream, "PLAIN", format!("\0{user}\0{password}").into_bytes()).await?;
        }
        SaslMechanism::Scram(m) => {
            let (mut scram, first) = crate::security::scram::ScramClient::start(*m, user, password);
            let challenge = sasl_step(stream, m.name(), first).await?;
            let last = scram.respond(&challenge).map_err(|e| denied(format!("SASL {}: {e}", m.name())))?;
            let server_final = sasl_step(stream, m.name(), last).await?;
            scram
                .verify(&server_final)
                .map_err(|_| denied("the controller could not prove it knows the credential".into()))?;
        }
    }
    Ok(())
}

async fn sasl_step(stream: &mut Stream, mechanism: &str, token: Vec<u8>) -> io::Result<Vec<u8>> {
    write_frame(stream, &Request::Sasl { mechanism: mechanism.to_string(), token }).await?;
    match read_frame::<Response>(stream).await? {
        Response::Sasl(Ok(reply)) => Ok(reply),
        Response::Sasl(Err(why)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "quorum member answered another request")),
    }
}

/// The server's side of a SASL exchange: the caller's principal, or why it was refused (the
/// caller is told only that authentication failed).
async fn serve_sasl(
    stream: &mut Stream,
    peer: std::net::SocketAddr,
    served: &Served,
) -> Result<crate::security::Principal, String> {
    use crate::security::sasl::{AuthStep, ListenerInfo, SaslMechanism as Mechanism, Session};
    let link = &served.identity.link;
    let listener = ListenerInfo { name: link.listener.clone(), protocol: link.protocol };
    let session = Session::new(Arc::new(listener), peer, None);
    let lookup = |user: &str, m: crate::security::scram::Mechanism| {
        served.state.image.read().security.scram.get(&(user.to_string(), m)).cloned()
    };
    loop {
        let Ok(Request::Sasl { mechanism, token }) = read_frame::<Request>(stream).await else {
            return Err("the controller listener needs SASL authentication first".into());
        };
        if !session.in_exchange() {
            let known = Mechanism::from_name(&mechanism).filter(|_| link.mechanisms.contains(&mechanism));
            let Some(m) = known else {
                let why = format!("SASL mechanism {mechanism} is not enabled on the controller listener");
                let _ = write_frame(stream, &Response::Sasl(Err(why.clone()))).await;
                return Err(why);
            };
            session.handshake(m, 1).map_err(str::to_string)?;
        }
        match session.authenticate(&token, lookup, Some(&link.plain_users), 0) {
            Ok(AuthStep::Challenge(challenge)) => {
                write_frame(stream, &Response::Sasl(Ok(challenge))).await.map_err(|e| e.to_string())?;
            }
            Ok(AuthStep::Done { principal, reply, .. }) => {
                write_frame(stream, &Response::Sasl(Ok(reply))).await.map_err(|e| e.to_string())?;
                return Ok(principal);
            }
            Err(e) => {
                let _ = write_frame(stream, &Response::Sasl(Err("authentication failed".into()))).await;
                return Err(format!("SASL {mechanism} authentication failed: {e}"));
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Request {
    /// One SASL token of the caller, before its hello on SASL listeners.
    Sasl {
        mechanism: String,
        token: Vec<u8>,
    },
    Hello(Hello),
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// An admin change for the active controller.
    Forward(ControllerOp),
    /// An observer's fetch of the metadata after the entry it applied last.
    FetchMetadata {
        after: u64,
    },
}

/// A voter's answer to an observer: the quorum's leader as it knows it, and the changes.
#[derive(Serialize, Deserialize)]
pub struct MetadataUpdate {
    pub leader: Option<NodeId>,
    pub changes: MetadataChanges,
}

/// An admin failure as it travels back to the broker that forwarded the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteAdminError {
    pub code: i16,
    pub message: String,
}

pub type ForwardResult = Result<(Outcome, u64), RemoteAdminError>;

#[derive(Serialize, Deserialize)]
enum Response {
    Sasl(Result<Vec<u8>, String>),
    Hello(Result<(), String>),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(ForwardResult),
    Metadata(Result<MetadataUpdate, String>),
}

async fn write_frame<T: Serialize>(stream: &mut (impl AsyncWrite + Unpin), value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn read_frame<T: DeserializeOwned>(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("raft frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What a voter serves its quorum connections from.
#[derive(Clone)]
pub struct Served {
    pub raft: Raft,
    pub identity: Identity,
    pub state: MetadataState,
    pub suspects: Arc<Suspects>,
    /// Observers fetching from here: id → (entry applied, last fetch ms), for DescribeQuorum.
    pub observers: Arc<parking_lot::Mutex<BTreeMap<NodeId, (u64, i64)>>>,
}

/// Serves Raft RPCs from other voters, metadata fetches from observers and changes forwarded
/// to the controller (when `controller` is given), until the listener fails; each connection
/// on its task, taken once its caller's [`Hello`] passes [`Identity::check`].
pub async fn serve(listener: TcpListener, served: Served, controller: Option<std::sync::Weak<Controller>>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { return };
        tokio::spawn(serve_connection(stream, peer, served.clone(), controller.clone()));
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    served: Served,
    controller: Option<std::sync::Weak<Controller>>,
) {
    let _ = tcp.set_nodelay(true);
    let link = served.identity.link.clone();
    let (mut stream, certified) = match link.accept(tcp).await {
        Ok(accepted) => accepted,
        Err(why) => {
            tracing::warn!(%peer, reason = %why, "refused a metadata quorum connection");
            return;
        }
    };
    let principal = match link.protocol.uses_sasl() {
        true => match serve_sasl(&mut stream, peer, &served).await {
            Ok(principal) => principal,
            Err(why) => {
                tracing::warn!(%peer, reason = %why, "refused a metadata quorum connection");
                return;
            }
        },
        false => certified.unwrap_or_else(crate::security::Principal::anonymous),
    };
    let authorized = || link.authorize(&principal, &peer.ip().to_string(), &served.state.image.read().security.acls);
    let (answer, from) = match read_frame::<Request>(&mut stream).await {
        Ok(Request::Hello(hello)) => (served.identity.check(&hello).and_then(|()| authorized()), hello.from),
        Ok(_) => (Err("a quorum connection must open with a hello".to_string()), 0),
        Err(_) => return,
    };
    if let Err(why) = &answer {
        tracing::warn!(%peer, reason = %why, "refused a metadata quorum connection");
    }
    if write_frame(&mut stream, &Response::Hello(answer.clone())).await.is_err() || answer.is_err() {
        return;
    }
    let mut observer = false;
    while let Ok(request) = read_frame::<Request>(&mut stream).await {
        let raft = &served.raft;
        let response = match request {
            Request::Sasl { .. } => Response::Sasl(Err("already authenticated".into())),
            Request::Hello(hello) => Response::Hello(served.identity.check(&hello)),
            Request::AppendEntries(r) => Response::AppendEntries(raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(raft.vote(r).await),
            Request::InstallSnapshot(r) => Response::InstallSnapshot(raft.install_snapshot(r).await),
            Request::Forward(op) => Response::Forward(match controller.as_ref().and_then(|c| c.upgrade()) {
                Some(c) => c.execute_forwarded(&op).await,
                None => Err(RemoteAdminError {
                    code: kafka_protocol::ResponseError::NotController.code(),
                    message: "not a controller".into(),
                }),
            }),
            Request::FetchMetadata { after } => {
                observer = true;
                served.observers.lock().insert(from, (after, crate::broker::now_ms()));
                Response::Metadata(fetch_metadata(&served, after).await)
            }
        };
        if let Err(e) = write_frame(&mut stream, &response).await {
            tracing::debug!(%peer, error = %e, "quorum connection closed");
            break;
        }
    }
    if observer {
        // an observer's fetches stopped: the controller checks whether it is gone
        served.observers.lock().remove(&from);
        served.suspects.report(from);
    }
}

/// Answers an observer once there is something after `after`, or after [`FETCH_WAIT`].
async fn fetch_metadata(served: &Served, after: u64) -> Result<MetadataUpdate, String> {
    let mut applied = served.state.subscribe();
    let _ = tokio::time::timeout(FETCH_WAIT, applied.wait_for(|i| *i > after)).await;
    let changes = served.state.changes_since(after).map_err(|e| e.to_string())?;
    Ok(MetadataUpdate { leader: served.raft.metrics().borrow().current_leader, changes })
}

/// An observer's connection to one voter, for metadata fetches.
pub struct MetadataFetcher {
    identity: Identity,
    connection: Option<(NodeId, Stream)>,
}

impl MetadataFetcher {
    pub fn new(identity: Identity) -> MetadataFetcher {
        MetadataFetcher { identity, connection: None }
    }

    /// Fetches what follows entry `after` from voter `to` at `addr` (reconnecting when the
    /// voter changed or the connection broke).
    pub async fn fetch(&mut self, to: NodeId, addr: &str, after: u64) -> io::Result<MetadataUpdate> {
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.exchange(to, addr, after))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "metadata fetch unanswered")));
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(&mut self, to: NodeId, addr: &str, after: u64) -> io::Result<MetadataUpdate> {
        if self.connection.as_ref().is_some_and(|(id, _)| *id != to) {
            self.connection = None;
        }
        let (_, stream) = match self.connection.as_mut() {
            Some(c) => c,
            None => self.connection.insert((to, connect(&self.identity, Some(to), addr).await?)),
        };
        write_frame(stream, &Request::FetchMetadata { after }).await?;
        match read_frame::<Response>(stream).await? {
            Response::Metadata(r) => r.map_err(io::Error::other),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "voter answered another request")),
        }
    }
}

/// Makes a client per voter, connecting on first use. The address is this node's own
/// `controller.quorum.voters` entry for it (as in Kafka, each node's configuration says how
/// it reaches the others), or the one in the membership's `BasicNode` for a voter it lacks.
#[derive(Clone, Default)]
pub struct Network {
    pub addrs: Arc<BTreeMap<NodeId, String>>,
    pub identity: Identity,
    pub suspects: Arc<Suspects>,
}

pub struct Peer {
    target: NodeId,
    addr: String,
    identity: Identity,
    suspects: Arc<Suspects>,
    stream: Option<Stream>,
}

impl RaftNetworkFactory<MetadataRaft> for Network {
    type Network = Peer;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let addr = self.addrs.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        Peer { target, addr, identity: self.identity.clone(), suspects: self.suspects.clone(), stream: None }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl Peer {
    /// One request and its response; a broken connection is dropped (the next call
    /// reconnects) and its member reported as a suspect.
    async fn call(&mut self, request: &Request) -> io::Result<Response> {
        let result = self.exchange(request).await;
        if let Err(e) = &result {
            self.stream = None;
            if !matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::PermissionDenied) {
                self.suspects.report(self.target);
            }
        }
        result
    }

    async fn exchange(&mut self, request: &Request) -> io::Result<Response> {
        let stream = match self.stream.as_mut() {
            Some(s) => s,
            None => self.stream.insert(connect(&self.identity, Some(self.target), &self.addr).await?),
        };
        write_frame(stream, request).await?;
        read_frame::<Response>(stream).await
    }

    // the error type is openraft's, which its trait methods return as it is
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(&self, r: Result<T, E>) -> RpcResult<T, E> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A transport failure as openraft sees it: a peer that cannot be reached (openraft backs off
/// and retries), or one that answered something undecodable.
fn transport<E: std::error::Error>(e: io::Error) -> RPCError<NodeId, BasicNode, E> {
    match e.kind() {
        io::ErrorKind::InvalidData => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    transport(io::Error::new(io::ErrorKind::InvalidData, "raft peer answered another request"))
}

impl RaftNetwork<MetadataRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        match self.call(&Request::AppendEntries(rpc)).await.map_err(transport)? {
            Response::AppendEntries(r) => self.remote(r),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self.call(&Request::InstallSnapshot(rpc)).await.map_err(transport)? {
            Response::InstallSnapshot(r) => self.remote(r),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        match self.call(&Request::Vote(rpc)).await.map_err(transport)? {
            Response::Vote(r) => self.remote(r),
            _ => Err(unexpected()),
        }
    }
}

/// Sends an admin change to the controller `to` at `addr` and waits for its outcome.
pub async fn forward(identity: &Identity, to: NodeId, addr: &str, op: &ControllerOp) -> io::Result<ForwardResult> {
    let mut stream = connect(identity, Some(to), addr).await?;
    write_frame(&mut stream, &Request::Forward(op.clone())).await?;
    match read_frame::<Response>(&mut stream).await? {
        Response::Forward(r) => Ok(r),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "controller answered another request")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::metadata_log::MetadataRecord;
    use super::super::raft_log::RaftLog;
    use super::super::raft_state::MetadataState;
    use super::*;

    /// Commits `record` through whichever node leads, following ForwardToLeader answers (an
    /// election may be under way) for up to 10 s.
    async fn write(rafts: &[(NodeId, Raft)], mut to: NodeId, record: MetadataRecord) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let raft = rafts.iter().find(|(i, _)| *i == to).map(|(_, r)| r.clone()).expect("known node");
            match raft.client_write(vec![record.clone()]).await {
                Ok(_) => return,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "no commit within 10 s: {e}");
                    if let Some(f) = e.forward_to_leader().and_then(|f| f.leader_id) {
                        to = f;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    async fn leader_of(rafts: &[(NodeId, Raft)]) -> NodeId {
        let (_, r) = &rafts[0];
        let m = r.wait(Some(Duration::from_secs(10))).metrics(|m| m.current_leader.is_some(), "a leader").await;
        m.expect("a leader within 10 s").current_leader.expect("leader")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn three_voters_over_tcp_elect_replicate_and_fail_over() {
        let config = Arc::new(
            openraft::Config {
                heartbeat_interval: 50,
                election_timeout_min: 200,
                election_timeout_max: 400,
                ..Default::default()
            }
            .validate()
            .unwrap(),
        );
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut listeners = Vec::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3u64 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.insert(id, BasicNode { addr: l.local_addr().unwrap().to_string() });
            listeners.push(l);
        }
        let mut rafts = Vec::new();
        let mut states = Vec::new();
        for ((id, l), dir) in (1..=3u64).zip(listeners).zip(&dirs) {
            let log = RaftLog::open(dir.path()).unwrap();
            let state = MetadataState::open(dir.path()).unwrap();
            let identity = Identity { node_id: id, known: Some("a".into()), ..Default::default() };
            let network = Network { identity: identity.clone(), ..Default::default() };
            let raft = Raft::new(id, config.clone(), network, log, state.clone()).await.unwrap();
            let served = Served {
                raft: raft.clone(),
                identity,
                state: state.clone(),
                suspects: Default::default(),
                observers: Default::default(),
            };
            tokio::spawn(serve(l, served, None));
            rafts.push((id, raft));
            states.push(state);
        }
        for (_, r) in &rafts {
            // every voter initializes with the same set; those that already voted say NotAllowed
            let _ = r.initialize(voters.clone()).await;
        }
        let leader = leader_of(&rafts).await;

        // a node of another cluster, or one that means another node, is refused at once
        let node1 = &voters[&1].addr;
        let foreign = Identity { node_id: 4, known: Some("b".into()), ..Default::default() };
        let refused = connect(&foreign, Some(1), node1).await.err().expect("refused");
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(refused.to_string().contains("cluster b"), "{refused}");
        assert!(foreign.refusals.lock().contains_key(&1));
        let member = Identity { node_id: 2, known: Some("a".into()), ..Default::default() };
        let misdirected = connect(&member, Some(3), node1).await.err().expect("refused");
        assert!(misdirected.to_string().contains("this is node 1"), "{misdirected}");
        let newcomer = Identity { node_id: 4, ..Default::default() };
        assert!(connect(&newcomer, Some(1), node1).await.is_ok(), "a node with no cluster id yet is let in");

        let raft_of = |id: NodeId| rafts.iter().find(|(i, _)| *i == id).map(|(_, r)| r.clone()).unwrap();
        let create = |name: &str| MetadataRecord::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
            replicas: vec![],
        };
        write(&rafts, leader, create("first")).await;
        let leader = rafts[0].1.metrics().borrow().current_leader.expect("a leader");

        // the leader goes away: the other two elect one of themselves and keep committing
        raft_of(leader).shutdown().await.unwrap();
        let rest: Vec<(NodeId, Raft)> = rafts.iter().filter(|(i, _)| *i != leader).cloned().collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let new_leader = loop {
            let l = rest[0].1.metrics().borrow().current_leader;
            if let Some(l) = l.filter(|l| *l != leader) {
                break l;
            }
            assert!(tokio::time::Instant::now() < deadline, "no new leader within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        write(&rest, new_leader, create("second")).await;
        for ((id, _), state) in rafts.iter().zip(&states) {
            if *id == leader {
                continue;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while state.image.read().topics.len() < 2 {
                assert!(tokio::time::Instant::now() < deadline, "node {id} did not apply both records");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for (id, r) in rest {
            assert_ne!(id, leader);
            r.shutdown().await.unwrap();
        }
    }
}
