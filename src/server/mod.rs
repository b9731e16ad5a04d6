//! The network layer: a tokio listener, one task per connection, and graceful shutdown.

mod connection;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{split_host_port, Broker};
use crate::config::BrokerConfig;

/// How long shutdown waits for connections to finish the request they are serving.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker serving on a socket. Dropping it does not stop it; call [`RunningBroker::shutdown`].
pub struct RunningBroker {
    pub addr: SocketAddr,
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
}

/// Opens the data directory, binds the listener and starts serving.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    let listen = config.listen_addr();
    let advertised_set = !config.get("advertised.listeners").is_empty();
    let max_frame = config.get_i64("socket.request.max.bytes").max(0) as usize;
    let idle = Duration::from_millis(config.get_i64("connections.max.idle.ms").max(1) as u64);
    let metrics_listen = config.get("metrics.listener");
    let limits = Arc::new(limits::Limits::from_config(&config));
    let broker = tokio::task::spawn_blocking(move || Broker::open(config)).await??;
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
    let listener = TcpListener::bind(&listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    if !advertised_set {
        let (host, _) = split_host_port(&listen);
        let host = if host == "0.0.0.0" || host == "::" { "127.0.0.1".to_string() } else { host };
        broker.set_advertised(host, i32::from(addr.port()));
    }
    tracing::info!(%addr, cluster_id = %broker.cluster_id, node_id = broker.node_id, "weir listening");
    let (shutdown, shutdown_rx) = watch::channel(false);
    let background = tokio::spawn(broker.clone().run_background());
    let group_timers = tokio::spawn(broker.groups.clone().run_timers(broker.clone()));
    let txn_timers = tokio::spawn(broker.txns.clone().run_timers(broker.clone()));
    let settings = connection::Settings { max_frame, idle, limits };
    let mut timers = vec![background, group_timers, txn_timers];
    timers.extend(metrics_task);
    let task = tokio::spawn(accept_loop(broker.clone(), listener, shutdown_rx, settings, timers));
    Ok(RunningBroker { addr, metrics_addr, broker, shutdown, task })
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    settings: connection::Settings,
    background: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match settings.limits.admit(peer.ip()) {
                    Ok(admitted) => {
                        let conn = connection::Connection::new(
                            broker.clone(), stream, peer, shutdown.clone(), settings.clone(),
                        );
                        connections.spawn(conn.run(admitted));
                    }
                    Err(limit) => {
                        if settings.limits.should_log_refusal(crate::broker::now_ms() / 1000) {
                            tracing::warn!(%peer, limit, "refusing connection: over the limit");
                        }
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    for task in background {
        task.abort();
    }
    tracing::info!(connections = connections.len(), "shutting down: draining connections");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.abort_all();
    }
    tokio::task::spawn_blocking(move || broker.shutdown()).await??;
    Ok(())
}
