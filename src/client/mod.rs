//! `sockchat connect`: the terminal client.
//!
//! It speaks JSON lines to the server (switching with `/json` after the
//! welcome line) and shows events as text. On a terminal the input line is
//! kept intact while messages arrive above it; with piped stdin it sends
//! each line and, at end of input, says goodbye and exits 0. `--raw` talks
//! to bare socket servers instead (see `raw`); `--udp` speaks UDP (see
//! `udp`).

mod raw;
mod screen;
mod udp;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::cli::ConnectArgs;
use crate::door::line_codec::{Frame, LineCodec};
use crate::protocol::text::sanitize;
use crate::protocol::{parse_line, ClientCommand, ServerEvent};
use screen::Screen;

/// How long to try reaching the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the server's goodbye after ours.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest line accepted from the server (history can be long).
const MAX_SERVER_LINE: usize = 1 << 20;

/// Exit code when the server cannot be reached.
pub const EXIT_CANNOT_CONNECT: u8 = 1;
/// Exit code when the server ends the session (shutdown, kick, lost link).
pub const EXIT_SERVER_GONE: u8 = 2;

/// Runs the client; the exit code says how the session ended.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    if args.udp {
        return udp::run(&args).await;
    }
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&args.server)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Ok(cannot_connect(&args.server, &error.to_string())),
        Err(_) => return Ok(cannot_connect(&args.server, "timed out")),
    };
    let _ = stream.set_nodelay(true);
    if args.raw {
        return raw::run(stream).await;
    }
    chat(stream, &args).await
}

fn cannot_connect(server: &str, why: &str) -> ExitCode {
    eprintln!("sockchat: cannot connect to {server}: {why}");
    ExitCode::from(EXIT_CANNOT_CONNECT)
}

async fn chat(stream: TcpStream, args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let (reader, mut writer) = stream.into_split();
    let mut server = FramedRead::new(reader, LineCodec::new(MAX_SERVER_LINE));
    let mut screen = Screen::open()?;

    // The switch to JSON is the one command sent as text: the server reads
    // text until it sees it.
    writer
        .write_all(b"/json\n")
        .await
        .context("sending to the server")?;
    let mut hello = Vec::new();
    if let Some(nick) = &args.nick {
        hello.push(ClientCommand::Nick { nick: nick.clone() });
    }
    if let Some(room) = &args.room {
        hello.push(ClientCommand::Join { room: room.clone() });
    }
    for command in &hello {
        send(&mut writer, command).await?;
    }

    let mut said_goodbye = false;
    let mut goodbye_deadline = None;
    let outcome = loop {
        let deadline = goodbye_deadline;
        tokio::select! {
            line = server.next() => match line {
                Some(Ok(Frame::Line(line))) => {
                    let event = show_server_line(&mut screen, &line);
                    if let Some(ServerEvent::Bye { .. }) = event {
                        if !said_goodbye {
                            break Outcome::Ended;
                        }
                    }
                }
                Some(Ok(_)) => screen.show("! the server sent a line this client cannot read"),
                Some(Err(error)) => break Outcome::Lost(error.to_string()),
                None => break if said_goodbye { Outcome::Done } else { Outcome::Ended },
            },
            input = screen.next_input(), if !said_goodbye => match input {
                Some(line) => match parse_line(&line) {
                    Ok(Some(ClientCommand::Mode { .. })) => screen.show("! this client always speaks JSON"),
                    Ok(Some(command)) => {
                        let quitting = matches!(command, ClientCommand::Quit { .. });
                        if let Err(error) = send(&mut writer, &command).await {
                            break Outcome::Lost(error.to_string());
                        }
                        if quitting {
                            said_goodbye = true;
                            goodbye_deadline = Some(tokio::time::Instant::now() + GOODBYE_TIMEOUT);
                        }
                    }
                    Ok(None) => {}
                    Err(error) => screen.show(&format!("! {error}")),
                },
                None => {
                    said_goodbye = true;
                    goodbye_deadline = Some(tokio::time::Instant::now() + GOODBYE_TIMEOUT);
                    if let Err(error) = send(&mut writer, &ClientCommand::Quit { reason: None }).await {
                        break Outcome::Lost(error.to_string());
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                break Outcome::Done;
            }
        }
    };
    screen.close();
    Ok(match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Ended => {
            eprintln!("sockchat: the server ended the session");
            ExitCode::from(EXIT_SERVER_GONE)
        }
        Outcome::Lost(error) => {
            eprintln!("sockchat: lost the connection: {error}");
            ExitCode::from(EXIT_SERVER_GONE)
        }
    })
}

enum Outcome {
    /// We said goodbye and the server closed.
    Done,
    /// The server closed without our goodbye.
    Ended,
    Lost(String),
}

async fn send(
    writer: &mut (impl AsyncWriteExt + Unpin),
    command: &ClientCommand,
) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(command).context("encoding a command")?;
    line.push('\n');
    writer
        .write_all(line.as_bytes())
        .await
        .context("sending to the server")
}

/// Shows one line from the server: a JSON event rendered as text, or a
/// text line (the welcome comes before JSON mode starts) as it is.
fn show_server_line(screen: &mut Screen, line: &str) -> Option<ServerEvent> {
    match serde_json::from_str::<ServerEvent>(line) {
        Ok(ServerEvent::Mode { .. }) => None,
        Ok(event) => {
            screen.show(&event.to_text());
            Some(event)
        }
        Err(_) => {
            screen.show(line);
            None
        }
    }
}

impl Screen {
    /// Shows text, line by line, with control characters made inert
    /// whatever the server sent.
    fn show(&mut self, text: &str) {
        for line in text.lines() {
            self.print_line(&sanitize(line));
        }
    }
}
