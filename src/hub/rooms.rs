//! Rooms: joining, leaving, listing, and each room's recent past.

use std::sync::Arc;

use super::cluster::{RoomChange, TopicEntry};
use super::shared_rooms::Target;
use super::state::{State, Topic};
use super::{DoorKind, HubConfig, MemberId};
use crate::protocol::text::{normalize_room, sanitize};
use crate::protocol::{ErrorCode, LeaveReason, MessageRecord, Outgoing, RoomInfo, ServerEvent};

/// Members a room's invitation list holds at most: past it, the oldest
/// invitation lapses.
pub(super) const MAX_INVITED: usize = 64;

impl State {
    /// Adds a message to its room's ring of recent messages.
    pub(super) fn remember(&mut self, config: &HubConfig, record: MessageRecord) {
        if config.history_len == 0 {
            return;
        }
        let ring = self.recent.entry(record.room.clone()).or_default();
        if ring.len() == config.history_len {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    pub(super) fn recent_in(&self, room: &str) -> Vec<MessageRecord> {
        self.recent
            .get(room)
            .map_or_else(Vec::new, |ring| ring.iter().cloned().collect())
    }

    /// Members of `room`, on every node.
    pub(super) fn room_size(&self, room: &str) -> usize {
        let here = self.rooms.get(room).map_or(0, |room| room.members.len());
        here + self.remote.count_in(room)
    }

    /// Members of `room`, on every node, by nick: this node's first.
    pub(super) fn nicks_in(&self, room: &str) -> Vec<String> {
        let mut nicks = self.rooms.get(room).map_or_else(Vec::new, |room| {
            room.members
                .iter()
                .filter_map(|id| self.members.get(id).map(|member| member.nick.clone()))
                .collect()
        });
        nicks.extend(self.remote_nicks_in(room).map(str::to_string));
        nicks
    }

    /// The operators of `room`, by nick.
    pub(super) fn ops_in(&self, room: &str) -> Vec<String> {
        self.ranked_in(room, 'o')
    }

    /// The members of `room` with a voice, by nick.
    pub(super) fn voiced_in(&self, room: &str) -> Vec<String> {
        self.ranked_in(room, 'v')
    }

    /// The members of `room` with the rank `flag` (`o` or `v`), by nick.
    fn ranked_in(&self, name: &str, flag: char) -> Vec<String> {
        let Some(room) = self.rooms.get(name) else {
            // Nobody here: the entry names them.
            let Some((_, entry)) = self.room_entries.get(name) else {
                return Vec::new();
            };
            let named = if flag == 'o' {
                &entry.ops
            } else {
                &entry.voiced
            };
            return (self.remote.in_room(name))
                .filter(|member| {
                    (named.iter()).any(|n| n.origin == member.origin && n.member == member.member)
                })
                .map(|member| member.presence.nick.clone())
                .collect();
        };
        let here = if flag == 'o' { &room.ops } else { &room.voiced };
        let mut nicks: Vec<String> = (here.iter())
            .filter_map(|id| self.members.get(id).map(|member| member.nick.clone()))
            .collect();
        // Other nodes' members the room's entry names: those still in it.
        nicks.extend(
            (self.remote.in_room(name))
                .filter(|member| room.ranks_remote(flag, member))
                .map(|member| member.presence.nick.clone()),
        );
        nicks
    }

    /// The topic event for `room`, as an answer (not a change).
    fn topic_of(&self, room: &str) -> ServerEvent {
        let topic = match self.rooms.get(room) {
            Some(state) => state.topic.clone(),
            None => self.room_seen_elsewhere(room).topic,
        };
        ServerEvent::Topic {
            room: room.to_string(),
            text: topic.as_ref().map(|topic| topic.text.clone()),
            by: topic.as_ref().map(|topic| topic.by.clone()),
            at: topic.as_ref().map(|topic| topic.at),
            changed: false,
        }
    }

    pub(super) fn join(&mut self, config: &HubConfig, id: MemberId, name: &str) {
        let room = match normalize_room(name) {
            Ok(room) => room,
            Err(why) => {
                let error = ServerEvent::error_about(ErrorCode::BadRoom, name, why);
                self.deliver_event(id, error);
                return;
            }
        };
        let member = self.members.get_mut(&id).expect("checked by handle");
        if member.rooms.contains(&room) {
            member.current = Some(room.clone());
            self.deliver_event(id, ServerEvent::Current { room });
            return;
        }
        if config.max_rooms > 0 && member.rooms.len() >= config.max_rooms {
            let why = format!(
                "you are in {} rooms, the most one member may be in; /part one first",
                member.rooms.len()
            );
            let error = ServerEvent::error_about(ErrorCode::TooManyRooms, &room, why);
            self.deliver_event(id, error);
            return;
        }
        let server_operator = member.operator;
        let (keeps_out, invited) = match self.rooms.get(&room) {
            Some(state) => (
                state.invite_only && !state.invited.contains(&id),
                state.invited.contains(&id),
            ),
            None => {
                let me = self.member_ref(id);
                let invited = (self.room_entries.get(&room))
                    .is_some_and(|(_, entry)| me.is_some_and(|me| entry.invited.contains(&me)));
                (self.entry_keeps_out(&room, id), invited)
            }
        };
        if keeps_out && !server_operator {
            let why = format!("#{room} is invite only: an operator of it may /invite you");
            let error = ServerEvent::error_about(ErrorCode::InviteOnly, &room, why);
            self.deliver_event(id, error);
            return;
        }
        if let Some(state) = self.rooms.get_mut(&room) {
            state.invited.retain(|invited| *invited != id);
        }
        let founding = self.is_unmade(config, &room);
        let fresh = !self.rooms.contains_key(&room);
        let member = self.members.get_mut(&id).expect("checked by handle");
        member.invited_to.retain(|invited| *invited != room);
        member.current = Some(room.clone());
        member.rooms.push(room.clone());
        let nick = member.nick.clone();
        let room_state = self.rooms.entry(room.clone()).or_default();
        // Whoever makes a room runs it, as on IRC.
        if founding {
            room_state.ops = vec![id];
        }
        let since = config.clock.now_millis();
        if room_state.since == 0 {
            room_state.since = since;
        }
        room_state.members.push(id);
        if let (true, Some(me)) = (self.rooms_are_shared(), self.member_ref(id)) {
            if founding {
                let after = self.found_after(&room);
                let found = RoomChange::Found {
                    by: me.clone(),
                    since,
                    after,
                };
                self.change_room(id, &room, found);
            } else if fresh {
                self.mirror(&room);
            }
            if invited {
                let forget = RoomChange::Forget {
                    member: me,
                    ranks: false,
                };
                self.change_room(id, &room, forget);
            }
        }
        let room_state = &self.rooms[&room];
        let count = room_state.members.len();
        let has_topic = room_state.topic.is_some();
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
            // An away member's arrival says so (IRC's away-notify).
            if let Some(away) = self.members[&id].away.clone() {
                let nick = self.members[&id].nick.clone();
                let presence = ServerEvent::Presence {
                    nick,
                    away: Some(away),
                };
                self.broadcast_except(&room, id, presence);
            }
        }
        if has_topic {
            let topic = self.topic_of(&room);
            self.deliver_event(id, topic);
        }
        // IRC clients are owed the names on every join (353/366): they
        // keep their member lists from them.
        let names_owed = self.members[&id].door == DoorKind::Irc;
        let (nicks, ops, voiced) = if big && !names_owed {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                self.nicks_in(&room),
                self.ops_in(&room),
                self.voiced_in(&room),
            )
        };
        self.deliver_event(
            id,
            ServerEvent::Members {
                room: room.clone(),
                nicks,
                count,
                ops,
                voiced,
                secret: self.rooms[&room].secret,
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
        self.show(config, id);
    }

    pub(super) fn part(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        named: Option<&str>,
        reason: Option<&str>,
    ) {
        let Some(room) = self.target_room(id, named) else {
            return;
        };
        if !self.members[&id].rooms.contains(&room) {
            self.deliver_event(
                id,
                ServerEvent::error_about(
                    ErrorCode::NotInRoom,
                    &room,
                    format!("you are not in #{room}"),
                ),
            );
            return;
        }
        let nick = self.members[&id].nick.clone();
        let detail = reason
            .map(|reason| sanitize(reason).into_owned())
            .filter(|reason| !reason.trim().is_empty());
        let left = ServerEvent::Leave {
            room: room.clone(),
            nick,
            reason: LeaveReason::Part,
            detail,
        };
        // The member hears its own leave, then is taken out.
        if is_big(config, self.room_size(&room)) || !self.is_seen_in(config, id, &room) {
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
    pub(super) fn leave_room(&mut self, config: &HubConfig, id: MemberId, room: &str) {
        if let Some(member) = self.members.get_mut(&id) {
            member.rooms.retain(|joined| joined != room);
        }
        let mut named = false;
        if let Some(room_state) = self.rooms.get_mut(room) {
            named = room_state.ops.contains(&id)
                || room_state.voiced.contains(&id)
                || room_state.invited.contains(&id);
            room_state.members.retain(|member| *member != id);
            room_state.ops.retain(|member| *member != id);
            room_state.voiced.retain(|member| *member != id);
            if room_state.members.is_empty() && room != config.default_room {
                self.rooms.remove(room);
            }
        }
        if let (true, Some(me)) = (named, self.member_ref(id)) {
            let forget = RoomChange::Forget {
                member: me,
                ranks: true,
            };
            self.change_room(id, room, forget);
        }
        self.close_if_empty(config, room);
        self.show(config, id);
    }

    pub(super) fn who(&mut self, id: MemberId, named: Option<&str>) {
        let Some(room) = self.target_room(id, named) else {
            return;
        };
        if !self.room_exists(id, &room) {
            return;
        }
        let nicks = self.nicks_in(&room);
        let count = nicks.len();
        let (ops, voiced) = (self.ops_in(&room), self.voiced_in(&room));
        let secret = self.is_secret(&room);
        let members = ServerEvent::Members {
            room,
            nicks,
            count,
            ops,
            voiced,
            secret,
        };
        self.deliver_event(id, members);
    }

    /// Whether `room` exists; if not, the member is told.
    fn room_exists(&mut self, id: MemberId, room: &str) -> bool {
        let exists = self.rooms.contains_key(room) || self.remote.count_in(room) > 0;
        if !exists {
            let why = format!("no such room: #{room}");
            self.deliver_event(id, ServerEvent::error_about(ErrorCode::BadRoom, room, why));
        }
        exists
    }

    /// A room the member is in, or why not (told to the member): there is
    /// no such room, or it is not in it.
    fn room_of_member(&mut self, id: MemberId, named: Option<&str>) -> Option<String> {
        let room = self.target_room(id, named)?;
        if !self.room_exists(id, &room) {
            return None;
        }
        if !self.members[&id].rooms.contains(&room) {
            let error = ServerEvent::error_about(
                ErrorCode::NotInRoom,
                &room,
                format!("you are not in #{room}"),
            );
            self.deliver_event(id, error);
            return None;
        }
        Some(room)
    }

    /// The member `nick` of `room` here, or why not (told to `id`): no
    /// such nick, or not in that room.
    fn member_of(&mut self, id: MemberId, room: &str, nick: &str) -> Option<MemberId> {
        match self.target_in(id, room, nick)? {
            Target::Here(member) => Some(member),
            // Only in a cluster, whose rooms' changes go by `target_in`.
            Target::There(_) => None,
        }
    }

    /// Whether the member runs the room (as its operator, or as a server
    /// operator); if not, it is told.
    pub(super) fn check_operator(&mut self, id: MemberId, room: &str) -> bool {
        let server_operator = self.members.get(&id).is_some_and(|member| member.operator);
        let is_op = server_operator
            || self
                .rooms
                .get(room)
                .is_some_and(|state| state.ops.contains(&id));
        if !is_op {
            let error = ServerEvent::error_about(
                ErrorCode::NotOperator,
                room,
                format!("only the operators of #{room} may do that"),
            );
            self.deliver_event(id, error);
        }
        is_op
    }

    /// Answers or sets a room's topic.
    pub(super) fn topic(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        named: Option<&str>,
        text: Option<&str>,
    ) {
        let Some(text) = text else {
            let Some(room) = self.target_room(id, named) else {
                return;
            };
            if !self.room_exists(id, &room) {
                return;
            }
            let topic = self.topic_of(&room);
            self.deliver_event(id, topic);
            return;
        };
        let Some(room) = self.room_of_member(id, named) else {
            return;
        };
        if self.rooms[&room].topic_locked && !self.check_operator(id, &room) {
            return;
        }
        let by = self.members[&id].nick.clone();
        let text = config.filter.apply(&sanitize(text)).into_owned();
        let at = config.clock.now_millis();
        let topic = (!text.trim().is_empty()).then(|| Topic {
            text: text.clone(),
            by: by.clone(),
            at,
        });
        if self.rooms_are_shared() {
            let topic = topic.map(|topic| TopicEntry {
                text: topic.text,
                by: topic.by,
                at: topic.at,
            });
            self.change_room(id, &room, RoomChange::Topic { topic, by, at });
            return;
        }
        self.rooms
            .get_mut(&room)
            .expect("the member is in it")
            .topic = topic.clone();
        let event = ServerEvent::Topic {
            room: room.clone(),
            text: topic.map(|topic| topic.text),
            by: Some(by),
            at: Some(at),
            changed: true,
        };
        self.broadcast(&room, event);
    }

    /// Answers or changes a room's modes (`+o NICK`, `-o NICK`, `+t`, `-t`).
    pub(super) fn mode(&mut self, id: MemberId, named: Option<&str>, change: Option<&str>) {
        let Some(change) = change.map(str::trim).filter(|change| !change.is_empty()) else {
            let Some(room) = self.target_room(id, named) else {
                return;
            };
            if !self.room_exists(id, &room) {
                return;
            }
            let elsewhere;
            let state = match self.rooms.get(&room) {
                Some(state) => state,
                None => {
                    elsewhere = self.room_seen_elsewhere(&room);
                    &elsewhere
                }
            };
            let modes = state.modes();
            let since = (state.since > 0).then_some(state.since);
            let event = ServerEvent::RoomMode {
                room,
                modes,
                by: None,
                since,
            };
            self.deliver_event(id, event);
            return;
        };
        let Some(room) = self.room_of_member(id, named) else {
            return;
        };
        let wanted = self.mode_changes(id, change);
        if wanted.is_empty() || !self.check_operator(id, &room) {
            return;
        }
        if self.rooms_are_shared() {
            self.share_modes(id, &room, wanted);
            return;
        }
        // What changed, in order: what was so already is not told again.
        let mut applied: Vec<(bool, char)> = Vec::new();
        let mut arguments = Vec::new();
        for (on, flag, nick) in wanted {
            let changed = match nick {
                Some(nick) => {
                    let Some(target) = self.member_of(id, &room, &nick) else {
                        continue;
                    };
                    let state = self.rooms.get_mut(&room).expect("checked");
                    let list = match flag {
                        'o' => &mut state.ops,
                        _ => &mut state.voiced,
                    };
                    let was = list.contains(&target);
                    list.retain(|member| *member != target);
                    if on {
                        list.push(target);
                    }
                    let changed = was != on;
                    if changed {
                        arguments.push(self.members[&target].nick.clone());
                    }
                    changed
                }
                None => {
                    let state = self.rooms.get_mut(&room).expect("checked");
                    let was = state.flag(flag);
                    state.set_flag(flag, on);
                    was != on
                }
            };
            if changed {
                applied.push((on, flag));
            }
        }
        if applied.is_empty() {
            return;
        }
        let modes = mode_string(&applied, &arguments);
        let event = ServerEvent::RoomMode {
            room: room.clone(),
            modes,
            by: Some(self.members[&id].nick.clone()),
            since: None,
        };
        self.broadcast(&room, event);
    }

    /// A mode change (`+o bob`, `+imt`, `+ov-t bob carol`) as its flags,
    /// on or off, each with its nick for `o` and `v`. Unknown flags and
    /// missing nicks are told to the member and left out.
    fn mode_changes(&mut self, id: MemberId, change: &str) -> Vec<(bool, char, Option<String>)> {
        let mut words = change.split_whitespace();
        let flags = words.next().unwrap_or("");
        let mut wanted = Vec::new();
        let mut on = true;
        for flag in flags.chars() {
            match flag {
                '+' | '-' => on = flag == '+',
                'o' | 'v' => match words.next() {
                    Some(nick) => wanted.push((on, flag, Some(nick.to_string()))),
                    None => {
                        let why = format!("{flag} needs a nick: /mode +{flag} NICK");
                        self.deliver_event(id, ServerEvent::error(ErrorCode::Usage, why));
                    }
                },
                'i' | 'm' | 'n' | 's' | 't' => wanted.push((on, flag, None)),
                other => {
                    let error = ServerEvent::error_about(
                        ErrorCode::UnknownMode,
                        &other.to_string(),
                        format!(
                            "unknown mode {other}: rooms know +o/-o NICK, +v/-v NICK, \
                             +i, +m, +n, +s and +t"
                        ),
                    );
                    self.deliver_event(id, error);
                }
            }
        }
        wanted
    }

    /// Puts a member out of a room, as one of its operators.
    pub(super) fn kick(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        named: Option<&str>,
        nick: &str,
        reason: Option<&str>,
    ) {
        let Some(room) = self.room_of_member(id, named) else {
            return;
        };
        if !self.check_operator(id, &room) {
            return;
        }
        if self.rooms_are_shared() {
            let Some(target) = self.target_in(id, &room, nick) else {
                return;
            };
            let Some((member, nick)) = self.target_ref(&target) else {
                return;
            };
            let kick = RoomChange::Kick {
                member,
                nick,
                by: self.members[&id].nick.clone(),
                reason: reason.map(|reason| sanitize(reason).into_owned()),
            };
            self.change_room(id, &room, kick);
            return;
        }
        let Some(target) = self.member_of(id, &room, nick) else {
            return;
        };
        let event = ServerEvent::Kick {
            room: room.clone(),
            nick: self.members[&target].nick.clone(),
            by: self.members[&id].nick.clone(),
            reason: reason.map(|reason| sanitize(reason).into_owned()),
        };
        self.broadcast(&room, event);
        self.leave_room(config, target, &room);
        let member = self.members.get_mut(&target).expect("found above");
        if member.current.as_deref() == Some(room.as_str()) {
            member.current = member.rooms.last().cloned();
        }
    }

    /// Invites `nick` into a room the member is in: anyone in an open
    /// room may, only operators in an invite-only one.
    pub(super) fn invite(&mut self, id: MemberId, nick: &str, named: Option<&str>) {
        let Some(room) = self.room_of_member(id, named) else {
            return;
        };
        if self.rooms_are_shared() {
            self.share_invite(id, nick, &room);
            return;
        }
        let Some(target) = self.find_nick(nick) else {
            let why = format!("no such nick: {nick}");
            let error = ServerEvent::error_about(ErrorCode::NoSuchNick, nick, why);
            self.deliver_event(id, error);
            return;
        };
        let nick = self.members[&target].nick.clone();
        if self.rooms[&room].members.contains(&target) {
            let why = format!("{nick} is in #{room} already");
            let error = ServerEvent::error_about(ErrorCode::TargetInRoom, &nick, why);
            self.deliver_event(id, error);
            return;
        }
        if self.rooms[&room].invite_only && !self.check_operator(id, &room) {
            return;
        }
        let state = self.rooms.get_mut(&room).expect("checked");
        if !state.invited.contains(&target) {
            if state.invited.len() >= MAX_INVITED {
                let oldest = state.invited.remove(0);
                if let Some(member) = self.members.get_mut(&oldest) {
                    member.invited_to.retain(|invited| *invited != room);
                }
            }
            state.invited.push(target);
            let rooms = &self.rooms;
            let invited_to = &mut self.members.get_mut(&target).expect("found").invited_to;
            if invited_to.len() >= MAX_INVITED {
                // Rooms gone since, or that struck it off, hold no place.
                invited_to.retain(|name| {
                    rooms
                        .get(name)
                        .is_some_and(|room| room.invited.contains(&target))
                });
            }
            invited_to.push(room.clone());
        }
        let event = Arc::new(Outgoing::new(ServerEvent::Invited {
            room,
            nick,
            by: self.members[&id].nick.clone(),
        }));
        self.deliver(target, event.clone());
        if target != id {
            self.deliver(id, event);
        }
    }

    pub(super) fn list_rooms(&mut self, id: MemberId) {
        // A room is listed with its members on every node; one that only
        // other nodes have is listed too (its secrecy is known where it is).
        let mut names: Vec<&String> = self
            .rooms
            .iter()
            // A secret room is listed only to its own members.
            .filter(|(_, room)| !room.secret || room.members.contains(&id))
            .map(|(name, _)| name)
            .collect();
        names.extend(
            (self.remote.rooms())
                .filter(|room| !self.rooms.contains_key(*room) && !self.is_secret(room)),
        );
        names.sort();
        names.dedup();
        let mut rooms: Vec<RoomInfo> = names
            .into_iter()
            .map(|name| RoomInfo {
                name: name.clone(),
                members: self.room_size(name),
            })
            .filter(|room| room.members > 0)
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        self.deliver_event(id, ServerEvent::Rooms { rooms });
    }
}

/// Mode changes as IRC writes them: `+o-t bob` for `[(+, o), (-, t)]`
/// and `[bob]`.
pub(super) fn mode_string(applied: &[(bool, char)], arguments: &[String]) -> String {
    let mut modes = String::new();
    let mut sign = None;
    for &(on, flag) in applied {
        if sign != Some(on) {
            modes.push(if on { '+' } else { '-' });
            sign = Some(on);
        }
        modes.push(flag);
    }
    for nick in arguments {
        modes.push(' ');
        modes.push_str(nick);
    }
    modes
}

/// Whether a room of `members` (counting the one joining or leaving) is too
/// big to announce joins and leaves and to list members on join.
pub(super) fn is_big(config: &HubConfig, members: usize) -> bool {
    config.big_room != 0 && members > config.big_room
}
