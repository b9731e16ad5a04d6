//! A fault-injecting TCP forwarder for cluster tests: each `Link` listens on a loopback
//! port and forwards to one target; cutting it closes the connections it carries and refuses
//! new ones until it is healed. It runs on its own runtime, so a test thread that blocks does
//! not stall the traffic it carries.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxies {
    runtime: Option<tokio::runtime::Runtime>,
}

/// One forwarded path (e.g. broker 1 → broker 2's controller port).
pub struct Link {
    /// The address to give the side that connects.
    pub addr: String,
    cut: Arc<watch::Sender<bool>>,
}

impl Link {
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Proxies {
    pub fn new() -> Proxies {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("proxy runtime");
        Proxies { runtime: Some(runtime) }
    }

    /// A link on `listen` (`127.0.0.1:PORT`) to `target`.
    pub fn link(&self, listen: &str, target: &str) -> Link {
        let std_listener = std::net::TcpListener::bind(listen).expect("proxy port");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let (target, carried) = (target.to_string(), cut.clone());
        let runtime = self.runtime.as_ref().expect("running");
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let mut cut = carried.subscribe();
                if *cut.borrow() {
                    continue; // refused: dropped at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Link { addr: listen.to_string(), cut }
    }
}

impl Default for Proxies {
    fn default() -> Self {
        Proxies::new()
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
