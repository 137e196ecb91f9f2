//! TLS: the TLS door beside the plain one, HTTPS and WSS on the web port,
//! certificate reloads under load, hostile handshakes, interop with
//! `openssl s_client`, `ncat --ssl`, Python's `ssl` and Chromium, and the
//! client's trust on first use.
//!
//! The tools (openssl, ncat, python3, node with Chromium) are installed by
//! scripts/test.sh when missing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::process::{run_client, ServerProcess, BINARY, NO_USER_CONFIG};
use common::{config, config_with_tls, start, TestServer, PATIENCE};
use rustls::pki_types::ServerName;
use sockchat::tls::trust::{Authorities, ServerTrust, TrustPolicy, Verdict};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS connection that trusts any certificate, and the fingerprint of
/// the one the server showed.
async fn tls_connect(addr: SocketAddr) -> std::io::Result<(TlsStream<TcpStream>, String)> {
    let policy = TrustPolicy {
        authorities: Authorities::Nothing,
        expected: None,
    };
    let trust = ServerTrust::new(policy, false).unwrap();
    let config = ServerTrust::client_config(&trust).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    match trust.verdict() {
        Some(Verdict::Trusted { fingerprint }) => Ok((stream, fingerprint)),
        other => panic!("trusting anything, the verdict was {other:?}"),
    }
}

/// A ClientHello, as a TLS client's first flight.
fn client_hello() -> Vec<u8> {
    let policy = TrustPolicy {
        authorities: Authorities::Nothing,
        expected: None,
    };
    let trust = ServerTrust::new(policy, false).unwrap();
    let config = ServerTrust::client_config(&trust).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// Text lines over any stream (a TLS one here).
struct Lines<S> {
    reader: tokio::io::Lines<BufReader<tokio::io::ReadHalf<S>>>,
    writer: tokio::io::WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite> Lines<S> {
    fn new(stream: S) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Lines {
            reader: BufReader::new(reader).lines(),
            writer,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn expect(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.reader.next_line())
                .await
                .unwrap_or_else(|_| panic!("{needle:?} in time"))
                .unwrap()
                .unwrap_or_else(|| panic!("the connection closed before {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// A TLS member, named and in the lobby; and its server's fingerprint.
async fn tls_member(addr: SocketAddr, nick: &str) -> (Lines<TlsStream<TcpStream>>, String) {
    let (stream, fingerprint) = tls_connect(addr).await.expect("the handshake succeeds");
    let mut member = Lines::new(stream);
    member.expect("* welcome to").await;
    member.send(&format!("/nick {nick}")).await;
    member.expect(&format!("now known as {nick}")).await;
    (member, fingerprint)
}

/// Asserts that `nick` is alone in the lobby: nobody else ever got in.
async fn assert_alone(member: &mut common::Client, nick: &str) {
    member.send("/who").await;
    let who = member.expect("#lobby has").await;
    assert_eq!(who, format!("* #lobby has 1: {nick}"));
}

/// Reads until the peer closes; whether it closed cleanly (a FIN, not a
/// reset), and what came before.
async fn read_to_close(socket: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut seen))
        .await
        .expect("the server closes the connection");
    (read.is_ok(), seen)
}

/// A command-line tool in a test: its stdin, and its stdout and stderr
/// line by line.
struct Tool {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    name: String,
}

impl Tool {
    fn spawn(program: &str, args: &[&str]) -> Tool {
        let mut child = Command::new(program)
            .args(args)
            .env("XDG_CONFIG_HOME", NO_USER_CONFIG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{program} runs (scripts/test.sh installs it): {error}")
            });
        let (tell, lines) = mpsc::unbounded_channel();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        for mut stream in [
            Box::new(stdout) as Box<dyn LineSource>,
            Box::new(stderr) as Box<dyn LineSource>,
        ] {
            let tell = tell.clone();
            tokio::spawn(async move {
                while let Some(line) = stream.next().await {
                    let _ = tell.send(line);
                }
            });
        }
        Tool {
            child,
            lines,
            name: program.to_string(),
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn expect(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: {needle:?} in time", self.name))
                .unwrap_or_else(|| panic!("{} ended before {needle:?}", self.name));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// Lines from a child's stdout or stderr.
trait LineSource: Send {
    fn next(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>>;
}

impl<R: tokio::io::AsyncBufRead + Unpin + Send> LineSource for tokio::io::Lines<R> {
    fn next(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move { self.next_line().await.ok().flatten() })
    }
}

/// A self-signed certificate and key for `names`, written to `dir` as
/// `NAME.pem` and `NAME.key`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Copies `from`'s certificate and key over `to`'s, each replaced whole.
fn replace_certificate(from: &(PathBuf, PathBuf), to: &(PathBuf, PathBuf)) {
    for (from, to) in [(&from.0, &to.0), (&from.1, &to.1)] {
        let temporary = to.with_extension("new");
        std::fs::copy(from, &temporary).unwrap();
        std::fs::rename(&temporary, to).unwrap();
    }
}

fn hangup(server: &ServerProcess) {
    let pid = server.child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A member over TLS and one over plain TCP talk in the same room, both
/// ways, Chinese included; the door each came in by shows in /who.
#[tokio::test]
async fn a_tls_member_and_a_plain_one_chat_in_one_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_tls(dir.path())).await;
    let mut plain = server.client_named("plain").await;
    let (mut secure, _) = tls_member(server.tls.unwrap(), "secure").await;
    plain.expect("secure joined").await;
    secure.send("你好, in TLS").await;
    assert_eq!(plain.expect("in TLS").await, "[lobby] secure: 你好, in TLS");
    plain.send("hello in the clear").await;
    assert_eq!(
        secure.expect("in the clear").await,
        "[lobby] plain: hello in the clear"
    );
    server.stop().await;
}

/// Handshakes that never finish hold their connection only until the
/// handshake timeout; meanwhile other handshakes go through at once (the
/// accept loop never waits on one). A handshake cut off half-way is
/// closed without a word.
#[tokio::test]
async fn stalled_and_truncated_handshakes_are_closed_while_others_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config_with_tls(dir.path());
    settings.limits.handshake_timeout = std::time::Duration::from_millis(500);
    let server = start(settings).await;
    let tls = server.tls.unwrap();
    let hello = client_hello();
    // One sends nothing, one half a ClientHello: both wait on the server.
    let mut silent = TcpStream::connect(tls).await.unwrap();
    let mut half = TcpStream::connect(tls).await.unwrap();
    half.write_all(&hello[..hello.len() / 2]).await.unwrap();
    // Another arrives while they stall, and chats.
    let (mut member, _) = tls_member(tls, "meanwhile").await;
    member.send("not held up").await;
    member.expect("meanwhile: not held up").await;
    for stalled in [&mut silent, &mut half] {
        let (_, answer) = read_to_close(stalled).await;
        assert!(answer.is_empty(), "a stalled handshake gets no answer");
    }
    // One cut off: half a ClientHello, then the end.
    let mut cut = TcpStream::connect(tls).await.unwrap();
    cut.write_all(&hello[..hello.len() / 2]).await.unwrap();
    cut.shutdown().await.unwrap();
    let (clean, _) = read_to_close(&mut cut).await;
    assert!(clean, "a truncated handshake gets an orderly close");
    let metrics = server.hub.metrics().render();
    assert!(
        metrics.contains(r#"sockchat_tls_handshakes_failed_total{reason="timeout"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sockchat_tls_handshakes_failed_total{reason="error"} 1"#),
        "{metrics}"
    );
    // Nobody but the one member ever joined.
    member.send("/who").await;
    assert_eq!(
        member.expect("#lobby has").await,
        "* #lobby has 1: meanwhile"
    );
    server.stop().await;
}

/// Plain text sent to the TLS port is never chat: the connection gets at
/// most a TLS alert, then an orderly close (no reset).
#[tokio::test]
async fn plain_text_on_the_tls_port_gets_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_tls(dir.path())).await;
    let mut watcher = server.client_named("watcher").await;
    let mut typist = TcpStream::connect(server.tls.unwrap()).await.unwrap();
    typist
        .write_all(b"hello, is this chat?\r\n/nick intruder\r\n")
        .await
        .unwrap();
    let (clean, answer) = read_to_close(&mut typist).await;
    assert!(clean, "closed, not reset");
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "nothing but a TLS alert: {answer:?}"
    );
    // The room heard nothing of it.
    assert_alone(&mut watcher, "watcher").await;
    server.stop().await;
}

/// A TLS client that comes to the plain text port is told, in one plain
/// line, where TLS is; then closed. Nothing reaches the room.
#[tokio::test]
async fn a_client_hello_on_the_plain_port_is_told_where_tls_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_tls(dir.path())).await;
    let tls = server.tls.unwrap();
    let mut watcher = server.client_named("watcher").await;
    let mut confused = TcpStream::connect(server.addr).await.unwrap();
    confused.write_all(&client_hello()).await.unwrap();
    let (_, answer) = read_to_close(&mut confused).await;
    let answer = String::from_utf8(answer).unwrap();
    let lines: Vec<&str> = answer.lines().collect();
    // The welcome (the server speaks first), then the one line.
    assert_eq!(lines.len(), 2, "{answer}");
    assert!(lines[0].starts_with("* welcome to"), "{answer}");
    assert_eq!(
        lines[1],
        format!("* bye: this port speaks plain text lines, not TLS: TLS is at {tls}")
    );
    // A real TLS client there fails its handshake (it reads text).
    assert!(tls_connect(server.addr).await.is_err());
    assert_alone(&mut watcher, "watcher").await;
    server.stop().await;
}

/// The web port serves HTTPS and WSS beside HTTP, with the same
/// certificate as the TLS door.
#[tokio::test]
async fn the_web_port_serves_https_and_wss_beside_http() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_tls(dir.path())).await;
    let web = server.web.unwrap();
    let (_, door_fingerprint) = tls_connect(server.tls.unwrap()).await.unwrap();
    // The page over HTTPS.
    let (mut https, fingerprint) = tls_connect(web).await.unwrap();
    assert_eq!(fingerprint, door_fingerprint);
    https
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    https.read_to_end(&mut page).await.ok();
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>"), "{page}");
    // And plain HTTP on the same port.
    let mut http = TcpStream::connect(web).await.unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut health = String::new();
    http.read_to_string(&mut health).await.unwrap();
    assert!(health.ends_with("ok\n"), "{health}");
    // A member over WSS, heard by one on the text port.
    let mut plain = server.client_named("plain").await;
    let (stream, _) = tls_connect(web).await.unwrap();
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", web.port()), stream)
            .await
            .expect("the WebSocket handshake over TLS");
    let say = r#"{"type":"say","text":"from wss"}"#;
    socket.send(Message::Text(say.into())).await.unwrap();
    assert!(plain.expect("from wss").await.ends_with(": from wss"));
    plain.send("to wss").await;
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        if frame.to_text().unwrap_or_default().contains("to wss") {
            break;
        }
    }
    server.stop().await;
}

/// `openssl s_client` and `ncat --ssl`, each verifying the generated
/// certificate, chat with a plain `ncat` user in one room; the
/// fingerprint the server printed is the certificate's.
#[tokio::test]
async fn openssl_and_ncat_over_tls_chat_with_a_plain_nc_user() {
    let server = ServerProcess::start(&[]).await;
    let (tls, fingerprint) = server.tls.clone().unwrap();
    let cert = server.data_dir().join("tls").join("cert.pem");
    let cert = cert.to_str().unwrap();
    // What an operator does to check it out of band.
    let openssl = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", cert])
        .output()
        .expect("openssl runs");
    let printed = String::from_utf8(openssl.stdout).unwrap();
    let printed = printed.trim().rsplit('=').next().unwrap();
    assert_eq!(
        sockchat::tls::parse_fingerprint(printed).as_deref(),
        Some(fingerprint.as_str())
    );
    assert_eq!(
        server.https_fingerprint.as_deref(),
        Some(fingerprint.as_str())
    );

    let port = server.addr.port().to_string();
    let mut plain = Tool::spawn("ncat", &["127.0.0.1", &port]);
    plain.expect("* welcome to").await;
    plain.send("/nick plain").await;
    plain.expect("now known as plain").await;

    let mut openssl = Tool::spawn(
        "openssl",
        &[
            "s_client",
            "-connect",
            &tls.to_string(),
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            cert,
            "-verify_return_error",
            "-quiet",
            "-nocommands",
        ],
    );
    openssl.expect("* welcome to").await;
    openssl.send("/nick viaopenssl").await;
    plain.expect("viaopenssl joined").await;
    openssl.send("hello from openssl").await;
    assert_eq!(
        plain.expect("hello from openssl").await,
        "[lobby] viaopenssl: hello from openssl"
    );
    plain.send("你好 from nc").await;
    assert_eq!(
        openssl.expect("from nc").await,
        "[lobby] plain: 你好 from nc"
    );

    let tls_port = tls.port().to_string();
    let mut ncat = Tool::spawn(
        "ncat",
        &[
            "--ssl",
            "--ssl-verify",
            "--ssl-trustfile",
            cert,
            "localhost",
            &tls_port,
        ],
    );
    ncat.expect("* welcome to").await;
    ncat.send("/nick viancat").await;
    plain.expect("viancat joined").await;
    ncat.send("hello from ncat --ssl").await;
    assert_eq!(
        plain.expect("from ncat").await,
        "[lobby] viancat: hello from ncat --ssl"
    );
    assert_eq!(
        openssl.expect("from ncat").await,
        "[lobby] viancat: hello from ncat --ssl"
    );
    server.terminate().await;
}

/// Our client, verifying against a CA file, chats through `ncat --ssl -l`
/// used as a bare TLS server (relaying to the plain door).
#[tokio::test]
async fn our_client_chats_through_ncat_as_a_bare_tls_server() {
    let server = start(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "ncat");
    // A port for ncat: taken from the system, then handed over.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let relay = format!("ncat 127.0.0.1 {}", server.addr.port());
    let mut ncat = Tool::spawn(
        "ncat",
        &[
            "-v",
            "--ssl",
            "--ssl-cert",
            cert.to_str().unwrap(),
            "--ssl-key",
            key.to_str().unwrap(),
            "--listen",
            "--keep-open",
            "127.0.0.1",
            &port,
            "--sh-exec",
            &relay,
        ],
    );
    ncat.expect("Listening on").await;
    let mut watcher = server.client_named("watcher").await;
    let target = format!("127.0.0.1:{port}");
    let mut client = Tool::spawn(
        BINARY,
        &[
            "connect",
            "--tls",
            &target,
            "--ca",
            cert.to_str().unwrap(),
            "--nick",
            "ours",
            "--known-servers",
            dir.path().join("known").to_str().unwrap(),
        ],
    );
    watcher.expect("ours joined").await;
    client.send("through ncat's TLS").await;
    assert_eq!(
        watcher.expect("through ncat").await,
        "[lobby] ours: through ncat's TLS"
    );
    watcher.send("and back").await;
    client.expect("[lobby] watcher: and back").await;
    // A CA that did not sign it: refused, nothing sent.
    let (other, _) = certificate(dir.path(), "other");
    let (code, _, stderr) = run_client(
        &["--tls", &target, "--ca", other.to_str().unwrap()],
        "never sent\n",
    )
    .await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("refused by the --ca authorities"),
        "{stderr}"
    );
    drop(client);
    server.stop().await;
}

/// Python's `ssl` module, verifying against the generated certificate,
/// chats; one that expects another fingerprint gives up before sending.
#[tokio::test]
async fn a_python_ssl_client_verifies_the_certificate_and_its_fingerprint() {
    const SCRIPT: &str = r#"
import hashlib, socket, ssl, sys
port, cafile, expected = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
with socket.create_connection(("127.0.0.1", port)) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        seen = "sha256:" + hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
        if seen != expected:
            sys.exit(f"fingerprint mismatch: expected {expected}, saw {seen}")
        tls.sendall("hello from python\n".encode())
        received = b""
        while b"hello from python" not in received:
            chunk = tls.recv(4096)
            if not chunk:
                sys.exit("closed early")
            received += chunk
        print("verified", tls.version())
"#;
    let server = ServerProcess::start(&[]).await;
    let (tls, fingerprint) = server.tls.clone().unwrap();
    let cert = server.data_dir().join("tls").join("cert.pem");
    let mut watcher = common::Client::connect(server.addr).await;
    watcher.expect("* welcome to").await;
    let run = |expected: String| {
        let cert = cert.clone();
        async move {
            let output = Command::new("python3")
                .args(["-c", SCRIPT, &tls.port().to_string()])
                .arg(&cert)
                .arg(expected)
                .output()
                .await
                .expect("python3 runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let (ok, stdout, stderr) = run(fingerprint.clone()).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.starts_with("verified TLSv1."), "{stdout}");
    watcher.expect(": hello from python").await;
    let wrong = sockchat::tls::fingerprint(b"another certificate");
    let (ok, _, stderr) = run(wrong).await;
    assert!(!ok);
    assert!(stderr.contains("fingerprint mismatch"), "{stderr}");
    // Verifying against another certificate fails in the handshake.
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = certificate(dir.path(), "other");
    let output = Command::new("python3")
        .args(["-c", SCRIPT, &tls.port().to_string()])
        .arg(&other)
        .arg(&fingerprint)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
    // Only the first one spoke.
    watcher.send("/who").await;
    let who = watcher.expect("#lobby has").await;
    assert!(who.starts_with("* #lobby has 1:"), "{who}");
    server.terminate().await;
}

/// SIGHUP under load: members already connected keep chatting, every line
/// arrives once and in order, connections made after the reload get the
/// new certificate, and a bad new file leaves the current one in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_under_load_drops_no_one_and_new_connections_get_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let served = (dir.path().join("served.pem"), dir.path().join("served.key"));
    let first = certificate(dir.path(), "first");
    let second = certificate(dir.path(), "second");
    replace_certificate(&first, &served);
    let mut server = ServerProcess::start(&[
        "--tls-cert",
        served.0.to_str().unwrap(),
        "--tls-key",
        served.1.to_str().unwrap(),
        "--max-rate",
        "0",
    ])
    .await;
    let (tls, fingerprint_a) = server.tls.clone().unwrap();
    let (mut talker, seen) = tls_member(tls, "talker").await;
    assert_eq!(seen, fingerprint_a);
    let (mut listener, _) = tls_member(tls, "listener").await;

    const LINES: usize = 400;
    let sending = tokio::spawn(async move {
        for index in 0..LINES {
            talker.send(&format!("load {index}")).await;
        }
        talker
    });
    // The reload comes while the lines are on their way.
    listener.expect("talker: load 50").await;
    replace_certificate(&second, &served);
    hangup(&server);
    server.expect_log("TLS certificate reloaded").await;
    let (_, fingerprint_b) = tls_connect(tls).await.unwrap();
    assert_ne!(fingerprint_a, fingerprint_b);
    for index in 51..LINES {
        assert_eq!(
            listener.expect("talker: load").await,
            format!("[lobby] talker: load {index}")
        );
    }
    let mut talker = sending.await.unwrap();
    talker.send("still here after the reload").await;
    listener.expect("still here after the reload").await;

    // A broken file: logged, and the certificate served stays.
    std::fs::write(&served.0, "-----BEGIN CERTIFICATE-----\nnot one\n").unwrap();
    hangup(&server);
    server.expect_log("the old one is kept").await;
    let (_, fingerprint) = tls_connect(tls).await.unwrap();
    assert_eq!(fingerprint, fingerprint_b);
    talker.send("and after the bad one").await;
    listener.expect("and after the bad one").await;
    server.terminate().await;
}

/// Trust on first use: a script is refused with the fingerprint and how
/// to accept it; `--accept-fingerprint` is honoured and pins it; the pin
/// lets the next run in; a changed certificate is refused loudly, and
/// accepting the new fingerprint replaces the pin.
#[tokio::test]
async fn the_client_pins_on_first_use_and_refuses_a_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let served = (dir.path().join("served.pem"), dir.path().join("served.key"));
    replace_certificate(&certificate(dir.path(), "first"), &served);
    let mut server = ServerProcess::start(&[
        "--tls-cert",
        served.0.to_str().unwrap(),
        "--tls-key",
        served.1.to_str().unwrap(),
    ])
    .await;
    let (tls, first) = server.tls.clone().unwrap();
    let mut watcher = common::Client::connect(server.addr).await;
    watcher.expect("* welcome to").await;
    // Everything the room heard.
    let mut heard: Vec<String> = Vec::new();
    let known = dir.path().join("known_servers");
    let target = tls.to_string();
    let base = ["--tls", &target, "--known-servers", known.to_str().unwrap()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|arg| arg.to_string())
            .collect()
    };
    let run = |args: Vec<String>, input: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(&args, input).await
    };

    // First contact from a script: nobody to ask, so refused.
    let (code, _, stderr) = run(with(&[]), "not sent\n").await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&first), "{stderr}");
    assert!(
        stderr.contains(&format!("--accept-fingerprint {first}")),
        "{stderr}"
    );
    assert!(!known.exists());

    // Accepted by fingerprint: in, and pinned.
    let (code, stdout, stderr) =
        run(with(&["--accept-fingerprint", &first]), "accepted once\n").await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    heard.extend(watcher.lines_until(": accepted once").await);
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(pins.contains(&format!("{target} {first}")), "{pins}");

    // The pin is enough next time.
    let (code, _, stderr) = run(with(&[]), "pinned\n").await;
    assert_eq!(code, 0, "{stderr}");
    heard.extend(watcher.lines_until(": pinned").await);

    // A fingerprint given that is not the server's: refused.
    let wrong = sockchat::tls::fingerprint(b"not the server's");
    let (code, _, stderr) = run(with(&["--accept-fingerprint", &wrong]), "no\n").await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not the one given"), "{stderr}");

    // The server's certificate changes.
    replace_certificate(&certificate(dir.path(), "second"), &served);
    hangup(&server);
    server.expect_log("TLS certificate reloaded").await;
    let (_, second) = tls_connect(tls).await.unwrap();
    let (code, _, stderr) = run(with(&[]), "must not be sent\n").await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("HAS CHANGED"), "{stderr}");
    assert!(
        stderr.contains(&first) && stderr.contains(&second),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--accept-fingerprint {second}")),
        "{stderr}"
    );

    // Accepting the new one replaces the pin.
    let (code, _, stderr) = run(with(&["--accept-fingerprint", &second]), "re-pinned\n").await;
    assert_eq!(code, 0, "{stderr}");
    heard.extend(watcher.lines_until(": re-pinned").await);
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(pins.contains(&second) && !pins.contains(&first), "{pins}");
    // Nothing refused ever reached the room.
    assert!(
        !heard
            .iter()
            .any(|line| line.contains("sent") || line.ends_with(": no")),
        "{heard:?}"
    );

    // --insecure: in, with a warning every time.
    let (code, _, stderr) = run(with(&["--insecure"]), "unchecked\n").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("WARNING: --insecure"), "{stderr}");
    server.terminate().await;
}

/// Chromium loads the page over HTTPS, trusting the server's certificate
/// by its key, and chats over WSS with a plain TCP client.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_chats_over_https_and_wss() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let dir = tempfile::tempdir().unwrap();
    let server: TestServer = start(config_with_tls(dir.path())).await;
    let url = format!("https://127.0.0.1:{}/", server.web.unwrap().port());
    let cert = dir.path().join("tls").join("cert.pem");
    let script = browser_dir.join("https.mjs");
    let tcp = server.addr.to_string();
    let output = Command::new("node")
        .arg(script)
        .args(["--web", &url, "--tcp", &tcp, "--cert"])
        .arg(&cert)
        .env("CHROMIUM", chromium)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("https checks passed"), "{stdout}");
    server.stop().await;
}
