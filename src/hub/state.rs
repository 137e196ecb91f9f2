//! The hub's state and the rules that change it. Everything here runs under
//! the hub's lock, so nothing here awaits or does I/O.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::{Door, Flow, HubConfig, MemberId, Refusal, Session, CONSOLE_NICK};
use crate::metrics::{DoorLabel, Metrics};
use crate::protocol::text::{nick_key, normalize_room, sanitize, validate_nick};
use crate::protocol::{
    ClientCommand, ErrorCode, LeaveReason, MessageRecord, Outgoing, RoomInfo, ServerEvent,
};
use crate::store::writer::{HistoryWriter, Query};
use crate::store::StoredMessage;

/// Longest quit reason relayed to a room, in characters.
const MAX_REASON_CHARS: usize = 200;

/// Messages `/history` replays when no count is given, and at most.
const DEFAULT_HISTORY_REQUEST: usize = 50;
const MAX_HISTORY_REQUEST: usize = 1000;

/// Matches `/search` returns at most (the newest).
const MAX_SEARCH_RESULTS: usize = 50;

/// What a command did, for the hub.
#[derive(Debug)]
pub(super) struct Handled {
    pub flow: Flow,
    /// The id of the room message it said, if any.
    pub message: Option<u64>,
    /// A lookup for the history writer to run.
    pub query: Option<PendingQuery>,
}

/// A history lookup whose answer goes to `member`.
#[derive(Debug)]
pub(super) struct PendingQuery {
    pub member: MemberId,
    pub room: String,
    pub query: Query,
}

/// The console's outbox: the operator's terminal may pause, and the console
/// is never dropped, so it gets more room than a member.
const CONSOLE_OUTBOX: usize = 4096;

/// The bound used when `--outbox 0` turns the limit off: tokio channels
/// need one, and this one is never reached before memory runs out.
const UNLIMITED_OUTBOX: usize = usize::MAX >> 4;

const HELP: &str = "\
commands:
  TEXT               say TEXT in the current room (//TEXT says a line starting with /)
  /nick NAME         change your nickname
  /join ROOM         join ROOM (created if needed) and talk there
  /part [ROOM]       leave ROOM (default: the current room)
  /msg NICK TEXT     private message
  /me ACTION         say an action: * you ACTION
  /who [ROOM]        members of a room
  /rooms             rooms with members
  /history [N]       the last N messages of the current room (default 50)
  /search WORDS      past messages of the current room with all the WORDS
  /ping              answered with a pong (a round-trip check)
  /json              switch this connection to JSON lines
  /quit [REASON]     leave (so do the lines byebye and bye)";

#[derive(Debug)]
struct Member {
    nick: String,
    door: Door,
    ip: Option<IpAddr>,
    /// Joined rooms, in the order joined.
    rooms: Vec<String>,
    /// Where plain text goes.
    current: Option<String>,
    outbox: mpsc::Sender<Arc<Outgoing>>,
    dropped: Option<oneshot::Sender<String>>,
}

#[derive(Debug, Default)]
struct Room {
    /// In the order they joined.
    members: Vec<MemberId>,
}

#[derive(Debug)]
pub(super) struct State {
    /// Looked up once per recipient in every fan-out. Ids are the hub's own
    /// counter, not client input, so a fast hash without HashDoS
    /// resistance is safe here (names, which clients choose, keep SipHash).
    members: HashMap<MemberId, Member, foldhash::fast::RandomState>,
    /// Nickname key (see `nick_key`) to member.
    nicks: HashMap<String, MemberId>,
    rooms: HashMap<String, Room>,
    /// The latest messages of each room that has any, oldest first,
    /// replayed on join. Kept apart from `rooms` so an empty room's past
    /// survives until someone comes back.
    recent: HashMap<String, VecDeque<MessageRecord>>,
    /// The highest message id fanned out so far.
    last_published: u64,
    per_ip: HashMap<IpAddr, usize>,
    counted: usize,
    next_member: u64,
    next_guest: u64,
    next_message: u64,
    /// Members whose outbox overflowed or closed during the current call;
    /// removed by `settle` once the fan-out that found them is done.
    overflowed: Vec<(MemberId, LeaveReason)>,
    /// Set at shutdown: no one new gets in.
    closed: bool,
    metrics: Arc<Metrics>,
}

impl State {
    /// A state whose message ids continue after `last_id`, with `recent`
    /// (oldest first, any rooms) as the rooms' past.
    pub(super) fn new(
        config: &HubConfig,
        metrics: Arc<Metrics>,
        last_id: u64,
        recent: Vec<MessageRecord>,
    ) -> Self {
        let mut rooms = HashMap::new();
        rooms.insert(config.default_room.clone(), Room::default());
        let mut state = State {
            members: HashMap::default(),
            nicks: HashMap::new(),
            rooms,
            recent: HashMap::new(),
            last_published: last_id,
            per_ip: HashMap::new(),
            counted: 0,
            next_member: 1,
            next_guest: 1,
            next_message: last_id + 1,
            overflowed: Vec::new(),
            closed: false,
            metrics,
        };
        for record in recent {
            state.remember(config, record);
        }
        state
    }

    /// Adds a message to its room's ring of recent messages.
    fn remember(&mut self, config: &HubConfig, record: MessageRecord) {
        if config.history_len == 0 {
            return;
        }
        let ring = self.recent.entry(record.room.clone()).or_default();
        if ring.len() == config.history_len {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    fn recent_in(&self, room: &str) -> Vec<MessageRecord> {
        self.recent
            .get(room)
            .map_or_else(Vec::new, |ring| ring.iter().cloned().collect())
    }

    /// Fans a message out to its room (after it is on disk, when history
    /// is kept) and remembers it for newcomers.
    pub(super) fn publish(&mut self, config: &HubConfig, record: MessageRecord) {
        self.last_published = self.last_published.max(record.id);
        self.remember(config, record.clone());
        let room = record.room.clone();
        self.broadcast(&room, ServerEvent::Message(record));
    }

    /// Tells every member something.
    pub(super) fn announce(&mut self, text: &str) {
        let event = Arc::new(Outgoing::new(ServerEvent::Notice {
            text: text.to_string(),
        }));
        let ids: Vec<MemberId> = self.members.keys().copied().collect();
        for id in ids {
            self.deliver(id, event.clone());
        }
    }

    pub(super) fn counted_members(&self) -> usize {
        self.counted
    }

    pub(super) fn nick_of(&self, id: MemberId) -> Option<String> {
        self.members.get(&id).map(|member| member.nick.clone())
    }

    pub(super) fn find_nick(&self, nick: &str) -> Option<MemberId> {
        self.nicks.get(&nick_key(nick)).copied()
    }

    /// Checks the connection limits for a newcomer from `ip`.
    pub(super) fn admit(&self, config: &HubConfig, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let refusal = if self.closed {
            Refusal::ShuttingDown
        } else if config.max_clients > 0 && self.counted >= config.max_clients {
            Refusal::ServerFull(self.counted)
        } else {
            let from_ip = ip.map_or(0, |ip| self.per_ip.get(&ip).copied().unwrap_or(0));
            if config.max_per_ip > 0 && from_ip >= config.max_per_ip {
                Refusal::TooManyFromAddress(config.max_per_ip)
            } else {
                return Ok(());
            }
        };
        self.metrics.drop_for(match refusal {
            Refusal::ShuttingDown => "shutting_down",
            Refusal::ServerFull(_) => "server_full",
            Refusal::TooManyFromAddress(_) => "too_many_from_address",
        });
        Err(refusal)
    }

    pub(super) fn add_member(
        &mut self,
        config: &HubConfig,
        door: Door,
        ip: Option<IpAddr>,
        nick: Option<&str>,
    ) -> Session {
        let id = MemberId(self.next_member);
        self.next_member += 1;
        let nick = match nick {
            Some(nick) => nick.to_string(),
            None => self.fresh_guest_nick(),
        };
        let capacity = match (door, config.outbox) {
            (Door::Console, _) => CONSOLE_OUTBOX,
            (_, 0) => UNLIMITED_OUTBOX,
            (_, limit) => limit,
        };
        let (outbox, outbox_rx) = mpsc::channel(capacity);
        let (dropped, dropped_rx) = oneshot::channel();
        if door != Door::Console {
            self.counted += 1;
            if let Some(ip) = ip {
                *self.per_ip.entry(ip).or_default() += 1;
            }
        }
        self.nicks.insert(nick_key(&nick), id);
        self.metrics
            .connections
            .get_or_create(&DoorLabel { door: door.name() })
            .inc();
        let room = config.default_room.clone();
        self.members.insert(
            id,
            Member {
                nick: nick.clone(),
                door,
                ip,
                rooms: vec![room.clone()],
                current: Some(room.clone()),
                outbox,
                dropped: Some(dropped),
            },
        );
        let room_state = self.rooms.entry(room.clone()).or_default();
        room_state.members.push(id);
        let big = is_big(config, room_state.members.len());
        self.welcome(config, id);
        if !big {
            self.broadcast_except(
                &room,
                id,
                ServerEvent::Join {
                    room: room.clone(),
                    nick: nick.clone(),
                },
            );
        }
        tracing::info!(?door, ?ip, %nick, "member connected");
        Session {
            id,
            nick,
            outbox: outbox_rx,
            dropped: dropped_rx,
        }
    }

    fn fresh_guest_nick(&mut self) -> String {
        loop {
            let nick = format!("guest-{}", self.next_guest);
            self.next_guest += 1;
            if !self.nicks.contains_key(&nick_key(&nick)) {
                return nick;
            }
        }
    }

    /// Tells the member who and where it is (its nick, its current room
    /// and who is in it, just the count in a big room), then the room's
    /// recent messages.
    pub(super) fn welcome(&mut self, config: &HubConfig, id: MemberId) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let nick = member.nick.clone();
        let room = member.current.clone().unwrap_or_default();
        let count = self.room_size(&room);
        let members = if is_big(config, count) {
            Vec::new()
        } else {
            self.nicks_in(&room)
        };
        let history = self.recent_in(&room);
        self.deliver_event(
            id,
            ServerEvent::Welcome {
                server: config.server_name.clone(),
                nick,
                room: room.clone(),
                members,
                count,
            },
        );
        if !history.is_empty() {
            let messages = history;
            self.deliver_event(id, ServerEvent::History { room, messages });
        }
    }

    fn room_size(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |room| room.members.len())
    }

    fn nicks_in(&self, room: &str) -> Vec<String> {
        self.rooms.get(room).map_or_else(Vec::new, |room| {
            room.members
                .iter()
                .filter_map(|id| self.members.get(id).map(|member| member.nick.clone()))
                .collect()
        })
    }

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
        };
        if !self.members.contains_key(&id) {
            handled.flow = Flow::Quit;
            return handled;
        }
        match command {
            ClientCommand::Say { text, room } => {
                handled.message = self.say(config, history, id, room, &text, false);
            }
            ClientCommand::Me { text, room } => {
                handled.message = self.say(config, history, id, room, &text, true);
            }
            ClientCommand::Msg { to, text } => {
                self.private_message(config, history, id, &to, &text);
            }
            ClientCommand::Nick { nick } => self.change_nick(id, &nick),
            ClientCommand::Join { room } => self.join(config, id, &room),
            ClientCommand::Part { room } => self.part(config, id, room.as_deref()),
            ClientCommand::Who { room } => self.who(id, room.as_deref()),
            ClientCommand::Rooms => self.list_rooms(id),
            ClientCommand::Ping { token } => self.deliver_event(id, ServerEvent::Pong { token }),
            ClientCommand::Help => {
                self.deliver_event(id, ServerEvent::Notice { text: HELP.into() })
            }
            ClientCommand::History { count } => {
                handled.query = self.history(history.is_some(), id, count);
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
                self.remove_member(config, id, LeaveReason::Quit, detail, None);
                handled.flow = Flow::Quit;
            }
            // The door switches modes; there is nothing for the hub to do.
            ClientCommand::Mode { .. } => {}
        }
        handled
    }

    /// `/history [N]`: from the store when there is one (anything kept),
    /// else from the ring of recent messages.
    fn history(
        &mut self,
        stored: bool,
        id: MemberId,
        count: Option<usize>,
    ) -> Option<PendingQuery> {
        let room = self.target_room(id, None)?;
        let limit = count
            .unwrap_or(DEFAULT_HISTORY_REQUEST)
            .min(MAX_HISTORY_REQUEST);
        if stored {
            return Some(PendingQuery {
                member: id,
                room: room.clone(),
                query: Query::Recent {
                    room,
                    // Later messages reach the member live.
                    up_to: self.last_published,
                    limit,
                },
            });
        }
        let mut messages = self.recent_in(&room);
        messages.drain(..messages.len().saturating_sub(limit));
        self.deliver_event(id, ServerEvent::History { room, messages });
        None
    }

    /// `/search WORDS` in the current room: needs the store.
    fn search(&mut self, stored: bool, id: MemberId, text: String) -> Option<PendingQuery> {
        let room = self.target_room(id, None)?;
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
    fn target_room(&mut self, id: MemberId, named: Option<&str>) -> Option<String> {
        let room = match named {
            Some(name) => match normalize_room(name) {
                Ok(room) => room,
                Err(why) => {
                    self.deliver_event(id, ServerEvent::error(ErrorCode::BadRoom, why));
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

    /// Says `text` in a room; returns the message's id.
    fn say(
        &mut self,
        config: &HubConfig,
        history: Option<&HistoryWriter>,
        id: MemberId,
        room: Option<String>,
        text: &str,
        action: bool,
    ) -> Option<u64> {
        let room = self.target_room(id, room.as_deref())?;
        if !self.members[&id].rooms.contains(&room) {
            self.deliver_event(
                id,
                ServerEvent::error(
                    ErrorCode::NotInRoom,
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
            id: self.next_message,
            room: room.clone(),
            from: self.members[&id].nick.clone(),
            text,
            time: now_millis(),
            action,
        };
        self.next_message += 1;
        let door = self.members[&id].door.name();
        self.metrics
            .messages_in
            .get_or_create(&DoorLabel { door })
            .inc();
        tracing::debug!(room = %record.room, from = %record.from, "message");
        let message_id = record.id;
        match history {
            // Fanned out by the writer once committed.
            Some(writer) => writer.submit(StoredMessage {
                record,
                door,
                to: None,
            }),
            None => self.publish(config, record),
        }
        Some(message_id)
    }

    fn private_message(
        &mut self,
        config: &HubConfig,
        history: Option<&HistoryWriter>,
        id: MemberId,
        to: &str,
        text: &str,
    ) {
        let Some(target) = self.find_nick(to) else {
            self.deliver_event(
                id,
                ServerEvent::error(ErrorCode::NoSuchNick, format!("no such nick: {to}")),
            );
            return;
        };
        let text = config.filter.apply(&sanitize(text)).into_owned();
        let door = self.members[&id].door.name();
        self.metrics
            .messages_in
            .get_or_create(&DoorLabel { door })
            .inc();
        let (from, to, time) = (
            self.members[&id].nick.clone(),
            self.members[&target].nick.clone(),
            now_millis(),
        );
        if let (Some(writer), true) = (history, config.store_private) {
            // Kept, but not waited for: only room messages promise that.
            writer.submit(StoredMessage {
                record: MessageRecord {
                    id: self.next_message,
                    room: String::new(),
                    from: from.clone(),
                    text: text.clone(),
                    time,
                    action: false,
                },
                door: self.members[&id].door.name(),
                to: Some(to.clone()),
            });
            self.next_message += 1;
        }
        let event = Arc::new(Outgoing::new(ServerEvent::Private {
            from,
            to,
            text,
            time,
        }));
        self.deliver(target, event.clone());
        if target != id {
            self.deliver(id, event);
        }
    }

    fn change_nick(&mut self, id: MemberId, nick: &str) {
        if let Err(why) = validate_nick(nick) {
            self.deliver_event(id, ServerEvent::error(ErrorCode::BadNick, why));
            return;
        }
        let key = nick_key(nick);
        let taken = match self.nicks.get(&key) {
            Some(owner) => *owner != id,
            None => key == nick_key(CONSOLE_NICK),
        };
        if taken {
            self.deliver_event(
                id,
                ServerEvent::error(ErrorCode::NickInUse, format!("nickname {nick} is taken")),
            );
            return;
        }
        let member = self.members.get_mut(&id).expect("checked by handle");
        let old = std::mem::replace(&mut member.nick, nick.to_string());
        self.nicks.remove(&nick_key(&old));
        self.nicks.insert(key, id);
        tracing::info!(%old, new = %nick, "nick change");
        // Everyone who shares a room with the member hears of it, once.
        let mut audience = vec![id];
        for room in &self.members[&id].rooms {
            audience.extend(&self.rooms[room].members);
        }
        audience.sort_unstable();
        audience.dedup();
        let event = Arc::new(Outgoing::new(ServerEvent::Nick {
            old,
            new: nick.to_string(),
        }));
        for member in audience {
            self.deliver(member, event.clone());
        }
    }

    fn join(&mut self, config: &HubConfig, id: MemberId, name: &str) {
        let room = match normalize_room(name) {
            Ok(room) => room,
            Err(why) => {
                self.deliver_event(id, ServerEvent::error(ErrorCode::BadRoom, why));
                return;
            }
        };
        let member = self.members.get_mut(&id).expect("checked by handle");
        member.current = Some(room.clone());
        if member.rooms.contains(&room) {
            self.deliver_event(
                id,
                ServerEvent::Notice {
                    text: format!("now talking in #{room}"),
                },
            );
            return;
        }
        member.rooms.push(room.clone());
        let nick = member.nick.clone();
        let room_state = self.rooms.entry(room.clone()).or_default();
        room_state.members.push(id);
        let count = room_state.members.len();
        let big = is_big(config, count);
        let joined = ServerEvent::Join {
            room: room.clone(),
            nick,
        };
        if big {
            // Only the joiner hears it, as its confirmation.
            self.deliver_event(id, joined);
        } else {
            self.broadcast(&room, joined);
        }
        let nicks = if big {
            Vec::new()
        } else {
            self.nicks_in(&room)
        };
        self.deliver_event(
            id,
            ServerEvent::Members {
                room: room.clone(),
                nicks,
                count,
            },
        );
        let history = self.recent_in(&room);
        if !history.is_empty() {
            self.deliver_event(
                id,
                ServerEvent::History {
                    room,
                    messages: history,
                },
            );
        }
    }

    fn part(&mut self, config: &HubConfig, id: MemberId, named: Option<&str>) {
        let Some(room) = self.target_room(id, named) else {
            return;
        };
        if !self.members[&id].rooms.contains(&room) {
            self.deliver_event(
                id,
                ServerEvent::error(ErrorCode::NotInRoom, format!("you are not in #{room}")),
            );
            return;
        }
        let nick = self.members[&id].nick.clone();
        let left = ServerEvent::Leave {
            room: room.clone(),
            nick,
            reason: LeaveReason::Part,
            detail: None,
        };
        // The member hears its own leave, then is taken out.
        if is_big(config, self.room_size(&room)) {
            self.deliver_event(id, left);
        } else {
            self.broadcast(&room, left);
        }
        self.leave_room(config, id, &room);
        let member = self.members.get_mut(&id).expect("checked by handle");
        if member.current.as_deref() == Some(room.as_str()) {
            member.current = member.rooms.last().cloned();
        }
    }

    /// Takes a member out of a room's member list (and the room out of the
    /// member's), deleting the room when it empties (the default room stays).
    fn leave_room(&mut self, config: &HubConfig, id: MemberId, room: &str) {
        if let Some(member) = self.members.get_mut(&id) {
            member.rooms.retain(|joined| joined != room);
        }
        if let Some(room_state) = self.rooms.get_mut(room) {
            room_state.members.retain(|member| *member != id);
            if room_state.members.is_empty() && room != config.default_room {
                self.rooms.remove(room);
            }
        }
    }

    fn who(&mut self, id: MemberId, named: Option<&str>) {
        let Some(room) = self.target_room(id, named) else {
            return;
        };
        if !self.rooms.contains_key(&room) {
            self.deliver_event(
                id,
                ServerEvent::error(ErrorCode::BadRoom, format!("no such room: #{room}")),
            );
            return;
        }
        let nicks = self.nicks_in(&room);
        let count = nicks.len();
        self.deliver_event(id, ServerEvent::Members { room, nicks, count });
    }

    fn list_rooms(&mut self, id: MemberId) {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .iter()
            .filter(|(_, room)| !room.members.is_empty())
            .map(|(name, room)| RoomInfo {
                name: name.clone(),
                members: room.members.len(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        self.deliver_event(id, ServerEvent::Rooms { rooms });
    }

    /// Removes a member from the hub and tells its rooms. `told`, when set,
    /// is sent on the member's `dropped` channel so its door closes.
    pub(super) fn remove_member(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        reason: LeaveReason,
        detail: Option<String>,
        told: Option<String>,
    ) {
        let Some(mut member) = self.members.remove(&id) else {
            return;
        };
        self.nicks.remove(&nick_key(&member.nick));
        self.metrics
            .connections
            .get_or_create(&DoorLabel {
                door: member.door.name(),
            })
            .dec();
        match reason {
            LeaveReason::Lost => self.metrics.drop_for("lost"),
            LeaveReason::Dropped => self.metrics.drop_for(drop_label(detail.as_deref())),
            LeaveReason::Part | LeaveReason::Quit => {}
        }
        if member.door != Door::Console {
            self.counted -= 1;
            if let Some(ip) = member.ip {
                if let Some(count) = self.per_ip.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_ip.remove(&ip);
                    }
                }
            }
        }
        tracing::info!(nick = %member.nick, ?reason, detail = detail.as_deref().unwrap_or(""), "member left");
        for room in std::mem::take(&mut member.rooms) {
            let was_big = is_big(config, self.room_size(&room));
            self.leave_room(config, id, &room);
            if was_big {
                continue;
            }
            self.broadcast(
                &room,
                ServerEvent::Leave {
                    room: room.clone(),
                    nick: member.nick.clone(),
                    reason,
                    detail: detail.clone(),
                },
            );
        }
        if let (Some(told), Some(dropped)) = (told, member.dropped.take()) {
            // The door may be gone already; then there is no one to tell.
            let _ = dropped.send(told);
        }
    }

    /// Removes the members found too slow (or gone) during this call.
    /// Removing one tells its rooms, which can find more; loop until quiet.
    pub(super) fn settle(&mut self, config: &HubConfig) {
        while let Some((id, reason)) = self.overflowed.pop() {
            let (detail, told) = match reason {
                LeaveReason::Lost => (None, None),
                _ => (
                    Some("sendq exceeded".to_string()),
                    Some(
                        "sendq exceeded: too many messages waiting for you to read them"
                            .to_string(),
                    ),
                ),
            };
            self.remove_member(config, id, reason, detail, told);
        }
    }

    /// Forgets every member, telling each one's door why. No leave notices:
    /// there is no one left to read them.
    pub(super) fn drop_everyone(&mut self, reason: &str) {
        self.closed = true;
        for (_, mut member) in self.members.drain() {
            self.metrics
                .connections
                .get_or_create(&DoorLabel {
                    door: member.door.name(),
                })
                .dec();
            if let Some(dropped) = member.dropped.take() {
                let _ = dropped.send(reason.to_string());
            }
        }
        self.nicks.clear();
        self.per_ip.clear();
        self.counted = 0;
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
    }

    fn deliver_event(&mut self, id: MemberId, event: ServerEvent) {
        self.deliver(id, Arc::new(Outgoing::new(event)));
    }

    /// Queues an event for one member without waiting.
    pub(super) fn deliver(&mut self, id: MemberId, event: Arc<Outgoing>) {
        if let Some(member) = self.members.get(&id) {
            // Counted first: whoever reads the event may read the metrics next.
            if matches!(event.event(), ServerEvent::Private { .. }) {
                self.metrics.messages_out.inc();
            }
            offer(id, member, &event, &mut self.overflowed);
        }
    }

    fn broadcast(&mut self, room: &str, event: ServerEvent) {
        self.broadcast_except_option(room, None, event);
    }

    fn broadcast_except(&mut self, room: &str, except: MemberId, event: ServerEvent) {
        self.broadcast_except_option(room, Some(except), event);
    }

    /// Fan-out: one shared event, one `try_send` per member, no waiting.
    fn broadcast_except_option(
        &mut self,
        room: &str,
        except: Option<MemberId>,
        event: ServerEvent,
    ) {
        let Some(room_state) = self.rooms.get(room) else {
            return;
        };
        if matches!(event, ServerEvent::Message(_)) {
            // Counted first: whoever reads the event may read the metrics next.
            let excepted = except.is_some_and(|id| room_state.members.contains(&id));
            self.metrics
                .messages_out
                .inc_by((room_state.members.len() - usize::from(excepted)) as u64);
        }
        let event = Arc::new(Outgoing::new(event));
        for id in &room_state.members {
            if Some(*id) == except {
                continue;
            }
            if let Some(member) = self.members.get(id) {
                offer(*id, member, &event, &mut self.overflowed);
            }
        }
    }
}

/// Queues `event` for `member`. A full outbox marks the member too slow and
/// a closed one marks it gone; `settle` removes both once the fan-out is done.
fn offer(
    id: MemberId,
    member: &Member,
    event: &Arc<Outgoing>,
    overflowed: &mut Vec<(MemberId, LeaveReason)>,
) {
    match member.outbox.try_send(event.clone()) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) if member.door == Door::Console => {
            tracing::warn!("the console is not keeping up; an event was not shown");
        }
        Err(mpsc::error::TrySendError::Full(_)) => overflowed.push((id, LeaveReason::Dropped)),
        Err(mpsc::error::TrySendError::Closed(_)) => overflowed.push((id, LeaveReason::Lost)),
    }
}

/// The `drops` label for a member the server removed, from the detail
/// the room was told.
/// Whether a room of `members` (counting the one joining or leaving) is too
/// big to announce joins and leaves and to list members on join.
fn is_big(config: &HubConfig, members: usize) -> bool {
    config.big_room != 0 && members > config.big_room
}

fn drop_label(detail: Option<&str>) -> &'static str {
    match detail.unwrap_or("") {
        "sendq exceeded" => "sendq",
        "excess flood" => "flood",
        detail if detail.starts_with("idle") || detail.starts_with("no datagram") => "idle",
        detail if detail.starts_with("kicked") => "kicked",
        _ => "other",
    }
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
