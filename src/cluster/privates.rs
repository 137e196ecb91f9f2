//! Private messages between nodes: each node takes those for its members
//! on its own subject, `sockchat.private.NODE`, over core NATS.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::hub::cluster::{ClusterRequest, NickQueue};
use crate::hub::WeakHub;

/// How long a private message may wait for the client to take it.
const SEND_WAIT: Duration = Duration::from_secs(2);

/// Sends this node's members' private messages to other nodes' members.
pub(super) async fn send_privates(
    client: async_nats::Client,
    mut privates: NickQueue,
    stop: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            request = privates.recv() => request,
            () = stop.cancelled() => return,
        };
        let Some(ClusterRequest::Deliver {
            origin,
            member,
            event,
        }) = request
        else {
            if request.is_none() {
                return;
            }
            continue;
        };
        let (subject, payload) = wire::private(&origin, member, &event);
        // While NATS is away the client's queue may be full: a stopping
        // node does not wait for it, nor does a message wait for ever.
        let sent = tokio::select! {
            sent = tokio::time::timeout(SEND_WAIT, client.publish(subject, payload)) => sent,
            () = stop.cancelled() => return,
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "a private message to another node was lost"),
            Err(_) => tracing::warn!("a private message to another node was lost: NATS is away"),
        }
    }
}

/// Private messages from other nodes to this node's members.
pub(super) async fn receive_privates(
    hub: WeakHub,
    mut privates: async_nats::Subscriber,
    me: String,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = privates.next() => message,
            () = stop.cancelled() => return,
        };
        let Some(message) = message else { return };
        let Some(hub) = hub.upgrade() else { return };
        match wire::read_private(&message.payload) {
            // For this run of the node only: a member number of an
            // earlier run is someone else now.
            Some((to, member, event)) if to == me => hub.deliver_from_cluster(member, event),
            Some(_) => {}
            None => tracing::warn!("skipping a private message that is not sockchat's"),
        }
    }
}
