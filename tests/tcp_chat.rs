//! The TCP door end to end, through real sockets: chatting, commands,
//! goodbyes, broken connections, classic clients and JSON mode.

mod common;

use common::{config, start, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn two_clients_chat_and_see_their_own_lines_echoed() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let mut bob = server.client_named("bob").await;
    alice.expect("bob joined").await;

    bob.send("hello alice").await;
    assert_eq!(alice.expect("hello").await, "[lobby] bob: hello alice");
    assert_eq!(bob.expect("hello").await, "[lobby] bob: hello alice");
    alice.send("hi bob").await;
    assert_eq!(bob.expect("hi bob").await, "[lobby] alice: hi bob");
    server.stop().await;
}

#[tokio::test]
async fn fifty_clients_chat_at_once() {
    let server = start(config()).await;
    let mut clients = Vec::new();
    for index in 0..50 {
        clients.push(server.client_named(&format!("c{index}")).await);
    }
    // Everyone talks at the same time; everyone hears all fifty.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                client.send(&format!("message from {}", client.nick)).await;
                let mut heard = std::collections::HashSet::new();
                while heard.len() < 50 {
                    let line = client.expect("message from c").await;
                    heard.insert(line.rsplit(' ').next().unwrap().to_string());
                }
                heard
            })
        })
        .collect();
    for task in tasks {
        let heard = task.await.unwrap();
        assert_eq!(heard.len(), 50);
        assert!(heard.contains("c0") && heard.contains("c49"));
    }
    server.stop().await;
}

#[tokio::test]
async fn byebye_bye_and_quit_close_cleanly_and_the_room_sees_who_left() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    for (nick, goodbye, seen) in [
        ("b1", "byebye", "* b1 left"),
        ("b2", "bye", "* b2 left"),
        ("b3", "/quit gone fishing", "* b3 left (gone fishing)"),
    ] {
        let mut leaver = server.client_named(nick).await;
        leaver.send(goodbye).await;
        let rest = leaver.expect_closed().await;
        assert_eq!(rest.last().unwrap(), &format!("* bye: goodbye, {nick}"));
        assert_eq!(watcher.expect(&format!("* {nick} left")).await, seen);
    }
    // The nicknames are free again.
    let mut again = server.client_named("b1").await;
    again.send("back").await;
    watcher.expect("[lobby] b1: back").await;
    server.stop().await;
}

#[tokio::test]
async fn a_reset_connection_is_reported_and_everyone_else_carries_on() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let victim = server.client_named("victim").await;
    alice.expect("victim joined").await;

    // SO_LINGER 0 makes close send RST: the peer was killed.
    let stream = victim.into_stream();
    stream.set_zero_linger().unwrap();
    drop(stream);

    assert_eq!(alice.expect("victim").await, "* victim lost the connection");
    let mut bob = server.client_named("bob").await;
    bob.send("still here?").await;
    alice.expect("[lobby] bob: still here?").await;
    server.stop().await;
}

/// The classic client says `byebye` (no newline) and closes at once. In
/// a busy room it has unread data then, so its kernel resets the
/// connection instead of closing it: still a goodbye, not a lost line.
#[tokio::test]
async fn byebye_then_a_reset_is_a_goodbye() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    for unread_data_only in [false, true] {
        let mut classic = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 1024];
        let count = classic.read(&mut buf).await.unwrap();
        let welcome = std::str::from_utf8(&buf[..count]).unwrap();
        let nick = welcome
            .split(", ")
            .nth(1)
            .and_then(|rest| rest.split('!').next())
            .unwrap_or_else(|| panic!("a nick in {welcome:?}"))
            .to_string();
        classic.write_all(b"hi\n").await.unwrap();
        watcher.expect(&format!("{nick}: hi")).await;
        // The room talks; the classic client reads none of it.
        watcher.send("busy room").await;
        watcher.expect("busy room").await;
        classic.write_all(b"byebye").await.unwrap();
        if !unread_data_only {
            // SO_LINGER 0: close sends a reset whatever is unread.
            classic.set_zero_linger().unwrap();
        }
        drop(classic);
        let told = watcher.expect(&format!("* {nick} ")).await;
        assert_eq!(told, format!("* {nick} left"));
    }
    server.stop().await;
}

#[tokio::test]
async fn the_classic_receive_first_client_without_line_terminators_is_served() {
    let mut settings = config();
    settings.hub.filter = sockchat::hub::WordFilter::new(vec!["sb=alexsb".parse().unwrap()]);
    let server = start(settings).await;
    let mut watcher = server.client().await;

    // The classic client: recv first, then send raw UTF-8 with no newline
    // and block in recv until an answer comes.
    let mut classic = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 1024];
    let count = classic.read(&mut buf).await.unwrap();
    assert!(std::str::from_utf8(&buf[..count])
        .unwrap()
        .starts_with("* welcome"));
    classic.write_all("你好, sb".as_bytes()).await.unwrap();
    let count = tokio::time::timeout(common::PATIENCE, classic.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = std::str::from_utf8(&buf[..count]).unwrap();
    assert!(answer.ends_with(": 你好, alexsb\n"), "{answer:?}");
    assert!(watcher.expect("你好").await.ends_with(": 你好, alexsb"));

    classic.write_all(b"byebye").await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(common::PATIENCE, classic.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.contains("* bye: goodbye"), "{rest:?}");
    watcher.expect("left").await;
    server.stop().await;
}

#[tokio::test]
async fn utf8_split_across_writes_is_never_garbled() {
    let server = start(config()).await;
    let mut reader = server.client().await;
    let mut writer = server.client_named("w").await;
    let line = "中文 テスト 🎉\n".as_bytes();
    // One byte per write: every multi-byte character is split.
    for byte in line {
        writer.writer.write_all(&[*byte]).await.unwrap();
        writer.writer.flush().await.unwrap();
    }
    assert_eq!(
        reader.expect("[lobby] w:").await,
        "[lobby] w: 中文 テスト 🎉"
    );
    server.stop().await;
}

#[tokio::test]
async fn chinese_text_goes_through_every_path() {
    let server = start(config()).await;
    let mut ming = server.client_named("小明").await;
    let mut hong = server.client_named("小红").await;
    ming.expect("小红 joined").await;

    hong.send("/join 聊天室").await;
    hong.expect("小红 joined #聊天室").await;
    ming.send("/join #聊天室").await;
    hong.expect("小明 joined #聊天室").await;
    ming.send("大家好").await;
    assert_eq!(hong.expect("大家好").await, "[聊天室] 小明: 大家好");
    ming.send("/me 挥手").await;
    assert_eq!(hong.expect("挥手").await, "[聊天室] * 小明 挥手");
    hong.send("/msg 小明 悄悄话").await;
    assert_eq!(
        ming.expect("悄悄话").await,
        "[private] 小红 -> 小明: 悄悄话"
    );
    ming.send("/who").await;
    assert_eq!(ming.expect("has 2").await, "* #聊天室 has 2: 小红, 小明");
    hong.send("/quit 再见").await;
    assert_eq!(ming.expect("再见").await, "* 小红 left (再见)");
    server.stop().await;
}

#[tokio::test]
async fn a_plain_nc_style_client_with_crlf_and_several_lines_per_write() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut nc = Client::connect(server.addr).await;
    nc.expect("welcome").await;
    nc.send_bytes(b"/nick telnet\r\nfirst\r\nsecond\n").await;
    assert_eq!(watcher.expect(" joined").await, "* telnet joined #lobby");
    assert_eq!(watcher.expect("first").await, "[lobby] telnet: first");
    assert_eq!(watcher.expect("second").await, "[lobby] telnet: second");
    server.stop().await;
}

#[tokio::test]
async fn commands_rooms_nicknames_and_errors() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let mut bob = server.client_named("bob").await;

    // Nicknames are unique regardless of case, and validated.
    bob.send("/nick ALICE").await;
    assert_eq!(bob.line().await, "! nickname ALICE is taken");
    bob.send("/nick server").await;
    assert_eq!(bob.line().await, "! nickname server is taken");
    bob.send("/nick bad nick").await;
    assert_eq!(
        bob.line().await,
        "! a nickname may hold letters, digits and - _ . [ ] \\ ` ^ { | }, not ' '"
    );
    bob.send("/nick a\u{1b}b").await;
    assert!(bob.line().await.starts_with("! a nickname may hold"));
    // An unknown command is an error line; the connection stays.
    bob.send("/frobnicate").await;
    assert_eq!(
        bob.line().await,
        "! unknown command /frobnicate (try /help)"
    );
    bob.send("/msg").await;
    assert_eq!(bob.line().await, "! usage: /msg NICK TEXT");
    bob.send("/help").await;
    assert_eq!(bob.line().await, "* commands:");
    bob.expect("/quit [REASON]").await;

    // Rooms: join makes a room current; part returns to the previous one.
    bob.send("/join rust").await;
    assert_eq!(bob.line().await, "* bob joined #rust");
    assert_eq!(bob.line().await, "* #rust has 1: bob");
    bob.send("/rooms").await;
    assert_eq!(bob.line().await, "* rooms: #lobby (2) #rust (1)");
    bob.send("in rust").await;
    assert_eq!(bob.line().await, "[rust] bob: in rust");
    bob.send("/who lobby").await;
    assert_eq!(bob.line().await, "* #lobby has 2: alice, bob");
    bob.send("/part").await;
    assert_eq!(bob.line().await, "* bob left #rust");
    bob.send("back in the lobby").await;
    assert_eq!(alice.expect("back").await, "[lobby] bob: back in the lobby");
    alice.send("/msg nobody hi").await;
    assert_eq!(alice.expect("nobody").await, "! no such nick: nobody");
    bob.send("/part").await;
    bob.send("into the void").await;
    bob.expect("bob left #lobby").await;
    assert_eq!(bob.line().await, "! you are in no room; /join one");
    bob.send("/who").await;
    assert_eq!(bob.line().await, "! you are in no room; /join one");
    bob.send("/join #").await;
    assert!(bob.line().await.starts_with("! a room name has"));
    server.stop().await;
}

#[tokio::test]
async fn json_lines_mode_types_every_event() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let mut client = server.client().await;
    client.send("/json").await;
    let mode: Value = serde_json::from_str(&client.line().await).unwrap();
    assert_eq!(mode["type"], "mode");
    assert_eq!(mode["mode"], "json");
    // Then the welcome again, structured: nick, room, members.
    let welcome: Value = serde_json::from_str(&client.line().await).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["room"], "lobby");
    assert_eq!(welcome["count"], 2);
    assert!(welcome["members"]
        .as_array()
        .unwrap()
        .contains(&Value::from("watcher")));

    let next = async |client: &mut Client| -> Value {
        serde_json::from_str(&client.line().await).unwrap()
    };
    client.send(r#"{"type":"nick","nick":"j"}"#).await;
    let event = next(&mut client).await;
    assert_eq!(
        (event["type"].as_str(), event["new"].as_str()),
        (Some("nick"), Some("j"))
    );
    client.send(r#"{"type":"say","text":"你好"}"#).await;
    let event = next(&mut client).await;
    assert_eq!(event["type"], "message");
    assert_eq!(event["from"], "j");
    assert_eq!(event["text"], "你好");
    assert!(event["id"].as_u64().unwrap() > 0 && event["time"].as_u64().unwrap() > 0);
    // Text clients still see text.
    assert_eq!(watcher.expect("你好").await, "[lobby] j: 你好");

    client
        .send(r#"{"type":"msg","to":"watcher","text":"psst"}"#)
        .await;
    assert_eq!(next(&mut client).await["type"], "private");
    client.send(r#"{"type":"who"}"#).await;
    let members = next(&mut client).await;
    assert_eq!(members["type"], "members");
    assert_eq!(members["nicks"], serde_json::json!(["watcher", "j"]));
    client.send(r#"{"type":"rooms"}"#).await;
    assert_eq!(next(&mut client).await["rooms"][0]["name"], "lobby");
    client.send("not json").await;
    let error = next(&mut client).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("bad_json"))
    );
    watcher.send("/nick w2").await;
    let nick = next(&mut client).await;
    assert_eq!(
        (nick["old"].as_str(), nick["new"].as_str()),
        (Some("watcher"), Some("w2"))
    );
    watcher.send("/quit").await;
    let leave = next(&mut client).await;
    assert_eq!(
        (leave["type"].as_str(), leave["reason"].as_str()),
        (Some("leave"), Some("quit"))
    );
    let newcomer = server.client().await;
    let join = next(&mut client).await;
    assert_eq!(
        (join["type"].as_str(), join["nick"].as_str()),
        (Some("join"), Some(newcomer.nick.as_str()))
    );
    drop(newcomer);
    client.send(r#"{"type":"quit","reason":"done"}"#).await;
    let bye: Value = serde_json::from_str(&client.expect("bye").await).unwrap();
    assert_eq!(bye["type"], "bye");
    server.stop().await;
}

#[tokio::test]
async fn history_is_replayed_to_newcomers() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    alice.send("before you came").await;
    alice.expect("before you came").await;
    let mut late = common::Client::connect(server.addr).await;
    late.expect("welcome").await;
    assert_eq!(late.line().await, "* last 1 message(s) in #lobby:");
    assert_eq!(
        late.line().await,
        "(history) [lobby] alice: before you came"
    );
    server.stop().await;
}

/// docs/PROTOCOL.md promises answers in the order of the commands: an
/// error about a later line never overtakes the echo of an earlier
/// message (which comes once the message is on disk).
#[tokio::test]
async fn answers_come_in_the_order_of_the_commands() {
    let mut settings = config();
    settings.limits.max_line = 64;
    let server = start(settings).await;
    let mut alice = server.client_named("alice").await;
    let long = "x".repeat(100);
    alice
        .send_bytes(format!("first\n{long}\n/nosuch\nsecond\n").as_bytes())
        .await;
    assert_eq!(alice.expect("first").await, "[lobby] alice: first");
    assert_eq!(
        alice.line().await,
        "! line longer than 64 bytes; it was dropped"
    );
    assert_eq!(alice.line().await, "! unknown command /nosuch (try /help)");
    assert_eq!(alice.line().await, "[lobby] alice: second");
    server.stop().await;
}
