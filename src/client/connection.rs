//! One connection to one broker: TCP or TLS, SASL, ApiVersions, then requests one at a time,
//! each at the newest version both sides speak.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{ClientConfig, SaslMechanism};
use super::error::{ClientError, Result};
use crate::security::scram::ScramClient;

/// Responses larger than this are refused (a fetch asks for far less).
const MAX_RESPONSE: usize = 512 << 20;

/// Versions this client builds requests for, where newer ones change the request's shape
/// (topic ids instead of names); others go up to what `kafka-protocol` knows.
fn version_cap(key: i16) -> i16 {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => 12,
        Ok(ApiKey::Fetch) => 12,
        Ok(ApiKey::Metadata) => 12,
        Ok(ApiKey::OffsetCommit) => 9,
        Ok(ApiKey::OffsetFetch) => 9,
        _ => i16::MAX,
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub struct Connection {
    stream: Box<dyn Io>,
    /// `HOST:PORT`, for messages.
    pub addr: String,
    correlation_id: i32,
    client_id: StrBytes,
    /// Each API the broker serves: its (min, max) version.
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: std::time::Duration,
}

impl Connection {
    /// Connects to `addr`, sets up TLS and SASL as configured, and learns the broker's versions.
    pub async fn open(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let unreachable = |detail: String| ClientError::Unreachable { what: addr.to_string(), detail };
        let tcp = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connection timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| unreachable(e.to_string()))?;
        let stream: Box<dyn Io> = match &config.tls {
            None => Box::new(tcp),
            Some(settings) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
                let handshake = super::tls::connector(settings)?.connect(super::tls::server_name(host)?, tcp);
                let tls = tokio::time::timeout(config.connect_timeout, handshake)
                    .await
                    .map_err(|_| unreachable("TLS handshake timed out".into()))?
                    .map_err(|e| ClientError::Tls { what: addr.to_string(), detail: e.to_string() })?;
                Box::new(tls)
            }
        };
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            correlation_id: 0,
            client_id: StrBytes::from_string(config.client_id.clone()),
            versions: HashMap::new(),
            request_timeout: config.request_timeout,
        };
        conn.negotiate_versions().await?;
        if let Some((mechanism, user, password)) = &config.sasl {
            conn.authenticate(mechanism, user, password).await?;
        }
        Ok(conn)
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: kafka_protocol::messages::ApiVersionsResponse =
            self.exchange(ApiKey::ApiVersions as i16, 3, &req).await?;
        ClientError::check(|| format!("ApiVersions to {}", self.addr), resp.error_code, None)?;
        self.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    async fn authenticate(&mut self, mechanism: &SaslMechanism, user: &str, password: &str) -> Result<()> {
        let name = match mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        };
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name));
        let resp = self.call(&handshake).await?;
        if resp.error_code != 0 {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            let msg = format!("the broker offers {}", offered.join(", "));
            return Err(ClientError::kafka(format!("SASL {name} at {}", self.addr), resp.error_code, Some(msg)));
        }
        match mechanism {
            SaslMechanism::Plain => {
                self.sasl_step(format!("\0{user}\0{password}").into_bytes()).await?;
            }
            SaslMechanism::Scram(m) => {
                let (mut scram, first) = ScramClient::start(*m, user, password);
                let challenge = self.sasl_step(first).await?;
                let last = scram.respond(&challenge).map_err(|e| ClientError::Authentication(e.to_string()))?;
                let server_final = self.sasl_step(last).await?;
                scram.verify(&server_final).map_err(|_| {
                    ClientError::Authentication(format!("{} could not prove it knows the credential", self.addr))
                })?;
            }
        }
        Ok(())
    }

    async fn sasl_step(&mut self, token: Vec<u8>) -> Result<Bytes> {
        let resp = self.call(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token))).await?;
        if resp.error_code != 0 {
            let msg = resp.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(ClientError::Authentication(format!("{}: {msg}", self.addr)));
        }
        Ok(resp.auth_bytes)
    }

    /// The version of `key` this connection uses: the newest both sides speak.
    pub fn version(&self, key: i16, ours: (i16, i16)) -> Option<i16> {
        let (min, max) = *self.versions.get(&key)?;
        let top = max.min(ours.1).min(version_cap(key));
        (top >= min.max(ours.0)).then_some(top)
    }

    /// Sends `req` at the negotiated version and reads its response.
    pub async fn call<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version(R::KEY, (R::VERSIONS.min, R::VERSIONS.max)).ok_or_else(|| {
            let name = ApiKey::try_from(R::KEY).map_or_else(|_| format!("API {}", R::KEY), |k| format!("{k:?}"));
            ClientError::Protocol(format!("{} does not support {name} at a version this client speaks", self.addr))
        })?;
        self.exchange(R::KEY, version, req).await
    }

    /// Sends `req` at `version` (which the caller knows the broker speaks) and reads its
    /// response.
    pub async fn call_at<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp> {
        self.exchange(key as i16, version, req).await
    }

    async fn exchange<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: i16,
        version: i16,
        req: &Req,
    ) -> Result<Resp> {
        let timeout = self.request_timeout;
        let addr = self.addr.clone();
        match tokio::time::timeout(timeout, self.exchange_inner(key, version, req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Unreachable { what: addr, detail: format!("no answer within {timeout:?}") }),
        }
    }

    async fn exchange_inner<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: i16,
        version: i16,
        req: &Req,
    ) -> Result<Resp> {
        let io = |e: std::io::Error| ClientError::Unreachable { what: self.addr.clone(), detail: e.to_string() };
        let api = ApiKey::try_from(key).map_err(|_| ClientError::Protocol(format!("unknown API key {key}")))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        body.extend_from_slice(&[0; 4]);
        let encoding = |e: anyhow::Error| ClientError::Protocol(format!("cannot encode {api:?} v{version}: {e}"));
        header.encode(&mut body, api.request_header_version(version)).map_err(encoding)?;
        req.encode(&mut body, version).map_err(encoding)?;
        let len = (body.len() - 4) as u32;
        body[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&body).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let len = self.stream.read_u32().await.map_err(io)? as usize;
        if len > MAX_RESPONSE {
            return Err(ClientError::Protocol(format!("{}: response of {len} bytes", self.addr)));
        }
        let mut frame = BytesMut::zeroed(len);
        self.stream.read_exact(&mut frame).await.map_err(io)?;
        let mut frame = frame.freeze();
        let bad =
            |e: anyhow::Error| ClientError::Protocol(format!("{}: bad {api:?} v{version} response: {e}", self.addr));
        let header = ResponseHeader::decode(&mut frame, Resp::header_version(version)).map_err(bad)?;
        if header.correlation_id != self.correlation_id {
            return Err(ClientError::Protocol(format!("{}: response to another request", self.addr)));
        }
        Resp::decode(&mut frame, version).map_err(bad)
    }
}
