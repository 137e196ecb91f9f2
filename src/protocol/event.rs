//! Server events and their two encodings. An event is encoded at most once
//! per wire mode, however many members receive it ([`Outgoing`]).

use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{LeaveReason, WireMode};

/// One room message, as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Increasing per server run; lets clients drop duplicates.
    pub id: u64,
    pub room: String,
    pub from: String,
    /// The text as the room saw it: sanitised and filtered.
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    /// `true` for `/me` actions.
    #[serde(default, skip_serializing_if = "is_false")]
    pub action: bool,
    /// `true` for notices (`/notice`, IRC's NOTICE).
    #[serde(default, skip_serializing_if = "is_false")]
    pub notice: bool,
    /// In a cluster, on the node its sender is on: the number that node
    /// gave it before the cluster's log gave it its `id` (see
    /// [`crate::hub::Pending::Echo`]). Never sent or stored.
    #[serde(skip)]
    pub ticket: Option<u64>,
}

/// One member, as a `lookup` finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub nick: String,
    /// The door it came in by (`tcp`, `web`, `irc`, ...).
    pub door: String,
    pub rooms: Vec<String>,
    /// The rooms among those it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
    /// The rooms among those where it has a voice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voiced: Vec<String>,
    /// It is invisible and shares no room with whoever asked (a WHO by
    /// mask leaves it out; by its nick, or WHOIS, it is found).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// It is a server operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
    /// What an IRC client said in `USER`: its user name and real name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realname: Option<String>,
}

/// One room in a `/rooms` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: usize,
}

/// Machine-readable error kinds, for clients that branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownCommand,
    Usage,
    BadNick,
    NickInUse,
    BadRoom,
    NoSuchNick,
    NotInRoom,
    /// A join past `--max-rooms`.
    TooManyRooms,
    LineTooLong,
    InvalidUtf8,
    BadJson,
    ServerFull,
    TooManyFromAddress,
    Flood,
    SendqExceeded,
    Idle,
    Kicked,
    NoHistory,
    /// A search that ran past its time budget.
    TooBroad,
    /// A connection whose first input was not chat (HTTP, TLS, binary).
    NotChat,
    /// What only a room's operators may do.
    NotOperator,
    /// A mode the server does not know.
    UnknownMode,
    /// The member named is not in that room.
    TargetNotInRoom,
    /// The member named is in that room already (an invitation).
    TargetInRoom,
    /// A room only those invited may join (`+i`).
    InviteOnly,
    /// A room where only operators and voiced members talk (`+m`).
    Moderated,
    /// An operator name and password that do not match (`/oper`).
    BadPassword,
    /// `/oper` on a server that has no operators.
    NoOperators,
    /// Asked too soon or while the server is busy with it: try later.
    TryAgain,
    /// What the server cannot carry now (its cluster link is behind).
    Unavailable,
    /// A connection that broke its wire protocol (a bad WebSocket frame).
    ProtocolError,
    /// A connection that stopped answering the server's checks.
    Unresponsive,
    ShuttingDown,
}

/// Everything the server tells a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First thing on every connection.
    Welcome {
        server: String,
        nick: String,
        room: String,
        /// Nicks in the room, you included; empty in a big room (see
        /// `HubConfig::big_room`), where only `count` is sent.
        members: Vec<String>,
        /// How many are in the room, you included.
        count: usize,
    },
    /// A room message.
    Message(MessageRecord),
    /// A private message, to its recipient and (as an echo) its sender.
    Private {
        from: String,
        to: String,
        text: String,
        time: u64,
        /// `true` for a notice.
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
    },
    /// Someone (possibly you) joined a room.
    Join { room: String, nick: String },
    /// Someone (possibly you) left a room.
    Leave {
        room: String,
        nick: String,
        reason: LeaveReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Someone (possibly you) changed nickname.
    Nick { old: String, new: String },
    /// The members of a room; after joining a big room, only their `count`
    /// (`/who` always lists them all). `ops` are its operators among them.
    Members {
        room: String,
        nicks: Vec<String>,
        count: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ops: Vec<String>,
        /// Those among them with a voice.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        voiced: Vec<String>,
        /// The room is left out of room lists (`+s`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secret: bool,
    },
    /// A room's topic: the answer to asking (`changed` false; sent on
    /// join too, when there is one), or news that `by` changed it.
    Topic {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When it was set, milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        changed: bool,
    },
    /// A room's modes (`+nt`) and since when it exists, or, with `by`, a
    /// change `by` made (`+o bob`).
    RoomMode {
        room: String,
        modes: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When the room was made, milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// `by` put `nick` out of `room`.
    Kick {
        room: String,
        nick: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `by` invited `nick` to `room`: told to both (the invited may now
    /// join it, invite only or not).
    Invited {
        room: String,
        nick: String,
        by: String,
    },
    /// The answer to a `lookup`: who is here among what was asked.
    Found {
        asked: Vec<String>,
        people: Vec<Person>,
    },
    /// `nick` is away now (`text`), or back (none).
    Away {
        nick: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// `nick`, who shares a room with you, went away (`text`) or came
    /// back (none); also told when an away member joins your room.
    /// IRC's away-notify.
    Presence {
        nick: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away: Option<String>,
    },
    /// You are a server operator now (as `name`), or no longer (none).
    Operator {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// How many members and rooms there are.
    Counts { members: usize, rooms: usize },
    /// You are invisible now (`on`), or not: the answer to `invisible`.
    Invisible { on: bool },
    /// The rooms that have members.
    Rooms { rooms: Vec<RoomInfo> },
    /// Recent messages of a room, oldest first, sent on join.
    History {
        room: String,
        messages: Vec<MessageRecord>,
    },
    /// Past messages of a room matching a `/search`, oldest first.
    SearchResults {
        room: String,
        query: String,
        messages: Vec<MessageRecord>,
    },
    /// Informational text (help, server notices).
    Notice { text: String },
    /// Something you asked for went wrong; the connection stays up unless
    /// a `bye` follows. `about` names what it was about, when it was a
    /// nick or a room (an IRC door's numerics name it).
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        about: Option<String>,
    },
    /// The wire mode changed; sent in the new mode.
    Mode { mode: WireMode },
    /// Your session is over; the server closes the connection next. A
    /// `code` says why the server ended it; a goodbye you asked for has none.
    Bye {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<ErrorCode>,
    },
    /// The room plain text now goes to (after `/join` of a room you are in).
    Current { room: String },
    /// The answer to a `ping`.
    Pong { token: u64 },
    /// Lines in the protocol of the member's own door, made by that door
    /// (an IRC numeric it answered itself). They pass through the outbox
    /// only to keep their turn among the hub's answers; no other door
    /// ever sees them, and the door writes them as they are.
    Verbatim { lines: String },
    /// Are you there? Sent to a member silent for a while, in its door's
    /// own form (IRC's `PING`); any input answers it.
    Probe,
}

impl ServerEvent {
    /// Shorthand for an error event.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerEvent::Error {
            code,
            message: message.into(),
            about: None,
        }
    }

    /// An error event about a nick or room (`about`, as the member named it).
    pub fn error_about(code: ErrorCode, about: &str, message: impl Into<String>) -> Self {
        ServerEvent::Error {
            code,
            message: message.into(),
            about: Some(about.to_string()),
        }
    }

    /// Renders the event as one or more human-readable lines, without the
    /// final newline. System lines start with `* `, errors with `! `.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self {
            ServerEvent::Welcome {
                server,
                nick,
                room,
                count,
                ..
            } => {
                let others = count.saturating_sub(1);
                let _ = write!(
                    out,
                    "* welcome to {server}, {nick}! you are in #{room} with {others} other{}; type /help for commands",
                    if others == 1 { "" } else { "s" }
                );
            }
            ServerEvent::Message(message) => write_message(&mut out, message, ""),
            ServerEvent::Private {
                from,
                to,
                text,
                notice,
                ..
            } => {
                let _ = if *notice {
                    write!(out, "[private] -{from}- -> {to}: {text}")
                } else {
                    write!(out, "[private] {from} -> {to}: {text}")
                };
            }
            ServerEvent::Join { room, nick } => {
                let _ = write!(out, "* {nick} joined #{room}");
            }
            ServerEvent::Leave {
                room,
                nick,
                reason,
                detail,
            } => {
                let _ = match reason {
                    LeaveReason::Part => write!(out, "* {nick} left #{room}"),

                    LeaveReason::Quit => write!(out, "* {nick} left"),
                    LeaveReason::Lost => write!(out, "* {nick} lost the connection"),
                    LeaveReason::Dropped => write!(out, "* {nick} was disconnected"),
                };
                if let Some(detail) = detail {
                    let _ = write!(out, " ({detail})");
                }
            }
            ServerEvent::Nick { old, new } => {
                let _ = write!(out, "* {old} is now known as {new}");
            }
            ServerEvent::Members {
                room, nicks, count, ..
            } if nicks.len() < *count => {
                let _ = write!(
                    out,
                    "* #{room} has {count} members; /who #{room} lists them"
                );
            }
            ServerEvent::Members { room, nicks, .. } => {
                let _ = write!(out, "* #{room} has {}: {}", nicks.len(), nicks.join(", "));
            }
            ServerEvent::Rooms { rooms } => {
                out.push_str("* rooms:");
                for room in rooms {
                    let _ = write!(out, " #{} ({})", room.name, room.members);
                }
            }
            ServerEvent::History { room, messages } => {
                let _ = write!(out, "* last {} message(s) in #{room}:", messages.len());
                for message in messages {
                    out.push('\n');
                    write_message(&mut out, message, "(history) ");
                }
            }
            ServerEvent::SearchResults {
                room,
                query,
                messages,
            } => {
                let _ = write!(
                    out,
                    "* {} message(s) in #{room} match {query:?}:",
                    messages.len()
                );
                for message in messages {
                    out.push('\n');
                    write_message(&mut out, message, "(found) ");
                }
            }
            ServerEvent::Notice { text } => {
                for (index, line) in text.lines().enumerate() {
                    if index > 0 {
                        out.push('\n');
                    }
                    let _ = write!(out, "* {line}");
                }
            }
            ServerEvent::Error { message, .. } => {
                let _ = write!(out, "! {message}");
            }
            ServerEvent::Mode { mode } => {
                let name = match mode {
                    WireMode::Text => "text",
                    WireMode::Json => "json",
                };
                let _ = write!(out, "* mode: {name}");
            }
            ServerEvent::Current { room } => {
                let _ = write!(out, "* now talking in #{room}");
            }
            ServerEvent::Bye { reason, .. } => {
                let _ = write!(out, "* bye: {reason}");
            }
            ServerEvent::Pong { .. } => out.push_str("* pong"),
            ServerEvent::Probe => out.push_str("* are you there?"),
            ServerEvent::Topic {
                room,
                text,
                by,
                changed,
                ..
            } => {
                let _ = match (text, by, changed) {
                    (Some(text), Some(by), true) => {
                        write!(out, "* {by} set the topic of #{room}: {text}")
                    }
                    (None, Some(by), true) => write!(out, "* {by} cleared the topic of #{room}"),
                    (Some(text), Some(by), false) => {
                        write!(out, "* topic of #{room}: {text} (set by {by})")
                    }
                    (Some(text), _, _) => write!(out, "* topic of #{room}: {text}"),
                    (None, _, _) => write!(out, "* #{room} has no topic"),
                };
            }
            ServerEvent::RoomMode {
                room, modes, by, ..
            } => {
                let _ = match by {
                    Some(by) => write!(out, "* {by} sets mode {modes} on #{room}"),
                    None => write!(out, "* #{room} has modes {modes}"),
                };
            }
            ServerEvent::Kick {
                room,
                nick,
                by,
                reason,
            } => {
                let _ = write!(out, "* {nick} was kicked from #{room} by {by}");
                if let Some(reason) = reason {
                    let _ = write!(out, " ({reason})");
                }
            }
            ServerEvent::Invited { room, nick, by } => {
                let _ = write!(out, "* {by} invited {nick} to #{room} (/join #{room})");
            }
            ServerEvent::Found { asked, people } => {
                if people.is_empty() {
                    let _ = write!(out, "* nobody here is {}", asked.join(" or "));
                }
                for (index, person) in people.iter().enumerate() {
                    if index > 0 {
                        out.push('\n');
                    }
                    let rooms: Vec<String> =
                        person.rooms.iter().map(|room| format!("#{room}")).collect();
                    let _ = write!(out, "* {} is on {}", person.nick, person.door);
                    let _ = match rooms.is_empty() {
                        true => write!(out, ", in no room"),
                        false => write!(out, ", in {}", rooms.join(" ")),
                    };
                    if let Some(away) = &person.away {
                        let _ = write!(out, " (away: {away})");
                    }
                }
            }
            ServerEvent::Away { nick, text }
            | ServerEvent::Presence {
                nick, away: text, ..
            } => {
                let _ = match text {
                    Some(text) => write!(out, "* {nick} is away: {text}"),
                    None => write!(out, "* {nick} is back"),
                };
            }
            ServerEvent::Operator { name } => match name {
                Some(name) => {
                    let _ = write!(
                        out,
                        "* you are a server operator ({name}): you run every room"
                    );
                }
                None => out.push_str("* you are no longer a server operator"),
            },
            ServerEvent::Invisible { on } => {
                out.push_str(match on {
                    true => "* you are invisible: only members who share a room with you find you",
                    false => "* you are visible to every lookup again",
                });
            }
            ServerEvent::Counts { members, rooms } => {
                let _ = write!(out, "* {members} members in {rooms} rooms");
            }
            ServerEvent::Verbatim { lines } => out.push_str(lines.trim_end_matches(['\r', '\n'])),
        }
        out
    }

    /// Renders the event as one JSON object, without the final newline.
    pub fn to_json(&self) -> String {
        // Serialising these plain types cannot fail: every key is a string.
        serde_json::to_string(self).expect("server events serialise to JSON")
    }
}

fn write_message(out: &mut String, message: &MessageRecord, marker: &str) {
    let MessageRecord {
        room,
        from,
        text,
        action,
        notice,
        ..
    } = message;
    let _ = if *action {
        write!(out, "{marker}[{room}] * {from} {text}")
    } else if *notice {
        write!(out, "{marker}[{room}] -{from}- {text}")
    } else {
        write!(out, "{marker}[{room}] {from}: {text}")
    };
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// An event on its way to one or many members. Each encoding is made once
/// and shared, so a message to a thousand members is encoded once per
/// mode, not a thousand times: the JSON line at once (its length is what
/// the event counts for in an outbox), the text line the first time a
/// text member asks for it.
#[derive(Debug)]
pub struct Outgoing {
    event: ServerEvent,
    json: Bytes,
    text: OnceLock<Bytes>,
    /// The JSON as a value to embed in a datagram (UDP members only).
    json_value: OnceLock<Box<serde_json::value::RawValue>>,
    /// The IRC line, for events IRC relays as they are (IRC members only).
    irc: OnceLock<Option<super::irc::Relayed>>,
}

impl Outgoing {
    /// Wraps an event for delivery.
    pub fn new(event: ServerEvent) -> Self {
        let mut json = event.to_json();
        json.push('\n');
        Outgoing {
            event,
            json: Bytes::from(json),
            text: OnceLock::new(),
            json_value: OnceLock::new(),
            irc: OnceLock::new(),
        }
    }

    /// The event as IRC relays it, if it is such an event; written once,
    /// however many IRC members receive it.
    pub fn irc(&self) -> Option<&super::irc::Relayed> {
        self.irc
            .get_or_init(|| super::irc::Relayed::of(&self.event))
            .as_ref()
    }

    /// What it counts for in an outbox, in bytes.
    pub fn size(&self) -> usize {
        self.json.len()
    }

    /// The event itself.
    pub fn event(&self) -> &ServerEvent {
        &self.event
    }

    /// The event's JSON as a raw value, to embed in a larger JSON document
    /// (a UDP datagram) as is; made once, however many recipients use it.
    pub fn json_value(&self) -> &serde_json::value::RawValue {
        self.json_value.get_or_init(|| {
            let line = self.encoded(WireMode::Json);
            let json = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            // Our own encoding of a server event: valid JSON by construction.
            serde_json::value::RawValue::from_string(json).expect("events encode to valid JSON")
        })
    }

    /// The event's bytes in `mode`, newline-terminated.
    pub fn encoded(&self, mode: WireMode) -> &Bytes {
        match mode {
            WireMode::Json => &self.json,
            WireMode::Text => self.text.get_or_init(|| {
                let mut line = self.event.to_text();
                line.push('\n');
                Bytes::from(line)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str, action: bool) -> MessageRecord {
        MessageRecord {
            id: 7,
            room: "lobby".into(),
            from: "alice".into(),
            text: text.into(),
            time: 1,
            action,
            notice: false,
            ticket: None,
        }
    }

    #[test]
    fn text_lines() {
        assert_eq!(
            ServerEvent::Message(message("你好", false)).to_text(),
            "[lobby] alice: 你好"
        );
        assert_eq!(
            ServerEvent::Message(message("waves", true)).to_text(),
            "[lobby] * alice waves"
        );
        let notice = MessageRecord {
            notice: true,
            ..message("build is green", false)
        };
        assert_eq!(
            ServerEvent::Message(notice).to_text(),
            "[lobby] -alice- build is green"
        );
        let history = ServerEvent::History {
            room: "lobby".into(),
            messages: vec![message("old", false)],
        };
        assert_eq!(
            history.to_text(),
            "* last 1 message(s) in #lobby:\n(history) [lobby] alice: old"
        );
        let big = ServerEvent::Members {
            room: "lobby".into(),
            nicks: Vec::new(),
            count: 5000,
            ops: Vec::new(),
            voiced: Vec::new(),
            secret: false,
        };
        assert_eq!(
            big.to_text(),
            "* #lobby has 5000 members; /who #lobby lists them"
        );
        let welcome = ServerEvent::Welcome {
            server: "s".into(),
            nick: "bob".into(),
            room: "lobby".into(),
            members: Vec::new(),
            count: 5000,
        };
        assert!(welcome.to_text().contains("with 4999 others"));
    }

    #[test]
    fn json_has_a_type_on_every_event() {
        let json = ServerEvent::Message(message("hi", false)).to_json();
        assert_eq!(
            json,
            r#"{"type":"message","id":7,"room":"lobby","from":"alice","text":"hi","time":1}"#
        );
        let leave = ServerEvent::Leave {
            room: "lobby".into(),
            nick: "bob".into(),
            reason: LeaveReason::Lost,
            detail: None,
        };
        assert_eq!(
            leave.to_json(),
            r#"{"type":"leave","room":"lobby","nick":"bob","reason":"lost"}"#
        );
        let back: ServerEvent = serde_json::from_str(&leave.to_json()).unwrap();
        assert_eq!(back, leave);
    }

    #[test]
    fn outgoing_encodes_once_per_mode() {
        let outgoing = Outgoing::new(ServerEvent::Notice { text: "hi".into() });
        let first = outgoing.encoded(WireMode::Text).as_ptr();
        assert_eq!(outgoing.encoded(WireMode::Text).as_ptr(), first);
        assert_eq!(&outgoing.encoded(WireMode::Text)[..], b"* hi\n");
        assert!(outgoing
            .encoded(WireMode::Json)
            .starts_with(b"{\"type\":\"notice\""));
    }
}
