//! The hub: rooms, members, nicknames, the word filter and recent history.
//!
//! It knows nothing of sockets. A door calls [`Hub::connect`] for each new
//! client and gets a [`Membership`]: the member's id, its bounded outbox,
//! and a channel on which the hub says "you have been removed, because".
//! The door then feeds [`ClientCommand`]s to [`Hub::handle`] and writes what
//! arrives in the outbox. Tests drive the hub the same way, without I/O.
//!
//! The state and its rules are split by concern: `members.rs` (admission,
//! nicks, leaving), `rooms.rs`, `commands.rs` (what each command does),
//! `fanout.rs` (delivery without waiting). Committed messages reach the
//! fan-out through the [`Bus`] (`bus.rs`); time comes from the
//! [`Clock`] in [`HubConfig`].

mod bus;
pub mod clock;
pub mod cluster;
mod commands;
mod fanout;
mod filter;
pub mod ids;
mod members;
pub mod operators;
pub mod outbox;
mod remote;
mod rooms;
mod shared_rooms;
mod state;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

pub use bus::{Bus, LocalBus};
pub use clock::{Clock, SystemClock};
pub use filter::{FilterRule, WordFilter};
pub use ids::TICKETS_FROM;

use crate::metrics::Metrics;
use crate::protocol::text::is_ephemeral;
use crate::protocol::{
    ClientCommand, Departure, DropReason, ErrorCode, LeaveReason, MessageRecord, Outgoing,
    ServerEvent,
};
use crate::store::writer::{HistoryWriter, Query};
use crate::store::{HistoryStore, Range, Retention, StoreError};
use bus::WriterOutlet;
use state::{PendingQuery, State};

/// The nickname of the server's operator console; nobody else may take it.
pub const CONSOLE_NICK: &str = "server";

/// Messages deleted per step of the retention pass at start.
const STARTUP_PRUNE_BATCH: usize = 10_000;

/// Where a new member starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// In the default room (text, web, UDP: a place to talk at once).
    InDefaultRoom,
    /// In no room (IRC: a client joins its channels itself).
    Nowhere,
}

/// Why a nickname cannot be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NickRefusal {
    /// Not a nickname at all: why.
    Invalid(String),
    /// Someone has it (or one that looks the same).
    Taken,
}

impl NickRefusal {
    /// The error event that tells whoever asked for `nick`.
    pub fn to_event(&self, nick: &str) -> ServerEvent {
        match self {
            NickRefusal::Invalid(why) => ServerEvent::error_about(ErrorCode::BadNick, nick, why),
            NickRefusal::Taken => ServerEvent::error_about(
                ErrorCode::NickInUse,
                nick,
                format!("nickname {nick} is taken"),
            ),
        }
    }
}

/// Who a client that names itself says it is (IRC's `NICK` and `USER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub nick: String,
    pub user: String,
    pub realname: String,
}

/// Why [`Hub::connect_named`] admitted no one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// The hub takes no one now.
    Refused(Refusal),
    /// The nickname cannot be had.
    Nick(NickRefusal),
}

/// Identifies a member for as long as it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

impl MemberId {
    /// Its number on this node (in a cluster, with the node's run, who it
    /// is to other nodes).
    pub fn number(self) -> u64 {
        self.0
    }
}

/// Which door a member came in by (for logs, metrics and history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorKind {
    Tcp,
    /// The TCP door's lines inside TLS.
    Tls,
    Udp,
    Web,
    /// IRC, plain or inside TLS.
    Irc,
    Console,
}

impl DoorKind {
    /// The door's name, as stored with each message.
    pub fn name(self) -> &'static str {
        match self {
            DoorKind::Tcp => "tcp",
            DoorKind::Tls => "tls",
            DoorKind::Udp => "udp",
            DoorKind::Web => "web",
            DoorKind::Irc => "irc",
            DoorKind::Console => "console",
        }
    }
}

/// Default rooms one member may be in at once (Ergo's default too): a
/// client cannot make the server keep thousands of rooms alive alone.
pub const DEFAULT_MAX_ROOMS: usize = 100;
/// Members past which a room is big (see [`HubConfig::big_room`]). Twitch
/// stops sending JOIN/PART past 1000 viewers for the same reason.
pub const DEFAULT_BIG_ROOM: usize = 1000;
/// Default members at once, over all doors.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default members at once from one IP address.
pub const DEFAULT_MAX_PER_IP: usize = 100;
pub use outbox::{Delivery, OutboxReceiver, DEFAULT_SENDQ};
/// Default messages replayed to whoever joins a room.
pub const DEFAULT_HISTORY_LEN: usize = 20;
/// The server's default name, shown in the welcome.
pub const DEFAULT_SERVER_NAME: &str = "sockchat";
/// The room everyone starts in by default.
pub const DEFAULT_ROOM: &str = "lobby";

/// Hub settings. Limits of 0 mean "no limit".
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Shown in the welcome line.
    pub server_name: String,
    /// Where every member starts, canonical form (see `normalize_room`).
    pub default_room: String,
    /// Applied to every relayed message.
    pub filter: WordFilter,
    /// Messages kept per room and replayed to whoever joins.
    pub history_len: usize,
    /// Members at once, over all doors (the console aside).
    pub max_clients: usize,
    /// Members at once from one IP address.
    pub max_per_ip: usize,
    /// Bytes queued per member (its sendq) past which it counts as too
    /// slow and is dropped. Senders into its rooms are held long before,
    /// at a sixteenth of it (see [`outbox`]).
    pub sendq: usize,
    /// Store private messages too (room messages always are, when history
    /// is on).
    pub store_private: bool,
    /// Rooms with more members than this are big: joins and leaves are no
    /// longer announced to the room and newcomers get a member count instead
    /// of the list, so seating n members costs O(n), not O(n²). 0: no limit.
    pub big_room: usize,
    /// Rooms one member may be in at once. 0: no limit.
    pub max_rooms: usize,
    /// Where message times come from.
    pub clock: Arc<dyn Clock>,
    /// Who may become a server operator (`OPER`, `/oper`).
    pub operators: operators::Operators,
    /// How long an address waits after a wrong operator password, in ms.
    pub oper_retry_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            server_name: DEFAULT_SERVER_NAME.into(),
            default_room: DEFAULT_ROOM.into(),
            filter: WordFilter::default(),
            history_len: DEFAULT_HISTORY_LEN,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            sendq: DEFAULT_SENDQ,
            store_private: false,
            big_room: DEFAULT_BIG_ROOM,
            max_rooms: DEFAULT_MAX_ROOMS,
            clock: Arc::new(SystemClock),
            operators: operators::Operators::default(),
            oper_retry_ms: operators::DEFAULT_OPER_RETRY_MS,
        }
    }
}

/// A member's end of its connection to the hub, held by its door.
#[derive(Debug)]
pub struct Membership {
    /// The member's id, for [`Hub::handle`] and [`Hub::disconnect`].
    pub id: MemberId,
    /// The nickname the member starts with.
    pub nick: String,
    /// Everything addressed to the member, in order. Yields `None` once the
    /// member is gone from the hub and everything queued has been taken.
    pub outbox: OutboxReceiver,
    /// Resolves with the reason when the hub removes the member (outbox
    /// full, kicked, shutdown). Errors, harmlessly, when the member leaves
    /// by itself.
    pub dropped: oneshot::Receiver<DropReason>,
}

/// Why the hub refused a new member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("server full: {0} clients connected, try again later")]
    ServerFull(usize),
    #[error("too many connections from your address (at most {0})")]
    TooManyFromAddress(usize),
    #[error("server is shutting down")]
    ShuttingDown,
}

impl Refusal {
    /// The error event a door sends before closing.
    pub fn to_event(&self) -> ServerEvent {
        let code = match self {
            Refusal::ServerFull(_) => ErrorCode::ServerFull,
            Refusal::ShuttingDown => ErrorCode::ShuttingDown,
            Refusal::TooManyFromAddress(_) => ErrorCode::TooManyFromAddress,
        };
        ServerEvent::error(code, self.to_string())
    }
}

/// A place held toward the connection limits (see [`Hub::reserve`]).
#[derive(Debug)]
pub struct Reservation {
    hub: Hub,
    ip: Option<IpAddr>,
    /// Still this reservation's to give back.
    held: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            self.hub.lock().count_out(self.ip);
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Whether the member stays.
    pub flow: Flow,
    /// Part of the command's answer comes a moment after `handle` returns:
    /// a room message reaches the room (the sender included) once it is on
    /// disk, and history lookups run on the writer's thread. A door that
    /// wants its member's commands to take effect in order waits for it.
    pub pending: Option<Pending>,
}

/// An answer still to come, see [`Handled::pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// The member's own room message, with this id, coming back. In a
    /// cluster the id is the sender's node's ticket for it (at least
    /// [`TICKETS_FROM`], so never a cluster id), which the message carries
    /// back on that node only.
    Echo(u64),
    /// The result of `/history` or `/search` (or the error saying why not).
    Lookup,
    /// The answer to `/oper`, checked on a thread of its own.
    Oper,
    /// The answer to `/nick` in a cluster, which the cluster grants: the
    /// member's rename to the nick with this key, or an error.
    Nick(String),
}

impl Pending {
    /// Whether `event`, arriving in the member's outbox, is the awaited one.
    pub fn is_met_by(&self, event: &ServerEvent) -> bool {
        match (self, event) {
            (Pending::Echo(id), ServerEvent::Message(message)) => {
                message.ticket.unwrap_or(message.id) == *id
            }
            (
                Pending::Lookup,
                ServerEvent::History { .. }
                | ServerEvent::SearchResults { .. }
                | ServerEvent::Error { .. },
            ) => true,
            (Pending::Oper, ServerEvent::Operator { .. } | ServerEvent::Error { .. }) => true,
            (Pending::Nick(key), ServerEvent::Nick { new, .. }) => {
                crate::protocol::text::nick_key(new) == *key
            }
            (Pending::Nick(_), ServerEvent::Error { .. }) => true,
            _ => false,
        }
    }
}

/// What a door does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep the connection.
    Continue,
    /// The member said goodbye: write what is queued, then close.
    Quit,
}

/// A handle to a hub that does not keep it alive (what its bus holds).
#[derive(Debug, Clone)]
pub struct WeakHub(std::sync::Weak<Shared>);

impl WeakHub {
    /// The hub, if it still exists.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|shared| Hub { shared })
    }
}

/// Operator password checks at once (see `Shared::oper_checks`).
const OPER_CHECKS: usize = 2;

/// A cheap, cloneable handle to the hub's shared state.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: HubConfig,
    metrics: Arc<Metrics>,
    /// Owns the history store, when history is kept.
    history: Option<HistoryWriter>,
    /// Where committed messages go to be fanned out.
    bus: Arc<dyn Bus>,
    /// Held while messages accepted without history go to the bus, which
    /// keeps them in id order (taken after `state`'s lock is released,
    /// never the other way round).
    publishing: Mutex<()>,
    /// Operator password checks running at once: each costs tens of
    /// milliseconds of CPU, so a crowd of guesses is told to try again
    /// (and each address guesses once at a time: `State::oper_guesses`).
    oper_checks: Arc<tokio::sync::Semaphore>,
    /// Set when a task on the runtime publishes messages accepted without
    /// history (see [`Hub::batching`]): woken to take what has gathered.
    publish_soon: Option<Arc<tokio::sync::Notify>>,
    /// A `std` mutex, not Tokio's: it is held only for in-memory work and
    /// outbox offers, never across an `.await`, so it is short and uncontended
    /// locks stay cheap. Fan-out happens under it, which keeps every member's
    /// view of a room in the same order.
    state: Mutex<State>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The publishing task, if any, sees the hub gone and ends.
        if let Some(publisher) = &self.publish_soon {
            publisher.notify_one();
        }
    }
}

impl Hub {
    /// A hub with no members yet, keeping recent messages in memory only.
    /// Each message is fanned out as it is said.
    pub fn new(config: HubConfig) -> Self {
        Self::with_bus(config, LocalBus::boxed)
    }

    /// Like [`Hub::new`], but the messages said are fanned out by a task on
    /// the current Tokio runtime, as many together as gathered since it
    /// last ran (as the history writer's commits are): one offer to each
    /// member per batch rather than per message.
    pub fn batching(config: HubConfig) -> Self {
        let notify = Arc::new(tokio::sync::Notify::new());
        let hub = Self::build(config, LocalBus::boxed, Some(notify.clone()));
        spawn_publisher(Arc::downgrade(&hub.shared), notify);
        hub
    }

    /// Like [`Hub::new`], with committed messages going through the bus
    /// `make_bus` builds (given a handle to this hub, for the bus's own
    /// [`Hub::fan_out`]): the seam for a cluster.
    pub fn with_bus(config: HubConfig, make_bus: impl FnOnce(WeakHub) -> Arc<dyn Bus>) -> Self {
        Self::build(config, make_bus, None)
    }

    fn build(
        config: HubConfig,
        make_bus: impl FnOnce(WeakHub) -> Arc<dyn Bus>,
        publish_soon: Option<Arc<tokio::sync::Notify>>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let state = State::new(&config, metrics.clone(), 0, Vec::new());
        let shared = Arc::new_cyclic(|hub| Shared {
            config,
            metrics,
            history: None,
            bus: make_bus(WeakHub(hub.clone())),
            publishing: Mutex::new(()),
            oper_checks: Arc::new(tokio::sync::Semaphore::new(OPER_CHECKS)),
            publish_soon,
            state: Mutex::new(state),
        });
        Hub { shared }
    }

    /// A hub whose room messages go to `store` before anyone sees them.
    /// Message ids continue after the stored ones, and each room's recent
    /// past is loaded for replay on join.
    /// Must be called on a Tokio runtime: committed messages are handed to
    /// the bus by a task on it.
    pub fn with_store(
        config: HubConfig,
        mut store: Box<dyn HistoryStore>,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        // Retention first, while nobody is chatting yet, so the replayed
        // past is what retention keeps.
        let now_ms = config.clock.now_millis();
        while store.prune(&retention, now_ms, STARTUP_PRUNE_BATCH)? == STARTUP_PRUNE_BATCH {}
        let last_id = store.last_id()?;
        let mut recent = Vec::new();
        for room in store.rooms()? {
            recent.extend(store.recent(&room, u64::MAX, Range::Latest, config.history_len)?);
        }
        let metrics = Arc::new(Metrics::default());
        let state = State::new(&config, metrics.clone(), last_id, recent);
        let mut forward = None;
        // Messages not stored (an ephemeral room's) are fanned out in
        // batches too, as a hub without history does.
        let notify = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new_cyclic(|hub| {
            let (outlet, task) = WriterOutlet::new(hub.clone());
            forward = Some(task);
            Shared {
                metrics,
                history: Some(HistoryWriter::spawn(
                    store,
                    outlet,
                    retention,
                    config.clock.clone(),
                )),
                bus: LocalBus::boxed(WeakHub(hub.clone())),
                publishing: Mutex::new(()),
                oper_checks: Arc::new(tokio::sync::Semaphore::new(OPER_CHECKS)),
                publish_soon: Some(notify.clone()),
                config,
                state: Mutex::new(state),
            }
        });
        tokio::spawn(forward.expect("set by new_cyclic"));
        spawn_publisher(Arc::downgrade(&shared), notify);
        Ok(Hub { shared })
    }

    /// Commits everything queued for history and stops the writer thread,
    /// waiting for it (blocks: call it off the runtime, or where a short
    /// block is fine). Room messages still arriving are no longer kept.
    pub fn close_history(&self) {
        if let Some(writer) = &self.shared.history {
            writer.stop();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the hub; the state
        // is still consistent enough to keep serving everyone else.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a new member: gives it a guest nickname, puts it in the default
    /// room and queues its welcome. The room hears of it later (see
    /// [`Hub::arrive`]).
    pub fn connect(&self, door: DoorKind, ip: Option<IpAddr>) -> Result<Membership, Refusal> {
        self.connect_reserved(door, self.reserve(ip)?)
    }

    /// Counts a connection from `ip` toward the limits before it is a
    /// member (a web connection loading the page, or on its way to a
    /// WebSocket), so connections that never become members cannot take
    /// every place. The place is given back when the reservation drops,
    /// or becomes the member's in [`Hub::connect_reserved`].
    pub fn reserve(&self, ip: Option<IpAddr>) -> Result<Reservation, Refusal> {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.admit(config, ip)?;
        state.count_in(ip);
        Ok(Reservation {
            hub: self.clone(),
            ip,
            held: true,
        })
    }

    /// Admits a new member, as [`Hub::connect`] does, in the place
    /// `reservation` holds (the limits were checked when it was made).
    pub fn connect_reserved(
        &self,
        door: DoorKind,
        mut reservation: Reservation,
    ) -> Result<Membership, Refusal> {
        let config = &self.shared.config;
        let mut state = self.lock();
        if state.closed {
            drop(state);
            return Err(Refusal::ShuttingDown);
        }
        // The place passes to the member, given back when it leaves.
        reservation.held = false;
        let session = state.add_member(config, door, reservation.ip, None, Start::InDefaultRoom);
        state.settle(config);
        Ok(session)
    }

    /// Admits a member that has named itself (an IRC client, once
    /// registered) as `nick`, in no room: it joins what it asks to. A nick
    /// that is not free gives the reservation back with the refusal, for
    /// the client to try another.
    pub fn connect_named(
        &self,
        door: DoorKind,
        mut reservation: Reservation,
        name: &Name,
    ) -> Result<Membership, (Naming, Option<Reservation>)> {
        let nick = name.nick.as_str();
        let config = &self.shared.config;
        let mut state = self.lock();
        if state.closed {
            drop(state);
            return Err((Naming::Refused(Refusal::ShuttingDown), None));
        }
        if let Err(refusal) = state.check_nick(nick, None) {
            drop(state);
            return Err((Naming::Nick(refusal), Some(reservation)));
        }
        reservation.held = false;
        let session = state.add_member(config, door, reservation.ip, Some(nick), Start::Nowhere);
        if let Some(member) = state.members.get_mut(&session.id) {
            member.user = Some(name.user.clone());
            member.realname = Some(name.realname.clone());
        }
        state.settle(config);
        Ok(session)
    }

    /// Whether a newcomer could take `nick` now (it may be gone by the
    /// time it tries: [`Hub::connect_named`] checks again).
    pub fn check_nick(&self, nick: &str) -> Result<(), NickRefusal> {
        self.lock().check_nick(nick, None).map(|_| ())
    }

    /// Admits the operator console as the member `server`. It counts toward
    /// no limit and is never dropped for a full outbox.
    pub fn connect_console(&self) -> Membership {
        let config = &self.shared.config;
        let mut state = self.lock();
        let session = state.add_member(
            config,
            DoorKind::Console,
            None,
            Some(CONSOLE_NICK),
            Start::InDefaultRoom,
        );
        state.settle(config);
        session
    }

    /// Tells the member's rooms it has arrived, if they have not been told
    /// yet: its door calls this when the session's arrival grace is over.
    pub fn arrive(&self, id: MemberId) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.arrive(config, id);
        state.settle(config);
    }

    /// Carries out one command from a member.
    pub fn handle(&self, id: MemberId, command: ClientCommand) -> Handled {
        let config = &self.shared.config;
        let history = self.shared.history.as_ref();
        let mut state = self.lock();
        let handled = state.handle(config, history, id, command);
        state.settle(config);
        drop(state);
        if handled.to_publish {
            match &self.shared.publish_soon {
                Some(publisher) => publisher.notify_one(),
                None => self.publish_unpublished(),
            }
        }
        let mut pending = handled.message.map(Pending::Echo);
        if let Some(key) = handled.nick_claim {
            pending = Some(Pending::Nick(key));
        }
        if let Some(guess) = handled.oper {
            self.verify_oper(id, guess);
            pending = Some(Pending::Oper);
        }
        if let (Some(query), Some(writer)) = (handled.query, history) {
            writer.query(query.query.clone(), self.reply_to(query));
            pending = Some(Pending::Lookup);
        }
        Handled {
            flow: handled.flow,
            pending,
        }
    }

    /// Checks an operator's name and password off the lock, on a blocking
    /// thread (Argon2 takes its time on purpose), then grants or refuses.
    fn verify_oper(&self, id: MemberId, guess: state::OperGuess) {
        let state::OperGuess { name, password, ip } = guess;
        let Ok(permit) = self.shared.oper_checks.clone().try_acquire_owned() else {
            let config = &self.shared.config;
            let mut state = self.lock();
            state.oper_guessed(config, ip, None);
            state.try_oper_later(id, "operator checks are busy");
            state.settle(config);
            return;
        };
        let hub = self.clone();
        let check = move || {
            let right = hub.shared.config.operators.check(&name, &password.0);
            drop(permit);
            let config = &hub.shared.config;
            let mut state = hub.lock();
            state.oper_guessed(config, ip, Some(right));
            if right {
                state.set_operator(id, Some(name));
            } else {
                // Neither name nor password is logged: a client that typed
                // them the wrong way round would put its password here.
                let nick = state.members.get(&id).map(|member| member.nick.clone());
                tracing::warn!(nick = ?nick, ip = ?ip, "operator password refused");
                let why = "no operator has that name and password";
                state.deliver_event(id, ServerEvent::error(ErrorCode::BadPassword, why));
            }
            state.settle(config);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(check)),
            Err(_) => check(),
        }
    }

    /// Where a history lookup's answer goes: to the member who asked.
    fn reply_to(&self, pending: PendingQuery) -> crate::store::writer::Reply {
        let hub = Arc::downgrade(&self.shared);
        let PendingQuery {
            member,
            room,
            query,
        } = pending;
        Box::new(move |result| {
            let Some(shared) = hub.upgrade() else { return };
            let event = match (result, query) {
                (Ok(messages), Query::Recent { .. }) => ServerEvent::History { room, messages },
                (Ok(messages), Query::Search { text, .. }) => ServerEvent::SearchResults {
                    room,
                    query: text,
                    messages,
                },
                (
                    Err(
                        error @ (crate::store::StoreError::TooBroad { .. }
                        | crate::store::StoreError::TooManyWords { .. }),
                    ),
                    _,
                ) => ServerEvent::error(ErrorCode::TooBroad, error.to_string()),
                (Err(error), _) => ServerEvent::error(
                    ErrorCode::NoHistory,
                    format!("history is not available right now: {error}"),
                ),
            };
            Hub { shared }.notify(member, event);
        })
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The server's counters, for a task that outlives no hub but should
    /// not keep one alive.
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Hands the messages accepted without history to the bus, in id
    /// order: taken from the state's queue and published under one more
    /// lock, so two members' messages cannot pass each other between the
    /// hub's lock and the bus.
    fn publish_unpublished(&self) {
        let _in_order = self
            .shared
            .publishing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let messages = std::mem::take(&mut self.lock().unpublished);
        if !messages.is_empty() {
            self.shared.bus.publish(messages);
        }
    }

    /// Fans out committed room messages to this hub's members (the bus
    /// calls this, in room order).
    /// Makes this hub a cluster node: from now on what members say goes to
    /// `outlet`, known by tickets, and comes back through
    /// [`Hub::take_from_cluster`]. Called before anyone connects.
    pub fn send_to_cluster(&self, outlet: cluster::ClusterOutlet) {
        let mut state = self.lock();
        state.cluster = Some(outlet);
        state.message_ids = ids::MessageIds::after(TICKETS_FROM - 1);
    }

    /// The cluster's answer to a nick request (see [`cluster::ClusterRequest`]).
    pub fn nick_claimed(&self, request: cluster::ClusterRequest, claimed: cluster::Claimed) {
        let config = &self.shared.config;
        let mut state = self.lock();
        let member = match &request {
            cluster::ClusterRequest::Claim {
                member,
                forced: false,
                ..
            } => Some(*member),
            _ => None,
        };
        state.nick_claimed(config, request, claimed);
        // A newcomer whose first command was its nick arrives by that name.
        if let Some(member) = member {
            if state.members.contains_key(&member) && !state.is_announced(member) {
                state.arrive(config, member);
            }
        }
        state.settle(config);
    }

    /// A nick this node held, lost to another node (its claim lapsed while
    /// the link was down and someone took it): its member is renamed.
    pub fn nick_lost(&self, key: &str) {
        let config = &self.shared.config;
        let mut state = self.lock();
        if let Some(&member) = state.nicks.get(key) {
            state.yield_nick(config, member);
        }
        state.settle(config);
    }

    /// Another node's member, as its claim now says (see
    /// [`cluster::RemoteMember`]): the rooms it shares with members here
    /// hear it join, leave or rename.
    pub fn remote_seen(&self, key: String, member: cluster::RemoteMember) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.remote_seen(config, key, member);
        state.settle(config);
    }

    /// Another node's member has gone: its claim was let go (it quit), or
    /// lapsed (`lost`: its node died or lost NATS).
    pub fn remote_gone(&self, key: &str, lost: bool) {
        let config = &self.shared.config;
        let mut state = self.lock();
        let reason = if lost {
            LeaveReason::Lost
        } else {
            LeaveReason::Quit
        };
        state.remote_gone(config, key, reason);
        state.settle(config);
    }

    /// The cluster's rooms bucket has `entry` at `revision` (see
    /// [`cluster::RoomEntry`]): the room here follows it.
    /// It is `news` unless the node reads it again, or afresh, as the
    /// bucket's watch starts: then its change is not told.
    pub fn room_entry_seen(&self, revision: u64, entry: cluster::RoomEntry, news: bool) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.room_entry_seen(config, revision, entry, news);
        state.settle(config);
    }

    /// The entry of `room` is gone from the cluster's rooms bucket.
    pub fn room_entry_gone(&self, room: &str) {
        self.lock().room_entry_gone(room);
    }

    /// A change `member` made to `room` could not reach the cluster.
    pub fn room_change_failed(&self, member: u64, room: &str) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.room_change_failed(MemberId(member), room);
        state.settle(config);
    }

    /// A private message from another node for this node's member number
    /// `member`.
    pub fn deliver_from_cluster(&self, member: u64, event: ServerEvent) {
        self.notify(MemberId(member), event);
    }

    /// A handle that does not keep the hub alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.shared))
    }

    /// Whether room messages are stored here.
    pub fn keeps_history(&self) -> bool {
        self.shared.history.is_some()
    }

    /// The highest id of a stored room message this hub has seen: a
    /// cluster node catches up on the log from the next.
    pub fn last_seen_id(&self) -> u64 {
        self.lock().last_published
    }

    /// The stored message `id`, if it is among the recent ones this hub
    /// keeps at hand for replay.
    pub fn recent_message(&self, id: u64) -> Option<MessageRecord> {
        let state = self.lock();
        let mut rings = state.recent.values();
        rings.find_map(|ring| ring.iter().find(|message| message.id == id).cloned())
    }

    /// Room messages from the cluster's log, in its order, with their ids:
    /// stored (if history is kept), then fanned out to this node's members.
    /// The log may bring one again; storing is idempotent, and what this
    /// node has fanned out already is not fanned out twice.
    pub fn take_from_cluster(&self, messages: Vec<crate::store::StoredMessage>) {
        let last = self.last_seen_id();
        let (stored, passing): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .filter(|message| is_ephemeral(&message.record.room) || message.record.id > last)
            .partition(|message| !is_ephemeral(&message.record.room));
        if !passing.is_empty() {
            self.fan_out(passing.into_iter().map(|message| message.record).collect());
        }
        match &self.shared.history {
            Some(writer) => stored
                .into_iter()
                .for_each(|message| writer.submit(message)),
            None if !stored.is_empty() => {
                self.fan_out(stored.into_iter().map(|message| message.record).collect())
            }
            None => {}
        }
    }

    pub fn fan_out(&self, messages: Vec<MessageRecord>) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.publish(config, messages);
        state.settle(config);
    }

    /// Sends one event to one member (a door's own errors, for instance),
    /// in order with everything else the member receives.
    pub fn notify(&self, id: MemberId, event: ServerEvent) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.deliver(id, Arc::new(Outgoing::new(event)));
        state.settle(config);
    }

    /// Sends the member a welcome event again, as of now, and its room's
    /// recent messages (the TCP door does when a connection switches to
    /// JSON).
    pub fn welcome(&self, id: MemberId) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.welcome(config, id);
        state.settle(config);
    }

    /// Removes a member whose door ended the session (connection lost,
    /// flood, idle). Its rooms hear how it left. Does nothing if the member
    /// is already gone.
    pub fn disconnect(&self, id: MemberId, departure: Departure) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.remove_member(config, id, departure, false);
        state.settle(config);
    }

    /// Removes the member called `nick` (the console's `/kick`).
    pub fn kick(&self, nick: &str, reason: Option<&str>) -> Result<(), String> {
        let config = &self.shared.config;
        let mut state = self.lock();
        let id = state
            .find_nick(nick)
            .ok_or_else(|| format!("no such nick: {nick}"))?;
        let why = DropReason::Kicked {
            reason: reason.map(str::to_string),
        };
        state.remove_member(config, id, Departure::Dropped(why), true);
        state.settle(config);
        Ok(())
    }

    /// Tells every member the server is shutting down and forgets them all.
    /// Their doors see `dropped` resolve and close their connections.
    pub fn shutdown(&self) {
        self.lock().drop_everyone(DropReason::ShuttingDown);
    }

    /// Tells every member something (history trouble, say).
    pub fn announce(&self, text: &str) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.announce(text);
        state.settle(config);
    }

    /// The member's nickname now, if it is still a member.
    pub fn nick_of(&self, id: MemberId) -> Option<String> {
        self.lock().nick_of(id)
    }

    /// The server's name, as the welcome gives it.
    pub fn server_name(&self) -> &str {
        &self.shared.config.server_name
    }

    /// Members connected now, the console aside.
    pub fn member_count(&self) -> usize {
        self.lock().counted_members()
    }
}

/// The task that publishes what was said since it last ran, on each
/// notify: messages said together become one run per room.
fn spawn_publisher(weak: std::sync::Weak<Shared>, notify: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        loop {
            notify.notified().await;
            // Gone with the hub (whose drop wakes this task once more).
            let Some(shared) = weak.upgrade() else { return };
            Hub { shared }.publish_unpublished();
        }
    });
}

#[cfg(test)]
mod tests;
