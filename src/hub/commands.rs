//! Commands: what each [`ClientCommand`] does to the state.

use super::state::{Handled, PendingQuery, State};
use super::{DoorKind, Flow, HubConfig, MemberId};
use crate::metrics::DoorLabel;
use crate::protocol::text::{is_ephemeral, normalize_room, sanitize};
use crate::protocol::{
    ClientCommand, Departure, ErrorCode, MessageRecord, Outgoing, Point, ServerEvent,
};
use crate::store::writer::{HistoryWriter, Query};
use crate::store::{Range, StoredMessage};
use std::sync::Arc;

/// What a `history` command asks for.
struct HistoryRequest {
    count: Option<usize>,
    room: Option<String>,
    before: Option<Point>,
    after: Option<Point>,
}

/// Longest quit reason relayed to a room, in characters.
const MAX_REASON_CHARS: usize = 200;

/// Messages `/history` replays when no count is given, and at most.
const DEFAULT_HISTORY_REQUEST: usize = 50;
const MAX_HISTORY_REQUEST: usize = 1000;

/// Matches `/search` returns at most (the newest).
const MAX_SEARCH_RESULTS: usize = 50;

const HELP: &str = "\
commands:
  TEXT               say TEXT in the current room (//TEXT says a line starting with /)
  /nick NAME         change your nickname
  /join ROOM         join ROOM (created if needed) and talk there
  /part [ROOM]       leave ROOM (default: the current room)
  /msg NICK TEXT     private message
  /me ACTION         say an action: * you ACTION
  /notice TO TEXT    a notice to #ROOM or NICK (no away reply to it)
  /who [ROOM]        members of a room
  /rooms             rooms with members
  /history [N]       the last N messages of the current room (default 50)
  /search WORDS      past messages of the current room with all the WORDS
  /topic [TEXT]      the current room's topic, or set it
  /whois NICK        who NICK is: door, rooms, away
  /away [TEXT]       mark yourself away, or back
  /invite NICK        let NICK into the current room
  /op NICK, /deop NICK, /kick NICK [REASON], /mode [+imnst|-imnst]
                     for a room's operators (whoever made the room)
  /ping              answered with a pong (a round-trip check)";

/// Help's line for the switch only a connection has (not UDP).
const HELP_JSON: &str = "\n  /json              switch this connection to JSON lines";

const HELP_QUIT: &str = "\n  /quit [REASON]     leave (so do the lines byebye and bye)";

impl State {
    /// Carries out a command. History lookups that need the store come
    /// back as a [`PendingQuery`] for the hub to send to the writer.
    pub(super) fn handle(
        &mut self,
        config: &HubConfig,
        history: Option<&HistoryWriter>,
        id: MemberId,
        command: ClientCommand,
    ) -> Handled {
        let mut handled = Handled {
            flow: Flow::Continue,
            message: None,
            query: None,
            to_publish: false,
            oper: None,
            nick_claim: None,
        };
        if !self.members.contains_key(&id) {
            handled.flow = Flow::Quit;
            return handled;
        }
        if !self.is_announced(id) {
            match &command {
                // Taken before the room hears of the member, which then
                // hears of it by that name, if it was free.
                ClientCommand::Nick { nick } => {
                    let before = self.members[&id].nick.clone();
                    // In a cluster the answer comes later; the member
                    // arrives then (`State::nick_claimed`) or at its grace.
                    handled.nick_claim = self.change_nick(config, id, nick);
                    if self.members[&id].nick != before {
                        self.arrive(config, id);
                    }
                    return handled;
                }
                // Gone before anyone was told it came: nobody is told it
                // left. A join is its own news to the room joined, and
                // leaving the default room before being seen there (a
                // load test's clients do) tells that room nothing.
                ClientCommand::Quit { .. } | ClientCommand::Join { .. } => {}
                ClientCommand::Part { .. } => {}
                _ => self.arrive(config, id),
            }
        }
        match command {
            ClientCommand::Say { text, room } => {
                let said = self.say(config, id, room, &text, Style::Plain);
                self.commit(history, id, said, &mut handled);
            }
            ClientCommand::Me { text, room } => {
                let said = self.say(config, id, room, &text, Style::Action);
                self.commit(history, id, said, &mut handled);
            }
            ClientCommand::Msg { to, text } => {
                self.private_message(config, history, id, &to, &text, Style::Plain);
            }
            ClientCommand::Notice { to, text } => match to.strip_prefix('#') {
                Some(_) => {
                    let said = self.say(config, id, Some(to), &text, Style::Notice);
                    self.commit(history, id, said, &mut handled);
                }
                None => self.private_message(config, history, id, &to, &text, Style::Notice),
            },
            ClientCommand::Nick { nick } => {
                handled.nick_claim = self.change_nick(config, id, &nick)
            }
            ClientCommand::Join { room } => self.join(config, id, &room),
            ClientCommand::Part { room, reason } => {
                self.part(config, id, room.as_deref(), reason.as_deref())
            }
            ClientCommand::Topic { room, text } => {
                self.topic(config, id, room.as_deref(), text.as_deref())
            }
            ClientCommand::Mode { room, change } => {
                self.mode(id, room.as_deref(), change.as_deref())
            }
            ClientCommand::Invite { nick, room } => self.invite(id, &nick, room.as_deref()),
            ClientCommand::Kick { room, nick, reason } => {
                self.kick(config, id, room.as_deref(), &nick, reason.as_deref())
            }
            ClientCommand::Lookup { targets } => self.lookup(id, &targets),
            ClientCommand::Away { text } => self.away(config, id, text.as_deref()),
            ClientCommand::Invisible { on } => self.set_invisible(config, id, on),
            // Checked by `Hub::handle`, off the lock.
            ClientCommand::Oper { name, password } => {
                handled.oper = self.may_guess_oper(config, id, name, password);
            }
            ClientCommand::Unoper => self.set_operator(id, None),
            ClientCommand::Counts => {
                let members = self.counted_members();
                let rooms = self
                    .rooms
                    .values()
                    .filter(|room| !room.members.is_empty())
                    .count();
                self.deliver_event(id, ServerEvent::Counts { members, rooms });
            }
            ClientCommand::Who { room } => self.who(id, room.as_deref()),
            ClientCommand::Rooms => self.list_rooms(id),
            ClientCommand::Ping { token } => self.deliver_event(id, ServerEvent::Pong { token }),
            ClientCommand::Help => {
                let mut text = HELP.to_string();
                if self.members[&id].door != DoorKind::Udp {
                    text.push_str(HELP_JSON);
                }
                text.push_str(HELP_QUIT);
                self.deliver_event(id, ServerEvent::Notice { text })
            }
            ClientCommand::History {
                count,
                room,
                before,
                after,
            } => {
                let request = HistoryRequest {
                    count,
                    room,
                    before,
                    after,
                };
                handled.query = self.history(history.is_some(), id, request);
            }
            ClientCommand::Search { text } => {
                handled.query = self.search(history.is_some(), id, text);
            }
            ClientCommand::Quit { reason } => {
                let nick = self.members[&id].nick.clone();
                self.deliver_event(
                    id,
                    ServerEvent::Bye {
                        reason: format!("goodbye, {nick}"),
                        code: None,
                    },
                );
                let detail = reason
                    .map(|reason| {
                        sanitize(&reason)
                            .chars()
                            .take(MAX_REASON_CHARS)
                            .collect::<String>()
                    })
                    .filter(|reason| !reason.trim().is_empty());
                self.remove_member(config, id, Departure::Quit { reason: detail }, false);
                handled.flow = Flow::Quit;
            }
        }
        handled
    }

    /// Sends a message just said on its way to the room: to the history
    /// writer, which commits it and then hands it to the bus, or (without
    /// history) to the bus once the hub's lock is released, in id order
    /// (see `Hub::publish_unpublished`). In a cluster, to the cluster's log,
    /// which brings it back to be stored and fanned out.
    fn commit(
        &mut self,
        history: Option<&HistoryWriter>,
        id: MemberId,
        said: Option<StoredMessage>,
        handled: &mut Handled,
    ) {
        let Some(message) = said else { return };
        if let Some(cluster) = &self.cluster {
            let ticket = message.record.id;
            if cluster.send(message) {
                handled.message = Some(ticket);
            } else {
                self.outside_senders.remove(&ticket);
                self.metrics.cluster_refused.inc();
                let why = "the cluster link is behind: that message was not sent; try again";
                self.deliver_event(id, ServerEvent::error(ErrorCode::Unavailable, why));
            }
            return;
        }
        handled.message = Some(message.record.id);
        match history.filter(|_| !is_ephemeral(&message.record.room)) {
            // Submitted under the lock, so the writer sees ids in order.
            Some(writer) => writer.submit(message),
            None => {
                self.unpublished.push(message.record);
                handled.to_publish = true;
            }
        }
    }

    /// `/history [N]`: from the store when there is one (anything kept),
    /// else from the ring of recent messages.
    fn history(
        &mut self,
        stored: bool,
        id: MemberId,
        request: HistoryRequest,
    ) -> Option<PendingQuery> {
        let room = self.target_room(id, request.room.as_deref())?;
        let limit = request
            .count
            .unwrap_or(DEFAULT_HISTORY_REQUEST)
            .min(MAX_HISTORY_REQUEST);
        let range = match (request.before, request.after) {
            (Some(point), _) => Range::Before(point),
            (None, Some(point)) => Range::After(point),
            (None, None) => Range::Latest,
        };
        if stored && !is_ephemeral(&room) {
            return Some(PendingQuery {
                member: id,
                room: room.clone(),
                query: Query::Recent {
                    room,
                    // Later messages reach the member live.
                    up_to: self.last_published,
                    range,
                    limit,
                },
            });
        }
        // No store: the ring of recent messages, looked through the same way.
        let recent = self.recent_in(&room);
        let within = |message: &&MessageRecord| match range {
            Range::Latest => true,
            Range::Before(Point::Id(id)) => message.id < id,
            Range::Before(Point::Time(time)) => message.time < time,
            Range::After(Point::Id(id)) => message.id > id,
            Range::After(Point::Time(time)) => message.time > time,
        };
        let mut messages: Vec<MessageRecord> = recent.iter().filter(within).cloned().collect();
        match range {
            Range::After(_) => messages.truncate(limit),
            _ => drop(messages.drain(..messages.len().saturating_sub(limit))),
        }
        self.deliver_event(id, ServerEvent::History { room, messages });
        None
    }

    /// `/search WORDS` in the current room: needs the store.
    fn search(&mut self, stored: bool, id: MemberId, text: String) -> Option<PendingQuery> {
        let room = self.target_room(id, None)?;
        if is_ephemeral(&room) {
            let message = format!("#{room} is ephemeral: nothing said there is stored");
            self.deliver_event(id, ServerEvent::error(ErrorCode::NoHistory, message));
            return None;
        }
        if !stored {
            let message = "search needs history, and this server keeps none (--no-history)";
            self.deliver_event(id, ServerEvent::error(ErrorCode::NoHistory, message));
            return None;
        }
        Some(PendingQuery {
            member: id,
            room: room.clone(),
            query: Query::Search {
                room,
                text,
                limit: MAX_SEARCH_RESULTS,
            },
        })
    }

    /// Resolves the room a command is about: the named one, or the
    /// member's current one. Tells the member why when there is none.
    pub(super) fn target_room(&mut self, id: MemberId, named: Option<&str>) -> Option<String> {
        let room = match named {
            Some(name) => match normalize_room(name) {
                Ok(room) => room,
                Err(why) => {
                    let error = ServerEvent::error_about(ErrorCode::BadRoom, name, why);
                    self.deliver_event(id, error);
                    return None;
                }
            },
            None => match self.members[&id].current.clone() {
                Some(room) => room,
                None => {
                    self.deliver_event(
                        id,
                        ServerEvent::error(ErrorCode::NotInRoom, "you are in no room; /join one"),
                    );
                    return None;
                }
            },
        };
        Some(room)
    }

    /// Says `text` in a room; returns the message, not yet committed.
    fn say(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        room: Option<String>,
        text: &str,
        style: Style,
    ) -> Option<StoredMessage> {
        let room = self.target_room(id, room.as_deref())?;
        let inside = self.members[&id].rooms.contains(&room);
        let server_operator = self.members[&id].operator;
        let state = self.rooms.get(&room);
        // A room open to messages from outside (IRC's -n) takes them.
        let outside = !inside && state.is_some_and(|state| state.external);
        if state.is_some_and(|state| {
            state.moderated
                && !server_operator
                && !state.ops.contains(&id)
                && !state.voiced.contains(&id)
        }) {
            let why = format!("#{room} is moderated: only its operators and voiced members talk");
            self.deliver_event(
                id,
                ServerEvent::error_about(ErrorCode::Moderated, &room, why),
            );
            return None;
        }
        if !inside && !outside {
            self.deliver_event(
                id,
                ServerEvent::error_about(
                    ErrorCode::NotInRoom,
                    &room,
                    format!("you are not in #{room}; /join it first"),
                ),
            );
            return None;
        }
        let text = config.filter.apply(&sanitize(text)).into_owned();
        if text.trim().is_empty() {
            return None;
        }
        let record = MessageRecord {
            id: self.message_ids.next_id(),
            room: room.clone(),
            from: self.members[&id].nick.clone(),
            text,
            time: config.clock.now_millis(),
            action: style == Style::Action,
            notice: style == Style::Notice,
            ticket: None,
        };
        let door = self.members[&id].door.name();
        self.metrics
            .messages_in
            .get_or_create(&DoorLabel { door })
            .inc();
        tracing::debug!(room = %record.room, "message");
        if outside {
            // Echoed to the sender when published, as the room hears it.
            self.outside_senders.insert(record.id, id);
        }
        // Flow control: a room whose readers are behind slows its talkers.
        self.hold_if_congested(id, &room);
        Some(StoredMessage {
            record,
            door,
            to: None,
        })
    }

    fn private_message(
        &mut self,
        config: &HubConfig,
        history: Option<&HistoryWriter>,
        id: MemberId,
        to: &str,
        text: &str,
        style: Style,
    ) {
        let notice = style == Style::Notice;
        let Some(target) = self.find_nick(to) else {
            if let Some(remote) = self.remote_by_nick(to) {
                self.private_to_remote(config, id, remote, text, notice);
                return;
            }
            self.deliver_event(
                id,
                ServerEvent::error_about(ErrorCode::NoSuchNick, to, format!("no such nick: {to}")),
            );
            return;
        };
        let text = self.private_text(config, id, text);
        let (from, to, time) = (
            self.members[&id].nick.clone(),
            self.members[&target].nick.clone(),
            config.clock.now_millis(),
        );
        if let (Some(writer), true) = (history, config.store_private) {
            // Kept, but not waited for: only room messages promise that.
            writer.submit(StoredMessage {
                record: MessageRecord {
                    id: self.message_ids.next_id(),
                    room: String::new(),
                    from: from.clone(),
                    text: text.clone(),
                    time,
                    action: false,
                    notice,
                    ticket: None,
                },
                door: self.members[&id].door.name(),
                to: Some(to.clone()),
            });
        }
        let event = Arc::new(Outgoing::new(ServerEvent::Private {
            from,
            to,
            text,
            time,
            notice,
        }));
        self.deliver(target, event.clone());
        if target != id {
            self.deliver(id, event);
        }
        // Told after the echo, as IRC's 301 is; never about a notice,
        // which nothing answers by itself.
        if let (Some(away), false) = (self.members[&target].away.clone(), notice) {
            let nick = self.members[&target].nick.clone();
            self.deliver_event(
                id,
                ServerEvent::Away {
                    nick,
                    text: Some(away),
                },
            );
        }
        self.hold_if_target_congested(id, target);
    }
}

impl State {
    /// A private message's text as its recipient sees it, counted as a
    /// message in from the sender's door.
    fn private_text(&self, config: &HubConfig, id: MemberId, text: &str) -> String {
        let door = self.members[&id].door.name();
        self.metrics
            .messages_in
            .get_or_create(&DoorLabel { door })
            .inc();
        config.filter.apply(&sanitize(text)).into_owned()
    }

    /// Another node's member with the nick `nick`, if there is one (none
    /// without a cluster: the directory is empty).
    pub(super) fn remote_by_nick(&self, nick: &str) -> Option<super::cluster::RemoteMember> {
        let key = crate::protocol::text::nick_key(nick);
        self.remote.get(&key).cloned()
    }

    /// A private message to another node's member: sent there through the
    /// cluster, echoed here. Not stored (`--store-private` is not served
    /// in a cluster yet).
    fn private_to_remote(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        target: super::cluster::RemoteMember,
        text: &str,
        notice: bool,
    ) {
        let text = self.private_text(config, id, text);
        let event = ServerEvent::Private {
            from: self.members[&id].nick.clone(),
            to: target.presence.nick.clone(),
            text,
            time: config.clock.now_millis(),
            notice,
        };
        if let Some(cluster) = &self.cluster {
            cluster.ask(super::cluster::ClusterRequest::Deliver {
                origin: target.origin.clone(),
                member: target.member,
                event: event.clone(),
            });
        }
        self.deliver_event(id, event);
        if let (Some(away), false) = (target.presence.away, notice) {
            let nick = target.presence.nick;
            let away = ServerEvent::Away {
                nick,
                text: Some(away),
            };
            self.deliver_event(id, away);
        }
    }
}

/// How a message is said: plainly, as a `/me` action, or as a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Action,
    Notice,
}
