//! A registered IRC client's codec: its lines become the hub's commands
//! (or answers the door gives itself, in turn), and the hub's events
//! become IRC lines. It keeps what IRC needs and the hub does not know:
//! the client's capabilities, its channels, and which question a member
//! list answers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::registration::nick_refused;
use super::replies::{cap, Cap, Caps, IrcServer, MAX_LINE, MAX_TAGS};
use crate::door::stream::StreamCodec;
use crate::hub::NickRefusal;
use crate::protocol::irc::{channel, parse, write_line, Message, MEMBER_HOST};
use crate::protocol::line_codec::{Frame, LineCodec};
use crate::protocol::text::normalize_room;
use crate::protocol::{ClientCommand, ErrorCode, Outgoing, RoomInfo, ServerEvent};
use crate::session::Input;

/// Nicks per 353 line: well under 512 bytes with the longest nicks.
const NAMES_PER_LINE: usize = 16;

/// What a `Members` event answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    Names,
    Who,
}

/// A registered client's codec.
#[derive(Debug)]
pub struct IrcCodec {
    lines: LineCodec,
    server: Arc<IrcServer>,
    nick: String,
    caps: Caps,
    /// Channels the client is in (rooms, canonical), as the hub told it.
    joined: BTreeSet<String>,
    /// Further inputs of a line that held several (`JOIN #a,#b`).
    queued: VecDeque<Input>,
    /// What the `Members` events to come answer, in order.
    asked: VecDeque<Asked>,
    /// The room of the client's own JOIN just written: its member list
    /// follows, and is its NAMES.
    joining: Option<String>,
    /// The nick whose QUIT was just written: someone in several shared
    /// rooms leaves once.
    quit_told: Option<String>,
    /// The last verb sent for each room, so "not in that room" is told as
    /// IRC does for it: 404 for a message, 442 for anything else.
    last_verb: HashMap<String, &'static str>,
}

impl IrcCodec {
    pub fn new(server: Arc<IrcServer>, nick: String, caps: Caps) -> Self {
        IrcCodec {
            lines: LineCodec::new(MAX_LINE + MAX_TAGS),
            server,
            nick,
            caps,
            joined: BTreeSet::new(),
            queued: VecDeque::new(),
            asked: VecDeque::new(),
            joining: None,
            quit_told: None,
            last_verb: HashMap::new(),
        }
    }

    fn answer(&self, write: impl FnOnce(&IrcServer, &str, &mut String)) -> Input {
        let mut lines = String::new();
        write(&self.server, &self.nick, &mut lines);
        Input::Answered(ServerEvent::Verbatim { lines })
    }

    fn numeric(&self, code: &str, params: &[&str]) -> Input {
        self.answer(|server, nick, out| server.numeric(out, code, nick, params))
    }

    fn input(&mut self, frame: Frame) -> Input {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong => return self.numeric("417", &["Input line was too long"]),
            Frame::InvalidUtf8 => {
                return self.answer(|server, _, out| {
                    server.say(
                        out,
                        "FAIL",
                        &["*", "INVALID_UTF8", "Message rejected: not UTF-8"],
                    )
                })
            }
        };
        let Some(message) = parse(&line) else {
            return Input::Nothing;
        };
        let untagged = match message.raw_tags {
            Some(tags) => line.len() - tags.len() - 2,
            None => line.len(),
        };
        // 510: the 512 RFC 1459 allows, less the CR LF.
        if untagged > MAX_LINE - 2 {
            return self.numeric("417", &["Input line was too long"]);
        }
        let mut inputs = self.command(&message);
        if inputs.is_empty() {
            return Input::Nothing;
        }
        let first = inputs.remove(0);
        self.queued.extend(inputs);
        first
    }

    /// The inputs one command makes: commands for the hub, or answers.
    fn command(&mut self, message: &Message<'_>) -> Vec<Input> {
        let params = &message.params;
        let verb = message.command();
        let first = params.first().copied().filter(|param| !param.is_empty());
        let need_more =
            |codec: &Self| vec![codec.numeric("461", &[&verb, "Not enough parameters"])];
        match verb.as_str() {
            "PRIVMSG" | "NOTICE" => {
                let Some(targets) = first else {
                    return match verb.as_str() {
                        "NOTICE" => Vec::new(),
                        _ => vec![self.numeric("411", &["No recipient given (PRIVMSG)"])],
                    };
                };
                let Some(text) = params.get(1).filter(|text| !text.is_empty()) else {
                    return match verb.as_str() {
                        "NOTICE" => Vec::new(),
                        _ => vec![self.numeric("412", &["No text to send"])],
                    };
                };
                let (text, action) = match text
                    .strip_prefix("\u{1}ACTION ")
                    .map(|rest| rest.trim_end_matches('\u{1}'))
                {
                    Some(action) => (action, true),
                    None => (*text, false),
                };
                targets
                    .split(',')
                    .filter(|target| !target.is_empty())
                    .map(|target| {
                        let text = text.to_string();
                        let command = match target.strip_prefix('#') {
                            Some(_) => {
                                self.remember(target, "PRIVMSG");
                                let room = Some(target.to_string());
                                if action {
                                    ClientCommand::Me { text, room }
                                } else {
                                    ClientCommand::Say { text, room }
                                }
                            }
                            None => ClientCommand::Msg {
                                to: target.to_string(),
                                text,
                            },
                        };
                        Input::Command(command)
                    })
                    .collect()
            }
            "JOIN" => match first {
                None => need_more(self),
                Some("0") => self
                    .joined
                    .iter()
                    .map(|room| {
                        Input::Command(ClientCommand::Part {
                            room: Some(room.clone()),
                        })
                    })
                    .collect(),
                Some(channels) => channels
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| match name.starts_with('#') {
                        true => {
                            self.remember(name, "JOIN");
                            Input::Command(ClientCommand::Join {
                                room: name.to_string(),
                            })
                        }
                        false => self.numeric("403", &[name, "No such channel"]),
                    })
                    .collect(),
            },
            "PART" => match first {
                None => need_more(self),
                Some(channels) => channels
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| {
                        self.remember(name, "PART");
                        Input::Command(ClientCommand::Part {
                            room: Some(name.to_string()),
                        })
                    })
                    .collect(),
            },
            "NAMES" => match first {
                None => vec![self.numeric("366", &["*", "End of /NAMES list"])],
                Some(channels) => channels
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| self.ask(name, Asked::Names))
                    .collect(),
            },
            "WHO" => match first {
                Some(mask) if mask.starts_with('#') => vec![self.ask(mask, Asked::Who)],
                Some(mask) => vec![self.numeric("315", &[mask, "End of /WHO list"])],
                None => vec![self.numeric("315", &["*", "End of /WHO list"])],
            },
            "LIST" => vec![Input::Command(ClientCommand::Rooms)],
            "NICK" => match first {
                None => vec![self.numeric("431", &["No nickname given"])],
                Some(nick) => vec![Input::Command(ClientCommand::Nick {
                    nick: nick.to_string(),
                })],
            },
            "QUIT" => vec![Input::Command(ClientCommand::Quit {
                reason: first.map(str::to_string),
            })],
            "PING" => match first {
                Some(token) => {
                    vec![self
                        .answer(|server, _, out| server.say(out, "PONG", &[&server.name, token]))]
                }
                None => vec![self.numeric("409", &["No origin specified"])],
            },
            "PONG" => vec![Input::Nothing],
            "CAP" => {
                let mut caps = self.caps;
                let mut lines = String::new();
                cap(&self.server, &mut caps, &self.nick, params, &mut lines);
                self.caps = caps;
                vec![Input::Answered(ServerEvent::Verbatim { lines })]
            }
            "USER" | "PASS" => vec![self.numeric("462", &["You may not reregister"])],
            "MOTD" => vec![self.answer(|server, nick, out| server.motd(out, nick))],
            "VERSION" => vec![self.answer(|server, nick, out| {
                server.numeric(out, "351", nick, &[&server.version, &server.name, ""]);
                let tokens = server.isupport();
                let mut tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
                tokens.push("are supported by this server");
                server.numeric(out, "005", nick, &tokens);
            })],
            "TIME" => {
                let now = chrono::Utc::now().to_rfc2822();
                vec![self.numeric("391", &[&self.server.name, &now])]
            }
            "MODE" => match first {
                None => need_more(self),
                Some(target) if target.starts_with('#') => {
                    let target = target.to_string();
                    vec![self.answer(|server, nick, out| {
                        server.numeric(out, "324", nick, &[&target, "+nt"])
                    })]
                }
                Some(target) if target.eq_ignore_ascii_case(&self.nick) => {
                    vec![self.numeric("221", &["+i"])]
                }
                Some(_) => vec![self.numeric("502", &["Can't change mode for other users"])],
            },
            _ => vec![self.numeric("421", &[message.verb, "Unknown command"])],
        }
    }

    /// A member list asked for, remembered so its answer is told right.
    fn ask(&mut self, name: &str, asked: Asked) -> Input {
        self.asked.push_back(asked);
        self.remember(name, "NAMES");
        Input::Command(ClientCommand::Who {
            room: Some(name.to_string()),
        })
    }

    fn remember(&mut self, name: &str, verb: &'static str) {
        if let Ok(room) = normalize_room(name) {
            if self.last_verb.len() > 64 {
                self.last_verb.clear();
            }
            self.last_verb.insert(room, verb);
        }
    }

    fn names(&self, out: &mut String, room: &str, nicks: &[String]) {
        let target = channel(room);
        for chunk in nicks.chunks(NAMES_PER_LINE) {
            let list = chunk.join(" ");
            self.server
                .numeric(out, "353", &self.nick, &["=", &target, &list]);
        }
        self.server
            .numeric(out, "366", &self.nick, &[&target, "End of /NAMES list"]);
    }

    fn who(&self, out: &mut String, room: &str, nicks: &[String]) {
        let target = channel(room);
        for nick in nicks {
            let params = [
                target.as_str(),
                nick,
                MEMBER_HOST,
                &self.server.name,
                nick,
                "H",
                &format!("0 {nick}"),
            ];
            self.server.numeric(out, "352", &self.nick, &params);
        }
        self.server
            .numeric(out, "315", &self.nick, &[&target, "End of /WHO list"]);
    }

    fn list(&self, out: &mut String, rooms: &[RoomInfo]) {
        self.server
            .numeric(out, "321", &self.nick, &["Channel", "Users  Name"]);
        for room in rooms {
            let count = room.members.to_string();
            self.server
                .numeric(out, "322", &self.nick, &[&channel(&room.name), &count, ""]);
        }
        self.server
            .numeric(out, "323", &self.nick, &["End of /LIST"]);
    }

    fn error(&self, out: &mut String, code: ErrorCode, about: Option<&str>, message: &str) {
        let me = self.nick.as_str();
        let about = about.unwrap_or("*");
        let named = |room: &str| match room.starts_with('#') {
            true => room.to_string(),
            false => channel(room),
        };
        match code {
            ErrorCode::NickInUse => nick_refused(&self.server, out, me, about, &NickRefusal::Taken),
            ErrorCode::BadNick => {
                let refusal = NickRefusal::Invalid(message.to_string());
                nick_refused(&self.server, out, me, about, &refusal)
            }
            ErrorCode::NoSuchNick => {
                self.server
                    .numeric(out, "401", me, &[about, "No such nick/channel"])
            }
            ErrorCode::BadRoom => {
                self.server
                    .numeric(out, "403", me, &[&named(about), "No such channel"])
            }
            ErrorCode::NotInRoom => {
                let room = normalize_room(about).unwrap_or_default();
                match self.last_verb.get(&room) {
                    Some(&"PRIVMSG") => self.server.numeric(
                        out,
                        "404",
                        me,
                        &[&named(about), "Cannot send to channel"],
                    ),
                    _ => self.server.numeric(
                        out,
                        "442",
                        me,
                        &[&named(about), "You're not on that channel"],
                    ),
                }
            }
            ErrorCode::TooManyRooms => self.server.numeric(
                out,
                "405",
                me,
                &[&named(about), "You have joined too many channels"],
            ),
            ErrorCode::LineTooLong => {
                self.server
                    .numeric(out, "417", me, &["Input line was too long"])
            }
            _ => write_line(out, Some(&self.server.name), "NOTICE", &[me, message], true),
        }
    }

    /// Writes `event` as IRC lines; `None` when it is relayed as is.
    fn lines(&mut self, event: &ServerEvent) -> Option<String> {
        let mut out = String::new();
        match event {
            ServerEvent::Welcome { nick, .. } => {
                self.nick = nick.clone();
                self.server.welcome(&mut out, nick);
            }
            ServerEvent::Members { room, nicks, .. } => {
                let asked = match self.joining.take() {
                    Some(joined) if joined == *room => Asked::Names,
                    _ => self.asked.pop_front().unwrap_or(Asked::Names),
                };
                match asked {
                    Asked::Names => self.names(&mut out, room, nicks),
                    Asked::Who => self.who(&mut out, room, nicks),
                }
            }
            ServerEvent::Rooms { rooms } => self.list(&mut out, rooms),
            ServerEvent::Notice { text } => {
                for line in text.lines() {
                    write_line(
                        &mut out,
                        Some(&self.server.name),
                        "NOTICE",
                        &[&self.nick, line],
                        true,
                    );
                }
            }
            ServerEvent::Error {
                code,
                message,
                about,
            } => self.error(&mut out, *code, about.as_deref(), message),
            ServerEvent::Bye { reason, .. } => {
                self.server
                    .error(&mut out, &format!("Closing Link: {reason}"));
            }
            ServerEvent::Verbatim { lines } => out.push_str(lines),
            ServerEvent::Probe => self.server.say(&mut out, "PING", &[&self.server.name]),
            // History is for clients that ask for it (chathistory); the
            // rest has no IRC form.
            ServerEvent::History { .. }
            | ServerEvent::SearchResults { .. }
            | ServerEvent::Mode { .. }
            | ServerEvent::Current { .. }
            | ServerEvent::Pong { .. } => {}
            ServerEvent::Message(_)
            | ServerEvent::Private { .. }
            | ServerEvent::Join { .. }
            | ServerEvent::Leave { .. }
            | ServerEvent::Nick { .. } => return None,
        }
        Some(out)
    }

    /// Whether a relayed event is one this client is shown, keeping its
    /// own state up to date.
    fn shows(&mut self, event: &ServerEvent) -> bool {
        let echo = self.caps.has(Cap::EchoMessage);
        let quit_told = self.quit_told.take();
        match event {
            ServerEvent::Message(message) => echo || message.from != self.nick,
            ServerEvent::Private { from, .. } => echo || *from != self.nick,
            ServerEvent::Join { room, nick } => {
                if *nick == self.nick {
                    self.joined.insert(room.clone());
                    self.joining = Some(room.clone());
                }
                true
            }
            ServerEvent::Leave {
                room, nick, reason, ..
            } => {
                if *nick == self.nick {
                    self.joined.remove(room);
                }
                if *reason == crate::protocol::LeaveReason::Part {
                    return true;
                }
                let again = quit_told.as_deref() == Some(nick.as_str());
                self.quit_told = Some(nick.clone());
                !again
            }
            ServerEvent::Nick { old, new } => {
                if *old == self.nick {
                    self.nick = new.clone();
                }
                true
            }
            _ => true,
        }
    }
}

impl StreamCodec for IrcCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Option<Input> {
        if let Some(input) = self.queued.pop_front() {
            return Some(input);
        }
        // Decoding never fails; the io::Error type is the trait's.
        let frame = self.lines.decode(buf).ok().flatten()?;
        Some(self.input(frame))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Input> {
        if let Some(input) = self.queued.pop_front() {
            return Some(input);
        }
        let frame = self.lines.decode_eof(buf).ok().flatten()?;
        Some(self.input(frame))
    }

    /// IRC lines always end: unterminated input waits for the rest.
    fn decode_partial(&mut self, _buf: &mut BytesMut) -> Option<Input> {
        None
    }

    fn encode(&mut self, event: &Outgoing, out: &mut BytesMut) {
        match self.lines(event.event()) {
            Some(lines) => {
                self.quit_told = None;
                out.extend_from_slice(lines.as_bytes());
            }
            None => {
                if self.shows(event.event()) {
                    if let Some(relayed) = event.irc() {
                        let time = self.caps.has(Cap::ServerTime);
                        let msgid = self.caps.has(Cap::MessageTags);
                        relayed.write(time, msgid, out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageRecord;

    fn codec() -> IrcCodec {
        let server = Arc::new(IrcServer::new("test", None));
        IrcCodec::new(server, "alice".into(), Caps::default())
    }

    fn decode_all(codec: &mut IrcCodec, bytes: &[u8]) -> Vec<Input> {
        let mut buf = BytesMut::from(bytes);
        std::iter::from_fn(|| codec.decode(&mut buf)).collect()
    }

    fn encode(codec: &mut IrcCodec, event: ServerEvent) -> String {
        let mut out = BytesMut::new();
        codec.encode(&Outgoing::new(event), &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn answered(input: &Input) -> &str {
        match input {
            Input::Answered(ServerEvent::Verbatim { lines }) => lines,
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn commands_become_the_hubs_and_lists_become_several() {
        let mut codec = codec();
        let inputs = decode_all(
            &mut codec,
            b"JOIN #a,#b\r\nPRIVMSG #a,bob :hi there\r\nPRIVMSG #a :\x01ACTION waves\x01\r\nPART #b\r\n",
        );
        let command = |input: &Input| match input {
            Input::Command(command) => command.clone(),
            other => panic!("not a command: {other:?}"),
        };
        let commands: Vec<ClientCommand> = inputs.iter().map(command).collect();
        assert_eq!(
            commands,
            [
                ClientCommand::Join { room: "#a".into() },
                ClientCommand::Join { room: "#b".into() },
                ClientCommand::Say {
                    text: "hi there".into(),
                    room: Some("#a".into())
                },
                ClientCommand::Msg {
                    to: "bob".into(),
                    text: "hi there".into()
                },
                ClientCommand::Me {
                    text: "waves".into(),
                    room: Some("#a".into())
                },
                ClientCommand::Part {
                    room: Some("#b".into())
                },
            ]
        );
    }

    #[test]
    fn malformed_and_unknown_commands_get_their_numerics() {
        let mut codec = codec();
        let long = format!("PRIVMSG #a :{}\r\n", "x".repeat(600));
        let mut bytes =
            b"PRIVMSG\r\nPRIVMSG #a\r\nJOIN\r\nFROB x\r\nPING :tok\r\nUSER a b c d\r\n\xff\r\n"
                .to_vec();
        bytes.extend_from_slice(long.as_bytes());
        let inputs = decode_all(&mut codec, &bytes);
        let codes: Vec<String> = inputs
            .iter()
            .map(|input| answered(input).split(' ').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(
            codes,
            ["411", "412", "461", "421", "PONG", "462", "FAIL", "417"]
        );
        assert_eq!(answered(&inputs[4]), ":test PONG test :tok\r\n");
        assert_eq!(
            answered(&inputs[3]),
            ":test 421 alice FROB :Unknown command\r\n"
        );
    }

    #[test]
    fn own_messages_are_echoed_only_with_echo_message_and_tags_only_when_asked() {
        let mut codec = codec();
        let message = |from: &str| {
            ServerEvent::Message(MessageRecord {
                id: 7,
                room: "a".into(),
                from: from.into(),
                text: "hi".into(),
                time: 0,
                action: false,
            })
        };
        assert_eq!(encode(&mut codec, message("alice")), "");
        assert_eq!(
            encode(&mut codec, message("bob")),
            ":bob!bob@sockchat PRIVMSG #a :hi\r\n"
        );
        codec.caps.request("echo-message server-time");
        assert_eq!(
            encode(&mut codec, message("alice")),
            "@time=1970-01-01T00:00:00.000Z :alice!alice@sockchat PRIVMSG #a :hi\r\n"
        );
        codec.caps.request("message-tags");
        assert!(encode(&mut codec, message("bob"))
            .starts_with("@time=1970-01-01T00:00:00.000Z;msgid=7 :bob"));
    }

    #[test]
    fn a_join_is_followed_by_names_and_a_quit_is_told_once() {
        let mut codec = codec();
        let join = encode(
            &mut codec,
            ServerEvent::Join {
                room: "a".into(),
                nick: "alice".into(),
            },
        );
        assert_eq!(join, ":alice!alice@sockchat JOIN #a\r\n");
        let names = encode(
            &mut codec,
            ServerEvent::Members {
                room: "a".into(),
                nicks: vec!["bob".into(), "alice".into()],
                count: 2,
            },
        );
        assert_eq!(
            names,
            ":test 353 alice = #a :bob alice\r\n:test 366 alice #a :End of /NAMES list\r\n"
        );
        let quit = |room: &str| ServerEvent::Leave {
            room: room.into(),
            nick: "bob".into(),
            reason: crate::protocol::LeaveReason::Quit,
            detail: Some("later".into()),
        };
        assert_eq!(
            encode(&mut codec, quit("a")),
            ":bob!bob@sockchat QUIT :Quit: later\r\n"
        );
        assert_eq!(encode(&mut codec, quit("b")), "");
        // WHO asked for: the next member list is a WHO reply.
        decode_all(&mut codec, b"WHO #a\r\n");
        let who = encode(
            &mut codec,
            ServerEvent::Members {
                room: "a".into(),
                nicks: vec!["bob".into()],
                count: 1,
            },
        );
        assert!(who.starts_with(":test 352 alice #a bob sockchat test bob H :0 bob\r\n"));
        assert!(who.ends_with(":test 315 alice #a :End of /WHO list\r\n"));
    }

    #[test]
    fn errors_name_what_they_are_about() {
        let mut codec = codec();
        decode_all(&mut codec, b"PRIVMSG #x :hi\r\nPART #y\r\n");
        let error = |about: &str| ServerEvent::error_about(ErrorCode::NotInRoom, about, "no");
        assert_eq!(
            encode(&mut codec, error("x")),
            ":test 404 alice #x :Cannot send to channel\r\n"
        );
        assert_eq!(
            encode(&mut codec, error("y")),
            ":test 442 alice #y :You're not on that channel\r\n"
        );
        let taken = ServerEvent::error_about(ErrorCode::NickInUse, "bob", "taken");
        assert_eq!(
            encode(&mut codec, taken),
            ":test 433 alice bob :Nickname is already in use\r\n"
        );
    }
}
