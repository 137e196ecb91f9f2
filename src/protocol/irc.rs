//! IRC's wire format (RFC 1459 §2.3.1, IRCv3 message tags): a line split
//! into tags, source, verb and parameters, borrowed from the line (nothing
//! is copied to read a command), and lines written back.
//!
//! Atoms are separated by one or more spaces, as RFC 1459 says (RFC 2812's
//! single space is not what clients send). A parameter starting with `:`
//! is the last and takes the rest of the line, spaces and all.

use std::borrow::Cow;

use super::{LeaveReason, ServerEvent};

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The raw tags, without the `@` (see [`Message::tags`]).
    pub raw_tags: Option<&'a str>,
    /// Who sent it, without the `:` (clients rarely send one).
    pub source: Option<&'a str>,
    /// The command or numeric, as sent (compare it case-insensitively).
    pub verb: &'a str,
    pub params: Vec<&'a str>,
}

/// Splits `line` (without its line ending) into atoms; `None` when it has
/// no verb (an empty line, or only tags and a source).
pub fn parse(line: &str) -> Option<Message<'_>> {
    let mut rest = line.trim_start_matches(' ');
    let raw_tags = match rest.strip_prefix('@') {
        Some(tagged) => {
            let (tags, after) = tagged.split_once(' ').unwrap_or((tagged, ""));
            rest = after.trim_start_matches(' ');
            Some(tags)
        }
        None => None,
    };
    let source = match rest.strip_prefix(':') {
        Some(sourced) => {
            let (source, after) = sourced.split_once(' ').unwrap_or((sourced, ""));
            rest = after.trim_start_matches(' ');
            Some(source)
        }
        None => None,
    };
    let (verb, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if verb.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(param);
        rest = after;
    }
    Some(Message {
        raw_tags,
        source,
        verb,
        params,
    })
}

impl<'a> Message<'a> {
    /// The tags, keys with their unescaped values (`""` for a tag without
    /// one), in order; a key given twice appears twice.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        self.raw_tags
            .unwrap_or_default()
            .split(';')
            .filter(|tag| !tag.is_empty())
            .map(|tag| {
                let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
                (key, unescape_tag_value(value))
            })
    }

    /// A tag's value; the last one when a key is given twice.
    pub fn tag(&self, key: &str) -> Option<Cow<'a, str>> {
        self.tags()
            .filter(|(name, _)| *name == key)
            .last()
            .map(|(_, value)| value)
    }

    /// The verb in upper case, for matching.
    pub fn command(&self) -> String {
        self.verb.to_ascii_uppercase()
    }
}

/// A tag value as sent (`\:` `\s` `\\` `\r` `\n` escaped) turned back
/// into text. An unknown escape stands for its character; a lone
/// backslash at the end is dropped.
pub fn unescape_tag_value(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Appends `value` escaped for a tag.
pub fn escape_tag_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends one line, CRLF-terminated: `:source VERB p1 p2 :last`. The last
/// parameter is written as a trailing one when it must be (empty, with a
/// space, or starting with `:`) or when `trailing` asks for it (text,
/// which clients expect after a `:`). Parameters other than the last must
/// hold no space, start with no `:` and not be empty: callers pass nicks,
/// channels and numbers there.
pub fn write_line(
    out: &mut String,
    source: Option<&str>,
    verb: &str,
    params: &[&str],
    trailing: bool,
) {
    if let Some(source) = source {
        out.push(':');
        out.push_str(source);
        out.push(' ');
    }
    out.push_str(verb);
    if let Some((last, middle)) = params.split_last() {
        for param in middle {
            out.push(' ');
            out.push_str(param);
        }
        out.push(' ');
        if trailing || last.is_empty() || last.contains(' ') || last.starts_with(':') {
            out.push(':');
        }
        out.push_str(last);
    }
    out.push_str("\r\n");
}

/// An IRC time tag's value, `2026-12-03T06:40:00.123Z`, from
/// milliseconds since the Unix epoch.
pub fn server_time(millis: u64) -> String {
    let time = i64::try_from(millis)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default();
    // Not `format`: its pattern is parsed anew on every call, and this
    // runs once per message.
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch from a time tag's value (RFC 3339,
/// as [`server_time`] writes it).
pub fn parse_server_time(value: &str) -> Option<u64> {
    let time = chrono::DateTime::parse_from_rfc3339(value).ok()?;
    u64::try_from(time.timestamp_millis()).ok()
}

/// The host every member shows in IRC prefixes (`alice!alice@sockchat`):
/// members of every door are alike, and no address is given away.
pub const MEMBER_HOST: &str = "sockchat";

/// A member's IRC prefix, `nick!nick@sockchat`.
pub fn prefix(nick: &str) -> String {
    format!("{nick}!{nick}@{MEMBER_HOST}")
}

/// The IRC channel of a room: `#` and its name.
pub fn channel(room: &str) -> String {
    format!("#{room}")
}

/// An event as IRC relays it to everyone (a message, a join, a part, a
/// quit, a nick change), written once and shared by every IRC recipient,
/// with its tags (`time`, `msgid`) at the front for those that asked for
/// them.
#[derive(Debug, Clone)]
pub struct Relayed {
    line: bytes::Bytes,
    /// `time=...` within `line`, if the event has a time.
    time: std::ops::Range<usize>,
    /// `msgid=...` within `line`, if the event has an id.
    msgid: std::ops::Range<usize>,
    /// Where the line proper starts, after the tags and their space.
    body: usize,
}

impl Relayed {
    /// The event's IRC line, if it is one IRC relays as is.
    pub fn of(event: &ServerEvent) -> Option<Relayed> {
        let mut line = String::new();
        let (time, id) = match event {
            ServerEvent::Message(message) => (Some(message.time), Some(message.id)),
            ServerEvent::Private { time, .. } => (Some(*time), None),
            ServerEvent::Join { .. }
            | ServerEvent::Leave { .. }
            | ServerEvent::Nick { .. }
            | ServerEvent::Kick { .. }
            | ServerEvent::Topic { changed: true, .. }
            | ServerEvent::RoomMode { by: Some(_), .. }
            | ServerEvent::Presence { .. } => (None, None),
            _ => return None,
        };
        let mut time_at = 0..0;
        let mut msgid_at = 0..0;
        if time.is_some() || id.is_some() {
            line.push('@');
            if let Some(time) = time {
                let start = line.len();
                line.push_str("time=");
                line.push_str(&server_time(time));
                time_at = start..line.len();
            }
            if let Some(id) = id {
                if time.is_some() {
                    line.push(';');
                }
                let start = line.len();
                line.push_str("msgid=");
                line.push_str(&id.to_string());
                msgid_at = start..line.len();
            }
            line.push(' ');
        }
        let body = line.len();
        match event {
            ServerEvent::Message(message) => {
                let target = channel(&message.room);
                let style = Style::of(message.action, message.notice);
                privmsg(&mut line, &message.from, &target, &message.text, style);
            }
            ServerEvent::Private {
                from,
                to,
                text,
                notice,
                ..
            } => {
                privmsg(&mut line, from, to, text, Style::of(false, *notice));
            }
            ServerEvent::Join { room, nick } => {
                write_line(
                    &mut line,
                    Some(&prefix(nick)),
                    "JOIN",
                    &[&channel(room)],
                    false,
                );
            }
            ServerEvent::Leave {
                room,
                nick,
                reason,
                detail,
            } => {
                let source = prefix(nick);
                match (reason, detail) {
                    (LeaveReason::Part, None) => {
                        write_line(&mut line, Some(&source), "PART", &[&channel(room)], false)
                    }
                    (LeaveReason::Part, Some(why)) => write_line(
                        &mut line,
                        Some(&source),
                        "PART",
                        &[&channel(room), why],
                        true,
                    ),
                    _ => {
                        let why = quit_reason(*reason, detail.as_deref());
                        write_line(&mut line, Some(&source), "QUIT", &[&why], true);
                    }
                }
            }
            ServerEvent::Nick { old, new } => {
                write_line(&mut line, Some(&prefix(old)), "NICK", &[new], false);
            }
            ServerEvent::Presence { nick, away } => {
                let params: &[&str] = match away {
                    Some(text) => &[text],
                    None => &[],
                };
                write_line(&mut line, Some(&prefix(nick)), "AWAY", params, true);
            }
            ServerEvent::Kick {
                room,
                nick,
                by,
                reason,
            } => {
                let why = reason.as_deref().unwrap_or(by);
                let params = [channel(room), nick.clone(), why.to_string()];
                let params: Vec<&str> = params.iter().map(String::as_str).collect();
                write_line(&mut line, Some(&prefix(by)), "KICK", &params, true);
            }
            ServerEvent::Topic { room, text, by, .. } => {
                let by = by.as_deref().unwrap_or("*");
                let text = text.as_deref().unwrap_or("");
                write_line(
                    &mut line,
                    Some(&prefix(by)),
                    "TOPIC",
                    &[&channel(room), text],
                    true,
                );
            }
            ServerEvent::RoomMode {
                room, modes, by, ..
            } => {
                let by = by.as_deref().unwrap_or("*");
                let mut params = vec![channel(room)];
                params.extend(modes.split(' ').map(str::to_string));
                let params: Vec<&str> = params.iter().map(String::as_str).collect();
                write_line(&mut line, Some(&prefix(by)), "MODE", &params, false);
            }
            _ => unreachable!("matched above"),
        }
        Some(Relayed {
            line: bytes::Bytes::from(line),
            time: time_at,
            msgid: msgid_at,
            body,
        })
    }

    /// Appends the line with the tags the recipient asked for.
    pub fn write(&self, time: bool, msgid: bool, out: &mut bytes::BytesMut) {
        let time = time && !self.time.is_empty();
        let msgid = msgid && !self.msgid.is_empty();
        match (time, msgid) {
            (true, true) => out.extend_from_slice(&self.line),
            (false, false) => out.extend_from_slice(&self.line[self.body..]),
            (true, false) | (false, true) => {
                let tag = if time { &self.time } else { &self.msgid };
                out.extend_from_slice(b"@");
                out.extend_from_slice(&self.line[tag.clone()]);
                out.extend_from_slice(b" ");
                out.extend_from_slice(&self.line[self.body..]);
            }
        }
    }

    /// Appends the line as part of the batch `batch`, with the tags the
    /// recipient asked for after the batch's.
    pub fn write_in_batch(&self, batch: &str, time: bool, msgid: bool, out: &mut bytes::BytesMut) {
        out.extend_from_slice(b"@batch=");
        out.extend_from_slice(batch.as_bytes());
        for (wanted, tag) in [(time, &self.time), (msgid, &self.msgid)] {
            if wanted && !tag.is_empty() {
                out.extend_from_slice(b";");
                out.extend_from_slice(&self.line[tag.clone()]);
            }
        }
        out.extend_from_slice(b" ");
        out.extend_from_slice(&self.line[self.body..]);
    }
}

/// How a message goes out: PRIVMSG, PRIVMSG with CTCP ACTION, or NOTICE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Action,
    Notice,
}

impl Style {
    fn of(action: bool, notice: bool) -> Style {
        match (action, notice) {
            (true, _) => Style::Action,
            (false, true) => Style::Notice,
            (false, false) => Style::Plain,
        }
    }
}

/// `:from PRIVMSG target :text`, an action as CTCP ACTION, a notice as
/// NOTICE.
fn privmsg(out: &mut String, from: &str, target: &str, text: &str, style: Style) {
    let source = prefix(from);
    match style {
        Style::Plain => write_line(out, Some(&source), "PRIVMSG", &[target, text], true),
        Style::Notice => write_line(out, Some(&source), "NOTICE", &[target, text], true),
        Style::Action => {
            let text = format!("\u{1}ACTION {text}\u{1}");
            write_line(out, Some(&source), "PRIVMSG", &[target, &text], true);
        }
    }
}

/// What a QUIT says for a member that left the server.
fn quit_reason(reason: LeaveReason, detail: Option<&str>) -> String {
    match (reason, detail) {
        (LeaveReason::Quit, Some(said)) => format!("Quit: {said}"),
        (LeaveReason::Quit, None) => "Quit".to_string(),
        (LeaveReason::Lost, _) => "Connection lost".to_string(),
        (_, Some(why)) => format!("Disconnected ({why})"),
        (_, None) => "Disconnected".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_are_split_as_rfc_1459_says() {
        let message = parse(":coolguy  foo bar  baz :  asdf quux ").unwrap();
        assert_eq!(message.source, Some("coolguy"));
        assert_eq!(message.verb, "foo");
        assert_eq!(message.params, ["bar", "baz", "  asdf quux "]);
        assert_eq!(parse("foo bar baz :").unwrap().params, ["bar", "baz", ""]);
        assert_eq!(
            parse("foo bar baz ::asdf").unwrap().params,
            ["bar", "baz", ":asdf"]
        );
        assert_eq!(parse(":src AWAY ").unwrap().params, Vec::<&str>::new());
        assert_eq!(parse(""), None);
        assert_eq!(parse("@a=b :src"), None);
    }

    #[test]
    fn tags_are_unescaped_and_the_last_of_a_key_wins() {
        let message = parse(r"@a=b\\and\nk;c=72\s45;d=gh\:764;e;x=1;x=2 foo").unwrap();
        assert_eq!(message.tag("a").as_deref(), Some("b\\and\nk"));
        assert_eq!(message.tag("c").as_deref(), Some("72 45"));
        assert_eq!(message.tag("d").as_deref(), Some("gh;764"));
        assert_eq!(message.tag("e").as_deref(), Some(""));
        assert_eq!(message.tag("x").as_deref(), Some("2"));
        assert_eq!(unescape_tag_value(r"value\1"), "value1");
        assert_eq!(unescape_tag_value(r"value1\"), "value1");
        let mut escaped = String::new();
        escape_tag_value("a; b\\c\r\n", &mut escaped);
        assert_eq!(unescape_tag_value(&escaped), "a; b\\c\r\n");
    }

    #[test]
    fn lines_written_parse_back_to_what_was_written() {
        let mut out = String::new();
        write_line(
            &mut out,
            Some("srv"),
            "PRIVMSG",
            &["#a", ":) hi there"],
            false,
        );
        write_line(&mut out, None, "JOIN", &["#a"], false);
        write_line(&mut out, None, "PRIVMSG", &["#a", "word"], true);
        assert_eq!(
            out,
            ":srv PRIVMSG #a ::) hi there\r\nJOIN #a\r\nPRIVMSG #a :word\r\n"
        );
        let first = out.split("\r\n").next().unwrap();
        assert_eq!(parse(first).unwrap().params, ["#a", ":) hi there"]);
    }

    #[test]
    fn times_are_written_as_ircv3_asks_and_read_back() {
        assert_eq!(server_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(server_time(1_796_280_000_123), "2026-12-03T06:40:00.123Z");
        assert_eq!(server_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for millis in [0, 1_796_280_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_server_time(&server_time(millis)), Some(millis));
        }
        assert_eq!(
            parse_server_time("2026-12-03T06:40:00Z"),
            Some(1_796_280_000_000)
        );
        assert_eq!(parse_server_time("2026-13-03T06:40:00Z"), None);
        assert_eq!(parse_server_time("yesterday"), None);
    }
}
