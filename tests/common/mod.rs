//! Test harness: a real server on 127.0.0.1 port 0, and line clients over
//! real TCP sockets. Tests wait for what arrives; the timeouts here only
//! turn a hang into a failure.

#![allow(dead_code)]

pub mod nats;
pub mod process;
pub mod python;
pub mod tmux;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sockchat::hub::{Hub, HubConfig};
use sockchat::server::{HistoryConfig, ServeConfig, Server};
use sockchat::session::Limits;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Long enough for a loaded CI machine; reached only when a test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Settings for tests: loopback, port 0, history in a fresh SQLite file
/// (as `sockchat serve` keeps it by default), and no rate limit unless a
/// test sets one (tests chat faster than people do).
pub fn config() -> ServeConfig {
    static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
    let db = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "history-{}-{}.db",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover from an earlier run with the same pid would replay its past.
    let _ = std::fs::remove_file(&db);
    ServeConfig {
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        udp: Some("127.0.0.1:0".parse().unwrap()),
        web: Some("127.0.0.1:0".parse().unwrap()),
        // TLS is tested where it is the point (tests/tls.rs).
        tls: None,
        web_tls: false,
        certificate: None,
        irc: Some("127.0.0.1:0".parse().unwrap()),
        irc_tls: None,
        motd: None,
        web_origins: Vec::new(),
        web_hosts: Vec::new(),
        history: HistoryConfig {
            db: Some(db),
            ..HistoryConfig::default()
        },
        hub: HubConfig::default(),
        limits: Limits {
            max_rate: 0,
            ..Limits::default()
        },
        cluster: None,
    }
}

/// `config()` keeping no history on disk.
pub fn config_without_history() -> ServeConfig {
    let mut config = config();
    config.history.db = None;
    config
}

/// `config()` with the TLS door and HTTPS on, the certificate made (and
/// kept) in `dir/tls`.
pub fn config_with_tls(dir: &std::path::Path) -> ServeConfig {
    let mut settings = config();
    settings.tls = Some("127.0.0.1:0".parse().unwrap());
    settings.web_tls = true;
    settings.certificate = Some(sockchat::tls::CertificateSource::Generated {
        dir: dir.join("tls"),
        names: sockchat::tls::certificate::names_for(&[]),
    });
    settings
}

/// The fingerprint of the certificate a server made in `dir/tls`.
pub fn generated_fingerprint(dir: &std::path::Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let path = dir.join("tls").join("cert.pem");
    let der = rustls::pki_types::CertificateDer::from_pem_file(path).unwrap();
    sockchat::tls::fingerprint(&der)
}

/// `config()` with history kept in `db`.
pub fn config_with_history(db: &std::path::Path) -> ServeConfig {
    let mut config = config();
    config.history.db = Some(db.to_path_buf());
    config
}

pub struct TestServer {
    /// The TCP door.
    pub addr: SocketAddr,
    /// The UDP door, when on.
    pub udp: Option<SocketAddr>,
    /// The web door, when on.
    pub web: Option<SocketAddr>,
    /// The TLS door, when on.
    pub tls: Option<SocketAddr>,
    /// The IRC door, when on.
    pub irc: Option<SocketAddr>,
    /// IRC inside TLS, when on.
    pub ircs: Option<SocketAddr>,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Binds and starts a server; it is accepting when this returns.
pub async fn start(config: ServeConfig) -> TestServer {
    let server = Server::bind(config).await.expect("bind");
    let listening = server.listening();
    let addr = listening[0].addr;
    let door = |name: &str| {
        listening
            .iter()
            .find(|listening| listening.door == name)
            .map(|listening| listening.addr)
    };
    let (udp, web, tls) = (door("udp"), door("web"), door("tls"));
    let (irc, ircs) = (door("irc"), door("ircs"));
    let hub = server.hub();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        udp,
        web,
        tls,
        irc,
        ircs,
        hub,
        stop: Some(stop),
        task,
    }
}

impl TestServer {
    /// A client that has read its welcome line.
    pub async fn client(&self) -> Client {
        let mut client = Client::connect(self.addr).await;
        let welcome = client.line().await;
        assert!(welcome.starts_with("* welcome to"), "{welcome}");
        client.nick = welcome
            .split(", ")
            .nth(1)
            .and_then(|rest| rest.split('!').next())
            .unwrap()
            .to_string();
        client
    }

    /// A client with a chosen nickname, confirmed by the server.
    pub async fn client_named(&self, nick: &str) -> Client {
        let mut client = self.client().await;
        client.send(&format!("/nick {nick}")).await;
        client.expect(&format!("is now known as {nick}")).await;
        client.nick = nick.to_string();
        client
    }

    /// Stops the server the way Ctrl-C does and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server run");
    }
}

pub struct Client {
    pub nick: String,
    reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Client {
    /// Connects without reading anything.
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        let (reader, writer) = stream.into_split();
        Client {
            nick: String::new(),
            reader: BufReader::new(reader),
            writer,
        }
    }

    /// The socket back, to reset or half-close it.
    pub fn into_stream(self) -> TcpStream {
        self.reader
            .into_inner()
            .reunite(self.writer)
            .expect("halves of one stream")
    }

    /// Sends `text` and a newline.
    pub async fn send(&mut self, text: &str) {
        self.send_bytes(format!("{text}\n").as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("send");
    }

    /// The next line, without its newline. Panics at end of stream.
    pub async fn line(&mut self) -> String {
        self.try_line()
            .await
            .expect("expected a line, the server closed the connection")
    }

    /// The next line, or `None` at end of stream.
    pub async fn try_line(&mut self) -> Option<String> {
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.reader.read_until(b'\n', &mut bytes))
            .await
            .expect("a line arrives in time")
            .ok()?;
        if read == 0 {
            return None;
        }
        let line = String::from_utf8(bytes).expect("the server sends UTF-8");
        Some(line.trim_end_matches('\n').to_string())
    }

    /// Reads until a line contains `needle`; returns that line.
    pub async fn expect(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.try_line().await {
                Some(line) if line.contains(needle) => return line,
                Some(line) => seen.push(line),
                None => panic!("closed before {needle:?} arrived; saw {seen:#?}"),
            }
        }
    }

    /// Reads until a line contains `needle`; returns every line read, that
    /// one last.
    pub async fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// Reads until the server closes; returns every line seen.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.try_line().await {
            seen.push(line);
        }
        seen
    }
}

/// One datagram's answer to `socket`, as text.
pub async fn udp_answer(socket: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// What a bare UDP client does first: it sends a line, is answered with a
/// code (it is no member until it sends the code back), and sends the
/// code followed by `text`. Returns the answer to that: the welcome, then
/// `text` as the room saw it.
pub async fn udp_join(socket: &tokio::net::UdpSocket, server: SocketAddr, text: &str) -> String {
    // Sent again while unanswered, as a person would: when a crowd of
    // unproven sources has spent the server's budget for them, answers
    // wait for it to refill.
    let mut buf = vec![0u8; 65_536];
    let mut hint = None;
    for _ in 0..100 {
        socket.send_to(b"hello", server).await.unwrap();
        let wait = Duration::from_millis(200);
        if let Ok(received) = tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            hint = Some(String::from_utf8_lossy(&buf[..received.unwrap()]).into_owned());
            break;
        }
    }
    let hint = hint.expect("an answer in time");
    let code = hint
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| word.len() == 8)
        .unwrap_or_else(|| panic!("no code in {hint:?}"))
        .to_string();
    socket
        .send_to(format!("{code} {text}").as_bytes(), server)
        .await
        .unwrap();
    udp_answer(socket).await
}
