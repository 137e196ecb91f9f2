//! The bus: where committed messages go to be fanned out. This is the seam
//! a cluster plugs into: on one node it is a function call into the local
//! hub's fan-out; across nodes it would carry each room's messages to
//! every node, each of which fans them out to its own members.

use std::fmt::Debug;
use std::sync::{Arc, Weak};

use super::{Shared, WeakHub};
use crate::protocol::MessageRecord;
use crate::store::writer::Publisher;
use crate::store::StoredMessage;

/// Carries committed room messages, in room order, to the fan-out of every
/// node that has members in the room.
pub trait Bus: Debug + Send + Sync {
    /// These room messages are committed (or, without history, accepted):
    /// fan them out. Called in commit order.
    fn publish(&self, messages: Vec<MessageRecord>);
    /// Tell everyone connected (history trouble, say).
    fn announce(&self, text: &str);
}

/// The bus of a single node: straight into this hub's fan-out.
#[derive(Debug)]
pub struct LocalBus {
    hub: WeakHub,
}

impl LocalBus {
    /// The local bus of `hub`.
    pub fn boxed(hub: WeakHub) -> Arc<dyn Bus> {
        Arc::new(LocalBus { hub })
    }
}

impl Bus for LocalBus {
    fn publish(&self, messages: Vec<MessageRecord>) {
        if let Some(hub) = self.hub.upgrade() {
            hub.fan_out(messages);
        }
    }

    fn announce(&self, text: &str) {
        if let Some(hub) = self.hub.upgrade() {
            hub.announce(text);
        }
    }
}

/// What the history writer hands back, in commit order.
enum Committed {
    Messages(Vec<StoredMessage>, bool),
    Announcement(String),
}

/// The writer's way out to the bus: a channel to a task on the runtime.
/// Fanning out from the writer's own thread made every recipient's wake-up
/// a cross-thread one (the runtime's shared queue and a futex each); from
/// a runtime task they are cheap local wake-ups, and the writer is free
/// for the next commit sooner.
pub(super) struct WriterOutlet(tokio::sync::mpsc::UnboundedSender<Committed>);

impl WriterOutlet {
    /// The outlet, and the task (to spawn on the runtime) that forwards
    /// what it receives to the hub's bus.
    pub(super) fn new(hub: Weak<Shared>) -> (Self, impl std::future::Future<Output = ()>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        (WriterOutlet(sender), forward_committed(hub, receiver))
    }
}

impl Publisher for WriterOutlet {
    fn publish(&self, messages: Vec<StoredMessage>, saved: bool) {
        // Closed only once the hub is gone; then no one is left to tell.
        let _ = self.0.send(Committed::Messages(messages, saved));
    }

    fn announce(&self, text: &str) {
        let _ = self.0.send(Committed::Announcement(text.to_string()));
    }
}

/// Hands what the writer committed to the bus, until the hub or the
/// writer is gone.
async fn forward_committed(
    hub: Weak<Shared>,
    mut committed: tokio::sync::mpsc::UnboundedReceiver<Committed>,
) {
    while let Some(next) = committed.recv().await {
        let Some(shared) = hub.upgrade() else { return };
        match next {
            Committed::Messages(messages, saved) => {
                let metrics = &shared.metrics;
                let counter = if saved {
                    &metrics.history_writes
                } else {
                    &metrics.history_write_failures
                };
                counter.inc_by(messages.len() as u64);
                // Private messages were delivered when sent; they are only kept.
                let room_messages = messages
                    .into_iter()
                    .filter(|message| message.to.is_none())
                    .map(|message| message.record)
                    .collect();
                shared.bus.publish(room_messages);
            }
            Committed::Announcement(text) => shared.bus.announce(&text),
        }
    }
}
