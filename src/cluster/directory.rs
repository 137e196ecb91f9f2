//! The cluster's directory of members: every node watches the nicks
//! bucket, whose entries say who is on which node, under which nick, in
//! which rooms. An entry is a member somewhere, a change of its rooms a
//! join or a leave, a deleted entry a member that quit, and an entry not
//! renewed for a lease a member whose node died (or lost NATS).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::hub::WeakHub;

/// Watches the nicks bucket for the other nodes' members, until `stop`.
/// While this node's own link is down nobody's renewals reach it, so
/// nobody is taken for lost then: the lease starts again when the link is
/// back.
pub(super) async fn watch_members(
    hub: WeakHub,
    bucket: kv::Store,
    lease: Duration,
    me: String,
    link_down: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut last_seen: HashMap<String, Instant> = HashMap::new();
    let mut sweep = tokio::time::interval(lease / 3);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = None;
    loop {
        let Some(entries) = watch.as_mut() else {
            // The current entries first (the last of each key), then changes.
            match bucket.watch_with_history(">").await {
                Ok(opened) => watch = Some(opened),
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the cluster's members; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
            continue;
        };
        tokio::select! {
            entry = entries.next() => {
                let Some(hub) = hub.upgrade() else { return };
                match entry {
                    // What the hub knows a member by is its nick's key,
                    // which the entry's key is written from.
                    Some(Ok(entry)) => match (entry.operation, wire::key_of_entry(&entry.key)) {
                        (_, None) => tracing::warn!(key = %entry.key, "skipping a member entry that is not sockchat's"),
                        (kv::Operation::Put, Some(key)) => {
                            let Some(member) = wire::remote_member(&entry.value)
                                .filter(|member| crate::protocol::text::nick_key(&member.presence.nick) == key)
                            else {
                                continue;
                            };
                            if member.origin == me {
                                // This node's own now: whoever held it before
                                // elsewhere is gone.
                                if last_seen.remove(&key).is_some() {
                                    hub.remote_gone(&key, true);
                                }
                                continue;
                            }
                            last_seen.insert(key.clone(), Instant::now());
                            hub.remote_seen(key, member);
                        }
                        (kv::Operation::Delete | kv::Operation::Purge, Some(key)) => {
                            last_seen.remove(&key);
                            hub.remote_gone(&key, false);
                        }
                    },
                    // Broken off (NATS went away): watched again.
                    Some(Err(error)) => {
                        tracing::info!(%error, "watching the cluster's members again");
                        watch = None;
                    }
                    None => watch = None,
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let down = link_down.load(Ordering::Relaxed);
                let lapsed = sweep_lapsed(&mut last_seen, now, lease, down);
                if lapsed.is_empty() {
                    continue;
                }
                let Some(hub) = hub.upgrade() else { return };
                for key in lapsed {
                    hub.remote_gone(&key, true);
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// The keys not renewed for `lease` by `now`, taken out of `last_seen`.
/// None while this node's link is `down`: then nobody's renewals reach
/// it, and every lease starts again.
fn sweep_lapsed(
    last_seen: &mut HashMap<String, Instant>,
    now: Instant,
    lease: Duration,
    down: bool,
) -> Vec<String> {
    if down {
        last_seen.values_mut().for_each(|seen| *seen = now);
        return Vec::new();
    }
    let lapsed: Vec<String> = (last_seen.iter())
        .filter(|(_, seen)| now.duration_since(**seen) > lease)
        .map(|(key, _)| key.clone())
        .collect();
    for key in &lapsed {
        last_seen.remove(key);
    }
    lapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_lapses_while_this_nodes_own_link_is_down() {
        let lease = Duration::from_secs(15);
        let start = Instant::now();
        let mut last_seen: HashMap<String, Instant> = [
            ("ann".to_string(), start),
            ("bob".to_string(), start + lease),
        ]
        .into();
        // Down past ann's lease: she is not taken for lost...
        assert!(sweep_lapsed(&mut last_seen, start + lease * 2, lease, true).is_empty());
        // ...and once it is back, her lease starts from the outage's last sweep.
        let back = start + lease * 2;
        assert!(sweep_lapsed(&mut last_seen, back + lease / 2, lease, false).is_empty());
        let mut lapsed = sweep_lapsed(&mut last_seen, back + lease * 2, lease, false);
        lapsed.sort();
        assert_eq!(lapsed, ["ann", "bob"]);
        assert!(last_seen.is_empty());
    }

    #[test]
    fn an_entry_not_renewed_for_a_lease_lapses() {
        let lease = Duration::from_secs(15);
        let start = Instant::now();
        let mut last_seen: HashMap<String, Instant> = [
            ("ann".to_string(), start),
            ("bob".to_string(), start + lease),
        ]
        .into();
        let lapsed = sweep_lapsed(&mut last_seen, start + lease + lease / 2, lease, false);
        assert_eq!(lapsed, ["ann"]);
        assert_eq!(last_seen.len(), 1);
    }
}
