//! The operator console, driven through in-memory pipes in place of the
//! server's terminal, against a real server and real TCP clients.

mod common;

use common::{config, start};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn the_operator_talks_lists_messages_and_kicks() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let mut bob = server.client_named("bob").await;

    let (mut keyboard, console_input) = tokio::io::duplex(4096);
    let (console_output, screen) = tokio::io::duplex(1 << 16);
    let console = tokio::spawn(sockchat::console::run(
        server.hub.clone(),
        BufReader::new(console_input),
        console_output,
    ));
    let mut screen = BufReader::new(screen).lines();
    let mut screen_line = async move || {
        tokio::time::timeout(common::PATIENCE, screen.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    alice.expect("server joined").await;

    keyboard
        .write_all("hello from the operator 你好\n".as_bytes())
        .await
        .unwrap();
    assert_eq!(
        alice.expect("operator").await,
        "[lobby] server: hello from the operator 你好"
    );
    bob.send("hi server").await;
    // The operator sees room traffic.
    loop {
        if screen_line().await == "[lobby] bob: hi server" {
            break;
        }
    }
    keyboard
        .write_all(b"/msg alice just for you\n")
        .await
        .unwrap();
    assert_eq!(
        alice.expect("just for you").await,
        "[private] server -> alice: just for you"
    );
    keyboard.write_all(b"/who\n").await.unwrap();
    loop {
        if screen_line().await == "* #lobby has 3: alice, bob, server" {
            break;
        }
    }
    keyboard.write_all(b"/kick bob spamming\n").await.unwrap();
    let seen = bob.expect_closed().await;
    assert_eq!(seen.last().unwrap(), "* bye: you were kicked: spamming");
    assert_eq!(
        alice.expect("bob was").await,
        "* bob was disconnected (kicked: spamming)"
    );
    keyboard.write_all(b"/kick nobody\n").await.unwrap();
    loop {
        if screen_line().await == "! no such nick: nobody" {
            break;
        }
    }
    drop(keyboard);
    console.await.unwrap().unwrap();
    server.stop().await;
}
