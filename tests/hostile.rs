//! Hostile input, one test per class of attack (issue 14's battery): each
//! must get a clear refusal or a close, and leave everyone else intact.

mod common;

use common::{config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw WebSocket handshake to the web door; the socket after the 101.
async fn raw_websocket(web: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(web).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    socket
}

/// Reads until the server closes the connection; panics if it does not
/// within the test's patience.
async fn expect_closed(socket: &mut TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(common::PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// A frame announced bigger than the frame cap is refused from its header:
/// the server never buffers toward it, and closes.
#[tokio::test]
async fn a_websocket_frame_over_the_cap_is_refused_from_its_header() {
    let server = start(config()).await;
    let mut bystander = server.client_named("bystander").await;
    let mut socket = raw_websocket(server.web.unwrap()).await;
    // A masked text frame announcing 16 MiB (64-bit length), then a little
    // of it, then silence: a server that buffers frames whole would wait.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x'; 1000]);
    socket.write_all(&frame).await.unwrap();
    expect_closed(&mut socket).await;
    // Everyone else carries on.
    bystander.send("still here").await;
    bystander.expect("[lobby] bystander: still here").await;
    server.stop().await;
}

/// Reads what the server sends until it closes: all of it, as text.
async fn read_to_close(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(common::PATIENCE, socket.read_to_end(&mut seen))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&seen).into_owned()
}

/// What any web page can send to a localhost port with `fetch()`: an HTTP
/// request whose body holds commands. Neither its headers nor its body
/// reach the room or run; it gets one line and a close. A TLS ClientHello
/// and binary get the same.
#[tokio::test]
async fn http_tls_and_binary_on_the_text_port_get_one_line_and_a_close() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let post = "POST / HTTP/1.1\r\nHost: 127.0.0.1:8888\r\nContent-Type: text/plain\r\n\
                Content-Length: 26\r\n\r\n/nick pwned\nhello from a page\n";
    // A TLS 1.2 ClientHello's first bytes, then printable fragments.
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    client_hello.extend_from_slice(b"printable fragment localhost\n");
    let cases: [(&[u8], &str); 4] = [
        (post.as_bytes(), "* bye: this is a chat port, not HTTP"),
        (
            b"Host: example\r\n\r\n",
            "* bye: this is a chat port, not HTTP",
        ),
        (
            &client_hello,
            "* bye: this port speaks plain text lines, not TLS",
        ),
        (
            b"\x00\x01\x02binary\n",
            "* bye: this port speaks text lines (nc, telnet)",
        ),
    ];
    for (sent, told) in cases {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(sent).await.unwrap();
        let seen = read_to_close(&mut socket).await;
        let lines: Vec<_> = seen.lines().collect();
        // The welcome (the server speaks first), then the one line.
        assert_eq!(lines.len(), 2, "{seen}");
        assert!(lines[0].starts_with("* welcome to"), "{seen}");
        assert!(lines[1].starts_with(told), "{seen}");
    }
    // Nothing of it reached the room, and nobody was renamed.
    watcher.send("marker").await;
    assert_eq!(watcher.line().await, "[lobby] watcher: marker");
    watcher.send("/who").await;
    assert_eq!(watcher.line().await, "* #lobby has 1: watcher");
    server.stop().await;
}

/// A terminal's first line may hold escape sequences (arrow keys) and
/// tabs: that is typing, not binary.
#[tokio::test]
async fn escape_sequences_and_tabs_in_a_first_line_are_chat() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let mut typist = common::Client::connect(server.addr).await;
    typist.expect("welcome").await;
    typist.send_bytes(b"left\x1b[D\tand on\n").await;
    let line = watcher.expect("left").await;
    assert!(line.ends_with(": left\u{241b}[D\tand on"), "{line:?}");
    server.stop().await;
}

/// One datagram's answer, or a panic if none comes in time.
async fn answer(socket: &tokio::net::UdpSocket) -> (String, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (len, from) = tokio::time::timeout(common::PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    (String::from_utf8_lossy(&buf[..len]).into_owned(), from)
}

/// How many members the room has, as `/who` says.
async fn members(watcher: &mut common::Client) -> String {
    watcher.send("/who").await;
    watcher.expect("* #lobby has").await
}

/// Datagrams from service ports (echo, daytime, DNS...) and datagrams that
/// are themselves a server's answers never start a session: no member, no
/// answer, nothing in the room (the Loop-DoS class).
#[tokio::test]
async fn udp_ignores_service_ports_and_other_servers_answers() {
    let server = start(config()).await;
    let udp = server.udp.unwrap();
    let mut watcher = server.client_named("watcher").await;
    // A port under 1024 (we may bind one in tests that run as root; if
    // not, this part is covered by the answers below).
    let service = (900..1024).find_map(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).ok());
    if let Some(service) = service {
        let service = tokio::net::UdpSocket::from_std({
            service.set_nonblocking(true).unwrap();
            service
        })
        .unwrap();
        service
            .send_to(b"junk from a service port", udp)
            .await
            .unwrap();
    }
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for answer_like in [
        &b"* welcome to sockchat, guest-9! #lobby, 3 here; /help"[..],
        b"! unknown command /x (try /help)",
        br#"{"type":"ack","ack":1,"events":[]}"#,
    ] {
        stranger.send_to(answer_like, udp).await.unwrap();
    }
    // A client's datagram after them: the receive loop takes datagrams in
    // order, so once its message is in the room the others were handled.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    common::udp_join(&client, udp, "marker").await;
    let said = watcher.expect("marker").await;
    assert!(said.ends_with(": marker"), "{said}");
    assert_eq!(
        members(&mut watcher).await.split(": ").next(),
        Some("* #lobby has 2")
    );
    let mut buf = [0u8; 64];
    assert!(
        stranger.try_recv_from(&mut buf).is_err(),
        "no answer to an answer"
    );
    server.stop().await;
}

/// Two servers aimed at each other (a forged datagram to one, with the
/// other's address, here a relay between them): the first server's
/// answer is not answered by the second, so there is no loop.
#[tokio::test]
async fn two_servers_aimed_at_each_other_do_not_loop() {
    let first = start(config()).await;
    let second = start(config()).await;
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relay.send_to(b"hello", first.udp.unwrap()).await.unwrap();
    let (answered, from) = answer(&relay).await;
    assert_eq!(from, first.udp.unwrap());
    assert!(answered.starts_with("* to chat"), "{answered}");
    // Handed to the second server as if the first had sent it there.
    relay
        .send_to(answered.as_bytes(), second.udp.unwrap())
        .await
        .unwrap();
    // The second's answers are to what came after: the first server's
    // answer got none, so the first server gets nothing to answer.
    let joined = common::udp_join(&relay, second.udp.unwrap(), "marker").await;
    assert!(joined.ends_with("\nmarker"), "{joined}");
    let mut buf = [0u8; 64];
    assert!(relay.try_recv_from(&mut buf).is_err(), "nothing else came");
    first.stop().await;
    second.stop().await;
}

/// A room line longer than any datagram can hold, waiting for a bare
/// client, is cut with a marker when its turn comes: it never
/// holds up what was said after it.
#[tokio::test]
async fn a_line_too_long_for_a_datagram_never_blocks_a_bare_client() {
    let server = start(config()).await;
    let udp = server.udp.unwrap();
    let bare = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    common::udp_join(&bare, udp, "here").await;
    let mut talker = server.client_named("talker").await;
    talker.send(&"long ".repeat(800)).await;
    talker.expect("long long").await;
    talker.send("said after it").await;
    talker.expect("said after it").await;
    // Polls: the long line comes cut, and then the one after it.
    let poll = "/rooms";
    let mut seen = String::new();
    for _ in 0..20 {
        if seen.contains("said after it") {
            break;
        }
        bare.send_to(poll.as_bytes(), udp).await.unwrap();
        seen.push_str(&answer(&bare).await.0);
        seen.push('\n');
    }
    assert!(seen.contains("… [cut: too long for a datagram]"), "{seen}");
    assert!(seen.contains("[lobby] talker: said after it"), "{seen}");
    server.stop().await;
}

/// Nicks that look like a taken one (another script's look-alike letters,
/// full-width forms, case) are refused; other scripts stay welcome.
#[tokio::test]
async fn look_alike_nicks_are_refused_and_other_scripts_welcome() {
    let server = start(config()).await;
    let _alice = server.client_named("alice").await;
    let mut newcomer = server.client().await;
    for look_alike in ["аlice", "ａｌｉｃｅ", "ALICE", "ѕerver"] {
        newcomer.send(&format!("/nick {look_alike}")).await;
        assert_eq!(
            newcomer.line().await,
            format!("! nickname {look_alike} is taken"),
            "{look_alike}"
        );
    }
    newcomer.send("/nick 小明").await;
    newcomer.expect("is now known as 小明").await;
    server.stop().await;
}

/// One member cannot make the server keep rooms without end (a join
/// flood, as IRC servers cap channels per client): past `--max-rooms` a
/// join is refused, and the member stays in the rooms it has.
#[tokio::test]
async fn joins_past_the_room_cap_are_refused() {
    let mut settings = config();
    settings.hub.max_rooms = 3;
    let server = start(settings).await;
    let mut member = server.client_named("joiner").await;
    // The lobby and two more.
    for room in ["a", "b"] {
        member.send(&format!("/join {room}")).await;
        member.expect(&format!("joiner joined #{room}")).await;
    }
    member.send("/join c").await;
    assert_eq!(
        member.expect("! ").await,
        "! you are in 3 rooms, the most one member may be in; /part one first"
    );
    // Still in #b, and talking there.
    member.send("still here").await;
    member.expect("[b] joiner: still here").await;
    member.send("/part a").await;
    member.expect("joiner left #a").await;
    member.send("/join c").await;
    member.expect("joiner joined #c").await;
    member.send("/rooms").await;
    let rooms = member.expect("#c").await;
    assert!(!rooms.contains("#a"), "{rooms}");
    server.stop().await;
}

/// Half-sent HTTP requests (slowloris) hold a place in the per-IP limit
/// like members do, and are closed once the handshake timeout passes, so
/// they can neither take every descriptor nor hold places for long.
#[tokio::test]
async fn half_sent_web_requests_count_toward_the_limits_and_time_out() {
    let mut settings = config();
    settings.hub.max_per_ip = 2;
    settings.limits.handshake_timeout = std::time::Duration::from_millis(300);
    let server = start(settings).await;
    let web = server.web.unwrap();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(web).await.unwrap();
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: loc")
            .await
            .unwrap();
        slow.push(socket);
    }
    // Past the limit now: a third web connection gets a 503, and a TCP
    // newcomer from the same address is refused.
    let mut third = TcpStream::connect(web).await.unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let refusal = read_to_close(&mut tcp).await;
    assert!(refusal.contains("too many connections"), "{refusal}");
    // The half-sent requests are closed at the timeout, and their places
    // given back.
    for socket in &mut slow {
        expect_closed(socket).await;
    }
    let mut client = server.client_named("after").await;
    client.send("in at last").await;
    client.expect("[lobby] after: in at last").await;
    server.stop().await;
}

/// DNS rebinding: an attacker's page, its domain now pointed at 127.0.0.1,
/// sends its own name as `Host` and `Origin`. The server answers only to
/// addresses, localhost and the names its operator gives.
#[tokio::test]
async fn a_rebound_host_name_is_refused() {
    let mut settings = config();
    settings.web_hosts = vec!["chat.example.org".into()];
    let server = start(settings).await;
    let web = server.web.unwrap();
    let ask = |head: String| async move {
        let mut socket = TcpStream::connect(web).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        read_to_close(&mut socket).await
    };
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let rebound = ask(format!(
        "GET /ws HTTP/1.1\r\nHost: evil.example:{}\r\nOrigin: http://evil.example:{}\r\n{upgrade}\r\n",
        web.port(),
        web.port()
    ))
    .await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("--web-host"), "{rebound}");
    let page =
        ask("GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".into()).await;
    assert!(page.starts_with("HTTP/1.1 421"), "{page}");
    let metrics =
        ask("GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".into())
            .await;
    assert!(!metrics.contains("sockchat_"), "{metrics}");
    for host in [
        "chat.example.org".to_string(),
        "localhost".into(),
        web.to_string(),
    ] {
        let page = ask(format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert!(page.starts_with("HTTP/1.1 200"), "{host}: {page}");
    }
    server.stop().await;
}

/// A server's WebSocket frames up to the close frame: the text frames'
/// payloads, and the close code.
async fn frames_until_close(socket: &mut TcpStream) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let read = async {
        loop {
            let mut head = [0u8; 2];
            if socket.read_exact(&mut head).await.is_err() {
                return None;
            }
            let length = match head[1] & 0x7f {
                126 => u64::from(socket.read_u16().await.ok()?),
                127 => socket.read_u64().await.ok()?,
                short => u64::from(short),
            };
            let mut payload = vec![0u8; length as usize];
            socket.read_exact(&mut payload).await.ok()?;
            match head[0] & 0x0f {
                0x1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                0x8 => {
                    return payload
                        .get(..2)
                        .map(|code| u16::from_be_bytes([code[0], code[1]]))
                }
                _ => {}
            }
        }
    };
    let code = tokio::time::timeout(common::PATIENCE, read)
        .await
        .expect("the server closes the WebSocket");
    (texts, code)
}

/// A masked client frame (mask of zeros: the payload goes as it is).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// A WebSocket peer that breaks the protocol is told why with the close
/// code RFC 6455 gives the breach, after a `bye` saying it in words.
#[tokio::test]
async fn websocket_protocol_errors_close_with_their_code() {
    let server = start(config()).await;
    let mut bystander = server.client_named("bystander").await;
    let web = server.web.unwrap();
    let cases: [(Vec<u8>, u16, &str); 3] = [
        // Reserved bits set with no extension negotiated.
        (client_frame(0xc1, b"{}"), 1002, "standard forbids"),
        (client_frame(0x81, b"\xff\xfe"), 1007, "not UTF-8"),
        {
            // A text frame announcing 16 MiB.
            let mut frame = vec![0x81, 0x80 | 127];
            frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            (frame, 1009, "over the server's cap")
        },
    ];
    for (frame, code, told) in cases {
        let mut socket = raw_websocket(web).await;
        socket.write_all(&frame).await.unwrap();
        let (texts, closed_with) = frames_until_close(&mut socket).await;
        assert_eq!(closed_with, Some(code), "{texts:?}");
        let bye = texts.last().expect("a bye before the close");
        assert!(
            bye.contains(r#""type":"bye""#) && bye.contains("protocol_error"),
            "{bye}"
        );
        assert!(bye.contains(told), "{bye}");
    }
    bystander.send("still here").await;
    bystander.expect("[lobby] bystander: still here").await;
    server.stop().await;
}

/// With few file descriptors, `--max-clients` is capped to what the limit
/// allows (and the log says so), and every newcomer gets a word: a
/// welcome, or "server full" and a close. None is left in silence.
#[tokio::test]
async fn out_of_descriptors_every_newcomer_hears_welcome_or_server_full() {
    let limit = 96;
    let mut server = common::process::ServerProcess::start_with_fd_limit(
        &["--tcp", "127.0.0.1:0", "--no-history"],
        Some(limit),
    )
    .await;
    let capped = server.expect_log("--max-clients capped").await;
    assert!(capped.contains("capped=64"), "{capped}");
    let mut sockets = Vec::new();
    let (mut welcomed, mut full) = (0, 0);
    for _ in 0..80 {
        let socket = TcpStream::connect(server.addr).await.unwrap();
        let mut client = common::Client::from_stream(socket);
        let first = client.line().await;
        if first.contains("server full") {
            full += 1;
        } else {
            assert!(first.starts_with("* "), "{first}");
            welcomed += 1;
        }
        // Held open, so every place taken stays taken.
        sockets.push(client);
    }
    assert_eq!(welcomed + full, 80);
    assert!(welcomed <= 64, "{welcomed} welcomed");
    assert!(full >= 16, "{full} told the server is full");
    drop(sockets);
    // Places come back: a newcomer is welcomed again.
    let mut seen = String::new();
    // The server may not have seen every close yet: a few tries, bounded.
    for _ in 0..100 {
        let mut late = common::Client::connect(server.addr).await;
        seen = late.line().await;
        if !seen.contains("server full") {
            break;
        }
    }
    assert!(seen.starts_with("* "), "{seen}");
    assert_eq!(server.terminate().await, 0);
}

/// Forged UDP datagrams from many (address, port) pairs: none of them
/// becomes a member, the room hears nothing, the bystanders lose nothing,
/// and everything the server sent them all together stays within the
/// budget for unproven sources.
#[tokio::test]
async fn forged_udp_sources_make_no_members_and_cost_a_bounded_budget() {
    use sockchat::door::udp::{UNPROVEN_BURST, UNPROVEN_BYTES_PER_SEC};
    let server = start(config()).await;
    let udp = server.udp.unwrap();
    let mut watcher = server.client_named("watcher").await;
    let mut talker = server.client_named("talker").await;
    let started = std::time::Instant::now();
    let mut sources = Vec::new();
    for index in 0..200u8 {
        // Sources spread over addresses as well as ports.
        let ip = std::net::Ipv4Addr::new(127, 0, 1 + index / 100, 1 + index % 100);
        sources.push(tokio::net::UdpSocket::bind((ip, 0)).await.unwrap());
    }
    for round in 0..10 {
        for source in &sources {
            source
                .send_to(format!("{round}").as_bytes(), udp)
                .await
                .unwrap();
        }
        talker.send(&format!("still talking {round}")).await;
    }
    // The talker's lines come over TCP and the marker over UDP, so the
    // two doors race: wait for the talker's lines before the marker.
    assert_eq!(watcher.line().await, "* talker joined #lobby");
    for round in 0..10 {
        assert_eq!(
            watcher.line().await,
            format!("[lobby] talker: still talking {round}")
        );
    }
    // Once a real client's line is in the room, every forged datagram
    // before it was handled: one UDP socket reads datagrams in order.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    common::udp_join(&client, udp, "marker").await;
    let elapsed = started.elapsed();
    // Nobody else joined: next come the real client's arrival and line.
    let joined = watcher.line().await;
    assert!(
        joined.starts_with("* guest-") && joined.ends_with(" joined #lobby"),
        "{joined}"
    );
    let said = watcher.line().await;
    assert!(said.ends_with(": marker"), "{said}");
    assert_eq!(server.hub.member_count(), 3);
    let mut answered = 0;
    let mut buf = vec![0u8; 2048];
    for source in &sources {
        while let Ok((len, _)) = source.try_recv_from(&mut buf) {
            answered += len + 28;
        }
    }
    let allowed = UNPROVEN_BURST as f64 + UNPROVEN_BYTES_PER_SEC as f64 * elapsed.as_secs_f64();
    assert!(
        answered as f64 <= allowed,
        "{answered} bytes sent back, {allowed} allowed"
    );
    talker.send("after").await;
    watcher.expect("talker: after").await;
    server.stop().await;
}
