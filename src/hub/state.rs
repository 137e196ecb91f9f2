//! The hub's state. Everything that changes it (in `members.rs`,
//! `rooms.rs`, `commands.rs`, `fanout.rs`) runs under the hub's lock, so
//! nothing there awaits or does I/O, and time comes from the hub's clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::cluster::{MemberRef, RoomEntry};
use super::ids::MessageIds;
use super::outbox::{Holder, Outbox};
use super::{DoorKind, Flow, HubConfig, MemberId};
use crate::metrics::Metrics;
use crate::protocol::{Departure, DropReason, MessageRecord};
use crate::store::writer::Query;

/// What a command did, for the hub.
#[derive(Debug)]
pub(super) struct Handled {
    pub flow: Flow,
    /// The id of the room message it said, if any.
    pub message: Option<u64>,
    /// A lookup for the history writer to run.
    pub query: Option<PendingQuery>,
    /// Without a history writer: a message was queued in
    /// `State::unpublished`, for the bus once the lock is released.
    pub to_publish: bool,
    /// An operator name and password to check, off the lock.
    pub oper: Option<OperGuess>,
    /// The key of a nick asked of the cluster: the answer comes later.
    pub nick_claim: Option<String>,
}

/// An `/oper` the hub lets through to a password check.
#[derive(Debug)]
pub(super) struct OperGuess {
    pub name: String,
    pub password: crate::protocol::Password,
    /// Where it came from: its guess budget (see `State::oper_guesses`).
    pub ip: Option<IpAddr>,
}

/// A history lookup whose answer goes to `member`.
#[derive(Debug)]
pub(super) struct PendingQuery {
    pub member: MemberId,
    pub room: String,
    pub query: Query,
}

/// The console's sendq: the operator's terminal may pause, and the console
/// is never dropped, so it gets more room than a member.
pub(super) const CONSOLE_SENDQ: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub(super) struct Member {
    pub nick: String,
    pub door: DoorKind,
    pub ip: Option<IpAddr>,
    /// Joined rooms, in the order joined.
    pub rooms: Vec<String>,
    /// Where plain text goes.
    pub current: Option<String>,
    pub outbox: Outbox,
    /// Fired with the reason when the hub removes the member.
    pub dropped: Option<oneshot::Sender<DropReason>>,
    /// Whether its rooms have been told it is here. A newcomer is told of
    /// at its first command (a first `/nick` is taken before, so the room
    /// sees the chosen name only) or when its door says the grace is over
    /// (see [`crate::session::ARRIVAL_GRACE`]); one that leaves before
    /// either is never announced, and its leaving is not either.
    pub announced: bool,
    /// Why it is away, while it is.
    pub away: Option<String>,
    /// Left out of lookups by strangers (IRC's `+i`).
    pub invisible: bool,
    /// A server operator: it runs every room (IRC's `+o` user mode).
    pub operator: bool,
    /// What an IRC client said in `USER`: its user name and real name.
    pub user: Option<String>,
    pub realname: Option<String>,
    /// Rooms whose invitation lists name it, to strike it from when it goes.
    pub invited_to: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Room {
    /// In the order they joined.
    pub members: Vec<MemberId>,
    /// A member found congested by the latest fan-out, if any: whoever
    /// talks here next is held until it catches up.
    pub congested: Option<Holder>,
    /// Its operators: whoever made the room, and whom they named (the
    /// default room has none: everyone starts there).
    pub ops: Vec<MemberId>,
    /// Members its operators gave a voice (IRC's `+v`): shown, no powers.
    pub voiced: Vec<MemberId>,
    pub topic: Option<Topic>,
    /// Only operators set the topic (IRC's `+t`, on by default).
    pub topic_locked: bool,
    /// Left out of room lists for those not in it (IRC's `+s`).
    pub secret: bool,
    /// Joined only by whom its operators invite (IRC's `+i`).
    pub invite_only: bool,
    /// Only operators and voiced members talk (IRC's `+m`).
    pub moderated: bool,
    /// Members outside the room may say things in it (IRC's `-n`).
    pub external: bool,
    /// Invited and not yet come (cleared as each joins).
    pub invited: Vec<MemberId>,
    /// When it was made, milliseconds since the Unix epoch (0: not known).
    pub since: u64,
    /// In a cluster: other nodes' members among its operators and voiced.
    pub remote_ops: Vec<MemberRef>,
    pub remote_voiced: Vec<MemberRef>,
}

impl Room {
    /// Its modes as IRC writes them: `+` and the flags that are on
    /// (`+nt` for a new room).
    pub fn modes(&self) -> String {
        let flags = [
            (self.invite_only, 'i'),
            (self.moderated, 'm'),
            (!self.external, 'n'),
            (self.secret, 's'),
            (self.topic_locked, 't'),
        ];
        std::iter::once('+')
            .chain(flags.iter().filter(|(on, _)| *on).map(|(_, flag)| *flag))
            .collect()
    }

    /// Whether the flag `flag` (one of `imnst`) is on.
    pub fn flag(&self, flag: char) -> bool {
        match flag {
            'i' => self.invite_only,
            'm' => self.moderated,
            's' => self.secret,
            't' => self.topic_locked,
            // n is "no external messages": on when not external.
            _ => !self.external,
        }
    }

    /// Turns the flag `flag` on or off.
    pub fn set_flag(&mut self, flag: char, on: bool) {
        match flag {
            'i' => self.invite_only = on,
            'm' => self.moderated = on,
            's' => self.secret = on,
            't' => self.topic_locked = on,
            _ => self.external = !on,
        }
    }
}

impl Default for Room {
    fn default() -> Self {
        Room {
            members: Vec::new(),
            congested: None,
            ops: Vec::new(),
            voiced: Vec::new(),
            topic: None,
            topic_locked: true,
            secret: false,
            invite_only: false,
            moderated: false,
            external: false,
            invited: Vec::new(),
            since: 0,
            remote_ops: Vec::new(),
            remote_voiced: Vec::new(),
        }
    }
}

/// A room's topic, and who set it when.
#[derive(Debug, Clone)]
pub(super) struct Topic {
    pub text: String,
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
}

#[derive(Debug)]
pub(super) struct State {
    /// Looked up once per recipient in every fan-out. Ids are the hub's own
    /// counter, not client input, so a fast hash without HashDoS
    /// resistance is safe here (names, which clients choose, keep SipHash).
    pub members: HashMap<MemberId, Member, foldhash::fast::RandomState>,
    /// Nickname key (see `nick_key`) to member.
    pub nicks: HashMap<String, MemberId>,
    pub rooms: HashMap<String, Room>,
    /// The latest messages of each room that has any, oldest first,
    /// replayed on join. Kept apart from `rooms` so an empty room's past
    /// survives until someone comes back.
    pub recent: HashMap<String, VecDeque<MessageRecord>>,
    /// The highest message id fanned out so far.
    pub last_published: u64,
    pub per_ip: HashMap<IpAddr, usize>,
    pub counted: usize,
    pub next_member: u64,
    pub next_guest: u64,
    pub message_ids: MessageIds,
    /// Members whose outbox overflowed or closed during the current call;
    /// removed by `settle` once the fan-out that found them is done.
    pub overflowed: Vec<(MemberId, Departure)>,
    /// Without a history writer: messages accepted, in id order, not yet
    /// handed to the bus.
    pub unpublished: Vec<MessageRecord>,
    /// Messages said into a room (`-n`) by a member outside it, to echo to
    /// that member when they are published: message id to sender.
    pub outside_senders: HashMap<u64, MemberId>,
    /// Addresses with an operator check running (`None`) or refused, and
    /// until when (hub clock, ms) their next guess waits: one guess at a
    /// time per address, and a pause after each wrong one.
    pub oper_guesses: HashMap<IpAddr, Option<u64>>,
    /// In a cluster: where members' messages go instead of the writer.
    pub cluster: Option<super::cluster::ClusterOutlet>,
    /// In a cluster: the other nodes' members.
    pub remote: super::remote::RemoteMembers,
    /// In a cluster: every room's entry (see [`RoomEntry`]), and its
    /// revision, as the cluster's rooms bucket has it.
    pub room_entries: HashMap<String, (u64, RoomEntry)>,
    /// In a cluster: rooms whose last member anywhere left here, whose
    /// entry this node has asked to delete.
    pub closing: std::collections::HashSet<String>,
    /// Set at shutdown: no one new gets in.
    pub closed: bool,
    pub metrics: Arc<Metrics>,
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
            message_ids: MessageIds::after(last_id),
            overflowed: Vec::new(),
            unpublished: Vec::new(),
            outside_senders: HashMap::new(),
            oper_guesses: HashMap::new(),
            cluster: None,
            remote: Default::default(),
            room_entries: HashMap::new(),
            closing: Default::default(),
            closed: false,
            metrics,
        };
        for record in recent {
            state.remember(config, record);
        }
        state
    }
}
