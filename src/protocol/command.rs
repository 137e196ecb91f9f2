//! Client commands, and the parser that turns one line of text into one.

use serde::{Deserialize, Serialize};

/// The encoding a connection speaks: plain text lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireMode {
    /// UTF-8 lines, `/commands`; what `nc` and telnet users see.
    Text,
    /// One JSON object per line, in both directions (see `docs/PROTOCOL.md`).
    Json,
}

/// Something a member asks the hub to do. In JSON mode this is the wire
/// format itself (`{"type":"say","text":"hi"}`); in text mode
/// [`parse_line`] builds it from a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientCommand {
    /// Say something in a room (the current one unless `room` is given).
    Say {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// An action, shown as `* nick text`.
    Me {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// A private message to one member.
    Msg { to: String, text: String },
    /// A notice to a room (`#room`) or a member: a message that no program
    /// answers by itself (no away reply, no error back), as IRC's NOTICE.
    Notice { to: String, text: String },
    /// Change nickname.
    Nick { nick: String },
    /// Join a room (created if needed) and make it the current one.
    Join { room: String },
    /// Leave a room (the current one unless given), saying why if `reason`.
    Part {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// List the members of a room (the current one unless given).
    Who {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// List the rooms that have members.
    Rooms,
    /// Show the command summary.
    Help,
    /// Replay more of a room's past (the current room's unless `room`):
    /// the last `count` messages, or, given `before` or `after`, the
    /// `count` next to that point.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Point>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Point>,
    },
    /// Find past messages of the current room containing every word.
    Search { text: String },
    /// Leave the server.
    Quit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ask for a `pong` carrying the same `token`, in order with everything
    /// else sent to you: a round-trip time, or a check that the link works.
    Ping {
        #[serde(default)]
        token: u64,
    },
    /// Ask a room's topic (without `text`), or set it (an empty `text`
    /// clears it); in the current room unless `room` is given.
    Topic {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Ask a room's modes (without `change`), or change them, as one of
    /// its operators: `+o NICK` and `-o NICK` make and unmake operators,
    /// `+t` and `-t` say whether only operators set the topic. (`mode`
    /// on the wire is the switch between text and JSON.)
    #[serde(rename = "room_mode")]
    Mode {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<String>,
    },
    /// Put a member out of a room, as one of its operators.
    Kick {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        nick: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Let a member into a room (the current one unless `room` is given),
    /// invite only (`+i`) or not: whoever is in the room may invite to an
    /// open one; to an invite-only one, its operators.
    Invite {
        nick: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Who is here among `targets`: nicks, masks (`ali*`, `*`) or rooms
    /// (`#lobby`, for its members).
    Lookup { targets: Vec<String> },
    /// Say you are away (with `text`), or back (without).
    Away {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// How many members and rooms there are.
    Counts,
    /// Keep out of `lookup`s by members who share no room with you
    /// (IRC's `+i`), or not.
    Invisible { on: bool },
    /// Become a server operator (IRC's `OPER`), with the name and password
    /// the server's configuration holds a hash of.
    Oper { name: String, password: Password },
    /// Stop being a server operator (IRC's `MODE NICK -o`).
    Unoper,
}

/// A password as a client typed it: kept out of `Debug`, so no log line
/// that prints a command prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl ClientCommand {
    /// `history` of the current room's last `count` messages (50 if none).
    pub fn history(count: Option<usize>) -> Self {
        ClientCommand::History {
            count,
            room: None,
            before: None,
            after: None,
        }
    }

    /// Bytes of text the command carries (what a person typed into it,
    /// without the JSON around it): what `--max-line` limits.
    pub fn text_len(&self) -> usize {
        match self {
            ClientCommand::Say { text, .. }
            | ClientCommand::Me { text, .. }
            | ClientCommand::Msg { text, .. }
            | ClientCommand::Notice { text, .. }
            | ClientCommand::Search { text } => text.len(),
            ClientCommand::Quit { reason } => reason.as_ref().map_or(0, String::len),
            // Names, checked by their own rules.
            ClientCommand::Nick { nick: name } | ClientCommand::Join { room: name } => name.len(),
            ClientCommand::Part { room, reason } => {
                room.as_ref().map_or(0, String::len) + reason.as_ref().map_or(0, String::len)
            }
            ClientCommand::Who { room } => room.as_ref().map_or(0, String::len),
            ClientCommand::Topic { text, .. } => text.as_ref().map_or(0, String::len),
            ClientCommand::Kick { reason, .. } => reason.as_ref().map_or(0, String::len),
            ClientCommand::Invite { nick, room } => {
                nick.len() + room.as_ref().map_or(0, String::len)
            }
            ClientCommand::Mode { change, .. } => change.as_ref().map_or(0, String::len),
            ClientCommand::Lookup { targets } => targets.iter().map(String::len).sum(),
            ClientCommand::Away { text } => text.as_ref().map_or(0, String::len),
            ClientCommand::Rooms
            | ClientCommand::Help
            | ClientCommand::History { .. }
            | ClientCommand::Ping { .. }
            | ClientCommand::Counts
            | ClientCommand::Invisible { .. }
            | ClientCommand::Unoper => 0,
            ClientCommand::Oper { name, password } => name.len() + password.0.len(),
        }
    }
}

/// A point in a room's past: a message (by id), or a moment
/// (milliseconds since the Unix epoch). `{"id":42}`, `{"time":1796...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    Id(u64),
    Time(u64),
}

/// A JSON-lines client's request to change wire mode,
/// `{"type":"mode","mode":"text"}`: the door's business, not the hub's,
/// so it is not a [`ClientCommand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "mode")]
pub struct ModeSwitch {
    pub mode: WireMode,
}

/// The text line that switches a TCP connection to JSON lines (a door
/// matter, so [`parse_line`] does not know it).
pub const JSON_SWITCH: &str = "/json";

/// Why a line could not be turned into a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `/something` that is not a command.
    #[error("unknown command /{0} (try /help)")]
    UnknownCommand(String),
    /// A command with missing arguments; holds the usage line.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// The words that end a session, kept from the classic exercises:
/// `byebye` over TCP, `bye` over UDP. Both work on every door.
pub const GOODBYE_WORDS: [&str; 2] = ["byebye", "bye"];

/// Parses one line typed by a person (terminator already removed).
///
/// Returns `Ok(None)` for an empty line. A line starting with `//` says
/// the rest literally, so `//help` sends the text `/help`.
///
/// ```
/// use sockchat::protocol::{parse_line, ClientCommand};
/// assert_eq!(
///     parse_line("/msg bob 你好").unwrap(),
///     Some(ClientCommand::Msg { to: "bob".into(), text: "你好".into() })
/// );
/// assert_eq!(parse_line("byebye").unwrap(), Some(ClientCommand::Quit { reason: None }));
/// ```
pub fn parse_line(line: &str) -> Result<Option<ClientCommand>, ParseError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if GOODBYE_WORDS.contains(&line.trim()) {
        return Ok(Some(ClientCommand::Quit { reason: None }));
    }
    let Some(body) = line.strip_prefix('/') else {
        return Ok(Some(say(line)));
    };
    if body.starts_with('/') {
        return Ok(Some(say(body)));
    }
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (body, ""),
    };
    let optional = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    let command = match name.to_ascii_lowercase().as_str() {
        "nick" => match optional(rest) {
            Some(nick) => ClientCommand::Nick { nick },
            None => return Err(ParseError::Usage("/nick NAME")),
        },
        "join" | "j" => match optional(rest) {
            Some(room) => ClientCommand::Join { room },
            None => return Err(ParseError::Usage("/join ROOM")),
        },
        "part" | "leave" => match rest.split_once(char::is_whitespace) {
            Some((room, reason)) => ClientCommand::Part {
                room: Some(room.to_string()),
                reason: optional(reason.trim()),
            },
            None => ClientCommand::Part {
                room: optional(rest),
                reason: None,
            },
        },
        "msg" | "m" | "query" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => ClientCommand::Msg {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            },
            _ => return Err(ParseError::Usage("/msg NICK TEXT")),
        },
        "notice" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => ClientCommand::Notice {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            },
            _ => return Err(ParseError::Usage("/notice #ROOM|NICK TEXT")),
        },
        "who" | "names" => ClientCommand::Who {
            room: first_word(rest),
        },
        "rooms" | "list" => ClientCommand::Rooms,
        "me" => match optional(rest) {
            Some(text) => ClientCommand::Me { text, room: None },
            None => return Err(ParseError::Usage("/me ACTION")),
        },
        "help" | "?" => ClientCommand::Help,
        "history" => match rest {
            "" => ClientCommand::history(None),
            count => match count.parse() {
                Ok(count) => ClientCommand::history(Some(count)),
                Err(_) => return Err(ParseError::Usage("/history [N]")),
            },
        },
        "search" => match optional(rest) {
            Some(text) => ClientCommand::Search { text },
            None => return Err(ParseError::Usage("/search WORDS")),
        },
        "quit" | "exit" => ClientCommand::Quit {
            reason: optional(rest),
        },
        "ping" => ClientCommand::Ping { token: 0 },
        "topic" => ClientCommand::Topic {
            room: None,
            text: optional(rest),
        },
        "mode" => ClientCommand::Mode {
            room: None,
            change: optional(rest),
        },
        "op" | "deop" => match first_word(rest) {
            Some(nick) => ClientCommand::Mode {
                room: None,
                change: Some(format!(
                    "{}o {nick}",
                    if name.eq_ignore_ascii_case("op") {
                        '+'
                    } else {
                        '-'
                    }
                )),
            },
            None => return Err(ParseError::Usage("/op NICK, /deop NICK")),
        },
        "kick" => match rest.split_once(char::is_whitespace) {
            Some((nick, reason)) => ClientCommand::Kick {
                room: None,
                nick: nick.to_string(),
                reason: optional(reason.trim()),
            },
            None if !rest.is_empty() => ClientCommand::Kick {
                room: None,
                nick: rest.to_string(),
                reason: None,
            },
            None => return Err(ParseError::Usage("/kick NICK [REASON]")),
        },
        "invite" => match rest.split_once(char::is_whitespace) {
            Some((nick, room)) => ClientCommand::Invite {
                nick: nick.to_string(),
                room: optional(room.trim()),
            },
            None if !rest.is_empty() => ClientCommand::Invite {
                nick: rest.to_string(),
                room: None,
            },
            None => return Err(ParseError::Usage("/invite NICK [ROOM]")),
        },
        "whois" => match first_word(rest) {
            Some(nick) => ClientCommand::Lookup {
                targets: vec![nick],
            },
            None => return Err(ParseError::Usage("/whois NICK")),
        },
        "counts" => ClientCommand::Counts,
        "invisible" => match rest {
            "on" => ClientCommand::Invisible { on: true },
            "off" => ClientCommand::Invisible { on: false },
            _ => return Err(ParseError::Usage("/invisible on|off")),
        },
        "away" => ClientCommand::Away {
            text: optional(rest),
        },
        "oper" => match rest.split_once(char::is_whitespace) {
            Some((name, password)) if !password.trim().is_empty() => ClientCommand::Oper {
                name: name.to_string(),
                password: Password(password.trim().to_string()),
            },
            _ => return Err(ParseError::Usage("/oper NAME PASSWORD")),
        },
        "unoper" => ClientCommand::Unoper,
        _ => return Err(ParseError::UnknownCommand(name.to_string())),
    };
    Ok(Some(command))
}

fn say(text: &str) -> ClientCommand {
    ClientCommand::Say {
        text: text.to_string(),
        room: None,
    }
}

fn first_word(rest: &str) -> Option<String> {
    rest.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oper_command_prints_no_password() {
        let command = parse_line("/oper admin open-sesame").unwrap().unwrap();
        let ClientCommand::Oper { password, .. } = &command else {
            panic!("{command:?}");
        };
        assert_eq!(password.0, "open-sesame");
        let printed = format!("{command:?}");
        assert!(
            printed.contains("admin") && !printed.contains("sesame"),
            "{printed}"
        );
    }

    #[test]
    fn plain_text_is_said() {
        assert_eq!(parse_line("hello 世界").unwrap(), Some(say("hello 世界")));
        assert_eq!(parse_line("//help").unwrap(), Some(say("/help")));
        assert_eq!(parse_line("   ").unwrap(), None);
    }

    #[test]
    fn goodbye_words_quit() {
        for word in ["bye", "byebye", " byebye "] {
            assert_eq!(
                parse_line(word).unwrap(),
                Some(ClientCommand::Quit { reason: None })
            );
        }
        assert_eq!(parse_line("bye all").unwrap(), Some(say("bye all")));
    }

    #[test]
    fn commands_take_their_arguments() {
        assert_eq!(
            parse_line("/quit gone fishing").unwrap(),
            Some(ClientCommand::Quit {
                reason: Some("gone fishing".into())
            })
        );
        assert_eq!(
            parse_line("/JOIN #rust").unwrap(),
            Some(ClientCommand::Join {
                room: "#rust".into()
            })
        );
        assert_eq!(
            parse_line("/me waves").unwrap(),
            Some(ClientCommand::Me {
                text: "waves".into(),
                room: None
            })
        );
        assert_eq!(
            parse_line("/part").unwrap(),
            Some(ClientCommand::Part {
                room: None,
                reason: None
            })
        );
        assert_eq!(
            parse_line("/history 50").unwrap(),
            Some(ClientCommand::history(Some(50)))
        );
        assert_eq!(
            parse_line("/search 天气 好").unwrap(),
            Some(ClientCommand::Search {
                text: "天气 好".into()
            })
        );
        assert_eq!(
            parse_line("/history lots"),
            Err(ParseError::Usage("/history [N]"))
        );
    }

    #[test]
    fn bad_commands_are_errors() {
        assert_eq!(
            parse_line("/frobnicate now"),
            Err(ParseError::UnknownCommand("frobnicate".into()))
        );
        assert_eq!(
            parse_line("/msg bob"),
            Err(ParseError::Usage("/msg NICK TEXT"))
        );
        assert_eq!(parse_line("/nick"), Err(ParseError::Usage("/nick NAME")));
        assert_eq!(parse_line("/join"), Err(ParseError::Usage("/join ROOM")));
    }

    #[test]
    fn json_commands_round_trip() {
        let command: ClientCommand =
            serde_json::from_str(r#"{"type":"msg","to":"bob","text":"hi"}"#).unwrap();
        assert_eq!(
            command,
            ClientCommand::Msg {
                to: "bob".into(),
                text: "hi".into()
            }
        );
        let part = ClientCommand::Part {
            room: None,
            reason: None,
        };
        let json = serde_json::to_string(&part).unwrap();
        assert_eq!(json, r#"{"type":"part"}"#);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::{client_command, typed_text};

        /// What a person types for `command`, for commands in the form the
        /// text parser gives (names one word, texts trimmed).
        fn as_typed(command: &ClientCommand) -> String {
            let with = |name: &str, arg: Option<&String>| match arg {
                Some(arg) => format!("/{name} {arg}"),
                None => format!("/{name}"),
            };
            match command {
                ClientCommand::Say { text, .. } => text.clone(),
                ClientCommand::Me { text, .. } => with("me", Some(text)),
                ClientCommand::Msg { to, text } => format!("/msg {to} {text}"),
                ClientCommand::Notice { to, text } => format!("/notice {to} {text}"),
                ClientCommand::Nick { nick } => with("nick", Some(nick)),
                ClientCommand::Join { room } => with("join", Some(room)),
                ClientCommand::Part { room, .. } => with("part", room.as_ref()),
                ClientCommand::Who { room } => with("who", room.as_ref()),
                ClientCommand::Rooms => "/rooms".into(),
                ClientCommand::Help => "/help".into(),
                ClientCommand::History { count, .. } => {
                    with("history", count.map(|n| n.to_string()).as_ref())
                }
                ClientCommand::Search { text } => with("search", Some(text)),
                ClientCommand::Quit { reason } => with("quit", reason.as_ref()),
                ClientCommand::Ping { .. } => "/ping".into(),
                ClientCommand::Topic { text, .. } => with("topic", text.as_ref()),
                ClientCommand::Mode { change, .. } => with("mode", change.as_ref()),
                ClientCommand::Kick { nick, reason, .. } => match reason {
                    Some(reason) => format!("/kick {nick} {reason}"),
                    None => format!("/kick {nick}"),
                },
                ClientCommand::Lookup { targets } => format!("/whois {}", targets.join(" ")),
                ClientCommand::Invite { nick, room } => match room {
                    Some(room) => format!("/invite {nick} {room}"),
                    None => format!("/invite {nick}"),
                },
                ClientCommand::Away { text } => with("away", text.as_ref()),
                ClientCommand::Counts => "/counts".into(),
                ClientCommand::Oper { name, password } => format!("/oper {name} {}", password.0),
                ClientCommand::Unoper => "/unoper".into(),
                ClientCommand::Invisible { on } => {
                    format!("/invisible {}", if *on { "on" } else { "off" })
                }
            }
        }

        /// Trimmed, non-empty text that does not start with `/`.
        fn chat_text() -> impl Strategy<Value = String> {
            "[a-z你好🙂][a-z你好🙂 ,.!?]{0,20}".prop_filter("no trailing space", |text| {
                !text.ends_with(' ') && !GOODBYE_WORDS.contains(&text.as_str())
            })
        }

        fn word() -> impl Strategy<Value = String> {
            "#?[a-z你好0-9_]{1,12}"
        }

        /// Commands in the form the text parser gives them.
        fn typed_command() -> impl Strategy<Value = ClientCommand> {
            prop_oneof![
                chat_text().prop_map(|text| ClientCommand::Say { text, room: None }),
                chat_text().prop_map(|text| ClientCommand::Me { text, room: None }),
                (word(), chat_text()).prop_map(|(to, text)| ClientCommand::Msg { to, text }),
                word().prop_map(|nick| ClientCommand::Nick { nick }),
                word().prop_map(|room| ClientCommand::Join { room }),
                proptest::option::of(word())
                    .prop_map(|room| ClientCommand::Part { room, reason: None }),
                proptest::option::of(word()).prop_map(|room| ClientCommand::Who { room }),
                Just(ClientCommand::Rooms),
                Just(ClientCommand::Help),
                proptest::option::of(any::<usize>()).prop_map(ClientCommand::history),
                chat_text().prop_map(|text| ClientCommand::Search { text }),
                proptest::option::of(chat_text()).prop_map(|reason| ClientCommand::Quit { reason }),
                Just(ClientCommand::Ping { token: 0 }),
            ]
        }

        proptest! {
            /// Any line parses to a command, nothing or an error; it never
            /// panics, and a command carries no more text than the line.
            #[test]
            fn any_line_parses_without_panic(line in typed_text()) {
                if let Ok(Some(command)) = parse_line(&line) {
                    prop_assert!(command.text_len() <= line.len());
                }
            }

            /// Text that is not a command is said exactly as typed.
            #[test]
            fn chat_is_said_as_typed(text in typed_text()) {
                let parsed = parse_line(&text);
                if text.trim().is_empty() {
                    prop_assert_eq!(parsed, Ok(None));
                } else if GOODBYE_WORDS.contains(&text.trim()) {
                    prop_assert_eq!(parsed, Ok(Some(ClientCommand::Quit { reason: None })));
                } else if let Some(literal) = text.strip_prefix("//") {
                    prop_assert_eq!(parsed, Ok(Some(say(&format!("/{literal}")))));
                } else if !text.starts_with('/') {
                    prop_assert_eq!(parsed, Ok(Some(say(&text))));
                }
            }

            /// Typing a command and parsing it gives the command back.
            #[test]
            fn typed_commands_parse_back(command in typed_command()) {
                let line = as_typed(&command);
                prop_assert_eq!(parse_line(&line).unwrap(), Some(command));
            }

            /// The JSON wire form decodes to the command that was encoded.
            #[test]
            fn json_commands_decode_as_encoded(command in client_command()) {
                let json = serde_json::to_string(&command).unwrap();
                let back: ClientCommand = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, command);
            }
        }
    }
}
