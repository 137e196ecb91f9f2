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
    let console = tokio::spawn(sockchat::door::console::run(
        server.hub.clone(),
        BufReader::new(console_input),
        console_output,
    ));
    let mut screen = BufReader::new(screen).lines();
    // Reads the console's screen until `wanted` is shown.
    let mut screen_shows = async move |wanted: &str| loop {
        let line = tokio::time::timeout(common::PATIENCE, screen.next_line())
            .await
            .expect("the console shows it in time")
            .unwrap()
            .expect("the console is still running");
        if line == wanted {
            return;
        }
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
    screen_shows("[lobby] bob: hi server").await;
    keyboard
        .write_all(b"/msg alice just for you\n")
        .await
        .unwrap();
    assert_eq!(
        alice.expect("just for you").await,
        "[private] server -> alice: just for you"
    );
    keyboard.write_all(b"/who\n").await.unwrap();
    screen_shows("* #lobby has 3: alice, bob, server").await;
    keyboard.write_all(b"/kick bob spamming\n").await.unwrap();
    let seen = bob.expect_closed().await;
    assert_eq!(seen.last().unwrap(), "* bye: you were kicked: spamming");
    assert_eq!(
        alice.expect("bob was").await,
        "* bob was disconnected (kicked: spamming)"
    );
    keyboard.write_all(b"/kick nobody\n").await.unwrap();
    screen_shows("! no such nick: nobody").await;
    drop(keyboard);
    console.await.unwrap().unwrap();
    server.stop().await;
}
