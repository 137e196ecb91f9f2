//! A terminal for tests: a private tmux server with one pane.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A private tmux server with one pane, removed on drop.
pub struct Pane {
    socket: String,
}

impl Pane {
    pub fn open(command: &str) -> Pane {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "sockchat-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pane = Pane { socket };
        let status = pane
            .tmux(&[
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "20",
                "sh",
                "-c",
                command,
            ])
            .status()
            .expect("tmux is installed (scripts/test.sh installs it)");
        assert!(status.success());
        pane
    }

    pub fn tmux(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args);
        command
    }

    pub fn keys(&self, keys: &[&str]) {
        assert!(self
            .tmux(&[&["send-keys", "-t", "0"], keys].concat())
            .status()
            .unwrap()
            .success());
    }

    /// A tmux format variable of the pane, like `#{alternate_on}`.
    pub fn variable(&self, name: &str) -> String {
        let output = self
            .tmux(&["display-message", "-p", "-t", "0", name])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen with what scrolled off it above.
    pub fn screen_and_scrollback(&self) -> String {
        self.capture(&["-S", "-200"])
    }

    pub fn capture(&self, extra: &[&str]) -> String {
        let output = self
            .tmux(&[&["capture-pane", "-p", "-t", "0"], extra].concat())
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    }

    /// Waits until the screen satisfies `test`; returns it.
    pub fn wait_for(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < super::PATIENCE,
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
