//! Doors: the ways into the hub. Each owns its sockets and wire format and
//! turns bytes into [`ClientCommand`](crate::protocol::ClientCommand)s for
//! the hub, and the hub's events back into bytes.

pub mod line_codec;
pub mod tcp;
pub mod throttle;
pub mod udp;
pub mod web;

use std::time::Duration;

/// Messages a connection may have on their way to disk (sent, not yet
/// echoed back) before its door stops reading from it: a fast sender is
/// then held back by TCP instead of queueing without bound in front of the
/// history writer.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

use tokio::sync::oneshot;

use crate::hub::{Hub, MemberId};
use crate::protocol::LeaveReason;

/// Per-connection limits shared by the doors. A limit of 0 is off.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest line, in bytes, without its terminator.
    pub max_line: usize,
    /// Messages a second per client, with a burst (see [`throttle`]).
    pub max_rate: u32,
    /// Disconnect a client that sends nothing for this long.
    pub idle: Option<Duration>,
    /// Unterminated text counts as one line once no byte has followed it
    /// for this long (the classic client never sends a newline).
    pub partial_line_flush: Duration,
    /// Largest datagram accepted from a UDP client, in bytes.
    pub max_datagram: usize,
    /// A UDP member that sends nothing for this long is gone.
    pub udp_expiry: Duration,
}

impl ConnectionLimits {
    /// The error for a message refused for going over the rate.
    pub fn over_rate(&self) -> String {
        format!("over {} messages a second; not relayed", self.max_rate)
    }
}

/// Removes a member that kept sending over the rate; returns what to tell
/// it on the way out.
pub(crate) fn disconnect_flooder(hub: &Hub, id: MemberId, limits: &ConnectionLimits) -> String {
    hub.disconnect(id, LeaveReason::Dropped, Some("excess flood".into()));
    format!(
        "excess flood: more than {} messages a second",
        limits.max_rate
    )
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_line: 4096,
            max_rate: 20,
            idle: None,
            partial_line_flush: Duration::from_millis(300),
            max_datagram: 1200,
            udp_expiry: Duration::from_secs(120),
        }
    }
}

/// Resolves with the hub's reason once it drops the member (the `dropped`
/// half of a [`Session`](crate::hub::Session)). Once the signal is spent,
/// because the member left by itself, it never resolves. Cancel-safe.
pub(crate) async fn wait_dropped(dropped: &mut Option<oneshot::Receiver<String>>) -> String {
    match dropped {
        Some(receiver) => match receiver.await {
            Ok(reason) => reason,
            Err(_) => {
                *dropped = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
