//! The full-screen client, the way WeeChat or irssi look: rooms, messages
//! with scrollback, members, a status line and an input line (ratatui on
//! crossterm).
//!
//! The protocol is the line client's (`chat_over_tcp`, `udp::chat`), run
//! as a task that talks to the screen through channels; when it ends
//! without our goodbye, a new one starts after a backoff, takes back the
//! nick and rooms, and fetches what was missed. The terminal is restored
//! however the client ends, a panic included.

mod app;
mod input;
mod theme;
mod view;

use std::io::Stdout;
use std::process::ExitCode;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    EventStream,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

pub use app::App;
pub use theme::Theme;

use super::{
    cannot_connect, chat_over_stream, not_trusted, udp, ClientSettings, Ending, Frontend,
    Protection, Typed,
};
use crate::protocol::{ClientCommand, ServerEvent};
use app::{Action, Link};

/// Messages fetched per room after a reconnect, to fill the gap.
const MISSED: usize = 200;

/// How often the round-trip time is measured.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the protocol task tells the screen.
enum LinkEvent {
    /// Connected, protected so.
    Connected(Option<Protection>),
    Event(ServerEvent),
    Notice(String),
    Ended(Ending),
}

/// The protocol task's side of the channels.
struct Channels {
    commands: mpsc::UnboundedReceiver<ClientCommand>,
    events: mpsc::UnboundedSender<LinkEvent>,
}

impl Frontend for Channels {
    async fn next_input(&mut self) -> Option<Typed> {
        self.commands.recv().await.map(Typed::Command)
    }

    fn event(&mut self, event: ServerEvent) {
        let _ = self.events.send(LinkEvent::Event(event));
    }

    fn notice(&mut self, text: &str) {
        let _ = self.events.send(LinkEvent::Notice(text.to_string()));
    }

    fn connected(&mut self, protection: Option<&Protection>) {
        let _ = self.events.send(LinkEvent::Connected(protection.cloned()));
    }

    /// A person at the screen sees the error and picks another name.
    fn ends_on_refused_nick(&self) -> bool {
        false
    }
}

/// The screen's side: one running connection.
struct Connection {
    commands: mpsc::UnboundedSender<ClientCommand>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

impl Connection {
    fn start(settings: &ClientSettings, hello: Vec<ClientCommand>) -> Connection {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (server, udp, keepalive) = (settings.server.clone(), settings.udp, settings.keepalive);
        let target = settings.target();
        tokio::spawn(async move {
            let mut channels = Channels {
                commands: commands_rx,
                events: events_tx.clone(),
            };
            let ending = if udp {
                udp::chat(&server, keepalive, &hello, &mut channels).await
            } else {
                chat_over_stream(&target, &hello, &mut channels).await
            };
            let _ = events_tx.send(LinkEvent::Ended(ending));
        });
        Connection { commands, events }
    }

    fn send(&self, command: ClientCommand) {
        // A connection that has just ended reports it through `events`.
        let _ = self.commands.send(command);
    }
}

/// The terminal in full-screen mode; dropping it restores the terminal.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        restore_on_panic(restore_terminal);
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Makes a panic call `restore` before the usual report, so the report
/// lands on a working terminal (the guard's drop comes too late for that).
fn restore_on_panic(restore: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Leaves every mode the client turned on. Safe to call twice.
fn restore_terminal() {
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
}

/// How the screen ended.
enum Exit {
    Done,
    /// The first connection failed: most likely a wrong address.
    Unreachable(String),
    /// The server's certificate is not (or no longer) trusted.
    NotTrusted(String),
}

/// Runs the full-screen client until the user leaves.
pub async fn run(settings: ClientSettings) -> anyhow::Result<ExitCode> {
    let door = match (settings.udp, &settings.tls) {
        (true, _) => "udp",
        (false, Some(_)) => "tls",
        (false, None) => "tcp",
    };
    let mut app = App::new(&settings.server, door, settings.theme.clone());
    app.utc_offset = i64::from(chrono::Local::now().offset().local_minus_utc());
    let mut screen = Screen::enter()?;
    let exit = drive(&mut screen, &mut app, &settings).await;
    drop(screen);
    Ok(match exit? {
        Exit::Done => ExitCode::SUCCESS,
        Exit::Unreachable(why) => cannot_connect(&settings.server, &why),
        Exit::NotTrusted(why) => not_trusted(&why),
    })
}

async fn drive(
    screen: &mut Screen,
    app: &mut App,
    settings: &ClientSettings,
) -> anyhow::Result<Exit> {
    let mut keys = EventStream::new();
    let mut link = LinkState::new(Connection::start(settings, settings.hello()));
    let mut ping = tokio::time::interval(PING_EVERY);
    // Redraws the reconnect countdown.
    let mut second = tokio::time::interval(Duration::from_secs(1));
    // Killed politely or its terminal closed: leave as on Ctrl-C, so the
    // room hears a goodbye and the terminal is restored.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        screen.terminal.draw(|frame| view::draw(frame, app))?;
        let retry = link.reconnect_at;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(event)) => {
                    for action in app.on_terminal(event) {
                        match (action, &link.connection) {
                            (Action::Send(command), Some(connection)) => connection.send(command),
                            (Action::Send(_), None) => {
                                app.system("! not connected; that was not sent");
                            }
                            (Action::Quit, Some(connection)) if app.link == Link::Connected => {
                                link.quitting = true;
                                connection.send(ClientCommand::Quit { reason: None });
                            }
                            (Action::Quit, _) => return Ok(Exit::Done),
                        }
                    }
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(Exit::Done),
            },
            event = next_link_event(&mut link.connection) => {
                // Everything already waiting goes in before one redraw: a
                // busy room sends faster than a terminal should repaint.
                let mut next = Some(event);
                let mut taken = 0;
                while let Some(event) = next.take() {
                    if let Some(exit) = link.on_event(app, event) {
                        return Ok(exit);
                    }
                    taken += 1;
                    if taken < EVENTS_PER_REDRAW {
                        next = link.connection.as_mut().and_then(|connection| connection.events.try_recv().ok());
                    }
                }
            }
            _ = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                link.reconnect_at = None;
                app.link = Link::Connecting;
                link.connection = Some(Connection::start(settings, rejoin(app)));
            }
            _ = ping.tick() => link.ping(app),
            _ = second.tick(), if link.reconnect_at.is_some() => {}
            _ = terminate.recv() => return Ok(goodbye(link.connection.as_ref()).await),
            _ = hangup.recv() => return Ok(goodbye(link.connection.as_ref()).await),
        }
    }
}

/// Events handled at most between two redraws.
const EVENTS_PER_REDRAW: usize = 256;

/// The link to the server across connections: the one running (if any), and
/// what reconnecting needs to know.
struct LinkState {
    connection: Option<Connection>,
    ever_connected: bool,
    /// We said goodbye; the connection's end is the client's.
    quitting: bool,
    attempt: u32,
    reconnect_at: Option<Instant>,
    /// The last ping's token and when it went.
    last_ping: (u64, Instant),
}

impl LinkState {
    fn new(connection: Connection) -> LinkState {
        LinkState {
            connection: Some(connection),
            ever_connected: false,
            quitting: false,
            attempt: 0,
            reconnect_at: None,
            last_ping: (0, Instant::now()),
        }
    }

    fn ping(&mut self, app: &App) {
        if let (Some(connection), Link::Connected) = (&self.connection, &app.link) {
            self.last_ping = (self.last_ping.0 + 1, Instant::now());
            connection.send(ClientCommand::Ping {
                token: self.last_ping.0,
            });
        }
    }

    /// Applies one event from the connection; `Some` when the client is done.
    fn on_event(&mut self, app: &mut App, event: LinkEvent) -> Option<Exit> {
        match event {
            LinkEvent::Event(event) => {
                match &event {
                    ServerEvent::Welcome { .. } => {
                        self.ever_connected = true;
                        self.attempt = 0;
                    }
                    ServerEvent::Pong { token } if *token == self.last_ping.0 => {
                        app.rtt = Some(self.last_ping.1.elapsed());
                    }
                    _ => {}
                }
                app.apply(event);
            }
            LinkEvent::Notice(text) => app.system(&text),
            LinkEvent::Connected(protection) => app.protection = protection,
            LinkEvent::Ended(ending) => {
                self.connection = None;
                if self.quitting || ending == Ending::Done {
                    return Some(Exit::Done);
                }
                // A certificate that changed between two connections is
                // refused, never retried.
                if let Ending::NotTrusted(why) = ending {
                    return Some(Exit::NotTrusted(why));
                }
                if let (false, Ending::Unreachable(why)) = (self.ever_connected, &ending) {
                    return Some(Exit::Unreachable(why.clone()));
                }
                self.attempt += 1;
                let wait = backoff(self.attempt);
                self.reconnect_at = Some(Instant::now() + wait);
                app.link = Link::Reconnecting {
                    attempt: self.attempt,
                    at: (Instant::now() + wait).into_std(),
                };
                app.rtt = None;
                let why = match ending {
                    Ending::Lost(error) => format!("lost the connection ({error})"),
                    Ending::Unreachable(error) => format!("cannot reach the server ({error})"),
                    _ => "the server ended the session".to_string(),
                };
                app.system(&format!(
                    "! {why}; trying again in {} s",
                    wait.as_secs_f32().ceil()
                ));
            }
        }
        None
    }
}

/// Says goodbye on the way out, if connected (waiting briefly for the
/// connection to send it).
async fn goodbye(connection: Option<&Connection>) -> Exit {
    if let Some(connection) = connection {
        connection.send(ClientCommand::Quit { reason: None });
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.commands.closed()).await;
    }
    Exit::Done
}

/// The next event of the running connection; pending while there is none.
async fn next_link_event(connection: &mut Option<Connection>) -> LinkEvent {
    match connection {
        Some(connection) => connection
            .events
            .recv()
            .await
            .unwrap_or(LinkEvent::Ended(Ending::Lost("the session stopped".into()))),
        None => std::future::pending().await,
    }
}

/// 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// What a new connection sends to pick up where the last one stopped: the
/// nick, every room (with what it missed), the current room last so it is
/// the server's current room again.
fn rejoin(app: &App) -> Vec<ClientCommand> {
    let mut hello = Vec::new();
    if !app.nick.is_empty() {
        hello.push(ClientCommand::Nick {
            nick: app.nick.clone(),
        });
    }
    let current = app.current_room().map(str::to_string);
    let rooms = app.rooms();
    for room in rooms
        .iter()
        .filter(|room| Some(*room) != current.as_ref())
        .chain(current.iter())
    {
        hello.push(ClientCommand::Join { room: room.clone() });
        hello.push(ClientCommand::history(Some(MISSED)));
    }
    hello
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_restores_the_terminal_before_anything_else() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static RESTORED: AtomicBool = AtomicBool::new(false);
        fn restore() {
            RESTORED.store(true, Ordering::SeqCst);
        }
        restore_on_panic(restore);
        let outcome = std::panic::catch_unwind(|| panic!("drawing failed"));
        // Back to the default hook for everything else in this process.
        let _ = std::panic::take_hook();
        assert!(outcome.is_err());
        assert!(RESTORED.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_lost_connection_is_retried_but_a_first_one_that_fails_ends_the_client() {
        let mut app = App::new("s", "tcp", Theme::default());
        let mut link = LinkState {
            connection: None,
            ever_connected: false,
            quitting: false,
            attempt: 0,
            reconnect_at: None,
            last_ping: (0, Instant::now()),
        };
        let unreachable = LinkEvent::Ended(Ending::Unreachable("refused".into()));
        assert!(matches!(
            link.on_event(&mut app, unreachable),
            Some(Exit::Unreachable(why)) if why == "refused"
        ));
        let welcome = ServerEvent::Welcome {
            server: "s".into(),
            nick: "me".into(),
            room: "lobby".into(),
            members: vec![],
            count: 1,
        };
        assert!(link.on_event(&mut app, LinkEvent::Event(welcome)).is_none());
        for attempt in 1..=2 {
            let lost = LinkEvent::Ended(Ending::Lost("reset".into()));
            assert!(link.on_event(&mut app, lost).is_none());
            assert!(matches!(app.link, Link::Reconnecting { attempt: a, .. } if a == attempt));
            assert!(link.reconnect_at.is_some());
        }
        link.quitting = true;
        assert!(matches!(
            link.on_event(&mut app, LinkEvent::Ended(Ending::Ended)),
            Some(Exit::Done)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_a_limit() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_reconnect_takes_back_the_nick_and_rooms_current_last() {
        let mut app = App::new("s", "tcp", Theme::default());
        for event in [
            ServerEvent::Welcome {
                server: "s".into(),
                nick: "小明".into(),
                room: "lobby".into(),
                members: vec![],
                count: 1,
            },
            ServerEvent::Join {
                room: "rust".into(),
                nick: "小明".into(),
            },
        ] {
            app.apply(event);
        }
        app.switch_to(0);
        let history = ClientCommand::history(Some(MISSED));
        assert_eq!(
            rejoin(&app),
            [
                ClientCommand::Nick {
                    nick: "小明".into()
                },
                ClientCommand::Join {
                    room: "rust".into()
                },
                history.clone(),
                ClientCommand::Join {
                    room: "lobby".into()
                },
                history,
            ]
        );
    }
}
