//! In a cluster: the other nodes' members, as their claims in the
//! cluster's directory say, indexed the ways the hub asks (by nick key,
//! by node run and member id, by room), so no question scans them all.

use std::collections::{BTreeSet, HashMap};

use super::cluster::RemoteMember;

/// Other nodes' members. Empty on a single node.
#[derive(Debug, Default)]
pub struct RemoteMembers {
    /// By the key of their nick's claim.
    by_key: HashMap<String, RemoteMember>,
    /// That key, by node run and member id (to see a rename as one).
    keys: HashMap<(String, u64), String>,
    /// Their keys, by room.
    in_room: HashMap<String, BTreeSet<String>>,
}

impl RemoteMembers {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The member whose nick has the key `key`.
    pub fn get(&self, key: &str) -> Option<&RemoteMember> {
        self.by_key.get(key)
    }

    /// The key member `member` of node run `origin` is known by.
    pub fn key_of(&self, origin: &str, member: u64) -> Option<&String> {
        self.keys.get(&(origin.to_string(), member))
    }

    /// Records `member` under `key`, and returns the same member's entry
    /// as it was before, under this key or (renamed) another.
    pub fn insert(&mut self, key: String, member: RemoteMember) -> Option<RemoteMember> {
        let who = (member.origin.clone(), member.member);
        // Someone else under this key (its claim lapsed): forgotten, so
        // no index keeps it.
        if (self.by_key.get(&key)).is_some_and(|held| (held.origin.clone(), held.member) != who) {
            self.remove(&key);
        }
        let old_key = self.keys.get(&who).cloned().unwrap_or_else(|| key.clone());
        let before = self.remove(&old_key);
        for room in &member.presence.rooms {
            (self.in_room.entry(room.clone()).or_default()).insert(key.clone());
        }
        self.keys.insert(who, key.clone());
        self.by_key.insert(key, member);
        before
    }

    /// Forgets the member under `key`, returning it.
    pub fn remove(&mut self, key: &str) -> Option<RemoteMember> {
        let gone = self.by_key.remove(key)?;
        let who = (gone.origin.clone(), gone.member);
        if self.keys.get(&who).is_some_and(|held| held == key) {
            self.keys.remove(&who);
        }
        for room in &gone.presence.rooms {
            if let Some(keys) = self.in_room.get_mut(room) {
                keys.remove(key);
                if keys.is_empty() {
                    self.in_room.remove(room);
                }
            }
        }
        Some(gone)
    }

    /// Takes `room` out of the rooms of member `member` of node run
    /// `origin`, ahead of its node's word; whether it was in it.
    pub fn strike_room(&mut self, origin: &str, member: u64, room: &str) -> bool {
        let Some(key) = self.key_of(origin, member).cloned() else {
            return false;
        };
        let Some(mut struck) = self.by_key.get(&key).cloned() else {
            return false;
        };
        if !struck.presence.rooms.iter().any(|joined| joined == room) {
            return false;
        }
        struck.presence.rooms.retain(|joined| joined != room);
        self.insert(key, struck);
        true
    }

    /// All of them.
    pub fn iter(&self) -> impl Iterator<Item = &RemoteMember> {
        self.by_key.values()
    }

    /// How many are in `room`.
    pub fn count_in(&self, room: &str) -> usize {
        self.in_room.get(room).map_or(0, BTreeSet::len)
    }

    /// Those in `room`.
    pub fn in_room<'a>(&'a self, room: &str) -> impl Iterator<Item = &'a RemoteMember> + 'a {
        (self.in_room.get(room).into_iter().flatten()).filter_map(|key| self.by_key.get(key))
    }

    /// The rooms any of them is in.
    pub fn rooms(&self) -> impl Iterator<Item = &String> {
        self.in_room.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::cluster::Presence;

    fn member(origin: &str, id: u64, nick: &str, rooms: &[&str]) -> RemoteMember {
        RemoteMember {
            origin: origin.to_string(),
            member: id,
            version: 1,
            presence: Presence {
                nick: nick.to_string(),
                door: "tcp".to_string(),
                rooms: rooms.iter().map(|room| room.to_string()).collect(),
                away: None,
                invisible: false,
            },
        }
    }

    #[test]
    fn a_rename_moves_a_member_to_its_new_key_and_its_rooms_follow() {
        let mut remote = RemoteMembers::default();
        assert!(remote
            .insert("ann".into(), member("n2/1", 4, "ann", &["#a", "#b"]))
            .is_none());
        assert_eq!(remote.count_in("#a"), 1);
        let before = remote.insert("anna".into(), member("n2/1", 4, "anna", &["#b"]));
        assert_eq!(before.map(|old| old.presence.nick), Some("ann".to_string()));
        assert!(remote.get("ann").is_none());
        assert_eq!(remote.count_in("#a"), 0);
        assert_eq!(remote.rooms().collect::<Vec<_>>(), ["#b"]);
        let nicks: Vec<&str> = remote
            .in_room("#b")
            .map(|m| m.presence.nick.as_str())
            .collect();
        assert_eq!(nicks, ["anna"]);
        assert_eq!(remote.key_of("n2/1", 4).map(String::as_str), Some("anna"));
        assert_eq!(remote.remove("anna").map(|m| m.member), Some(4));
        assert_eq!(remote.len(), 0);
        assert_eq!(remote.count_in("#b"), 0);
        assert!(remote.key_of("n2/1", 4).is_none());
    }

    #[test]
    fn another_member_under_a_key_replaces_the_one_before_in_every_index() {
        let mut remote = RemoteMembers::default();
        remote.insert("ann".into(), member("n2/1", 4, "ann", &["#a"]));
        let before = remote.insert("ann".into(), member("n3/1", 9, "ann", &["#b"]));
        assert!(before.is_none(), "not the same member's entry");
        assert!(remote.key_of("n2/1", 4).is_none());
        assert_eq!((remote.count_in("#a"), remote.count_in("#b")), (0, 1));
        assert_eq!(remote.len(), 1);
    }
}
