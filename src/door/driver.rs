//! The one driver for connection-oriented doors: it runs a member's
//! [`Session`] over any [`Wire`] (a byte stream with a codec, a WebSocket).
//!
//! One `select!` over five cancel-safe sources: the hub's "you are removed"
//! signal, the member's outbox (everything pending is encoded and written
//! at once), the peer (read only while the session wants input and the
//! member is not held by flow control), the end of that hold, and one
//! timer (the session's next deadline, or the wire's unterminated input).
//! While a write waits, the session's stall rule watches its progress.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::timeout;

use super::{carry_out, now, wait_dropped, with_drop_reason};
use crate::hub::{
    Delivery, DoorKind, Hub, MemberId, Membership, OutboxReceiver, Refusal, Reservation,
};
use crate::protocol::{DropReason, Outgoing};
use crate::session::{Ending, Input, Limits, Output, Session, FAREWELL_TIMEOUT};

/// How long a closed connection's input is still read (and dropped) while
/// the peer reads our last words: long enough for a peer that is reading
/// to see the close and close too, short enough not to hold shutdown.
const LINGER: Duration = Duration::from_millis(500);

/// Bytes taken from the outbox per write (at least one delivery): one
/// write carries them all.
pub(crate) const WRITE_BYTES: usize = 64 * 1024;

/// Batch capacity kept between writes (a burst's is given back).
const BATCH_KEPT: usize = 16;

/// A peer's connection as the driver sees it: inputs decoded from it,
/// events encoded onto it.
pub trait Wire: Send {
    /// The next input already received, if a whole one is buffered.
    fn next_input(&mut self) -> Option<Input>;

    /// Waits for more from the peer. `Ok(false)` once it will send no more.
    /// Cancel-safe: nothing received is lost if the future is dropped.
    fn receive(&mut self) -> impl Future<Output = io::Result<bool>> + Send;

    /// At end of input: what is left (an unterminated last line).
    fn last_input(&mut self) -> Option<Input> {
        None
    }

    /// When buffered unterminated input counts as a whole one, if any
    /// is waiting (the classic client never sends a newline).
    fn partial_deadline(&self) -> Option<Instant> {
        None
    }

    /// The unterminated input, taken as a whole one.
    fn take_partial(&mut self) -> Option<Input> {
        None
    }

    /// Reading resumes after a time it was not read (held, throttled):
    /// the quiet before a partial counts from now, since the rest may be
    /// waiting in the kernel.
    fn restart_partial_clock(&mut self) {}

    /// Encodes one event for the next [`Wire::flush`].
    fn encode(&mut self, event: &Outgoing);

    /// A count that grows whenever writing makes progress (bytes, or
    /// frames, the connection has taken so far): the stall rule's measure.
    fn written(&self) -> u64;

    /// Writes everything encoded.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Closes the connection.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// After closing: reads and drops whatever the peer still sends until
    /// it closes too, so input left unread does not make the kernel reset
    /// the connection (which can destroy the last words before the peer
    /// reads them).
    fn discard_input(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Serves one peer from welcome to goodbye: admission, the session, the
/// last words.
pub async fn serve_member(
    mut wire: impl Wire,
    hub: Hub,
    door: DoorKind,
    place: Result<Reservation, Refusal>,
    limits: Arc<Limits>,
) {
    let membership = place.and_then(|place| hub.connect_reserved(door, place));
    let membership = match membership {
        Ok(membership) => membership,
        Err(refusal) => {
            tracing::info!(%refusal, "refused");
            wire.encode(&Outgoing::new(refusal.to_event()));
            let refuse = async {
                wire.flush().await?;
                wire.close().await?;
                let _ = timeout(LINGER, wire.discard_input()).await;
                io::Result::Ok(())
            };
            let _ = timeout(FAREWELL_TIMEOUT, refuse).await;
            return;
        }
    };
    let session = Session::for_stream(&limits, now());
    serve_admitted(wire, hub, membership, session, limits).await;
}

/// Serves one peer the hub has admitted (an IRC client registers first,
/// then becomes a member by the nick it chose), until its goodbye.
pub async fn serve_admitted(
    mut wire: impl Wire,
    hub: Hub,
    membership: Membership,
    session: Session,
    limits: Arc<Limits>,
) {
    let Membership {
        id,
        outbox,
        dropped,
        ..
    } = membership;
    let mut member = Member {
        hub,
        id,
        outbox,
        session,
        batch: Vec::new(),
        timer: Timer::new(),
        liveness: limits.liveness,
    };
    let ending = member.run(&mut wire, dropped).await;
    tracing::debug!(?ending, "session ending");
    member.finish(&mut wire, ending).await;
}

/// One member's end of the driver.
struct Member {
    hub: Hub,
    id: MemberId,
    outbox: OutboxReceiver,
    session: Session,
    batch: Vec<Delivery>,
    /// The one timer: moved when the deadline moves, not made anew per
    /// wake (registering a timer costs more than checking one).
    timer: Timer,
    /// Within how long the kernel finds a vanished peer, if it watches.
    liveness: Option<Duration>,
}

/// A timer kept across waits, reset only when its deadline changes.
struct Timer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: Option<tokio::time::Instant>,
}

impl Timer {
    fn new() -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            deadline: None,
        }
    }

    /// Sets the deadline; `None` turns the timer off (see [`Timer::expired`]).
    fn set(&mut self, deadline: Option<Instant>) {
        let deadline = deadline.map(tokio::time::Instant::from_std);
        if let Some(at) = deadline.filter(|at| Some(*at) != self.deadline) {
            self.sleep.as_mut().reset(at);
        }
        self.deadline = deadline;
    }

    fn is_set(&self) -> bool {
        self.deadline.is_some()
    }

    /// Resolves at the deadline (poll only while [`Timer::is_set`]).
    /// Cancel-safe.
    async fn expired(&mut self) {
        self.sleep.as_mut().await;
    }
}

impl Member {
    async fn run(
        &mut self,
        wire: &mut impl Wire,
        dropped: tokio::sync::oneshot::Receiver<DropReason>,
    ) -> Ending {
        let mut dropped = Some(dropped);
        let mut input_closed = false;
        let mut end_told = false;
        // Once the connection breaks (a reset, say), nothing more is
        // written, but what the peer sent before is still handled: a
        // `byebye` followed by a reset is a goodbye.
        let mut broken: Option<io::Error> = None;
        let mut was_reading = true;
        loop {
            if !was_reading {
                wire.restart_partial_clock();
            }
            // Hand over what is buffered, for as long as the session wants
            // it and flow control lets this member talk.
            while self.session.wants_input() && !self.outbox.is_held() {
                let next = match wire.next_input() {
                    Some(input) => Some(input),
                    None if input_closed => wire.last_input(),
                    // Unterminated text after a pause is a line of its own.
                    None if wire.partial_deadline().is_some_and(|at| at <= now()) => {
                        wire.take_partial()
                    }
                    None => None,
                };
                match next {
                    Some(input) => self.session.handle_input(input, now()),
                    None => {
                        if input_closed && !end_told {
                            if let Some(error) = broken.take() {
                                return self.broke(error);
                            }
                            end_told = true;
                            self.session.handle_end_of_input(now());
                        }
                        break;
                    }
                }
                if let Some(ending) = self.carry_out() {
                    return with_drop_reason(ending, &mut dropped);
                }
            }
            if let Some(ending) = self.carry_out() {
                return with_drop_reason(ending, &mut dropped);
            }
            let held = self.outbox.is_held();
            let reading = self.session.wants_input() && !input_closed && !held;
            was_reading = reading;
            let partial = wire.partial_deadline().filter(|_| reading);
            let deadline = [self.session.poll_timeout(), partial]
                .into_iter()
                .flatten()
                .min();
            self.timer.set(deadline);
            let timed = self.timer.is_set();
            tokio::select! {
                why = wait_dropped(&mut dropped) => self.session.handle_dropped(why),
                count = self.outbox.recv_many(&mut self.batch, WRITE_BYTES) => {
                    if count == 0 {
                        // Removed from the hub: its reason, if it gave one.
                        let why = dropped.take().and_then(|mut dropped| dropped.try_recv().ok());
                        return why.map_or(Ending::Quit, Ending::Dropped);
                    }
                    let at = now();
                    let writing = broken.is_none();
                    for delivery in self.batch.drain(..) {
                        for event in delivery.events() {
                            self.session.handle_delivered(event.event(), at);
                            if writing {
                                wire.encode(event);
                            }
                        }
                    }
                    self.batch.shrink_to(BATCH_KEPT);
                    if !writing {
                        self.outbox.release();
                    } else if let Err(error) = self.write(wire, &mut dropped).await {
                        // Read on: the kernel still holds what the peer sent.
                        broken = Some(error);
                    }
                }
                () = self.outbox.until_released(), if held => {}
                received = wire.receive(), if reading => match received {
                    Ok(true) => {}
                    Ok(false) => {
                        // A clean close: a write refused after it is the
                        // peer's kernel answering, not a broken line.
                        input_closed = true;
                        broken = None;
                    }
                    Err(error) => {
                        // What was received before the error is handled first.
                        input_closed = true;
                        broken.get_or_insert(error);
                    }
                },
                // The wire's partial input, if due, is taken at the top.
                () = self.timer.expired(), if timed => {
                    self.session.handle_timeout(now());
                }
            }
        }
    }

    /// Writes what is encoded. A peer too slow to take it cannot pin the
    /// task: the hub's drop interrupts the write, and so does the stall
    /// rule while this member holds others back. Written, it no longer
    /// counts in the outbox's backlog.
    async fn write(
        &mut self,
        wire: &mut impl Wire,
        dropped: &mut Option<tokio::sync::oneshot::Receiver<DropReason>>,
    ) -> io::Result<()> {
        loop {
            let output = Output {
                written: wire.written(),
                waiting: true,
                congested: self.outbox.is_congested(),
            };
            self.session.handle_output(output, now());
            self.timer.set(self.session.poll_timeout());
            let timed = self.timer.is_set();
            // `flush` is cancel-safe: what went out is not sent again.
            tokio::select! {
                written = wire.flush() => {
                    written?;
                    break;
                }
                why = wait_dropped(dropped) => {
                    self.session.handle_dropped(why);
                    return Ok(());
                }
                // Congested while this write waits: the stall clock starts.
                () = self.outbox.until_congested(), if !output.congested => {}
                () = self.timer.expired(), if timed => {
                    let output = Output { written: wire.written(), ..output };
                    self.session.handle_output(output, now());
                    self.session.handle_timeout(now());
                    if self.session.is_ended() {
                        return Ok(());
                    }
                }
            }
        }
        self.outbox.release();
        let idle = Output {
            written: wire.written(),
            waiting: false,
            congested: false,
        };
        self.session.handle_output(idle, now());
        Ok(())
    }

    /// How a broken connection ends the session: a peer the kernel found
    /// gone (keepalive or `TCP_USER_TIMEOUT`, see
    /// [`watch_liveness`](super::listener::watch_liveness)) leaves as
    /// unresponsive; any other break is a lost connection. The kernel
    /// reports a timed-out peer as `ETIMEDOUT`, or as the last soft error
    /// its probes met: `EHOSTUNREACH` once the peer's link-layer address
    /// no longer resolves (a pulled cable on a LAN).
    fn broke(&self, error: io::Error) -> Ending {
        use io::ErrorKind::{HostUnreachable, NetworkUnreachable, TimedOut};
        match (error.kind(), self.liveness) {
            (TimedOut | HostUnreachable | NetworkUnreachable, Some(within)) => {
                Ending::Removed(DropReason::Unresponsive {
                    secs: within.as_secs(),
                })
            }
            _ => Ending::Lost(error.to_string()),
        }
    }

    /// Carries out what the session asks for; the ending, once there is one.
    fn carry_out(&mut self) -> Option<Ending> {
        carry_out(&mut self.session, &self.hub, self.id)
    }

    /// Tells the hub (unless it knows) and the peer how the session ended:
    /// what is still queued, then the `bye`, then close, within
    /// [`FAREWELL_TIMEOUT`].
    async fn finish(mut self, wire: &mut impl Wire, ending: Ending) {
        if let Ending::Lost(error) = &ending {
            tracing::info!(%error, "connection lost");
        }
        if let Some(departure) = ending.departure() {
            self.hub.disconnect(self.id, departure);
        }
        if matches!(ending, Ending::Lost(_)) {
            return;
        }
        // The member is out of the hub now, so its outbox ends after what
        // is already queued.
        let last_words = async {
            while self.outbox.recv_many(&mut self.batch, WRITE_BYTES).await > 0 {
                for delivery in self.batch.drain(..) {
                    for event in delivery.events() {
                        wire.encode(event);
                    }
                }
                wire.flush().await?;
            }
            if let Some(bye) = ending.farewell() {
                wire.encode(&Outgoing::new(bye));
                wire.flush().await?;
            }
            wire.close().await?;
            let _ = timeout(LINGER, wire.discard_input()).await;
            io::Result::Ok(())
        };
        match timeout(FAREWELL_TIMEOUT, last_words).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "farewell not delivered"),
            Err(_) => tracing::debug!("farewell timed out"),
        }
    }
}
