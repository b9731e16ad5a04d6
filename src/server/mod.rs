//! The network layer: a tokio listener, one task per connection, and graceful shutdown.

mod connection;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::security::sasl::ListenerInfo;
use crate::server::limits::Admitted;

/// How long shutdown waits for connections to finish the request they are serving.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker serving on a socket. Dropping it does not stop it; call [`RunningBroker::shutdown`].
pub struct RunningBroker {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's name and bound address, in `listeners` order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Where `GET /metrics` is served, when `metrics.listener` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningBroker {
    /// Stops accepting, lets connections finish their current request, flushes and closes the
    /// logs and writes the clean-shutdown marker.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await?
    }

    /// Resolves when the broker has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// The bound address of the listener called `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, a)| *a)
    }
}

/// A bound listener with what its connections need.
struct Bound {
    listener: TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Binds every configured listener (building TLS for those that need it).
async fn bind_listeners(config: &BrokerConfig, broker: &Broker) -> anyhow::Result<Vec<Bound>> {
    let specs = crate::security::listeners::from_config(config).map_err(anyhow::Error::msg)?;
    let mut bound = Vec::new();
    for spec in specs {
        let tls = if spec.protocol.uses_tls() {
            let server = crate::security::tls::server_config(config, &spec.name).map_err(anyhow::Error::msg)?;
            Some(tokio_rustls::TlsAcceptor::from(server))
        } else {
            None
        };
        let listener = TcpListener::bind(&spec.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} ({}): {e}", spec.bind, spec.name))?;
        let addr = listener.local_addr()?;
        if spec.advertised.is_none() {
            broker.set_advertised_port(&spec.name, i32::from(addr.port()));
        }
        tracing::info!(%addr, listener = %spec.name, protocol = ?spec.protocol, "weir listening");
        let info = Arc::new(ListenerInfo { name: spec.name, protocol: spec.protocol });
        bound.push(Bound { listener, info, tls });
    }
    Ok(bound)
}

/// Opens the data directory, binds the listeners and starts serving.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    let max_frame = config.get_i64("socket.request.max.bytes").max(0) as usize;
    let idle = Duration::from_millis(config.get_i64("connections.max.idle.ms").max(1) as u64);
    let metrics_listen = config.get("metrics.listener");
    let limits = Arc::new(limits::Limits::from_config(&config));
    let broker_config = config.clone();
    let broker = Broker::open(broker_config).await?;
    let (metrics_addr, metrics_task) = if metrics_listen.is_empty() {
        (None, None)
    } else {
        let l = TcpListener::bind(&metrics_listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {metrics_listen}: {e}"))?;
        let addr = l.local_addr()?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        (Some(addr), Some(tokio::spawn(crate::metrics::serve(l, broker.clone()))))
    };
    let bound = bind_listeners(&config, &broker).await?;
    broker.register().await?;
    let listeners: Vec<(String, SocketAddr)> =
        bound.iter().map(|b| Ok((b.info.name.clone(), b.listener.local_addr()?))).collect::<std::io::Result<_>>()?;
    let addr = listeners[0].1;
    tracing::info!(cluster_id = %broker.cluster_id, node_id = broker.node_id, "weir started");
    let (shutdown, shutdown_rx) = watch::channel(false);
    let background = tokio::spawn(broker.clone().run_background());
    let group_timers = tokio::spawn(broker.groups.clone().run_timers(broker.clone()));
    let txn_timers = tokio::spawn(broker.txns.clone().run_timers(broker.clone()));
    let share_timers = tokio::spawn(broker.shares.clone().run_timers(broker.clone()));
    let metadata = tokio::spawn(broker.clone().follow_metadata());
    let heartbeats = tokio::spawn(broker.clone().run_heartbeats());
    let fencing = tokio::spawn(broker.controller().clone().run_fencing());
    let isr = tokio::spawn(broker.clone().run_isr_shrinking());
    let storage = tokio::spawn(crate::replica::storage::run(broker.clone()));
    let rebalance = tokio::spawn(broker.controller().clone().run_leader_rebalance());
    let settings = connection::Settings { max_frame, idle, limits };
    let mut timers = vec![
        background,
        group_timers,
        txn_timers,
        share_timers,
        metadata,
        heartbeats,
        fencing,
        isr,
        storage,
        rebalance,
    ];
    timers.extend(metrics_task);
    let task = tokio::spawn(accept_loop(broker.clone(), bound, shutdown_rx, settings, timers));
    Ok(RunningBroker { addr, listeners, metrics_addr, broker, shutdown, task })
}

/// An accepted socket and the listener it came in on.
type Accepted = (TcpStream, SocketAddr, Arc<ListenerInfo>, Option<tokio_rustls::TlsAcceptor>);

/// Accepts on one listener, handing sockets to the main loop.
async fn accept_on(bound: Bound, tx: tokio::sync::mpsc::Sender<Accepted>) {
    loop {
        match bound.listener.accept().await {
            Ok((stream, peer)) => {
                if tx.send((stream, peer, bound.info.clone(), bound.tls.clone())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, listener = %bound.info.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Admits a connection under the connection limits, as the broker config currently sets them.
fn admit(broker: &Broker, settings: &connection::Settings, peer: SocketAddr) -> Result<Admitted, &'static str> {
    settings.limits.follow(broker.config_generation(), || broker.config());
    settings.limits.admit(peer.ip())
}

async fn accept_loop(
    broker: Arc<Broker>,
    bound: Vec<Bound>,
    mut shutdown: watch::Receiver<bool>,
    settings: connection::Settings,
    background: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let (tx, mut accepted) = tokio::sync::mpsc::channel::<Accepted>(64);
    let acceptors: Vec<_> = bound.into_iter().map(|b| tokio::spawn(accept_on(b, tx.clone()))).collect();
    drop(tx);
    // connections close once leaderships have moved away, not at the signal
    let (drain, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut handover: Option<tokio::task::JoinHandle<()>> = None;
    let controller = broker.controller().clone();
    let quorum_failure = controller.quorum.failure();
    tokio::pin!(quorum_failure);
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            Some((stream, peer, listener, tls)) = accepted.recv() => match admit(&broker, &settings, peer) {
                Ok(admitted) => {
                    let conn = connection::Connection::new(
                        broker.clone(), peer, listener, drain_rx.clone(), settings.clone(),
                    );
                    connections.spawn(conn.run(stream, tls, admitted));
                }
                Err(limit) => {
                    if settings.limits.should_log_refusal(crate::broker::now_ms() / 1000) {
                        tracing::warn!(%peer, limit, "refusing connection: over the limit");
                    }
                    drop(stream);
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            reason = &mut quorum_failure, if handover.is_none() => {
                tracing::error!(%reason, "the metadata quorum stopped on this node; stopping the broker");
                failed = Some(reason);
                let broker = broker.clone();
                handover = Some(tokio::spawn(async move { broker.controlled_shutdown().await }));
            }
            _ = shutdown.changed(), if handover.is_none() => {
                // Kafka's order: leaderships move while this broker still serves, so clients
                // are sent to the new leaders (NOT_LEADER_OR_FOLLOWER) instead of finding it
                // gone and backing off
                let broker = broker.clone();
                handover = Some(tokio::spawn(async move { broker.controlled_shutdown().await }));
            }
            _ = async { if let Some(h) = handover.as_mut() { let _ = h.await; } }, if handover.is_some() => break,
        }
    }
    for acceptor in acceptors {
        acceptor.abort();
    }
    for task in background {
        task.abort();
    }
    let _ = drain.send(true);
    tracing::info!(connections = connections.len(), "shutting down: draining connections");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.abort_all();
    }
    broker.stop_quorum().await;
    tokio::task::spawn_blocking(move || broker.shutdown()).await??;
    match failed {
        Some(reason) => Err(anyhow::anyhow!("the metadata quorum stopped: {reason}")),
        None => Ok(()),
    }
}
