//! Where the client reads input and shows output: a terminal with an input
//! line that incoming messages never mangle, or plain stdin/stdout.

use std::io::Write;

use futures_util::StreamExt;
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio_util::codec::FramedRead;

use crate::protocol::line_codec::{Frame, LineCodec};

/// Longest line read from a pipe.
const MAX_INPUT_LINE: usize = 1 << 16;

pub(super) enum Screen {
    /// An interactive terminal: messages print above the line being typed.
    Terminal {
        readline: Readline,
        writer: SharedWriter,
    },
    /// Pipes or files: one line in, lines out.
    Plain {
        stdin: FramedRead<tokio::io::Stdin, LineCodec>,
        stdin_done: bool,
    },
}

impl Screen {
    /// A terminal screen if both stdin and stdout are terminals, plain otherwise.
    pub(super) fn open() -> anyhow::Result<Screen> {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            let (readline, writer) = Readline::new("> ".into())?;
            return Ok(Screen::Terminal { readline, writer });
        }
        Ok(Screen::Plain {
            stdin: FramedRead::new(tokio::io::stdin(), LineCodec::new(MAX_INPUT_LINE)),
            stdin_done: false,
        })
    }

    /// The next line typed or piped in; `None` at end of input (Ctrl-D,
    /// Ctrl-C, end of the pipe). Cancel-safe.
    pub(super) async fn next_input(&mut self) -> Option<String> {
        match self {
            Screen::Terminal { readline, .. } => match readline.readline().await {
                Ok(ReadlineEvent::Line(line)) => {
                    readline.add_history_entry(line.clone());
                    Some(line)
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) | Err(_) => None,
            },
            Screen::Plain { stdin, stdin_done } => {
                if *stdin_done {
                    return std::future::pending().await;
                }
                loop {
                    match stdin.next().await {
                        Some(Ok(Frame::Line(line))) => return Some(line),
                        Some(Ok(Frame::TooLong | Frame::InvalidUtf8)) => {
                            eprintln!("sockchat: skipped an input line (too long or not UTF-8)");
                        }
                        Some(Err(_)) | None => {
                            *stdin_done = true;
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Prints one line.
    pub(super) fn print_line(&mut self, line: &str) {
        match self {
            Screen::Terminal { readline, writer } => {
                // Queued lines are drawn above the input line the next time
                // `readline()` is polled, which the client's loop does at
                // once. When the queue is full, draw it now (this erases the
                // prompt until the next key or line redraws it).
                let text = format!("{line}\n");
                if writer.write_all(text.as_bytes()).is_err() {
                    let _ = readline.flush();
                    let _ = writer.write_all(text.as_bytes());
                }
            }
            Screen::Plain { .. } => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        }
    }

    /// Restores the terminal.
    pub(super) fn close(self) {
        if let Screen::Terminal { mut readline, .. } = self {
            let _ = readline.flush();
            // Dropping the Readline leaves raw mode.
        }
    }
}
