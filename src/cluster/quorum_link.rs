//! How quorum connections are secured, as Kafka secures its controller listener: the
//! protocol `listener.security.protocol.map` gives the first of `controller.listener.names`
//! — TLS (the listener's keystore, truststore and `ssl.client.auth`, certificates mapped to
//! principals by `ssl.principal.mapping.rules`), SASL (`sasl.mechanism.controller.protocol`
//! with the listener's JAAS credentials; PLAIN users from its `user_<name>` entries, SCRAM
//! users from the metadata) — and, with an authorizer, only principals allowed CLUSTER_ACTION
//! on the cluster (super users, or by ACL) are let in. The Raft messages themselves stay
//! Weir's own (see `raft_net`).

use std::collections::BTreeMap;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::config::SaslMechanism;
use crate::config::BrokerConfig;
use crate::security::acl::{self, AclSet, Authorizer};
use crate::security::principal_mapping::PrincipalMapper;
use crate::security::{Principal, SecurityProtocol};

pub trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Io for T {}

/// A quorum connection: TCP, or TLS over it.
pub type Stream = Box<dyn Io>;

/// This node's side of quorum connections, as a caller and as a server.
pub struct QuorumLink {
    /// The controller listener's name and protocol.
    pub listener: String,
    pub protocol: SecurityProtocol,
    /// As a caller: TLS, and the SASL credentials presented.
    connector: Option<(tokio_rustls::TlsConnector, bool)>,
    pub sasl: Option<(SaslMechanism, String, String)>,
    /// As a server (a voter): TLS, the mechanisms and PLAIN users accepted, who is let in.
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub mechanisms: Vec<String>,
    pub plain_users: BTreeMap<String, String>,
    mapper: PrincipalMapper,
    authorizer: Authorizer,
}

impl std::fmt::Debug for QuorumLink {
    /// Names the listener and protocol; never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumLink").field("listener", &self.listener).field("protocol", &self.protocol).finish()
    }
}

impl Default for QuorumLink {
    /// Plaintext, unauthenticated, everybody let in: in-process tests.
    fn default() -> QuorumLink {
        QuorumLink {
            listener: "CONTROLLER".into(),
            protocol: SecurityProtocol::Plaintext,
            connector: None,
            sasl: None,
            acceptor: None,
            mechanisms: Vec::new(),
            plain_users: BTreeMap::new(),
            mapper: PrincipalMapper::default(),
            authorizer: Authorizer::default(),
        }
    }
}

impl QuorumLink {
    /// The link the configuration describes; `serves` when this node is a voter (it serves the
    /// controller listener). A node without `controller.listener.names` (a single broker)
    /// uses plaintext on loopback, where nobody else connects.
    pub fn from_config(config: &BrokerConfig, node_id: i32, serves: bool) -> Result<QuorumLink, String> {
        let Some(peer) = crate::client::peers::controller(config, node_id)? else { return Ok(QuorumLink::default()) };
        let listener = peer.listener.clone();
        let connector = match &peer.client.tls {
            Some(settings) => {
                let connector = crate::client::tls::connector(settings).map_err(|e| e.to_string())?;
                Some((connector, settings.verify_hostname))
            }
            None => None,
        };
        let acceptor = match serves && peer.protocol.uses_tls() {
            true => Some(tokio_rustls::TlsAcceptor::from(crate::security::tls::server_config(config, &listener)?)),
            false => None,
        };
        let mechanisms = config
            .listener_get(&listener, "sasl.enabled.mechanisms")
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let plain_users = match config.listener_jaas(&listener, "PLAIN").filter(|_| peer.protocol.uses_sasl()) {
            Some(text) => crate::security::jaas::JaasConfig::parse(&text)?.plain_users(),
            None => BTreeMap::new(),
        };
        Ok(QuorumLink {
            protocol: peer.protocol,
            connector,
            sasl: peer.client.sasl.clone(),
            acceptor,
            mechanisms,
            plain_users,
            mapper: PrincipalMapper::parse(&config.listener_get(&listener, "ssl.principal.mapping.rules"))?,
            authorizer: Authorizer::from_config(config)?,
            listener,
        })
    }

    /// The caller's side of TLS, when the listener uses it.
    pub async fn connect(&self, tcp: TcpStream, addr: &str) -> io::Result<Stream> {
        let Some((connector, _)) = &self.connector else { return Ok(Box::new(tcp)) };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
        let name = crate::client::tls::server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = connector.connect(name, tcp).await.map_err(|e| {
            let why = format!("TLS handshake with the controller listener at {addr} failed: {e}");
            io::Error::new(io::ErrorKind::PermissionDenied, why)
        })?;
        Ok(Box::new(tls))
    }

    /// The server's side of TLS: the stream and the principal of the caller's certificate.
    pub async fn accept(&self, tcp: TcpStream) -> Result<(Stream, Option<Principal>), String> {
        let Some(acceptor) = &self.acceptor else { return Ok((Box::new(tcp), None)) };
        let tls = acceptor.accept(tcp).await.map_err(|e| format!("TLS handshake failed: {e}"))?;
        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let principal = cert.map(|cert| self.mapper.principal(cert)).transpose()?;
        Ok((Box::new(tls), principal))
    }

    /// Whether `principal` may take part in the quorum: CLUSTER_ACTION on the cluster.
    pub fn authorize(&self, principal: &Principal, host: &str, acls: &AclSet) -> Result<(), String> {
        let (operation, cluster) = (acl::op::CLUSTER_ACTION, acl::resource::CLUSTER);
        match self.authorizer.authorize(acls, principal, host, operation, cluster, acl::CLUSTER_NAME) {
            true => Ok(()),
            false => Err(format!(
                "{principal} is not authorized on the controller listener (it needs CLUSTER_ACTION on the \
                 cluster, or to be in super.users)"
            )),
        }
    }
}
