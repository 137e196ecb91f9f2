//! Doors: the ways into the hub. A door owns its sockets and its wire
//! format, nothing more: the per-member rules live in
//! [`Session`](crate::session::Session), and one driver
//! ([`driver::serve_member`]) runs them for every connection-oriented door
//! over that door's [`Wire`](driver::Wire).
//!
//! - [`tcp`]: text and JSON lines over any byte stream ([`stream`]).
//! - [`tls`]: the same lines inside TLS.
//! - [`web`]: the page, and JSON over a WebSocket (HTTP or HTTPS).
//! - [`irc`]: IRC clients, plain or inside TLS.
//! - [`udp`]: datagrams; its own driver, the same session.
//! - [`console`]: the operator's terminal as the member `server`.
//!
//! Every door implements [`Door`], so the server binds, spawns, tracks and
//! lists them in one loop.

pub mod console;
pub mod driver;
pub mod irc;
pub mod listener;
pub mod stream;
pub mod tcp;
pub mod tls;
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
    /// Given up when the process is out of descriptors, to tell newcomers
    /// the server is full.
    pub spare: Arc<listener::SpareDescriptor>,
}

/// A bound door, ready to serve.
pub trait Door: Send {
    /// The door's name in logs and `listening` lines: `tcp`, `udp`, ...
    fn name(&self) -> &'static str;

    /// Where it listens, if on a socket.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// The lines printed once it is bound (scripts read them): one per
    /// way in, like `listening tcp 127.0.0.1:8888`.
    fn listening_lines(&self) -> Vec<String> {
        self.local_addr()
            .map(|addr| format!("listening {} {addr}", self.name()))
            .into_iter()
            .collect()
    }

    /// Serves until `context.shutdown` is cancelled.
    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Resolves with the hub's reason once it removes the member (the
/// `dropped` half of a [`Membership`](crate::hub::Membership)). The signal
/// is spent then (and when the member left by itself): it is taken, so it
/// is never polled again (a finished oneshot panics if polled), and from
/// then on this never resolves. Cancel-safe.
pub(crate) async fn wait_dropped(
    dropped: &mut Option<oneshot::Receiver<DropReason>>,
) -> DropReason {
    let Some(receiver) = dropped else {
        return std::future::pending().await;
    };
    let received = receiver.await;
    *dropped = None;
    match received {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Once the reason is taken, waiting again is safe (a finished
    /// oneshot panics if polled) and never resolves.
    #[tokio::test(start_paused = true)]
    async fn a_spent_drop_signal_is_never_polled_again() {
        let (tell, signal) = oneshot::channel();
        let mut dropped = Some(signal);
        tell.send(DropReason::SendqExceeded).unwrap();
        assert_eq!(wait_dropped(&mut dropped).await, DropReason::SendqExceeded);
        assert!(dropped.is_none());
        let again = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            wait_dropped(&mut dropped),
        );
        assert!(again.await.is_err(), "a spent signal never resolves");
        // One whose sender went away without a word: the same.
        let (tell, signal) = oneshot::channel::<DropReason>();
        let mut dropped = Some(signal);
        drop(tell);
        let gone = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            wait_dropped(&mut dropped),
        );
        assert!(gone.await.is_err());
        assert!(dropped.is_none());
    }
}
