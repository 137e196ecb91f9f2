//! Members: admission, nicknames, the welcome, and leaving.

use std::net::IpAddr;

use tokio::sync::oneshot;

use super::cluster::{Claimed, ClusterRequest, Presence, RemoteMember};
use super::outbox::{outbox, pressure_mark};
use super::rooms::is_big;
use super::state::{Member, OperGuess, Room, State, CONSOLE_SENDQ};
use super::{DoorKind, HubConfig, MemberId, Membership, NickRefusal, Refusal, Start, CONSOLE_NICK};
use crate::metrics::DoorLabel;
use crate::protocol::text::{nick_key, normalize_room, sanitize, validate_nick, MAX_NICK_CHARS};
use crate::protocol::{
    Departure, DropReason, ErrorCode, LeaveReason, Outgoing, Password, Person, ServerEvent,
};
use std::sync::Arc;

/// Addresses whose operator guesses are remembered at once, at most.
const MAX_OPER_GUESSERS: usize = 4096;

impl State {
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

    /// Counts one more connection from `ip` toward the limits (a member,
    /// or a connection that may become one).
    pub(super) fn count_in(&mut self, ip: Option<IpAddr>) {
        self.counted += 1;
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
    }

    /// Undoes one [`State::count_in`]. (Shutdown zeroes the counts while
    /// reservations may still be out: they give back nothing then.)
    pub(super) fn count_out(&mut self, ip: Option<IpAddr>) {
        self.counted = self.counted.saturating_sub(1);
        if let Some(ip) = ip {
            if let Some(count) = self.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Adds a member, already counted toward the limits (the console never
    /// is).
    pub(super) fn add_member(
        &mut self,
        config: &HubConfig,
        door: DoorKind,
        ip: Option<IpAddr>,
        nick: Option<&str>,
        start: Start,
    ) -> Membership {
        let id = MemberId(self.next_member);
        self.next_member += 1;
        let nick = match nick {
            Some(nick) => nick.to_string(),
            None => self.fresh_guest_nick(),
        };
        // The console never holds anyone: its terminal may be paused.
        let (sendq, pressure) = match (door, config.sendq) {
            (DoorKind::Console, _) => (CONSOLE_SENDQ, usize::MAX),
            (_, 0) => (usize::MAX, pressure_mark(usize::MAX)),
            (_, limit) => (limit, pressure_mark(limit)),
        };
        let (outbox, outbox_rx) = outbox(sendq, pressure);
        let (dropped, dropped_rx) = oneshot::channel();
        let key = nick_key(&nick);
        if let (Some(cluster), false) = (&self.cluster, door == DoorKind::Console) {
            cluster.ask(ClusterRequest::Claim {
                member: id,
                nick: nick.clone(),
                key: key.clone(),
                forced: true,
                presence: Presence {
                    nick: nick.clone(),
                    door: door.name().to_string(),
                    rooms: Vec::new(),
                    away: None,
                    invisible: false,
                },
            });
        }
        self.nicks.insert(key, id);
        self.metrics
            .connections
            .get_or_create(&DoorLabel { door: door.name() })
            .inc();
        let room = (start == Start::InDefaultRoom).then(|| config.default_room.clone());
        self.members.insert(
            id,
            Member {
                nick: nick.clone(),
                door,
                ip,
                rooms: room.iter().cloned().collect(),
                current: room.clone(),
                outbox,
                dropped: Some(dropped),
                // Nowhere to be announced: its joins are its news.
                announced: room.is_none(),
                away: None,
                invisible: false,
                operator: false,
                user: None,
                realname: None,
                invited_to: Vec::new(),
            },
        );
        if let Some(room) = room {
            self.rooms.entry(room).or_default().members.push(id);
        }
        self.welcome(config, id);
        // The console is the server itself: no reason to wait for a name.
        if door == DoorKind::Console {
            self.arrive(config, id);
        }
        tracing::info!(?door, ?ip, %nick, "member connected");
        Membership {
            id,
            nick,
            outbox: outbox_rx,
            dropped: dropped_rx,
        }
    }

    /// Tells the default room the member is here, once, if it still is
    /// (see [`Member::announced`]; rooms it joined heard at the join).
    ///
    /// [`Member::announced`]: super::state::Member::announced
    pub(super) fn arrive(&mut self, config: &HubConfig, id: MemberId) {
        let Some(member) = self.members.get_mut(&id).filter(|member| !member.announced) else {
            return;
        };
        member.announced = true;
        let nick = member.nick.clone();
        let room = config.default_room.clone();
        if member.rooms.contains(&room) && !is_big(config, self.room_size(&room)) {
            let joined = ServerEvent::Join {
                room: room.clone(),
                nick,
            };
            self.broadcast_except(&room, id, joined);
        }
        self.show(config, id);
    }

    pub(super) fn is_announced(&self, id: MemberId) -> bool {
        self.members.get(&id).is_some_and(|member| member.announced)
    }

    /// Whether `room` has heard of the member: any room it joined, and the
    /// default room once it is announced.
    pub(super) fn is_seen_in(&self, config: &HubConfig, id: MemberId, room: &str) -> bool {
        self.is_announced(id) || room != config.default_room
    }

    fn fresh_guest_nick(&mut self) -> String {
        loop {
            let nick = match &self.cluster {
                Some(cluster) => {
                    let number = self.next_guest.to_string();
                    // Within the longest nick, shortening the node's name.
                    let room = MAX_NICK_CHARS - "guest--".len() - number.len();
                    let node: String = cluster.node.chars().take(room).collect();
                    format!("guest-{node}-{number}")
                }
                None => format!("guest-{}", self.next_guest),
            };
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

    /// Whether `nick` may be taken by `by` (a newcomer: `None`); its key.
    pub(super) fn check_nick(
        &self,
        nick: &str,
        by: Option<MemberId>,
    ) -> Result<String, NickRefusal> {
        validate_nick(nick).map_err(NickRefusal::Invalid)?;
        let key = nick_key(nick);
        let taken = match self.nicks.get(&key) {
            Some(owner) => Some(*owner) != by,
            None => key == nick_key(CONSOLE_NICK),
        };
        if taken {
            return Err(NickRefusal::Taken);
        }
        Ok(key)
    }

    /// Renames a member, or, in a cluster, asks the cluster for the nick
    /// first (then its key: the answer comes to [`State::nick_claimed`]).
    pub(super) fn change_nick(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        nick: &str,
    ) -> Option<String> {
        let key = match self.check_nick(nick, Some(id)) {
            Ok(key) => key,
            Err(refusal) => {
                self.deliver_event(id, refusal.to_event(nick));
                return None;
            }
        };
        match &self.cluster {
            // Only another spelling of its own nick is the member's already.
            Some(cluster) if key != nick_key(&self.members[&id].nick) => {
                let mut presence = self.presence(config, id);
                presence.nick = nick.to_string();
                cluster.ask(ClusterRequest::Claim {
                    member: id,
                    nick: nick.to_string(),
                    key: key.clone(),
                    forced: false,
                    presence,
                });
                Some(key)
            }
            _ => {
                self.rename(config, id, nick, key);
                None
            }
        }
    }

    /// The cluster's answer to a claim of `nick` for `id`.
    pub(super) fn nick_claimed(
        &mut self,
        config: &HubConfig,
        request: ClusterRequest,
        claimed: Claimed,
    ) {
        let ClusterRequest::Claim {
            member: id,
            nick,
            key,
            forced,
            ..
        } = request
        else {
            return;
        };
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let Some(member) = self.members.get(&id) else {
            if claimed == Claimed::Granted {
                cluster.ask(ClusterRequest::Release { key });
            }
            return;
        };
        let holds_it = nick_key(&member.nick) == key;
        match (claimed, forced) {
            (Claimed::Granted, true) => {}
            (Claimed::Granted, false) => match self.check_nick(&nick, Some(id)) {
                Ok(_) => {
                    let old = nick_key(&self.members[&id].nick);
                    self.rename(config, id, &nick, key);
                    cluster.ask(ClusterRequest::Release { key: old });
                }
                // Taken here meanwhile (by a guest, say): given back.
                Err(refusal) => {
                    cluster.ask(ClusterRequest::Release { key });
                    self.deliver_event(id, refusal.to_event(&nick));
                }
            },
            // A name it has that another node's member holds: it yields.
            (Claimed::Taken, true) if holds_it => self.yield_nick(config, id),
            (Claimed::Taken, _) => {
                if !forced {
                    self.deliver_event(id, NickRefusal::Taken.to_event(&nick));
                }
            }
            (Claimed::Unavailable, _) => {
                if !forced {
                    let why = "nicks cannot change while the cluster link is down; try again";
                    let error = ServerEvent::error_about(ErrorCode::Unavailable, &nick, why);
                    self.deliver_event(id, error);
                }
            }
        }
    }

    /// Renames a member whose nick another node holds to a fresh guest
    /// name, and claims that.
    pub(super) fn yield_nick(&mut self, config: &HubConfig, id: MemberId) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let nick = self.members[&id].nick.clone();
        let guest = self.fresh_guest_nick();
        let guest_key = nick_key(&guest);
        tracing::info!(%nick, %guest, "nick held elsewhere in the cluster; renamed");
        self.rename(config, id, &guest, guest_key.clone());
        let presence = self.presence(config, id);
        cluster.ask(ClusterRequest::Claim {
            member: id,
            nick: guest,
            key: guest_key,
            forced: true,
            presence,
        });
    }

    /// What other nodes see of a member.
    fn presence(&self, config: &HubConfig, id: MemberId) -> Presence {
        let member = &self.members[&id];
        Presence {
            nick: member.nick.clone(),
            door: member.door.name().to_string(),
            // Secret rooms too: every node knows which rooms are (their
            // entries say), and hides them from those not in them.
            rooms: (member.rooms.iter())
                .filter(|room| self.is_seen_in(config, id, room))
                .cloned()
                .collect(),
            away: member.away.clone(),
            invisible: member.invisible,
        }
    }

    /// In a cluster, tells the other nodes what they now see of a member
    /// (its rooms or away changed).
    pub(super) fn show(&self, config: &HubConfig, id: MemberId) {
        let (Some(cluster), Some(member)) = (&self.cluster, self.members.get(&id)) else {
            return;
        };
        if member.door == DoorKind::Console {
            return;
        }
        cluster.ask(ClusterRequest::Show {
            key: nick_key(&member.nick),
            presence: self.presence(config, id),
        });
    }

    /// What another node's member now is, from its claim: news of a
    /// rename, or of rooms joined and left, for the members here who
    /// share them.
    pub(super) fn remote_seen(&mut self, config: &HubConfig, key: String, seen: RemoteMember) {
        // The key was another member's, whose claim lapsed: that one is
        // gone, and this one is new.
        if (self.remote.get(&key)).is_some_and(|held| {
            (held.origin.as_str(), held.member) != (seen.origin.as_str(), seen.member)
        }) {
            self.remote_gone(config, &key, LeaveReason::Lost);
        }
        // An older entry of the member than the one known (its old nick's,
        // renewed just before its node freed it) says nothing new.
        let known = (self.remote.key_of(&seen.origin, seen.member))
            .and_then(|known| self.remote.get(known));
        if known.is_some_and(|known| seen.version < known.version) {
            return;
        }
        let before = self.remote.insert(key, seen.clone());
        let before_rooms = before
            .as_ref()
            .map_or_else(Vec::new, |old| old.presence.rooms.clone());
        if let Some(old) = &before {
            if old.presence.nick != seen.presence.nick {
                let renamed = Arc::new(Outgoing::new(ServerEvent::Nick {
                    old: old.presence.nick.clone(),
                    new: seen.presence.nick.clone(),
                }));
                // A big room hears of nobody's comings and goings.
                let mut told: Vec<MemberId> = (before_rooms.iter())
                    .filter(|room| !is_big(config, self.room_size(room)))
                    .filter_map(|room| self.rooms.get(room))
                    .flat_map(|room| room.members.iter().copied())
                    .collect();
                told.sort_unstable();
                told.dedup();
                for member in told {
                    self.deliver(member, renamed.clone());
                }
            }
        }
        let nick = seen.presence.nick.clone();
        let joined: Vec<String> = (seen.presence.rooms.iter())
            .filter(|room| !before_rooms.contains(room))
            .filter(|room| !is_big(config, self.room_size(room)))
            .cloned()
            .collect();
        for room in &joined {
            let joined = ServerEvent::Join {
                room: room.clone(),
                nick: nick.clone(),
            };
            self.broadcast(room, joined);
        }
        let left: Vec<&String> = (before_rooms.iter())
            .filter(|room| !seen.presence.rooms.contains(room))
            // Its size as it was, with the member.
            .filter(|room| !is_big(config, self.room_size(room) + 1))
            .collect();
        for room in left {
            let left = ServerEvent::Leave {
                room: room.clone(),
                nick: nick.clone(),
                reason: LeaveReason::Part,
                detail: None,
            };
            self.broadcast(room, left);
        }
    }

    /// Another node's member has gone: its node let go of its claim
    /// (`Quit`), or stopped renewing it (`Lost`: the node died).
    pub(super) fn remote_gone(&mut self, config: &HubConfig, key: &str, reason: LeaveReason) {
        let Some(gone) = self.remote.remove(key) else {
            return;
        };
        for room in &gone.presence.rooms {
            if is_big(config, self.room_size(room) + 1) {
                continue;
            }
            let left = ServerEvent::Leave {
                room: room.clone(),
                nick: gone.presence.nick.clone(),
                reason,
                detail: None,
            };
            self.broadcast(room, left);
        }
    }

    /// Other nodes' members in `room`, by nick.
    pub(super) fn remote_nicks_in<'a>(&'a self, room: &str) -> impl Iterator<Item = &'a str> + 'a {
        (self.remote.in_room(room)).map(|member| member.presence.nick.as_str())
    }

    /// Gives the member `nick` (whose key is `key`) and tells whoever
    /// knows it.
    fn rename(&mut self, config: &HubConfig, id: MemberId, nick: &str, key: String) {
        let member = self.members.get_mut(&id).expect("checked by handle");
        let old = std::mem::replace(&mut member.nick, nick.to_string());
        self.nicks.remove(&nick_key(&old));
        self.nicks.insert(key, id);
        tracing::info!(%old, new = %nick, "nick change");
        let event = Arc::new(Outgoing::new(ServerEvent::Nick {
            old,
            new: nick.to_string(),
        }));
        for member in self.audience(config, id) {
            self.deliver(member, event.clone());
        }
        self.show(config, id);
    }

    /// The member and everyone who shares a room with it, once each (in
    /// the rooms that have heard of the member): who hears of a change
    /// to it.
    fn audience(&self, config: &HubConfig, id: MemberId) -> Vec<MemberId> {
        let mut audience = vec![id];
        for room in &self.members[&id].rooms {
            if self.is_seen_in(config, id, room) {
                audience.extend(&self.rooms[room].members);
            }
        }
        audience.sort_unstable();
        audience.dedup();
        audience
    }

    /// Removes a member from the hub and tells its rooms how it left.
    /// With `tell`, the member's door hears why on its `dropped` channel
    /// and closes.
    pub(super) fn remove_member(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        departure: Departure,
        tell: bool,
    ) {
        let Some(mut member) = self.members.remove(&id) else {
            return;
        };
        let key = nick_key(&member.nick);
        self.nicks.remove(&key);
        if let (Some(cluster), false) = (&self.cluster, member.door == DoorKind::Console) {
            cluster.ask(ClusterRequest::Release { key });
        }
        self.metrics
            .connections
            .get_or_create(&DoorLabel {
                door: member.door.name(),
            })
            .dec();
        match &departure {
            Departure::Lost => self.metrics.drop_for("lost"),
            Departure::Dropped(why) => self.metrics.drop_for(why.label()),
            Departure::Quit { .. } => {}
        }
        if member.door != DoorKind::Console {
            self.count_out(member.ip);
        }
        let (reason, detail) = (departure.leave_reason(), departure.detail());
        // A quit reason is something the member said: it is not logged.
        let why = match &departure {
            Departure::Dropped(why) => why.label(),
            Departure::Quit { .. } | Departure::Lost => "",
        };
        tracing::info!(nick = %member.nick, ?reason, why, "member left");
        for room in &member.invited_to {
            if let Some(room) = self.rooms.get_mut(room) {
                room.invited.retain(|invited| *invited != id);
            }
        }
        for room in std::mem::take(&mut member.rooms) {
            let was_big = is_big(config, self.room_size(&room));
            self.leave_room(config, id, &room);
            if was_big || (!member.announced && room == config.default_room) {
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
        if let (true, Departure::Dropped(why), Some(dropped)) =
            (tell, departure, member.dropped.take())
        {
            // The door may be gone already; then there is no one to tell.
            let _ = dropped.send(why);
        }
    }

    /// Forgets every member, telling each one's door why. No leave notices:
    /// there is no one left to read them.
    pub(super) fn drop_everyone(&mut self, why: DropReason) {
        self.closed = true;
        for (_, mut member) in self.members.drain() {
            self.metrics
                .connections
                .get_or_create(&DoorLabel {
                    door: member.door.name(),
                })
                .dec();
            if let Some(dropped) = member.dropped.take() {
                let _ = dropped.send(why.clone());
            }
        }
        self.nicks.clear();
        self.per_ip.clear();
        self.counted = 0;
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
    }

    /// Answers a lookup: the members among `targets` (nicks, masks with
    /// `*` and `?`, rooms), each once, in the order found.
    pub(super) fn lookup(&mut self, id: MemberId, targets: &[String]) {
        // Members here by id, other nodes' by their nick's key: in the
        // order asked.
        let mut found: Vec<Result<MemberId, String>> = Vec::new();
        let mut seen: std::collections::HashSet<Result<MemberId, String>> = Default::default();
        for target in targets {
            let matches: Vec<Result<MemberId, String>> = if target.starts_with('#') {
                let room = normalize_room(target).ok();
                let here = (room.as_ref())
                    .and_then(|room| self.rooms.get(room))
                    .map_or_else(Vec::new, |room| room.members.clone());
                let elsewhere = (room.iter())
                    .flat_map(|room| self.remote.in_room(room))
                    .map(|member| nick_key(&member.presence.nick));
                here.into_iter().map(Ok).chain(elsewhere.map(Err)).collect()
            } else if target.contains(['*', '?']) {
                let mask = target.to_lowercase();
                let mut ids: Vec<MemberId> = self
                    .members
                    .iter()
                    .filter(|(_, member)| wildcard(&mask, &member.nick.to_lowercase()))
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort_unstable();
                let mut elsewhere: Vec<String> = (self.remote.iter())
                    .filter(|member| wildcard(&mask, &member.presence.nick.to_lowercase()))
                    .map(|member| nick_key(&member.presence.nick))
                    .collect();
                elsewhere.sort_unstable();
                ids.into_iter()
                    .map(Ok)
                    .chain(elsewhere.into_iter().map(Err))
                    .collect()
            } else {
                // A nick is one member's across the cluster: here, or elsewhere.
                match self.find_nick(target) {
                    Some(here) => vec![Ok(here)],
                    None => (self.remote.get(&nick_key(target)))
                        .map(|member| Err(nick_key(&member.presence.nick)))
                        .into_iter()
                        .collect(),
                }
            };
            for member in matches {
                // A set beside the list: `WHO *` over a big cluster stays linear.
                if seen.insert(member.clone()) {
                    found.push(member);
                }
            }
        }
        let people = (found.iter())
            .filter_map(|member| match member {
                Ok(here) => self.person(*here, id),
                Err(key) => (self.remote.get(key)).map(|member| self.remote_person(member, id)),
            })
            .collect();
        let asked = targets.to_vec();
        self.deliver_event(id, ServerEvent::Found { asked, people });
    }

    /// What a lookup shows of another node's member: what its node shows of
    /// it (its rooms' ranks, and what an IRC client said in `USER`, stay
    /// there).
    fn remote_person(&self, member: &RemoteMember, asker: MemberId) -> Person {
        let shares_a_room = (self.members.get(&asker)).is_some_and(|asker| {
            asker
                .rooms
                .iter()
                .any(|room| member.presence.rooms.contains(room))
        });
        let asker_is_in = |room: &String| {
            (self.members.get(&asker)).is_some_and(|asker| asker.rooms.contains(room))
        };
        Person {
            nick: member.presence.nick.clone(),
            door: member.presence.door.clone(),
            rooms: (member.presence.rooms.iter())
                .filter(|room| !self.is_secret(room) || asker_is_in(room))
                .cloned()
                .collect(),
            ops: Vec::new(),
            voiced: Vec::new(),
            hidden: member.presence.invisible && !shares_a_room,
            operator: false,
            away: member.presence.away.clone(),
            user: None,
            realname: None,
        }
    }

    fn person(&self, id: MemberId, asker: MemberId) -> Option<Person> {
        let member = self.members.get(&id)?;
        let shares_a_room = || {
            let asker_rooms = self.members.get(&asker).map(|asker| &asker.rooms);
            asker_rooms.is_some_and(|rooms| rooms.iter().any(|room| member.rooms.contains(room)))
        };
        let hidden = member.invisible && id != asker && !shares_a_room();
        let rooms_where = |which: fn(&Room) -> &Vec<MemberId>| -> Vec<String> {
            member
                .rooms
                .iter()
                .filter(|room| {
                    self.rooms
                        .get(*room)
                        .is_some_and(|state| which(state).contains(&id))
                })
                .cloned()
                .collect()
        };
        Some(Person {
            nick: member.nick.clone(),
            door: member.door.name().to_string(),
            rooms: member.rooms.clone(),
            ops: rooms_where(|room| &room.ops),
            voiced: rooms_where(|room| &room.voiced),
            hidden,
            operator: member.operator,
            away: member.away.clone(),
            user: member.user.clone(),
            realname: member.realname.clone(),
        })
    }

    /// Makes the member invisible to strangers' lookups, or not, and tells it.
    pub(super) fn set_invisible(&mut self, config: &HubConfig, id: MemberId, on: bool) {
        if let Some(member) = self.members.get_mut(&id) {
            member.invisible = on;
        }
        self.deliver_event(id, ServerEvent::Invisible { on });
        self.show(config, id);
    }

    /// Makes the member a server operator (`Some(name)`), or no longer,
    /// and tells it.
    /// Lets an operator guess through to its password check if the server
    /// has operators and the guesser's address may guess now; tells it why
    /// not otherwise. A check costs a core tens of milliseconds, so each
    /// address has one at a time, and waits after each wrong one.
    pub(super) fn may_guess_oper(
        &mut self,
        config: &HubConfig,
        id: MemberId,
        name: String,
        password: Password,
    ) -> Option<OperGuess> {
        if config.operators.is_empty() {
            let why = "this server has no operators";
            self.deliver_event(id, ServerEvent::error(ErrorCode::NoOperators, why));
            return None;
        }
        let ip = self.members[&id].ip;
        if let Some(ip) = ip {
            let now = config.clock.now_millis();
            match self.oper_guesses.get(&ip) {
                Some(None) => {
                    self.try_oper_later(id, "an operator check from your address is running");
                    return None;
                }
                Some(Some(until)) if *until > now => {
                    self.try_oper_later(id, "wait a moment after a wrong operator password");
                    return None;
                }
                _ => {}
            }
            if self.oper_guesses.len() >= MAX_OPER_GUESSERS {
                self.oper_guesses
                    .retain(|_, until| until.is_none_or(|until| until > now));
            }
            if self.oper_guesses.len() >= MAX_OPER_GUESSERS {
                self.try_oper_later(id, "too many operator checks at once");
                return None;
            }
            self.oper_guesses.insert(ip, None);
        }
        Some(OperGuess { name, password, ip })
    }

    /// Tells a member to guess again later (IRC's 263).
    pub(super) fn try_oper_later(&mut self, id: MemberId, why: &str) {
        let try_again = format!("{why}; try again in a moment");
        self.deliver_event(id, ServerEvent::error(ErrorCode::TryAgain, try_again));
    }

    /// Ends a guess from `ip`: a wrong one makes the address wait
    /// `oper_retry_ms` for its next; one not checked (`None`: the checks
    /// were busy) or a right one lets it guess again at once.
    pub(super) fn oper_guessed(
        &mut self,
        config: &HubConfig,
        ip: Option<IpAddr>,
        right: Option<bool>,
    ) {
        let Some(ip) = ip else { return };
        match right {
            Some(false) => {
                let until = config.clock.now_millis() + config.oper_retry_ms;
                self.oper_guesses.insert(ip, Some(until));
            }
            _ => drop(self.oper_guesses.remove(&ip)),
        }
    }

    pub(super) fn set_operator(&mut self, id: MemberId, name: Option<String>) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.operator = name.is_some();
        match &name {
            Some(name) => tracing::info!(nick = %member.nick, operator = %name, "server operator"),
            None => tracing::info!(nick = %member.nick, "no longer a server operator"),
        }
        self.deliver_event(id, ServerEvent::Operator { name });
    }

    /// Marks the member away (with why) or back, and tells it.
    pub(super) fn away(&mut self, config: &HubConfig, id: MemberId, text: Option<&str>) {
        let text = text
            .map(|text| sanitize(text).into_owned())
            .filter(|text| !text.trim().is_empty());
        let member = self.members.get_mut(&id).expect("checked by handle");
        let changed = member.away != text;
        member.away = text.clone();
        let nick = member.nick.clone();
        self.deliver_event(
            id,
            ServerEvent::Away {
                nick: nick.clone(),
                text: text.clone(),
            },
        );
        if changed {
            self.show(config, id);
            let event = Arc::new(Outgoing::new(ServerEvent::Presence { nick, away: text }));
            for member in self.audience(config, id) {
                if member != id {
                    self.deliver(member, event.clone());
                }
            }
        }
    }

    pub(super) fn find_nick(&self, nick: &str) -> Option<MemberId> {
        self.nicks.get(&nick_key(nick)).copied()
    }

    pub(super) fn nick_of(&self, id: MemberId) -> Option<String> {
        self.members.get(&id).map(|member| member.nick.clone())
    }

    /// Members on every node (the console counts toward no limit).
    pub(super) fn counted_members(&self) -> usize {
        self.counted + self.remote.len()
    }
}

/// Whether `text` matches `mask`, where `*` stands for any run of
/// characters and `?` for one (IRC's masks).
fn wildcard(mask: &str, text: &str) -> bool {
    let (mask, text): (Vec<char>, Vec<char>) = (mask.chars().collect(), text.chars().collect());
    // The classic two-pointer match, backtracking to the last `*`.
    let (mut m, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if m < mask.len() && (mask[m] == '?' || mask[m] == text[t]) {
            m += 1;
            t += 1;
        } else if m < mask.len() && mask[m] == '*' {
            star = Some((m, t));
            m += 1;
        } else if let Some((star_m, star_t)) = star {
            m = star_m + 1;
            t = star_t + 1;
            star = Some((star_m, star_t + 1));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod wildcard_tests {
    use super::wildcard;

    #[test]
    fn masks_match_as_irc_means_them() {
        assert!(wildcard("*", "anyone"));
        assert!(wildcard("cool*", "coolnick"));
        assert!(wildcard("c?ol*k", "coolnick"));
        assert!(wildcard("*nick", "coolnick"));
        assert!(!wildcard("cool?", "coolnick"));
        assert!(!wildcard("x*", "coolnick"));
        assert!(wildcard("小*", "小明"));
    }
}
