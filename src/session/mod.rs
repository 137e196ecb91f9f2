//! The member session: the per-member rules every door applies, in one
//! place, with no I/O.
//!
//! A door decodes what its peer sends into [`Input`]s, hands each to
//! [`Session::handle_input`], and carries out what [`Session::poll_action`]
//! returns: commands for the hub, errors to tell the member, the end of the
//! session. It reports each event it takes from the member's outbox
//! ([`Session::handle_delivered`]), and wakes the session at
//! [`Session::poll_timeout`] ([`Session::handle_timeout`]). Time always
//! comes in as an argument, so every rule is tested with a made-up clock
//! (the shape of quinn-proto's `handle_*`/`poll_*`).
//!
//! The rules:
//!
//! - **Rate**: one policy on every door. Up to a burst of max(rate, 5)
//!   inputs pass at once; after that each waits its turn at the rate, and
//!   the door reads nothing meanwhile (TCP back-pressure; a UDP client
//!   waits for its answer). More than twice the burst in a row over the
//!   rate is a flood: the member is removed.
//! - **Answers in order**: part of a command's answer comes a moment later
//!   (a message's echo once it is on disk, a lookup's result). Messages may
//!   overtake a pending echo (the history writer keeps them in order), but
//!   anything else (another command, an error about bad input, the mode
//!   switch, the goodbye at end of input) waits until the answer is in, so
//!   the member's answers come in the order of its input.
//! - **In flight**: at most [`MAX_IN_FLIGHT`] of the member's messages may
//!   be on their way to disk; past that the door stops reading.
//! - **Idle** (and UDP expiry): silence past the limit ends the session.
//! - **Stall**: a member that holds its rooms back (its outbox is
//!   congested, see [`crate::hub::outbox`]) while its connection takes no
//!   byte for the stall timeout is removed for sendq exceeded; one that
//!   keeps reading, however slowly, never is.
//! - **Farewell**: how the session ended decides what the hub and the
//!   member are told ([`Ending`]).

pub mod limits;
pub mod throttle;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use limits::{Keepalive, Limits};
use throttle::{Throttle, Verdict};

use crate::hub::{Flow, Handled, Pending};
use crate::protocol::{ClientCommand, Departure, DropReason, ServerEvent, WireMode};

/// Messages a member may have on their way to disk (sent, not yet echoed
/// back) before its door stops reading: a fast sender is then held back by
/// its transport instead of queueing without bound before the history
/// writer.
pub const MAX_IN_FLIGHT: usize = 64;

/// How long input waits for the rest of a command's answer (normally well
/// under a millisecond) before going on without it.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long a newcomer may stay unannounced: its rooms hear of it at its
/// first command, or this long after it came. Long enough for a client
/// that names itself on connecting (`sockchat connect --nick alice`) to
/// be announced by that name; short enough that someone who only reads
/// is soon seen.
pub const ARRIVAL_GRACE: Duration = Duration::from_secs(1);

/// How long a door may take for its last words to a departing member
/// (what is still queued, then the `bye`) before it closes anyway.
pub const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// One unit of input, as a door decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A command for the hub.
    Command(ClientCommand),
    /// The member switched wire mode (`/json`). The door reads the new way
    /// from now on; the session answers, in turn, with a `mode` event and
    /// a fresh welcome.
    SwitchMode(WireMode),
    /// Input the door could not use (too long, not UTF-8, not JSON): the
    /// error event to send back, in turn.
    Refused(ServerEvent),
    /// Input the door answered itself (an IRC `PING` or `CAP`): the
    /// answer to send back, in turn.
    Answered(ServerEvent),
    /// Nothing to do (an empty line, a keep-alive): it only shows the
    /// member is there.
    Nothing,
    /// Not a chat client at all (an HTTP request on the text port): the
    /// session ends, with this reason, and nothing it sent is carried out.
    Reject(DropReason),
}

impl Input {
    /// Whether it counts toward the rate limit.
    fn is_metered(&self) -> bool {
        !matches!(self, Input::Nothing)
    }
}

/// What the door should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Carry the command out on the hub and report what it did with
    /// [`Session::handle_handled`] before polling again.
    Run(ClientCommand),
    /// Send this event to the member, in order with its outbox (the hub's
    /// `notify`).
    Tell(ServerEvent),
    /// Send the member its welcome again, as of now (the hub's `welcome`).
    Welcome,
    /// The arrival grace is over: the member's rooms hear it is here, if
    /// its commands have not told them yet (the hub's `arrive`).
    Arrive,
    /// The session is over; see [`Ending`] for the last words.
    End(Ending),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The member said goodbye; the hub has removed it and queued its `bye`.
    Quit,
    /// The connection broke.
    Lost(String),
    /// The hub removed the member (full outbox, kick, shutdown).
    Dropped(DropReason),
    /// The session's own rules removed it (flood, idle, expiry).
    Removed(DropReason),
}

impl Ending {
    /// What the door tells the hub, if the hub does not know yet.
    pub fn departure(&self) -> Option<Departure> {
        match self {
            Ending::Quit | Ending::Dropped(_) => None,
            Ending::Lost(_) => Some(Departure::Lost),
            Ending::Removed(why) => Some(Departure::Dropped(why.clone())),
        }
    }

    /// The `bye` the door sends last, after what is still queued; none for
    /// a goodbye (the hub queued it) or a broken connection.
    pub fn farewell(&self) -> Option<ServerEvent> {
        match self {
            Ending::Quit | Ending::Lost(_) => None,
            Ending::Dropped(why) | Ending::Removed(why) => Some(ServerEvent::Bye {
                reason: why.told(),
                code: Some(why.code()),
            }),
        }
    }
}

/// How the member's connection is writing, as its door sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Bytes the connection has taken so far: a count that grows with
    /// every write that makes progress.
    pub written: u64,
    /// Something is waiting to be written.
    pub waiting: bool,
    /// The member holds others back: its outbox is congested.
    pub congested: bool,
}

/// The rules of one member's session; see the module docs.
#[derive(Debug)]
pub struct Session {
    throttle: Option<Throttle>,
    idle: Option<Duration>,
    expiry: Option<Duration>,
    /// When silence ends the session, and as what.
    silence_deadline: Option<(Instant, DropReason)>,
    stall_timeout: Option<Duration>,
    /// While congested with output waiting: the byte count when it last
    /// moved, and since when it has not.
    stalled: Option<(u64, Instant)>,
    /// Inputs accepted but not yet carried out, oldest first: one waiting
    /// out the throttle, or for an earlier command's answer.
    waiting: VecDeque<Input>,
    /// When the throttle lets the front of `waiting` go.
    release_at: Option<Instant>,
    /// Part of the last command's answer still to come. Answers come in
    /// order, so the latest one covers the earlier ones.
    awaiting: Option<Pending>,
    answer_deadline: Option<Instant>,
    /// Ids of this member's messages not yet echoed, oldest first.
    echoes_in_flight: VecDeque<u64>,
    /// A command was handed out and its outcome is not reported yet.
    running: bool,
    /// When the door asks the hub to announce the member (once).
    arrival_deadline: Option<Instant>,
    /// Whether to ask a silent member if it is there (IRC's keepalive).
    keepalive: Option<Keepalive>,
    /// When to ask next; once asked, by when an answer must come.
    probe_at: Option<Instant>,
    answer_by: Option<Instant>,
    actions: VecDeque<Action>,
    ended: bool,
}

impl Session {
    /// A session for a stream door (TCP, web): the rate limit and `--idle`.
    pub fn for_stream(limits: &Limits, now: Instant) -> Self {
        let mut session = Self::new(limits.max_rate, limits.idle, None, now);
        session.stall_timeout = Some(limits.stall_timeout).filter(|stall| !stall.is_zero());
        session
    }

    /// With the keepalive rule (see [`Keepalive`]): a silent member is
    /// asked if it is there, and removed if it does not answer.
    pub fn with_keepalive(mut self, keepalive: Option<Keepalive>, now: Instant) -> Self {
        self.keepalive = keepalive;
        self.heard_from(now);
        self
    }

    /// A session for a datagram door: the rate limit, `--idle`, and UDP's
    /// expiry (UDP has no other goodbye).
    pub fn for_datagrams(limits: &Limits, now: Instant) -> Self {
        Self::new(limits.max_rate, limits.idle, Some(limits.udp_expiry), now)
    }

    fn new(max_rate: u32, idle: Option<Duration>, expiry: Option<Duration>, now: Instant) -> Self {
        let mut session = Session {
            throttle: Throttle::new(max_rate, now),
            idle: idle.filter(|idle| !idle.is_zero()),
            expiry: expiry.filter(|expiry| !expiry.is_zero()),
            silence_deadline: None,
            stall_timeout: None,
            stalled: None,
            waiting: VecDeque::new(),
            release_at: None,
            awaiting: None,
            answer_deadline: None,
            echoes_in_flight: VecDeque::new(),
            running: false,
            arrival_deadline: Some(now + ARRIVAL_GRACE),
            keepalive: None,
            probe_at: None,
            answer_by: None,
            actions: VecDeque::new(),
            ended: false,
        };
        session.heard_from(now);
        session
    }

    /// Whether the door should read more input now. It stops while an
    /// input waits (throttle, an earlier answer) and while too many
    /// messages are on their way to disk, so the transport holds the rest.
    pub fn wants_input(&self) -> bool {
        !self.ended
            && !self.running
            && self.waiting.is_empty()
            && self.echoes_in_flight.len() < MAX_IN_FLIGHT
    }

    /// Whether the session is over (its `End` action is out or queued).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether nothing is waiting or awaited: everything handed in so far
    /// has been carried out and fully answered. (A datagram door answers
    /// each datagram once this holds.)
    pub fn is_settled(&self) -> bool {
        self.waiting.is_empty() && !self.running && self.awaiting.is_none()
    }

    /// One input from the member, at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if self.ended {
            return;
        }
        self.heard_from(now);
        if input.is_metered() {
            let verdict = match &mut self.throttle {
                Some(throttle) => throttle.check(now),
                None => Verdict::Now,
            };
            match verdict {
                Verdict::Now => {}
                Verdict::After(delay) => {
                    // Later than anything already waiting for the throttle.
                    let at = now + delay;
                    self.release_at = Some(self.release_at.map_or(at, |held| held.max(at)));
                }
                Verdict::Flood => {
                    let rate = self.throttle.as_ref().map_or(0, Throttle::rate);
                    self.end(Ending::Removed(DropReason::Flood { rate }));
                    return;
                }
            }
        }
        let ready = self.waiting.is_empty()
            && !self.running
            && self.release_at.is_none()
            && self.may_go_now(&input);
        if ready {
            // The usual case, without a trip through the queue.
            self.start(input);
        } else {
            self.waiting.push_back(input);
            self.advance(now);
        }
    }

    /// The member will send nothing more: once what it sent is carried out,
    /// that is its goodbye.
    pub fn handle_end_of_input(&mut self, now: Instant) {
        self.waiting
            .push_back(Input::Command(ClientCommand::Quit { reason: None }));
        self.advance(now);
    }

    /// What the hub did with the command from the last [`Action::Run`].
    pub fn handle_handled(&mut self, handled: Handled, now: Instant) {
        self.running = false;
        if let Some(pending) = handled.pending {
            if let Pending::Echo(id) = pending {
                self.echoes_in_flight.push_back(id);
            }
            self.awaiting = Some(pending);
            self.answer_deadline = Some(now + ANSWER_WAIT);
        }
        if handled.flow == Flow::Quit {
            self.end(Ending::Quit);
            return;
        }
        self.advance(now);
    }

    /// An event the door took from the member's outbox to send.
    #[inline]
    pub fn handle_delivered(&mut self, event: &ServerEvent, now: Instant) {
        // Called for every event to every member: most members await
        // nothing, and then this is one test.
        if self.awaiting.is_some() || !self.echoes_in_flight.is_empty() {
            self.check_delivered(event, now);
        }
    }

    /// Whether `event` is something awaited.
    fn check_delivered(&mut self, event: &ServerEvent, now: Instant) {
        let mut progressed = false;
        if let ServerEvent::Message(message) = event {
            // In a cluster the sender's node knows its echo by its ticket.
            let echo = message.ticket.unwrap_or(message.id);
            if self.echoes_in_flight.front() == Some(&echo) {
                self.echoes_in_flight.pop_front();
                if self.echoes_in_flight.is_empty() {
                    self.echoes_in_flight = VecDeque::new();
                }
                progressed = true;
            }
        }
        if self
            .awaiting
            .as_ref()
            .is_some_and(|pending| pending.is_met_by(event))
        {
            self.awaiting = None;
            self.answer_deadline = None;
            progressed = true;
        }
        if progressed {
            self.advance(now);
        }
    }

    /// How the connection's writing stands (see [`Output`]): the stall
    /// rule's clock runs while the member is congested, something waits
    /// to be written, and the count of bytes written stands still.
    pub fn handle_output(&mut self, output: Output, now: Instant) {
        if !(output.waiting && output.congested) {
            self.stalled = None;
            return;
        }
        match self.stalled {
            Some((written, _)) if written == output.written => {}
            _ => self.stalled = Some((output.written, now)),
        }
    }

    fn stall_deadline(&self) -> Option<Instant> {
        Some(self.stalled?.1 + self.stall_timeout?)
    }

    /// The hub removed the member.
    pub fn handle_dropped(&mut self, why: DropReason) {
        self.end(Ending::Dropped(why));
    }

    /// Time has reached `now`: applies the rules whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if let Some((at, why)) = &self.silence_deadline {
            if *at <= now {
                let why = why.clone();
                self.end(Ending::Removed(why));
                return;
            }
        }
        if let (Some(at), Some(keepalive)) = (self.answer_by, self.keepalive) {
            if at <= now {
                let secs = (keepalive.every + keepalive.answer_within).as_secs();
                self.end(Ending::Removed(DropReason::Unresponsive { secs }));
                return;
            }
        }
        if let (Some(at), Some(keepalive)) = (self.probe_at, self.keepalive) {
            if at <= now {
                self.probe_at = None;
                self.answer_by = Some(now + keepalive.answer_within);
                self.actions.push_back(Action::Tell(ServerEvent::Probe));
            }
        }
        if self.stall_deadline().is_some_and(|at| at <= now) {
            // It holds its rooms back and reads nothing.
            self.end(Ending::Removed(DropReason::SendqExceeded));
            return;
        }
        if self.arrival_deadline.is_some_and(|at| at <= now) {
            self.arrival_deadline = None;
            self.actions.push_back(Action::Arrive);
        }
        if self.answer_deadline.is_some_and(|at| at <= now) {
            // The history writer is stuck; do not hold the member hostage.
            tracing::warn!("an answer did not come in time; reading on");
            self.awaiting = None;
            self.answer_deadline = None;
            self.echoes_in_flight.clear();
        }
        self.advance(now);
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_none() && self.actions.capacity() > 0 {
            // A quiet member keeps no queues: there are thousands of them.
            self.actions = VecDeque::new();
        }
        action
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [
            self.silence_deadline.as_ref().map(|(at, _)| *at),
            self.arrival_deadline,
            self.answer_deadline,
            self.probe_at,
            self.answer_by,
            self.release_at,
            self.stall_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn heard_from(&mut self, now: Instant) {
        self.probe_at = self.keepalive.map(|keepalive| now + keepalive.every);
        self.answer_by = None;
        let idle = self.idle.map(|idle| {
            (
                now + idle,
                DropReason::Idle {
                    secs: idle.as_secs(),
                },
            )
        });
        let expiry = self.expiry.map(|expiry| {
            let secs = expiry.as_secs();
            (now + expiry, DropReason::Expired { secs })
        });
        self.silence_deadline = match (idle, expiry) {
            (Some(idle), Some(expiry)) => Some(if expiry.0 < idle.0 { expiry } else { idle }),
            (idle, expiry) => idle.or(expiry),
        };
    }

    fn end(&mut self, ending: Ending) {
        if !self.ended {
            self.ended = true;
            self.waiting.clear();
            self.actions.push_back(Action::End(ending));
        }
    }

    /// Carries out waiting inputs for as long as the rules allow.
    fn advance(&mut self, now: Instant) {
        while !self.ended && !self.running {
            let Some(next) = self.waiting.front() else {
                break;
            };
            if self.release_at.is_some_and(|at| at > now) {
                break;
            }
            self.release_at = None;
            if !self.may_go_now(next) {
                break;
            }
            let next = self.waiting.pop_front().expect("checked above");
            if self.waiting.is_empty() {
                self.waiting = VecDeque::new();
            }
            self.start(next);
        }
    }

    /// Carries out one input whose turn it is.
    fn start(&mut self, input: Input) {
        match input {
            Input::Command(command) => {
                self.running = true;
                self.actions.push_back(Action::Run(command));
            }
            Input::SwitchMode(mode) => {
                self.actions
                    .push_back(Action::Tell(ServerEvent::Mode { mode }));
                if mode == WireMode::Json {
                    // The welcome again, structured this time: where a
                    // JSON client starts from (nick, room, members).
                    self.actions.push_back(Action::Welcome);
                }
            }
            Input::Refused(event) | Input::Answered(event) => {
                self.actions.push_back(Action::Tell(event))
            }
            Input::Nothing => {}
            Input::Reject(why) => self.end(Ending::Removed(why)),
        }
    }

    /// Whether `input` may go before the awaited answer is in: only a
    /// message may overtake a message's echo.
    fn may_go_now(&self, input: &Input) -> bool {
        match self.awaiting {
            _ if *input == Input::Nothing => true,
            None => true,
            Some(Pending::Echo(_)) => matches!(
                input,
                Input::Command(ClientCommand::Say { .. } | ClientCommand::Me { .. })
            ),
            Some(Pending::Lookup | Pending::Oper | Pending::Nick(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests;
