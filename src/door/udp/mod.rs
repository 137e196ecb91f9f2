//! The UDP door: one datagram is one message, from a bare `sendto` loop or
//! from our client's structured JSON datagrams.
//!
//! Rules that make it safe to expose:
//!
//! - Every datagram a client sends is answered by exactly one datagram.
//! - A source address becomes a member only once it has shown that it
//!   receives what is sent to it, by sending back a code from an answer
//!   ([`proof`]). Until then it gets one small answer per datagram,
//!   computed from the datagram alone: no member, no room traffic, no task,
//!   no table entry, and answers within three times its datagram's size and
//!   one budget for all unproven sources. A forged source address therefore
//!   cannot make members, nor turn the server into an amplifier aimed at
//!   someone else.
//! - Members that speak the structured protocol get pushes: room events
//!   as they happen. Bare members get what the room said with the answer
//!   to their next datagram (a `recvfrom` after each `sendto` reads one
//!   datagram, so pushes would put it out of step).
//!
//! One receive loop owns the socket's reading side and routes each
//! member's datagrams to a task of its own (like a TCP connection's
//! task), which also drains that member's outbox.

mod proof;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use proof::{admit, headers, Admission, Cookies, UnprovenBudget};
pub use proof::{AMPLIFICATION, COOKIE_WINDOW, UNPROVEN_BURST, UNPROVEN_BYTES_PER_SEC};

use super::tcp::parse_error;
use super::{carry_out, now, wait_dropped, with_drop_reason, Door, DoorContext};
use crate::hub::{Delivery, DoorKind, Hub, MemberId, Membership, OutboxReceiver};
use crate::protocol::datagram::{ClientDatagram, EncodedEvent, ServerDatagram};
use crate::protocol::{parse_line, ClientCommand, DropReason, ErrorCode, Outgoing, ServerEvent};
use crate::session::{Ending, Input, Limits, Session};

/// Largest datagram the server sends. Pushes are packed up to
/// [`PUSH_TARGET`]; only one event larger than that goes out bigger.
const MAX_SERVER_DATAGRAM: usize = 60 * 1024;

/// Push datagrams are filled with events up to this size, the client's
/// datagram size, to stay clear of IP fragmentation.
const PUSH_TARGET: usize = 1200;

/// Datagrams waiting for one session's task; more are dropped (a client
/// that far ahead of the server is flooding).
const INBOX: usize = 64;

/// Events kept for a client that pulls instead of receiving pushes; past
/// this the oldest are dropped and counted.
const BACKLOG: usize = 256;

/// Sessions in the routing map before it is swept of ended ones.
const SWEEP_AT: usize = 1024;

/// Bytes taken from the outbox at a time (at least one delivery).
const DRAIN_BYTES: usize = 16 * 1024;

/// What a room line too long for any datagram ends with, cut.
const TOO_LONG_NOTE: &str = "… [cut: too long for a datagram]";

/// The UDP door, bound.
#[derive(Debug)]
pub struct UdpDoor {
    socket: UdpSocket,
}

impl UdpDoor {
    /// Binds the door to `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(UdpDoor {
            socket: UdpSocket::bind(addr).await?,
        })
    }
}

impl Door for UdpDoor {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(receive_loop(self.socket, context))
    }
}

/// Receives datagrams until shutdown, one tracked task per member.
async fn receive_loop(socket: UdpSocket, context: DoorContext) {
    let socket = Arc::new(socket);
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut sweep_at = SWEEP_AT;
    let cookies = Cookies::new();
    let mut unproven = UnprovenBudget::new();
    let started = tokio::time::Instant::now();
    // Big enough for any UDP datagram, so an oversized one is seen whole
    // and refused rather than silently cut.
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = context.shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, addr) = match received {
            Ok(received) => received,
            Err(error) => {
                // Linux reports ICMP errors for earlier sends here; they
                // concern one peer, not the socket.
                tracing::debug!(%error, "udp receive error");
                continue;
            }
        };
        // Ports under 1024 are services (echo, daytime, chargen, DNS,
        // NTP...), never a chat client: answering one forged from them
        // starts a loop between two servers.
        if addr.port() < 1024 {
            tracing::debug!(%addr, "udp datagram from a service port ignored");
            continue;
        }
        let mut datagram = Bytes::copy_from_slice(&buf[..len]);
        if let Some(inbox) = peers.get(&addr) {
            match inbox.try_send(datagram) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(%addr, "udp peer overloaded; datagram dropped");
                    continue;
                }
                // That session ended (bye, expiry): this datagram starts
                // again from the beginning.
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    peers.remove(&addr);
                    datagram = returned;
                }
            }
        }
        // What a server answers (ours or another's) never starts a
        // session: answering an answer (or an error with an error) is how
        // two servers aimed at each other keep a loop going.
        if is_server_answer(&datagram) {
            tracing::debug!(%addr, "udp answer from a server ignored");
            continue;
        }
        let elapsed = started.elapsed();
        let (datagram, structured) = match admit(&datagram, &addr, &cookies, elapsed) {
            Admission::Member {
                datagram,
                structured,
            } => (datagram, structured),
            Admission::Answer(answer) => {
                if unproven.spend(answer.len() + headers(&addr), elapsed) {
                    context.hub.metrics().udp_unproven.inc();
                    let _ = socket.send_to(&answer, addr).await;
                } else {
                    context.hub.metrics().udp_unanswered.inc();
                    tracing::debug!(%addr, "unproven udp budget spent; datagram unanswered");
                }
                continue;
            }
        };
        if peers.len() >= sweep_at {
            peers.retain(|_, inbox| !inbox.is_closed());
            sweep_at = (peers.len() * 2).max(SWEEP_AT);
        }
        let membership = match context.hub.connect(DoorKind::Udp, Some(addr.ip())) {
            Ok(membership) => membership,
            Err(refusal) => {
                tracing::info!(%addr, %refusal, "udp client refused");
                let _ = socket
                    .send_to(format!("! {refusal}").as_bytes(), addr)
                    .await;
                continue;
            }
        };
        tracing::debug!(%addr, structured, "udp address proven");
        let (inbox, inbox_rx) = mpsc::channel(INBOX);
        // A fresh channel has room for one.
        let _ = inbox.try_send(datagram);
        peers.insert(addr, inbox);
        let peer = Peer::new(
            addr,
            socket.clone(),
            context.hub.clone(),
            &context.limits,
            membership,
            structured,
        );
        let span = tracing::info_span!("udp", peer = %addr);
        context.tracker.spawn(peer.run(inbox_rx).instrument(span));
    }
}

/// One proven source address's membership: its session and the UDP rules
/// around it (pushes or pulls, retransmissions).
struct Peer {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    hub: Hub,
    id: MemberId,
    limits: Limits,
    outbox: OutboxReceiver,
    dropped: Option<oneshot::Receiver<DropReason>>,
    session: Session,
    /// Set once the session has ended.
    ending: Option<Ending>,
    /// The `bye` went out in a datagram's answer already.
    farewell_sent: bool,
    /// A structured client: room events are pushed as they happen. A bare
    /// one pulls them with its next datagram.
    pushes: bool,
    /// Answers sent so far: the first leads with the welcome.
    answered: usize,
    /// Events waiting for a bare member's next datagram.
    backlog: VecDeque<Arc<Outgoing>>,
    /// Structured clients: the last request id and its answer, resent for
    /// a retransmission so the command is not carried out twice.
    last_id: u64,
    last_answer: Option<Bytes>,
    push_seq: u64,
    batch: Vec<Delivery>,
}

impl Peer {
    fn new(
        addr: SocketAddr,
        socket: Arc<UdpSocket>,
        hub: Hub,
        limits: &Limits,
        membership: Membership,
        pushes: bool,
    ) -> Self {
        Peer {
            addr,
            socket,
            hub,
            id: membership.id,
            outbox: membership.outbox,
            dropped: Some(membership.dropped),
            session: Session::for_datagrams(limits, now()),
            limits: limits.clone(),
            ending: None,
            farewell_sent: false,
            pushes,
            answered: 0,
            backlog: VecDeque::new(),
            last_id: 0,
            last_answer: None,
            push_seq: 0,
            batch: Vec::new(),
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Bytes>) {
        while self.ending.is_none() {
            let timer = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                why = wait_dropped(&mut self.dropped) => self.session.handle_dropped(why),
                datagram = inbox.recv() => match datagram {
                    Some(datagram) => self.on_datagram(&datagram).await,
                    None => self.session.handle_dropped(DropReason::ShuttingDown),
                },
                // Not before the first datagram's answer: it brings the
                // welcome queued when the member was made.
                count = self.outbox.recv_many(&mut self.batch, DRAIN_BYTES), if self.answered > 0 => {
                    if count == 0 {
                        let why = self.dropped.take().and_then(|mut dropped| dropped.try_recv().ok());
                        self.ending = Some(why.map_or(Ending::Quit, Ending::Dropped));
                        break;
                    }
                    let events = self.batch.drain(..).flat_map(|delivery| delivery.events().to_vec()).collect();
                    self.take_events(events).await;
                    self.outbox.release();
                }
                _ = tokio::time::sleep_until(timer.unwrap_or_else(tokio::time::Instant::now)), if timer.is_some() => {
                    self.session.handle_timeout(now());
                }
            }
            self.carry_out();
        }
        // Close the inbox first: datagrams from now on start a new session.
        inbox.close();
        let ending = self.ending.take().expect("the loop ends with one");
        self.finish(ending).await;
    }

    /// Carries out what the session asks for, noting its ending.
    fn carry_out(&mut self) {
        if let Some(ending) = carry_out(&mut self.session, &self.hub, self.id) {
            self.ending = Some(with_drop_reason(ending, &mut self.dropped));
        }
    }

    /// Room events between datagrams: pushed to a structured member, kept
    /// for a bare member's next answer.
    async fn take_events(&mut self, events: Vec<Arc<Outgoing>>) {
        if self.pushes {
            self.push(events).await;
        } else {
            self.keep(events);
        }
    }

    /// Sends events as push datagrams, packed up to [`PUSH_TARGET`] bytes.
    async fn push(&mut self, events: Vec<Arc<Outgoing>>) {
        let mut pending: Vec<EncodedEvent<'_>> = Vec::new();
        let mut size = 0;
        let mut datagrams = Vec::new();
        for event in &events {
            let json = event.json_value();
            if !pending.is_empty() && size + json.get().len() + 1 > PUSH_TARGET {
                datagrams.push(self.push_datagram(std::mem::take(&mut pending)));
                size = 0;
            }
            size += json.get().len() + 1;
            pending.push(json);
        }
        if !pending.is_empty() {
            datagrams.push(self.push_datagram(pending));
        }
        for datagram in datagrams {
            self.send(&datagram).await;
        }
    }

    fn push_datagram(&mut self, events: Vec<EncodedEvent<'_>>) -> Vec<u8> {
        self.push_seq += 1;
        ServerDatagram::Push {
            seq: self.push_seq,
            events,
        }
        .encode()
    }

    async fn send(&mut self, datagram: &[u8]) {
        if let Err(error) = self.socket.send_to(datagram, self.addr).await {
            tracing::debug!(%error, "udp send failed");
        }
    }

    /// The largest answer: a client's datagram size, or a push's.
    fn largest(&self) -> usize {
        PUSH_TARGET.max(self.limits.max_datagram)
    }

    /// Handles one datagram and sends its one answer.
    async fn on_datagram(&mut self, datagram: &[u8]) {
        // Whatever the room said before this datagram is older than its
        // answer: keep it apart from what this datagram's command produces.
        // Except for a structured client's first: its answer brings the
        // welcome (and the room's history) queued when it became a member.
        if self.answered > 0 || !self.pushes {
            let waiting: Vec<_> = std::iter::from_fn(|| self.outbox.try_recv()).collect();
            self.take_events(waiting).await;
        }
        let max = self.limits.max_datagram;
        if max > 0 && datagram.len() > max {
            let message = format!(
                "datagram of {} bytes is over the {max}-byte limit; not relayed",
                datagram.len()
            );
            let refused = Input::Refused(ServerEvent::error(ErrorCode::LineTooLong, message));
            return self.answer_text(refused, Answer::Refusal).await;
        }
        let Ok(text) = std::str::from_utf8(datagram) else {
            let message = "datagram is not valid UTF-8; not relayed";
            let refused = Input::Refused(ServerEvent::error(ErrorCode::InvalidUtf8, message));
            return self.answer_text(refused, Answer::Refusal).await;
        };
        if text.starts_with('{') {
            match serde_json::from_str::<ClientDatagram>(text) {
                Ok(request) => return self.on_structured(request).await,
                // Meant as a structured datagram (a JSON object with an
                // id), but not one: say so rather than relay the JSON.
                Err(error) if is_json_with_id(text) => {
                    let message = format!("not a datagram: {error}");
                    let refused = Input::Refused(ServerEvent::error(ErrorCode::BadJson, message));
                    return self.answer_text(refused, Answer::Refusal).await;
                }
                // Text that merely starts with a brace is chat.
                Err(_) => {}
            }
        }
        // A plain-text datagram: one line, answered in text.
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let input = match parse_line(line) {
            Ok(Some(command)) => Input::Command(command),
            Ok(None) => Input::Nothing,
            Err(error) => Input::Refused(parse_error(&error)),
        };
        let answer = match &input {
            Input::Command(command) if said_text(command).is_some() => Answer::Said,
            Input::Refused(_) => Answer::Refusal,
            _ => Answer::Other,
        };
        self.answer_text(input, answer).await;
    }

    /// Carries out a bare datagram's input and answers in text.
    async fn answer_text(&mut self, input: Input, kind: Answer) {
        let response = self.carry_out_input(input).await;
        let answer = self.compose_text(response, kind);
        self.send(&answer).await;
        self.answered += 1;
    }

    /// A structured datagram: answered with one `ack`.
    async fn on_structured(&mut self, request: ClientDatagram) {
        tracing::debug!(id = request.id, "structured datagram");
        // It speaks the structured protocol: it can take pushes.
        let pushes_from_now = !self.pushes;
        self.pushes = true;
        if request.id != 0 && request.id <= self.last_id {
            // Still there: silence rules count this datagram.
            self.session.handle_input(Input::Nothing, now());
        }
        if request.id != 0 && request.id == self.last_id {
            // A retransmission: the answer was lost, not the command. Never
            // carry it out twice; send the answer again.
            let answer = self.last_answer.clone().unwrap_or_default();
            self.send(&answer).await;
            return;
        }
        if request.id != 0 && request.id < self.last_id {
            let answer = self.compose_json(request.id, Vec::new());
            self.send(&answer).await;
            return;
        }
        let input = request.cmd.map_or(Input::Nothing, Input::Command);
        let response = self.carry_out_input(input).await;
        let answer = Bytes::from(self.compose_json(request.id, response));
        self.last_id = request.id;
        self.last_answer = Some(answer.clone());
        self.send(&answer).await;
        self.answered += 1;
        if pushes_from_now && !self.backlog.is_empty() {
            // What waited for a pull is pushed now.
            let backlog: Vec<_> = self.backlog.drain(..).collect();
            self.push(backlog).await;
        }
    }

    /// Hands one input to the session and collects what it produced for
    /// this member, waiting (within the session's rules: the rate, the
    /// answer wait) until the answer is complete. Room traffic that raced
    /// in with it is not part of it: that goes out as usual.
    async fn carry_out_input(&mut self, input: Input) -> Vec<Arc<Outgoing>> {
        let nick = self.hub.nick_of(self.id);
        self.session.handle_input(input, now());
        let mut response = Vec::new();
        loop {
            self.carry_out();
            while let Some(event) = self.outbox.try_recv() {
                self.session.handle_delivered(event.event(), now());
                response.push(event);
            }
            self.carry_out();
            if self.session.is_settled() || self.ending.is_some() {
                break;
            }
            let timer = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                event = self.outbox.recv() => match event {
                    Some(event) => {
                        self.session.handle_delivered(event.event(), now());
                        response.push(event);
                    }
                    None => break,
                },
                why = wait_dropped(&mut self.dropped) => self.session.handle_dropped(why),
                _ = tokio::time::sleep_until(timer.unwrap_or_else(tokio::time::Instant::now)), if timer.is_some() => {
                    self.session.handle_timeout(now());
                }
            }
        }
        if let Some(bye) = self.ending.as_ref().and_then(Ending::farewell) {
            // The session ended on this datagram: its answer says why.
            response.push(Arc::new(Outgoing::new(bye)));
            self.farewell_sent = true;
        }
        let nick = self.hub.nick_of(self.id).or(nick);
        let (response, traffic): (Vec<_>, Vec<_>) = response
            .into_iter()
            .partition(|event| is_reply(event.event(), nick.as_deref()));
        self.take_events(traffic).await;
        response
    }

    /// Keeps events for a bare member's next answer.
    fn keep(&mut self, events: Vec<Arc<Outgoing>>) {
        for event in events {
            if self.backlog.len() == BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(event);
        }
    }

    /// A text answer: the welcome if it is the first, the response lines
    /// (your own message as just its text, the way the room saw it), then
    /// what the room said since your last datagram, as far as a datagram
    /// holds. A line that does not fit is cut, and says so. A refusal is
    /// answered without room traffic.
    fn compose_text(&mut self, response: Vec<Arc<Outgoing>>, kind: Answer) -> Vec<u8> {
        let said = kind == Answer::Said;
        let nick = self.hub.nick_of(self.id);
        let mut lines: Vec<String> = Vec::new();
        if self.answered == 0 {
            let welcome = self
                .backlog
                .iter()
                .position(|event| matches!(event.event(), ServerEvent::Welcome { .. }));
            if let Some(event) = welcome.and_then(|at| self.backlog.remove(at)) {
                lines.push(short_welcome(event.event()));
            }
        }
        for event in &response {
            match event.event() {
                ServerEvent::Message(message) if said && Some(&message.from) == nick.as_ref() => {
                    lines.push(message.text.clone());
                }
                // A bare client's goodbye is as short as its `bye`.
                ServerEvent::Bye { code: None, .. } => lines.push("bye".into()),
                other => lines.push(other.to_text()),
            }
        }
        let limit = self.largest();
        let mut answer = String::new();
        for line in lines {
            let separator = usize::from(!answer.is_empty());
            if answer.len() + separator + line.len() > limit {
                let room = limit.saturating_sub(answer.len() + separator);
                let cut = cut_with_note(&line, room, TOO_LONG_NOTE);
                if !cut.is_empty() {
                    if separator == 1 {
                        answer.push('\n');
                    }
                    answer.push_str(&cut);
                }
                break;
            }
            if separator == 1 {
                answer.push('\n');
            }
            answer.push_str(&line);
        }
        while let Some(event) = self.backlog.front().filter(|_| kind != Answer::Refusal) {
            let line = event.event().to_text();
            let separator = usize::from(!answer.is_empty());
            if answer.len() + separator + line.len() > limit {
                // A line no answer can ever hold would hold up everything
                // behind it: it goes now, cut, as far as this answer has room.
                let room = limit.saturating_sub(answer.len() + separator);
                let cut = cut_with_note(&line, room, TOO_LONG_NOTE);
                if line.len() > limit && !cut.is_empty() {
                    if separator == 1 {
                        answer.push('\n');
                    }
                    answer.push_str(&cut);
                    self.backlog.pop_front();
                }
                break;
            }
            if separator == 1 {
                answer.push('\n');
            }
            answer.push_str(&line);
            self.backlog.pop_front();
        }
        answer.into_bytes()
    }

    /// A structured `ack`: the response events, as far as a datagram
    /// holds; an event too long for any is replaced by a notice saying so.
    fn compose_json(&mut self, ack: u64, response: Vec<Arc<Outgoing>>) -> Vec<u8> {
        let skipped = Outgoing::new(ServerEvent::Notice {
            text: "an answer too long for a datagram was skipped".into(),
        });
        // `{"type":"ack","ack":N,"events":[` and `]}`.
        let fixed = format!(r#"{{"type":"ack","ack":{ack},"events":[]}}"#).len();
        let mut events: Vec<EncodedEvent<'_>> = Vec::new();
        let mut size = fixed;
        for event in &response {
            let mut json = event.json_value();
            if fixed + json.get().len() > MAX_SERVER_DATAGRAM {
                json = skipped.json_value();
            }
            if size + json.get().len() + 1 > MAX_SERVER_DATAGRAM {
                break;
            }
            size += json.get().len() + 1;
            events.push(json);
        }
        ServerDatagram::Ack { ack, events }.encode()
    }

    /// Tells the hub (unless it knows) and a structured client.
    async fn finish(mut self, ending: Ending) {
        if let Some(departure) = ending.departure() {
            self.hub.disconnect(self.id, departure);
        }
        if let (true, false, Some(bye)) = (self.pushes, self.farewell_sent, ending.farewell()) {
            self.push(vec![Arc::new(Outgoing::new(bye))]).await;
        }
    }
}

/// Whether a datagram is what a server answers rather than what a client
/// says: our text answers' notices (`* `) and errors (`! `), and our
/// structured `ack`s and `push`es.
fn is_server_answer(datagram: &[u8]) -> bool {
    datagram.starts_with(b"* ")
        || datagram.starts_with(b"! ")
        || (datagram.starts_with(b"{")
            && serde_json::from_slice::<ServerDatagram<serde::de::IgnoredAny>>(datagram).is_ok())
}

/// Whether `text` is a JSON object with an `id`: a structured datagram,
/// however malformed its command.
fn is_json_with_id(text: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .is_ok_and(|object| object.contains_key("id"))
}

/// What a bare datagram's text answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A message: the answer leads with its text as the room saw it.
    Said,
    /// Refused input: the error alone.
    Refusal,
    /// Anything else.
    Other,
}

/// Whether `event`, found in a member's outbox right after its command, is
/// about that member (part of the answer) rather than room traffic.
fn is_reply(event: &ServerEvent, nick: Option<&str>) -> bool {
    let mine = |name: &str| Some(name) == nick;
    match event {
        ServerEvent::Message(message) => mine(&message.from),
        ServerEvent::Private { from, .. } => mine(from),
        ServerEvent::Join { nick, .. } | ServerEvent::Leave { nick, .. } => mine(nick),
        ServerEvent::Nick { old, new } => mine(old) || mine(new),
        _ => true,
    }
}

/// The text a command puts in a room, for the filter-growth budget.
fn said_text(command: &ClientCommand) -> Option<&str> {
    match command {
        ClientCommand::Say { text, .. } | ClientCommand::Me { text, .. } => Some(text),
        ClientCommand::Msg { text, .. } => Some(text),
        _ => None,
    }
}

/// A bare client's welcome, short enough for the answer to its first
/// datagram: the full one is longer than a short datagram may be answered
/// with.
fn short_welcome(welcome: &ServerEvent) -> String {
    match welcome {
        ServerEvent::Welcome {
            server,
            nick,
            room,
            count,
            ..
        } => format!("* welcome to {server}, {nick}! #{room}, {count} here; /help"),
        other => other.to_text(),
    }
}

/// `text` in at most `limit` bytes, cut with [`CUT_NOTE`] where the note
/// fits (with at least a character of the text), else as [`cut_to`] does.
fn cut_with_note<'a>(text: &'a str, limit: usize, note: &str) -> Cow<'a, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let Some(mut end) = limit.checked_sub(note.len()).filter(|end| *end > 0) else {
        return cut_to(text, limit);
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        // Not even the first character fits beside the note.
        return cut_to(text, limit);
    }
    Cow::Owned(format!("{}{note}", &text[..end]))
}

/// `text` in at most `limit` bytes: whole, or cut on a character boundary
/// and marked with `…` where that fits, so a cut is never silent.
fn cut_to(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    const MARK: &str = "…";
    let (mut end, mark) = match limit.checked_sub(MARK.len()) {
        Some(end) => (end, MARK),
        None => (limit, ""),
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{mark}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries_and_says_so() {
        assert_eq!(cut_to("你好吗", 7), "你…");
        assert_eq!(cut_to("abc", 5), "abc");
        assert_eq!(cut_to("abcdef", 2), "ab");
        assert_eq!(cut_to("你", 2), "");
        // The note is kept only beside some of the text.
        let note = "…[cut]";
        assert_eq!(cut_with_note("你好吗啊", 10, note), "你好…");
        assert_eq!(cut_with_note("你好吗啊", 11, note), "你…[cut]");
    }

    #[test]
    fn expiry_default_is_two_minutes() {
        assert_eq!(
            Limits::default().udp_expiry,
            std::time::Duration::from_secs(120)
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::typed_text;

        proptest! {
            /// A cut line fits its room, keeps a prefix of the text on a
            /// character boundary, and is marked unless whole.
            #[test]
            fn cuts_fit_and_keep_a_marked_prefix(text in typed_text(), limit in 0usize..80) {
                let cut = cut_to(&text, limit);
                prop_assert!(cut.len() <= limit);
                if text.len() <= limit {
                    prop_assert_eq!(cut.as_ref(), text.as_str());
                } else {
                    let kept = cut.strip_suffix('…').unwrap_or(&cut);
                    prop_assert!(text.starts_with(kept));
                    prop_assert!(kept.len() < cut.len() || limit < '…'.len_utf8());
                }
                let noted = cut_with_note(&text, limit, TOO_LONG_NOTE);
                prop_assert!(noted.len() <= limit);
                if text.len() > limit && noted.ends_with(TOO_LONG_NOTE) {
                    let kept = &noted[..noted.len() - TOO_LONG_NOTE.len()];
                    prop_assert!(!kept.is_empty() && text.starts_with(kept));
                }
            }
        }
    }
}
