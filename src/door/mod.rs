//! Doors: the ways into the hub. A door owns its sockets and its wire
//! format, nothing more: the per-member rules live in
//! [`Session`](crate::session::Session), and one driver
//! ([`driver::serve_member`]) runs them for every connection-oriented door
//! over that door's [`Wire`](driver::Wire).
//!
//! - [`tcp`]: text and JSON lines over any byte stream ([`stream`]).
//! - [`web`]: the page, and JSON over a WebSocket.
//! - [`udp`]: datagrams; its own driver, the same session.
//! - [`console`]: the operator's terminal as the member `server`.
//!
//! Every door implements [`Door`], so the server binds, spawns, tracks and
//! lists them in one loop.

pub mod console;
pub mod driver;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Hub, MemberId};
use crate::protocol::DropReason;
use crate::session::{Action, Ending, Limits, Session};

/// What every door is given to serve with.
#[derive(Debug, Clone)]
pub struct DoorContext {
    pub hub: Hub,
    pub limits: Arc<Limits>,
    /// Cancelled when the server stops accepting.
    pub shutdown: CancellationToken,
    /// Tracks every task a door spawns, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// A bound door, ready to serve.
pub trait Door: Send {
    /// The door's name in logs and `listening` lines: `tcp`, `udp`, ...
    fn name(&self) -> &'static str;

    /// Where it listens, if on a socket.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// The line printed once it is bound (scripts read it), if any.
    fn listening_line(&self) -> Option<String> {
        self.local_addr()
            .map(|addr| format!("listening {} {addr}", self.name()))
    }

    /// Serves until `context.shutdown` is cancelled.
    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Resolves with the hub's reason once it removes the member (the
/// `dropped` half of a [`Membership`](crate::hub::Membership)). Once the
/// signal is spent, because the member left by itself, it never resolves.
/// Cancel-safe.
pub(crate) async fn wait_dropped(
    dropped: &mut Option<oneshot::Receiver<DropReason>>,
) -> DropReason {
    match dropped {
        Some(receiver) => match receiver.await {
            Ok(why) => why,
            Err(_) => {
                *dropped = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// A session that ended as a goodbye may have been removed by the hub
/// first (a command after removal is answered as if it were a goodbye):
/// then the hub's reason is the real ending, and the member hears it.
pub(crate) fn with_drop_reason(
    ending: Ending,
    dropped: &mut Option<oneshot::Receiver<DropReason>>,
) -> Ending {
    match ending {
        Ending::Quit => match dropped.as_mut().and_then(|signal| signal.try_recv().ok()) {
            Some(why) => Ending::Dropped(why),
            None => Ending::Quit,
        },
        other => other,
    }
}

/// The time now, as the session wants it. Through tokio's clock, so tests
/// with paused time control it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Carries out what `session` asks of the hub for member `id`, until it
/// asks nothing more; the session's ending, once it has one.
pub(crate) fn carry_out(session: &mut Session, hub: &Hub, id: MemberId) -> Option<Ending> {
    while let Some(action) = session.poll_action() {
        match action {
            Action::Run(command) => {
                let handled = hub.handle(id, command);
                session.handle_handled(handled, now());
            }
            Action::Tell(event) => hub.notify(id, event),
            Action::Welcome => hub.welcome(id),
            Action::Arrive => hub.arrive(id),
            Action::End(ending) => return Some(ending),
        }
    }
    None
}
