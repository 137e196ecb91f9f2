//! `sockchat connect --udp`: the client over UDP.
//!
//! Structured datagrams with ids, one in flight at a time: each waits for
//! its acknowledgement and is sent again a few times if none comes. The
//! server carries out a repeated id only once, so a retransmission never
//! doubles a message in the room. Until the server has seen its token
//! echoed, the client pads its datagrams so the answers it needs fit the
//! server's anti-amplification budget. `--raw` sends plain-text datagrams
//! instead, for bare UDP servers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant};

use super::screen::Screen;
use super::{EXIT_CANNOT_CONNECT, EXIT_SERVER_GONE};
use crate::cli::ConnectArgs;
use crate::protocol::command::GOODBYE_WORDS;
use crate::protocol::datagram::{ClientDatagram, ServerDatagram, CLIENT_DATAGRAM};
use crate::protocol::{parse_line, ClientCommand, ServerEvent};

/// Wait this long for an acknowledgement before sending again.
const RETRY_AFTER: Duration = Duration::from_millis(300);

/// Sends of one datagram before it counts as lost.
const MAX_TRIES: u32 = 6;

/// In raw mode, after input ends, how long to wait for outstanding answers.
const RAW_DRAIN: Duration = Duration::from_secs(2);

/// Runs the UDP client as `args` say.
pub(super) async fn run(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.as_str();
    let server_addr = match tokio::net::lookup_host(server)
        .await
        .map(|mut addrs| addrs.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) => return Ok(super::cannot_connect(server, "no address found")),
        Err(error) => return Ok(super::cannot_connect(server, &error.to_string())),
    };
    let socket = bind_for(server_addr).await?;
    // A connected UDP socket hears only from the server.
    socket
        .connect(server_addr)
        .await
        .context("setting the server address")?;
    if args.raw {
        return run_raw(socket).await;
    }
    // A poll after this much silence keeps the session alive (the server
    // forgets silent clients after its --udp-expiry).
    let keepalive = Duration::from_secs(args.keepalive);
    let mut session = UdpClient::new(socket, Screen::open()?, keepalive);
    session.queue.push_back(None);
    if let Some(nick) = &args.nick {
        let nick = nick.clone();
        session.queue.push_back(Some(ClientCommand::Nick { nick }));
    }
    if let Some(room) = &args.room {
        let room = room.clone();
        session.queue.push_back(Some(ClientCommand::Join { room }));
    }
    let code = session.run(server).await;
    session.screen.close();
    Ok(code)
}

async fn bind_for(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    UdpSocket::bind(local).await.context("binding a UDP socket")
}

/// A datagram waiting for its acknowledgement.
struct InFlight {
    id: u64,
    command: Option<ClientCommand>,
    tries: u32,
    resend_at: Instant,
}

struct UdpClient {
    socket: UdpSocket,
    screen: Screen,
    queue: VecDeque<Option<ClientCommand>>,
    in_flight: Option<InFlight>,
    next_id: u64,
    token: Option<String>,
    proven: bool,
    last_push: u64,
    last_sent: Instant,
    keepalive: Duration,
    /// We sent our goodbye (or input ended).
    quitting: bool,
    /// The server has answered at least once.
    reached: bool,
}

impl UdpClient {
    fn new(socket: UdpSocket, screen: Screen, keepalive: Duration) -> Self {
        UdpClient {
            socket,
            screen,
            queue: VecDeque::new(),
            in_flight: None,
            next_id: 1,
            token: None,
            proven: false,
            last_push: 0,
            last_sent: Instant::now(),
            keepalive,
            quitting: false,
            reached: false,
        }
    }

    async fn run(&mut self, server: &str) -> ExitCode {
        let mut buf = vec![0u8; 65_536];
        loop {
            if self.in_flight.is_none() {
                if let Some(command) = self.queue.pop_front() {
                    self.send_new(command).await;
                } else if self.quitting {
                    return ExitCode::SUCCESS;
                }
            }
            let resend_at = self.in_flight.as_ref().map(|flight| flight.resend_at);
            let keepalive_at = self.last_sent + self.keepalive;
            tokio::select! {
                received = self.socket.recv(&mut buf) => match received {
                    Ok(len) => {
                        if let Some(code) = self.on_datagram(&buf[..len]) {
                            return code;
                        }
                    }
                    // ICMP "port unreachable" for an earlier datagram: the
                    // retransmission timer decides whether that is fatal.
                    Err(error) => tracing::debug!(%error, "udp receive error"),
                },
                input = self.screen.next_input(), if !self.quitting => match input {
                    Some(line) => match parse_line(&line) {
                        Ok(Some(ClientCommand::Mode { .. })) => self.screen.show("! modes are for TCP"),
                        Ok(Some(command)) => {
                            self.quitting = matches!(command, ClientCommand::Quit { .. });
                            self.queue.push_back(Some(command));
                        }
                        Ok(None) => {}
                        Err(error) => self.screen.show(&format!("! {error}")),
                    },
                    None => {
                        self.quitting = true;
                        self.queue.push_back(Some(ClientCommand::Quit { reason: None }));
                    }
                },
                _ = sleep_until(resend_at.unwrap_or(keepalive_at)) => {
                    if resend_at.is_some() {
                        if let Some(code) = self.on_timeout(server).await {
                            return code;
                        }
                    } else if !self.quitting {
                        self.queue.push_back(None);
                    }
                }
            }
        }
    }

    async fn send_new(&mut self, command: Option<ClientCommand>) {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id,
            command,
            tries: 0,
            resend_at: Instant::now(),
        });
        self.transmit().await;
    }

    /// Sends (or sends again) the datagram in flight.
    async fn transmit(&mut self) {
        let Some(flight) = &mut self.in_flight else {
            return;
        };
        flight.tries += 1;
        flight.resend_at = Instant::now() + RETRY_AFTER;
        let datagram = ClientDatagram {
            id: flight.id,
            cmd: flight.command.clone(),
            proof: if self.proven {
                None
            } else {
                self.token.clone()
            },
            pad: None,
        };
        let bytes = datagram.encode((!self.proven).then_some(CLIENT_DATAGRAM));
        self.last_sent = Instant::now();
        if let Err(error) = self.socket.send(&bytes).await {
            tracing::debug!(%error, "udp send failed");
        }
    }

    async fn on_timeout(&mut self, server: &str) -> Option<ExitCode> {
        let flight = self.in_flight.as_ref()?;
        if flight.tries < MAX_TRIES {
            self.transmit().await;
            return None;
        }
        let flight = self.in_flight.take()?;
        if !self.reached {
            eprintln!(
                "sockchat: cannot reach {server} over UDP: no answer after {MAX_TRIES} tries"
            );
            return Some(ExitCode::from(EXIT_CANNOT_CONNECT));
        }
        let what = match &flight.command {
            Some(ClientCommand::Say { text, .. }) => format!("your message {text:?}"),
            Some(ClientCommand::Quit { .. }) => return Some(ExitCode::SUCCESS),
            Some(_) => "your command".to_string(),
            None => "a keep-alive".to_string(),
        };
        self.screen.show(&format!(
            "! no answer from the server after {MAX_TRIES} tries: {what} was probably lost"
        ));
        None
    }

    /// Handles one datagram from the server; `Some` ends the session.
    fn on_datagram(&mut self, bytes: &[u8]) -> Option<ExitCode> {
        let Ok(datagram) = serde_json::from_slice::<ServerDatagram>(bytes) else {
            // A text answer (a refusal, or an error about our datagram).
            if !bytes.is_empty() {
                self.screen.show(&String::from_utf8_lossy(bytes));
            }
            return None;
        };
        self.reached = true;
        match datagram {
            ServerDatagram::Ack {
                ack,
                events,
                token,
                more,
            } => {
                let Some(flight) = &self.in_flight else {
                    return None;
                };
                if flight.id != ack {
                    return None; // A late answer to an earlier try.
                }
                self.in_flight = None;
                self.proven = token.is_none();
                self.token = token;
                // Fetch what is still waiting, as long as each poll brings some.
                if more > 0 && !events.is_empty() {
                    self.queue.push_front(None);
                }
                self.show_events(&events)
            }
            ServerDatagram::Push { seq, events } => {
                if self.last_push > 0 && seq > self.last_push + 1 {
                    let lost = seq - self.last_push - 1;
                    self.screen.show(&format!(
                        "! {lost} update(s) from the server were lost on the way"
                    ));
                }
                self.last_push = self.last_push.max(seq);
                self.show_events(&events)
            }
        }
    }

    fn show_events(&mut self, events: &[ServerEvent]) -> Option<ExitCode> {
        for event in events {
            self.screen.show(&event.to_text());
            if let ServerEvent::Bye { .. } = event {
                if self.quitting {
                    return Some(ExitCode::SUCCESS);
                }
                eprintln!("sockchat: the server ended the session");
                return Some(ExitCode::from(EXIT_SERVER_GONE));
            }
        }
        None
    }
}

/// `--udp --raw`: each typed line is one plain-text datagram, exactly as
/// typed; every datagram that arrives is printed. Exits right after
/// sending `bye` (or `byebye`), or once input ends and every datagram sent
/// has had an answer (or [`RAW_DRAIN`] has passed).
async fn run_raw(socket: UdpSocket) -> anyhow::Result<ExitCode> {
    use futures_util::StreamExt;
    use std::io::Write;
    use tokio_util::codec::FramedRead;

    use crate::door::line_codec::{Frame, LineCodec};

    let mut stdin = FramedRead::new(tokio::io::stdin(), LineCodec::new(1 << 16));
    let mut buf = vec![0u8; 65_536];
    let (mut sent, mut answers) = (0usize, 0usize);
    let mut drain_until: Option<Instant> = None;
    loop {
        if drain_until.is_some() && answers >= sent {
            return Ok(ExitCode::SUCCESS);
        }
        let deadline = drain_until;
        tokio::select! {
            received = socket.recv(&mut buf) => {
                let Ok(len) = received else { continue };
                answers += 1;
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&buf[..len])?;
                if !buf[..len].ends_with(b"\n") {
                    stdout.write_all(b"\n")?;
                }
                stdout.flush()?;
            }
            line = stdin.next(), if drain_until.is_none() => match line {
                Some(Ok(Frame::Line(line))) => {
                    socket.send(line.as_bytes()).await.context("sending a datagram")?;
                    sent += 1;
                    if GOODBYE_WORDS.contains(&line.trim()) {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Some(Ok(_)) => eprintln!("sockchat: skipped an input line (too long or not UTF-8)"),
                Some(Err(_)) | None => drain_until = Some(Instant::now() + RAW_DRAIN),
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
