//! Rooms: joining, leaving, listing, and each room's recent past.

use super::state::State;
use super::{HubConfig, MemberId};
use crate::protocol::text::normalize_room;
use crate::protocol::{ErrorCode, LeaveReason, MessageRecord, RoomInfo, ServerEvent};

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

    pub(super) fn room_size(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |room| room.members.len())
    }

    pub(super) fn nicks_in(&self, room: &str) -> Vec<String> {
        self.rooms.get(room).map_or_else(Vec::new, |room| {
            room.members
                .iter()
                .filter_map(|id| self.members.get(id).map(|member| member.nick.clone()))
                .collect()
        })
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
        member.current = Some(room.clone());
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

    pub(super) fn part(&mut self, config: &HubConfig, id: MemberId, named: Option<&str>) {
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
        let left = ServerEvent::Leave {
            room: room.clone(),
            nick,
            reason: LeaveReason::Part,
            detail: None,
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
        if let Some(room_state) = self.rooms.get_mut(room) {
            room_state.members.retain(|member| *member != id);
            if room_state.members.is_empty() && room != config.default_room {
                self.rooms.remove(room);
            }
        }
    }

    pub(super) fn who(&mut self, id: MemberId, named: Option<&str>) {
        let Some(room) = self.target_room(id, named) else {
            return;
        };
        if !self.rooms.contains_key(&room) {
            self.deliver_event(
                id,
                ServerEvent::error_about(
                    ErrorCode::BadRoom,
                    &room,
                    format!("no such room: #{room}"),
                ),
            );
            return;
        }
        let nicks = self.nicks_in(&room);
        let count = nicks.len();
        self.deliver_event(id, ServerEvent::Members { room, nicks, count });
    }

    pub(super) fn list_rooms(&mut self, id: MemberId) {
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
}

/// The `drops` label for a member the server removed, from the detail
/// the room was told.
/// Whether a room of `members` (counting the one joining or leaving) is too
/// big to announce joins and leaves and to list members on join.
pub(super) fn is_big(config: &HubConfig, members: usize) -> bool {
    config.big_room != 0 && members > config.big_room
}
