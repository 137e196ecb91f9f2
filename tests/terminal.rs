//! `sockchat connect` on a real terminal (a tmux pane): the full-screen
//! client (chat, resize, reconnect, and the terminal restored however it
//! ends), and the line client's `--plain` mode, where what others say
//! appears while you type without mangling the line being typed.

mod common;

use std::process::Command;

use common::tmux::Pane;
use common::{config, start};

const BINARY: &str = env!("CARGO_BIN_EXE_sockchat");

fn last_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_messages_print_above_the_line_being_typed() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let pane = Pane::open(&format!(
        "{BINARY} connect {} --nick tty --plain",
        server.addr
    ));
    assert_eq!(watcher.expect(" joined").await, "* tty joined #lobby");
    pane.wait_for("the prompt", |screen| last_line(screen) == ">");

    pane.keys(&["-l", "half typ"]);
    pane.wait_for("the typed text", |screen| last_line(screen) == "> half typ");
    watcher.send("incoming 消息 while you type").await;
    // The message shows above, and the line being typed is drawn again
    // intact below it (a capture can fall between the two).
    pane.wait_for("the incoming message above the typed line", |screen| {
        screen.contains("[lobby] watcher: incoming 消息 while you type")
            && last_line(screen) == "> half typ"
    });

    pane.keys(&["-l", "ed"]);
    pane.keys(&["Enter"]);
    assert_eq!(watcher.expect("tty:").await, "[lobby] tty: half typed");
    pane.keys(&["C-d"]);
    assert_eq!(watcher.expect("tty left").await, "* tty left");
    server.stop().await;
}

/// The command for a pane that runs the full-screen client, then shows how
/// it exited and the terminal's modes, then waits (so the pane stays).
fn full_screen(server: std::net::SocketAddr) -> String {
    full_screen_with(server, "")
}

fn full_screen_with(server: std::net::SocketAddr, flags: &str) -> String {
    format!(
        "{BINARY} connect {server} --nick tui {flags}; echo \"exit=$?\"; stty -a; echo stty-done; exec cat"
    )
}

/// The full-screen client (with `flags`) on `server`, seen arriving by
/// `watcher` and showing `state` (e.g. "tui │ #lobby │ connected").
async fn open_full_screen(
    server: std::net::SocketAddr,
    flags: &str,
    watcher: &mut common::Client,
    state: &str,
) -> Pane {
    let pane = Pane::open(&full_screen_with(server, flags));
    assert_eq!(watcher.expect(" joined").await, "* tui joined #lobby");
    pane.wait_for("the full screen", |screen| screen.contains(state));
    pane
}

/// The client said goodbye to the room and exited 0, leaving the terminal
/// as it was.
async fn assert_left_and_restored(pane: &Pane, watcher: &mut common::Client) {
    assert_eq!(watcher.expect("tui left").await, "* tui left");
    assert_restored(pane, "0");
}

/// After the client exits: its code, and a terminal as it was before.
fn assert_restored(pane: &Pane, code: &str) {
    pane.wait_for("the exit", |screen| screen.contains("stty-done"));
    let screen = pane.screen_and_scrollback();
    assert!(screen.contains(&format!("exit={code}")), "{screen}");
    // Canonical mode and echo are back (raw mode turns both off) ...
    assert!(
        screen.contains(" icanon") && screen.contains(" echo "),
        "{screen}"
    );
    // ... and the alternate screen and mouse reporting are off.
    assert_eq!(pane.variable("#{alternate_on}"), "0");
    assert_eq!(pane.variable("#{mouse_any_flag}"), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_screen_client_chats_resizes_and_restores_the_terminal() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let pane = open_full_screen(server.addr, "", &mut watcher, "│ tui │ #lobby │ connected").await;
    assert!(pane.screen().contains("┌ rooms"));

    pane.keys(&["-l", "hello from the 全屏 client"]);
    pane.keys(&["Enter"]);
    assert_eq!(
        watcher.expect("tui:").await,
        "[lobby] tui: hello from the 全屏 client"
    );
    watcher.send("你好 tui \u{1b}[2J").await;
    pane.wait_for("the other client's message", |screen| {
        screen.contains("watcher: 你好 tui ␛[2J")
    });
    // The member list shows both.
    pane.wait_for("the members", |screen| screen.contains("│watcher"));

    // Narrower than the side panes need: the messages alone, redrawn.
    assert!(pane
        .tmux(&["resize-window", "-t", "0", "-x", "50", "-y", "12"])
        .status()
        .unwrap()
        .success());
    pane.wait_for("the narrow layout", |screen| {
        screen.starts_with("┌ #lobby") && screen.contains("watcher: 你好 tui")
    });

    pane.keys(&["-l", "/quit"]);
    pane.keys(&["Enter"]);
    assert_left_and_restored(&pane, &mut watcher).await;
    server.stop().await;
}

/// Trust on first use on a terminal: before the full screen opens, the
/// client shows the server's fingerprint and asks. Trusted, it pins it,
/// and the status line shows a lock and the fingerprint; declined, it
/// leaves without a word to the room.
#[tokio::test(flavor = "multi_thread")]
async fn the_full_screen_client_asks_before_trusting_a_server_then_shows_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(common::config_with_tls(dir.path())).await;
    let fingerprint = common::generated_fingerprint(dir.path());
    let tls = server.tls.unwrap();
    let mut watcher = server.client_named("watcher").await;

    let declined = dir.path().join("declined");
    let pane = Pane::open(&format!(
        "{BINARY} connect --tls {tls} --known-servers {}; echo \"exit=$?\"; exec cat",
        declined.display()
    ));
    pane.wait_for("the question", |screen| screen.contains("[y/N]"));
    pane.keys(&["n", "Enter"]);
    pane.wait_for("the exit", |screen| screen.contains("exit=4"));
    assert!(!declined.exists());

    let known = dir.path().join("known");
    let flags = format!("--tls --known-servers {}", known.display());
    let pane = Pane::open(&format!(
        "{BINARY} connect {tls} --nick tui {flags}; echo \"exit=$?\"; stty -a; echo stty-done; exec cat"
    ));
    let question = pane.wait_for("the question", |screen| screen.contains("[y/N]"));
    // Wrapped at the pane's width, but whole on its own line.
    assert!(question.contains(&fingerprint), "{question}");
    pane.keys(&["y", "Enter"]);
    // The first to join since the refusal: nothing of it reached the room.
    assert_eq!(watcher.expect(" joined").await, "* tui joined #lobby");
    let lock = format!("tls 🔒 {}…", &fingerprint[.."sha256:".len() + 16]);
    pane.wait_for("the lock", |screen| screen.contains(&lock));
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(pins.contains(&format!("{tls} {fingerprint}")), "{pins}");
    pane.keys(&["-l", "/quit"]);
    pane.keys(&["Enter"]);
    assert_left_and_restored(&pane, &mut watcher).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_screen_client_reconnects_to_a_restarted_server_then_quits_on_ctrl_c() {
    let db = tempfile::tempdir().unwrap();
    let first = start(common::config_with_history(&db.path().join("h.db"))).await;
    let addr = first.addr;
    let pane = Pane::open(&full_screen(addr));
    pane.wait_for("the full screen", |screen| {
        screen.contains("│ tui │ #lobby │ connected")
    });
    pane.keys(&["-l", "/join rust"]);
    pane.keys(&["Enter"]);
    pane.wait_for("the new room", |screen| {
        screen.contains("│ tui │ #rust │ connected")
    });

    first.stop().await;
    pane.wait_for("the reconnecting state", |screen| {
        screen.contains("reconnecting in")
    });

    // The same address and history file, as a restarted server would have.
    let mut config = common::config_with_history(&db.path().join("h.db"));
    config.tcp = Some(addr);
    let second = start(config).await;
    let mut watcher = second.client_named("watcher").await;
    watcher.send("/join rust").await;
    watcher.send("said while tui was away, or just back").await;
    // Back with the same nick, in the same room (current again), with the
    // message (fetched as history, or live if it was back already).
    pane.wait_for("the rejoined room", |screen| {
        screen.contains("│ tui │ #rust │ connected")
            && screen.contains("said while tui was away, or just back")
    });

    pane.keys(&["C-c"]);
    assert_left_and_restored(&pane, &mut watcher).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_screen_client_speaks_udp_with_the_same_screen() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let udp = server.udp.unwrap();
    let pane = open_full_screen(
        udp,
        "--udp",
        &mut watcher,
        " udp │ tui │ #lobby │ connected",
    )
    .await;
    pane.keys(&["-l", "over 数据报"]);
    pane.keys(&["Enter"]);
    assert_eq!(watcher.expect("tui:").await, "[lobby] tui: over 数据报");
    watcher.send("pushed back").await;
    pane.wait_for("the pushed message", |screen| {
        screen.contains("watcher: pushed back")
    });
    pane.keys(&["-l", "/quit"]);
    pane.keys(&["Enter"]);
    assert_left_and_restored(&pane, &mut watcher).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_screen_client_says_goodbye_and_restores_the_terminal_on_sigterm() {
    let server = start(config()).await;
    let mut watcher = server.client_named("watcher").await;
    let pane = open_full_screen(server.addr, "", &mut watcher, "│ tui │ #lobby │ connected").await;
    // The pane runs `sh -c`; the client is its child.
    let shell = pane.variable("#{pane_pid}");
    let output = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let client = String::from_utf8(output.stdout).unwrap();
    let client = client.lines().next().expect("the client is running");
    assert!(Command::new("kill")
        .args(["-TERM", client])
        .status()
        .unwrap()
        .success());
    assert_left_and_restored(&pane, &mut watcher).await;
    server.stop().await;
}

/// The server on a real terminal: its console reads the keyboard, and
/// Ctrl-C stops it at once, without anyone pressing Enter first.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_on_a_terminal_stops_at_once_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("history.db");
    let pane = Pane::open(&format!(
        // The shell outlives the Ctrl-C (a trap, which its children do not
        // inherit) to say how the server exited.
        "trap true INT; {BINARY} serve --tcp 127.0.0.1:0 --udp off --web off --tls off --irc off --irc-tls off --db {}; echo \"exit=$?\"; sleep 60",
        db.display()
    ));
    let screen = pane.wait_for("the listening line", |screen| {
        screen.contains("listening tcp ")
    });
    let addr: std::net::SocketAddr = screen
        .lines()
        .find_map(|line| line.trim().strip_prefix("listening tcp "))
        .unwrap()
        .parse()
        .unwrap();
    let mut watcher = common::Client::connect(addr).await;
    watcher.expect("welcome").await;
    // The console is reading the terminal: what is typed is said.
    pane.keys(&["-l", "hello from the console"]);
    pane.keys(&["Enter"]);
    assert_eq!(
        watcher.expect("hello from").await,
        "[lobby] server: hello from the console"
    );
    pane.keys(&["C-c"]);
    pane.wait_for("the server to exit", |screen| screen.contains("exit=0"));
    let rest = watcher.expect_closed().await;
    assert_eq!(rest.last().unwrap(), "* bye: server is shutting down");
}
