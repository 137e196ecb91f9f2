//! The UDP door: one datagram is one message, from a bare `sendto` loop or
//! from our client's structured JSON datagrams.
//!
//! Rules that make it safe to expose:
//!
//! - Every datagram a client sends is answered by exactly one datagram.
//! - An address that has not proven it receives what is sent to it (by
//!   echoing the token from our answers) is never sent more bytes in all
//!   than it has sent us, except for what our own word filter added to its
//!   messages. A forged source address therefore cannot turn the server
//!   into an amplifier aimed at someone else, and gets no pushes.
//! - Proven addresses get pushes: room events as they happen.
//!
//! One receive loop owns the socket's reading side and routes each
//! datagram to a task per source address (like a TCP connection's task),
//! which also drains that member's outbox.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::throttle::{Throttle, Verdict};
use super::{disconnect_flooder, wait_dropped, ConnectionLimits};
use crate::hub::{Door, Flow, Hub, MemberId};
use crate::protocol::datagram::ClientDatagram;
use crate::protocol::text::sanitize;
use crate::protocol::{
    parse_line, ClientCommand, ErrorCode, LeaveReason, Outgoing, ParseError, ServerEvent, WireMode,
};

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

/// How long an answer waits for the part that comes from the history
/// writer (a commit or a lookup, normally well under a millisecond).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Events taken from the outbox at a time.
const DRAIN_BATCH: usize = 128;

/// Receives datagrams until `shutdown` is cancelled, one task per source
/// address, tracked by `tracker`.
pub async fn serve(
    socket: UdpSocket,
    hub: Hub,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let socket = Arc::new(socket);
    let limits = Arc::new(limits);
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut sweep_at = SWEEP_AT;
    // Big enough for any UDP datagram, so an oversized one is seen whole
    // and refused rather than silently cut.
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
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
        let mut datagram = Bytes::copy_from_slice(&buf[..len]);
        if let Some(inbox) = sessions.get(&addr) {
            match inbox.try_send(datagram) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(%addr, "udp session overloaded; datagram dropped");
                    continue;
                }
                // That session ended (bye, expiry): this datagram starts a new one.
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    sessions.remove(&addr);
                    datagram = returned;
                }
            }
        }
        if sessions.len() >= sweep_at {
            sessions.retain(|_, inbox| !inbox.is_closed());
            sweep_at = (sessions.len() * 2).max(SWEEP_AT);
        }
        let session = match hub.connect(Door::Udp, Some(addr.ip())) {
            Ok(session) => session,
            Err(refusal) => {
                tracing::info!(%addr, %refusal, "udp client refused");
                // Within the budget: no more bytes than the datagram had.
                let line = format!("! {refusal}");
                let _ = socket.send_to(cut_to(&line, len).as_bytes(), addr).await;
                continue;
            }
        };
        let (inbox, inbox_rx) = mpsc::channel(INBOX);
        // A fresh channel has room for one.
        let _ = inbox.try_send(datagram);
        sessions.insert(addr, inbox);
        let task = UdpSession::new(addr, socket.clone(), hub.clone(), limits.clone(), session);
        let span = tracing::info_span!("udp", peer = %addr);
        tracker.spawn(task.run(inbox_rx).instrument(span));
    }
}

/// One source address's membership.
struct UdpSession {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    hub: Hub,
    id: MemberId,
    limits: Arc<ConnectionLimits>,
    outbox: mpsc::Receiver<Arc<Outgoing>>,
    dropped: Option<oneshot::Receiver<String>>,
    /// Echoing this proves the address is real.
    token: String,
    proven: bool,
    /// Bytes received from and sent to this address, and what our filter
    /// added to its messages: the amplification budget.
    received: usize,
    sent: usize,
    filter_growth: usize,
    /// Events not yet delivered to an unproven address.
    backlog: VecDeque<Arc<Outgoing>>,
    /// Structured clients: the last request id and its answer, resent for
    /// a retransmission so the command is not carried out twice.
    last_id: u64,
    last_answer: Option<Bytes>,
    push_seq: u64,
    throttle: Option<Throttle>,
    expires_at: Instant,
    batch: Vec<Arc<Outgoing>>,
}

/// Why a session ended.
enum Ending {
    Quit,
    Dropped(String),
    Expired,
    Flood,
}

impl UdpSession {
    fn new(
        addr: SocketAddr,
        socket: Arc<UdpSocket>,
        hub: Hub,
        limits: Arc<ConnectionLimits>,
        session: crate::hub::Session,
    ) -> Self {
        let now = Instant::now();
        UdpSession {
            addr,
            socket,
            hub,
            id: session.id,
            outbox: session.outbox,
            dropped: Some(session.dropped),
            token: fresh_token(),
            proven: false,
            received: 0,
            sent: 0,
            filter_growth: 0,
            backlog: VecDeque::new(),
            last_id: 0,
            last_answer: None,
            push_seq: 0,
            throttle: Throttle::new(limits.max_rate, now.into_std()),
            expires_at: now + limits.udp_expiry,
            limits,
            batch: Vec::new(),
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Bytes>) {
        let ending = loop {
            tokio::select! {
                reason = wait_dropped(&mut self.dropped) => break Ending::Dropped(reason),
                datagram = inbox.recv() => {
                    let Some(datagram) = datagram else { break Ending::Dropped(String::new()) };
                    self.expires_at = Instant::now() + self.limits.udp_expiry;
                    if let Some(ending) = self.on_datagram(&datagram).await {
                        break ending;
                    }
                }
                count = self.outbox.recv_many(&mut self.batch, DRAIN_BATCH) => {
                    if count == 0 {
                        break Ending::Dropped(String::new());
                    }
                    let events = std::mem::take(&mut self.batch);
                    self.take_events(events).await;
                }
                _ = sleep_until(self.expires_at) => break Ending::Expired,
            }
        };
        // Close the inbox first: datagrams from now on start a new session.
        inbox.close();
        self.finish(ending).await;
    }

    /// Room events between datagrams: pushed to a proven address, kept for
    /// the next answer otherwise.
    async fn take_events(&mut self, events: Vec<Arc<Outgoing>>) {
        if self.proven {
            self.push(events).await;
        } else {
            self.keep(events);
        }
    }

    /// Sends events as push datagrams, packed up to [`PUSH_TARGET`] bytes.
    async fn push(&mut self, events: Vec<Arc<Outgoing>>) {
        let mut pending: Vec<&[u8]> = Vec::new();
        let mut size = 0;
        for event in &events {
            let json = json_event(event);
            if !pending.is_empty() && size + json.len() + 1 > PUSH_TARGET {
                let datagram = self.push_datagram(&pending);
                self.send(&datagram).await;
                pending.clear();
                size = 0;
            }
            size += json.len() + 1;
            pending.push(json);
        }
        if !pending.is_empty() {
            let datagram = self.push_datagram(&pending);
            self.send(&datagram).await;
        }
    }

    fn push_datagram(&mut self, events: &[&[u8]]) -> Vec<u8> {
        self.push_seq += 1;
        let mut datagram =
            format!(r#"{{"type":"push","seq":{},"events":["#, self.push_seq).into_bytes();
        join_events(&mut datagram, events);
        datagram.extend_from_slice(b"]}");
        datagram
    }

    async fn send(&mut self, datagram: &[u8]) {
        self.sent += datagram.len();
        if let Err(error) = self.socket.send_to(datagram, self.addr).await {
            tracing::debug!(%error, "udp send failed");
        }
    }

    /// Bytes this address may still be sent before it proves itself.
    fn budget(&self) -> usize {
        if self.proven {
            return MAX_SERVER_DATAGRAM;
        }
        (self.received + self.filter_growth)
            .saturating_sub(self.sent)
            .min(MAX_SERVER_DATAGRAM)
    }

    /// Handles one datagram and sends its one answer.
    async fn on_datagram(&mut self, datagram: &[u8]) -> Option<Ending> {
        self.received += datagram.len();
        // Whatever the room said before this datagram is older than its
        // answer: keep it apart from what this datagram's command produces.
        let waiting: Vec<_> = std::iter::from_fn(|| self.outbox.try_recv().ok()).collect();
        if self.proven {
            self.push(waiting).await;
        } else {
            self.keep(waiting);
        }
        let max = self.limits.max_datagram;
        if max > 0 && datagram.len() > max {
            let message = format!(
                "datagram of {} bytes is over the {max}-byte limit; not relayed",
                datagram.len()
            );
            self.answer_error(ErrorCode::LineTooLong, &message).await;
            return None;
        }
        let Ok(text) = std::str::from_utf8(datagram) else {
            self.answer_error(
                ErrorCode::InvalidUtf8,
                "datagram is not valid UTF-8; not relayed",
            )
            .await;
            return None;
        };
        if text.starts_with('{') {
            if let Ok(request) = serde_json::from_str::<ClientDatagram>(text) {
                return self.on_structured(request).await;
            }
        }
        self.on_bare(text).await
    }

    /// A plain-text datagram: one line, answered in text.
    async fn on_bare(&mut self, text: &str) -> Option<Ending> {
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        tracing::info!("message from {}: {}", self.addr, sanitize(line));
        if let Some(ending) = self.check_rate(WireMode::Text).await {
            return ending;
        }
        let command = match parse_line(line) {
            Ok(Some(ClientCommand::Mode { .. })) => {
                self.answer_error(
                    ErrorCode::Usage,
                    "UDP clients send plain text or structured datagrams",
                )
                .await;
                return None;
            }
            Ok(Some(command)) => command,
            Ok(None) => {
                let answer = self.compose_text(Vec::new(), false);
                self.send(&answer).await;
                return None;
            }
            Err(error) => {
                self.answer_error(parse_error_code(&error), &error.to_string())
                    .await;
                return None;
            }
        };
        let said = said_text(&command).is_some();
        let (flow, response) = self.carry_out(command).await;
        let answer = self.compose_text(response, said);
        self.send(&answer).await;
        (flow == Flow::Quit).then_some(Ending::Quit)
    }

    /// A structured datagram: answered with one `ack`.
    async fn on_structured(&mut self, request: ClientDatagram) -> Option<Ending> {
        tracing::info!("message from {}: datagram {}", self.addr, request.id);
        if request.proof.as_deref() == Some(self.token.as_str()) && !self.proven {
            self.proven = true;
            tracing::debug!("address proven");
        }
        if request.id != 0 && request.id == self.last_id {
            // A retransmission: the answer was lost, not the command. Never
            // carry it out twice; resend the answer if the budget allows.
            let answer = self.last_answer.clone().unwrap_or_default();
            let answer = if answer.len() <= self.budget() {
                answer
            } else {
                Bytes::new()
            };
            self.send(&answer).await;
            return None;
        }
        if request.id != 0 && request.id < self.last_id {
            let answer = self.compose_json(request.id, Vec::new());
            self.send(&answer).await;
            return None;
        }
        if request.cmd.is_some() {
            if let Some(ending) = self.check_rate(WireMode::Json).await {
                return ending;
            }
        }
        let (flow, response) = match request.cmd {
            Some(ClientCommand::Mode { .. }) => {
                let error = ServerEvent::error(ErrorCode::Usage, "UDP clients have no modes");
                (Flow::Continue, vec![Arc::new(Outgoing::new(error))])
            }
            Some(command) => self.carry_out(command).await,
            None => (Flow::Continue, Vec::new()),
        };
        let answer = Bytes::from(self.compose_json(request.id, response));
        self.last_id = request.id;
        self.last_answer = Some(answer.clone());
        self.send(&answer).await;
        if self.proven && !self.backlog.is_empty() {
            // Just proven: what waited for a pull is pushed now.
            let backlog: Vec<_> = self.backlog.drain(..).collect();
            self.push(backlog).await;
        }
        (flow == Flow::Quit).then_some(Ending::Quit)
    }

    /// Applies the rate limit; over it, answers with an error instead.
    async fn check_rate(&mut self, mode: WireMode) -> Option<Option<Ending>> {
        let verdict = match &mut self.throttle {
            Some(throttle) => throttle.check(Instant::now().into_std()),
            None => Verdict::Now,
        };
        match verdict {
            Verdict::Now => None,
            Verdict::After(_) => {
                let message = self.limits.over_rate();
                match mode {
                    WireMode::Text => self.answer_error(ErrorCode::Flood, &message).await,
                    WireMode::Json => {
                        let error =
                            Arc::new(Outgoing::new(ServerEvent::error(ErrorCode::Flood, message)));
                        let answer = self.compose_json(self.last_id, vec![error]);
                        self.send(&answer).await;
                    }
                }
                Some(None)
            }
            Verdict::Flood => Some(Some(Ending::Flood)),
        }
    }

    /// Runs a command; returns what it produced for this member (room
    /// traffic already waiting was taken by `on_datagram`). What comes
    /// from the history writer (a message's echo once it is on disk, a
    /// lookup's result) is awaited, briefly.
    /// What the server's rewriting (word filter, control pictures) added to
    /// the member's own text is credited to its budget: the member may see
    /// its text as the room did.
    async fn carry_out(&mut self, command: ClientCommand) -> (Flow, Vec<Arc<Outgoing>>) {
        let nick = self.hub.nick_of(self.id);
        let said_len = said_text(&command).map(str::len);
        let handled = self.hub.handle(self.id, command);
        let mut response: Vec<Arc<Outgoing>> =
            std::iter::from_fn(|| self.outbox.try_recv().ok()).collect();
        if let Some(pending) = handled.pending {
            let deadline = Instant::now() + ANSWER_WAIT;
            while !response
                .iter()
                .any(|event| pending.is_met_by(event.event()))
            {
                match tokio::time::timeout_at(deadline, self.outbox.recv()).await {
                    Ok(Some(event)) => response.push(event),
                    // Gone or too slow: answer with what there is.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Room traffic that raced in with the answer (another member's
        // message fanned out just now) is not part of it: it waits in the
        // backlog like the rest, so the answer leads with what was asked.
        let nick = self.hub.nick_of(self.id).or(nick);
        let (response, traffic): (Vec<_>, Vec<_>) = response
            .into_iter()
            .partition(|event| is_reply(event.event(), nick.as_deref()));
        if self.proven {
            self.push(traffic).await;
        } else {
            self.keep(traffic);
        }
        if let (Some(said_len), Some(nick)) = (said_len, nick) {
            let relayed = response.iter().find_map(|event| match event.event() {
                ServerEvent::Message(message) if message.from == nick => Some(message.text.len()),
                ServerEvent::Private { from, text, .. } if *from == nick => Some(text.len()),
                _ => None,
            });
            self.filter_growth += relayed.unwrap_or(0).saturating_sub(said_len);
        }
        (handled.flow, response)
    }

    /// Keeps events for an unproven address's next answer.
    fn keep(&mut self, events: Vec<Arc<Outgoing>>) {
        for event in events {
            if self.backlog.len() == BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(event);
        }
    }

    /// A text answer: the response lines (your own message as just its
    /// text, the way the room saw it), then what the room said since your
    /// last datagram, as far as size and budget allow.
    fn compose_text(&mut self, response: Vec<Arc<Outgoing>>, said: bool) -> Vec<u8> {
        let nick = self.hub.nick_of(self.id);
        let mut lines: Vec<String> = Vec::new();
        for event in &response {
            match event.event() {
                ServerEvent::Message(message) if said && Some(&message.from) == nick.as_ref() => {
                    lines.push(message.text.clone());
                }
                // A bare client's goodbye is as short as its `bye`.
                ServerEvent::Bye { .. } => lines.push("bye".into()),
                other => lines.push(other.to_text()),
            }
        }
        let limit = self.budget().min(PUSH_TARGET.max(self.limits.max_datagram));
        let mut answer = String::new();
        for line in lines {
            let separator = usize::from(!answer.is_empty());
            if answer.len() + separator + line.len() > limit {
                if answer.is_empty() {
                    answer.push_str(&cut_to(&line, limit));
                }
                break;
            }
            if separator == 1 {
                answer.push('\n');
            }
            answer.push_str(&line);
        }
        while let Some(event) = self.backlog.front() {
            let line = event.event().to_text();
            let separator = usize::from(!answer.is_empty());
            if answer.len() + separator + line.len() > limit {
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

    /// A structured `ack`: the response events, then (unproven) pulled
    /// backlog, within the budget.
    fn compose_json(&mut self, ack: u64, response: Vec<Arc<Outgoing>>) -> Vec<u8> {
        let budget = self.budget();
        let token = (!self.proven).then(|| format!(r#","token":"{}""#, self.token));
        let head = format!(r#"{{"type":"ack","ack":{ack},"events":["#);
        // Room for the closing `]`, the token, and a `"more"` count.
        let fixed = head.len() + 2 + token.as_ref().map_or(0, String::len) + 16;
        let mut events: Vec<&[u8]> = Vec::new();
        let mut size = fixed;
        for event in &response {
            let json = json_event(event);
            if size + json.len() + 1 > budget {
                break;
            }
            size += json.len() + 1;
            events.push(json);
        }
        let mut pulled = 0;
        if !self.proven {
            for event in &self.backlog {
                let json = json_event(event);
                if size + json.len() + 1 > budget.min(PUSH_TARGET.max(self.limits.max_datagram)) {
                    break;
                }
                size += json.len() + 1;
                events.push(json);
                pulled += 1;
            }
        }
        let mut datagram = head.into_bytes();
        join_events(&mut datagram, &events);
        datagram.push(b']');
        if let Some(token) = &token {
            datagram.extend_from_slice(token.as_bytes());
        }
        let more = if self.proven {
            0
        } else {
            self.backlog.len() - pulled
        };
        if more > 0 {
            datagram.extend_from_slice(format!(r#","more":{more}"#).as_bytes());
        }
        datagram.push(b'}');
        self.backlog.drain(..pulled);
        if datagram.len() > budget {
            // Not even an empty ack fits: answer with an empty datagram.
            datagram.clear();
        }
        datagram
    }

    async fn answer_error(&mut self, code: ErrorCode, message: &str) {
        let line = ServerEvent::error(code, message).to_text();
        let answer = cut_to(&line, self.budget()).into_owned();
        self.send(answer.as_bytes()).await;
    }

    /// Tells the hub (unless the member left by itself) and, where the
    /// budget allows, the client.
    async fn finish(mut self, ending: Ending) {
        let farewell = match ending {
            Ending::Quit => return,
            Ending::Dropped(reason) => reason,
            Ending::Expired => {
                let secs = self.limits.udp_expiry.as_secs();
                let detail = format!("no datagram for {secs} s");
                self.hub
                    .disconnect(self.id, LeaveReason::Dropped, Some(detail.clone()));
                detail
            }
            Ending::Flood => disconnect_flooder(&self.hub, self.id, &self.limits),
        };
        if self.proven && !farewell.is_empty() {
            let bye = Arc::new(Outgoing::new(ServerEvent::Bye { reason: farewell }));
            self.push(vec![bye]).await;
        }
    }
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

fn parse_error_code(error: &ParseError) -> ErrorCode {
    match error {
        ParseError::UnknownCommand(_) => ErrorCode::UnknownCommand,
        ParseError::Usage(_) => ErrorCode::Usage,
    }
}

/// An event's JSON, without the newline the line-based doors use.
fn json_event(event: &Outgoing) -> &[u8] {
    let line = event.encoded(WireMode::Json);
    &line[..line.len() - 1]
}

fn join_events(datagram: &mut Vec<u8>, events: &[&[u8]]) {
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            datagram.push(b',');
        }
        datagram.extend_from_slice(event);
    }
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

/// 128 random bits, hex: unguessable by anyone who does not receive it.
fn fresh_token() -> String {
    let mut bytes = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // Without an OS random source, fall back on the hasher's random
        // keys; still unknown to anyone off the path.
        tracing::warn!(%error, "no OS randomness; using a weaker token");
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        bytes[..8].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
        bytes[8..].copy_from_slice(&state.hash_one(2u8).to_le_bytes());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
    }

    #[test]
    fn tokens_are_long_and_differ() {
        let (first, second) = (fresh_token(), fresh_token());
        assert_eq!(first.len(), 32);
        assert_ne!(first, second);
    }

    #[test]
    fn expiry_default_is_two_minutes() {
        assert_eq!(
            ConnectionLimits::default().udp_expiry,
            Duration::from_secs(120)
        );
    }
}
