//! Every limit and every kind of bad input, through real sockets: the
//! offender gets a clear answer, everyone else is untouched.

mod common;

use std::time::Duration;

use common::{config, config_without_history, start, Client};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn an_over_long_line_is_refused_and_the_connection_kept() {
    let mut settings = config();
    settings.limits.max_line = 64;
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut talker = server.client_named("talker").await;
    talker.send(&"x".repeat(65)).await;
    assert_eq!(
        talker.line().await,
        "! line longer than 64 bytes; it was dropped"
    );
    // A long line arriving in pieces, with no newline yet, is cut off early.
    talker.send_bytes("y".repeat(10_000).as_bytes()).await;
    assert_eq!(
        talker.line().await,
        "! line longer than 64 bytes; it was dropped"
    );
    talker.send_bytes(b"rest of the long line\n").await;
    talker.send(&"z".repeat(64)).await;
    assert_eq!(
        watcher.expect("talker:").await,
        format!("[lobby] talker: {}", "z".repeat(64))
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_refused_and_the_connection_kept() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut talker = server.client_named("talker").await;
    talker.send_bytes(b"bad \xff\xfe bytes\n").await;
    assert_eq!(
        talker.line().await,
        "! line is not valid UTF-8; it was dropped"
    );
    talker.send("good 字").await;
    assert_eq!(watcher.expect("talker:").await, "[lobby] talker: good 字");
    server.stop().await;
}

/// Two clients get in; the third gets `refusal` and is closed; once one
/// leaves, a seat is free again.
async fn assert_third_client_refused(settings: sockchat::server::ServeConfig, refusal: &str) {
    let server = start(settings).await;
    let first = server.client_named("first").await;
    let mut second = server.client().await;
    let mut third = Client::connect(server.addr).await;
    assert_eq!(third.expect_closed().await, vec![refusal]);
    drop(first);
    second.expect(" left").await;
    server.client().await;
    server.stop().await;
}

#[tokio::test]
async fn the_server_refuses_clients_past_max_clients() {
    let mut settings = config();
    settings.hub.max_clients = 2;
    assert_third_client_refused(
        settings,
        "! server full: 2 clients connected, try again later",
    )
    .await;
}

#[tokio::test]
async fn the_server_refuses_clients_past_max_per_ip() {
    let mut settings = config();
    settings.hub.max_per_ip = 2;
    assert_third_client_refused(
        settings,
        "! too many connections from your address (at most 2)",
    )
    .await;
}

/// Paused time: the throttle's delays pass without real waiting.
#[tokio::test(start_paused = true)]
async fn a_burst_over_the_rate_is_delayed_not_lost() {
    let mut settings = config_without_history();
    settings.limits.max_rate = 20;
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut paster = server.client_named("paster").await;
    // 50 lines at once: 20 pass now, 30 are spread over 1.5 s. Nothing is
    // dropped and nobody is disconnected.
    let paste: String = (0..50).map(|index| format!("line {index}\n")).collect();
    paster.send_bytes(paste.as_bytes()).await;
    for index in 0..50 {
        assert_eq!(
            watcher.expect("paster:").await,
            format!("[lobby] paster: line {index}")
        );
    }
    paster.send("still connected").await;
    watcher.expect("still connected").await;
    server.stop().await;
}

/// A throttled paste is read in pieces, with pauses longer than the quiet
/// time after which unterminated text counts as a line. A line whose start
/// was read before such a pause must still arrive whole: time the server
/// spends not reading is not the peer's quiet.
#[tokio::test(start_paused = true)]
async fn a_paste_slowed_by_the_rate_keeps_every_line_whole() {
    let mut settings = config_without_history();
    settings.limits.max_rate = 2;
    settings.limits.partial_line_flush = std::time::Duration::from_millis(300);
    let server = start(settings).await;
    let mut watcher = server.client().await;
    // Five lines pass at once, the rest at one every 500 ms. Whether the
    // server, resuming, reads first or looks at its buffer first is up to
    // its scheduler, so the case is tried by several pasters.
    for round in 0..8 {
        let nick = format!("paster{round}");
        let mut paster = server.client_named(&nick).await;
        let lines: Vec<String> = (0..8)
            .map(|index| format!("line {index} {}", "的".repeat(1000 + 17 * index)))
            .collect();
        let mut bytes = (lines.join("\n") + "\n").into_bytes();
        // The first six and the start of the seventh are read at once; the
        // sixth waits for the throttle, and nothing is read meanwhile.
        let sixth_end = lines[..6].iter().map(|line| line.len() + 1).sum::<usize>();
        let rest = bytes.split_off(sixth_end + 20);
        paster.send_bytes(&bytes).await;
        let said = |line: &String| format!("[lobby] {nick}: {line}");
        for line in &lines[..5] {
            assert_eq!(watcher.expect(&format!("{nick}:")).await, said(line));
        }
        // The rest of the seventh comes while the server is not reading.
        paster.send_bytes(&rest).await;
        for line in &lines[5..] {
            assert_eq!(watcher.expect(&format!("{nick}:")).await, said(line));
        }
        paster.send("/quit").await;
        paster.expect_closed().await;
    }
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_throttled_then_disconnected_with_a_notice() {
    let mut settings = config_without_history();
    settings.limits.max_rate = 20;
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut flooder = server.client_named("flooder").await;
    let flood: String = (0..500).map(|index| format!("spam {index}\n")).collect();
    flooder.send_bytes(flood.as_bytes()).await;
    let seen = flooder.expect_closed().await;
    assert_eq!(
        seen.last().unwrap(),
        "* bye: excess flood: more than 20 messages a second"
    );
    let relayed = seen
        .iter()
        .filter(|line| line.contains("flooder: spam"))
        .count();
    // The burst (20) plus at most 2 x burst throttled lines got through.
    assert!((20..=60).contains(&relayed), "{relayed} relayed");
    assert_eq!(
        watcher.expect("flooder was").await,
        "* flooder was disconnected (excess flood)"
    );
    server.stop().await;
}

/// Paused time: the idle limit passes without anyone waiting for it.
#[tokio::test(start_paused = true)]
async fn an_idle_client_is_disconnected_with_a_notice() {
    let mut settings = config_without_history();
    settings.limits.idle = Some(Duration::from_secs(5));
    let server = start(settings).await;
    let mut sleeper = server.client_named("sleeper").await;
    let quiet_since = tokio::time::Instant::now();
    // The watcher arrives (virtual) seconds later, so it outlasts the sleeper.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut watcher = server.client_named("watcher").await;
    let seen = sleeper.expect_closed().await;
    assert_eq!(seen.last().unwrap(), "* bye: idle for 5 s");
    assert!(quiet_since.elapsed() >= Duration::from_secs(5));
    assert_eq!(
        watcher.expect("sleeper was").await,
        "* sleeper was disconnected (idle for 5 s)"
    );
    server.stop().await;
}

#[tokio::test]
async fn control_characters_are_made_inert_and_other_scripts_pass() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut talker = server.client_named("t").await;
    talker
        .send(
            "\u{1b}[2J\u{1b}]0;pwned\u{7}red\u{9b}x \u{202e}evil\u{2066} tab\there 中文 العربية 🎉",
        )
        .await;
    assert_eq!(
        watcher.expect("[lobby] t:").await,
        "[lobby] t: ␛[2J␛]0;pwned␇red\u{fffd}x \u{fffd}evil\u{fffd} tab\there 中文 العربية 🎉"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_half_closed_client_gets_its_answer_and_a_goodbye() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut leaver = server.client_named("leaver").await;
    // Unterminated last words, then the write side closes (like `nc -N`).
    leaver.send_bytes("last words 最后".as_bytes()).await;
    leaver.writer.shutdown().await.unwrap();
    let seen = leaver.expect_closed().await;
    assert_eq!(
        seen,
        vec!["[lobby] leaver: last words 最后", "* bye: goodbye, leaver"]
    );
    watcher.expect("last words").await;
    assert_eq!(watcher.expect("leaver left").await, "* leaver left");
    server.stop().await;
}

#[tokio::test]
async fn a_reset_in_mid_line_loses_only_that_client() {
    let server = start(config()).await;
    let mut watcher = server.client().await;
    let mut victim = server.client_named("victim").await;
    victim.send_bytes(b"half a li").await;
    let stream = victim.into_stream();
    stream.set_zero_linger().unwrap();
    drop(stream);
    assert_eq!(
        watcher.expect("victim l").await,
        "* victim lost the connection"
    );
    let mut other = server.client_named("other").await;
    other.send("fine").await;
    watcher.expect("[lobby] other: fine").await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_every_client_and_closes_cleanly() {
    let server = start(config()).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(server.client().await);
    }
    server.stop().await;
    for client in &mut clients {
        let seen = client.expect_closed().await;
        assert_eq!(seen.last().unwrap(), "* bye: server is shutting down");
    }
}
