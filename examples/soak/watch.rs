//! The server under watch: started with a fresh database, its figures
//! read from `/metrics`, its log kept in a file to search for panics.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::link::Addrs;

/// A `sockchat serve` of our own.
pub struct Server {
    child: Child,
    pub addrs: Addrs,
}

/// What the process holds, as `/metrics` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub members: i64,
    pub tasks: i64,
    pub fds: i64,
    pub rss: i64,
}

impl Figures {
    /// The larger of each figure.
    pub fn max(self, other: Figures) -> Figures {
        Figures {
            members: self.members.max(other.members),
            tasks: self.tasks.max(other.tasks),
            fds: self.fds.max(other.fds),
            rss: self.rss.max(other.rss),
        }
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} members, {} tasks, {} fds, {:.1} MiB resident",
            self.members,
            self.tasks,
            self.fds,
            self.rss as f64 / (1024.0 * 1024.0)
        )
    }
}

impl Server {
    /// Starts `binary serve` on loopback ports of the system's choosing,
    /// with `args` added, its log going to `log`.
    pub async fn start(binary: &Path, dir: &Path, args: &[&str]) -> io::Result<Server> {
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
            .args([
                "--web",
                "127.0.0.1:0",
                "--tls",
                "off",
                "--irc",
                "off",
                "--irc-tls",
                "off",
            ])
            .arg("--db")
            .arg(dir.join("history.db"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let addr = |prefix: &'static str, line: Option<String>| -> io::Result<SocketAddr> {
            line.as_deref()
                .and_then(|line| line.strip_prefix(prefix))
                .map(|rest| rest.trim_end_matches('/'))
                .and_then(|rest| rest.parse().ok())
                .ok_or_else(|| io::Error::other(format!("expected {prefix}ADDR, got {line:?}")))
        };
        let tcp = addr("listening tcp ", lines.next_line().await?)?;
        let udp = addr("listening udp ", lines.next_line().await?)?;
        let web = addr("listening web http://", lines.next_line().await?)?;
        // Anything else it prints is drained, so it never blocks on stdout.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            addrs: Addrs { tcp, udp, web },
        })
    }

    /// The figures now.
    pub async fn figures(&self) -> io::Result<Figures> {
        figures(self.addrs.web).await
    }

    /// Waits, up to `patience`, for the server to be back to `members`
    /// members with at most `tasks` tasks; the figures then (or at the end
    /// of its patience).
    pub async fn settle(
        &self,
        members: i64,
        tasks: i64,
        patience: Duration,
    ) -> io::Result<Figures> {
        let deadline = Instant::now() + patience;
        loop {
            let figures = self.figures().await?;
            let settled = figures.members == members && figures.tasks <= tasks;
            if settled || Instant::now() >= deadline {
                return Ok(figures);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends the server with SIGTERM; its exit status.
    pub async fn stop(mut self) -> io::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            if !status.success() {
                return Err(io::Error::other("kill -TERM failed"));
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.child.kill().await?;
                Err(io::Error::other(
                    "the server did not stop within 30 s of SIGTERM",
                ))
            }
        }
    }
}

/// The figures of the server whose web door is at `web`.
pub async fn figures(web: SocketAddr) -> io::Result<Figures> {
    let text = tokio::time::timeout(Duration::from_secs(10), scrape(web))
        .await
        .map_err(|_| io::Error::other("/metrics did not answer in 10 s"))??;
    let value = |name: &str| -> i64 {
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    };
    Ok(Figures {
        members: value("sockchat_connections{"),
        tasks: value("sockchat_tasks "),
        fds: value("sockchat_open_fds "),
        rss: value("sockchat_resident_memory_bytes "),
    })
}

/// Members dropped or refused so far, by reason, as `/metrics` says.
pub async fn drops(web: SocketAddr) -> io::Result<Vec<(String, i64)>> {
    let text = scrape(web).await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("sockchat_drops_total{reason=\"")?;
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// `GET /metrics`, by hand: one request, read to the close.
async fn scrape(web: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect(web).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
