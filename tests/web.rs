//! The web door: HTTP checks over a raw socket, then the page itself in a
//! real browser (Debian's Chromium, driven by tests/browser/chat.mjs with
//! playwright-core) next to a TCP client. `scripts/test.sh` installs
//! Chromium and the driver when they are missing; this test fails, rather
//! than skips, when they are not there.

mod common;

use std::path::Path;
use std::process::Command;

use common::{config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a raw HTTP/1.1 request and returns the whole response.
async fn request(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(common::PATIENCE, read)
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn the_page_health_and_metrics_are_served_with_security_headers() {
    let server = start(config()).await;
    let web = server.web.unwrap();
    let mut client = server.client_named("counted").await;
    client.send("one message").await;
    client.expect("one message").await;

    let page = request(
        web,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(page.contains("x-content-type-options: nosniff"));
    assert!(page.contains("<script src=\"/app.js\" defer></script>"));
    let health = request(
        web,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let metrics = request(
        web,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.contains("sockchat_connections{door=\"tcp\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sockchat_messages_in_total{door=\"tcp\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sockchat_messages_out_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sockchat_history_writes_total 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cross_origin_websocket_handshake_is_refused() {
    let server = start(config()).await;
    let web = server.web.unwrap();
    let handshake = |origin: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {web}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let status = |origin: String| async move {
        let mut stream = TcpStream::connect(web).await.unwrap();
        stream
            .write_all(handshake(&origin).as_bytes())
            .await
            .unwrap();
        let mut head = vec![0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        String::from_utf8(head).unwrap()
    };
    assert_eq!(status("http://evil.example".into()).await, "HTTP/1.1 403");
    // The page's own origin is welcome: the connection switches protocols.
    assert_eq!(status(format!("http://{web}")).await, "HTTP/1.1 101");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_and_a_tcp_client_chat_in_a_real_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: run scripts/test.sh (it installs Debian's chromium)"
    );
    let server = start(config()).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let web_url = format!("http://{}/", server.web.unwrap());
    let tcp = server.addr.to_string();
    let shots_arg = shots.to_str().unwrap().to_string();
    let script = browser_dir.join("chat.mjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(["--web", &web_url, "--tcp", &tcp, "--shots", &shots_arg])
            .env("CHROMIUM", chromium)
            .output()
            .expect("node is installed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser checks passed"), "{stdout}");
    for shot in ["web-desktop.png", "web-phone.png"] {
        let size = std::fs::metadata(shots.join(shot))
            .map(|meta| meta.len())
            .unwrap_or(0);
        assert!(size > 1000, "screenshot {shot} was saved");
    }
    server.stop().await;
}

mod websocket {
    //! The WebSocket protocol itself, from a Rust client.

    use super::common::{config, config_without_history, start};
    use futures_util::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn open(web: std::net::SocketAddr) -> Socket {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{web}/ws"))
            .await
            .expect("the handshake succeeds");
        socket
    }

    /// The next event whose type is `kind` (any event for "").
    async fn next_of(socket: &mut Socket, kind: &str) -> Value {
        loop {
            let frame = tokio::time::timeout(super::common::PATIENCE, socket.next())
                .await
                .expect("an event in time")
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = frame {
                let event: Value = serde_json::from_str(&text).unwrap();
                if kind.is_empty() || event["type"] == kind {
                    return event;
                }
            }
        }
    }

    async fn send(socket: &mut Socket, json: &str) {
        socket.send(Message::Text(json.into())).await.unwrap();
    }

    #[tokio::test]
    async fn json_commands_limits_and_goodbye() {
        let mut settings = config();
        settings.limits.max_line = 100;
        let server = start(settings).await;
        let mut watcher = server.client().await;
        let mut socket = open(server.web.unwrap()).await;
        let welcome = next_of(&mut socket, "welcome").await;
        assert_eq!(welcome["room"], "lobby");
        send(&mut socket, r#"{"type":"nick","nick":"網頁"}"#).await;
        assert_eq!(watcher.expect(" joined").await, "* 網頁 joined #lobby");
        send(&mut socket, r#"{"type":"say","text":"from the web"}"#).await;
        assert_eq!(
            watcher.expect("from the web").await,
            "[lobby] 網頁: from the web"
        );
        assert_eq!(
            next_of(&mut socket, "message").await["text"],
            "from the web"
        );

        // Too long: an error, and the connection stays.
        let long = format!(r#"{{"type":"say","text":"{}"}}"#, "x".repeat(200));
        send(&mut socket, &long).await;
        assert_eq!(next_of(&mut socket, "error").await["code"], "line_too_long");
        send(&mut socket, "not json").await;
        assert_eq!(next_of(&mut socket, "error").await["code"], "bad_json");
        socket
            .send(Message::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
        assert_eq!(next_of(&mut socket, "error").await["code"], "bad_json");
        // Closing the socket is a goodbye.
        socket.close(None).await.unwrap();
        assert_eq!(watcher.expect("網頁 left").await, "* 網頁 left");
        server.stop().await;
    }

    /// `--max-line` means the text a person typed on every door: a text
    /// line of the limit passes on TCP, and a JSON command whose text is
    /// the limit passes on TCP and on the web, however much its escapes
    /// add; one byte more is refused everywhere, and the connection stays.
    #[tokio::test]
    async fn the_line_limit_means_the_same_on_every_door() {
        let mut settings = config();
        settings.limits.max_line = 100;
        let server = start(settings).await;
        let mut watcher = server.client_named("watcher").await;
        // Quotes: each takes two bytes in JSON.
        let text = |length: usize| "\"".repeat(length);
        let say =
            |length: usize| serde_json::json!({"type": "say", "text": text(length)}).to_string();

        let mut tcp = server.client_named("plain").await;
        tcp.send(&text(100)).await;
        watcher.expect(&format!("plain: {}", text(100))).await;
        tcp.send(&text(101)).await;
        tcp.expect("! line longer than 100 bytes").await;

        let mut json = server.client_named("lines").await;
        json.send("/json").await;
        json.expect(r#""type":"mode""#).await;
        json.send(&say(100)).await;
        watcher.expect(&format!("lines: {}", text(100))).await;
        json.send(&say(101)).await;
        let refused = json.expect(r#""type":"error""#).await;
        assert!(refused.contains("line_too_long"), "{refused}");

        let mut socket = open(server.web.unwrap()).await;
        next_of(&mut socket, "welcome").await;
        send(&mut socket, r#"{"type":"nick","nick":"page"}"#).await;
        send(&mut socket, &say(100)).await;
        watcher.expect(&format!("page: {}", text(100))).await;
        send(&mut socket, &say(101)).await;
        assert_eq!(next_of(&mut socket, "error").await["code"], "line_too_long");

        // Every one of them is still connected.
        tcp.send("a").await;
        json.send(r#"{"type":"say","text":"b"}"#).await;
        send(&mut socket, r#"{"type":"say","text":"c"}"#).await;
        for said in ["plain: a", "lines: b", "page: c"] {
            watcher.expect(said).await;
        }
        server.stop().await;
    }

    /// Far more messages than may be on their way to disk at once (64): the
    /// door stops reading until echoes come back, and everything arrives,
    /// once, in order, for the sender and the room.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_burst_past_the_in_flight_bound_arrives_whole_and_in_order() {
        let mut settings = config();
        settings.limits.max_rate = 0;
        let server = start(settings).await;
        let mut watcher = server.client().await;
        let mut socket = open(server.web.unwrap()).await;
        next_of(&mut socket, "welcome").await;
        let frames = (0..300).map(|index| {
            Ok(Message::Text(
                format!(r#"{{"type":"say","text":"burst {index}"}}"#).into(),
            ))
        });
        socket
            .send_all(&mut futures_util::stream::iter(frames))
            .await
            .unwrap();
        for index in 0..300 {
            let echo = next_of(&mut socket, "message").await;
            assert_eq!(echo["text"], format!("burst {index}"));
            assert!(watcher
                .expect("burst")
                .await
                .ends_with(&format!(": burst {index}")));
        }
        server.stop().await;
    }

    /// Every frame's event type and text, until (and with) one of `kind`.
    async fn types_until(socket: &mut Socket, kind: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        loop {
            let event = next_of(socket, "").await;
            let entry = (
                event["type"].as_str().unwrap_or("").to_string(),
                event["text"].as_str().unwrap_or("").to_string(),
            );
            let done = entry.0 == kind;
            seen.push(entry);
            if done {
                return seen;
            }
        }
    }

    #[tokio::test]
    async fn answers_come_in_the_order_of_the_commands() {
        let mut settings = config();
        settings.limits.max_line = 100;
        let server = start(settings).await;
        let mut socket = open(server.web.unwrap()).await;
        next_of(&mut socket, "welcome").await;
        // A message (its echo comes once it is on disk), then a frame too
        // long: the error must not overtake the echo.
        let long = format!(r#"{{"type":"say","text":"{}"}}"#, "x".repeat(200));
        send(&mut socket, r#"{"type":"say","text":"first"}"#).await;
        send(&mut socket, &long).await;
        let seen = types_until(&mut socket, "error").await;
        let echo = seen
            .iter()
            .position(|(kind, text)| kind == "message" && text == "first");
        assert_eq!(echo, Some(seen.len() - 2), "{seen:?}");
        server.stop().await;
    }

    /// `--idle` holds on the web door as on every door. Paused time.
    #[tokio::test(start_paused = true)]
    async fn a_silent_browser_is_dropped_at_the_idle_limit() {
        let mut settings = config_without_history();
        settings.limits.idle = Some(std::time::Duration::from_secs(5));
        let server = start(settings).await;
        let mut watcher = server.client_named("watcher").await;
        let mut socket = open(server.web.unwrap()).await;
        next_of(&mut socket, "welcome").await;
        send(&mut socket, r#"{"type":"nick","nick":"dozy"}"#).await;
        watcher.expect("dozy joined").await;
        let quiet_since = tokio::time::Instant::now();
        // The watcher speaks a second later, so its own idle limit comes
        // after dozy's rather than at the same instant.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        watcher.send("still here").await;
        let bye = next_of(&mut socket, "bye").await;
        assert_eq!(bye["code"], "idle");
        assert_eq!(bye["reason"], "idle for 5 s");
        assert!(quiet_since.elapsed() >= std::time::Duration::from_secs(5));
        assert_eq!(
            watcher.expect("dozy was").await,
            "* dozy was disconnected (idle for 5 s)"
        );
        server.stop().await;
    }

    /// Over the rate, messages wait their turn: none is lost. Paused time.
    #[tokio::test(start_paused = true)]
    async fn over_the_rate_messages_wait_their_turn() {
        let mut settings = config_without_history();
        settings.limits.max_rate = 5;
        let server = start(settings).await;
        let mut watcher = server.client().await;
        let mut socket = open(server.web.unwrap()).await;
        next_of(&mut socket, "welcome").await;
        let started = tokio::time::Instant::now();
        for index in 0..8 {
            send(
                &mut socket,
                &format!(r#"{{"type":"say","text":"burst {index}"}}"#),
            )
            .await;
        }
        for index in 0..8 {
            assert!(watcher
                .expect("burst")
                .await
                .ends_with(&format!("burst {index}")));
        }
        // Three waited a fifth of a second each.
        assert!(started.elapsed() >= std::time::Duration::from_millis(600));
        server.stop().await;
    }
}
