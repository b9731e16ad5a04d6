//! Connections to other brokers, kept per destination and reused: every broker-to-broker call
//! (transaction markers, KIP-890 verification, share-state RPCs, dead letters) goes through
//! one pool, with the inter-broker listener's TLS and SASL settings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::config::ClientConfig;
use super::connection::Connection;
use super::error::{ClientError, Result};

/// Idle connections kept per destination.
const MAX_IDLE: usize = 4;
/// An idle connection older than this is closed rather than reused (brokers close idle
/// connections after `connections.max.idle.ms`, ten minutes by default).
const IDLE_FOR: Duration = Duration::from_secs(60);

pub struct Pool {
    config: ClientConfig,
    idle: parking_lot::Mutex<HashMap<String, Vec<(Connection, Instant)>>>,
}

impl Pool {
    pub fn new(config: ClientConfig) -> Pool {
        Pool { config, idle: Default::default() }
    }

    /// A connection of its own to `addr` (a replica fetcher's), authenticated as configured.
    pub async fn open(&self, addr: &str) -> Result<Connection> {
        Connection::open(addr, &self.config).await
    }

    /// Sends `req` at `version` to the broker at `addr` and reads its response, on an idle
    /// connection to it when there is one, all within `timeout`. A reused connection that
    /// turns out closed is replaced once.
    pub async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &self,
        addr: &str,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let exchange = async {
            if let Some(mut conn) = self.take(addr) {
                match conn.call_at(key, version, req).await {
                    Ok(resp) => {
                        self.give_back(addr, conn);
                        return Ok(resp);
                    }
                    Err(ClientError::Unreachable { .. }) => {} // closed while idle: once more on a new one
                    Err(e) => return Err(e),
                }
            }
            let mut conn = self.open(addr).await?;
            let resp = conn.call_at(key, version, req).await?;
            self.give_back(addr, conn);
            Ok(resp)
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| {
            Err(ClientError::Unreachable { what: addr.to_string(), detail: format!("no answer within {timeout:?}") })
        })
    }

    fn take(&self, addr: &str) -> Option<Connection> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(addr)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < IDLE_FOR {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, addr: &str, conn: Connection) {
        let mut idle = self.idle.lock();
        let list = idle.entry(addr.to_string()).or_default();
        list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        if list.len() < MAX_IDLE {
            list.push((conn, Instant::now()));
        }
    }
}
