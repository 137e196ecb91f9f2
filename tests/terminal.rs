//! `sockchat connect` on a real terminal (a tmux pane): what others say
//! appears while you type, without mangling the line being typed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, start};

const BINARY: &str = env!("CARGO_BIN_EXE_sockchat");

/// A private tmux server with one pane, removed on drop.
struct Pane {
    socket: String,
}

impl Pane {
    fn open(command: &str) -> Pane {
        let socket = format!("sockchat-test-{}", std::process::id());
        let pane = Pane { socket };
        let status = pane
            .tmux(&["new-session", "-d", "-x", "100", "-y", "20", command])
            .status()
            .expect("tmux is installed (scripts/test.sh installs it)");
        assert!(status.success());
        pane
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args);
        command
    }

    fn keys(&self, keys: &[&str]) {
        assert!(self
            .tmux(&[&["send-keys", "-t", "0"], keys].concat())
            .status()
            .unwrap()
            .success());
    }

    fn screen(&self) -> String {
        let output = self
            .tmux(&["capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    }

    /// Waits until the screen satisfies `test`; returns it.
    fn wait_for(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < common::PATIENCE,
                "waited for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).status();
    }
}

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
    let pane = Pane::open(&format!("{BINARY} connect {} --nick tty", server.addr));
    watcher.expect("is now known as tty").await;
    pane.wait_for("the prompt", |screen| last_line(screen) == ">");

    pane.keys(&["-l", "half typ"]);
    pane.wait_for("the typed text", |screen| last_line(screen) == "> half typ");
    watcher.send("incoming 消息 while you type").await;
    let screen = pane.wait_for("the incoming message", |screen| {
        screen.contains("[lobby] watcher: incoming 消息 while you type")
    });
    assert_eq!(last_line(&screen), "> half typ", "screen:\n{screen}");

    pane.keys(&["-l", "ed"]);
    pane.keys(&["Enter"]);
    assert_eq!(watcher.expect("tty:").await, "[lobby] tty: half typed");
    pane.keys(&["C-d"]);
    assert_eq!(watcher.expect("tty left").await, "* tty left");
    server.stop().await;
}
