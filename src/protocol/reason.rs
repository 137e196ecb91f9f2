//! Why members leave: one typed reason from the hub's rules to the wire.
//! Doors, metrics and clients branch on these, never on display text.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ErrorCode;

/// Why a member is no longer in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `/part`: left this room, still connected.
    Part,
    /// `/quit`, `byebye`, `bye`, or end of input: left the server.
    Quit,
    /// The connection broke (killed, reset) without a goodbye.
    Lost,
    /// The server removed the member (flood, full outbox, idle, kick, shutdown).
    Dropped,
}

/// Why the server removed a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Its outbox filled: it read slower than its rooms talked.
    SendqExceeded,
    /// It kept sending faster than `rate` messages a second.
    Flood { rate: u32 },
    /// It sent nothing for `secs` seconds (`--idle`).
    Idle { secs: u64 },
    /// A UDP member sent no datagram for `secs` seconds (`--udp-expiry`).
    Expired { secs: u64 },
    /// The operator removed it, for this reason if one was given.
    Kicked { reason: Option<String> },
    /// The server is stopping.
    ShuttingDown,
    /// Its first input was not chat: an HTTP request (any web page can
    /// send one to a localhost port), a TLS handshake, or binary.
    NotChat(NotChat),
    /// It broke its wire protocol: a WebSocket frame the standard forbids,
    /// text that is not UTF-8, or a frame over the cap.
    Violation(Violation),
    /// Its peer stopped answering: nothing came back for `secs` seconds,
    /// not even to the server's ping or TCP keepalive probes.
    Unresponsive { secs: u64 },
}

/// How a connection broke its wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A frame the WebSocket standard forbids.
    Frame,
    /// A text frame that is not UTF-8.
    Utf8,
    /// A frame or message over the door's cap.
    TooBig,
}

/// What a connection that is not a chat client sent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotChat {
    Http,
    /// A TLS handshake; `at` is where the server's TLS door listens.
    Tls {
        at: Option<std::net::SocketAddr>,
    },
    /// IRC registration (`NICK`, `USER`, `CAP LS`, `PASS`); `at` is where
    /// the IRC door listens.
    Irc {
        at: Option<std::net::SocketAddr>,
    },
    Binary,
}

impl DropReason {
    /// The code carried by the `bye` that tells the member.
    pub fn code(&self) -> ErrorCode {
        match self {
            DropReason::SendqExceeded => ErrorCode::SendqExceeded,
            DropReason::Flood { .. } => ErrorCode::Flood,
            DropReason::Idle { .. } | DropReason::Expired { .. } => ErrorCode::Idle,
            DropReason::Kicked { .. } => ErrorCode::Kicked,
            DropReason::ShuttingDown => ErrorCode::ShuttingDown,
            DropReason::NotChat(_) => ErrorCode::NotChat,
            DropReason::Violation(_) => ErrorCode::ProtocolError,
            DropReason::Unresponsive { .. } => ErrorCode::Unresponsive,
        }
    }

    /// The `drops` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::SendqExceeded => "sendq",
            DropReason::Flood { .. } => "flood",
            DropReason::Idle { .. } | DropReason::Expired { .. } => "idle",
            DropReason::Kicked { .. } => "kicked",
            DropReason::ShuttingDown => "shutting_down",
            DropReason::NotChat(_) => "not_chat",
            DropReason::Violation(_) => "protocol_error",
            DropReason::Unresponsive { .. } => "unresponsive",
        }
    }

    /// What the member itself is told, in its `bye`.
    pub fn told(&self) -> String {
        match self {
            DropReason::SendqExceeded => {
                "sendq exceeded: too many messages waiting for you to read them".into()
            }
            DropReason::Flood { rate } => {
                format!("excess flood: more than {rate} messages a second")
            }
            DropReason::Kicked { .. } => format!("you were {self}"),
            DropReason::NotChat(NotChat::Http) => "this is a chat port, not HTTP: \
                 open the server's web address instead (it prints `listening web ...`)"
                .into(),
            DropReason::NotChat(NotChat::Tls { at: None }) => {
                "this port speaks plain text lines, not TLS".into()
            }
            DropReason::NotChat(NotChat::Tls { at: Some(at) }) if at.ip().is_unspecified() => {
                format!(
                    "this port speaks plain text lines, not TLS: TLS is on port {}",
                    at.port()
                )
            }
            DropReason::NotChat(NotChat::Tls { at: Some(at) }) => {
                format!("this port speaks plain text lines, not TLS: TLS is at {at}")
            }
            DropReason::NotChat(NotChat::Irc { at: None }) => {
                "this port speaks plain text lines, not IRC".into()
            }
            DropReason::NotChat(NotChat::Irc { at: Some(at) }) if at.ip().is_unspecified() => {
                format!(
                    "this port speaks plain text lines, not IRC: IRC is on port {}",
                    at.port()
                )
            }
            DropReason::NotChat(NotChat::Irc { at: Some(at) }) => {
                format!("this port speaks plain text lines, not IRC: IRC is at {at}")
            }
            DropReason::NotChat(NotChat::Binary) => {
                "this port speaks text lines (nc, telnet); binary input is not chat".into()
            }
            DropReason::Violation(Violation::Frame) => {
                "protocol error: a WebSocket frame the standard forbids".into()
            }
            DropReason::Violation(Violation::Utf8) => {
                "protocol error: a text frame that is not UTF-8".into()
            }
            DropReason::Violation(Violation::TooBig) => {
                "protocol error: a WebSocket frame over the server's cap".into()
            }
            _ => self.to_string(),
        }
    }
}

/// What the member's rooms are told, in the leave's `detail`.
impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::SendqExceeded => f.write_str("sendq exceeded"),
            DropReason::Flood { .. } => f.write_str("excess flood"),
            DropReason::Idle { secs } => write!(f, "idle for {secs} s"),
            DropReason::Expired { secs } => write!(f, "no datagram for {secs} s"),
            DropReason::Kicked {
                reason: Some(reason),
            } => write!(f, "kicked: {reason}"),
            DropReason::Kicked { reason: None } => f.write_str("kicked"),
            DropReason::ShuttingDown => f.write_str("server is shutting down"),
            DropReason::NotChat(_) => f.write_str("not a chat client"),
            DropReason::Violation(_) => f.write_str("protocol error"),
            DropReason::Unresponsive { secs } => write!(f, "no answer for {secs} s"),
        }
    }
}

/// How a member left the server, as the hub records and announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// It said goodbye, with an optional reason of its own.
    Quit { reason: Option<String> },
    /// Its connection broke.
    Lost,
    /// The server removed it.
    Dropped(DropReason),
}

impl Departure {
    /// The reason its rooms' `leave` events carry.
    pub fn leave_reason(&self) -> LeaveReason {
        match self {
            Departure::Quit { .. } => LeaveReason::Quit,
            Departure::Lost => LeaveReason::Lost,
            Departure::Dropped(_) => LeaveReason::Dropped,
        }
    }

    /// The `detail` of those `leave` events.
    pub fn detail(&self) -> Option<String> {
        match self {
            Departure::Quit { reason } => reason.clone(),
            Departure::Lost => None,
            Departure::Dropped(why) => Some(why.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_member_hear_their_own_wording() {
        let flood = DropReason::Flood { rate: 20 };
        assert_eq!(flood.to_string(), "excess flood");
        assert_eq!(flood.told(), "excess flood: more than 20 messages a second");
        let kicked = DropReason::Kicked {
            reason: Some("spam".into()),
        };
        assert_eq!(kicked.told(), "you were kicked: spam");
        assert_eq!(kicked.code(), ErrorCode::Kicked);
        assert_eq!(DropReason::Idle { secs: 5 }.label(), "idle");
        assert_eq!(
            Departure::Dropped(DropReason::SendqExceeded)
                .detail()
                .as_deref(),
            Some("sendq exceeded")
        );
    }
}
