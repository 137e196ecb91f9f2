//! The per-member limits every door applies through the session, each with
//! its one default (the flags show these same constants).

use std::time::Duration;

/// Default longest line (or WebSocket message), in bytes.
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

/// `--idle SECS` as a limit: 0 is off.
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
        }
    }
}
