//! The per-member limits every door applies through the session, each with
//! its one default (the flags show these same constants).

use std::time::Duration;

use crate::protocol::{ClientCommand, ErrorCode, ServerEvent};

/// Default longest line, in bytes: a text-door line, or the text of a JSON
/// command (on TCP or a WebSocket).
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Default messages a second per member.
pub const DEFAULT_MAX_RATE: u32 = 20;
/// Default idle limit in seconds (0: off).
pub const DEFAULT_IDLE_SECS: u64 = 0;
/// Default quiet time, in milliseconds, after which unterminated text is a line.
pub const DEFAULT_LINE_FLUSH_MS: u64 = 300;
/// Default largest UDP datagram accepted, in bytes.
pub const DEFAULT_MAX_DATAGRAM: usize = 1200;
/// Default silence, in seconds, after which a UDP member has left.
pub const DEFAULT_UDP_EXPIRY_SECS: u64 = 120;

/// Default time, in milliseconds, a member holding its rooms back may go
/// without its connection taking anything before it is dropped.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 1000;

/// Default time, in seconds, a new connection has to say what it is.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Default silence, in seconds, after which an IRC client is pinged.
pub const DEFAULT_IRC_PING_SECS: u64 = 120;
/// Default time, in seconds, a pinged IRC client has to answer.
pub const DEFAULT_IRC_PING_TIMEOUT_SECS: u64 = 60;

/// Default time, in seconds, within which a vanished peer is found.
pub const DEFAULT_LIVENESS_SECS: u64 = 60;

/// JSON may spell a byte of text in up to six (`\u0001`), plus the
/// command's own fields: the longest JSON line (or WebSocket frame) that
/// can carry a command whose text is within `max_line` (0: no limit).
pub fn json_frame_limit(max_line: usize) -> usize {
    match max_line {
        0 => usize::MAX,
        max => max.saturating_mul(6).saturating_add(1024),
    }
}

/// The error for a JSON command whose text is over `max_line`, if it is:
/// the limit means the text a person typed on every door, whatever its
/// encoding adds.
pub fn text_too_long(command: &ClientCommand, max_line: usize) -> Option<ServerEvent> {
    let length = command.text_len();
    (max_line > 0 && length > max_line).then(|| {
        let message = format!("text longer than {max_line} bytes ({length}); it was dropped");
        ServerEvent::error(ErrorCode::LineTooLong, message)
    })
}

/// A number of seconds as a limit (`--idle`, `--liveness`): 0 is off.
pub fn idle_limit(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Per-member limits shared by the doors. A limit of 0 (or `None`) is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in bytes, without its terminator.
    pub max_line: usize,
    /// Messages a second per member, with a burst (see [`super::throttle`]).
    pub max_rate: u32,
    /// Disconnect a member that sends nothing for this long.
    pub idle: Option<Duration>,
    /// Unterminated text counts as one line once no byte has followed it
    /// for this long (the classic client never sends a newline).
    pub partial_line_flush: Duration,
    /// Largest datagram accepted from a UDP client, in bytes.
    pub max_datagram: usize,
    /// A UDP member that sends nothing for this long is gone.
    pub udp_expiry: Duration,
    /// A member that holds others back (its outbox is congested) and
    /// whose connection takes no byte for this long is dropped for sendq
    /// exceeded: the most a stopped reader delays its rooms.
    pub stall_timeout: Duration,
    /// How long a new connection may take to say what it is (a web
    /// request's headers), and an HTTP connection may idle between
    /// requests.
    pub handshake_timeout: Duration,
    /// A stream peer that vanished without closing is found within this
    /// (TCP keepalive and `TCP_USER_TIMEOUT`); `None` is off.
    pub liveness: Option<Duration>,
    /// Asking a silent member whether it is there (IRC's `PING`); `None`
    /// is off.
    pub keepalive: Option<Keepalive>,
}

/// The keepalive rule: after `every` of silence the member is asked (its
/// door's probe, IRC's `PING`); silent for `answer_within` more, it is
/// removed as unresponsive. Any input counts as the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub every: Duration,
    pub answer_within: Duration,
}

impl Keepalive {
    /// The rule for `every` and `answer_within` seconds; `None` when
    /// `every` is 0.
    pub fn from_secs(every: u64, answer_within: u64) -> Option<Keepalive> {
        (every > 0).then(|| Keepalive {
            every: Duration::from_secs(every),
            answer_within: Duration::from_secs(answer_within.max(1)),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_rate: DEFAULT_MAX_RATE,
            idle: idle_limit(DEFAULT_IDLE_SECS),
            partial_line_flush: Duration::from_millis(DEFAULT_LINE_FLUSH_MS),
            max_datagram: DEFAULT_MAX_DATAGRAM,
            udp_expiry: Duration::from_secs(DEFAULT_UDP_EXPIRY_SECS),
            stall_timeout: Duration::from_millis(DEFAULT_STALL_TIMEOUT_MS),
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            liveness: idle_limit(DEFAULT_LIVENESS_SECS),
            keepalive: Keepalive::from_secs(DEFAULT_IRC_PING_SECS, DEFAULT_IRC_PING_TIMEOUT_SECS),
        }
    }
}
