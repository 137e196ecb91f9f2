//! Rooms' own state across nodes: each room that has any is one entry of
//! the rooms bucket (see [`crate::hub::cluster::RoomEntry`]). A node
//! changes an entry by compare-and-set, applying its member's change to
//! whatever the entry is by then, so two changes at once both count and
//! every node sees them in one order; every node watches the bucket and
//! its rooms follow the entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::hub::cluster::{RoomChange, RoomEntry, RoomQueue, RoomRequest};
use crate::hub::WeakHub;

/// How long one change may take, conflicts and all, before its member
/// is told it was not made.
const CHANGE_WAIT: Duration = Duration::from_secs(2);

/// Times a change is applied again to an entry changed meanwhile.
const CONFLICT_TRIES: usize = 8;

/// Watches the rooms bucket, until `stop`: the hub's rooms follow it.
pub(super) async fn watch_rooms(hub: WeakHub, bucket: kv::Store, stop: CancellationToken) {
    // The room of each key seen, for its deletion (which carries the key only).
    let mut rooms: HashMap<String, String> = HashMap::new();
    let mut watch = None;
    // The bucket's last revision when the watch was opened: what it
    // brings up to there is known already, or was before this node came.
    let mut replayed_to = 0;
    loop {
        let Some(entries) = watch.as_mut() else {
            // The current entries first, then changes.
            let mut stream = bucket.stream.clone();
            let open = async {
                let info = stream.info().await?;
                let watch = bucket.watch_with_history(">").await?;
                anyhow::Ok((info.state.last_sequence, watch))
            };
            let opened = tokio::select! {
                opened = open => opened.map(|(last, watch)| {
                    replayed_to = last;
                    watch
                }),
                () = stop.cancelled() => return,
            };
            match opened {
                Ok(opened) => watch = Some(opened),
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the cluster's rooms; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
            continue;
        };
        let entry = tokio::select! {
            entry = entries.next() => entry,
            () = stop.cancelled() => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        match entry {
            Some(Ok(entry)) => match entry.operation {
                kv::Operation::Put => match wire::room_entry(&entry.key, &entry.value) {
                    Some(room) => {
                        rooms.insert(entry.key, room.room.clone());
                        let news = entry.revision > replayed_to;
                        hub.room_entry_seen(entry.revision, room, news);
                    }
                    None => {
                        tracing::warn!(key = %entry.key, "skipping a room entry that is not sockchat's")
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    if let Some(room) = rooms.remove(&entry.key) {
                        hub.room_entry_gone(&room);
                    }
                }
            },
            // Broken off (NATS went away): watched again.
            Some(Err(error)) => {
                tracing::info!(%error, "watching the cluster's rooms again");
                watch = None;
            }
            None => watch = None,
        }
    }
}

/// Carries this node's room changes to the bucket, one at a time (in the
/// order asked), until `stop`. While the link is down a change is not
/// made, and its member is told at once.
pub(super) async fn change_rooms(
    hub: WeakHub,
    bucket: kv::Store,
    mut requests: RoomQueue,
    link_down: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            request = requests.recv() => request,
            () = stop.cancelled() => return,
        };
        let Some(request) = request else { return };
        let down = link_down.load(Ordering::Relaxed);
        match request {
            RoomRequest::Change {
                member,
                room,
                change,
            } => {
                let made = match down {
                    true => false,
                    false => tokio::select! {
                        made = tokio::time::timeout(CHANGE_WAIT, change_entry(&bucket, &room, &change)) => {
                            match made {
                                Ok(Ok(())) => true,
                                Ok(Err(error)) => {
                                    tracing::warn!(%error, %room, "a room change was not made");
                                    false
                                }
                                Err(_) => false,
                            }
                        }
                        () = stop.cancelled() => return,
                    },
                };
                // A room's making, or a member's striking, is nobody's
                // command: nobody to tell.
                let asked = !matches!(change, RoomChange::Found { .. } | RoomChange::Forget { .. });
                if !made && asked {
                    if let Some(hub) = hub.upgrade() {
                        hub.room_change_failed(member.number(), &room);
                    }
                }
            }
            // An entry left over is harmless (the next to make the room
            // starts it anew): a close that fails is not tried again.
            RoomRequest::Close { room } if !down => tokio::select! {
                _ = tokio::time::timeout(CHANGE_WAIT, close_entry(&bucket, &room)) => {}
                () = stop.cancelled() => return,
            },
            RoomRequest::Close { .. } => {}
        }
    }
}

/// Applies `change` to `room`'s entry by compare-and-set, reading it
/// again each time another node changed it first.
async fn change_entry(bucket: &kv::Store, room: &str, change: &RoomChange) -> anyhow::Result<()> {
    let key = wire::room_key(room);
    for _ in 0..CONFLICT_TRIES {
        let current = bucket.entry(key.as_str()).await?;
        let put = current.filter(|entry| entry.operation == kv::Operation::Put);
        let revision = put.as_ref().map(|entry| entry.revision);
        let mut entry = match &put {
            Some(put) => wire::room_entry(&key, &put.value)
                .ok_or_else(|| anyhow::anyhow!("#{room}'s entry is not sockchat's"))?,
            None => RoomEntry::new(room),
        };
        if !entry.apply(revision, change) {
            return Ok(());
        }
        entry.written = now_millis();
        let value = wire::room_value(&entry);
        let conflict = match revision {
            None => match bucket.create(key.as_str(), value).await {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => true,
                Err(error) => return Err(error.into()),
            },
            Some(revision) => match bucket.update(key.as_str(), value, revision).await {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => true,
                Err(error) => return Err(error.into()),
            },
        };
        debug_assert!(conflict);
    }
    anyhow::bail!("#{room} changed {CONFLICT_TRIES} times while this change was made")
}

/// Deletes `room`'s entry, unless it changed since it was read (someone
/// came in, on some node).
async fn close_entry(bucket: &kv::Store, room: &str) -> anyhow::Result<()> {
    let key = wire::room_key(room);
    let Some(entry) = bucket.entry(key.as_str()).await? else {
        return Ok(());
    };
    if entry.operation == kv::Operation::Put {
        bucket
            .delete_expect_revision(key.as_str(), Some(entry.revision))
            .await?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, by this machine's clock.
fn now_millis() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |since| since.as_millis() as u64)
}
