//! What the IRC door says for itself: the server's identity, the
//! capabilities it offers, and numeric replies.

use std::fmt::Write;

use crate::protocol::irc::write_line;
use crate::protocol::text::{MAX_NICK_CHARS, MAX_ROOM_CHARS};

/// The longest line a client may send, tags aside (RFC 1459's 512 bytes,
/// CR LF included).
pub const MAX_LINE: usize = 512;
/// Room for a client's tags on top of that (IRCv3 message-tags: 4094 bytes
/// of client tags, with the `@` and a space, doubled for the server's).
pub const MAX_TAGS: usize = 8191;

/// The most messages one `CHATHISTORY` answers (ISUPPORT's CHATHISTORY).
pub const MAX_CHATHISTORY: usize = 100;

/// The server as IRC clients see it.
#[derive(Debug, Clone)]
pub struct IrcServer {
    /// The source of the server's own lines (no spaces).
    pub name: String,
    /// ISUPPORT's NETWORK.
    pub network: String,
    pub version: String,
    /// When the server started, for 003.
    pub created: String,
    /// The message of the day, if the operator set one.
    pub motd: Option<String>,
}

impl IrcServer {
    /// The server named `name` (spaces become dashes: a source has none).
    pub fn new(name: &str, motd: Option<String>) -> Self {
        let name: String = name
            .chars()
            .map(|c| if c.is_whitespace() { '-' } else { c })
            .collect();
        IrcServer {
            network: name.clone(),
            name,
            version: format!("sockchat-{}", env!("CARGO_PKG_VERSION")),
            created: chrono::Utc::now()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            motd,
        }
    }

    /// Appends a numeric reply to `nick` (`*` before it has one). The last
    /// parameter is always written as a trailing one, as servers do.
    pub fn numeric(&self, out: &mut String, code: &str, nick: &str, params: &[&str]) {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(nick);
        all.extend_from_slice(params);
        write_line(out, Some(&self.name), code, &all, true);
    }

    /// A line from the server itself that is not a numeric (`PONG`, `CAP`).
    pub fn say(&self, out: &mut String, verb: &str, params: &[&str]) {
        write_line(out, Some(&self.name), verb, params, true);
    }

    /// The burst after registration: 001 to 005, then the MOTD (or 422).
    pub fn welcome(&self, out: &mut String, nick: &str) {
        let welcome = format!("Welcome to the {} IRC network, {nick}", self.network);
        self.numeric(out, "001", nick, &[&welcome]);
        let host = format!(
            "Your host is {}, running version {}",
            self.name, self.version
        );
        self.numeric(out, "002", nick, &[&host]);
        let created = format!("This server was created {}", self.created);
        self.numeric(out, "003", nick, &[&created]);
        // 004: name, version, user modes, channel modes.
        let four = [self.name.as_str(), self.version.as_str(), "i", "nt"];
        write_line(
            out,
            Some(&self.name),
            "004",
            &[&[nick][..], &four[..]].concat(),
            false,
        );
        let tokens = self.isupport();
        let mut tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        tokens.push("are supported by this server");
        self.numeric(out, "005", nick, &tokens);
        self.motd(out, nick);
    }

    /// ISUPPORT's tokens.
    pub fn isupport(&self) -> Vec<String> {
        vec![
            "CASEMAPPING=ascii".to_string(),
            "CHANTYPES=#".to_string(),
            format!("NICKLEN={MAX_NICK_CHARS}"),
            // The `#` and the name.
            format!("CHANNELLEN={}", MAX_ROOM_CHARS + 1),
            "TOPICLEN=390".to_string(),
            "PREFIX=(ov)@+".to_string(),
            // Only the ban list's query is served (an empty list): no
            // keys (k) or limits (l).
            "CHANMODES=b,,,imnst".to_string(),
            format!("NETWORK={}", self.network),
            "UTF8ONLY".to_string(),
            format!("CHATHISTORY={MAX_CHATHISTORY}"),
            "MSGREFTYPES=msgid,timestamp".to_string(),
        ]
    }

    /// The message of the day, or 422 when there is none.
    pub fn motd(&self, out: &mut String, nick: &str) {
        let Some(motd) = &self.motd else {
            self.numeric(out, "422", nick, &["MOTD File is missing"]);
            return;
        };
        let start = format!("- {} Message of the day - ", self.name);
        self.numeric(out, "375", nick, &[&start]);
        for line in motd.lines() {
            self.numeric(out, "372", nick, &[&format!("- {line}")]);
        }
        self.numeric(out, "376", nick, &["End of /MOTD command."]);
    }

    /// `ERROR :reason`, the last line before the server closes.
    pub fn error(&self, out: &mut String, reason: &str) {
        write_line(out, None, "ERROR", &[reason], true);
    }
}

/// The IRCv3 capabilities the door offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    CapNotify,
    EchoMessage,
    MessageTags,
    MultiPrefix,
    ServerTime,
    UserhostInNames,
    Batch,
    ChatHistory,
    AwayNotify,
}

impl Cap {
    pub const ALL: [Cap; 9] = [
        Cap::CapNotify,
        Cap::EchoMessage,
        Cap::MessageTags,
        Cap::MultiPrefix,
        Cap::ServerTime,
        Cap::UserhostInNames,
        Cap::Batch,
        Cap::ChatHistory,
        Cap::AwayNotify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cap::CapNotify => "cap-notify",
            Cap::EchoMessage => "echo-message",
            Cap::MessageTags => "message-tags",
            Cap::MultiPrefix => "multi-prefix",
            Cap::ServerTime => "server-time",
            Cap::UserhostInNames => "userhost-in-names",
            Cap::Batch => "batch",
            Cap::ChatHistory => "draft/chathistory",
            Cap::AwayNotify => "away-notify",
        }
    }

    fn named(name: &str) -> Option<Cap> {
        Cap::ALL.into_iter().find(|cap| cap.name() == name)
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// The capabilities a client has enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps(u32);

impl Caps {
    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Applies a `CAP REQ` list (`cap`, `-cap` to disable): all of it, or
    /// none of it when any name is unknown (the spec's NAK).
    pub fn request(&mut self, list: &str) -> bool {
        let mut next = *self;
        for word in list.split(' ').filter(|word| !word.is_empty()) {
            let (off, name) = match word.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, word),
            };
            let Some(cap) = Cap::named(name) else {
                return false;
            };
            // cap-notify is implied by CAP LS 302 and cannot be turned off.
            if off && cap == Cap::CapNotify {
                return false;
            }
            if off {
                next.0 &= !cap.bit();
            } else {
                next.0 |= cap.bit();
            }
        }
        *self = next;
        true
    }

    /// Turns `cap` on (CAP LS 302 implies cap-notify).
    pub fn enable(&mut self, cap: Cap) {
        self.0 |= cap.bit();
    }

    /// The enabled ones' names, for `CAP LIST`.
    pub fn names(self) -> String {
        let mut out = String::new();
        for cap in Cap::ALL.into_iter().filter(|cap| self.has(*cap)) {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{}", cap.name());
        }
        out
    }
}

/// The names `CAP LS` offers.
pub fn offered() -> String {
    Cap::ALL.map(Cap::name).join(" ")
}

/// Answers a `CAP` subcommand for a client known as `nick` (`*` before
/// registration). Returns whether negotiation is still open afterwards:
/// `LS` and `REQ` open it (registration waits for `END`), `END` closes it.
pub fn cap(
    server: &IrcServer,
    caps: &mut Caps,
    nick: &str,
    params: &[&str],
    out: &mut String,
) -> Option<bool> {
    let sub = params.first().map(|sub| sub.to_ascii_uppercase());
    match sub.as_deref() {
        Some("LS") => {
            if params
                .get(1)
                .and_then(|version| version.parse::<u32>().ok())
                >= Some(302)
            {
                caps.enable(Cap::CapNotify);
            }
            server.say(out, "CAP", &[nick, "LS", &offered()]);
            Some(true)
        }
        Some("LIST") => {
            server.say(out, "CAP", &[nick, "LIST", &caps.names()]);
            None
        }
        Some("REQ") => {
            let list = params.get(1).copied().unwrap_or_default();
            let answer = if caps.request(list) { "ACK" } else { "NAK" };
            server.say(out, "CAP", &[nick, answer, list]);
            Some(true)
        }
        Some("END") => Some(false),
        Some(_) => {
            server.numeric(out, "410", nick, &[params[0], "Invalid CAP command"]);
            None
        }
        None => {
            server.numeric(out, "461", nick, &["CAP", "Not enough parameters"]);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_taken_whole_or_not_at_all() {
        let mut caps = Caps::default();
        assert!(caps.request("server-time echo-message"));
        assert!(caps.has(Cap::ServerTime) && caps.has(Cap::EchoMessage));
        assert!(!caps.request("-echo-message sasl"));
        assert!(caps.has(Cap::EchoMessage), "a NAK changes nothing");
        assert!(caps.request("-echo-message"));
        assert!(!caps.has(Cap::EchoMessage));
        assert_eq!(caps.names(), "server-time");
    }

    #[test]
    fn the_welcome_burst_ends_with_the_motd_or_422() {
        let mut server = IrcServer::new("sock chat", None);
        let mut out = String::new();
        server.welcome(&mut out, "alice");
        let codes: Vec<&str> = out
            .lines()
            .map(|line| line.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(codes, ["001", "002", "003", "004", "005", "422"]);
        assert!(out.starts_with(":sock-chat 001 alice :Welcome"));
        assert!(out.contains(" CHANTYPES=# ") && out.contains(" UTF8ONLY "));
        assert!(out.contains(" CHATHISTORY=100 MSGREFTYPES=msgid,timestamp :are supported"));
        server.motd = Some("be kind\nbe brief".into());
        out.clear();
        server.motd(&mut out, "alice");
        assert!(out.contains(" 372 alice :- be brief\r\n"));
        assert!(out.ends_with(" 376 alice :End of /MOTD command.\r\n"));
    }
}
