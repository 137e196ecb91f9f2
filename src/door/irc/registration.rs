//! Registration, sans-IO: the lines an IRC client sends before it is a
//! member (`CAP`, `PASS`, `NICK`, `USER`, `PING`), and the answers. The
//! door feeds it lines and writes what it appends; once [`Step::Ready`],
//! the door asks the hub for the nick, and the client is a member.

use super::replies::{cap, Caps, IrcServer};
use crate::hub::{Name, NickRefusal};
use crate::protocol::irc::Message;

/// Where registration stands after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Waiting for more.
    Continue,
    /// `NICK` and `USER` are in and capability negotiation is over.
    Ready,
    /// The client quit (or was refused): close after what was written.
    Quit,
}

/// One client's registration.
#[derive(Debug, Default)]
pub struct Registration {
    nick: Option<String>,
    user: Option<(String, String)>,
    caps: Caps,
    /// Between `CAP LS`/`REQ` and `CAP END`, registration waits.
    negotiating: bool,
}

impl Registration {
    pub fn new() -> Self {
        Registration::default()
    }

    /// Handles one line; answers are appended to `out`. `check_nick` says
    /// whether a nick could be had now.
    pub fn handle(
        &mut self,
        server: &IrcServer,
        message: &Message<'_>,
        check_nick: &dyn Fn(&str) -> Result<(), NickRefusal>,
        out: &mut String,
    ) -> Step {
        let me = self.nick.clone().unwrap_or_else(|| "*".to_string());
        let params = &message.params;
        match message.command().as_str() {
            "CAP" => {
                if let Some(open) = cap(server, &mut self.caps, &me, params, out) {
                    self.negotiating = open;
                }
            }
            // No server password: whatever is given is accepted.
            "PASS" if params.is_empty() => {
                server.numeric(out, "461", &me, &["PASS", "Not enough parameters"]);
            }
            "PASS" => {}
            "NICK" => match params.first().filter(|nick| !nick.is_empty()) {
                None => server.numeric(out, "431", &me, &["No nickname given"]),
                Some(nick) => match check_nick(nick) {
                    Ok(()) => self.nick = Some(nick.to_string()),
                    Err(refusal) => nick_refused(server, out, &me, nick, &refusal),
                },
            },
            "USER" if params.len() < 4 || params[0].is_empty() || params[3].is_empty() => {
                server.numeric(out, "461", &me, &["USER", "Not enough parameters"]);
            }
            "USER" => self.user = Some((params[0].to_string(), params[3].to_string())),
            "PING" => match params.first() {
                Some(token) => server.say(out, "PONG", &[&server.name, token]),
                None => server.numeric(out, "409", &me, &["No origin specified"]),
            },
            "PONG" => {}
            "QUIT" => {
                server.error(out, "Closing Link: goodbye");
                return Step::Quit;
            }
            _ => server.numeric(out, "451", &me, &["You have not registered"]),
        }
        self.step()
    }

    fn step(&self) -> Step {
        if self.nick.is_some() && self.user.is_some() && !self.negotiating {
            Step::Ready
        } else {
            Step::Continue
        }
    }

    /// The nick was lost in a race (someone took it since `NICK`): the
    /// client is told, and must send another.
    pub fn nick_lost(&mut self, server: &IrcServer, refusal: &NickRefusal, out: &mut String) {
        if let Some(nick) = self.nick.take() {
            nick_refused(server, out, "*", &nick, refusal);
        }
    }

    /// Who the client says it is, once `NICK` and `USER` are in.
    pub fn name(&self) -> Option<Name> {
        let (user, realname) = self.user.clone()?;
        Some(Name {
            nick: self.nick.clone()?,
            user,
            realname,
        })
    }

    /// The capabilities the client enabled.
    pub fn caps(&self) -> Caps {
        self.caps
    }
}

/// 432 (not a nick) or 433 (taken).
pub fn nick_refused(
    server: &IrcServer,
    out: &mut String,
    me: &str,
    nick: &str,
    refusal: &NickRefusal,
) {
    match refusal {
        NickRefusal::Invalid(why) => server.numeric(out, "432", me, &[nick, why]),
        NickRefusal::Taken => server.numeric(out, "433", me, &[nick, "Nickname is already in use"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::irc::parse;

    fn feed(registration: &mut Registration, lines: &[&str], taken: &[&str]) -> (Step, String) {
        let server = IrcServer::new("test", None);
        let check = |nick: &str| {
            if taken.contains(&nick) {
                Err(NickRefusal::Taken)
            } else {
                crate::protocol::text::validate_nick(nick).map_err(NickRefusal::Invalid)
            }
        };
        let mut out = String::new();
        let mut step = Step::Continue;
        for line in lines {
            step = registration.handle(&server, &parse(line).unwrap(), &check, &mut out);
        }
        (step, out)
    }

    #[test]
    fn nick_and_user_register_and_cap_negotiation_holds_it_until_end() {
        let mut registration = Registration::new();
        let (step, out) = feed(
            &mut registration,
            &["CAP LS 302", "NICK alice", "USER a 0 * :Alice A"],
            &[],
        );
        assert_eq!(step, Step::Continue);
        assert!(out.starts_with(":test CAP * LS :cap-notify echo-message"));
        let (step, out) = feed(&mut registration, &["CAP REQ :server-time", "CAP END"], &[]);
        assert_eq!(step, Step::Ready);
        assert_eq!(out, ":test CAP alice ACK :server-time\r\n");
        assert_eq!(registration.name().unwrap().realname, "Alice A");
        assert!(registration
            .caps()
            .has(super::super::replies::Cap::ServerTime));
    }

    #[test]
    fn a_taken_or_bad_nick_is_refused_and_another_may_follow() {
        let mut registration = Registration::new();
        let (step, out) = feed(
            &mut registration,
            &[
                "NICK bob",
                "NICK #x",
                "USER b 0 * :B",
                "PING :t1",
                "JOIN #a",
            ],
            &["bob"],
        );
        assert_eq!(step, Step::Continue);
        let codes: Vec<&str> = out.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(codes, ["433", "432", "PONG", "451"]);
        assert!(out.contains(":test PONG test :t1\r\n"));
        let (step, _) = feed(&mut registration, &["NICK bob_"], &["bob"]);
        assert_eq!(step, Step::Ready);
    }

    #[test]
    fn missing_parameters_get_461_and_quit_ends_it() {
        let mut registration = Registration::new();
        let (_, out) = feed(&mut registration, &["USER a", "NICK"], &[]);
        assert!(out.contains(" 461 * USER :Not enough parameters\r\n"));
        assert!(out.contains(" 431 * :No nickname given\r\n"));
        let (step, out) = feed(&mut registration, &["QUIT :bye"], &[]);
        assert_eq!(step, Step::Quit);
        assert!(out.starts_with("ERROR :"));
    }
}
