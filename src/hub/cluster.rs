//! The hub's side of a cluster. On one node a message gets its id from the
//! hub's counter and goes to the history writer. In a cluster it goes to
//! the cluster's log instead (see `crate::cluster`). The log gives it its
//! id and brings it back, in the log's order, to every node, this one
//! included, and each node stores and fans out what comes back. Until
//! then the sender's node knows its message by a ticket of its own.
//!
//! Nothing here does I/O: the outlet is a bounded queue whose far end is
//! the cluster link's task.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::MemberId;
use crate::store::StoredMessage;

/// Messages said on this node that may wait for the cluster link at once.
/// Past it the link is a slow consumer: the sender is told, and nothing
/// of it is lost, since nobody saw it.
pub const CLUSTER_QUEUE: usize = 16 * 1024;

/// What the hub asks of the cluster: about nicknames, which are unique
/// across it (a nick is a member's once the cluster has granted it, see
/// [`crate::hub::Hub::nick_claimed`]), and to carry private messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterRequest {
    /// Claim `nick` (whose `nick_key` is `key`) for `member`. A `forced`
    /// claim is for a name the member has already (a guest's, or the one
    /// an IRC client registered with): refused, the member is renamed.
    Claim {
        member: MemberId,
        nick: String,
        key: String,
        forced: bool,
        presence: Presence,
    },
    /// What other nodes see of the member holding `key` has changed.
    Show { key: String, presence: Presence },
    /// This node no longer holds `key`.
    Release { key: String },
    /// Deliver `event` (a private message) to `member` of the node run
    /// `origin`.
    Deliver {
        origin: String,
        member: u64,
        event: crate::protocol::ServerEvent,
    },
}

/// What the other nodes see of a member: kept with its nick's claim, so
/// the claim's lease covers it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub nick: String,
    pub door: String,
    /// The rooms that have heard of it.
    pub rooms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
    /// Left out of lookups by mask of those who share no room with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invisible: bool,
}

/// A member of another node, as its claim says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMember {
    /// Its node's run, `NODE/BOOT`.
    pub origin: String,
    /// Its id on that node.
    pub member: u64,
    /// Counts up each time its node shows a change of it: of two entries
    /// for one member (under its old nick and its new one, say), the
    /// higher is what it is now.
    #[serde(default)]
    pub version: u64,
    #[serde(flatten)]
    pub presence: Presence,
}

/// What the cluster answered a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    Granted,
    /// Someone on some node has it.
    Taken,
    /// The cluster could not be asked (its link is down).
    Unavailable,
}

/// A member anywhere in the cluster: its node's run (`NODE/BOOT`) and its
/// id there. Never reused: a node's next run has another boot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberRef {
    pub origin: String,
    pub member: u64,
}

/// A room's topic, as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    pub text: String,
    pub by: String,
    pub at: u64,
}

/// Members a room entry names as operators, voiced or invited, at most
/// each: past it the earliest named is struck (a dead node's members are
/// never struck otherwise, though they match no one).
pub const MAX_NAMED: usize = 256;

/// See [`RoomEntry::written`]: longer than any member's coming takes to
/// reach every node.
pub const LEFT_OVER_MS: u64 = 60_000;

/// A room's own state, the same on every node: its entry in the cluster's
/// rooms bucket, changed only by compare-and-set (see `crate::cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    pub room: String,
    #[serde(default)]
    pub topic: Option<TopicEntry>,
    #[serde(default = "yes")]
    pub topic_locked: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub invite_only: bool,
    #[serde(default)]
    pub moderated: bool,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub ops: Vec<MemberRef>,
    #[serde(default)]
    pub voiced: Vec<MemberRef>,
    #[serde(default)]
    pub invited: Vec<MemberRef>,
    /// When it was made, milliseconds since the Unix epoch.
    #[serde(default)]
    pub since: u64,
    /// When it was last written, by its writer's clock (ms since the Unix
    /// epoch): an entry of a room with nobody in it, unchanged for
    /// [`LEFT_OVER_MS`], is left over (its room's last members went at
    /// once, or their node died), and the next to come makes the room anew.
    #[serde(default)]
    pub written: u64,
    /// The change that made this revision of it, for every node to tell
    /// its members.
    #[serde(default)]
    pub change: Option<RoomChange>,
}

fn yes() -> bool {
    true
}

/// A change to a room's entry, made on the node of the member who asked
/// and applied by compare-and-set to whatever the entry is by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomChange {
    /// `by` made the room, which had nobody on any node: an entry still
    /// at revision `after` (the one `by`'s node knew, if any) is left
    /// over and starts anew, run by `by`; a newer one means someone else
    /// made the room at the same time, and runs it (the change is void).
    Found {
        by: MemberRef,
        since: u64,
        after: Option<u64>,
    },
    Topic {
        topic: Option<TopicEntry>,
        by: String,
        at: u64,
    },
    /// Flags on or off, and ranks (`o`, `v`) given or taken (each with
    /// the nick it was asked by), as `modes` (IRC's `+o-t bob`) tells
    /// them. Applied, it keeps only what changed the entry.
    Modes {
        flags: Vec<(bool, char)>,
        ranks: Vec<(bool, char, MemberRef, String)>,
        modes: String,
        by: String,
    },
    Invite {
        member: MemberRef,
        nick: String,
        by: MemberRef,
        by_nick: String,
    },
    Kick {
        member: MemberRef,
        nick: String,
        by: String,
        reason: Option<String>,
    },
    /// `member` left, or came in on its invitation: struck from the
    /// invitations and, with `ranks`, from the operators and voiced.
    Forget { member: MemberRef, ranks: bool },
}

impl RoomEntry {
    /// A room as it starts: `+nt`, nobody named.
    pub fn new(room: &str) -> Self {
        RoomEntry {
            room: room.to_string(),
            topic: None,
            topic_locked: true,
            secret: false,
            invite_only: false,
            moderated: false,
            external: false,
            ops: Vec::new(),
            voiced: Vec::new(),
            invited: Vec::new(),
            since: 0,
            written: 0,
            change: None,
        }
    }

    /// Applies `change` to the entry, whose revision is `revision` (`None`:
    /// there is no entry yet); `false` if the change is void.
    pub fn apply(&mut self, revision: Option<u64>, change: &RoomChange) -> bool {
        match change {
            RoomChange::Found { by, since, after } => {
                // An entry other than the one its node knew (if any) was
                // made meanwhile by someone else.
                if revision.is_some() && revision != *after {
                    return false;
                }
                *self = RoomEntry::new(&self.room);
                self.since = *since;
                self.ops = vec![by.clone()];
            }
            RoomChange::Topic { topic, .. } => self.topic = topic.clone(),
            RoomChange::Modes {
                flags, ranks, by, ..
            } => {
                let (mut applied, mut arguments) = (Vec::new(), Vec::new());
                let (mut kept_flags, mut kept_ranks) = (Vec::new(), Vec::new());
                for &(on, flag) in flags {
                    let setting = match flag {
                        'i' => &mut self.invite_only,
                        'm' => &mut self.moderated,
                        's' => &mut self.secret,
                        't' => &mut self.topic_locked,
                        'n' => &mut self.external,
                        _ => continue,
                    };
                    // n is "no external messages": on when not external.
                    let value = if flag == 'n' { !on } else { on };
                    if std::mem::replace(setting, value) != value {
                        applied.push((on, flag));
                        kept_flags.push((on, flag));
                    }
                }
                for (on, flag, member, nick) in ranks {
                    let list = match flag {
                        'o' => &mut self.ops,
                        _ => &mut self.voiced,
                    };
                    if list.contains(member) == *on {
                        continue;
                    }
                    list.retain(|named| named != member);
                    if *on {
                        name(list, member);
                    }
                    applied.push((*on, *flag));
                    arguments.push(nick.clone());
                    kept_ranks.push((*on, *flag, member.clone(), nick.clone()));
                }
                if applied.is_empty() {
                    return false;
                }
                self.change = Some(RoomChange::Modes {
                    flags: kept_flags,
                    ranks: kept_ranks,
                    modes: super::rooms::mode_string(&applied, &arguments),
                    by: by.clone(),
                });
                return true;
            }
            RoomChange::Invite { member, .. } => name(&mut self.invited, member),
            RoomChange::Kick { member, .. } => self.forget(member, true),
            RoomChange::Forget { member, ranks } => self.forget(member, *ranks),
        }
        self.change = Some(change.clone());
        true
    }

    fn forget(&mut self, member: &MemberRef, ranks: bool) {
        self.invited.retain(|named| named != member);
        if ranks {
            self.ops.retain(|named| named != member);
            self.voiced.retain(|named| named != member);
        }
    }
}

/// Adds `member` to `list` if it is not there, striking the earliest past
/// [`MAX_NAMED`].
fn name(list: &mut Vec<MemberRef>, member: &MemberRef) {
    if list.contains(member) {
        return;
    }
    if list.len() >= MAX_NAMED {
        list.remove(0);
    }
    list.push(member.clone());
}

/// What the hub asks of the cluster about rooms' own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRequest {
    /// Apply `change` to `room`'s entry; `member` asked, and is told if
    /// the cluster could not be asked.
    Change {
        member: MemberId,
        room: String,
        change: RoomChange,
    },
    /// `room` has nobody left on any node: its entry goes.
    Close { room: String },
}

/// Where this node's members' messages go: the cluster link's queue.
#[derive(Debug, Clone)]
pub struct ClusterOutlet {
    queue: mpsc::Sender<StoredMessage>,
    nicks: mpsc::UnboundedSender<ClusterRequest>,
    privates: mpsc::UnboundedSender<ClusterRequest>,
    rooms: mpsc::UnboundedSender<RoomRequest>,
    /// This node's name, in its guests' names (`guest-NODE-N`), which
    /// therefore never clash with another node's.
    pub node: String,
    /// This run of the node, `NODE/BOOT`, as other nodes know its members.
    pub origin: String,
}

/// The far ends of a [`ClusterOutlet`], for the cluster link to read.
pub type ClusterQueue = mpsc::Receiver<StoredMessage>;
pub type NickQueue = mpsc::UnboundedReceiver<ClusterRequest>;
pub type RoomQueue = mpsc::UnboundedReceiver<RoomRequest>;

/// What the cluster link reads from a [`ClusterOutlet`]: room messages,
/// nick requests, and private messages (`Deliver`), each on its own, so
/// none waits behind the others.
#[derive(Debug)]
pub struct ClusterEnds {
    pub messages: ClusterQueue,
    pub nicks: NickQueue,
    pub privates: NickQueue,
    pub rooms: RoomQueue,
}

impl ClusterOutlet {
    /// An outlet holding up to `capacity` messages, and its far ends.
    pub fn new(capacity: usize, node: &str, origin: &str) -> (ClusterOutlet, ClusterEnds) {
        let (queue, messages) = mpsc::channel(capacity);
        // Nick requests and private messages come at most one per
        // command, which the session's rate limit bounds.
        let (nicks, nick_requests) = mpsc::unbounded_channel();
        let (privates, private_messages) = mpsc::unbounded_channel();
        // Room changes, like nick requests, come at most one per command.
        let (rooms, room_requests) = mpsc::unbounded_channel();
        let outlet = ClusterOutlet {
            queue,
            nicks,
            privates,
            rooms,
            node: node.to_string(),
            origin: origin.to_string(),
        };
        let ends = ClusterEnds {
            messages,
            nicks: nick_requests,
            privates: private_messages,
            rooms: room_requests,
        };
        (outlet, ends)
    }

    /// Asks the cluster about a nick, or to carry a private message.
    pub(super) fn ask(&self, request: ClusterRequest) {
        let _ = match request {
            ClusterRequest::Deliver { .. } => self.privates.send(request),
            _ => self.nicks.send(request),
        };
    }

    /// Asks the cluster to change a room's entry, or to close it.
    pub(super) fn change_room(&self, request: RoomRequest) {
        let _ = self.rooms.send(request);
    }

    /// `member` of this node, as the cluster knows it.
    pub(super) fn member_ref(&self, member: MemberId) -> MemberRef {
        MemberRef {
            origin: self.origin.clone(),
            member: member.number(),
        }
    }

    /// Queues a message for the log; `false` if the queue is full or the
    /// link is gone.
    pub(super) fn send(&self, message: StoredMessage) -> bool {
        self.queue.try_send(message).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(origin: &str, member: u64) -> MemberRef {
        MemberRef {
            origin: origin.into(),
            member,
        }
    }

    fn found(by: &MemberRef, after: Option<u64>) -> RoomChange {
        RoomChange::Found {
            by: by.clone(),
            since: 1,
            after,
        }
    }

    #[test]
    fn of_two_members_making_one_room_at_once_the_first_written_runs_it() {
        let (ann, bo) = (member("n1/1", 1), member("n2/1", 1));
        let mut entry = RoomEntry::new("lab");
        assert!(entry.apply(None, &found(&ann, None)));
        // bo's node knew no entry either: by now there is one, so its
        // making of the room is void.
        assert!(!entry.apply(Some(1), &found(&bo, None)));
        assert_eq!(entry.ops, std::slice::from_ref(&ann));
        // One it knew at revision 1, deleted since: made anew too.
        assert!(entry.apply(None, &found(&bo, Some(1))));
        assert_eq!(entry.ops, std::slice::from_ref(&bo));
        // A left-over entry, at the revision bo's node knew, starts anew.
        entry.topic_locked = false;
        assert!(entry.apply(Some(1), &found(&bo, Some(1))));
        assert_eq!(
            (entry.ops.as_slice(), entry.topic_locked),
            ([bo].as_slice(), true)
        );
    }

    #[test]
    fn ranks_flags_invitations_and_kicks_change_the_entry_as_asked() {
        let (ann, bo) = (member("n1/1", 1), member("n2/1", 7));
        let mut entry = RoomEntry::new("lab");
        entry.apply(None, &found(&ann, None));
        let modes = RoomChange::Modes {
            flags: vec![(true, 'm'), (false, 'n'), (true, 'i')],
            ranks: vec![
                (true, 'o', bo.clone(), "bo".into()),
                (true, 'v', bo.clone(), "bo".into()),
            ],
            modes: String::new(),
            by: "ann".into(),
        };
        assert!(entry.apply(Some(1), &modes));
        let Some(RoomChange::Modes { modes: told, .. }) = &entry.change else {
            panic!("not a mode change");
        };
        assert_eq!(told, "+m-n+iov bo bo");
        // Asked again, nothing changes: the change is void.
        assert!(!entry.apply(Some(2), &modes));
        assert!(entry.moderated && entry.external && entry.invite_only);
        assert_eq!(entry.ops, [ann.clone(), bo.clone()]);
        // Only what changes is told.
        let half = RoomChange::Modes {
            flags: vec![(true, 'm'), (false, 'm')],
            ranks: vec![(false, 'v', bo.clone(), "bo".into())],
            modes: String::new(),
            by: "ann".into(),
        };
        assert!(entry.apply(Some(2), &half));
        let Some(RoomChange::Modes { modes: told, .. }) = &entry.change else {
            panic!("not a mode change");
        };
        assert_eq!((told.as_str(), entry.moderated), ("-mv bo", false));
        let invite = RoomChange::Invite {
            member: member("n3/1", 2),
            nick: "cy".into(),
            by: ann.clone(),
            by_nick: "ann".into(),
        };
        entry.apply(Some(3), &invite);
        let came = RoomChange::Forget {
            member: member("n3/1", 2),
            ranks: false,
        };
        entry.apply(Some(4), &came);
        assert!(entry.invited.is_empty());
        let kick = RoomChange::Kick {
            member: bo.clone(),
            nick: "bo".into(),
            by: "ann".into(),
            reason: None,
        };
        entry.apply(Some(5), &kick);
        assert_eq!(
            (entry.ops.as_slice(), entry.voiced.len()),
            ([ann].as_slice(), 0)
        );
        assert_eq!(entry.change, Some(kick));
    }

    #[test]
    fn an_entry_names_at_most_max_named_members_each_way() {
        let mut entry = RoomEntry::new("big");
        for id in 0..MAX_NAMED as u64 + 3 {
            let invite = RoomChange::Invite {
                member: member("n1/1", id),
                nick: "x".into(),
                by: member("n1/1", 0),
                by_nick: "x".into(),
            };
            entry.apply(Some(id), &invite);
        }
        assert_eq!(entry.invited.len(), MAX_NAMED);
        assert_eq!(entry.invited[0], member("n1/1", 3));
    }
}
