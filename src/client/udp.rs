//! `sockchat connect --udp`: the client over UDP.
//!
//! Structured datagrams with ids, one in flight at a time: each waits for
//! its acknowledgement and is sent again a few times if none comes. The
//! server carries out a repeated id only once, so a retransmission never
//! doubles a message in the room. The server carries out nothing from an
//! address until it has shown it receives: its first datagram comes back
//! as a `retry` with a token, and the client sends it again at once with
//! the token as proof. `--raw` sends plain-text datagrams instead, for
//! bare UDP servers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant};

use super::{command_for, Ending, Frontend, NickClaim};
use crate::protocol::command::GOODBYE_WORDS;
use crate::protocol::datagram::{ClientDatagram, ServerDatagram};
use crate::protocol::{ClientCommand, ServerEvent};

/// Wait this long for an acknowledgement before sending again.
const RETRY_AFTER: Duration = Duration::from_millis(300);

/// Sends of one datagram before it counts as lost.
const MAX_TRIES: u32 = 6;

/// In raw mode, after input ends, how long to wait for outstanding answers.
const RAW_DRAIN: Duration = Duration::from_secs(2);

/// The server's address, and a UDP socket connected to it (so it hears
/// only from the server).
async fn open_socket(server: &str) -> Result<UdpSocket, String> {
    let server_addr = match tokio::net::lookup_host(server)
        .await
        .map(|mut addrs| addrs.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) => return Err("no address found".to_string()),
        Err(error) => return Err(error.to_string()),
    };
    let socket = bind_for(server_addr)
        .await
        .map_err(|error| format!("{error:#}"))?;
    socket
        .connect(server_addr)
        .await
        .map_err(|error| format!("setting the server address: {error}"))?;
    Ok(socket)
}

/// One conversation over UDP: sends `hello` (nick, rooms) first, then what
/// `frontend` types. A poll after `keepalive` of silence keeps the session
/// alive (the server forgets silent clients after its --udp-expiry).
pub(crate) async fn chat(
    server: &str,
    keepalive: Duration,
    hello: &[ClientCommand],
    frontend: &mut impl Frontend,
) -> Ending {
    let socket = match open_socket(server).await {
        Ok(socket) => socket,
        Err(why) => return Ending::Unreachable(why),
    };
    let mut session = UdpClient::new(socket, frontend, keepalive, NickClaim::new(hello));
    session.queue.push_back(None);
    session.queue.extend(hello.iter().cloned().map(Some));
    session.run(server).await
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

struct UdpClient<'a, F> {
    socket: UdpSocket,
    frontend: &'a mut F,
    queue: VecDeque<Option<ClientCommand>>,
    in_flight: Option<InFlight>,
    next_id: u64,
    /// The server's token from a `retry`, sent as proof until it answers.
    token: Option<String>,
    last_push: u64,
    last_sent: Instant,
    keepalive: Duration,
    /// We sent our goodbye (or input ended).
    quitting: bool,
    /// The server has answered at least once.
    reached: bool,
    claim: NickClaim,
    /// Why the nickname asked for was refused: the session then ends so.
    refused: Option<String>,
}

impl<'a, F: Frontend> UdpClient<'a, F> {
    fn new(socket: UdpSocket, frontend: &'a mut F, keepalive: Duration, claim: NickClaim) -> Self {
        UdpClient {
            socket,
            frontend,
            queue: VecDeque::new(),
            in_flight: None,
            next_id: 1,
            token: None,
            last_push: 0,
            last_sent: Instant::now(),
            keepalive,
            quitting: false,
            reached: false,
            claim,
            refused: None,
        }
    }

    async fn run(&mut self, server: &str) -> Ending {
        let mut buf = vec![0u8; 65_536];
        loop {
            if self.in_flight.is_none() {
                if let Some(command) = self.queue.pop_front() {
                    self.send_new(command).await;
                } else if self.quitting {
                    return self.done();
                }
            }
            let resend_at = self.in_flight.as_ref().map(|flight| flight.resend_at);
            let keepalive_at = self.last_sent + self.keepalive;
            tokio::select! {
                received = self.socket.recv(&mut buf) => match received {
                    Ok(len) => {
                        if let Some(ending) = self.on_datagram(&buf[..len]) {
                            return ending;
                        }
                    }
                    // ICMP "port unreachable" for an earlier datagram: the
                    // retransmission timer decides whether that is fatal.
                    Err(error) => tracing::debug!(%error, "udp receive error"),
                },
                input = self.frontend.next_input(), if !self.quitting && !self.claim.is_pending() => {
                    if let Some(command) = command_for(self.frontend, input) {
                        self.quitting = matches!(command, ClientCommand::Quit { .. });
                        self.queue.push_back(Some(command));
                    }
                }
                _ = sleep_until(resend_at.unwrap_or(keepalive_at)) => {
                    if resend_at.is_some() {
                        if let Some(ending) = self.on_timeout(server).await {
                            return ending;
                        }
                    } else if !self.quitting {
                        self.queue.push_back(None);
                    }
                }
            }
        }
    }

    /// How a session we ended ended.
    fn done(&mut self) -> Ending {
        self.refused
            .take()
            .map_or(Ending::Done, Ending::NickRefused)
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
            proof: self.token.clone(),
            pad: None,
        };
        let bytes = datagram.encode();
        self.last_sent = Instant::now();
        if let Err(error) = self.socket.send(&bytes).await {
            tracing::debug!(%error, "udp send failed");
        }
    }

    async fn on_timeout(&mut self, server: &str) -> Option<Ending> {
        let flight = self.in_flight.as_ref()?;
        if flight.tries < MAX_TRIES {
            self.transmit().await;
            return None;
        }
        let flight = self.in_flight.take()?;
        if !self.reached {
            return Some(Ending::Unreachable(format!(
                "no answer from {server} over UDP after {MAX_TRIES} tries"
            )));
        }
        let what = match &flight.command {
            Some(ClientCommand::Say { text, .. }) => format!("your message {text:?}"),
            Some(ClientCommand::Quit { .. }) => return Some(self.done()),
            Some(_) => "your command".to_string(),
            None => "a keep-alive".to_string(),
        };
        self.frontend.notice(&format!(
            "! no answer from the server after {MAX_TRIES} tries: {what} was probably lost"
        ));
        None
    }

    /// Handles one datagram from the server; `Some` ends the session.
    fn on_datagram(&mut self, bytes: &[u8]) -> Option<Ending> {
        let Ok(datagram) = serde_json::from_slice::<ServerDatagram>(bytes) else {
            // A text answer (a refusal, or an error about our datagram).
            if !bytes.is_empty() {
                self.frontend.notice(&String::from_utf8_lossy(bytes));
            }
            return None;
        };
        self.reached = true;
        match datagram {
            ServerDatagram::Ack { ack, events } => {
                let Some(flight) = &self.in_flight else {
                    return None;
                };
                if flight.id != ack {
                    return None; // A late answer to an earlier try.
                }
                self.in_flight = None;
                // A session answers: the address is proven.
                self.token = None;
                self.show_events(events)
            }
            ServerDatagram::Retry { ack, token } => {
                let flight = self.in_flight.as_mut()?;
                if flight.id != ack {
                    return None;
                }
                if matches!(flight.command, Some(ClientCommand::Quit { .. })) {
                    // No session to leave: the goodbye was carried out and
                    // only its answer lost (or the session had expired).
                    self.in_flight = None;
                    return Some(self.done());
                }
                // Not carried out: again at once, with the proof, as if the
                // first try had been lost.
                flight.resend_at = Instant::now();
                flight.tries = flight.tries.saturating_sub(1);
                self.token = Some(token);
                None
            }
            ServerDatagram::Push { seq, events } => {
                if self.last_push > 0 && seq > self.last_push + 1 {
                    let lost = seq - self.last_push - 1;
                    self.frontend.notice(&format!(
                        "! {lost} update(s) from the server were lost on the way"
                    ));
                }
                self.last_push = self.last_push.max(seq);
                self.show_events(events)
            }
        }
    }

    fn show_events(&mut self, events: Vec<ServerEvent>) -> Option<Ending> {
        for event in events {
            let bye = matches!(event, ServerEvent::Bye { .. });
            let refused = self.claim.check(&event);
            self.frontend.event(event);
            if let Some(why) = refused.filter(|_| self.frontend.ends_on_refused_nick()) {
                // Leave without a word to the room: it never heard of us.
                self.queue.clear();
                self.queue
                    .push_back(Some(ClientCommand::Quit { reason: None }));
                self.quitting = true;
                self.refused = Some(why);
                return None;
            }
            if bye {
                return Some(if self.quitting {
                    self.done()
                } else {
                    Ending::Ended
                });
            }
        }
        None
    }
}

/// `--udp --raw`: each typed line is one plain-text datagram, exactly as
/// typed; every datagram that arrives is printed. Exits right after
/// sending `bye` (or `byebye`), or once input ends and every datagram sent
/// has had an answer (or [`RAW_DRAIN`] has passed).
pub(super) async fn run_raw(server: &str) -> anyhow::Result<ExitCode> {
    let socket = match open_socket(server).await {
        Ok(socket) => socket,
        Err(why) => return Ok(super::cannot_connect(server, &why)),
    };
    use futures_util::StreamExt;
    use std::io::Write;
    use tokio_util::codec::FramedRead;

    use crate::protocol::line_codec::{Frame, LineCodec};

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
