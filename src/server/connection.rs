//! One client connection: read a size-prefixed frame, serve it, write the response, repeat.
//!
//! Requests of one connection are served one at a time, in arrival order, as Kafka does; the
//! socket buffers whatever the client pipelines meanwhile, and responses go out in request
//! order by construction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::handlers;
use crate::handlers::response::{Part, Response};
use crate::handlers::Handled;
use crate::log::segment::Slice;
use crate::security::sasl::{ListenerInfo, Session};
use crate::server::limits::{Admitted, Limits};
use tokio::sync::OwnedSemaphorePermit;

#[derive(Clone)]
pub struct Settings {
    /// `socket.request.max.bytes`: larger size prefixes close the connection unread.
    pub max_frame: usize,
    /// `connections.max.idle.ms`.
    pub idle: Duration,
    /// Connection counts and `queued.max.request.bytes`.
    pub limits: Arc<Limits>,
}

pub struct Connection {
    broker: Arc<Broker>,
    peer: SocketAddr,
    listener: Arc<ListenerInfo>,
    shutdown: watch::Receiver<bool>,
    settings: Settings,
}

/// Ends the share sessions a connection opened when it closes, however it closes: their
/// members' acquired records are released (Kafka ties share sessions to connections).
struct ShareSessionsOf {
    broker: Arc<Broker>,
    connection: u64,
}

impl Drop for ShareSessionsOf {
    fn drop(&mut self) {
        self.broker.shares.connection_closed(&self.broker, self.connection);
    }
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
        peer: SocketAddr,
        listener: Arc<ListenerInfo>,
        shutdown: watch::Receiver<bool>,
        settings: Settings,
    ) -> Connection {
        Connection { broker, peer, listener, shutdown, settings }
    }

    /// Serves the connection (after a TLS handshake when `tls` is given); `admitted` holds
    /// its place under the connection limits.
    pub async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, admitted: Admitted) {
        let _admitted = admitted;
        let peer = self.peer;
        let broker = self.broker.clone();
        broker.metrics.connections_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        broker.metrics.connections_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let closed = match tls {
            None => {
                let session = Arc::new(Session::new(self.listener.clone(), peer, None));
                let (rd, wr) = stream.into_split();
                self.serve(rd, wr, session).await
            }
            Some(acceptor) => match tokio::time::timeout(self.settings.idle, acceptor.accept(stream)).await {
                Err(_) => Closed::Error("TLS handshake timed out".into()),
                Ok(Err(e)) => Closed::Error(format!("TLS handshake failed: {e}")),
                Ok(Ok(tls)) => {
                    let cert = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first());
                    let mapped = cert.map(|c| broker.security.certificate_principal(&self.listener.name, c));
                    match mapped.transpose() {
                        Err(why) => Closed::Error(format!("client certificate refused: {why}")),
                        Ok(principal) => {
                            let session = Arc::new(Session::new(self.listener.clone(), peer, principal));
                            let (rd, wr) = tokio::io::split(tls);
                            self.serve(rd, TlsWriter(wr), session).await
                        }
                    }
                }
            },
        };
        broker.metrics.connections_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match closed {
            Closed::Eof | Closed::Shutdown => tracing::debug!(%peer, "connection closed"),
            Closed::Idle => tracing::debug!(%peer, "closing idle connection"),
            Closed::Error(e) => tracing::warn!(%peer, error = %e, "closing connection"),
        }
    }

    async fn serve<R, W>(mut self, mut rd: R, mut wr: W, session: Arc<Session>) -> Closed
    where
        R: AsyncRead + Unpin,
        W: ResponseSink,
    {
        let _share_sessions = ShareSessionsOf { broker: self.broker.clone(), connection: session.id };
        // One input buffer for the connection's life: frames are split off it, and once a
        // request's frame is dropped its space is reused, so large produce requests do not
        // cost a fresh allocation (and page faults) each.
        let mut input = BytesMut::new();
        // Responses not yet written, in request order. Requests are served one at a time and
        // in order, but a produce waiting for its fsync does not stop the next request from
        // being read: its fsync can then cover the next one's appends too (group commit).
        let mut queue: VecDeque<Queued> = VecDeque::new();
        // The request being served. It is polled beside the queue's front, so a long-polling
        // fetch never holds up an earlier produce's fsync (and the lock that fsync holds).
        let mut current: Option<Serving> = None;
        loop {
            tokio::select! {
                biased;
                done = take_front(&mut queue), if !queue.is_empty() => match done {
                    Ok(Some(response)) => {
                        if let Err(e) = write_response(&mut wr, response).await {
                            return Closed::Error(format!("writing response: {e}"));
                        }
                        if session.should_close() && queue.is_empty() && current.is_none() {
                            let _ = wr.flush().await;
                            return Closed::Error("closed after a failed authentication".into());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Closed::Error(e),
                },
                handled = async { current.as_mut().expect("guarded by is_some").await }, if current.is_some() => {
                    current = None;
                    match handled {
                        Ok(Handled::Now(response)) => queue.push_back(Queued::Ready(response)),
                        Ok(Handled::Later(pending)) => queue.push_back(Queued::Waiting(pending)),
                        Err(e) => return Closed::Error(e.to_string()),
                    }
                }
                frame = async {
                    // A client over its quota is not read until its throttle time is over.
                    if let Some(until) = session.muted_until() {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    next_frame(&mut rd, &mut input, &self.settings).await
                },
                    if current.is_none() && queue.len() < MAX_PIPELINED && !session.should_close() =>
                {
                    let frame = match frame {
                        Ok(f) => f,
                        Err(closed) => return closed,
                    };
                    let (broker, session) = (self.broker.clone(), session.clone());
                    let (frame, reserved) = frame;
                    current = Some(Box::pin(async move {
                        let handled = handlers::handle_frame(&broker, &session, frame).await;
                        drop(reserved); // the frame's bytes are released with the request
                        handled
                    }));
                }
                _ = self.shutdown.changed() => return Closed::Shutdown,
            }
        }
    }
}

/// A request being served.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Handled, handlers::FrameError>> + Send>>;

/// Requests whose responses may be outstanding on one connection.
const MAX_PIPELINED: usize = 32;

/// A response in the connection's queue. Only the oldest waiting one is driven: a later
/// produce's fsync is usually covered by the one before it, which flushed everything
/// appended by then.
enum Queued {
    Ready(Option<Response>),
    Waiting(handlers::Pending),
}

/// Waits for the oldest queued response and removes it from the queue. Cancel-safe: an
/// unfinished response stays at the front.
async fn take_front(queue: &mut VecDeque<Queued>) -> Result<Option<Response>, String> {
    let result = match queue.front_mut() {
        None => return Ok(None),
        Some(Queued::Ready(r)) => Ok(r.take()),
        Some(Queued::Waiting(pending)) => pending.as_mut().await.map_err(|e| e.to_string()),
    };
    queue.pop_front();
    result
}

/// Reads the next request frame (without its size prefix), with its reservation under
/// `queued.max.request.bytes`. Cancel-safe: bytes read so far stay in `input`.
async fn next_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    input: &mut BytesMut,
    settings: &Settings,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Closed> {
    match tokio::time::timeout(settings.idle, fill(rd, input, 4)).await {
        Err(_) => return Err(Closed::Idle),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Closed::Eof),
        Ok(Err(e)) => return Err(Closed::Error(e.to_string())),
        Ok(Ok(())) => {}
    }
    let size = i32::from_be_bytes([input[0], input[1], input[2], input[3]]);
    if size < 0 || size as usize > settings.max_frame {
        return Err(Closed::Error(format!(
            "request size {size} is outside 0..={} (socket.request.max.bytes)",
            settings.max_frame
        )));
    }
    let total = 4 + size as usize;
    let reserved = settings.limits.reserve_request(total).await;
    match tokio::time::timeout(settings.idle, fill(rd, input, total)).await {
        Err(_) => return Err(Closed::Error("request frame stalled".into())),
        Ok(Err(e)) => return Err(Closed::Error(format!("reading request frame: {e}"))),
        Ok(Ok(())) => {}
    }
    let mut frame = input.split_to(total);
    let _ = frame.split_to(4);
    Ok((frame.freeze(), reserved))
}

/// Reads until `buf` holds at least `want` bytes (reading ahead whatever else has arrived).
async fn fill<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut, want: usize) -> std::io::Result<()> {
    if buf.len() < want {
        buf.reserve((want - buf.len()).max(READ_CHUNK));
    }
    while buf.len() < want {
        if rd.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Read-ahead granularity of the input buffer.
const READ_CHUNK: usize = 8 * 1024;

/// Where responses are written: a plain socket (file parts go out with `sendfile`) or a TLS
/// stream (file parts are read and encrypted).
pub trait ResponseSink: AsyncWrite + Unpin + Send {
    fn send_file(&mut self, slice: &Slice) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

impl ResponseSink for OwnedWriteHalf {
    async fn send_file(&mut self, slice: &Slice) -> std::io::Result<()> {
        send_file(self.as_ref(), slice).await
    }
}

/// The write half of a TLS connection.
pub struct TlsWriter(tokio::io::WriteHalf<TlsStream<TcpStream>>);

impl AsyncWrite for TlsWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl ResponseSink for TlsWriter {
    async fn send_file(&mut self, slice: &Slice) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Encryption needs the bytes in user space: read the range in chunks.
        let mut buf = vec![0u8; TLS_FILE_CHUNK.min(slice.len)];
        let mut done = 0usize;
        while done < slice.len {
            let n = (slice.len - done).min(buf.len());
            slice.file.read_exact_at(&mut buf[..n], slice.position + done as u64)?;
            self.write_all(&buf[..n]).await?;
            done += n;
        }
        Ok(())
    }
}

/// How much of a segment file is read at a time for a TLS connection.
const TLS_FILE_CHUNK: usize = 256 * 1024;

/// Writes a whole response and flushes it: a TLS stream may hold the tail of the last record
/// back until flushed, and the client waits for the whole response.
async fn write_response<W: ResponseSink>(wr: &mut W, response: Response) -> std::io::Result<()> {
    match response {
        Response::Frame(bytes) => wr.write_all(&bytes).await?,
        Response::Spliced(parts) => {
            for part in parts {
                match part {
                    Part::Bytes(bytes) => wr.write_all(&bytes).await?,
                    Part::File(slice) => wr.send_file(&slice).await?,
                }
            }
        }
    }
    wr.flush().await
}

/// Sends a file range with `sendfile(2)`: page cache to socket, no copy through user space.
async fn send_file(stream: &TcpStream, slice: &Slice) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let end = slice.position + slice.len as u64;
    let mut offset = slice.position as libc::off_t;
    while (offset as u64) < end {
        stream.writable().await?;
        let remaining = (end - offset as u64) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call and `offset`
            // is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), slice.file.as_raw_fd(), &mut offset, remaining) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file ended early")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
