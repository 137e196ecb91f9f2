//! The IRC door with real sockets: registration, the same rooms as every
//! other door, numerics for what is wrong, and hostile input.

mod common;

use std::time::Duration;

use common::{config, start, udp_join, Client, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// An IRC client: lines without their CR LF.
struct Irc {
    client: Client,
}

impl Irc {
    async fn connect(server: std::net::SocketAddr) -> Irc {
        Irc {
            client: Client::connect(server).await,
        }
    }

    /// Connects and registers as `nick`; the welcome burst is read to its
    /// end (422, no MOTD).
    async fn registered(server: std::net::SocketAddr, nick: &str) -> Irc {
        let mut irc = Irc::connect(server).await;
        irc.send(&format!("NICK {nick}")).await;
        irc.send(&format!("USER {nick} 0 * :{nick} the tester"))
            .await;
        let welcome = irc.expect(" 001 ").await;
        assert!(
            welcome.starts_with(&format!(":sockchat 001 {nick} :Welcome")),
            "{welcome}"
        );
        irc.expect(" 422 ").await;
        irc
    }

    async fn send(&mut self, line: &str) {
        self.client
            .send_bytes(format!("{line}\r\n").as_bytes())
            .await;
    }

    async fn line(&mut self) -> String {
        let line = self.client.line().await;
        assert!(line.ends_with('\r'), "IRC lines end with CR LF: {line:?}");
        line.trim_end_matches('\r').to_string()
    }

    /// Reads until a line contains `needle`.
    async fn expect(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let line = self.line().await;
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
            assert!(seen.len() < 500, "no {needle:?} in {seen:#?}");
        }
    }

    /// Joins `channel` and reads to the end of its names.
    async fn join(&mut self, channel: &str) -> Vec<String> {
        self.send(&format!("JOIN {channel}")).await;
        self.expect(&format!(" JOIN {channel}")).await;
        let mut names = Vec::new();
        loop {
            let line = self.line().await;
            if line.contains(" 366 ") {
                return names;
            }
            if let Some((_, list)) = line.split_once(&format!(" = {channel} :")) {
                names.extend(list.split(' ').map(str::to_string));
            }
        }
    }
}

#[tokio::test]
async fn an_irc_client_and_a_text_client_talk_in_one_room() {
    let server = start(config()).await;
    let mut text = server.client_named("nc_user").await;
    let mut irc = Irc::registered(server.irc.unwrap(), "weechat").await;
    let names = irc.join("#lobby").await;
    assert!(names.contains(&"nc_user".to_string()) && names.contains(&"weechat".to_string()));
    assert_eq!(text.expect(" joined").await, "* weechat joined #lobby");

    irc.send("PRIVMSG #lobby :你好, nc").await;
    assert_eq!(text.expect("weechat").await, "[lobby] weechat: 你好, nc");
    text.send("hello irc").await;
    assert_eq!(
        irc.expect("PRIVMSG").await,
        ":nc_user!nc_user@sockchat PRIVMSG #lobby :hello irc"
    );
    // Actions both ways, as CTCP ACTION.
    irc.send("PRIVMSG #lobby :\u{1}ACTION waves\u{1}").await;
    assert_eq!(text.expect("waves").await, "[lobby] * weechat waves");
    text.send("/me nods").await;
    assert_eq!(
        irc.expect("PRIVMSG").await,
        ":nc_user!nc_user@sockchat PRIVMSG #lobby :\u{1}ACTION nods\u{1}"
    );
    // Private messages both ways.
    irc.send("PRIVMSG nc_user :just you").await;
    assert_eq!(
        text.expect("[private]").await,
        "[private] weechat -> nc_user: just you"
    );
    text.send("/msg weechat back at you").await;
    assert_eq!(
        irc.expect("PRIVMSG").await,
        ":nc_user!nc_user@sockchat PRIVMSG weechat :back at you"
    );
    // Nick changes are seen on both sides; a nick another door holds is
    // refused.
    irc.send("NICK nc_user").await;
    assert_eq!(
        irc.expect(" 433 ").await,
        ":sockchat 433 weechat nc_user :Nickname is already in use"
    );
    irc.send("NICK irssi").await;
    assert_eq!(
        irc.expect(" NICK ").await,
        ":weechat!weechat@sockchat NICK irssi"
    );
    assert_eq!(
        text.expect("known as").await,
        "* weechat is now known as irssi"
    );
    text.send("/nick ncat").await;
    assert_eq!(
        irc.expect(" NICK ").await,
        ":nc_user!nc_user@sockchat NICK ncat"
    );
    // Leaving: PART, then QUIT with its reason.
    irc.send("PART #lobby").await;
    assert_eq!(
        irc.expect(" PART ").await,
        ":irssi!irssi@sockchat PART #lobby"
    );
    assert_eq!(text.expect(" left").await, "* irssi left #lobby");
    irc.join("#lobby").await;
    irc.send("QUIT :see you").await;
    assert!(irc.expect("ERROR").await.starts_with("ERROR :Closing Link"));
    assert_eq!(text.expect(" left").await, "* irssi left (see you)");
    server.stop().await;
}

#[tokio::test]
async fn the_web_and_udp_doors_reach_irc_and_irc_reaches_them() {
    let server = start(config()).await;
    let mut irc = Irc::registered(server.irc.unwrap(), "bot").await;
    irc.join("#lobby").await;

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.web.unwrap()))
            .await
            .unwrap();
    let send = r#"{"type":"say","text":"from the page"}"#;
    socket.send(Message::Text(send.into())).await.unwrap();
    let line = irc.expect("from the page").await;
    assert!(line.ends_with(" PRIVMSG #lobby :from the page"), "{line}");
    let guest = line[1..].split('!').next().unwrap().to_string();

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = udp_join(&udp, server.udp.unwrap(), "from a datagram").await;
    assert!(answer.contains("from a datagram"), "{answer}");
    let line = irc.expect("from a datagram").await;
    assert!(line.ends_with(" PRIVMSG #lobby :from a datagram"), "{line}");

    irc.send("PRIVMSG #lobby :to every door").await;
    let heard = async {
        loop {
            let frame = socket.next().await.unwrap().unwrap();
            if frame.to_text().unwrap().contains("to every door") {
                return frame.to_text().unwrap().to_string();
            }
        }
    };
    let heard = tokio::time::timeout(PATIENCE, heard).await.unwrap();
    assert!(heard.contains(r#""from":"bot""#), "{heard}");
    // The UDP member pulls what it was sent with its next datagram.
    let mut seen = String::new();
    for _ in 0..50 {
        udp.send_to(b"", server.udp.unwrap()).await.unwrap();
        seen = common::udp_answer(&udp).await;
        if seen.contains("to every door") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.contains("bot: to every door"), "{seen}");
    // The web member's nick is the one IRC saw.
    assert!(guest.starts_with("guest-"), "{guest}");
    server.stop().await;
}

#[tokio::test]
async fn registration_answers_caps_pings_and_what_comes_too_soon() {
    let server = start(config()).await;
    let mut irc = Irc::connect(server.irc.unwrap()).await;
    irc.send("CAP LS 302").await;
    let ls = irc.expect("CAP * LS").await;
    for cap in ["cap-notify", "echo-message", "message-tags", "server-time"] {
        assert!(ls.contains(cap), "{ls}");
    }
    irc.send("JOIN #early").await;
    assert_eq!(irc.line().await, ":sockchat 451 * :You have not registered");
    irc.send("CAP REQ :server-time sasl").await;
    assert_eq!(irc.line().await, ":sockchat CAP * NAK :server-time sasl");
    irc.send("CAP REQ :server-time echo-message").await;
    assert_eq!(
        irc.line().await,
        ":sockchat CAP * ACK :server-time echo-message"
    );
    irc.send("PING :early").await;
    assert_eq!(irc.line().await, ":sockchat PONG sockchat :early");
    irc.send("NICK tester").await;
    irc.send("USER tester 0 * :Tester").await;
    // Held until CAP END.
    irc.send("PING :still-registering").await;
    assert_eq!(
        irc.line().await,
        ":sockchat PONG sockchat :still-registering"
    );
    irc.send("CAP END").await;
    irc.expect(" 005 ").await;
    irc.expect(" 422 ").await;
    // echo-message: the sender sees its own message, with its time.
    irc.join("#caps").await;
    irc.send("PRIVMSG #caps :echoed").await;
    let echo = irc.expect("echoed").await;
    assert!(
        echo.starts_with("@time=") && echo.ends_with(" PRIVMSG #caps :echoed"),
        "{echo}"
    );
    irc.send("CAP LIST").await;
    assert_eq!(
        irc.line().await,
        ":sockchat CAP tester LIST :cap-notify echo-message server-time"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_commands_get_their_numerics_and_the_connection_stays() {
    let server = start(config()).await;
    let mut irc = Irc::registered(server.irc.unwrap(), "numerics").await;
    for (line, answer) in [
        (
            "FROBNICATE now",
            ":sockchat 421 numerics FROBNICATE :Unknown command",
        ),
        (
            "PRIVMSG",
            ":sockchat 411 numerics :No recipient given (PRIVMSG)",
        ),
        ("PRIVMSG #lobby", ":sockchat 412 numerics :No text to send"),
        ("JOIN", ":sockchat 461 numerics JOIN :Not enough parameters"),
        (
            "PRIVMSG nobody :hi",
            ":sockchat 401 numerics nobody :No such nick/channel",
        ),
        (
            "PRIVMSG #elsewhere :hi",
            ":sockchat 404 numerics #elsewhere :Cannot send to channel",
        ),
        (
            "PART #elsewhere",
            ":sockchat 442 numerics #elsewhere :You're not on that channel",
        ),
        (
            "USER again 0 * :x",
            ":sockchat 462 numerics :You may not reregister",
        ),
        (
            "JOIN nohash",
            ":sockchat 403 numerics nohash :No such channel",
        ),
        ("PING", ":sockchat 409 numerics :No origin specified"),
    ] {
        irc.send(line).await;
        assert_eq!(irc.line().await, answer, "for {line:?}");
    }
    irc.send("PING :alive").await;
    assert_eq!(irc.line().await, ":sockchat PONG sockchat :alive");
    server.stop().await;
}

#[tokio::test]
async fn hostile_input_is_refused_line_by_line_and_never_relayed_raw() {
    let server = start(config()).await;
    let mut watcher = Irc::registered(server.irc.unwrap(), "watcher").await;
    watcher.join("#lobby").await;
    // Registration one byte at a time.
    let mut slow = Irc::connect(server.irc.unwrap()).await;
    for byte in b"NICK slow\r\nUSER slow 0 * :Slow\r\n" {
        slow.client.send_bytes(&[*byte]).await;
    }
    slow.expect(" 001 slow ").await;
    slow.join("#lobby").await;
    // Overlong: 417, and the connection goes on.
    slow.send(&format!("PRIVMSG #lobby :{}", "x".repeat(600)))
        .await;
    assert_eq!(
        slow.expect(" 417 ").await,
        ":sockchat 417 slow :Input line was too long"
    );
    // NUL and a lone CR inside a line reach nobody raw: no line can be
    // smuggled into another client's stream.
    slow.client
        .send_bytes(b"PRIVMSG #lobby :a\0b\rPRIVMSG #lobby :smuggled\r\n")
        .await;
    let seen = watcher.expect("PRIVMSG").await;
    assert!(!seen.contains('\0') && !seen.contains('\r'), "{seen:?}");
    assert!(
        seen.starts_with(":slow!slow@sockchat PRIVMSG #lobby :a"),
        "{seen}"
    );
    // Not UTF-8: FAIL, and the connection goes on.
    slow.client
        .send_bytes(b"PRIVMSG #lobby :\xff\xfe\r\n")
        .await;
    assert!(slow.expect("FAIL").await.contains("INVALID_UTF8"));
    slow.send("PRIVMSG #lobby :still here").await;
    assert!(watcher.expect("PRIVMSG").await.ends_with(":still here"));
    server.stop().await;
}

#[tokio::test]
async fn http_on_the_irc_port_and_irc_on_the_text_port_are_told_where_to_go() {
    let server = start(config()).await;
    let mut http = Irc::connect(server.irc.unwrap()).await;
    http.send("GET / HTTP/1.1").await;
    assert_eq!(
        http.line().await,
        "ERROR :Closing Link: this port speaks IRC"
    );
    assert!(http.client.try_line().await.is_none(), "closed after");

    let mut watcher = server.client().await;
    let mut lost = Client::connect(server.addr).await;
    lost.expect("welcome").await;
    lost.send_bytes(b"NICK lost\r\nUSER lost 0 * :Lost\r\n")
        .await;
    let irc_at = server.irc.unwrap();
    let told = lost.expect("ERROR").await;
    assert_eq!(
        told.trim_end_matches('\r'),
        format!("ERROR :this port speaks plain text lines, not IRC: IRC is at {irc_at}")
    );
    assert!(lost.try_line().await.is_none(), "closed after");
    // Nothing it sent was chat.
    watcher.send("/who").await;
    let who = watcher.expect("#lobby has").await;
    assert!(!who.contains("lost") && !who.contains("NICK"), "{who}");
    server.stop().await;
}

#[tokio::test]
async fn registration_that_never_ends_is_closed_at_the_timeout() {
    let mut settings = config();
    settings.limits.handshake_timeout = Duration::from_millis(300);
    let server = start(settings).await;
    let mut stalled = Irc::connect(server.irc.unwrap()).await;
    stalled.send("NICK stalled").await;
    assert_eq!(
        stalled.line().await,
        "ERROR :Closing Link: registration timed out"
    );
    assert!(stalled.client.try_line().await.is_none());
    // Its nick was never taken.
    let mut next = Irc::registered(server.irc.unwrap(), "stalled").await;
    next.send("PING :ok").await;
    assert_eq!(next.line().await, ":sockchat PONG sockchat :ok");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_is_cut_with_an_irc_error() {
    let mut settings = config();
    settings.limits.max_rate = 5;
    let server = start(settings).await;
    let mut flooder = Irc::registered(server.irc.unwrap(), "flooder").await;
    flooder.join("#lobby").await;
    let burst: String = (0..200)
        .map(|n| format!("PRIVMSG #lobby :{n}\r\n"))
        .collect();
    flooder.client.send_bytes(burst.as_bytes()).await;
    let error = flooder.expect("ERROR").await;
    assert!(
        error.starts_with("ERROR :Closing Link: ") && error.contains("flood"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn irc_over_tls_chats_with_a_plain_irc_client() {
    use sockchat::tls::trust::{Authorities, Expected, ServerTrust, TrustPolicy};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::config_with_tls(dir.path());
    settings.irc_tls = Some("127.0.0.1:0".parse().unwrap());
    let server = start(settings).await;
    let mut plain = Irc::registered(server.irc.unwrap(), "plain").await;
    plain.join("#lobby").await;

    // Trusted by the generated certificate's fingerprint, as a pinning
    // client does.
    let policy = TrustPolicy {
        authorities: Authorities::Nothing,
        expected: Some(Expected::Given(common::generated_fingerprint(dir.path()))),
    };
    let trust = ServerTrust::new(policy, false).unwrap();
    let connector = tokio_rustls::TlsConnector::from(ServerTrust::client_config(&trust).unwrap());
    let tcp = tokio::net::TcpStream::connect(server.ircs.unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("the handshake");
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = BufReader::new(reader).lines();
    writer
        .write_all(
            b"NICK secure\r\nUSER secure 0 * :S\r\nJOIN #lobby\r\nPRIVMSG #lobby :over tls\r\n",
        )
        .await
        .unwrap();
    writer.flush().await.unwrap();
    assert_eq!(
        plain.expect("over tls").await,
        ":secure!secure@sockchat PRIVMSG #lobby :over tls"
    );
    plain.send("PRIVMSG #lobby :back in plain").await;
    let heard = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("back in plain") {
                return line;
            }
        }
        panic!("closed");
    };
    let heard = tokio::time::timeout(PATIENCE, heard).await.unwrap();
    assert_eq!(heard, ":plain!plain@sockchat PRIVMSG #lobby :back in plain");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_pinged_and_dropped_when_it_does_not_answer() {
    let mut settings = config();
    settings.limits.keepalive = Some(sockchat::session::Keepalive {
        every: Duration::from_millis(200),
        answer_within: Duration::from_millis(300),
    });
    let server = start(settings).await;
    // Other doors have no such rule: the text client stays silent.
    let mut watcher = server.client().await;
    let mut answering = Irc::registered(server.irc.unwrap(), "answering").await;
    let mut silent = Irc::registered(server.irc.unwrap(), "silent").await;
    silent.join("#lobby").await;
    // The one that answers stays, ping after ping.
    for _ in 0..3 {
        assert_eq!(answering.expect("PING").await, ":sockchat PING :sockchat");
        answering.send("PONG :sockchat").await;
    }
    assert_eq!(silent.expect("PING").await, ":sockchat PING :sockchat");
    let error = silent.expect("ERROR").await;
    assert!(error.starts_with("ERROR :Closing Link: "), "{error}");
    assert!(silent.client.try_line().await.is_none(), "closed");
    // Its rooms hear why it left.
    let left = watcher.expect("silent was").await;
    assert!(
        left.starts_with("* silent was disconnected (no answer"),
        "{left}"
    );
    answering.send("PING :still").await;
    assert_eq!(
        answering.expect("PONG").await,
        ":sockchat PONG sockchat :still"
    );
    server.stop().await;
}

#[tokio::test]
async fn whoever_makes_a_room_runs_it_topic_modes_and_kicks() {
    let server = start(config()).await;
    let mut op = Irc::registered(server.irc.unwrap(), "chanop").await;
    let names = op.join("#ops").await;
    assert_eq!(names, ["@chanop"]);
    let mut guest = Irc::registered(server.irc.unwrap(), "guest").await;
    let names = guest.join("#ops").await;
    assert_eq!(names, ["@chanop", "guest"]);
    let mut text = server.client_named("texter").await;
    text.send("/join #ops").await;
    text.expect("#ops has").await;

    // +t: only operators set the topic.
    guest.send("TOPIC #ops :mine now").await;
    assert_eq!(
        guest.expect(" 482 ").await,
        ":sockchat 482 guest #ops :You're not channel operator"
    );
    op.send("TOPIC #ops :welcome, 你好").await;
    let topic = ":chanop!chanop@sockchat TOPIC #ops :welcome, 你好";
    assert_eq!(guest.expect(" TOPIC ").await, topic);
    assert_eq!(
        text.expect("topic").await,
        "* chanop set the topic of #ops: welcome, 你好"
    );
    guest.send("TOPIC #ops").await;
    assert_eq!(
        guest.line().await,
        ":sockchat 332 guest #ops :welcome, 你好"
    );
    assert!(guest
        .line()
        .await
        .starts_with(":sockchat 333 guest #ops chanop!chanop@sockchat "));
    // MODE: the query, +o for another, and who may not.
    op.send("MODE #ops").await;
    assert_eq!(op.expect(" 324 ").await, ":sockchat 324 chanop #ops +nt");
    assert!(op.line().await.starts_with(":sockchat 329 chanop #ops "));
    guest.send("MODE #ops +o texter").await;
    assert_eq!(
        guest.line().await,
        ":sockchat 482 guest #ops :You're not channel operator"
    );
    op.send("MODE #ops +o nobody").await;
    assert_eq!(
        op.line().await,
        ":sockchat 401 chanop nobody :No such nick/channel"
    );
    op.send("MODE #ops +o guest").await;
    assert_eq!(
        guest.expect(" MODE ").await,
        ":chanop!chanop@sockchat MODE #ops +o guest"
    );
    assert_eq!(
        text.expect("sets mode").await,
        "* chanop sets mode +o guest on #ops"
    );
    // A voice: shown with +, no powers.
    op.send("MODE #ops +v texter").await;
    assert_eq!(
        text.expect("sets mode").await,
        "* chanop sets mode +v texter on #ops"
    );
    op.send("NAMES #ops").await;
    assert_eq!(
        op.expect(" 353 ").await,
        ":sockchat 353 chanop = #ops :@chanop @guest +texter"
    );
    text.send("/topic mine now").await;
    text.expect("only the operators of #ops").await;
    // The new operator kicks the text member, with a reason.
    guest.send("KICK #ops texter :too loud").await;
    assert_eq!(
        op.expect(" KICK ").await,
        ":guest!guest@sockchat KICK #ops texter :too loud"
    );
    assert_eq!(
        text.expect("kicked").await,
        "* texter was kicked from #ops by guest (too loud)"
    );
    op.send("NAMES #ops").await;
    assert_eq!(
        op.expect(" 353 ").await,
        ":sockchat 353 chanop = #ops :@chanop @guest"
    );
    // PART with a reason.
    guest.send("PART #ops :lunch").await;
    assert_eq!(
        op.expect(" PART ").await,
        ":guest!guest@sockchat PART #ops :lunch"
    );
    server.stop().await;
}

#[tokio::test]
async fn whois_who_away_ison_userhost_and_lusers() {
    let server = start(config()).await;
    let mut me = Irc::registered(server.irc.unwrap(), "asker").await;
    let mut other = Irc::connect(server.irc.unwrap()).await;
    other.send("NICK coolNick").await;
    other.send("USER myuser 0 * :My Real Name").await;
    other.expect(" 422 ").await;
    other.join("#room").await;
    let _text = server.client_named("texter").await;

    me.send("WHOIS coolnick").await;
    assert_eq!(
        me.line().await,
        ":sockchat 311 asker coolNick myuser sockchat * :My Real Name"
    );
    assert_eq!(me.line().await, ":sockchat 319 asker coolNick :@#room");
    assert!(me
        .line()
        .await
        .starts_with(":sockchat 312 asker coolNick sockchat :"));
    assert_eq!(
        me.line().await,
        ":sockchat 318 asker coolNick :End of /WHOIS list"
    );
    me.send("WHOIS ghost").await;
    assert_eq!(
        me.line().await,
        ":sockchat 401 asker ghost :No such nick/channel"
    );
    assert_eq!(
        me.line().await,
        ":sockchat 318 asker ghost :End of /WHOIS list"
    );

    other.send("AWAY :be right back").await;
    assert_eq!(
        other.line().await,
        ":sockchat 306 coolNick :You have been marked as being away"
    );
    me.send("WHO cool*").await;
    assert_eq!(
        me.line().await,
        ":sockchat 352 asker #room myuser sockchat sockchat coolNick G@ :0 My Real Name"
    );
    assert_eq!(
        me.line().await,
        ":sockchat 315 asker cool* :End of /WHO list"
    );
    me.send("PRIVMSG coolNick :there?").await;
    assert_eq!(
        me.line().await,
        ":sockchat 301 asker coolNick :be right back"
    );
    other.send("AWAY").await;
    other.expect(" 305 ").await;

    me.send("ISON texter ghost coolnick").await;
    assert_eq!(me.line().await, ":sockchat 303 asker :texter coolNick");
    me.send("USERHOST coolNick texter").await;
    assert_eq!(
        me.line().await,
        ":sockchat 302 asker :coolNick=+myuser@sockchat texter=+texter@sockchat"
    );
    me.send("LUSERS").await;
    assert_eq!(
        me.line().await,
        ":sockchat 251 asker :There are 3 users and 0 invisible on 1 servers"
    );
    server.stop().await;
}

#[tokio::test]
async fn history_comes_as_a_chathistory_batch_to_clients_that_ask() {
    let server = start(config()).await;
    let mut text = server.client_named("teller").await;
    for said in ["one", "two", "three"] {
        text.send(said).await;
        text.expect(&format!("teller: {said}")).await;
    }
    let mut irc = Irc::connect(server.irc.unwrap()).await;
    irc.send("CAP LS 302").await;
    irc.send("NICK reader").await;
    irc.send("USER reader 0 * :Reader").await;
    irc.send("CAP REQ :batch draft/chathistory server-time message-tags")
        .await;
    irc.expect(" ACK ").await;
    irc.send("CAP END").await;
    assert!(irc.expect(" 005 ").await.contains(" CHATHISTORY=100 "));
    irc.expect(" 422 ").await;

    // The batch on join: each message with its batch, time and id.
    irc.send("JOIN #lobby").await;
    irc.expect(" JOIN #lobby").await;
    let start = irc.expect("BATCH +").await;
    assert_eq!(start, ":sockchat BATCH +history1 chathistory #lobby");
    let mut ids = Vec::new();
    for said in ["one", "two", "three"] {
        let line = irc.line().await;
        let (tags, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            format!(":teller!teller@sockchat PRIVMSG #lobby :{said}")
        );
        let tags = tags
            .strip_prefix("@batch=history1;time=")
            .expect("batch, then time");
        let (time, id) = tags.split_once(";msgid=").unwrap();
        assert!(
            sockchat::protocol::irc::parse_server_time(time).is_some(),
            "{time}"
        );
        ids.push(id.parse::<u64>().unwrap());
    }
    assert_eq!(irc.line().await, ":sockchat BATCH -history1");
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");

    // CHATHISTORY: before, after and latest, from the store.
    let said = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|line| {
                line.rsplit_once(" PRIVMSG #lobby :")
                    .map(|(_, text)| text.to_string())
            })
            .collect()
    };
    let batch = async |irc: &mut Irc, command: String| {
        irc.send(&command).await;
        irc.expect("BATCH +").await;
        let mut lines = Vec::new();
        loop {
            let line = irc.line().await;
            if line.contains("BATCH -") {
                return lines;
            }
            lines.push(line);
        }
    };
    let before = batch(
        &mut irc,
        format!("CHATHISTORY BEFORE #lobby msgid={} 10", ids[2]),
    )
    .await;
    assert_eq!(said(&before), ["one", "two"]);
    let after = batch(
        &mut irc,
        format!("CHATHISTORY AFTER #lobby msgid={} 10", ids[0]),
    )
    .await;
    assert_eq!(said(&after), ["two", "three"]);
    let latest = batch(&mut irc, "CHATHISTORY LATEST #lobby * 2".to_string()).await;
    assert_eq!(said(&latest), ["two", "three"]);
    irc.send("CHATHISTORY LATEST teller * 10").await;
    assert!(irc
        .line()
        .await
        .starts_with(":sockchat FAIL CHATHISTORY INVALID_TARGET"));

    // A client that did not ask gets no replay: the names come, then the
    // next thing said.
    let mut plain = Irc::registered(server.irc.unwrap(), "plain").await;
    plain.send("JOIN #lobby").await;
    plain.expect(" 366 ").await;
    text.send("four").await;
    assert_eq!(
        plain.line().await,
        ":teller!teller@sockchat PRIVMSG #lobby :four"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_irc_client_gets_every_name_of_a_big_room_on_joining() {
    let mut settings = config();
    settings.hub.big_room = 3;
    let server = start(settings).await;
    let mut crowd = Vec::new();
    for n in 0..5 {
        let mut member = server.client_named(&format!("member{n}")).await;
        member.send("/join #big").await;
        member.expect("#big has").await;
        crowd.push(member);
    }
    // A text member joining past --big-room gets the count only...
    let mut late = server.client_named("late").await;
    late.send("/join #big").await;
    assert_eq!(
        late.expect("#big has").await,
        "* #big has 6 members; /who #big lists them"
    );
    // ... an IRC client, every name, across lines when they do not fit one.
    let mut irc = Irc::registered(server.irc.unwrap(), "ircuser").await;
    let names = irc.join("#big").await;
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(
        names.iter().any(|name| name == "@member0"),
        "the room's maker runs it: {names:?}"
    );
    assert!(names.contains(&"ircuser".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn a_secret_room_is_listed_only_to_its_members() {
    let server = start(config()).await;
    let mut owner = Irc::registered(server.irc.unwrap(), "owner").await;
    owner.join("#hidden").await;
    owner.join("#open").await;
    owner.send("MODE #hidden +s").await;
    assert_eq!(
        owner.expect(" MODE ").await,
        ":owner!owner@sockchat MODE #hidden +s"
    );
    owner.send("NAMES #hidden").await;
    assert_eq!(owner.line().await, ":sockchat 353 owner @ #hidden :@owner");
    owner.send("MODE #hidden").await;
    assert_eq!(
        owner.expect(" 324 ").await,
        ":sockchat 324 owner #hidden +nst"
    );
    let mut stranger = Irc::registered(server.irc.unwrap(), "stranger").await;
    stranger.send("LIST").await;
    let mut listed = Vec::new();
    loop {
        let line = stranger.line().await;
        if line.contains(" 323 ") {
            break;
        }
        listed.push(line);
    }
    assert!(
        listed.iter().any(|line| line.contains(" #open ")),
        "{listed:?}"
    );
    assert!(
        !listed.iter().any(|line| line.contains("#hidden")),
        "{listed:?}"
    );
    // Its members see it, and so does whoever joins it.
    owner.send("LIST").await;
    assert!(owner.expect(" 322 owner #hidden ").await.contains(" 1 "));
    server.stop().await;
}

#[tokio::test]
async fn an_invisible_member_is_found_only_by_those_who_share_a_room() {
    let server = start(config()).await;
    let mut shy = Irc::registered(server.irc.unwrap(), "shy").await;
    shy.send("MODE shy +i").await;
    assert_eq!(shy.line().await, ":shy!shy@sockchat MODE shy :+i");
    shy.send("MODE shy").await;
    assert_eq!(shy.line().await, ":sockchat 221 shy :+i");
    shy.send("MODE shy +x").await;
    assert_eq!(shy.line().await, ":sockchat 501 shy :Unknown MODE flag");
    shy.join("#quiet").await;

    let mut stranger = Irc::registered(server.irc.unwrap(), "stranger").await;
    stranger.send("WHO sh*").await;
    assert_eq!(
        stranger.line().await,
        ":sockchat 315 stranger sh* :End of /WHO list"
    );
    // By name it is found, and WHOIS answers, as the RFC has it.
    stranger.send("WHO shy").await;
    assert!(stranger
        .line()
        .await
        .starts_with(":sockchat 352 stranger #quiet shy "));
    stranger.expect(" 315 ").await;
    stranger.send("WHOIS shy").await;
    assert!(stranger
        .line()
        .await
        .starts_with(":sockchat 311 stranger shy "));
    // Sharing a room, the mask finds it.
    stranger.join("#quiet").await;
    stranger.send("WHO sh*").await;
    assert!(stranger
        .expect(" 352 ")
        .await
        .contains(" shy H@ :0 shy the tester"));
    // Visible again: found by anyone.
    let mut other = Irc::registered(server.irc.unwrap(), "other").await;
    shy.send("MODE shy -i").await;
    shy.expect("MODE shy :-i").await;
    other.send("WHO s*y").await;
    assert!(other
        .line()
        .await
        .starts_with(":sockchat 352 other #quiet shy "));
    server.stop().await;
}

#[tokio::test]
async fn notices_stay_notices_on_every_door_in_history_and_get_no_away_reply() {
    let server = start(config()).await;
    let mut text = server.client_named("nc_user").await;
    let mut irc = Irc::registered(server.irc.unwrap(), "bot").await;
    irc.join("#lobby").await;
    text.expect("bot joined").await;

    // IRC's NOTICE reaches the text door as a notice, and the text door's
    // /notice reaches IRC as NOTICE, to a room and to a nick.
    irc.send("NOTICE #lobby :build 42 is green").await;
    assert_eq!(
        text.expect("build 42").await,
        "[lobby] -bot- build 42 is green"
    );
    text.send("/notice #lobby deploy at noon").await;
    assert_eq!(
        irc.expect("deploy").await,
        ":nc_user!nc_user@sockchat NOTICE #lobby :deploy at noon"
    );
    text.send("/notice bot just you").await;
    assert_eq!(
        irc.expect("just you").await,
        ":nc_user!nc_user@sockchat NOTICE bot :just you"
    );
    // CTCP other than ACTION is text to the other doors, its control
    // characters made visible.
    irc.send("NOTICE nc_user :\u{1}VERSION weechat\u{1}").await;
    assert_eq!(
        text.expect("VERSION").await,
        "[private] -bot- -> nc_user: \u{2401}VERSION weechat\u{2401}"
    );
    // JSON members see the flag.
    let mut json = server.client_named("json_user").await;
    json.send("/json").await;
    irc.send("NOTICE #lobby :for the json door").await;
    let seen = json.expect("for the json door").await;
    assert!(seen.contains(r#""notice":true"#), "{seen}");

    // Nothing answers a notice by itself: no away reply, where a message
    // gets one.
    irc.send("AWAY :lunch").await;
    irc.expect(" 306 ").await;
    text.send("/notice bot are you there").await;
    irc.expect("are you there").await;
    text.send("/msg bot are you there").await;
    assert_eq!(
        text.expect("are you there").await,
        "[private] -nc_user- -> bot: are you there"
    );
    assert_eq!(text.line().await, "[private] nc_user -> bot: are you there");
    assert_eq!(text.line().await, "* bot is away: lunch");

    // Kept as notices: history on join shows them as NOTICE again.
    let mut reader = Irc::connect(server.irc.unwrap()).await;
    reader.send("CAP REQ :batch draft/chathistory").await;
    reader.send("NICK reader").await;
    reader.send("USER reader 0 * :Reader").await;
    reader.expect(" ACK ").await;
    reader.send("CAP END").await;
    reader.expect(" 422 ").await;
    reader.send("JOIN #lobby").await;
    reader.expect("BATCH +").await;
    assert_eq!(
        reader.expect("build 42").await,
        "@batch=history1 :bot!bot@sockchat NOTICE #lobby :build 42 is green"
    );
    server.stop().await;
}

#[tokio::test]
async fn away_notify_tells_who_asked_for_it_of_every_doors_away_and_back() {
    let server = start(config()).await;
    let mut notified = Irc::connect(server.irc.unwrap()).await;
    notified.send("CAP LS 302").await;
    notified.send("NICK notified").await;
    notified.send("USER notified 0 * :Notified").await;
    assert!(notified.expect(" LS ").await.contains("away-notify"));
    notified.send("CAP REQ away-notify").await;
    notified.expect(" ACK ").await;
    notified.send("CAP END").await;
    notified.expect(" 422 ").await;
    notified.join("#lobby").await;
    let mut plain = Irc::registered(server.irc.unwrap(), "plain").await;
    plain.join("#lobby").await;
    notified.expect(" JOIN #lobby").await;

    let mut text = server.client_named("nc_user").await;
    notified.expect("nc_user!nc_user@sockchat JOIN").await;
    plain.expect("nc_user!nc_user@sockchat JOIN").await;
    text.send("/away at lunch").await;
    assert_eq!(
        notified.line().await,
        ":nc_user!nc_user@sockchat AWAY :at lunch"
    );
    text.send("/away").await;
    assert_eq!(notified.line().await, ":nc_user!nc_user@sockchat AWAY");
    // Text members hear of it too.
    plain.send("AWAY :brb").await;
    assert_eq!(text.expect("plain").await, "* plain is away: brb");
    assert_eq!(notified.line().await, ":plain!plain@sockchat AWAY :brb");
    // The same again changes nothing and tells nobody.
    plain.send("AWAY :brb").await;
    plain.expect(" 306 ").await;
    // An away member arriving says it is away, after its JOIN.
    plain.send("PART #lobby").await;
    notified.expect(" PART ").await;
    plain.join("#lobby").await;
    assert_eq!(notified.line().await, ":plain!plain@sockchat JOIN #lobby");
    assert_eq!(notified.line().await, ":plain!plain@sockchat AWAY :brb");
    // Without the cap: no AWAY lines, the next thing is what comes next.
    text.send("/away gone").await;
    notified.expect("AWAY :gone").await;
    text.send("after the away").await;
    assert_eq!(
        plain.line().await,
        ":nc_user!nc_user@sockchat PRIVMSG #lobby :after the away"
    );
    server.stop().await;
}

#[tokio::test]
async fn invite_only_moderated_and_open_rooms_on_every_door() {
    let server = start(config()).await;
    let mut op = Irc::registered(server.irc.unwrap(), "chanop").await;
    op.join("#club").await;
    let mut text = server.client_named("texter").await;

    // Several flags in one change, answered with one MODE of what changed.
    op.send("MODE #club +imt").await;
    assert_eq!(op.line().await, ":chanop!chanop@sockchat MODE #club +im");
    op.send("MODE #club").await;
    assert_eq!(op.line().await, ":sockchat 324 chanop #club +imnt");
    op.line().await; // 329

    // +i: refused until invited, on any door; the invitation is told to
    // both, and lets the member in once.
    text.send("/join #club").await;
    assert_eq!(
        text.expect("invite").await,
        "! #club is invite only: an operator of it may /invite you"
    );
    op.send("INVITE texter #club").await;
    assert_eq!(op.line().await, ":sockchat 341 chanop texter :#club");
    assert_eq!(
        text.expect("invited").await,
        "* chanop invited texter to #club (/join #club)"
    );
    text.send("/join #club").await;
    op.expect("texter!texter@sockchat JOIN #club").await;
    op.send("INVITE texter #club").await;
    assert_eq!(
        op.line().await,
        ":sockchat 443 chanop texter #club :is already on channel"
    );
    // Only operators invite to an invite-only room.
    let mut other = Irc::registered(server.irc.unwrap(), "other").await;
    text.send("/invite other").await;
    assert_eq!(
        text.expect("operators").await,
        "! only the operators of #club may do that"
    );
    other.send("JOIN #club").await;
    assert_eq!(
        other.line().await,
        ":sockchat 473 other #club :Cannot join channel (+i)"
    );

    // +m: only operators and voiced members talk.
    text.send("hello?").await;
    assert_eq!(
        text.expect("moderated").await,
        "! #club is moderated: only its operators and voiced members talk"
    );
    op.send("MODE #club +v texter").await;
    text.expect("sets mode +v texter").await;
    text.send("thanks").await;
    assert_eq!(
        op.expect("thanks").await,
        ":texter!texter@sockchat PRIVMSG #club :thanks"
    );

    // -n: a member outside the room may say things in it, and hears its
    // own message back as the room does.
    op.send("MODE #club -mn").await;
    op.expect("MODE #club -mn").await;
    other.send("PRIVMSG #club :from outside").await;
    assert_eq!(
        op.expect("outside").await,
        ":other!other@sockchat PRIVMSG #club :from outside"
    );
    let mut outsider = server.client_named("outsider").await;
    outsider.send("/msg nobody x").await;
    outsider.expect("no such nick").await;
    let json = r#"{"type":"say","room":"club","text":"from the json door"}"#;
    outsider.send("/json").await;
    outsider.send(json).await;
    let echo = outsider.expect("from the json door").await;
    assert!(echo.contains(r#""type":"message""#), "{echo}");
    assert_eq!(
        text.expect("json door").await,
        "[club] outsider: from the json door"
    );
    // With +n again, outsiders are refused.
    op.send("MODE #club +n").await;
    op.expect("MODE #club +n").await;
    other.send("PRIVMSG #club :again").await;
    assert_eq!(
        other.line().await,
        ":sockchat 404 other #club :Cannot send to channel"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_operator_runs_every_room_from_any_door() {
    // Each wrong password here would make the next guess wait.
    let server = start(with_admin_sesame(0)).await;
    let mut boss = Irc::registered(server.irc.unwrap(), "boss").await;
    boss.join("#lobby").await;
    let mut text = server.client_named("texter").await;
    boss.expect("texter!texter@sockchat JOIN").await;

    // Wrong names and passwords are the same refusal.
    boss.send("OPER admin open-sesame").await;
    assert_eq!(boss.line().await, ":sockchat 464 boss :Password incorrect");
    boss.send("OPER root sesame").await;
    assert_eq!(boss.line().await, ":sockchat 464 boss :Password incorrect");
    boss.send("OPER admin").await;
    assert!(boss.line().await.starts_with(":sockchat 461 boss OPER "));
    // #lobby has no operators; before OPER, boss may not run it.
    boss.send("MODE #lobby +m").await;
    assert!(boss.line().await.starts_with(":sockchat 482 "));
    boss.send("OPER admin sesame").await;
    assert_eq!(
        boss.line().await,
        ":sockchat 381 boss :You are now an IRC operator"
    );
    assert_eq!(boss.line().await, ":boss!boss@sockchat MODE boss :+o");
    boss.send("MODE boss").await;
    assert_eq!(boss.line().await, ":sockchat 221 boss :+o");

    // Seen as one in WHO and WHOIS.
    let mut other = Irc::registered(server.irc.unwrap(), "other").await;
    other.send("WHO boss").await;
    assert!(other.line().await.contains(" boss H* :0 "));
    other.expect(" 315 ").await;
    other.send("WHOIS boss").await;
    assert_eq!(
        other.expect(" 313 ").await,
        ":sockchat 313 other boss :is an IRC operator"
    );

    // It runs #lobby: moderates it, and text members hear so.
    boss.send("MODE #lobby +m").await;
    assert_eq!(boss.line().await, ":boss!boss@sockchat MODE #lobby +m");
    text.expect("sets mode +m").await;
    text.send("may I?").await;
    text.expect("is moderated").await;
    boss.send("KICK #lobby texter :testing").await;
    assert_eq!(
        text.expect("kicked").await,
        "* texter was kicked from #lobby by boss (testing)"
    );
    // MODE -o on itself gives it up.
    boss.send("MODE boss -o").await;
    boss.expect("MODE boss :-o").await;
    boss.send("MODE #lobby -m").await;
    assert!(boss.line().await.starts_with(":sockchat 482 "));

    // The text door has /oper too.
    let mut admin = server.client_named("admin_text").await;
    admin.send("/oper admin sesame").await;
    assert_eq!(
        admin.expect("operator").await,
        "* you are a server operator (admin): you run every room"
    );
    admin.send("/mode -m").await;
    assert_eq!(
        admin.expect("sets mode").await,
        "* admin_text sets mode -m on #lobby"
    );
    server.stop().await;
}

#[tokio::test]
async fn operator_guesses_wait_and_a_server_without_operators_says_so() {
    let server = start(config()).await;
    let mut guest = Irc::registered(server.irc.unwrap(), "guest").await;
    guest.send("OPER admin sesame").await;
    assert_eq!(
        guest.line().await,
        ":sockchat 491 guest :No O-lines for your host"
    );
    server.stop().await;

    // Longer than this test runs: the second guess always finds the wait.
    let server = start(with_admin_sesame(600_000)).await;
    let mut guest = Irc::registered(server.irc.unwrap(), "guest").await;
    guest.send("OPER admin guess").await;
    assert_eq!(
        guest.line().await,
        ":sockchat 464 guest :Password incorrect"
    );
    guest.send("OPER admin sesame").await;
    let wait = guest.line().await;
    assert!(wait.starts_with(":sockchat 263 guest OPER :"), "{wait}");
    // Nobody was made an operator meanwhile, and the connection stays.
    guest.send("MODE guest").await;
    assert_eq!(guest.line().await, ":sockchat 221 guest :+");
    server.stop().await;
}

/// A server whose one operator is `admin`, password `sesame`, and whose
/// addresses wait `oper_retry_ms` after a wrong guess.
fn with_admin_sesame(oper_retry_ms: u64) -> sockchat::server::config::ServeConfig {
    let hash = sockchat::hub::operators::hash_password("sesame").unwrap();
    let admin = format!("admin:{hash}").parse().unwrap();
    let mut config = config();
    config.hub.operators = sockchat::hub::operators::Operators::new(vec![admin]).unwrap();
    config.hub.oper_retry_ms = oper_retry_ms;
    config
}
