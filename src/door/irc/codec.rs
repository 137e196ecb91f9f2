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
use super::replies::{cap, Cap, Caps, IrcServer, MAX_CHATHISTORY, MAX_LINE, MAX_TAGS};
use crate::door::stream::StreamCodec;
use crate::hub::NickRefusal;
use crate::protocol::irc::{
    channel, parse, parse_server_time, prefix, write_line, Message, Relayed, MEMBER_HOST,
};
use crate::protocol::line_codec::{Frame, LineCodec};
use crate::protocol::text::normalize_room;
use crate::protocol::{
    ClientCommand, ErrorCode, MessageRecord, Outgoing, Password, Person, Point, RoomInfo,
    ServerEvent,
};
use crate::session::Input;

/// Bytes of nicks per 353 line: room for the rest within 512.
const NAMES_BYTES: usize = 400;

/// The most bytes of tags a client may send (IRCv3 message-tags).
const MAX_CLIENT_TAGS: usize = 4094;

/// What a `Found` event answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// `WHO MASK`: 352s and 315.
    Who(String),
    /// `WHOIS NICK`: 311 and the rest, or 401, then 318.
    Whois(String),
    /// `ISON`: 303.
    Ison,
    /// `USERHOST`: 302.
    Userhost,
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
    /// What the `Found` events to come answer, in order.
    asked: VecDeque<Asked>,
    /// The room of the last `MODE` or `KICK`, which a "not in that room"
    /// about a nick concerns.
    last_room: String,
    /// The nick whose QUIT was just written: someone in several shared
    /// rooms leaves once.
    quit_told: Option<String>,
    /// The last verb sent for each room, so "not in that room" is told as
    /// IRC does for it: 404 for a message, 442 for anything else.
    last_verb: HashMap<String, &'static str>,
    /// The last batch reference handed out.
    batches: u64,
    /// The client is invisible (`+i`), as the hub last said.
    invisible: bool,
    /// The client is a server operator (`+o`), as the hub last said.
    operator: bool,
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
            last_room: String::new(),
            quit_told: None,
            last_verb: HashMap::new(),
            batches: 0,
            invisible: false,
            operator: false,
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
            Some(tags) if tags.len() > MAX_CLIENT_TAGS => {
                return self.numeric("417", &["Input line was too long"]);
            }
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
                let notice = verb == "NOTICE";
                // A CTCP ACTION is a /me; other CTCP (a NOTICE's CTCP
                // replies among them) is relayed as it is.
                let (text, action) = match text
                    .strip_prefix("\u{1}ACTION ")
                    .map(|rest| rest.trim_end_matches('\u{1}'))
                {
                    Some(action) if !notice => (action, true),
                    _ => (*text, false),
                };
                targets
                    .split(',')
                    .filter(|target| !target.is_empty())
                    .map(|target| {
                        let text = text.to_string();
                        let verb = if notice { "NOTICE" } else { "PRIVMSG" };
                        let to = target.to_string();
                        let command = match target.strip_prefix('#') {
                            Some(_) => {
                                self.remember(target, verb);
                                let room = Some(to.clone());
                                match (notice, action) {
                                    (true, _) => ClientCommand::Notice { to, text },
                                    (false, true) => ClientCommand::Me { text, room },
                                    (false, false) => ClientCommand::Say { text, room },
                                }
                            }
                            None => {
                                self.remember_nick(target, verb);
                                match notice {
                                    true => ClientCommand::Notice { to, text },
                                    false => ClientCommand::Msg { to, text },
                                }
                            }
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
                            reason: None,
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
                            reason: params.get(1).map(|reason| reason.to_string()),
                        })
                    })
                    .collect(),
            },
            "NAMES" => match first {
                None => vec![self.numeric("366", &["*", "End of /NAMES list"])],
                Some(channels) => channels
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(
                        |name| match name.starts_with('#') && normalize_room(name).is_ok() {
                            true => {
                                self.remember(name, "NAMES");
                                Input::Command(ClientCommand::Who {
                                    room: Some(name.to_string()),
                                })
                            }
                            false => self.numeric("366", &[name, "End of /NAMES list"]),
                        },
                    )
                    .collect(),
            },
            "WHO" => {
                let mask = first.unwrap_or("*");
                vec![self.lookup(vec![mask.to_string()], Asked::Who(mask.to_string()))]
            }
            "WHOIS" => match params.last().filter(|nick| !nick.is_empty()) {
                None => vec![self.numeric("431", &["No nickname given"])],
                Some(nick) => {
                    let nick = nick.split(',').next().unwrap_or_default().to_string();
                    self.remember_nick(&nick, "WHOIS");
                    vec![self.lookup(vec![nick.clone()], Asked::Whois(nick))]
                }
            },
            "ISON" | "USERHOST" if params.is_empty() => need_more(self),
            "ISON" => {
                let nicks = params.iter().flat_map(|param| param.split(' '));
                let nicks: Vec<String> = nicks
                    .filter(|nick| !nick.is_empty())
                    .map(str::to_string)
                    .collect();
                vec![self.lookup(nicks, Asked::Ison)]
            }
            "USERHOST" => {
                let nicks: Vec<String> =
                    params.iter().take(5).map(|nick| nick.to_string()).collect();
                vec![self.lookup(nicks, Asked::Userhost)]
            }
            "OPER" => match (first, params.get(1)) {
                (Some(name), Some(password)) => vec![Input::Command(ClientCommand::Oper {
                    name: name.to_string(),
                    password: Password(password.to_string()),
                })],
                _ => need_more(self),
            },
            "AWAY" => vec![Input::Command(ClientCommand::Away {
                text: first.map(str::to_string),
            })],
            "LUSERS" => vec![Input::Command(ClientCommand::Counts)],
            "CHATHISTORY" => vec![self.chathistory(params)],
            "TOPIC" => match first {
                None => need_more(self),
                Some(name) => {
                    self.remember(name, "TOPIC");
                    vec![Input::Command(ClientCommand::Topic {
                        room: Some(name.to_string()),
                        text: params.get(1).map(|text| text.to_string()),
                    })]
                }
            },
            "KICK" => match (first, params.get(1)) {
                (Some(name), Some(nicks)) => {
                    self.remember(name, "KICK");
                    self.last_room = name.to_string();
                    nicks
                        .split(',')
                        .filter(|nick| !nick.is_empty())
                        .map(|nick| {
                            Input::Command(ClientCommand::Kick {
                                room: Some(name.to_string()),
                                nick: nick.to_string(),
                                reason: params.get(2).map(|reason| reason.to_string()),
                            })
                        })
                        .collect()
                }
                _ => need_more(self),
            },
            "INVITE" => match (first, params.get(1)) {
                (Some(nick), Some(name)) => {
                    self.remember(name, "INVITE");
                    self.last_room = name.to_string();
                    vec![Input::Command(ClientCommand::Invite {
                        nick: nick.to_string(),
                        room: Some(name.to_string()),
                    })]
                }
                _ => need_more(self),
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
                Some(target) if target.starts_with('#') => self.channel_modes(target, &params[1..]),
                Some(target) if target.eq_ignore_ascii_case(&self.nick) => {
                    self.user_modes(params.get(1).copied())
                }
                Some(_) => match params.len() {
                    1 => vec![self.numeric("502", &["Can't view modes for other users"])],
                    _ => vec![self.numeric("502", &["Can't change mode for other users"])],
                },
            },
            _ => vec![self.numeric("421", &[message.verb, "Unknown command"])],
        }
    }

    /// `CHATHISTORY LATEST|BEFORE|AFTER #room *|msgid=N|timestamp=T LIMIT`:
    /// the hub's history command, answered as a batch.
    fn chathistory(&mut self, params: &[&str]) -> Input {
        let fail = |codec: &Self, code: &str, context: &str, why: &str| {
            codec.answer(|server, _, out| {
                server.say(out, "FAIL", &["CHATHISTORY", code, context, why])
            })
        };
        let [sub, target, anchor, limit] = params else {
            return fail(self, "NEED_MORE_PARAMS", "*", "Missing parameters");
        };
        let sub = sub.to_ascii_uppercase();
        if !matches!(sub.as_str(), "LATEST" | "BEFORE" | "AFTER") {
            return fail(
                self,
                "INVALID_PARAMS",
                &sub,
                "LATEST, BEFORE and AFTER are served",
            );
        }
        if !target.starts_with('#') || normalize_room(target).is_err() {
            return fail(
                self,
                "INVALID_TARGET",
                &sub,
                "Only channels have history here",
            );
        }
        let point = match anchor.split_once('=') {
            _ if *anchor == "*" => None,
            Some(("msgid", id)) => id.parse().ok().map(Point::Id),
            Some(("timestamp", time)) => parse_server_time(time).map(Point::Time),
            _ => None,
        };
        if point.is_none() && (*anchor != "*" || sub != "LATEST") {
            return fail(self, "INVALID_PARAMS", &sub, "Not a message reference");
        }
        let Ok(limit) = limit.parse::<usize>() else {
            return fail(self, "INVALID_PARAMS", &sub, "Not a number of messages");
        };
        let (before, after) = match sub.as_str() {
            "BEFORE" => (point, None),
            // LATEST with a reference: what came after it.
            _ => (None, point),
        };
        Input::Command(ClientCommand::History {
            count: Some(limit.clamp(1, MAX_CHATHISTORY)),
            room: Some(target.to_string()),
            before,
            after,
        })
    }

    /// A room's past as a `chathistory` batch, with the times it was
    /// said; for clients that did not ask for batches, nothing (they
    /// would take it for new messages).
    fn history(&mut self, room: &str, messages: &[MessageRecord], out: &mut BytesMut) {
        if !(self.caps.has(Cap::ChatHistory) && self.caps.has(Cap::Batch)) {
            return;
        }
        self.batches += 1;
        let batch = format!("history{}", self.batches);
        let mut line = String::new();
        let start = format!("+{batch}");
        let source = Some(self.server.name.as_str());
        let opening = [start.as_str(), "chathistory", &channel(room)];
        write_line(&mut line, source, "BATCH", &opening, false);
        out.extend_from_slice(line.as_bytes());
        let (time, msgid) = (
            self.caps.has(Cap::ServerTime),
            self.caps.has(Cap::MessageTags),
        );
        for message in messages {
            if let Some(relayed) = Relayed::of(&ServerEvent::Message(message.clone())) {
                relayed.write_in_batch(&batch, time, msgid, out);
            }
        }
        line.clear();
        write_line(&mut line, source, "BATCH", &[&format!("-{batch}")], false);
        out.extend_from_slice(line.as_bytes());
    }

    /// `MODE NICK [+i|-i]`: the query (221), or invisibility on or off;
    /// `i` is the one user mode served.
    fn user_modes(&mut self, change: Option<&str>) -> Vec<Input> {
        let Some(change) = change else {
            let modes = format!(
                "+{}{}",
                if self.invisible { "i" } else { "" },
                if self.operator { "o" } else { "" }
            );
            return vec![self.numeric("221", &[&modes])];
        };
        let mut on = true;
        let mut inputs = Vec::new();
        for flag in change.chars() {
            match flag {
                '+' | '-' => on = flag == '+',
                'i' => inputs.push(Input::Command(ClientCommand::Invisible { on })),
                // +o is OPER's to give (RFC 2812, 3.1.5: ignored here).
                'o' if on => {}
                'o' => inputs.push(Input::Command(ClientCommand::Unoper)),
                _ => inputs.push(self.numeric("501", &["Unknown MODE flag"])),
            }
        }
        inputs
    }

    /// A lookup asked for, remembered so its answer is told right.
    fn lookup(&mut self, targets: Vec<String>, asked: Asked) -> Input {
        self.asked.push_back(asked);
        Input::Command(ClientCommand::Lookup { targets })
    }

    /// `MODE #room [CHANGES [ARGS]]`: a query, or the change as one hub
    /// command (`+ot bob`); the ban list is always empty.
    fn channel_modes(&mut self, target: &str, rest: &[&str]) -> Vec<Input> {
        self.remember(target, "MODE");
        self.last_room = target.to_string();
        let room = Some(target.to_string());
        let Some(changes) = rest.first() else {
            return vec![Input::Command(ClientCommand::Mode { room, change: None })];
        };
        // The ban list is asked for on joining by most clients: it is
        // empty (bans come with moderation).
        if rest.len() == 1 && changes.trim_start_matches(['+', '-']) == "b" {
            return vec![self.numeric("368", &[target, "End of channel ban list"])];
        }
        let nicks_wanted = changes
            .chars()
            .filter(|flag| matches!(flag, 'o' | 'v'))
            .count();
        if nicks_wanted > rest.len() - 1 {
            return vec![self.numeric("461", &["MODE", "Not enough parameters"])];
        }
        // The hub takes the whole change and answers it with one MODE.
        vec![Input::Command(ClientCommand::Mode {
            room,
            change: Some(rest.join(" ")),
        })]
    }

    fn remember(&mut self, name: &str, verb: &'static str) {
        if let Ok(room) = normalize_room(name) {
            self.remember_key(room, verb);
        }
    }

    fn remember_nick(&mut self, nick: &str, verb: &'static str) {
        self.remember_key(format!("nick:{}", nick.to_lowercase()), verb);
    }

    fn remember_key(&mut self, key: String, verb: &'static str) {
        if self.last_verb.len() > 64 {
            self.last_verb.clear();
        }
        self.last_verb.insert(key, verb);
    }

    fn verb_for_room(&self, about: &str) -> Option<&'static str> {
        let room = normalize_room(about).ok()?;
        self.last_verb.get(&room).copied()
    }

    fn verb_for_nick(&self, about: &str) -> Option<&'static str> {
        self.last_verb
            .get(&format!("nick:{}", about.to_lowercase()))
            .copied()
    }

    fn names(
        &self,
        out: &mut String,
        room: &str,
        nicks: &[String],
        ranks: [&[String]; 2],
        secret: bool,
    ) {
        let target = channel(room);
        // RFC 2812's channel type: `@` secret, `=` public.
        let kind = if secret { "@" } else { "=" };
        let full = self.caps.has(Cap::UserhostInNames);
        let shown: Vec<String> = nicks
            .iter()
            .map(|nick| {
                let rank = self.rank(ranks[0].contains(nick), ranks[1].contains(nick));
                match full {
                    true => format!("{rank}{}", prefix(nick)),
                    false => format!("{rank}{nick}"),
                }
            })
            .collect();
        // As many as fit a line: 5000 members are some 150 lines.
        let mut list = String::new();
        for nick in &shown {
            if !list.is_empty() && list.len() + 1 + nick.len() > NAMES_BYTES {
                self.server
                    .numeric(out, "353", &self.nick, &[kind, &target, &list]);
                list.clear();
            }
            if !list.is_empty() {
                list.push(' ');
            }
            list.push_str(nick);
        }
        if !list.is_empty() {
            self.server
                .numeric(out, "353", &self.nick, &[kind, &target, &list]);
        }
        self.server
            .numeric(out, "366", &self.nick, &[&target, "End of /NAMES list"]);
    }

    /// A member's prefixes in a room: `@` for an operator, `+` for a
    /// voice, both with multi-prefix, else the higher.
    fn rank(&self, op: bool, voiced: bool) -> &'static str {
        match (op, voiced, self.caps.has(Cap::MultiPrefix)) {
            (true, true, true) => "@+",
            (true, _, _) => "@",
            (false, true, _) => "+",
            (false, false, _) => "",
        }
    }

    /// The answer to a lookup, in the form its question asked for.
    fn found(&self, out: &mut String, asked: Asked, people: &[Person]) {
        let me = self.nick.as_str();
        let server = &self.server;
        match asked {
            Asked::Who(mask) => {
                let room = mask
                    .starts_with('#')
                    .then(|| normalize_room(&mask).ok())
                    .flatten();
                // Invisibility hides from masks, not from a nick asked by
                // name (as the modern IRC documents have it).
                let masked = mask.contains(['*', '?']);
                for person in people.iter().filter(|person| !(masked && person.hidden)) {
                    let shown_room = room.clone().or_else(|| person.rooms.first().cloned());
                    let target = shown_room.as_deref().map_or("*".to_string(), channel);
                    let mut flags = String::from(if person.away.is_some() { "G" } else { "H" });
                    if person.operator {
                        flags.push('*');
                    }
                    if let Some(room) = &shown_room {
                        flags.push_str(
                            self.rank(person.ops.contains(room), person.voiced.contains(room)),
                        );
                    }
                    let user = person.user.as_deref().unwrap_or(&person.nick);
                    let realname = format!("0 {}", realname(person));
                    let params = [
                        &target,
                        user,
                        MEMBER_HOST,
                        &server.name,
                        &person.nick,
                        &flags,
                        &realname,
                    ];
                    server.numeric(out, "352", me, &params);
                }
                server.numeric(out, "315", me, &[&mask, "End of /WHO list"]);
            }
            Asked::Whois(nick) => {
                if let Some(person) = people.first() {
                    let user = person.user.as_deref().unwrap_or(&person.nick);
                    let params = [
                        person.nick.as_str(),
                        user,
                        MEMBER_HOST,
                        "*",
                        &realname(person),
                    ];
                    server.numeric(out, "311", me, &params);
                    if !person.rooms.is_empty() {
                        let rooms: Vec<String> = person
                            .rooms
                            .iter()
                            .map(|room| {
                                let rank = self
                                    .rank(person.ops.contains(room), person.voiced.contains(room));
                                format!("{rank}{}", channel(room))
                            })
                            .collect();
                        server.numeric(out, "319", me, &[&person.nick, &rooms.join(" ")]);
                    }
                    let door = format!("sockchat, by the {} door", person.door);
                    server.numeric(out, "312", me, &[&person.nick, &server.name, &door]);
                    if person.operator {
                        server.numeric(out, "313", me, &[&person.nick, "is an IRC operator"]);
                    }
                    if let Some(away) = &person.away {
                        server.numeric(out, "301", me, &[&person.nick, away]);
                    }
                    server.numeric(out, "318", me, &[&person.nick, "End of /WHOIS list"]);
                } else {
                    server.numeric(out, "401", me, &[&nick, "No such nick/channel"]);
                    server.numeric(out, "318", me, &[&nick, "End of /WHOIS list"]);
                }
            }
            Asked::Ison => {
                let nicks: Vec<&str> = people.iter().map(|person| person.nick.as_str()).collect();
                server.numeric(out, "303", me, &[&nicks.join(" ")]);
            }
            Asked::Userhost => {
                let replies: Vec<String> = people
                    .iter()
                    .map(|person| {
                        let away = if person.away.is_some() { '-' } else { '+' };
                        let user = person.user.as_deref().unwrap_or(&person.nick);
                        format!("{}={away}{user}@{MEMBER_HOST}", person.nick)
                    })
                    .collect();
                server.numeric(out, "302", me, &[&replies.join(" ")]);
            }
        }
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
        // Errors about a NOTICE are never told (RFC 2812, 3.3.2).
        let about_notice = self.verb_for_room(about) == Some("NOTICE")
            || self.verb_for_nick(about) == Some("NOTICE");
        let unanswered = matches!(
            code,
            ErrorCode::NoSuchNick
                | ErrorCode::NotInRoom
                | ErrorCode::BadRoom
                | ErrorCode::Moderated
        );
        if about_notice && unanswered {
            return;
        }
        let server = &self.server;
        match code {
            ErrorCode::NickInUse => nick_refused(server, out, me, about, &NickRefusal::Taken),
            ErrorCode::BadNick => {
                let refusal = NickRefusal::Invalid(message.to_string());
                nick_refused(server, out, me, about, &refusal)
            }
            ErrorCode::NoSuchNick => {
                server.numeric(out, "401", me, &[about, "No such nick/channel"])
            }
            ErrorCode::BadRoom if self.verb_for_room(about) == Some("NAMES") => {
                server.numeric(out, "366", me, &[&named(about), "End of /NAMES list"])
            }
            ErrorCode::BadRoom => {
                server.numeric(out, "403", me, &[&named(about), "No such channel"])
            }
            ErrorCode::NotInRoom if self.verb_for_room(about) == Some("PRIVMSG") => {
                server.numeric(out, "404", me, &[&named(about), "Cannot send to channel"])
            }
            ErrorCode::NotInRoom => server.numeric(
                out,
                "442",
                me,
                &[&named(about), "You're not on that channel"],
            ),
            ErrorCode::TargetNotInRoom => {
                let room = named(&self.last_room);
                server.numeric(
                    out,
                    "441",
                    me,
                    &[about, &room, "They aren't on that channel"],
                )
            }
            ErrorCode::TargetInRoom => {
                let room = named(&self.last_room);
                server.numeric(out, "443", me, &[about, &room, "is already on channel"])
            }
            ErrorCode::InviteOnly => {
                server.numeric(out, "473", me, &[&named(about), "Cannot join channel (+i)"])
            }
            ErrorCode::Moderated => server.numeric(
                out,
                "404",
                me,
                &[&named(about), "Cannot send to channel (+m)"],
            ),
            ErrorCode::NotOperator => server.numeric(
                out,
                "482",
                me,
                &[&named(about), "You're not channel operator"],
            ),
            ErrorCode::UnknownMode => {
                server.numeric(out, "472", me, &[about, "is unknown mode char to me"])
            }
            ErrorCode::TooManyRooms => server.numeric(
                out,
                "405",
                me,
                &[&named(about), "You have joined too many channels"],
            ),
            ErrorCode::LineTooLong => server.numeric(out, "417", me, &["Input line was too long"]),
            ErrorCode::BadPassword => server.numeric(out, "464", me, &["Password incorrect"]),
            ErrorCode::NoOperators => server.numeric(out, "491", me, &["No O-lines for your host"]),
            // Only operator checks are asked to wait.
            ErrorCode::TryAgain => server.numeric(out, "263", me, &["OPER", message]),
            _ => write_line(out, Some(&server.name), "NOTICE", &[me, message], true),
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
            ServerEvent::Members {
                room,
                nicks,
                ops,
                voiced,
                secret,
                ..
            } => {
                self.names(&mut out, room, nicks, [ops, voiced], *secret);
            }
            ServerEvent::Invited { room, nick, by } => {
                let channel = channel(room);
                if *nick == self.nick {
                    write_line(
                        &mut out,
                        Some(&prefix(by)),
                        "INVITE",
                        &[nick, &channel],
                        false,
                    );
                } else {
                    self.server
                        .numeric(&mut out, "341", &self.nick, &[nick, &channel]);
                }
            }
            ServerEvent::Found { people, .. } => {
                if let Some(asked) = self.asked.pop_front() {
                    self.found(&mut out, asked, people);
                }
            }
            ServerEvent::Topic {
                room,
                text,
                by,
                at,
                changed: false,
            } => {
                let target = channel(room);
                match text {
                    Some(text) => {
                        self.server
                            .numeric(&mut out, "332", &self.nick, &[&target, text]);
                        let by = by.as_deref().unwrap_or("*");
                        let at = (at.unwrap_or(0) / 1000).to_string();
                        write_line(
                            &mut out,
                            Some(&self.server.name),
                            "333",
                            &[&self.nick, &target, &prefix(by), &at],
                            false,
                        );
                    }
                    None => self.server.numeric(
                        &mut out,
                        "331",
                        &self.nick,
                        &[&target, "No topic is set"],
                    ),
                }
            }
            ServerEvent::RoomMode {
                room,
                modes,
                by: None,
                since,
            } => {
                let target = channel(room);
                write_line(
                    &mut out,
                    Some(&self.server.name),
                    "324",
                    &[&self.nick, &target, modes],
                    false,
                );
                if let Some(since) = since {
                    let since = (since / 1000).to_string();
                    write_line(
                        &mut out,
                        Some(&self.server.name),
                        "329",
                        &[&self.nick, &target, &since],
                        false,
                    );
                }
            }
            ServerEvent::Away { nick, text } if *nick == self.nick => match text {
                Some(_) => self.server.numeric(
                    &mut out,
                    "306",
                    &self.nick,
                    &["You have been marked as being away"],
                ),
                None => self.server.numeric(
                    &mut out,
                    "305",
                    &self.nick,
                    &["You are no longer marked as being away"],
                ),
            },
            ServerEvent::Away { nick, text } => {
                let text = text.as_deref().unwrap_or("away");
                self.server
                    .numeric(&mut out, "301", &self.nick, &[nick, text]);
            }
            // `MODE me -o` from one who was not an operator changes nothing.
            ServerEvent::Operator { name: None } if !self.operator => {}
            ServerEvent::Operator { name } => {
                self.operator = name.is_some();
                if name.is_some() {
                    let me = self.nick.clone();
                    self.server
                        .numeric(&mut out, "381", &me, &["You are now an IRC operator"]);
                }
                let change = if name.is_some() { "+o" } else { "-o" };
                write_line(
                    &mut out,
                    Some(&prefix(&self.nick)),
                    "MODE",
                    &[&self.nick, change],
                    true,
                );
            }
            ServerEvent::Invisible { on } => {
                self.invisible = *on;
                let change = if *on { "+i" } else { "-i" };
                write_line(
                    &mut out,
                    Some(&prefix(&self.nick)),
                    "MODE",
                    &[&self.nick, change],
                    true,
                );
            }
            ServerEvent::Counts { members, rooms } => {
                let me = self.nick.as_str();
                let users = format!("There are {members} users and 0 invisible on 1 servers");
                self.server.numeric(&mut out, "251", me, &[&users]);
                self.server.numeric(
                    &mut out,
                    "254",
                    me,
                    &[&rooms.to_string(), "channels formed"],
                );
                let clients = format!("I have {members} clients and 0 servers");
                self.server.numeric(&mut out, "255", me, &[&clients]);
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
            // History is a batch (see `history`); the rest has no IRC form.
            ServerEvent::History { .. }
            | ServerEvent::SearchResults { .. }
            | ServerEvent::Mode { .. }
            | ServerEvent::Current { .. }
            | ServerEvent::Pong { .. } => {}
            ServerEvent::Message(_)
            | ServerEvent::Private { .. }
            | ServerEvent::Join { .. }
            | ServerEvent::Leave { .. }
            | ServerEvent::Nick { .. }
            | ServerEvent::Kick { .. }
            | ServerEvent::Topic { changed: true, .. }
            | ServerEvent::RoomMode { by: Some(_), .. }
            | ServerEvent::Presence { .. } => return None,
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
            ServerEvent::Kick { room, nick, .. } => {
                if *nick == self.nick {
                    self.joined.remove(room);
                }
                true
            }
            ServerEvent::Presence { .. } => self.caps.has(Cap::AwayNotify),
            _ => true,
        }
    }
}

/// What WHO and WHOIS show as a member's real name: what its IRC client
/// said, or the door it came by.
fn realname(person: &Person) -> String {
    match &person.realname {
        Some(realname) => realname.clone(),
        None => format!("{} (sockchat {})", person.nick, person.door),
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
        if let ServerEvent::History { room, messages } = event.event() {
            self.quit_told = None;
            self.history(room, messages, out);
            return;
        }
        // Relayed events first: they are nearly all of them.
        if let Some(relayed) = event.irc() {
            if self.shows(event.event()) {
                let time = self.caps.has(Cap::ServerTime);
                let msgid = self.caps.has(Cap::MessageTags);
                relayed.write(time, msgid, out);
            }
            return;
        }
        if let Some(lines) = self.lines(event.event()) {
            self.quit_told = None;
            out.extend_from_slice(lines.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    room: Some("#b".into()),
                    reason: None
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
                notice: false,
                ticket: None,
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
                ops: vec!["bob".into()],
                voiced: Vec::new(),
                secret: false,
            },
        );
        assert_eq!(
            names,
            ":test 353 alice = #a :@bob alice\r\n:test 366 alice #a :End of /NAMES list\r\n"
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
        // WHO asked for: the lookup's answer is a WHO reply, with what
        // USER said, away and operator flags.
        decode_all(&mut codec, b"WHO #a\r\nWHOIS carol\r\n");
        let bob = Person {
            nick: "bob".into(),
            door: "irc".into(),
            rooms: vec!["a".into()],
            ops: vec!["a".into()],
            voiced: Vec::new(),
            hidden: false,
            operator: false,
            away: Some("lunch".into()),
            user: Some("bobby".into()),
            realname: Some("Bob B".into()),
        };
        let found = |people: Vec<Person>| ServerEvent::Found {
            asked: Vec::new(),
            people,
        };
        let who = encode(&mut codec, found(vec![bob]));
        assert_eq!(
            who,
            ":test 352 alice #a bobby sockchat test bob G@ :0 Bob B\r\n:test 315 alice #a :End of /WHO list\r\n"
        );
        let whois = encode(&mut codec, found(Vec::new()));
        assert_eq!(
            whois,
            ":test 401 alice carol :No such nick/channel\r\n:test 318 alice carol :End of /WHOIS list\r\n"
        );
    }

    #[test]
    fn names_of_a_big_room_fill_lines_within_512_bytes() {
        let mut codec = codec();
        let nicks: Vec<String> = (0..5000).map(|n| format!("member{n:05}")).collect();
        let names = encode(
            &mut codec,
            ServerEvent::Members {
                room: "big".into(),
                nicks: nicks.clone(),
                count: nicks.len(),
                ops: Vec::new(),
                voiced: Vec::new(),
                secret: false,
            },
        );
        let lines: Vec<&str> = names.split_terminator("\r\n").collect();
        assert!(lines.iter().all(|line| line.len() + 2 <= 512));
        assert!(lines.len() < 200, "{} lines", lines.len());
        let listed: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.split_once(" = #big :").map(|(_, list)| list))
            .flat_map(|list| list.split(' '))
            .collect();
        assert_eq!(listed, nicks);
        assert!(lines
            .last()
            .unwrap()
            .ends_with(" 366 alice #big :End of /NAMES list"));
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
