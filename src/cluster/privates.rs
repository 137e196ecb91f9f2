//! Private messages between nodes go through the cluster's log, on
//! `sockchat.private.NODE`: JetStream keeps one sent while either node's
//! link is down until both are back (for [`PRIVATE_TTL`]), and every node
//! reads the log, taking those addressed to its own run's members.

use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::hub::cluster::{ClusterRequest, NickQueue};
use crate::hub::Hub;

/// How long the log keeps a private message: long enough to outlast an
/// outage of NATS, never kept as history.
pub(super) const PRIVATE_TTL: Duration = Duration::from_secs(600);

/// How long to wait before sending a private message again.
const RETRY: Duration = Duration::from_secs(1);

/// Sends this node's members' private messages to other nodes' members,
/// in the order said: each waits until the log has it (or the node stops).
pub(super) async fn send_privates(
    jetstream: jetstream::Context,
    origin: String,
    mut privates: NickQueue,
    stop: CancellationToken,
) {
    let mut sent: u64 = 0;
    loop {
        let request = tokio::select! {
            request = privates.recv() => request,
            () = stop.cancelled() => return,
        };
        let Some(ClusterRequest::Deliver {
            origin: to,
            member,
            event,
        }) = request
        else {
            if request.is_none() {
                return;
            }
            continue;
        };
        sent += 1;
        // Sent again after a lost acknowledgement, it is in the log once.
        let message_id = format!("{origin}/private/{sent}");
        let (subject, payload) = wire::private(&to, member, &event);
        loop {
            let publication = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&message_id)
                .ttl(PRIVATE_TTL);
            let published = async {
                let ack = jetstream.send_publish(subject.clone(), publication).await?;
                ack.await.map_err(anyhow::Error::from)
            };
            let failed = tokio::select! {
                published = published => match published {
                    Ok(_) => break,
                    Err(error) => error,
                },
                () = stop.cancelled() => {
                    tracing::warn!("stopping with a private message to another node not sent");
                    return;
                }
            };
            tracing::info!(error = %failed, "a private message to another node waits for the link");
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// A private message read from the log: delivered if it is for a member
/// of this run of the node (`me`). A member number of an earlier run is
/// someone else now, and another node's message is not this one's.
pub(super) fn take_private(hub: &Hub, me: &wire::Origin, payload: &[u8]) {
    match wire::read_private(payload) {
        Some((to, member, event)) if to == me.header() => hub.deliver_from_cluster(member, event),
        Some(_) => {}
        None => tracing::warn!("skipping a private message that is not sockchat's"),
    }
}
