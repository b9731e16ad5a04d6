//! A Kafka-protocol client for talking to other brokers (a follower fetching from its
//! leader): one connection, one request at a time, encoded with the same `kafka-protocol`
//! codecs the broker serves with.

use std::io;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Responses larger than this are refused (a fetch asks for far less).
const MAX_RESPONSE: usize = 256 << 20;

pub struct BrokerClient {
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
}

impl BrokerClient {
    pub async fn connect(addr: &str, client_id: String) -> io::Result<BrokerClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(BrokerClient { stream, correlation_id: 0, client_id: StrBytes::from_string(client_id) })
    }

    /// Connects to `addr`, sends one request and reads its response, all within `timeout`.
    pub async fn call_once<Req: Encodable, Resp: Decodable + HeaderVersion>(
        addr: &str,
        client_id: String,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: std::time::Duration,
    ) -> io::Result<Resp> {
        let exchange = async { BrokerClient::connect(addr, client_id).await?.call(key, version, req).await };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
    }

    /// Sends one request and reads its response.
    pub async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> io::Result<Resp> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        body.extend_from_slice(&[0; 4]);
        header.encode(&mut body, key.request_header_version(version)).map_err(io::Error::other)?;
        req.encode(&mut body, version).map_err(io::Error::other)?;
        let len = (body.len() - 4) as u32;
        body[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&body).await?;
        let len = self.stream.read_u32().await? as usize;
        if len > MAX_RESPONSE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("response of {len} bytes")));
        }
        let mut frame = BytesMut::zeroed(len);
        self.stream.read_exact(&mut frame).await?;
        let mut frame = frame.freeze();
        let header = ResponseHeader::decode(&mut frame, Resp::header_version(version)).map_err(io::Error::other)?;
        if header.correlation_id != self.correlation_id {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response to another request"));
        }
        Resp::decode(&mut frame, version).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}
