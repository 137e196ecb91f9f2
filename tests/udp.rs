//! The UDP door through real UDP sockets: bare clients, structured clients,
//! proving an address before it is a member, UDP and TCP in one room,
//! limits, expiry, and our client over a lossy link.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{config, config_without_history, start, TestServer};
use sockchat::hub::WordFilter;
use sockchat::protocol::datagram::{ClientDatagram, ServerDatagram};
use sockchat::protocol::{ClientCommand, ServerEvent};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// A plain `sendto`/`recvfrom` client, like the classic exercise's.
struct Bare {
    socket: UdpSocket,
    sent_bytes: usize,
    /// On the wire, IP and UDP headers included: what the amplification
    /// budget counts.
    sent_wire: usize,
    received_wire: usize,
}

/// IPv4 and UDP headers: what each datagram costs beyond its payload.
const HEADERS: usize = 28;

impl Bare {
    async fn new(server: &TestServer) -> Bare {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server.udp.unwrap()).await.unwrap();
        Bare {
            socket,
            sent_bytes: 0,
            sent_wire: 0,
            received_wire: 0,
        }
    }

    /// The code the server's answer to an unproven datagram holds.
    async fn code(&mut self) -> String {
        let hint = self.ask("\n").await;
        code_in(&hint)
    }

    /// A bare client that has proven its address (it sent back the code
    /// from its first answer) and had the short welcome.
    async fn welcomed(server: &TestServer) -> Bare {
        let mut bare = Bare::new(server).await;
        let code = bare.code().await;
        let welcome = bare.ask(&code).await;
        assert!(
            welcome.starts_with("* welcome to sockchat, guest-"),
            "{welcome}"
        );
        bare
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.sent_bytes += bytes.len();
        self.sent_wire += bytes.len() + HEADERS;
        self.socket.send(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; 65_536];
        let len = tokio::time::timeout(common::PATIENCE, self.socket.recv(&mut buf))
            .await
            .expect("an answer arrives in time")
            .unwrap();
        buf.truncate(len);
        self.received_wire += len + HEADERS;
        buf
    }

    /// The first line of the answer to `text` (room traffic may follow).
    async fn ask_first(&mut self, text: &str) -> String {
        let answer = self.ask(text).await;
        answer.lines().next().unwrap_or_default().to_string()
    }

    /// Sends `text` and returns the one answer, as text.
    async fn ask(&mut self, text: &str) -> String {
        self.send(text.as_bytes()).await;
        String::from_utf8(self.recv().await).unwrap()
    }

    /// Every datagram already waiting, without blocking.
    fn waiting(&self) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        std::iter::from_fn(|| match self.socket.try_recv(&mut buf) {
            Ok(len) => Some(buf[..len].to_vec()),
            Err(_) => None,
        })
        .collect()
    }
}

/// The code in a hint to an unproven address: its one word of eight
/// letters and digits.
fn code_in(hint: &str) -> String {
    assert!(hint.starts_with("* "), "a hint: {hint}");
    hint.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| word.len() == 8)
        .unwrap_or_else(|| panic!("no code in {hint:?}"))
        .to_string()
}

/// A structured client, driven by hand.
struct Structured {
    socket: UdpSocket,
    next_id: u64,
    /// The token of the server's `retry`, sent as proof.
    token: Option<String>,
}

impl Structured {
    async fn new(server: &TestServer) -> Structured {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server.udp.unwrap()).await.unwrap();
        Structured {
            socket,
            next_id: 1,
            token: None,
        }
    }

    async fn recv(&mut self) -> ServerDatagram {
        let mut buf = vec![0u8; 65_536];
        let len = tokio::time::timeout(common::PATIENCE, self.socket.recv(&mut buf))
            .await
            .expect("a datagram arrives in time")
            .unwrap();
        serde_json::from_slice(&buf[..len]).unwrap()
    }

    /// Sends a command (again with the proof, if the server asks for it,
    /// as our client does) and returns the events of its ack, skipping
    /// pushes.
    async fn request(&mut self, cmd: Option<ClientCommand>) -> Vec<ServerEvent> {
        let mut datagram = ClientDatagram {
            id: self.next_id,
            cmd,
            proof: self.token.clone(),
            pad: None,
        };
        self.next_id += 1;
        self.socket.send(&datagram.encode()).await.unwrap();
        loop {
            match self.recv().await {
                ServerDatagram::Ack { ack, events } => {
                    assert_eq!(ack, datagram.id);
                    return events;
                }
                ServerDatagram::Retry { ack, token } => {
                    assert_eq!(ack, datagram.id);
                    datagram.proof = Some(token.clone());
                    self.token = Some(token);
                    self.socket.send(&datagram.encode()).await.unwrap();
                }
                ServerDatagram::Push { .. } => {}
            }
        }
    }

    /// The events of the next push.
    async fn push(&mut self) -> Vec<ServerEvent> {
        loop {
            if let ServerDatagram::Push { events, .. } = self.recv().await {
                return events;
            }
        }
    }
}

fn say(text: &str) -> Option<ClientCommand> {
    Some(ClientCommand::Say {
        text: text.into(),
        room: None,
    })
}

fn texts(events: &[ServerEvent]) -> Vec<String> {
    events.iter().map(ServerEvent::to_text).collect()
}

#[tokio::test]
async fn a_bare_client_gets_exactly_one_answer_showing_the_filter() {
    let mut settings = config();
    settings.hub.filter = WordFilter::new(vec!["sb=alexsb".parse().unwrap()]);
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut bare = Bare::new(&server).await;

    // Not a member yet: the answer is a code to send back, and the line
    // goes nowhere.
    let hint = bare.ask("你好 sb").await;
    assert!(hint.contains("not relayed"), "{hint}");
    let code = code_in(&hint);
    // The code with the line: the welcome, then the message as the room
    // saw it.
    let first = bare.ask(&format!("{code} 你好 sb")).await;
    let lines: Vec<_> = first.lines().collect();
    assert_eq!(
        lines,
        [
            "* welcome to sockchat, guest-2! #lobby, 2 here; /help",
            "你好 alexsb"
        ]
    );
    let relayed = watcher.expect("你好").await;
    assert!(relayed.ends_with(": 你好 alexsb"), "{relayed}");
    assert_eq!(server.hub.member_count(), 2);
    // Exactly one answer each: the next answer is the next message's.
    assert_eq!(bare.ask("second").await, "second");
    assert!(bare.waiting().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn udp_and_tcp_members_share_rooms_both_ways() {
    let server = start(config()).await;
    let mut tcp = server.client_named("tcp").await;
    let mut udp = Structured::new(&server).await;
    let welcome = udp.request(None).await;
    assert!(
        matches!(&welcome[0], ServerEvent::Welcome { .. }),
        "{welcome:?}"
    );
    let renamed = udp
        .request(Some(ClientCommand::Nick { nick: "udp".into() }))
        .await;
    assert_eq!(texts(&renamed), vec!["* guest-2 is now known as udp"]);
    assert_eq!(tcp.expect(" joined").await, "* udp joined #lobby");

    // UDP to TCP: the ack carries the message as the room saw it.
    let ack = udp.request(say("hello from udp 你好")).await;
    assert_eq!(texts(&ack), vec!["[lobby] udp: hello from udp 你好"]);
    assert_eq!(
        tcp.expect("from udp").await,
        "[lobby] udp: hello from udp 你好"
    );
    // TCP to UDP: a push, since this client speaks the structured protocol.
    tcp.send("hello from tcp").await;
    assert_eq!(
        texts(&udp.push().await),
        vec!["[lobby] tcp: hello from tcp"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_retransmitted_datagram_is_answered_again_but_relayed_once() {
    let server = start(config()).await;
    let mut tcp = server.client().await;
    let mut udp = Structured::new(&server).await;
    udp.request(None).await;
    let datagram = ClientDatagram {
        id: udp.next_id,
        cmd: say("only once"),
        proof: None,
        pad: None,
    }
    .encode();
    for _ in 0..3 {
        udp.socket.send(&datagram).await.unwrap();
        let ServerDatagram::Ack { events, .. } = udp.recv().await else {
            panic!("an ack")
        };
        assert_eq!(texts(&events), vec!["[lobby] guest-2: only once"]);
    }
    tcp.expect("only once").await;
    tcp.send("next").await;
    // Had the repeats been relayed, they would come before this line.
    assert_eq!(tcp.expect("guest-").await, "[lobby] guest-1: next");
    server.stop().await;
}

#[tokio::test]
async fn bye_ends_only_its_senders_session() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut leaver = Bare::welcomed(&server).await;
    let mut stayer = Bare::welcomed(&server).await;
    leaver.ask("/nick leaver").await;
    stayer.ask("/nick stayer").await;
    watcher.expect("stayer joined").await;

    assert_eq!(leaver.ask_first("bye").await, "bye");
    assert_eq!(watcher.expect("leaver").await, "* leaver left");
    assert_eq!(stayer.ask_first("still here").await, "still here");
    assert_eq!(watcher.expect("still").await, "[lobby] stayer: still here");
    // The same address comes back as a new member, once it proves itself
    // again.
    let code = leaver.code().await;
    leaver.ask(&format!("{code} again")).await;
    assert!(watcher
        .expect("joined #lobby")
        .await
        .starts_with("* guest-"));
    server.stop().await;
}

/// What a forged source address looks like from the server: datagrams
/// from an address that never sends the code back. It is no member, the
/// room hears nothing of it, and each answer is at most three times its
/// datagram on the wire; a room's traffic never reaches it.
#[tokio::test]
async fn an_unproven_address_is_no_member_and_gets_only_small_answers() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let mut bare = Bare::new(&server).await;
    let structured = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    structured.connect(server.udp.unwrap()).await.unwrap();
    for text in ["hi", "/nick forged", "/join #elsewhere", "x"] {
        let before = (bare.sent_wire, bare.received_wire);
        let answer = bare.ask(text).await;
        assert!(answer.contains(&code_in(&answer)), "{answer}");
        assert!(
            bare.received_wire - before.1 <= 3 * (bare.sent_wire - before.0),
            "{answer:?} for {text:?}"
        );
        let datagram = ClientDatagram {
            id: 1,
            cmd: say("forged"),
            proof: Some("abcdefgh".into()),
            pad: None,
        }
        .encode();
        structured.send(&datagram).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let len = structured.recv(&mut buf).await.unwrap();
        let retry: ServerDatagram = serde_json::from_slice(&buf[..len]).unwrap();
        let ServerDatagram::Retry { ack: 1, .. } = retry else {
            panic!("a retry: {}", String::from_utf8_lossy(&buf[..len]));
        };
        assert!(len + HEADERS <= 3 * (datagram.len() + HEADERS));
    }
    watcher.send("the room talks").await;
    watcher.expect("the room talks").await;
    // Nothing was said, nobody joined: the next thing the watcher sees is
    // its own question's answer, and the room is the watcher alone.
    watcher.send("/who").await;
    assert_eq!(watcher.line().await, "* #lobby has 1: watcher");
    assert_eq!(server.hub.member_count(), 1);
    assert!(
        bare.waiting().is_empty(),
        "no room traffic to an unproven address"
    );
    let mut buf = [0u8; 64];
    assert!(structured.try_recv(&mut buf).is_err(), "no pushes");
    server.stop().await;
}

/// Once proven, a bare client's answers are as long as a datagram allows:
/// help and a crowd's list come whole.
#[tokio::test]
async fn a_proven_bare_client_gets_whole_answers() {
    let server = start(config()).await;
    let mut crowd = Vec::new();
    for index in 0..12 {
        crowd.push(
            server
                .client_named(&format!("a-rather-long-nick-{index}"))
                .await,
        );
    }
    let mut bare = Bare::welcomed(&server).await;
    let help = bare.ask("/help").await;
    assert!(!help.contains('…'), "{help}");
    let who = bare.ask("/who").await;
    assert!(who.contains("a-rather-long-nick-11"), "{who}");
    drop(crowd);
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_invalid_datagrams_get_an_error_and_are_not_relayed() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut bare = Bare::welcomed(&server).await;
    bare.send(&[b'x'; 1201]).await;
    assert_eq!(
        String::from_utf8(bare.recv().await).unwrap(),
        "! datagram of 1201 bytes is over the 1200-byte limit; not relayed"
    );
    let mut invalid = vec![0xff; 60];
    invalid[0] = b'a';
    bare.send(&invalid).await;
    assert_eq!(
        String::from_utf8(bare.recv().await).unwrap(),
        "! datagram is not valid UTF-8; not relayed"
    );
    assert_eq!(bare.ask_first("fine").await, "fine");
    // Neither bad datagram reached the room: the first message seen is "fine".
    assert!(watcher.expect("]").await.ends_with(": fine"));
    server.stop().await;
}

/// The rate on UDP is the rule of every door: past the burst a datagram
/// waits its turn (its answer comes later), and keeping on over the rate
/// is a flood that ends the session. Paused time: no real waiting.
#[tokio::test(start_paused = true)]
async fn over_the_rate_a_datagram_waits_its_turn_and_a_flood_ends_the_session() {
    let mut settings = config_without_history();
    settings.limits.max_rate = 5;
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut bare = Bare::welcomed(&server).await;
    assert!(bare
        .ask("/nick eager")
        .await
        .ends_with("is now known as eager"));
    let line = "a line";
    let started = tokio::time::Instant::now();
    // The burst of five (the nick change was one), then one that waits.
    for _ in 0..5 {
        assert_eq!(bare.ask_first(line).await, line);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // Asking again at once each time: ten in a row over the rate pass,
    // the eleventh is a flood.
    for _ in 0..9 {
        assert_eq!(bare.ask_first(line).await, line);
    }
    assert_eq!(
        bare.ask(line).await,
        "* bye: excess flood: more than 5 messages a second"
    );
    assert_eq!(
        watcher.expect("eager was").await,
        "* eager was disconnected (excess flood)"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_udp_member_expires() {
    let mut settings = config_without_history();
    settings.limits.udp_expiry = Duration::from_secs(5);
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut bare = Bare::welcomed(&server).await;
    bare.ask("/nick quiet").await;
    watcher.expect("quiet joined").await;
    let silent_since = tokio::time::Instant::now();
    assert_eq!(
        watcher.expect("quiet was").await,
        "* quiet was disconnected (no datagram for 5 s)"
    );
    assert!(silent_since.elapsed() >= Duration::from_secs(5));
    server.stop().await;
}

/// Forwards datagrams between one client and the server. `drop_up` and
/// `drop_down` get each datagram's number (from 1) in that direction and
/// say whether to lose it; every datagram from the client is also reported
/// on the returned channel, whether it was forwarded or not.
async fn relay(
    server: SocketAddr,
    drop_up: fn(u64) -> bool,
    drop_down: fn(u64) -> bool,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let outside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    inside.connect(server).await.unwrap();
    let addr = outside.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut client, mut from_client, mut from_server) = (None, 0u64, 0u64);
        let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        loop {
            tokio::select! {
                Ok((len, peer)) = outside.recv_from(&mut up) => {
                    client = Some(peer);
                    from_client += 1;
                    let _ = seen_tx.send(up[..len].to_vec());
                    if !drop_up(from_client) {
                        let _ = inside.send(&up[..len]).await;
                    }
                }
                Ok(len) = inside.recv(&mut down) => {
                    from_server += 1;
                    if let (Some(peer), false) = (client, drop_down(from_server)) {
                        let _ = outside.send_to(&down[..len], peer).await;
                    }
                }
            }
        }
    });
    (addr, seen)
}

fn udp_client(relay: SocketAddr, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sockchat"))
        .args(["connect", "--udp", &relay.to_string()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn our_client_delivers_every_message_exactly_once_over_a_lossy_link() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    // Every 2nd datagram from the client and every 3rd from the server is lost.
    let (relay, _) = relay(server.udp.unwrap(), |n| n % 2 == 0, |n| n % 3 == 0).await;
    let mut client = udp_client(relay, &["--nick", "lossy"]);
    let mut stdin = client.stdin.take().unwrap();
    let input: String = (0..10).map(|index| format!("message {index}\n")).collect();
    stdin.write_all(input.as_bytes()).await.unwrap();
    for index in 0..10 {
        assert_eq!(
            watcher.expect("lossy:").await,
            format!("[lobby] lossy: message {index}")
        );
    }
    drop(stdin);
    let output = tokio::time::timeout(common::PATIENCE, client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    // Had any message been relayed twice, it would come before this line.
    assert_eq!(watcher.expect("lossy").await, "* lossy left");
    // The client showed each acknowledgement once, lost answers and all.
    let shown = String::from_utf8(output.stdout).unwrap();
    for index in 0..10 {
        let line = format!("[lobby] lossy: message {index}\n");
        assert_eq!(shown.matches(&line).count(), 1, "{shown}");
    }
    server.stop().await;
}

#[tokio::test]
async fn our_client_says_plainly_when_a_message_was_probably_lost() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    // The client's hello and its proof get through; nothing after.
    let (relay, _) = relay(server.udp.unwrap(), |n| n > 2, |_| false).await;
    let mut client = udp_client(relay, &[]);
    watcher.expect("joined #lobby").await;
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"doomed\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(common::PATIENCE, client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains(
            "! no answer from the server after 6 tries: your message \"doomed\" was probably lost"
        ),
        "{shown}"
    );
    // "doomed" never reached the room: the first chat line is the marker.
    watcher.send("marker").await;
    assert_eq!(watcher.expect("]").await, "[lobby] guest-1: marker");
    server.stop().await;
}

#[tokio::test]
async fn our_client_keeps_a_quiet_session_alive() {
    let mut settings = config();
    settings.limits.udp_expiry = Duration::from_secs(2);
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let (relay, mut seen) = relay(server.udp.unwrap(), |_| false, |_| false).await;
    let mut client = udp_client(relay, &["--nick", "quiet", "--keepalive", "1"]);
    assert_eq!(watcher.expect(" joined").await, "* quiet joined #lobby");
    // Four keep-alives a second apart span twice the expiry.
    let mut keepalives = 0;
    while keepalives < 4 {
        let datagram = tokio::time::timeout(common::PATIENCE, seen.recv())
            .await
            .unwrap()
            .unwrap();
        let request: ClientDatagram = serde_json::from_slice(&datagram).unwrap();
        if request.cmd.is_none() && request.id > 1 {
            keepalives += 1;
        }
    }
    watcher.send("/who").await;
    assert_eq!(
        watcher.expect("has").await,
        "* #lobby has 2: guest-1, quiet"
    );
    drop(client.stdin.take());
    assert_eq!(client.wait().await.unwrap().code(), Some(0));
    server.stop().await;
}

/// One answer per datagram, in the order sent: a message's answer (its
/// echo, once on disk) comes before the next datagram's error.
#[tokio::test]
async fn answers_come_in_the_order_of_the_datagrams() {
    let server = start(config()).await;
    let mut bare = Bare::welcomed(&server).await;
    let line = "a message";
    bare.send(line.as_bytes()).await;
    bare.send(&[0xff; 64]).await;
    assert_eq!(String::from_utf8(bare.recv().await).unwrap(), line);
    assert_eq!(
        String::from_utf8(bare.recv().await).unwrap(),
        "! datagram is not valid UTF-8; not relayed"
    );
    server.stop().await;
}

/// A JSON object with an id is a structured datagram: one that does not
/// parse gets an error, and its JSON is never said in the room.
#[tokio::test]
async fn a_malformed_structured_datagram_is_refused_not_relayed() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut bare = Bare::welcomed(&server).await;
    let datagram = format!(
        r#"{{"id":1,"cmd":{{"type":"mode","mode":"json"}},"pad":"{}"}}"#,
        " ".repeat(100)
    );
    let answer = bare.ask(&datagram).await;
    assert!(answer.starts_with("! not a datagram: "), "{answer}");
    // Text that merely starts with a brace is chat.
    assert_eq!(bare.ask("{braces are fine}").await, "{braces are fine}");
    assert!(watcher
        .expect("guest-2:")
        .await
        .ends_with(": {braces are fine}"));
    server.stop().await;
}
