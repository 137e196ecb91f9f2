//! The built `sockchat` binary end to end: start the server, read its
//! `listening` line, chat through it with `sockchat connect` and a raw
//! socket, stop it with SIGTERM.

mod common;

use std::process::Stdio;

use common::process::{run_client, serve_fails, ServerProcess, BINARY};
use common::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

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

    // A bare UDP client in the same room.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = common::udp_join(&udp, server.udp, "udp sb 你好").await;
    assert!(
        answer.starts_with("* welcome to sockchat, guest-"),
        "{answer}"
    );
    // The welcome, the line as the room saw it, then the room's past.
    assert_eq!(answer.lines().nth(1), Some("udp alexsb 你好"), "{answer}");
    assert!(watcher.expect("你好").await.ends_with(": udp alexsb 你好"));

    assert_eq!(server.terminate().await, 0);
    let rest = watcher.expect_closed().await;
    assert_eq!(rest.last().unwrap(), "* bye: server is shutting down");
}

/// `sockchat connect --nick NAME`, over TCP and over UDP: the room sees
/// `NAME joined` and nothing before it (no guest, no rename). A taken
/// nick ends a scripted client with a clear message and exit code 3, and
/// nothing it was given is posted.
#[tokio::test]
async fn a_nick_on_the_command_line_is_the_nick_the_room_sees() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--max-rate", "0"]).await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.expect("welcome").await;
    watcher.send("/nick carol").await;
    watcher.expect("now known as carol").await;
    let (tcp, udp) = (server.addr.to_string(), server.udp.to_string());
    for (door, nick) in [
        (&["--nick"][..], "alice"),
        (&["--udp", "--nick"][..], "bob"),
    ] {
        let server = if door.len() == 1 { &tcp } else { &udp };
        let args = [&door[..door.len() - 1], &[server.as_str(), "--nick", nick]].concat();
        let (code, _, stderr) = run_client(&args, "hello\n").await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(watcher.line().await, format!("* {nick} joined #lobby"));
        assert_eq!(watcher.line().await, format!("[lobby] {nick}: hello"));
        assert_eq!(watcher.line().await, format!("* {nick} left"));

        let args = [
            &door[..door.len() - 1],
            &[server.as_str(), "--nick", "Carol"],
        ]
        .concat();
        let (code, stdout, stderr) = run_client(&args, "not under another name\n").await;
        assert_eq!(code, 3, "{stdout}{stderr}");
        assert_eq!(
            stderr.trim_end(),
            "sockchat: nickname Carol is taken; choose another with --nick"
        );
        // The room heard nothing of it: the next line is the watcher's own.
        watcher.send("marker").await;
        assert_eq!(watcher.line().await, "[lobby] carol: marker");
    }
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
    let args = [
        "--no-history",
        "--udp",
        "off",
        "--web",
        "off",
        "--tcp",
        &addr,
    ];
    let stderr = serve_fails(&args).await;
    assert!(
        stderr.contains(&format!("cannot listen on tcp {addr}")),
        "{stderr}"
    );

    let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = taken_udp.local_addr().unwrap().to_string();
    let args = [
        "--no-history",
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        &udp_addr,
        "--web",
        "off",
    ];
    let stderr = serve_fails(&args).await;
    assert!(
        stderr.contains(&format!("cannot listen on udp {udp_addr}")),
        "{stderr}"
    );

    let stderr = serve_fails(&["--web", "off", "--config", "/nonexistent/sockchat.toml"]).await;
    assert!(stderr.contains("cannot read config file"), "{stderr}");
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

#[tokio::test]
async fn the_client_shows_why_a_full_server_refused_it() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--max-clients", "1"]).await;
    let mut first = Client::connect(server.addr).await;
    first.expect("welcome").await;
    let addr = server.addr.to_string();
    let (code, stdout, stderr) = run_client(&[&addr, "--nick", "late"], "hello\n").await;
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stdout.contains("! server full: 1 clients connected, try again later"),
        "stdout: {stdout} stderr: {stderr}"
    );
    assert!(stderr.contains("the server ended the session"), "{stderr}");
    server.terminate().await;
}

/// What people say, on any door, never reaches the server's log at its
/// default level: messages, actions, private messages, quit reasons.
#[tokio::test]
async fn the_log_never_carries_what_people_say() {
    use futures_util::{SinkExt, StreamExt};
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"]).await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.expect("welcome").await;
    watcher.send("/nick watcher").await;
    watcher.expect("now known as watcher").await;
    let secret = |door: &str| format!("secret-{door}-秘密");

    let mut tcp = Client::connect(server.addr).await;
    tcp.expect("welcome").await;
    tcp.send(&secret("tcp-say")).await;
    tcp.send(&format!("/me {}", secret("tcp-me"))).await;
    tcp.send(&format!("/msg watcher {}", secret("tcp-msg")))
        .await;
    watcher.expect(&secret("tcp-msg")).await;
    tcp.send(&format!("/quit {}", secret("tcp-quit"))).await;
    watcher.expect(&secret("tcp-quit")).await;

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    common::udp_join(&udp, server.udp, &secret("udp")).await;
    watcher.expect(&secret("udp")).await;

    let (mut web, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.web))
        .await
        .unwrap();
    let say = format!(r#"{{"type":"say","text":"{}"}}"#, secret("web"));
    web.send(tokio_tungstenite::tungstenite::Message::Text(say.into()))
        .await
        .unwrap();
    watcher.expect(&secret("web")).await;
    let _ = web.close(None).await;
    let _ = web.next().await;

    let (code, log) = server.terminate_with_log().await;
    assert_eq!(code, 0);
    assert!(
        log.iter().any(|line| line.contains("member connected")),
        "{log:#?}"
    );
    let told: Vec<_> = log.iter().filter(|line| line.contains("secret-")).collect();
    assert!(told.is_empty(), "{told:#?}");
}

/// The README's bench command against a server run with its defaults:
/// nothing lost, exit 0, in a room of its own that the lobby never hears
/// of and that is never stored. Over the server's flood limit, it says
/// which clients went and why, what to change, and exits 3.
#[tokio::test]
async fn the_readme_bench_command_works_against_a_default_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server =
        ServerProcess::start(&["--tcp", "127.0.0.1:0", "--db", db.to_str().unwrap()]).await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.expect("welcome").await;
    watcher.send("/nick watcher").await;
    watcher.expect("now known as watcher").await;
    let addr = server.addr.to_string();
    let bench = |extra: &[&str]| {
        let mut command = Command::new(BINARY);
        command
            .args([
                "bench",
                &addr,
                "--greeting",
                "--duration",
                "1",
                "--drain",
                "5",
            ])
            .args(extra)
            .kill_on_drop(true);
        command
    };
    let output = tokio::time::timeout(common::PATIENCE, bench(&[]).output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("clients dropped       0"), "{report}");
    assert!(report.contains("loss                  0.000 %"), "{report}");

    let output = tokio::time::timeout(
        common::PATIENCE,
        bench(&["--clients", "10", "--senders", "2", "--rate", "200"]).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{report}");
    assert!(
        report.contains("  2 flooding: * bye: excess flood: more than 20 messages a second"),
        "{report}"
    );
    assert!(report.contains("serve with --max-rate 0"), "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("client(s) were dropped"), "{stderr}");

    // The lobby heard nothing of either run, and nothing was stored.
    watcher.send("marker").await;
    assert_eq!(watcher.line().await, "[lobby] watcher: marker");
    assert_eq!(server.terminate().await, 0);
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM messages WHERE room != 'lobby'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

/// `sockchat man [COMMAND]`: a page for sockchat and each command, which
/// groff renders without a warning.
#[tokio::test]
async fn manual_pages_are_generated_and_render_cleanly() {
    let pages = [
        None,
        Some("serve"),
        Some("connect"),
        Some("bench"),
        Some("man"),
    ];
    for command in pages {
        let output = Command::new(BINARY)
            .arg("man")
            .args(command)
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        let roff = String::from_utf8(output.stdout).unwrap();
        let title = command.map_or("sockchat".to_string(), |name| format!("sockchat-{name}"));
        assert!(roff.contains(&format!(".TH {title} 1")), "{roff}");
        assert!(roff.contains(".SH OPTIONS"), "{roff}");
        let mut groff = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("groff (scripts/test.sh installs it)");
        groff
            .stdin
            .take()
            .unwrap()
            .write_all(roff.as_bytes())
            .await
            .unwrap();
        let rendered = groff.wait_with_output().await.unwrap();
        assert!(rendered.status.success());
        assert_eq!(String::from_utf8_lossy(&rendered.stderr), "", "{title}");
    }
    let serve = Command::new(BINARY)
        .args(["man", "serve"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&serve.stdout).contains("max\\-rate"));
    let unknown = Command::new(BINARY)
        .args(["man", "nope"])
        .output()
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

/// `sockchat completions SHELL`: bash's parses, and each names the
/// commands.
#[tokio::test]
async fn shell_completions_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F _sockchat"),
        ("zsh", "#compdef sockchat"),
        ("fish", "complete -c sockchat"),
    ] {
        let output = Command::new(BINARY)
            .args(["completions", shell])
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}");
        assert!(
            script.contains("serve") && script.contains("max-rate"),
            "{shell}"
        );
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sockchat.bash");
            std::fs::write(&path, &script).unwrap();
            let checked = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .status()
                .await
                .unwrap();
            assert!(checked.success(), "bash -n");
        }
    }
}

/// The config file is found where people expect it (the user's config
/// directory, without --config), and `--print-config` shows every setting
/// with where it came from, as a config file that parses.
#[tokio::test]
async fn print_config_shows_each_setting_and_where_it_came_from() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("sockchat")).unwrap();
    let file = home.path().join("sockchat").join("config.toml");
    std::fs::write(&file, "[serve]\nname = \"lab\"\nmax-rate = 50\n").unwrap();
    let output = Command::new(BINARY)
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("SOCKCHAT_CONFIG")
        .args(["serve", "--print-config", "--max-rate", "0", "--no-history"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains(&format!("# config file: {}", file.display())),
        "{shown}"
    );
    let source = |key: &str| {
        let line = shown
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in {shown}"));
        line.rsplit("# ").next().unwrap().to_string()
    };
    assert_eq!(source("max-rate"), "flag");
    assert_eq!(source("name"), "file");
    assert_eq!(source("tcp"), "default");
    let parsed: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(parsed["serve"]["name"].as_str(), Some("lab"));
    assert_eq!(parsed["serve"]["max-rate"].as_integer(), Some(0));
}

/// The LICENSE file is the license Cargo.toml declares.
#[test]
fn the_license_file_matches_the_manifest() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["license"].as_str(), Some("MIT"));
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(license.starts_with("MIT License\n"), "{license}");
    assert!(license.contains("Permission is hereby granted, free of charge"));
}
