//! One client connection: read a size-prefixed frame, serve it, write the response, repeat.
//!
//! Requests of one connection are served one at a time, in arrival order, as Kafka does; the
//! socket buffers whatever the client pipelines meanwhile, and responses go out in request
//! order by construction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::handlers;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `socket.request.max.bytes`: larger size prefixes close the connection unread.
    pub max_frame: usize,
    /// `connections.max.idle.ms`.
    pub idle: Duration,
}

pub struct Connection {
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    settings: Settings,
}

/// Why a connection ended.
enum Closed {
    Eof,
    Idle,
    Shutdown,
    Error(String),
}

impl Connection {
    pub fn new(
        broker: Arc<Broker>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        settings: Settings,
    ) -> Connection {
        Connection { broker, stream, peer, shutdown, settings }
    }

    pub async fn run(self) {
        let peer = self.peer;
        match self.serve().await {
            Closed::Eof | Closed::Shutdown => tracing::debug!(%peer, "connection closed"),
            Closed::Idle => tracing::debug!(%peer, "closing idle connection"),
            Closed::Error(e) => tracing::warn!(%peer, error = %e, "closing connection"),
        }
    }

    async fn serve(mut self) -> Closed {
        let _ = self.stream.set_nodelay(true);
        let (rd, mut wr) = self.stream.into_split();
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let mut size = [0u8; 4];
            let read = tokio::select! {
                r = tokio::time::timeout(self.settings.idle, rd.read_exact(&mut size)) => r,
                _ = self.shutdown.changed() => return Closed::Shutdown,
            };
            match read {
                Err(_) => return Closed::Idle,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Closed::Eof,
                Ok(Err(e)) => return Closed::Error(e.to_string()),
                Ok(Ok(_)) => {}
            }
            let size = i32::from_be_bytes(size);
            if size < 0 || size as usize > self.settings.max_frame {
                return Closed::Error(format!(
                    "request size {size} is outside 0..={} (socket.request.max.bytes)",
                    self.settings.max_frame
                ));
            }
            let mut frame = BytesMut::zeroed(size as usize);
            match tokio::time::timeout(self.settings.idle, rd.read_exact(&mut frame)).await {
                Err(_) => return Closed::Error("request frame stalled".into()),
                Ok(Err(e)) => return Closed::Error(format!("reading request frame: {e}")),
                Ok(Ok(_)) => {}
            }
            match handlers::handle_frame(&self.broker, self.peer, frame.freeze()).await {
                Ok(Some(response)) => {
                    if let Err(e) = wr.write_all(&response).await {
                        return Closed::Error(format!("writing response: {e}"));
                    }
                }
                Ok(None) => {}
                Err(e) => return Closed::Error(e.to_string()),
            }
        }
    }
}
