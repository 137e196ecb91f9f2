//! The operator console, driven through in-memory pipes in place of the
//! server's terminal, against a real server and real TCP clients.

mod common;

use common::{config, start};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

/// The console on in-memory pipes: what the operator types, what the
/// console shows.
struct Console {
    keyboard: DuplexStream,
    screen: Lines<BufReader<DuplexStream>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Console {
    fn open(hub: &sockchat::hub::Hub) -> Console {
        let (keyboard, console_input) = tokio::io::duplex(4096);
        let (console_output, screen) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(sockchat::door::console::run(
            hub.clone(),
            BufReader::new(console_input),
            console_output,
        ));
        Console {
            keyboard,
            screen: BufReader::new(screen).lines(),
            task,
        }
    }
}

#[tokio::test]
async fn the_operator_talks_lists_messages_and_kicks() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let mut bob = server.client_named("bob").await;

    let Console {
        mut keyboard,
        mut screen,
        task: console,
    } = Console::open(&server.hub);
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

/// `/help` lists what works on the console (`/kick` included), and only
/// that: each listed command is answered, and the member commands that
/// make no sense there are refused with a reason.
#[tokio::test]
async fn console_help_lists_exactly_what_works_there() {
    let server = start(config()).await;
    let mut alice = server.client_named("alice").await;
    let Console {
        mut keyboard,
        mut screen,
        task: console,
    } = Console::open(&server.hub);
    let mut next_shown = async move || {
        tokio::time::timeout(common::PATIENCE, screen.next_line())
            .await
            .expect("the console shows it in time")
            .unwrap()
            .expect("the console is still running")
    };
    alice.expect("server joined").await;
    let mut typed = async |line: &str| {
        keyboard
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    };

    typed("/help").await;
    let mut listed = Vec::new();
    loop {
        let line = next_shown().await;
        if line == "Ctrl-C stops the server." {
            break;
        }
        if let Some(command) = line.trim_start().strip_prefix('/') {
            listed.push(command.split_whitespace().next().unwrap().to_string());
        }
    }
    let expected = [
        "me", "msg", "join", "part", "who", "rooms", "history", "search", "ping", "kick", "help",
    ];
    assert_eq!(listed, expected);

    // Each is answered as a command there.
    for (line, answer) in [
        ("/me waves", "[lobby] * server waves"),
        ("/msg alice psst", "[private] server -> alice: psst"),
        ("/join ops", "* server joined #ops"),
        ("/rooms", "* rooms: #lobby (2) #ops (1)"),
        ("/who lobby", "* #lobby has 2: alice, server"),
        ("/part ops", "* server left #ops"),
        ("/history", "* last 1 message(s) in #lobby"),
        ("/search x", "* 0 message(s) in #lobby match \"x\""),
        ("/ping", "* pong"),
        ("/kick nobody", "! no such nick: nobody"),
        (
            "/nick boss",
            "! the console is always server: its nick does not change",
        ),
        ("/json", "! the console shows text only"),
        ("/quit", "* the console stays; stop the server with Ctrl-C"),
    ] {
        typed(line).await;
        loop {
            let shown = next_shown().await;
            assert!(!shown.starts_with("! unknown"), "{line}: {shown:?}");
            if shown.starts_with(answer) {
                break;
            }
        }
    }
    console.abort();
    server.stop().await;
}
