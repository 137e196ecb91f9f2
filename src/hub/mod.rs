//! The hub: rooms, members, nicknames, the word filter and recent history.
//!
//! It knows nothing of sockets. A door calls [`Hub::connect`] for each new
//! client and gets a [`Session`]: the member's id, its bounded outbox, and a
//! channel on which the hub says "you have been disconnected". The door then
//! feeds [`ClientCommand`]s to [`Hub::handle`] and writes what arrives in the
//! outbox. Tests drive the hub the same way, without I/O.

mod filter;
mod state;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{mpsc, oneshot};

pub use filter::{FilterRule, WordFilter};

use crate::metrics::Metrics;
use crate::protocol::{ClientCommand, ErrorCode, LeaveReason, Outgoing, ServerEvent};
use crate::store::writer::{HistoryWriter, Publisher, Query};
use crate::store::{HistoryStore, Retention, StoreError, StoredMessage};
use state::{PendingQuery, State};

/// The nickname of the server's operator console; nobody else may take it.
pub const CONSOLE_NICK: &str = "server";

/// Messages deleted per step of the retention pass at start.
const STARTUP_PRUNE_BATCH: usize = 10_000;

/// What every member is told when the server stops.
pub const SHUTDOWN_REASON: &str = "server is shutting down";

/// Identifies a member for as long as it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

/// Which door a member came in by (for logs and history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Tcp,
    Udp,
    Web,
    Console,
}

impl Door {
    /// The door's name, as stored with each message.
    pub fn name(self) -> &'static str {
        match self {
            Door::Tcp => "tcp",
            Door::Udp => "udp",
            Door::Web => "web",
            Door::Console => "console",
        }
    }
}

/// Members past which a room is big (see [`HubConfig::big_room`]). Twitch
/// stops sending JOIN/PART past 1000 viewers for the same reason.
pub const DEFAULT_BIG_ROOM: usize = 1000;

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
    /// Events queued per member before it counts as too slow and is dropped.
    pub outbox: usize,
    /// Store private messages too (room messages always are, when history
    /// is on).
    pub store_private: bool,
    /// Rooms with more members than this are big: joins and leaves are no
    /// longer announced to the room and newcomers get a member count instead
    /// of the list, so seating n members costs O(n), not O(n²). 0: no limit.
    pub big_room: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            server_name: "sockchat".into(),
            default_room: "lobby".into(),
            filter: WordFilter::default(),
            history_len: 20,
            max_clients: 0,
            max_per_ip: 0,
            outbox: 1024,
            store_private: false,
            big_room: DEFAULT_BIG_ROOM,
        }
    }
}

/// A member's end of its connection to the hub, held by its door.
#[derive(Debug)]
pub struct Session {
    /// The member's id, for [`Hub::handle`] and [`Hub::disconnect`].
    pub id: MemberId,
    /// The nickname the member starts with.
    pub nick: String,
    /// Everything addressed to the member, in order. Yields `None` once the
    /// member is gone from the hub and everything queued has been taken.
    pub outbox: mpsc::Receiver<Arc<Outgoing>>,
    /// Resolves with a reason when the hub drops the member (outbox full,
    /// kicked, shutdown). Errors, harmlessly, when the member leaves by itself.
    pub dropped: oneshot::Receiver<String>,
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
            Refusal::ServerFull(_) | Refusal::ShuttingDown => ErrorCode::ServerFull,
            Refusal::TooManyFromAddress(_) => ErrorCode::TooManyFromAddress,
        };
        ServerEvent::error(code, self.to_string())
    }
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The member's own room message, with this id, coming back.
    Echo(u64),
    /// The result of `/history` or `/search` (or the error saying why not).
    Lookup,
}

impl Pending {
    /// Whether `event`, arriving in the member's outbox, is the awaited one.
    pub fn is_met_by(&self, event: &ServerEvent) -> bool {
        match (self, event) {
            (Pending::Echo(id), ServerEvent::Message(message)) => message.id == *id,
            (
                Pending::Lookup,
                ServerEvent::History { .. }
                | ServerEvent::SearchResults { .. }
                | ServerEvent::Error { .. },
            ) => true,
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
    /// A `std` mutex, not Tokio's: it is held only for in-memory work and
    /// `try_send`s, never across an `.await`, so it is short and uncontended
    /// locks stay cheap. Fan-out happens under it, which keeps every member's
    /// view of a room in the same order.
    state: Mutex<State>,
}

impl Hub {
    /// A hub with no members yet, keeping recent messages in memory only.
    pub fn new(config: HubConfig) -> Self {
        let metrics = Arc::new(Metrics::default());
        let state = State::new(&config, metrics.clone(), 0, Vec::new());
        Hub {
            shared: Arc::new(Shared {
                config,
                metrics,
                history: None,
                state: Mutex::new(state),
            }),
        }
    }

    /// A hub whose room messages go to `store` before anyone sees them.
    /// Message ids continue after the stored ones, and each room's recent
    /// past is loaded for replay on join.
    /// Must be called on a Tokio runtime: committed messages are fanned
    /// out by a task on it.
    pub fn with_store(
        config: HubConfig,
        mut store: Box<dyn HistoryStore>,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        // Retention first, while nobody is chatting yet, so the replayed
        // past is what retention keeps.
        let now_ms = state::now_millis();
        while store.prune(&retention, now_ms, STARTUP_PRUNE_BATCH)? == STARTUP_PRUNE_BATCH {}
        let last_id = store.last_id()?;
        let mut recent = Vec::new();
        for room in store.rooms()? {
            recent.extend(store.recent(&room, u64::MAX, config.history_len)?);
        }
        let metrics = Arc::new(Metrics::default());
        let state = State::new(&config, metrics.clone(), last_id, recent);
        let (committed, committed_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            metrics,
            history: Some(HistoryWriter::spawn(
                store,
                HubPublisher(committed),
                retention,
            )),
            config,
            state: Mutex::new(state),
        });
        tokio::spawn(fan_out_committed(Arc::downgrade(&shared), committed_rx));
        Ok(Hub { shared })
    }

    /// Commits what is queued for history and stops the writer. Blocks.
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
    /// room, queues its welcome and announces it to the room.
    pub fn connect(&self, door: Door, ip: Option<IpAddr>) -> Result<Session, Refusal> {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.admit(config, ip)?;
        let session = state.add_member(config, door, ip, None);
        state.settle(config);
        Ok(session)
    }

    /// Admits the operator console as the member `server`. It counts toward
    /// no limit and is never dropped for a full outbox.
    pub fn connect_console(&self) -> Session {
        let config = &self.shared.config;
        let mut state = self.lock();
        let session = state.add_member(config, Door::Console, None, Some(CONSOLE_NICK));
        state.settle(config);
        session
    }

    /// Carries out one command from a member.
    pub fn handle(&self, id: MemberId, command: ClientCommand) -> Handled {
        let config = &self.shared.config;
        let history = self.shared.history.as_ref();
        let mut state = self.lock();
        let handled = state.handle(config, history, id, command);
        state.settle(config);
        drop(state);
        let mut pending = handled.message.map(Pending::Echo);
        if let (Some(query), Some(writer)) = (handled.query, history) {
            writer.query(query.query.clone(), self.reply_to(query));
            pending = Some(Pending::Lookup);
        }
        Handled {
            flow: handled.flow,
            pending,
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

    /// Fans out messages the writer has committed (`saved`), or could not
    /// commit and keeps for a retry.
    fn publish(&self, messages: Vec<StoredMessage>, saved: bool) {
        let counter = if saved {
            &self.shared.metrics.history_writes
        } else {
            &self.shared.metrics.history_write_failures
        };
        counter.inc_by(messages.len() as u64);
        let config = &self.shared.config;
        let mut state = self.lock();
        for message in messages {
            // Private messages were delivered when sent; they are only kept.
            if message.to.is_none() {
                state.publish(config, message.record);
            }
        }
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
    /// flood, idle). The member's rooms see `reason`. Does nothing if the
    /// member is already gone.
    pub fn disconnect(&self, id: MemberId, reason: LeaveReason, detail: Option<String>) {
        let config = &self.shared.config;
        let mut state = self.lock();
        state.remove_member(config, id, reason, detail, None);
        state.settle(config);
    }

    /// Disconnects the member called `nick` (the console's `/kick`).
    pub fn kick(&self, nick: &str, reason: Option<&str>) -> Result<(), String> {
        let config = &self.shared.config;
        let mut state = self.lock();
        let id = state
            .find_nick(nick)
            .ok_or_else(|| format!("no such nick: {nick}"))?;
        let detail = match reason {
            Some(reason) => format!("kicked: {reason}"),
            None => "kicked".to_string(),
        };
        let told = format!("you were {detail}");
        state.remove_member(config, id, LeaveReason::Dropped, Some(detail), Some(told));
        state.settle(config);
        Ok(())
    }

    /// Tells every member the server is shutting down and forgets them all.
    /// Their doors see `dropped` resolve and close their connections.
    pub fn shutdown(&self) {
        self.lock().drop_everyone(SHUTDOWN_REASON);
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

    /// Members connected now, the console aside.
    pub fn member_count(&self) -> usize {
        self.lock().counted_members()
    }
}

/// What the history writer hands back, in commit order.
enum Committed {
    Messages(Vec<StoredMessage>, bool),
    Announcement(String),
}

/// The writer's way back into the hub: a channel to a task on the runtime.
/// Fanning out from the writer's own thread made every recipient's wake-up
/// a cross-thread one (the runtime's shared queue and a futex each); from
/// a runtime task they are cheap local wake-ups, and the writer is free
/// for the next commit sooner.
struct HubPublisher(tokio::sync::mpsc::UnboundedSender<Committed>);

impl Publisher for HubPublisher {
    fn publish(&self, messages: Vec<StoredMessage>, saved: bool) {
        // Closed only once the hub is gone; then no one is left to tell.
        let _ = self.0.send(Committed::Messages(messages, saved));
    }

    fn announce(&self, text: &str) {
        let _ = self.0.send(Committed::Announcement(text.to_string()));
    }
}

/// Fans out what the writer committed, until the hub or the writer is gone.
async fn fan_out_committed(
    hub: Weak<Shared>,
    mut committed: tokio::sync::mpsc::UnboundedReceiver<Committed>,
) {
    while let Some(next) = committed.recv().await {
        let Some(shared) = hub.upgrade() else { return };
        let hub = Hub { shared };
        match next {
            Committed::Messages(messages, saved) => hub.publish(messages, saved),
            Committed::Announcement(text) => hub.announce(&text),
        }
    }
}

#[cfg(test)]
mod tests;
