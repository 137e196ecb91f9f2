//! `sockchat serve`: binds the doors, runs them around one hub, and shuts
//! them down cleanly, history last.
//!
//! The doors are a registry: each is bound into a [`Door`], and one loop
//! lists, spawns and tracks them all.

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{HistoryConfig, ServeConfig};

use crate::cluster::{ClusterConfig, ClusterLink};
use crate::door::irc::IrcDoor;
use crate::door::listener::SpareDescriptor;
use crate::door::tcp::TcpDoor;
use crate::door::tls::TlsDoor;
use crate::door::udp::UdpDoor;
use crate::door::web::{WebAccess, WebDoor};
use crate::door::{Door, DoorContext};
use crate::hub::Hub;
use crate::metrics::ReasonLabel;
use crate::session::Limits;
use crate::store::sqlite::SqliteStore;
use crate::tls::ServerTls;

/// How long shutdown waits for connections to say goodbye before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A server whose doors are bound but which accepts no one yet.
pub struct Server {
    hub: Hub,
    doors: Vec<Box<dyn Door>>,
    limits: Limits,
    /// The certificate every TLS listener serves, if any does.
    tls: Option<Arc<ServerTls>>,
    /// SIGHUPs, which reload the certificate.
    hangups: Option<Hangups>,
    /// The link to this node's cluster, if it is in one.
    cluster: Option<(ClusterLink, ClusterConfig)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let doors: Vec<_> = self.doors.iter().map(|door| door.name()).collect();
        f.debug_struct("Server").field("doors", &doors).finish()
    }
}

/// One bound listener, for the `listening DOOR ADDR` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// The door's name: `tcp`, `udp` or `web`.
    pub door: &'static str,
    /// The real address, port included (useful after binding port 0).
    pub addr: SocketAddr,
    /// The line printed for it, e.g. `listening tcp 127.0.0.1:8888`, or for
    /// the web door the page's URL: `listening web http://127.0.0.1:8080/`.
    pub line: String,
}

impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl Server {
    /// Binds every enabled door, then opens history.
    pub async fn bind(mut config: ServeConfig) -> anyhow::Result<Server> {
        let tls = match &config.certificate {
            Some(source) => Some(Arc::new(
                ServerTls::open(source.clone()).context("the TLS certificate")?,
            )),
            None => None,
        };
        let mut doors: Vec<Box<dyn Door>> = Vec::new();
        let tls_door = match (config.tls, &tls) {
            (Some(addr), Some(tls)) => Some(
                TlsDoor::bind(addr, tls.clone())
                    .with_context(|| format!("cannot listen on tls {addr}"))?,
            ),
            _ => None,
        };
        let tls_at = tls_door.as_ref().and_then(|door| door.local_addr());
        let irc_door = match config.irc {
            Some(addr) => {
                Some(IrcDoor::bind(addr).with_context(|| format!("cannot listen on irc {addr}"))?)
            }
            None => None,
        };
        let irc_at = irc_door.as_ref().and_then(|door| door.local_addr());
        if let Some(addr) = config.tcp {
            let door =
                TcpDoor::bind(addr).with_context(|| format!("cannot listen on tcp {addr}"))?;
            doors.push(Box::new(door.with_tls_at(tls_at).with_irc_at(irc_at)));
        }
        if let Some(addr) = config.udp {
            let door = UdpDoor::bind(addr)
                .await
                .with_context(|| format!("cannot listen on udp {addr}"))?;
            doors.push(Box::new(door));
        }
        if let Some(addr) = config.web {
            let access = WebAccess::new(config.web_hosts, config.web_origins);
            let door = WebDoor::bind(addr, access)
                .with_context(|| format!("cannot listen on web {addr}"))?;
            let web_tls = tls.clone().filter(|_| config.web_tls);
            doors.push(Box::new(door.with_tls(web_tls)));
        }
        if let Some(door) = tls_door {
            doors.push(Box::new(door));
        }
        if let Some(door) = irc_door {
            doors.push(Box::new(door.with_motd(config.motd.clone())));
        }
        if let (Some(addr), Some(tls)) = (config.irc_tls, &tls) {
            let door =
                IrcDoor::bind(addr).with_context(|| format!("cannot listen on ircs {addr}"))?;
            doors.push(Box::new(
                door.with_tls(tls.clone()).with_motd(config.motd.clone()),
            ));
        }
        // Installed now, before the listening lines: SIGHUP's default
        // action would end the server.
        let hangups = match &tls {
            Some(_) => Some(hangup_signal()?),
            None => None,
        };
        let store = match &config.history.db {
            Some(path) => {
                let mut store = SqliteStore::open(path, config.history.max_bytes)?;
                store.set_lookup_budget(config.history.lookup_budget);
                tracing::info!(path = %path.display(), "history kept in SQLite");
                Some(store)
            }
            None => None,
        };
        config.hub.max_clients = clients_within_descriptors(config.hub.max_clients);
        let hub = match store {
            Some(store) => Hub::with_store(config.hub, Box::new(store), config.history.retention)?,
            None => Hub::batching(config.hub),
        };
        let cluster = match config.cluster {
            Some(cluster) => Some((ClusterLink::join(&hub, &cluster).await?, cluster)),
            None => None,
        };
        Ok(Server {
            hub,
            doors,
            limits: config.limits,
            tls,
            hangups,
            cluster,
        })
    }

    /// Adds a door that needs no binding (the operator's console).
    pub fn add_door(&mut self, door: Box<dyn Door>) {
        self.doors.push(door);
    }

    /// The bound listeners, in the order bound.
    pub fn listening(&self) -> Vec<Listening> {
        let mut listening = Vec::new();
        for door in &self.doors {
            let Some(addr) = door.local_addr() else {
                continue;
            };
            for line in door.listening_lines() {
                listening.push(Listening {
                    door: door.name(),
                    addr,
                    line,
                });
            }
        }
        listening
    }

    /// The line naming this node and its cluster, if it is in one:
    /// `cluster node NAME nats://HOST:PORT[,...]`, printed before the
    /// listening lines.
    pub fn cluster_line(&self) -> Option<String> {
        let (_, config) = self.cluster.as_ref()?;
        Some(format!(
            "cluster node {} {}",
            config.node,
            config.urls.join(",")
        ))
    }

    /// The hub, for tests.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, tells every
    /// member the server is shutting down, waits (a while) for the doors
    /// to say goodbye, and commits what history still has queued before
    /// returning.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop_accepting = CancellationToken::new();
        let tracker = TaskTracker::new();
        let context = DoorContext {
            hub: self.hub.clone(),
            limits: Arc::new(self.limits),
            shutdown: stop_accepting.clone(),
            tracker: tracker.clone(),
            spare: Arc::new(SpareDescriptor::new()),
        };
        if let (Some(tls), Some(hangups)) = (self.tls, self.hangups) {
            let stop = stop_accepting.clone();
            let hub = self.hub.clone();
            tracker.spawn(reload_on_hangup(tls, hangups, hub, stop));
        }
        for door in self.doors {
            let span = tracing::info_span!("door", name = door.name());
            tracker.spawn(tracing::Instrument::instrument(
                door.serve(context.clone()),
                span,
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
        // What members said last reaches the cluster's log, and what the
        // log brought reaches the writer, before history closes.
        if let Some((link, _)) = self.cluster {
            link.leave().await;
        }
        // Everything accepted so far goes to disk before the process ends.
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || hub.close_history())
            .await
            .context("closing history")?;
        Ok(())
    }
}

/// SIGHUPs as they come.
#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signal() -> anyhow::Result<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).context("watching SIGHUP")
}

#[cfg(not(unix))]
fn hangup_signal() -> anyhow::Result<Hangups> {
    Ok(())
}

/// Reloads the certificate on each SIGHUP, until `stop`. Connections up
/// keep theirs; handshakes from then on get the new one. A certificate
/// that cannot be loaded is logged, and the old one kept.
async fn reload_on_hangup(
    tls: Arc<ServerTls>,
    mut hangups: Hangups,
    hub: Hub,
    stop: CancellationToken,
) {
    loop {
        #[cfg(unix)]
        let hangup = hangups.recv();
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hangup => if got.is_none() { return },
        }
        let reloads = &hub.metrics().tls_reloads;
        match tls.reload() {
            Ok(fingerprint) => {
                reloads.get_or_create(&ReasonLabel { reason: "ok" }).inc();
                tracing::info!(%fingerprint, "TLS certificate reloaded");
            }
            Err(error) => {
                reloads
                    .get_or_create(&ReasonLabel { reason: "kept_old" })
                    .inc();
                tracing::error!(
                    error = %format!("{error:#}"),
                    fingerprint = %tls.fingerprint(),
                    "cannot reload the TLS certificate; the old one is kept"
                );
            }
        }
    }
}

/// Descriptors the server keeps for itself (stdio, listeners, history's
/// files, the runtime's own, the spare for telling newcomers the server is
/// full) and for connections on their way out: never counted for clients.
pub const DESCRIPTOR_RESERVE: u64 = 32;

/// Raises the open-file limit as far as allowed, and caps `max_clients`
/// (0: no cap) so every client has a descriptor: past the limit, a
/// newcomer would get no word at all. Logs what it settled on.
fn clients_within_descriptors(max_clients: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit; --max-clients is not checked against it");
            return max_clients;
        }
    };
    let room = usize::try_from(limit.saturating_sub(DESCRIPTOR_RESERVE)).unwrap_or(usize::MAX);
    if max_clients == 0 || max_clients > room {
        tracing::warn!(
            asked = max_clients,
            capped = room,
            open_file_limit = limit,
            "--max-clients capped to what the open-file limit allows (raise it with ulimit -n, or LimitNOFILE= in the unit)"
        );
        room
    } else {
        tracing::info!(max_clients, open_file_limit = limit, "clients at most");
        max_clients
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
