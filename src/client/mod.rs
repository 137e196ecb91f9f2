//! `sockchat connect`: the terminal client.
//!
//! On a terminal it opens the full-screen client (`tui`). With `--plain`,
//! or when stdin or stdout is not a terminal, it is a line client
//! (`screen`): on a terminal the input line is kept intact while messages
//! arrive above it; with piped stdin it sends each line and, at end of
//! input, says goodbye and exits 0. `--raw` talks to bare socket servers
//! instead (see `raw`).
//!
//! Both speak JSON lines over TCP, or structured datagrams with `--udp`
//! (see `udp`). The protocol loops are written once, against [`Frontend`]:
//! what shows the chat and supplies typed lines.

mod link;
mod raw;
mod screen;
mod settings;
pub mod tui;
mod udp;

pub use link::{ClientTls, Protection, Target};
pub use settings::ClientSettings;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use crate::cli::ConnectArgs;
use crate::protocol::command::JSON_SWITCH;
use crate::protocol::line_codec::{Frame, LineCodec};
use crate::protocol::text::{nick_key, sanitize};
use crate::protocol::{parse_line, ClientCommand, ErrorCode, ServerEvent};
use screen::Screen;

/// How long to wait for the server's goodbye after ours.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// Text lines kept from before the switch to JSON, to show if the server
/// closes instead of switching.
const MAX_LINES_BEFORE_SWITCH: usize = 64;

/// Longest line accepted from the server (history can be long).
const MAX_SERVER_LINE: usize = 1 << 20;

/// Exit code when the server cannot be reached.
pub const EXIT_CANNOT_CONNECT: u8 = 1;
/// Exit code when the server ends the session (shutdown, kick, lost link).
pub const EXIT_SERVER_GONE: u8 = 2;
/// Exit code when the server refuses the nickname given with `--nick`.
pub const EXIT_NICK_REFUSED: u8 = 3;
/// Exit code when the server's TLS certificate is not trusted.
pub const EXIT_NOT_TRUSTED: u8 = 4;

/// What was typed: a line to parse, or a command the frontend built.
pub(crate) enum Typed {
    Line(String),
    Command(ClientCommand),
}

/// What a protocol loop needs from whoever shows the chat.
pub(crate) trait Frontend {
    /// The next thing typed; `None` once input has ended. Cancel-safe.
    async fn next_input(&mut self) -> Option<Typed>;
    /// An event from the server.
    fn event(&mut self, event: ServerEvent);
    /// Something the client itself has to say (a datagram probably lost, a
    /// line from the server it cannot read).
    fn notice(&mut self, text: &str);
    /// The connection is up, protected so (TLS), or not at all (`None`).
    fn connected(&mut self, _protection: Option<&Protection>) {}
    /// Whether the session ends when the nickname asked for on connecting
    /// is refused (a script must not post under another name); otherwise
    /// the person sees the error and carries on.
    fn ends_on_refused_nick(&self) -> bool {
        true
    }
}

/// The nickname asked for on connecting, until the server takes or
/// refuses it. Meanwhile nothing typed is sent, so nothing goes out
/// under the guest name.
pub(crate) struct NickClaim {
    wanted: Option<String>,
}

impl NickClaim {
    pub(crate) fn new(hello: &[ClientCommand]) -> Self {
        let wanted = hello.iter().find_map(|command| match command {
            ClientCommand::Nick { nick } => Some(nick_key(nick)),
            _ => None,
        });
        NickClaim { wanted }
    }

    /// Still waiting for the server's answer.
    pub(crate) fn is_pending(&self) -> bool {
        self.wanted.is_some()
    }

    /// Looks at one event while pending: `Some(why)` if it refuses the nick.
    pub(crate) fn check(&mut self, event: &ServerEvent) -> Option<String> {
        let wanted = self.wanted.as_deref()?;
        match event {
            // Others' renames reach us too: ours is the one to the name asked.
            ServerEvent::Nick { new, .. } if nick_key(new) == wanted => self.wanted = None,
            ServerEvent::Error {
                code: ErrorCode::NickInUse | ErrorCode::BadNick,
                message,
                ..
            } => {
                self.wanted = None;
                return Some(message.clone());
            }
            _ => {}
        }
        None
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// We said goodbye and the server closed.
    Done,
    /// The server closed without our goodbye (shutdown, kick).
    Ended,
    /// The connection failed.
    Lost(String),
    /// The server could not be reached at all.
    Unreachable(String),
    /// The nickname asked for was refused (taken, or not a valid one).
    NickRefused(String),
    /// The server's certificate is not trusted; what to do about it.
    NotTrusted(String),
}

/// Runs the client; the exit code says how the session ended.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let mut settings = ClientSettings::from_args(&args)?;
    if let Some(tls) = &settings.tls {
        if tls.authorities == crate::tls::trust::Authorities::Nothing {
            eprintln!(
                "sockchat: WARNING: --insecure: the server's certificate is not checked; \
                 anyone between you and the server can read and change this chat"
            );
        }
        // The person is asked (if need be) before the full screen opens.
        match link::settle_trust(settings.target()).await {
            Ok(target) => settings.tls = target.tls,
            Err(link::LinkError::Unreachable(why)) => {
                return Ok(cannot_connect(&settings.server, &why))
            }
            Err(link::LinkError::NotTrusted(why)) => return Ok(not_trusted(&why)),
        }
    }
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !args.raw && !args.plain && on_terminal {
        return tui::run(settings).await;
    }
    if args.raw {
        return if settings.udp {
            udp::run_raw(&settings.server).await
        } else {
            raw::run(&settings.target()).await
        };
    }
    let mut screen = Screen::open()?;
    let hello = settings.hello();
    let ending = if settings.udp {
        udp::chat(&settings.server, settings.keepalive, &hello, &mut screen).await
    } else {
        chat_over_stream(&settings.target(), &hello, &mut screen).await
    };
    screen.close();
    Ok(exit_code(&settings.server, ending))
}

/// Says how a line-mode session ended, on stderr, and turns it into the
/// exit code.
fn exit_code(server: &str, ending: Ending) -> ExitCode {
    match ending {
        Ending::Done => ExitCode::SUCCESS,
        Ending::Ended => {
            eprintln!("sockchat: the server ended the session");
            ExitCode::from(EXIT_SERVER_GONE)
        }
        Ending::Lost(error) => {
            eprintln!("sockchat: lost the connection: {error}");
            ExitCode::from(EXIT_SERVER_GONE)
        }
        Ending::Unreachable(why) => cannot_connect(server, &why),
        Ending::NickRefused(why) => {
            eprintln!("sockchat: {why}; choose another with --nick");
            ExitCode::from(EXIT_NICK_REFUSED)
        }
        Ending::NotTrusted(why) => not_trusted(&why),
    }
}

fn not_trusted(why: &str) -> ExitCode {
    eprintln!("sockchat: {why}");
    ExitCode::from(EXIT_NOT_TRUSTED)
}

fn cannot_connect(server: &str, why: &str) -> ExitCode {
    eprintln!("sockchat: cannot connect to {server}: {why}");
    ExitCode::from(EXIT_CANNOT_CONNECT)
}

/// One connection over TCP (or TLS) in JSON-lines mode: sends `hello`
/// (nick, rooms) first, then what `frontend` types, until either side
/// says goodbye.
pub(crate) async fn chat_over_stream(
    target: &Target,
    hello: &[ClientCommand],
    frontend: &mut impl Frontend,
) -> Ending {
    let link = match link::open(target).await {
        Ok(link) => link,
        Err(link::LinkError::Unreachable(why)) => return Ending::Unreachable(why),
        Err(link::LinkError::NotTrusted(why)) => return Ending::NotTrusted(why),
    };
    frontend.connected(link.protection.as_ref());
    let (reader, mut writer) = tokio::io::split(link.stream);
    let mut server = FramedRead::new(reader, LineCodec::new(MAX_SERVER_LINE));

    // The switch to JSON is the one command sent as text: the server reads
    // text until it sees it.
    if let Err(error) = writer.write_all(b"/json\n").await {
        return Ending::Lost(error.to_string());
    }
    for command in hello {
        if let Err(error) = send(&mut writer, command).await {
            return Ending::Lost(format!("{error:#}"));
        }
    }

    let mut said_goodbye = false;
    let mut goodbye_deadline = None;
    let mut in_json = false;
    let mut claim = NickClaim::new(hello);
    // Text lines before the switch (the welcome, recent messages) come
    // again as JSON right after it; they are shown only if the server
    // closes before switching (a refusal says why).
    let mut before_switch: Vec<String> = Vec::new();
    loop {
        let deadline = goodbye_deadline;
        tokio::select! {
            line = server.next() => match line {
                Some(Ok(Frame::Line(line))) if !in_json => {
                    in_json = matches!(
                        serde_json::from_str::<ServerEvent>(&line),
                        Ok(ServerEvent::Mode { .. })
                    );
                    if before_switch.len() < MAX_LINES_BEFORE_SWITCH {
                        before_switch.push(line);
                    }
                }
                None if !in_json => {
                    show_lines(frontend, &mut before_switch);
                    return Ending::Ended;
                }
                Some(Ok(Frame::Line(line))) => match server_line(frontend, &line, &mut claim) {
                    Said::Bye if !said_goodbye => return Ending::Ended,
                    Said::NickRefused(why) if frontend.ends_on_refused_nick() => {
                        // Leave without a word to the room: it never heard of us.
                        let _ = send(&mut writer, &ClientCommand::Quit { reason: None }).await;
                        return Ending::NickRefused(why);
                    }
                    _ => {}
                },
                Some(Ok(_)) => frontend.notice("! the server sent a line this client cannot read"),
                Some(Err(error)) => {
                    show_lines(frontend, &mut before_switch);
                    return Ending::Lost(error.to_string());
                }
                None => return if said_goodbye { Ending::Done } else { Ending::Ended },
            },
            input = frontend.next_input(), if !said_goodbye && !claim.is_pending() => {
                let Some(command) = command_for(frontend, input) else { continue };
                if matches!(command, ClientCommand::Quit { .. }) {
                    said_goodbye = true;
                    goodbye_deadline = Some(tokio::time::Instant::now() + GOODBYE_TIMEOUT);
                }
                if let Err(error) = send(&mut writer, &command).await {
                    return Ending::Lost(format!("{error:#}"));
                }
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                return Ending::Done;
            }
        }
    }
}

/// Shows the lines the server sent before it closed.
fn show_lines(frontend: &mut impl Frontend, lines: &mut Vec<String>) {
    for line in lines.drain(..) {
        frontend.notice(&line);
    }
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

/// The command to send for what was typed (`None` typed: input ended, so
/// goodbye); `None` when there is nothing to send (an empty line, or a
/// mistake the frontend has been told about).
fn command_for(frontend: &mut impl Frontend, typed: Option<Typed>) -> Option<ClientCommand> {
    match typed {
        None => Some(ClientCommand::Quit { reason: None }),
        Some(Typed::Command(command)) => Some(command),
        Some(Typed::Line(line)) if line.trim().eq_ignore_ascii_case(JSON_SWITCH) => {
            frontend.notice("! this client picks its own wire format");
            None
        }
        Some(Typed::Line(line)) => match parse_line(&line) {
            Ok(command) => command,
            Err(error) => {
                frontend.notice(&format!("! {error}"));
                None
            }
        },
    }
}

/// What a line from the server said, as far as the session cares.
#[derive(PartialEq, Eq)]
enum Said {
    Bye,
    NickRefused(String),
    Other,
}

/// Hands one line from the server to `frontend`: a JSON event, or any
/// other line as a notice.
fn server_line(frontend: &mut impl Frontend, line: &str, claim: &mut NickClaim) -> Said {
    match serde_json::from_str::<ServerEvent>(line) {
        Ok(ServerEvent::Mode { .. }) => Said::Other,
        Ok(event) => {
            let said = match (claim.check(&event), &event) {
                (Some(why), _) => Said::NickRefused(why),
                (None, ServerEvent::Bye { .. }) => Said::Bye,
                _ => Said::Other,
            };
            frontend.event(event);
            said
        }
        Err(_) => {
            frontend.notice(line);
            Said::Other
        }
    }
}

impl Frontend for Screen {
    async fn next_input(&mut self) -> Option<Typed> {
        Screen::next_input(self).await.map(Typed::Line)
    }

    fn event(&mut self, event: ServerEvent) {
        self.show(&event.to_text());
    }

    fn notice(&mut self, text: &str) {
        self.show(text);
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
