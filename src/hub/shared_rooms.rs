//! In a cluster, a room's own state (topic, modes, operators, voices,
//! invitations) is one entry in the cluster's rooms bucket, the same on
//! every node. A command that changes it is checked here, against what
//! this node knows, and sent to the cluster as a change; every node, this
//! one included, hears the new entry, mirrors it into its `Room`, and
//! tells its members of the change. So a change is told once per member,
//! in the entry's order, wherever it was made.

use super::cluster::{MemberRef, RemoteMember, RoomChange, RoomEntry, RoomRequest, LEFT_OVER_MS};
use super::state::{Room, State, Topic};
use super::{HubConfig, MemberId};
use crate::protocol::{ErrorCode, ServerEvent};

/// Someone a room command names: a member of this node or of another.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Here(MemberId),
    There(RemoteMember),
}

impl State {
    /// Whether room changes go to the cluster rather than straight to the room.
    pub(super) fn rooms_are_shared(&self) -> bool {
        self.cluster.is_some()
    }

    /// `member` of this node, as the cluster knows it.
    pub(super) fn member_ref(&self, member: MemberId) -> Option<MemberRef> {
        (self.cluster.as_ref()).map(|cluster| cluster.member_ref(member))
    }

    /// Sends `member`'s change of `room` to the cluster. A room run here
    /// whose entry this node has not seen (its making could not reach the
    /// cluster, say) is made first, so its operators here stay.
    pub(super) fn change_room(&self, member: MemberId, room: &str, change: RoomChange) {
        if let Some(cluster) = &self.cluster {
            let unmade = !self.room_entries.contains_key(room)
                && !matches!(change, RoomChange::Found { .. });
            let op = (self.rooms.get(room)).and_then(|state| state.ops.first().copied());
            if let (true, Some(op)) = (unmade, op) {
                let found = RoomChange::Found {
                    by: cluster.member_ref(op),
                    since: self.rooms[room].since,
                    after: None,
                };
                cluster.change_room(RoomRequest::Change {
                    member,
                    room: room.to_string(),
                    change: found,
                });
            }
            cluster.change_room(RoomRequest::Change {
                member,
                room: room.to_string(),
                change,
            });
        }
    }

    /// After a member left `room`: with nobody left on any node, its
    /// entry goes, so that whoever comes next makes it anew.
    pub(super) fn close_if_empty(&mut self, config: &HubConfig, room: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if room != config.default_room
            && !self.rooms.contains_key(room)
            && self.remote.count_in(room) == 0
        {
            cluster.change_room(RoomRequest::Close {
                room: room.to_string(),
            });
            self.closing.insert(room.to_string());
        }
    }

    /// Whether whoever comes into `room` now makes it: nobody is in it on
    /// any node, and it has no entry, or only one left over, or one this
    /// node is closing (its last member left here: the entry goes first).
    pub(super) fn is_unmade(&self, config: &HubConfig, room: &str) -> bool {
        let left_over = |entry: &RoomEntry| {
            config.clock.now_millis().saturating_sub(entry.written) > LEFT_OVER_MS
        };
        room != config.default_room
            && self.room_size(room) == 0
            && (self.closing.contains(room)
                || (self.room_entries.get(room)).is_none_or(|(_, entry)| left_over(entry)))
    }

    /// The revision a member making `room` expects its entry at: none if
    /// this node is closing it.
    pub(super) fn found_after(&mut self, room: &str) -> Option<u64> {
        match self.closing.remove(room) {
            true => None,
            false => self.entry_revision(room),
        }
    }

    /// Whether `room` is secret (`+s`), as it is here, or as its entry says.
    pub(super) fn is_secret(&self, room: &str) -> bool {
        match self.rooms.get(room) {
            Some(state) => state.secret,
            None => (self.room_entries.get(room)).is_some_and(|(_, entry)| entry.secret),
        }
    }

    /// The revision of `room`'s entry this node knows, if any.
    pub(super) fn entry_revision(&self, room: &str) -> Option<u64> {
        self.room_entries.get(room).map(|(revision, _)| *revision)
    }

    /// Whether an invite-only room that only other nodes have (so far)
    /// keeps `id` out.
    pub(super) fn entry_keeps_out(&self, room: &str, id: MemberId) -> bool {
        let (Some((_, entry)), Some(me)) = (self.room_entries.get(room), self.member_ref(id))
        else {
            return false;
        };
        self.remote.count_in(room) > 0 && entry.invite_only && !entry.invited.contains(&me)
    }

    /// The member `nick` of `room`, on any node, or why not (told to `id`).
    pub(super) fn target_in(&mut self, id: MemberId, room: &str, nick: &str) -> Option<Target> {
        let here = self.find_nick(nick);
        let there = match here {
            Some(_) => None,
            None => self.remote_by_nick(nick),
        };
        let in_room = match (&here, &there) {
            (Some(target), _) => self.rooms[room].members.contains(target),
            (None, Some(remote)) => remote.presence.rooms.iter().any(|joined| joined == room),
            (None, None) => {
                let why = format!("no such nick: {nick}");
                let error = ServerEvent::error_about(ErrorCode::NoSuchNick, nick, why);
                self.deliver_event(id, error);
                return None;
            }
        };
        if !in_room {
            let error = ServerEvent::error_about(
                ErrorCode::TargetNotInRoom,
                nick,
                format!("{nick} is not in #{room}"),
            );
            self.deliver_event(id, error);
            return None;
        }
        match (here, there) {
            (Some(target), _) => Some(Target::Here(target)),
            (None, Some(remote)) => Some(Target::There(remote)),
            (None, None) => None,
        }
    }

    /// A target as the cluster knows it, and its nick.
    pub(super) fn target_ref(&self, target: &Target) -> Option<(MemberRef, String)> {
        match target {
            Target::Here(id) => Some((self.member_ref(*id)?, self.members.get(id)?.nick.clone())),
            Target::There(remote) => Some((
                MemberRef {
                    origin: remote.origin.clone(),
                    member: remote.member,
                },
                remote.presence.nick.clone(),
            )),
        }
    }

    /// The cluster has `room`'s entry at `revision`: mirrored into the
    /// room here, and, if it is `news` (not what a watch started again
    /// replays), its latest change told to the room's members here.
    pub(super) fn room_entry_seen(
        &mut self,
        config: &HubConfig,
        revision: u64,
        entry: RoomEntry,
        news: bool,
    ) {
        let room = entry.room.clone();
        let change = entry.change.clone();
        let known = self.entry_revision(&room);
        if known.is_some_and(|known| known >= revision) {
            return;
        }
        self.room_entries.insert(room.clone(), (revision, entry));
        self.mirror(&room);
        // Newer than what this node knew: news, even if its watch replays
        // it (it was away meanwhile).
        if let (Some(change), true) = (change, news || known.is_some()) {
            self.tell_change(config, &room, change);
        }
    }

    /// `room`'s entry is gone: the room had nobody left on any node.
    pub(super) fn room_entry_gone(&mut self, room: &str) {
        self.room_entries.remove(room);
        self.closing.remove(room);
    }

    /// The cluster could not be asked to change `room`: `member` is told.
    pub(super) fn room_change_failed(&mut self, member: MemberId, room: &str) {
        let why = format!(
            "#{room} was not changed: the cluster could not be reached; try again when it is back"
        );
        let error = ServerEvent::error_about(ErrorCode::Unavailable, room, why);
        self.deliver_event(member, error);
    }

    /// A room that only other nodes have, as its entry says (a new room's
    /// defaults without one).
    pub(super) fn room_seen_elsewhere(&self, room: &str) -> Room {
        let mut seen = Room::default();
        if let Some((_, entry)) = self.room_entries.get(room) {
            seen.take_settings(entry);
        }
        seen
    }

    /// A member's mode change of `room` (checked: it runs the room), as a
    /// change for the cluster: what is so already is not asked again.
    pub(super) fn share_modes(
        &mut self,
        id: MemberId,
        room: &str,
        wanted: Vec<(bool, char, Option<String>)>,
    ) {
        // What is so already is left out where it is applied, against the
        // entry as it is then (this node's copy may be behind).
        let mut flags: Vec<(bool, char)> = Vec::new();
        let mut ranks: Vec<(bool, char, MemberRef, String)> = Vec::new();
        for (on, flag, nick) in wanted {
            match nick {
                Some(nick) => {
                    let Some(target) = self.target_in(id, room, &nick) else {
                        continue;
                    };
                    let Some((member, nick)) = self.target_ref(&target) else {
                        continue;
                    };
                    // The last word on each counts, as when applied in turn.
                    ranks.retain(|(_, f, m, _)| !(*f == flag && *m == member));
                    ranks.push((on, flag, member, nick));
                }
                None => {
                    flags.retain(|(_, f)| *f != flag);
                    flags.push((on, flag));
                }
            }
        }
        if flags.is_empty() && ranks.is_empty() {
            return;
        }
        let change = RoomChange::Modes {
            flags,
            ranks,
            modes: String::new(),
            by: self.members[&id].nick.clone(),
        };
        self.change_room(id, room, change);
    }

    /// A member's invitation of `nick` into `room` (which it is in), for
    /// the cluster: anyone in an open room may, only operators in an
    /// invite-only one.
    pub(super) fn share_invite(&mut self, id: MemberId, nick: &str, room: &str) {
        let target = match self.find_nick(nick) {
            Some(here) => Target::Here(here),
            None => match self.remote_by_nick(nick) {
                Some(there) => Target::There(there),
                None => {
                    let why = format!("no such nick: {nick}");
                    let error = ServerEvent::error_about(ErrorCode::NoSuchNick, nick, why);
                    self.deliver_event(id, error);
                    return;
                }
            },
        };
        let in_room = match &target {
            Target::Here(member) => self.rooms[room].members.contains(member),
            Target::There(member) => member.presence.rooms.iter().any(|joined| joined == room),
        };
        let (Some((member, nick)), Some(by)) = (self.target_ref(&target), self.member_ref(id))
        else {
            return;
        };
        if in_room {
            let why = format!("{nick} is in #{room} already");
            let error = ServerEvent::error_about(ErrorCode::TargetInRoom, &nick, why);
            self.deliver_event(id, error);
            return;
        }
        if self.rooms[room].invite_only && !self.check_operator(id, room) {
            return;
        }
        let change = RoomChange::Invite {
            member,
            nick,
            by,
            by_nick: self.members[&id].nick.clone(),
        };
        self.change_room(id, room, change);
    }

    /// Makes the room here what its entry says.
    pub(super) fn mirror(&mut self, room: &str) {
        let (Some(cluster), Some((_, entry))) = (&self.cluster, self.room_entries.get(room)) else {
            return;
        };
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let me = cluster.origin.as_str();
        state.take_settings(entry);
        let (ops, remote_ops) = split(&entry.ops, me, &state.members);
        let (voiced, remote_voiced) = split(&entry.voiced, me, &state.members);
        (state.ops, state.remote_ops) = (ops, remote_ops);
        (state.voiced, state.remote_voiced) = (voiced, remote_voiced);
        state.invited = (entry.invited.iter())
            .filter(|named| named.origin == me)
            .map(|named| MemberId(named.member))
            .collect();
        let invited = state.invited.clone();
        for id in invited {
            if let Some(member) = self.members.get_mut(&id) {
                if !member.invited_to.iter().any(|name| name == room) {
                    if member.invited_to.len() >= super::rooms::MAX_INVITED {
                        member.invited_to.remove(0);
                    }
                    member.invited_to.push(room.to_string());
                }
            }
        }
    }

    /// Tells this node's members of a change to `room`'s entry.
    fn tell_change(&mut self, config: &HubConfig, room: &str, change: RoomChange) {
        let Some(me) = self.cluster.as_ref().map(|cluster| cluster.origin.clone()) else {
            return;
        };
        let here = |named: &MemberRef| (named.origin == me).then_some(MemberId(named.member));
        match change {
            RoomChange::Found { .. } | RoomChange::Forget { .. } => {}
            RoomChange::Topic { topic, by, at } => {
                let event = ServerEvent::Topic {
                    room: room.to_string(),
                    text: topic.map(|topic| topic.text),
                    by: Some(by),
                    at: Some(at),
                    changed: true,
                };
                self.broadcast(room, event);
            }
            RoomChange::Modes { modes, by, .. } => {
                let event = ServerEvent::RoomMode {
                    room: room.to_string(),
                    modes,
                    by: Some(by),
                    since: None,
                };
                self.broadcast(room, event);
            }
            RoomChange::Invite {
                member,
                nick,
                by,
                by_nick,
            } => {
                let event = ServerEvent::Invited {
                    room: room.to_string(),
                    nick,
                    by: by_nick,
                };
                if let Some(invited) = here(&member) {
                    self.deliver_event(invited, event.clone());
                }
                if let Some(inviter) = here(&by).filter(|_| by != member) {
                    self.deliver_event(inviter, event);
                }
            }
            RoomChange::Kick {
                member,
                nick,
                by,
                reason,
            } => {
                let event = ServerEvent::Kick {
                    room: room.to_string(),
                    nick,
                    by,
                    reason,
                };
                match here(&member) {
                    Some(kicked) => {
                        if !self
                            .rooms
                            .get(room)
                            .is_some_and(|r| r.members.contains(&kicked))
                        {
                            return;
                        }
                        self.broadcast(room, event);
                        self.leave_room(config, kicked, room);
                        if let Some(kicked) = self.members.get_mut(&kicked) {
                            if kicked.current.as_deref() == Some(room) {
                                kicked.current = kicked.rooms.last().cloned();
                            }
                        }
                    }
                    None => {
                        // Its own node takes it out, and says so in its
                        // directory entry: struck here now, so that entry
                        // brings no second notice of its leaving.
                        if self.remote.strike_room(&member.origin, member.member, room) {
                            self.broadcast(room, event);
                        }
                    }
                }
            }
        }
    }
}

/// The members `named` splits into: this node's (`me`) that are in the
/// room, and other nodes'.
fn split(named: &[MemberRef], me: &str, members: &[MemberId]) -> (Vec<MemberId>, Vec<MemberRef>) {
    let mut here = Vec::new();
    let mut there = Vec::new();
    for member in named {
        if member.origin == me {
            let id = MemberId(member.member);
            if members.contains(&id) {
                here.push(id);
            }
        } else {
            there.push(member.clone());
        }
    }
    (here, there)
}

impl Room {
    /// Takes the topic, the flags and the making time of `entry`.
    fn take_settings(&mut self, entry: &RoomEntry) {
        self.topic = entry.topic.as_ref().map(|topic| Topic {
            text: topic.text.clone(),
            by: topic.by.clone(),
            at: topic.at,
        });
        self.topic_locked = entry.topic_locked;
        self.secret = entry.secret;
        self.invite_only = entry.invite_only;
        self.moderated = entry.moderated;
        self.external = entry.external;
        if entry.since > 0 {
            self.since = entry.since;
        }
    }

    /// Whether another node's member is among its operators (`o`) or voiced.
    pub fn ranks_remote(&self, flag: char, member: &RemoteMember) -> bool {
        let list = match flag {
            'o' => &self.remote_ops,
            _ => &self.remote_voiced,
        };
        (list.iter()).any(|named| named.origin == member.origin && named.member == member.member)
    }
}
