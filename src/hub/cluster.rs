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

/// Where this node's members' messages go: the cluster link's queue.
#[derive(Debug, Clone)]
pub struct ClusterOutlet {
    queue: mpsc::Sender<StoredMessage>,
    nicks: mpsc::UnboundedSender<ClusterRequest>,
    privates: mpsc::UnboundedSender<ClusterRequest>,
    /// This node's name, in its guests' names (`guest-NODE-N`), which
    /// therefore never clash with another node's.
    pub node: String,
}

/// The far ends of a [`ClusterOutlet`], for the cluster link to read.
pub type ClusterQueue = mpsc::Receiver<StoredMessage>;
pub type NickQueue = mpsc::UnboundedReceiver<ClusterRequest>;

/// What the cluster link reads from a [`ClusterOutlet`]: room messages,
/// nick requests, and private messages (`Deliver`), each on its own, so
/// none waits behind the others.
#[derive(Debug)]
pub struct ClusterEnds {
    pub messages: ClusterQueue,
    pub nicks: NickQueue,
    pub privates: NickQueue,
}

impl ClusterOutlet {
    /// An outlet holding up to `capacity` messages, and its far ends.
    pub fn new(capacity: usize, node: &str) -> (ClusterOutlet, ClusterEnds) {
        let (queue, messages) = mpsc::channel(capacity);
        // Nick requests and private messages come at most one per
        // command, which the session's rate limit bounds.
        let (nicks, nick_requests) = mpsc::unbounded_channel();
        let (privates, private_messages) = mpsc::unbounded_channel();
        let node = node.to_string();
        let outlet = ClusterOutlet {
            queue,
            nicks,
            privates,
            node,
        };
        let ends = ClusterEnds {
            messages,
            nicks: nick_requests,
            privates: private_messages,
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

    /// Queues a message for the log; `false` if the queue is full or the
    /// link is gone.
    pub(super) fn send(&self, message: StoredMessage) -> bool {
        self.queue.try_send(message).is_ok()
    }
}
