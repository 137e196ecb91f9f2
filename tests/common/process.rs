//! The built `sockchat` binary as a child process, for end-to-end tests.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

pub const BINARY: &str = env!("CARGO_BIN_EXE_sockchat");

/// Where the binary looks for the user's config file in tests: nowhere,
/// so a developer's own ~/.config/sockchat cannot change what is tested.
pub const NO_USER_CONFIG: &str = "/nonexistent/sockchat-test-config";

/// A `sockchat serve` process, killed if the test fails half-way.
pub struct ServerProcess {
    pub child: Child,
    /// Holds the history database unless the test gave its own.
    data: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub udp: std::net::SocketAddr,
    pub web: std::net::SocketAddr,
    /// The TLS door and its certificate's fingerprint, unless `--tls off`.
    pub tls: Option<(std::net::SocketAddr, String)>,
    /// The IRC door, unless `--irc off`.
    pub irc: Option<std::net::SocketAddr>,
    /// IRC inside TLS and its fingerprint, unless `--irc-tls off`.
    pub ircs: Option<(std::net::SocketAddr, String)>,
    /// The web door's HTTPS line's fingerprint, unless TLS is off there.
    pub https_fingerprint: Option<String>,
    /// The server's log, line by line.
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ServerProcess {
    /// Starts `sockchat serve ARGS --udp 127.0.0.1:0 --web 127.0.0.1:0`,
    /// with `--tcp`, `--tls`, `--irc` and `--irc-tls` on port 0 too unless
    /// ARGS name them (and a database of its own unless ARGS name one),
    /// and reads its `listening` lines.
    pub async fn start(args: &[&str]) -> ServerProcess {
        Self::start_with_fd_limit(args, None).await
    }

    /// Like [`ServerProcess::start`], with the open-file limit (soft and
    /// hard) set to `fd_limit` if given.
    pub async fn start_with_fd_limit(args: &[&str], fd_limit: Option<u64>) -> ServerProcess {
        let data = tempfile::tempdir().unwrap();
        let own_db = data.path().join("history.db");
        let db_args: Vec<&str> = if args.contains(&"--db") || args.contains(&"--no-history") {
            Vec::new()
        } else {
            vec!["--db", own_db.to_str().unwrap()]
        };
        let given = |flag: &str| {
            args.iter()
                .position(|arg| *arg == flag)
                .map(|at| args[at + 1])
        };
        let tls_args: Vec<&str> = match given("--tls") {
            Some(_) => Vec::new(),
            None => vec!["--tls", "127.0.0.1:0"],
        };
        // Every door on a port of its own choosing unless the test names
        // one: tests run side by side.
        let mut door_args: Vec<&str> = Vec::new();
        for flag in ["--tcp", "--irc", "--irc-tls"] {
            if given(flag).is_none() {
                door_args.extend([flag, "127.0.0.1:0"]);
            }
        }
        let tls_on = given("--tls") != Some("off");
        let irc_on = given("--irc") != Some("off");
        let ircs_on = given("--irc-tls") != Some("off");
        let https_on = (tls_on || ircs_on) && given("--web-tls") != Some("off");
        let mut command = Command::new(BINARY);
        if let Some(limit) = fd_limit {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in
            // the child between fork and exec.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
            }
        }
        let mut child = command
            .arg("serve")
            .args(args)
            .args(db_args)
            .args(tls_args)
            .args(door_args)
            .args(["--udp", "127.0.0.1:0", "--web", "127.0.0.1:0"])
            .env("XDG_CONFIG_HOME", NO_USER_CONFIG)
            // A generated certificate (with --no-history) is kept here.
            .env("XDG_DATA_HOME", data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sockchat serve");
        // Drained all along, so a chatty log can never block the server.
        let (log_tx, log) = tokio::sync::mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = log_tx.send(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut listening = Vec::new();
        let mut prefixes = vec!["listening tcp ", "listening udp ", "listening web http://"];
        if https_on {
            prefixes.push("listening web https://");
        }
        if tls_on {
            prefixes.push("listening tls ");
        }
        if irc_on {
            prefixes.push("listening irc ");
        }
        if ircs_on {
            prefixes.push("listening ircs ");
        }
        for prefix in prefixes {
            let mut line = String::new();
            // A cluster node names itself first (`cluster node NAME URLS`).
            while line.is_empty() || line.starts_with("cluster node ") {
                line = tokio::time::timeout(PATIENCE, lines.next_line())
                    .await
                    .expect("the listening line comes in time")
                    .unwrap()
                    .expect("sockchat serve prints its listening lines");
            }
            let rest = line
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            // `ADDR`, `http://ADDR/`, or either with a fingerprint after.
            let (addr, fingerprint) = match rest.split_once(' ') {
                Some((addr, fingerprint)) => (addr, Some(fingerprint.to_string())),
                None => (rest, None),
            };
            let addr: std::net::SocketAddr = addr.trim_end_matches('/').parse().unwrap();
            listening.push((prefix, addr, fingerprint));
        }
        let door = |wanted: &str| {
            listening
                .iter()
                .find(|(prefix, ..)| *prefix == wanted)
                .map(|(_, addr, fingerprint)| (*addr, fingerprint.clone()))
        };
        let https_fingerprint = door("listening web https://").map(|(_, fp)| fp.unwrap());
        let tls = door("listening tls ").map(|(addr, fp)| (addr, fp.unwrap()));
        let irc = door("listening irc ").map(|(addr, _)| addr);
        let ircs = door("listening ircs ").map(|(addr, fp)| (addr, fp.unwrap()));
        ServerProcess {
            child,
            data,
            addr: listening[0].1,
            udp: listening[1].1,
            web: listening[2].1,
            tls,
            irc,
            ircs,
            https_fingerprint,
            log,
        }
    }

    /// The directory holding its history (and a generated certificate, in
    /// `tls/`), unless the test gave its own `--db`.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Reads the log until a line contains `needle`.
    pub async fn expect_log(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.log.recv())
                .await
                .expect("the log line comes in time")
                .expect("the server is still logging");
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends SIGTERM; the exit code, and the log lines not read yet.
    pub async fn terminate_with_log(mut self) -> (i32, Vec<String>) {
        let mut log = std::mem::replace(&mut self.log, tokio::sync::mpsc::unbounded_channel().1);
        let code = self.terminate().await;
        let mut rest = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, log.recv()).await {
            rest.push(line);
        }
        (code, rest)
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> i32 {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits in time")
            .unwrap();
        status.code().expect("exited, not killed by a signal")
    }
}

pub async fn run_client(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(BINARY)
        .env("XDG_CONFIG_HOME", NO_USER_CONFIG)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sockchat connect");
    let mut stdin = child.stdin.take().unwrap();
    // A client that refuses to start (a certificate it does not trust)
    // may be gone before it reads: then the input has nowhere to go.
    match stdin.write_all(input.as_bytes()).await {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    drop(stdin);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the client exits in time")
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Runs `sockchat serve ARGS`, which must fail at start with exit code 1;
/// returns what it said on stderr.
pub async fn serve_fails(args: &[&str]) -> String {
    // Off unless the test is about it: the default port is shared.
    let mut off: Vec<&str> = Vec::new();
    for flag in ["--tls", "--irc", "--irc-tls"] {
        if !args.contains(&flag) {
            off.extend([flag, "off"]);
        }
    }
    let output = Command::new(BINARY)
        .arg("serve")
        .args(args)
        .args(off)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run sockchat serve");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}
