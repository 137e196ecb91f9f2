//! `sockchat serve`: binds the doors, runs them around one hub, and shuts
//! them down cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::door::{tcp, udp, web, ConnectionLimits};
use crate::hub::{Hub, HubConfig};
use crate::store::sqlite::SqliteStore;
use crate::store::Retention;

/// How long shutdown waits for connections to say goodbye before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how history is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The SQLite file; `None` keeps no history on disk.
    pub db: Option<PathBuf>,
    /// Cap on the file's size in bytes; 0 is none.
    pub max_bytes: u64,
    pub retention: Retention,
}

/// Everything `sockchat serve` needs, after flags and config file are merged.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    pub history: HistoryConfig,
    /// Where the TCP door listens; `None` turns it off.
    pub tcp: Option<SocketAddr>,
    /// Where the UDP door listens; `None` turns it off.
    pub udp: Option<SocketAddr>,
    /// Where the web door (page and WebSocket) listens; `None` turns it off.
    pub web: Option<SocketAddr>,
    /// Origins besides the page's own whose pages may open WebSockets.
    pub web_origins: Vec<String>,
    pub hub: HubConfig,
    pub limits: ConnectionLimits,
}

/// A server whose sockets are bound but which accepts no one yet.
#[derive(Debug)]
pub struct Server {
    hub: Hub,
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
    web: Option<TcpListener>,
    web_origins: Vec<String>,
    limits: ConnectionLimits,
}

/// One bound listener, for the `listening DOOR ADDR` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The door's name: `tcp`, `udp` or `web`.
    pub door: &'static str,
    /// The real address, port included (useful after binding port 0).
    pub addr: SocketAddr,
}

impl std::fmt::Display for Listening {
    /// `listening tcp 127.0.0.1:8888`, or for the web door the page's URL:
    /// `listening web http://127.0.0.1:8080/`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.door {
            "web" => write!(f, "listening web http://{}/", self.addr),
            door => write!(f, "listening {door} {}", self.addr),
        }
    }
}

/// Connections the kernel may hold for `accept`. Past it, new connections'
/// SYNs are dropped and retried a second or more later, so a crowd arriving
/// at once (everyone reconnecting after a restart) needs a deep queue; the
/// kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds every enabled door.
    pub async fn bind(config: ServeConfig) -> anyhow::Result<Server> {
        let tcp = match config.tcp {
            Some(addr) => {
                Some(listen(addr).with_context(|| format!("cannot listen on tcp {addr}"))?)
            }
            None => None,
        };
        let udp = match config.udp {
            Some(addr) => Some(
                UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on udp {addr}"))?,
            ),
            None => None,
        };
        let web = match config.web {
            Some(addr) => {
                Some(listen(addr).with_context(|| format!("cannot listen on web {addr}"))?)
            }
            None => None,
        };
        let hub = match &config.history.db {
            Some(path) => {
                let store = SqliteStore::open(path, config.history.max_bytes)?;
                tracing::info!(path = %path.display(), "history kept in SQLite");
                Hub::with_store(config.hub, Box::new(store), config.history.retention)?
            }
            None => Hub::new(config.hub),
        };
        Ok(Server {
            hub,
            tcp,
            udp,
            web,
            web_origins: config.web_origins,
            limits: config.limits,
        })
    }

    /// The bound listeners, in a fixed order.
    pub fn listening(&self) -> Vec<Listening> {
        let tcp = self
            .tcp
            .iter()
            .filter_map(|listener| listener.local_addr().ok());
        let udp = self
            .udp
            .iter()
            .filter_map(|socket| socket.local_addr().ok());
        let web = self
            .web
            .iter()
            .filter_map(|listener| listener.local_addr().ok());
        tcp.map(|addr| Listening { door: "tcp", addr })
            .chain(udp.map(|addr| Listening { door: "udp", addr }))
            .chain(web.map(|addr| Listening { door: "web", addr }))
            .collect()
    }

    /// The hub, for the console and for tests.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves, then tells every client the server
    /// is shutting down, closes their connections and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop_accepting = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let Some(listener) = self.tcp {
            tracker.spawn(tcp::serve(
                listener,
                self.hub.clone(),
                self.limits.clone(),
                stop_accepting.clone(),
                tracker.clone(),
            ));
        }
        if let Some(socket) = self.udp {
            tracker.spawn(udp::serve(
                socket,
                self.hub.clone(),
                self.limits.clone(),
                stop_accepting.clone(),
                tracker.clone(),
            ));
        }
        if let Some(listener) = self.web {
            tracker.spawn(web::serve(
                listener,
                self.hub.clone(),
                self.limits.clone(),
                self.web_origins,
                stop_accepting.clone(),
                tracker.clone(),
            ));
        }
        shutdown.await;
        tracing::info!("shutting down");
        stop_accepting.cancel();
        self.hub.shutdown();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        Ok(())
    }
}

/// Watches for Ctrl-C and SIGTERM; the returned future resolves on either.
///
/// The handlers are installed before this returns, so call it before
/// announcing the listeners: a signal sent right after the `listening`
/// lines then stops the server cleanly instead of killing it.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
