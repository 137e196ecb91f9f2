//! The nicks this node holds in the cluster's nicks bucket. A claim is a
//! create, which JetStream refuses if the key has a value: a
//! compare-and-set, so of two nodes claiming one nick at once exactly one
//! gets it. Each claim is renewed (an update expecting the revision this
//! node wrote) every third of the lease; one not renewed for the lease
//! lapses, which frees a dead node's nicks.
//!
//! One task owns what is held, so there is one writer per key; the
//! renewals of a round run side by side ([`RENEW_AT_ONCE`]), so a round
//! over thousands of members takes a few round trips, not thousands, and
//! claims are answered while it runs (a claim waits only behind the
//! requests asked before it).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::hub::cluster::{Claimed, ClusterRequest, NickQueue, Presence};
use crate::hub::WeakHub;

/// Renewals of one round in flight at once.
const RENEW_AT_ONCE: usize = 64;

/// How long one write (or read) of the bucket may take: a claim is a
/// create and, on a conflict, a read, so it is answered within about
/// twice this.
const WRITE_WAIT: Duration = Duration::from_millis(1500);

/// How long a leaving node spends freeing its nicks: past it, they lapse
/// at the lease.
const FREE_AT_STOP: Duration = Duration::from_secs(2);

/// One nick this node holds: the revision it last wrote, and what.
#[derive(Debug)]
struct Held {
    revision: u64,
    value: Bytes,
    member: u64,
}

/// What became of a write to a key this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Written, at this revision.
    Written(u64),
    /// The key is this node's still, at this revision (an earlier write
    /// whose answer was lost had landed), but the write did not happen.
    Ours(u64),
    /// The key lapsed or was deleted: free to claim again.
    Vacant,
    /// Someone else holds the key now.
    Lost,
    /// NATS did not answer; tried again later.
    Unreachable,
}

/// A round's outcomes: each key, the member it was renewed for, and what
/// became of the write.
type Round = Pin<Box<dyn Stream<Item = (String, u64, Kept)> + Send>>;

/// Claims, shows, releases and renews this node's nicks, until `stop`.
pub(super) async fn hold_nicks(
    hub: WeakHub,
    bucket: kv::Store,
    every: Duration,
    origin: String,
    link_down: Arc<AtomicBool>,
    mut requests: NickQueue,
    stop: CancellationToken,
) {
    let mut holder = NickHolder {
        hub,
        bucket,
        origin,
        link_down,
        held: HashMap::new(),
        unasked: HashMap::new(),
        version: 0,
    };
    let mut renew = tokio::time::interval(every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: Option<Round> = None;
    loop {
        tokio::select! {
            first = requests.recv() => {
                let Some(first) = first else { return };
                // What else waits goes with it, so a member's burst of
                // changes is shown once.
                let mut batch = vec![first];
                while batch.len() < RENEW_AT_ONCE {
                    match requests.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                if holder.carry_out(batch).await.is_none() {
                    return;
                }
            }
            kept = next_of(&mut round) => match kept {
                Some((key, member, kept)) => {
                    if holder.renewed(key, member, kept).await.is_none() {
                        return;
                    }
                }
                None => round = None,
            },
            _ = renew.tick() => {
                if holder.ask_again().await.is_none() {
                    return;
                }
                // A round still running (NATS is slow) is not doubled.
                if round.is_none() && !holder.held.is_empty() {
                    round = Some(holder.renewal_round());
                }
            }
            () = stop.cancelled() => {
                holder.free_all().await;
                return;
            }
        }
    }
}

/// The next outcome of `round`, or never while there is none.
async fn next_of(round: &mut Option<Round>) -> Option<(String, u64, Kept)> {
    match round {
        Some(round) => round.next().await,
        None => std::future::pending().await,
    }
}

struct NickHolder {
    hub: WeakHub,
    bucket: kv::Store,
    /// This node's run, as entries name it.
    origin: String,
    link_down: Arc<AtomicBool>,
    held: HashMap<String, Held>,
    /// Forced claims (of names members have already) that could not be
    /// asked while the link was down: asked again at every renewal.
    unasked: HashMap<String, ClusterRequest>,
    /// Counts what this node has shown of its members, so other nodes can
    /// tell a stale entry from a newer one (see `RemoteMember::version`).
    version: u64,
}

impl NickHolder {
    /// Carries out `batch` in order, except a show that a later show of
    /// the same key makes moot. `None` once the hub has gone.
    async fn carry_out(&mut self, batch: Vec<ClusterRequest>) -> Option<()> {
        let last_show: HashMap<&str, usize> = (batch.iter().enumerate())
            .filter_map(|(at, request)| match request {
                ClusterRequest::Show { key, .. } => Some((key.as_str(), at)),
                _ => None,
            })
            .collect();
        let moot: Vec<bool> = (batch.iter().enumerate())
            .map(|(at, request)| match request {
                ClusterRequest::Show { key, .. } => last_show[key.as_str()] != at,
                _ => false,
            })
            .collect();
        for (request, moot) in batch.into_iter().zip(moot) {
            if !moot {
                self.carry_out_one(request).await?;
            }
        }
        Some(())
    }

    async fn carry_out_one(&mut self, request: ClusterRequest) -> Option<()> {
        match &request {
            ClusterRequest::Claim {
                key,
                member,
                presence,
                forced,
                ..
            } => {
                let value = self.entry(member.number(), presence);
                let claimed = self.claim(key, member.number(), value).await;
                if claimed == Claimed::Unavailable && *forced {
                    // A name the member has already: it must be held, so
                    // it is asked for again until the cluster answers.
                    self.unasked.insert(key.clone(), request.clone());
                }
                self.hub.upgrade()?.nick_claimed(request, claimed);
            }
            ClusterRequest::Show { key, presence } => {
                if let Some(ClusterRequest::Claim {
                    presence: asked, ..
                }) = self.unasked.get_mut(key)
                {
                    *asked = presence.clone();
                    return Some(());
                }
                let Some(member) = self.held.get(key).map(|held| held.member) else {
                    return Some(());
                };
                let value = self.entry(member, presence);
                let held = self.held.get_mut(key).expect("just seen");
                held.value = value.clone();
                let revision = held.revision;
                // While NATS is away it is not written now: the next
                // renewal writes it, and nothing waits behind it.
                if self.link_down.load(Ordering::Relaxed) {
                    return Some(());
                }
                let kept = self.write(key, value, revision, member).await;
                self.renewed(key.clone(), member, kept).await?;
            }
            ClusterRequest::Release { key } => {
                self.unasked.remove(key);
                if let Some(held) = self.held.remove(key) {
                    self.free(key, held).await;
                }
            }
            ClusterRequest::Deliver { .. } => {
                tracing::warn!("a private message was sent to the nick holder")
            }
        }
        Some(())
    }

    /// A new entry for `member`, with a version newer than any before.
    fn entry(&mut self, member: u64, presence: &Presence) -> Bytes {
        self.version += 1;
        wire::member_entry(&self.origin, member, self.version, presence)
    }

    /// Claims `key` for `member` with `value`.
    async fn claim(&mut self, key: &str, member: u64, value: Bytes) -> Claimed {
        if self.link_down.load(Ordering::Relaxed) {
            return Claimed::Unavailable;
        }
        let created = timeout(
            WRITE_WAIT,
            self.bucket.create(wire::nick_key(key), value.clone()),
        )
        .await;
        match created {
            Ok(Ok(revision)) => {
                let held = Held {
                    revision,
                    value,
                    member,
                };
                self.held.insert(key.to_string(), held);
                Claimed::Granted
            }
            Ok(Err(error)) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Ours already, if an earlier create's answer was lost.
                match owner(&self.bucket, &self.origin, key).await {
                    Owner::This {
                        revision,
                        member: owner,
                    } if owner == member => {
                        let held = Held {
                            revision,
                            value,
                            member,
                        };
                        self.held.insert(key.to_string(), held);
                        Claimed::Granted
                    }
                    Owner::Unknown => Claimed::Unavailable,
                    // Lapsed this instant: asked again, as if the link were down.
                    Owner::Vacant => Claimed::Unavailable,
                    Owner::This { .. } | Owner::Other => Claimed::Taken,
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot claim a nick in the cluster");
                Claimed::Unavailable
            }
            Err(_) => Claimed::Unavailable,
        }
    }

    /// Writes `value` to `key`, expecting `revision`.
    async fn write(&self, key: &str, value: Bytes, revision: u64, member: u64) -> Kept {
        write(&self.bucket, &self.origin, key, value, revision, member).await
    }

    /// Acts on what became of a write to `key` for `member`. `None` once
    /// the hub has gone.
    async fn renewed(&mut self, key: String, member: u64, kept: Kept) -> Option<()> {
        // Released meanwhile (whatever the write did, freeing it undid),
        // or released and claimed since by another member, whose claim a
        // write for the one before says nothing about.
        let Some(held) = self.held.get_mut(&key).filter(|held| held.member == member) else {
            return Some(());
        };
        match kept {
            // Every write to a held key is this node's: the newest wins.
            Kept::Written(revision) => held.revision = held.revision.max(revision),
            Kept::Ours(revision) => {
                held.revision = revision;
                let (value, member) = (held.value.clone(), held.member);
                if let Kept::Written(revision) = self.write(&key, value, revision, member).await {
                    let held = self.held.get_mut(&key).expect("held");
                    held.revision = held.revision.max(revision);
                }
            }
            // Lapsed (the link was down past the lease): claimed again
            // if nobody took it meanwhile.
            Kept::Vacant => {
                let (value, member) = (held.value.clone(), held.member);
                match self.claim(&key, member, value).await {
                    Claimed::Taken => self.lose(&key)?,
                    Claimed::Granted | Claimed::Unavailable => {}
                }
            }
            Kept::Lost => self.lose(&key)?,
            Kept::Unreachable => {}
        }
        Some(())
    }

    /// Someone else holds `key` now: its member here takes another name.
    fn lose(&mut self, key: &str) -> Option<()> {
        self.held.remove(key);
        self.hub.upgrade()?.nick_lost(key);
        Some(())
    }

    /// Asks again for the forced claims the cluster could not answer.
    async fn ask_again(&mut self) -> Option<()> {
        if self.unasked.is_empty() || self.link_down.load(Ordering::Relaxed) {
            return Some(());
        }
        for (key, request) in std::mem::take(&mut self.unasked) {
            let ClusterRequest::Claim {
                member, presence, ..
            } = &request
            else {
                continue;
            };
            let value = self.entry(member.number(), presence);
            match self.claim(&key, member.number(), value).await {
                Claimed::Unavailable => {
                    self.unasked.insert(key, request);
                }
                claimed => self.hub.upgrade()?.nick_claimed(request, claimed),
            }
        }
        Some(())
    }

    /// Renews every held key, [`RENEW_AT_ONCE`] at a time.
    fn renewal_round(&self) -> Round {
        let writes: Vec<(String, Bytes, u64, u64)> = (self.held.iter())
            .map(|(key, held)| (key.clone(), held.value.clone(), held.revision, held.member))
            .collect();
        let (bucket, origin) = (self.bucket.clone(), self.origin.clone());
        let round = futures_util::stream::iter(writes)
            .map(move |(key, value, revision, member)| {
                let (bucket, origin) = (bucket.clone(), origin.clone());
                async move {
                    let kept = write(&bucket, &origin, &key, value, revision, member).await;
                    (key, member, kept)
                }
            })
            .buffer_unordered(RENEW_AT_ONCE);
        Box::pin(round)
    }

    /// Frees `key` at once, rather than at the lease.
    async fn free(&self, key: &str, held: Held) {
        free(&self.bucket, &self.origin, key, held.revision, held.member).await;
    }

    /// Frees every held key, side by side, for at most [`FREE_AT_STOP`].
    async fn free_all(&mut self) {
        let frees = (self.held.drain())
            .map(|(key, held)| {
                let (bucket, origin) = (&self.bucket, &self.origin);
                async move { free(bucket, origin, &key, held.revision, held.member).await }
            })
            .collect::<futures_util::stream::FuturesUnordered<_>>()
            .collect::<Vec<()>>();
        if timeout(FREE_AT_STOP, frees).await.is_err() {
            tracing::info!(
                "the cluster did not answer in time; this node's nicks lapse at the lease"
            );
        }
    }
}

/// Writes `value` to `key`, expecting `revision`; on a conflict, finds
/// out why.
async fn write(
    bucket: &kv::Store,
    origin: &str,
    key: &str,
    value: Bytes,
    revision: u64,
    member: u64,
) -> Kept {
    let updated = timeout(
        WRITE_WAIT,
        bucket.update(wire::nick_key(key), value, revision),
    )
    .await;
    match updated {
        Ok(Ok(revision)) => Kept::Written(revision),
        Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            match owner(bucket, origin, key).await {
                Owner::This {
                    revision,
                    member: owner,
                } if owner == member => Kept::Ours(revision),
                // Another member's, of this node or another.
                Owner::This { .. } | Owner::Other => Kept::Lost,
                Owner::Vacant => Kept::Vacant,
                Owner::Unknown => Kept::Unreachable,
            }
        }
        _ => Kept::Unreachable,
    }
}

/// Who holds a key of the bucket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A member of this node's run, at this revision.
    This { revision: u64, member: u64 },
    /// Someone on another node (or a run of this one that has ended).
    Other,
    /// Nobody: it lapsed or was freed.
    Vacant,
    /// NATS did not answer.
    Unknown,
}

async fn owner(bucket: &kv::Store, origin: &str, key: &str) -> Owner {
    match timeout(WRITE_WAIT, bucket.entry(wire::nick_key(key))).await {
        Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => {
            match wire::remote_member(&entry.value) {
                Some(owner) if owner.origin == origin => Owner::This {
                    revision: entry.revision,
                    member: owner.member,
                },
                _ => Owner::Other,
            }
        }
        Ok(Ok(_)) => Owner::Vacant,
        _ => Owner::Unknown,
    }
}

/// Deletes `key`, expecting `revision`, or the revision it has if this
/// node wrote that too for `member` (a renewal landed meanwhile).
async fn free(bucket: &kv::Store, origin: &str, key: &str, revision: u64, member: u64) {
    let bucket_key = wire::nick_key(key);
    let deleted = timeout(
        WRITE_WAIT,
        bucket.delete_expect_revision(&bucket_key, Some(revision)),
    )
    .await;
    if let Ok(Err(_)) = deleted {
        if let Owner::This {
            revision,
            member: owner,
        } = owner(bucket, origin, key).await
        {
            if owner == member {
                let _ = timeout(
                    WRITE_WAIT,
                    bucket.delete_expect_revision(&bucket_key, Some(revision)),
                )
                .await;
            }
        }
    }
}
