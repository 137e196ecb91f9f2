//! The built `sockchat` binary end to end: start the server, read its
//! `listening` line, chat through it with `sockchat connect` and a raw
//! socket, stop it with SIGTERM.

mod common;

use std::process::Stdio;

use common::Client;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_sockchat");

/// A `sockchat serve` process, killed if the test fails half-way.
struct ServerProcess {
    child: Child,
    /// Holds the history database unless the test gave its own.
    _data: tempfile::TempDir,
    addr: std::net::SocketAddr,
    udp: std::net::SocketAddr,
    /// The server's log, line by line.
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ServerProcess {
    /// Starts `sockchat serve ARGS --udp 127.0.0.1:0` (with a database of
    /// its own unless ARGS name one) and reads its two `listening` lines.
    async fn start(args: &[&str]) -> ServerProcess {
        let data = tempfile::tempdir().unwrap();
        let own_db = data.path().join("history.db");
        let db_args: Vec<&str> = if args.contains(&"--db") || args.contains(&"--no-history") {
            Vec::new()
        } else {
            vec!["--db", own_db.to_str().unwrap()]
        };
        let mut child = Command::new(BINARY)
            .arg("serve")
            .args(args)
            .args(db_args)
            .args(["--udp", "127.0.0.1:0"])
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
        for door in ["tcp", "udp"] {
            let line = tokio::time::timeout(common::PATIENCE, lines.next_line())
                .await
                .expect("the listening line comes in time")
                .unwrap()
                .expect("sockchat serve prints its listening lines");
            let addr = line
                .strip_prefix(&format!("listening {door} "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))
                .parse()
                .unwrap();
            listening.push(addr);
        }
        ServerProcess {
            child,
            _data: data,
            addr: listening[0],
            udp: listening[1],
            log,
        }
    }

    /// Reads the log until a line contains `needle`.
    async fn expect_log(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(common::PATIENCE, self.log.recv())
                .await
                .expect("the log line comes in time")
                .expect("the server is still logging");
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends SIGTERM and returns the exit code.
    async fn terminate(mut self) -> i32 {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(common::PATIENCE, self.child.wait())
            .await
            .expect("the server exits in time")
            .unwrap();
        status.code().expect("exited, not killed by a signal")
    }
}

async fn run_client(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(BINARY)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sockchat connect");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("the client exits in time")
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn serve_chat_and_stop_with_sigterm() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--filter", "sb=alexsb"]).await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.expect("welcome to sockchat").await;

    let addr = server.addr.to_string();
    let (code, stdout, stderr) = run_client(
        &[&addr, "--nick", "piper", "--room", "lobby"],
        "hello sb 你好\n/msg nobody x\n",
    )
    .await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("[lobby] piper: hello alexsb 你好\n"),
        "{stdout}"
    );
    assert!(stdout.contains("! no such nick: nobody\n"), "{stdout}");
    assert!(stdout.ends_with("* bye: goodbye, piper\n"), "{stdout}");
    assert_eq!(
        watcher.expect("piper:").await,
        "[lobby] piper: hello alexsb 你好"
    );
    assert_eq!(watcher.expect("piper left").await, "* piper left");
    server.expect_log("member connected").await;

    // A bare UDP client in the same room, logged as the classic server did.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to("udp sb 你好".as_bytes(), server.udp)
        .await
        .unwrap();
    let mut answer = vec![0u8; 2048];
    let len = udp.recv(&mut answer).await.unwrap();
    assert_eq!(&answer[..len], "udp alexsb 你好".as_bytes());
    assert!(watcher.expect("你好").await.ends_with(": udp alexsb 你好"));
    let port = udp.local_addr().unwrap().port();
    let logged = server
        .expect_log(&format!("message from 127.0.0.1:{port}"))
        .await;
    assert!(logged.ends_with("udp sb 你好"), "{logged}");

    assert_eq!(server.terminate().await, 0);
    let rest = watcher.expect_closed().await;
    assert_eq!(rest.last().unwrap(), "* bye: server is shutting down");
}

#[tokio::test]
async fn the_client_reports_a_server_that_goes_away() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"]).await;
    let addr = server.addr.to_string();
    let mut watcher = Client::connect(server.addr).await;
    watcher.expect("welcome").await;
    let client = Command::new(BINARY)
        .args(["connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the client is in.
    watcher.expect("joined #lobby").await;
    assert_eq!(server.terminate().await, 0);
    let output = tokio::time::timeout(common::PATIENCE, client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout.contains("* bye: server is shutting down"),
        "{stdout}"
    );
    assert!(stderr.contains("the server ended the session"), "{stderr}");
}

#[tokio::test]
async fn the_client_reports_a_server_that_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (code, _, stderr) = run_client(&[&addr], "").await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot connect to {addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn raw_mode_talks_to_a_classic_bare_server() {
    // The classic exercise's server: greet, then read raw UTF-8 with no
    // terminators until the client says byebye.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let classic = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all("你好, client".as_bytes()).await.unwrap();
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await.unwrap();
        String::from_utf8(received).unwrap()
    });
    let (code, stdout, _) = run_client(&["--raw", &addr], "hello 世界\nbyebye\nnever sent\n").await;
    assert_eq!(code, 0);
    assert_eq!(stdout, "你好, client");
    // Sent exactly as typed: no terminators, and nothing after byebye.
    assert_eq!(classic.await.unwrap(), "hello 世界byebye");
}

#[tokio::test]
async fn the_config_file_sets_flags_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sockchat.toml");
    std::fs::write(
        &path,
        "[serve]\ntcp = \"127.0.0.1:0\"\nfilter = [\"cat=dog\"]\nname = \"from-file\"\nroom = \"hall\"\n",
    )
    .unwrap();
    let server =
        ServerProcess::start(&["--config", path.to_str().unwrap(), "--room", "kitchen"]).await;
    let mut client = Client::connect(server.addr).await;
    let welcome = client.line().await;
    assert!(
        welcome.starts_with("* welcome to from-file, guest-1! you are in #kitchen"),
        "{welcome}"
    );
    client.send("a cat").await;
    assert_eq!(client.line().await, "[kitchen] guest-1: a dog");
    assert_eq!(server.terminate().await, 0);
}

#[tokio::test]
async fn start_up_errors_are_clear_and_exit_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BINARY)
        .args(["serve", "--no-history", "--udp", "off", "--tcp", &addr])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on tcp {addr}")),
        "{stderr}"
    );

    let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = taken_udp.local_addr().unwrap().to_string();
    let output = Command::new(BINARY)
        .args([
            "serve",
            "--no-history",
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            &udp_addr,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on udp {udp_addr}")),
        "{stderr}"
    );

    let output = Command::new(BINARY)
        .args(["serve", "--config", "/nonexistent/sockchat.toml"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .contains("cannot read config file"));
}

#[tokio::test]
async fn udp_raw_mode_talks_to_a_classic_bare_udp_server() {
    // The classic UDP server: answer REPLY,TEXT with sb rewritten; stop
    // listening at bye.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let classic = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let (len, peer) = socket.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8(buf[..len].to_vec()).unwrap();
            if text == "bye" {
                return received;
            }
            let reply = format!("got it,{}", text.replace("sb", "alexsb"));
            socket.send_to(reply.as_bytes(), peer).await.unwrap();
            received.push(text);
        }
    });
    // Input that ends: every answer is printed, one datagram per line.
    let (code, stdout, _) = run_client(&["--udp", "--raw", &addr], "hello sb\n你好\n").await;
    assert_eq!(code, 0);
    assert_eq!(stdout, "got it,hello alexsb\ngot it,你好\n");
    // bye is sent, then the client stops at once: nothing after it is sent.
    let (code, _, _) = run_client(&["--udp", "--raw", &addr], "bye\nnever sent\n").await;
    assert_eq!(code, 0);
    assert_eq!(classic.await.unwrap(), vec!["hello sb", "你好"]);
}
