//! The TCP door: text lines for `nc`, telnet and ten-line socket clients,
//! JSON lines for our own client (after `/json`).
//!
//! One task per connection runs one `select!` loop over: bytes from the
//! peer, the member's outbox, the hub's "you are dropped" signal, and one
//! timer (throttle, unterminated-line flush, idle). Every branch is
//! cancel-safe: `readable`, `recv_many`, a oneshot and a sleep.
//!
//! An idle connection holds no buffers: the read buffer is taken when
//! bytes are ready and given back once every line in it is handled, and
//! the write buffer shrinks after a burst.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::line_codec::{Frame, LineCodec};
use super::throttle::{Throttle, Verdict};
use super::{disconnect_flooder, wait_dropped, ConnectionLimits, MAX_IN_FLIGHT};
use crate::hub::{Door, Flow, Hub, MemberId, Pending};
use crate::protocol::{
    parse_line, ClientCommand, ErrorCode, LeaveReason, Outgoing, ParseError, ServerEvent, WireMode,
};

/// Events taken from the outbox per write: one write carries them all.
const WRITE_BATCH: usize = 128;

/// How long the last words to a departing client (queued events, the
/// goodbye) may take to write before the connection is closed anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait before accepting again after `accept` fails (for
/// example when the process is out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long input waits for the rest of a command's answer (a history
/// commit or lookup, normally well under a millisecond) before going on.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// Write buffer capacity kept between batches; a bigger one (after a burst)
/// is freed.
const WRITE_BUF_KEPT: usize = 16 * 1024;

/// Accepts connections until `shutdown` is cancelled, one task each,
/// tracked by `tracker` so the server can wait for them to finish.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = Arc::new(limits);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::info_span!("tcp", %peer);
                tracker.spawn(
                    run_connection(stream, peer, hub.clone(), limits.clone()).instrument(span),
                );
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves one client from welcome to goodbye.
async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    hub: Hub,
    limits: Arc<ConnectionLimits>,
) {
    // Chat lines are small and latency matters more than packet count;
    // batching is done by draining the outbox into one write instead.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let session = match hub.connect(Door::Tcp, Some(peer.ip())) {
        Ok(session) => session,
        Err(refusal) => {
            tracing::info!(%refusal, "connection refused");
            let line = Outgoing::new(refusal.to_event());
            let _ = timeout(
                FAREWELL_TIMEOUT,
                writer.write_all(line.encoded(WireMode::Text)),
            )
            .await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    let now = Instant::now();
    let mut connection = Connection {
        throttle: Throttle::new(limits.max_rate, now.into_std()),
        idle_at: limits.idle.map(|idle| now + idle),
        codec: LineCodec::new(match limits.max_line {
            0 => usize::MAX,
            limit => limit,
        }),
        limits,
        hub,
        id: session.id,
        reader,
        writer,
        read_buf: BytesMut::new(),
        outbox: session.outbox,
        dropped: Some(session.dropped),
        input_mode: WireMode::Text,
        output_mode: WireMode::Text,
        batch: Vec::new(),
        write_buf: Vec::new(),
        held: None,
        resume_at: None,
        awaiting: None,
        awaiting_deadline: None,
        deferred: None,
        echoes_in_flight: VecDeque::new(),
        answer_seen: false,
        flush_at: None,
        input_closed: false,
    };
    let ending = connection.run().await;
    tracing::debug!(?ending, "connection ending");
    connection.finish(ending).await;
}

/// Why a connection's loop ended.
#[derive(Debug)]
enum Ending {
    /// The member said goodbye; the hub has already removed it.
    Quit,
    /// The socket failed (reset, killed peer).
    Lost(String),
    /// The hub dropped the member (full outbox, kick, shutdown).
    Dropped(String),
    /// The member kept sending faster than the rate limit.
    Flood,
    /// The member sent nothing for the idle limit.
    Idle,
}

struct Connection {
    hub: Hub,
    id: MemberId,
    limits: Arc<ConnectionLimits>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    codec: LineCodec,
    read_buf: BytesMut,
    outbox: mpsc::Receiver<Arc<Outgoing>>,
    /// `None` once it has resolved.
    dropped: Option<oneshot::Receiver<String>>,
    input_mode: WireMode,
    /// Switches when the `mode` event is written, so every line before it
    /// is in the old mode and every line after it in the new one.
    output_mode: WireMode,
    batch: Vec<Arc<Outgoing>>,
    write_buf: Vec<u8>,
    throttle: Option<Throttle>,
    /// A line waiting out the throttle; nothing more is read meanwhile.
    held: Option<Frame>,
    resume_at: Option<Instant>,
    /// Part of the last command's answer still to come (with history on,
    /// a message reaches the room once it is on disk; a lookup runs on the
    /// history thread). Messages may follow one another meanwhile (they
    /// stay in order through the history writer), but any other command
    /// waits in `deferred` until the answer is in. So the room sees this
    /// member's messages, nick changes and goodbye in the order it sent
    /// them, and a piped `/search` gets its answer before the goodbye.
    awaiting: Option<Pending>,
    awaiting_deadline: Option<Instant>,
    /// A command waiting for `awaiting`; nothing more is read meanwhile.
    deferred: Option<ClientCommand>,
    /// Ids of this member's messages not yet echoed, oldest first. At
    /// `MAX_IN_FLIGHT` reading stops, so a fast sender is held back by TCP
    /// instead of queueing without bound in front of the history writer.
    echoes_in_flight: VecDeque<u64>,
    /// Set when a written batch held the awaited answer.
    answer_seen: bool,
    flush_at: Option<Instant>,
    idle_at: Option<Instant>,
    /// The peer half-closed; what it sent is handled, then it quits.
    input_closed: bool,
}

impl Connection {
    async fn run(&mut self) -> Ending {
        loop {
            let flush_at = self.flush_at.filter(|_| !self.paused());
            let next_timer = [
                self.resume_at,
                self.awaiting_deadline,
                flush_at,
                self.idle_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let can_read = !self.paused() && !self.input_closed;
            tokio::select! {
                reason = wait_dropped(&mut self.dropped) => return Ending::Dropped(reason),
                count = self.outbox.recv_many(&mut self.batch, WRITE_BATCH) => {
                    if count == 0 {
                        return Ending::Dropped(self.take_drop_reason());
                    }
                    if let Err(ending) = self.write_batch().await {
                        return ending;
                    }
                    if std::mem::take(&mut self.answer_seen) {
                        if let Some(ending) = self.continue_input() {
                            return ending;
                        }
                    }
                }
                ready = self.reader.readable(), if can_read => match ready.and_then(|()| self.read_some()) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) => {
                        self.input_closed = true;
                        if let Some(ending) = self.on_end_of_input() {
                            return ending;
                        }
                    }
                    Ok(_) => {
                        if let Some(ending) = self.on_bytes() {
                            return ending;
                        }
                    }
                    Err(error) => return Ending::Lost(error.to_string()),
                },
                _ = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    if let Some(ending) = self.on_timer() {
                        return ending;
                    }
                }
            }
        }
    }

    /// Reads what the socket has into the read buffer, allocating it only
    /// now; `Ok(0)` is end of input.
    fn read_some(&mut self) -> std::io::Result<usize> {
        self.read_buf.reserve(READ_CHUNK);
        let read = self.reader.try_read_buf(&mut self.read_buf);
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        read
    }

    /// Input waits for the throttle or for an earlier command's answer.
    fn paused(&self) -> bool {
        self.held.is_some()
            || self.deferred.is_some()
            || self.echoes_in_flight.len() >= MAX_IN_FLIGHT
    }

    /// After a pause: the deferred command, the lines already buffered,
    /// then end of input.
    fn continue_input(&mut self) -> Option<Ending> {
        if self.awaiting.is_none() {
            if let Some(command) = self.deferred.take() {
                if let Some(ending) = self.run_command(command) {
                    return Some(ending);
                }
            }
        }
        if self.paused() {
            return None;
        }
        if let Some(ending) = self.on_bytes() {
            return Some(ending);
        }
        if self.input_closed && !self.paused() {
            return self.on_end_of_input();
        }
        None
    }

    /// Handles every complete line now in the read buffer, stopping early
    /// when input pauses.
    fn on_bytes(&mut self) -> Option<Ending> {
        self.idle_at = self.limits.idle.map(|idle| Instant::now() + idle);
        while !self.paused() {
            // Decoding never fails; the io::Error type is the trait's.
            let Ok(Some(frame)) = self.codec.decode(&mut self.read_buf) else {
                break;
            };
            if let Some(ending) = self.admit(frame) {
                return Some(ending);
            }
        }
        if self.read_buf.is_empty() {
            // Idle connections keep no read buffer.
            self.read_buf = BytesMut::new();
            self.flush_at = None;
        } else {
            self.flush_at = Some(Instant::now() + self.limits.partial_line_flush);
        }
        None
    }

    /// The peer will send no more: handle what is left, then say goodbye.
    fn on_end_of_input(&mut self) -> Option<Ending> {
        while !self.paused() {
            let Ok(Some(frame)) = self.codec.decode_eof(&mut self.read_buf) else {
                break;
            };
            if let Some(ending) = self.handle_frame(frame) {
                return Some(ending);
            }
        }
        if self.paused() {
            // Finish the waiting lines first; a timer or an answer brings us back.
            return None;
        }
        self.flush_at = None;
        // Like any command, the goodbye waits for earlier answers.
        self.command(ClientCommand::Quit { reason: None })
    }

    fn on_timer(&mut self) -> Option<Ending> {
        let now = Instant::now();
        if self.idle_at.is_some_and(|at| at <= now) {
            return Some(Ending::Idle);
        }
        if self.resume_at.is_some_and(|at| at <= now) {
            self.resume_at = None;
            if let Some(frame) = self.held.take() {
                if let Some(ending) = self.handle_frame(frame) {
                    return Some(ending);
                }
            }
            // Lines already buffered behind the held one go next.
            return self.continue_input();
        }
        if self.awaiting_deadline.is_some_and(|at| at <= now) {
            // The history writer is stuck; do not hold the member hostage.
            tracing::warn!("an answer did not come in time; reading on");
            self.awaiting = None;
            self.awaiting_deadline = None;
            self.echoes_in_flight.clear();
            return self.continue_input();
        }
        if self.flush_at.is_some_and(|at| at <= now) && !self.paused() {
            self.flush_at = None;
            if let Some(frame) = self.codec.take_partial(&mut self.read_buf) {
                return self.admit(frame);
            }
        }
        None
    }

    /// Passes a frame through the rate limit.
    fn admit(&mut self, frame: Frame) -> Option<Ending> {
        let verdict = match &mut self.throttle {
            Some(throttle) => throttle.check(Instant::now().into_std()),
            None => Verdict::Now,
        };
        match verdict {
            Verdict::Now => self.handle_frame(frame),
            Verdict::After(delay) => {
                self.held = Some(frame);
                self.resume_at = Some(Instant::now() + delay);
                None
            }
            Verdict::Flood => Some(Ending::Flood),
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Option<Ending> {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong => {
                let message = format!(
                    "line longer than {} bytes; it was dropped",
                    self.limits.max_line
                );
                self.hub
                    .notify(self.id, ServerEvent::error(ErrorCode::LineTooLong, message));
                return None;
            }
            Frame::InvalidUtf8 => {
                let message = "line is not valid UTF-8; it was dropped";
                self.hub
                    .notify(self.id, ServerEvent::error(ErrorCode::InvalidUtf8, message));
                return None;
            }
        };
        let command = match self.input_mode {
            WireMode::Text => match parse_line(&line) {
                Ok(Some(command)) => command,
                Ok(None) => return None,
                Err(error) => {
                    let code = match error {
                        ParseError::UnknownCommand(_) => ErrorCode::UnknownCommand,
                        ParseError::Usage(_) => ErrorCode::Usage,
                    };
                    self.hub
                        .notify(self.id, ServerEvent::error(code, error.to_string()));
                    return None;
                }
            },
            WireMode::Json if line.trim().is_empty() => return None,
            WireMode::Json => match serde_json::from_str(&line) {
                Ok(command) => command,
                Err(error) => {
                    let message = format!("not a command object: {error}");
                    self.hub
                        .notify(self.id, ServerEvent::error(ErrorCode::BadJson, message));
                    return None;
                }
            },
        };
        self.command(command)
    }

    /// Runs a command now, or defers it until the answer it must follow
    /// is in (see `awaiting`).
    fn command(&mut self, command: ClientCommand) -> Option<Ending> {
        let is_message = matches!(
            command,
            ClientCommand::Say { .. } | ClientCommand::Me { .. }
        );
        let may_overtake = is_message && matches!(self.awaiting, Some(Pending::Echo(_)));
        if self.awaiting.is_some() && !may_overtake {
            self.deferred = Some(command);
            return None;
        }
        self.run_command(command)
    }

    fn run_command(&mut self, command: ClientCommand) -> Option<Ending> {
        if let ClientCommand::Mode { mode } = command {
            self.input_mode = mode;
            self.hub.notify(self.id, ServerEvent::Mode { mode });
            if mode == WireMode::Json {
                // The welcome again, structured this time: where a JSON
                // client starts from (nick, room, members).
                self.hub.welcome(self.id);
            }
            return None;
        }
        let handled = self.hub.handle(self.id, command);
        if let Some(pending) = handled.pending {
            // Answers come in order, so the latest one covers the earlier.
            self.awaiting = Some(pending);
            self.awaiting_deadline = Some(Instant::now() + ANSWER_WAIT);
            if let Pending::Echo(id) = pending {
                self.echoes_in_flight.push_back(id);
            }
        }
        match handled.flow {
            Flow::Continue => None,
            Flow::Quit => Some(Ending::Quit),
        }
    }

    /// Writes everything in `batch` with one write. A drop signal from the
    /// hub interrupts a write that the peer is too slow to take.
    async fn write_batch(&mut self) -> Result<(), Ending> {
        self.fill_write_buf();
        let Connection {
            writer,
            write_buf,
            dropped,
            ..
        } = self;
        let written = tokio::select! {
            written = writer.write_all(write_buf) => written.map_err(|error| Ending::Lost(error.to_string())),
            reason = wait_dropped(dropped) => Err(Ending::Dropped(reason)),
        };
        if write_buf.capacity() > WRITE_BUF_KEPT {
            *write_buf = Vec::new();
        }
        written
    }

    /// Encodes `batch` into `write_buf`, switching output mode where a
    /// `mode` event says so.
    fn fill_write_buf(&mut self) {
        self.write_buf.clear();
        for outgoing in self.batch.drain(..) {
            match outgoing.event() {
                ServerEvent::Mode { mode } => self.output_mode = *mode,
                ServerEvent::Message(message)
                    if self.echoes_in_flight.front() == Some(&message.id) =>
                {
                    self.echoes_in_flight.pop_front();
                    self.answer_seen = true;
                }
                _ => {}
            }
            if self
                .awaiting
                .is_some_and(|pending| pending.is_met_by(outgoing.event()))
            {
                self.awaiting = None;
                self.awaiting_deadline = None;
                self.answer_seen = true;
            }
            self.write_buf
                .extend_from_slice(outgoing.encoded(self.output_mode));
        }
    }

    fn take_drop_reason(&mut self) -> String {
        self.dropped
            .take()
            .and_then(|mut dropped| dropped.try_recv().ok())
            .unwrap_or_else(|| "disconnected by the server".to_string())
    }

    /// Tells the hub and the peer how the session ended, then closes.
    async fn finish(mut self, ending: Ending) {
        let farewell = match ending {
            Ending::Quit => None,
            Ending::Lost(error) => {
                tracing::info!(%error, "connection lost");
                self.hub.disconnect(self.id, LeaveReason::Lost, None);
                return;
            }
            Ending::Dropped(reason) => Some(reason),
            Ending::Flood => Some(disconnect_flooder(&self.hub, self.id, &self.limits)),
            Ending::Idle => {
                let idle = self.limits.idle.unwrap_or_default().as_secs();
                self.hub.disconnect(
                    self.id,
                    LeaveReason::Dropped,
                    Some(format!("idle for {idle} s")),
                );
                Some(format!("idle for {idle} s"))
            }
        };
        // The member is out of the hub now, so its outbox ends after what
        // is already queued: send that, then the goodbye, then close.
        let last_words = async {
            while self.outbox.recv_many(&mut self.batch, WRITE_BATCH).await > 0 {
                self.fill_write_buf();
                self.writer.write_all(&self.write_buf).await?;
            }
            if let Some(reason) = farewell {
                let bye = Outgoing::new(ServerEvent::Bye { reason });
                self.writer.write_all(bye.encoded(self.output_mode)).await?;
            }
            self.writer.shutdown().await
        };
        match timeout(FAREWELL_TIMEOUT, last_words).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "farewell not delivered"),
            Err(_) => tracing::debug!("farewell timed out"),
        }
    }
}
