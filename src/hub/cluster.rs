//! The hub's side of a cluster. On one node a message gets its id from the
//! hub's counter and goes to the history writer. In a cluster it goes to
//! the cluster's log instead (see `crate::cluster`). The log gives it its
//! id and brings it back, in the log's order, to every node, this one
//! included, and each node stores and fans out what comes back. Until
//! then the sender's node knows its message by a ticket of its own.
//!
//! Nothing here does I/O: the outlet is a bounded queue whose far end is
//! the cluster link's task.

use tokio::sync::mpsc;

use crate::store::StoredMessage;

/// Messages said on this node that may wait for the cluster link at once.
/// Past it the link is a slow consumer: the sender is told, and nothing
/// of it is lost, since nobody saw it.
pub const CLUSTER_QUEUE: usize = 16 * 1024;

/// Where this node's members' messages go: the cluster link's queue.
#[derive(Debug, Clone)]
pub struct ClusterOutlet {
    queue: mpsc::Sender<StoredMessage>,
}

/// The far end of a [`ClusterOutlet`], for the cluster link to read.
pub type ClusterQueue = mpsc::Receiver<StoredMessage>;

impl ClusterOutlet {
    /// An outlet holding up to `capacity` messages, and its far end.
    pub fn new(capacity: usize) -> (ClusterOutlet, ClusterQueue) {
        let (queue, far_end) = mpsc::channel(capacity);
        (ClusterOutlet { queue }, far_end)
    }

    /// Queues a message for the log; `false` if the queue is full or the
    /// link is gone.
    pub(super) fn send(&self, message: StoredMessage) -> bool {
        self.queue.try_send(message).is_ok()
    }
}
