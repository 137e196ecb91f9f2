//! A cluster of sockchat nodes over NATS. Each node keeps all its doors and
//! its own history file; what its members say goes to one JetStream stream
//! (the cluster's log), and every node reads the whole log back in order,
//! storing and fanning out each message to its own members. The log's
//! sequence number is each message's id, so every node has the same ids
//! in the same order: one order per room, the same everywhere.
//!
//! The link is two tasks: the publisher takes the hub's queue (see
//! `crate::hub::cluster`) to the log, and the reader brings the log to
//! the hub, starting after the last message this node has stored, so a
//! node that was down catches up by itself. What travels is in `wire`.

mod directory;
mod nicks;
mod privates;
mod rooms;
pub mod wire;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::cluster::{ClusterOutlet, ClusterQueue, CLUSTER_QUEUE};
use crate::hub::Hub;
use crate::store::StoredMessage;
use wire::{Origin, Outbound};

/// How long the first connection to the cluster may take before the
/// node gives up starting: a node that never reached its cluster is
/// misconfigured, and says so.
const FIRST_CONNECT: Duration = Duration::from_secs(10);

/// A retried publication is deduplicated by the stream for this long.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// An ephemeral room's messages stay in the log this long: long enough
/// for every node to read them, never kept as history.
const EPHEMERAL_TTL: Duration = Duration::from_secs(60);

/// A nick's claim lapses this long after its node last renewed it (a
/// third of it): a node that dies frees its members' nicks within this
/// time (`--cluster-lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Publications awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 256;

/// How long a JetStream request, or a publication's acknowledgement, may
/// take before it is tried again: a NATS server that died takes its
/// pending answers with it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the reader compares what the log holds with what it has
/// read: a reader that has fallen behind and receives nothing for two of
/// these (its consumer lived on a NATS server that died, say) opens the
/// log again.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// How long one pull of the reader waits for messages. The server's idle
/// heartbeat comes at half of it, and two missed ones make the reader
/// start again after the last message it read: this bounds how long a
/// node takes to read on after NATS comes back (about 2 s).
const READ_EXPIRES: Duration = Duration::from_secs(2);

/// Messages the reader hands the hub at once.
const READ_BATCH: usize = 256;

/// How this node joins its cluster (`serve --cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers, `nats://HOST:PORT`, any of which will do.
    pub urls: Vec<String>,
    /// This node's name, in logs, listening lines and message ids.
    pub node: String,
    /// Copies of the log the NATS cluster keeps (1 on a single NATS
    /// server; 3 on a cluster of three survives losing one).
    pub replicas: usize,
    /// History limits, which the log keeps too.
    pub max_age: Option<Duration>,
    pub max_per_room: Option<usize>,
    /// How long a dead node's nicks stay claimed.
    pub lease: Duration,
}

/// A node's running link to its cluster.
#[derive(Debug)]
pub struct ClusterLink {
    client: async_nats::Client,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl ClusterLink {
    /// Joins the cluster: reaches NATS, makes sure the log exists, and
    /// starts carrying `hub`'s messages both ways. From here on the hub
    /// sends what its members say to the log.
    pub async fn join(hub: &Hub, config: &ClusterConfig) -> anyhow::Result<ClusterLink> {
        let urls = config.urls.join(",");
        let servers = config
            .urls
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("--cluster: not a NATS server: {url}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let reconnected = Arc::new(Notify::new());
        let link_down = Arc::new(AtomicBool::new(false));
        let watcher = LinkWatcher {
            hub: hub.downgrade(),
            down: link_down.clone(),
            reconnected: reconnected.clone(),
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("sockchat {}", config.node))
            .event_callback(move |event| {
                let watcher = watcher.clone();
                async move { watcher.saw(event) }
            })
            .connection_timeout(FIRST_CONNECT)
            .connect(servers)
            .await
            .with_context(|| format!("cannot reach the cluster at {urls}"))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let stream_config = stream::Config {
            name: wire::STREAM.to_string(),
            subjects: wire::LOG_SUBJECTS.map(str::to_string).to_vec(),
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            allow_message_ttl: true,
            max_age: config.max_age.unwrap_or_default(),
            max_messages_per_subject: config.max_per_room.map_or(-1, |most| most as i64),
            ..Default::default()
        };
        // A NATS cluster that has just started may not have elected its
        // JetStream leader yet: asked again until FIRST_CONNECT is over.
        let mut log = retry_at_start(|| jetstream.get_or_create_stream(stream_config.clone()))
            .await
            .context("cannot open the cluster's log (JetStream stream SOCKCHAT)")?;
        // A log made by an earlier sockchat may lack the private subjects.
        let subjects = &log.cached_info().config.subjects;
        if !stream_config
            .subjects
            .iter()
            .all(|wanted| subjects.contains(wanted))
        {
            let mut config = log.cached_info().config.clone();
            config.subjects = stream_config.subjects.clone();
            jetstream
                .update_stream(config)
                .await
                .context("cannot add the private subjects to the cluster's log")?;
            log = jetstream.get_stream(wire::STREAM).await?;
        }
        let origin = Origin {
            node: config.node.clone(),
            boot: boot_number(),
        };
        let start = match hub.keeps_history() {
            // After what this node has stored: it catches up on the rest.
            true => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: hub.last_seen_id() + 1,
            },
            false => consumer::DeliverPolicy::New,
        };
        if let consumer::DeliverPolicy::ByStartSequence { start_sequence } = start {
            let log_ends = log.cached_info().state.last_sequence;
            // Ids the log has not given out yet: this history is not the
            // cluster's (a single node's, or the log was made anew), and
            // the log's messages would take those ids again.
            anyhow::ensure!(
                start_sequence <= log_ends + 1,
                "this node's history holds messages up to id {}, but the cluster's log \
                 ends at {log_ends}: it is not this cluster's history; start the node \
                 with another --db",
                start_sequence - 1
            );
        }
        if let consumer::DeliverPolicy::ByStartSequence { start_sequence } = start {
            same_history(hub, &log, &origin, start_sequence - 1).await?;
        }
        let reader = open_reader(&log, start).await?;
        hub.metrics().cluster_link_up.set(1);
        let nicks_config = kv::Config {
            bucket: wire::NICKS_BUCKET.to_string(),
            history: 1,
            max_age: config.lease,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let nicks = retry_at_start(|| jetstream.create_or_update_key_value(nicks_config.clone()))
            .await
            .context("cannot open the cluster's nicks (JetStream KV sockchat_nicks)")?;
        let rooms_config = kv::Config {
            bucket: wire::ROOMS_BUCKET.to_string(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let rooms = retry_at_start(|| jetstream.create_or_update_key_value(rooms_config.clone()))
            .await
            .context("cannot open the cluster's rooms (JetStream KV sockchat_rooms)")?;
        let (outlet, ends) = ClusterOutlet::new(CLUSTER_QUEUE, &config.node, &origin.header());
        hub.send_to_cluster(outlet);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(publish(
            hub.downgrade(),
            jetstream.clone(),
            origin.clone(),
            ends.messages,
            stop.clone(),
        ));
        let position = Position {
            log,
            start,
            reconnected,
        };
        let me = origin.header();
        tasks.spawn(directory::watch_members(
            hub.downgrade(),
            nicks.clone(),
            config.lease,
            me.clone(),
            link_down.clone(),
            stop.clone(),
        ));
        tasks.spawn(privates::send_privates(
            jetstream.clone(),
            me.clone(),
            ends.privates,
            stop.clone(),
        ));
        tasks.spawn(rooms::watch_rooms(
            hub.downgrade(),
            rooms.clone(),
            stop.clone(),
        ));
        tasks.spawn(rooms::change_rooms(
            hub.downgrade(),
            rooms,
            ends.rooms,
            link_down.clone(),
            stop.clone(),
        ));
        tasks.spawn(nicks::hold_nicks(
            hub.downgrade(),
            nicks,
            config.lease / 3,
            me,
            link_down,
            ends.nicks,
            stop.clone(),
        ));
        tasks.spawn(read(
            hub.downgrade(),
            origin,
            reader,
            position,
            stop.clone(),
        ));
        tasks.close();
        tracing::info!(node = %config.node, %urls, "joined the cluster");
        Ok(ClusterLink {
            client,
            stop,
            tasks,
        })
    }

    /// Stops carrying messages, once what is queued is published.
    pub async fn leave(self) {
        self.stop.cancel();
        self.tasks.wait().await;
        let _ = self.client.flush().await;
    }
}

/// Checks that the last message this node stored, id `last`, is the
/// log's message of that sequence: a history as long as the log's, or
/// shorter, that is not the cluster's (a single node's, or an earlier
/// cluster's) would otherwise take the log's messages under ids it gave
/// to others. A message the log no longer holds (past its limits), or
/// that this node keeps no copy of at hand, cannot be compared: the node
/// goes on.
async fn same_history(
    hub: &Hub,
    log: &stream::Stream,
    origin: &Origin,
    last: u64,
) -> anyhow::Result<()> {
    let Some(mine) = hub.recent_message(last) else {
        return Ok(());
    };
    let Ok(theirs) = log.get_raw_message(last).await else {
        return Ok(());
    };
    let header = |name: &str| theirs.headers.get(name).map(|value| value.as_str());
    let theirs = wire::decode(
        origin,
        last,
        theirs.subject.as_str(),
        header(wire::ORIGIN_HEADER),
        header(wire::TICKET_HEADER),
        &theirs.payload,
    )
    .ok()
    .map(|message| message.record);
    let same = theirs.is_some_and(|theirs| {
        (theirs.room, theirs.from, theirs.text, theirs.time)
            == (mine.room, mine.from, mine.text, mine.time)
    });
    anyhow::ensure!(
        same,
        "this node's message {last} is not the cluster's log's message {last}: its \
         history is not this cluster's; start the node with another --db"
    );
    Ok(())
}

/// Tells the node's members when the link to NATS goes and comes back.
#[derive(Debug, Clone)]
struct LinkWatcher {
    hub: crate::hub::WeakHub,
    down: Arc<AtomicBool>,
    /// Wakes the reader when NATS is back.
    reconnected: Arc<Notify>,
}

/// What members hear when the link goes, and when it is back.
pub const LINK_DOWN: &str = "the cluster link is down: only this node's members hear you \
until it is back, and messages for the others wait until then";
pub const LINK_BACK: &str = "the cluster link is back: waiting messages are on their way";

impl LinkWatcher {
    fn saw(&self, event: async_nats::Event) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        match event {
            async_nats::Event::Disconnected => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!("the cluster link is down");
                    hub.metrics().cluster_link_up.set(0);
                    hub.announce(LINK_DOWN);
                }
            }
            async_nats::Event::Connected => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the cluster link is back");
                    hub.metrics().cluster_link_up.set(1);
                    self.reconnected.notify_one();
                    hub.announce(LINK_BACK);
                }
            }
            other => tracing::info!(event = %other, "cluster link"),
        }
    }
}

/// `attempt`'s result, asked again every 250 ms while it fails, until
/// [`FIRST_CONNECT`] has passed; then its last error.
async fn retry_at_start<T, E, F>(mut attempt: impl FnMut() -> F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + FIRST_CONNECT;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "the cluster is not ready yet; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A number for this run of the node, unlike its other runs'.
fn boot_number() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness, the time will do: runs are seconds apart.
    if getrandom::fill(&mut bytes).is_err() {
        return crate::hub::Clock::now_millis(&crate::hub::SystemClock);
    }
    u64::from_le_bytes(bytes)
}

/// Takes what this node's members say to the log, in the order said, with
/// up to [`IN_FLIGHT`] acknowledgements outstanding. A publication that
/// fails is tried again with the same message id, which the log's
/// duplicate window makes harmless if the first did land.
async fn publish(
    hub: crate::hub::WeakHub,
    jetstream: jetstream::Context,
    origin: Origin,
    mut queue: ClusterQueue,
    stop: CancellationToken,
) {
    let Some(metrics) = hub.upgrade().map(|hub| hub.metrics_handle()) else {
        return;
    };
    let mut in_flight: VecDeque<(Outbound, jetstream::context::PublishAckFuture)> = VecDeque::new();
    loop {
        metrics.cluster_queued.set(queue.len() as i64);
        let next = tokio::select! {
            biased;
            message = queue.recv() => message,
            () = stop.cancelled(), if in_flight.is_empty() && queue.is_empty() => None,
        };
        let Some(message) = next else { break };
        let outbound = wire::encode(&origin, &message);
        let Some(ack) = publish_until_sent(&jetstream, &outbound, &stop).await else {
            unpublished(1 + queue.len(), in_flight.len());
            break;
        };
        in_flight.push_back((outbound, ack));
        // Settle acknowledgements once the window is full or nothing else waits.
        while in_flight.len() >= IN_FLIGHT || (queue.is_empty() && !in_flight.is_empty()) {
            let (outbound, ack) = in_flight.pop_front().expect("not empty");
            let Err(error) = ack.await else {
                metrics.cluster_published.inc();
                continue;
            };
            tracing::warn!(%error, "a publication to the cluster's log was not acknowledged; sending it again");
            metrics.cluster_republished.inc();
            match publish_until_sent(&jetstream, &outbound, &stop).await {
                Some(ack) => in_flight.push_front((outbound, ack)),
                None => return unpublished(1 + queue.len(), in_flight.len()),
            }
        }
    }
}

/// Says what a node stopping while the link is down leaves unsaid: its
/// members were told the link was down, and saw none of it. Those in
/// flight were sent, and may be in the log, unacknowledged.
fn unpublished(never_sent: usize, unacknowledged: usize) {
    tracing::warn!(
        never_sent,
        unacknowledged,
        "stopping with the cluster link down: messages not published"
    );
}

/// Publishes `outbound`, trying again every second until the link takes it
/// (or the node stops: `None`).
async fn publish_until_sent(
    jetstream: &jetstream::Context,
    outbound: &Outbound,
    stop: &CancellationToken,
) -> Option<jetstream::context::PublishAckFuture> {
    loop {
        let mut publication = jetstream::message::PublishMessage::build()
            .payload(outbound.payload.clone().into())
            .message_id(&outbound.message_id)
            .header(wire::ORIGIN_HEADER, outbound.origin.as_str())
            .header(wire::TICKET_HEADER, outbound.ticket.to_string().as_str());
        if outbound.subject.starts_with("sockchat.ephemeral.") {
            publication = publication.ttl(EPHEMERAL_TTL);
        }
        match jetstream
            .send_publish(outbound.subject.clone(), publication)
            .await
        {
            Ok(ack) => return Some(ack),
            Err(error) => {
                tracing::warn!(%error, "cannot publish to the cluster's log; trying again");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return None,
                }
            }
        }
    }
}

/// A reader of the whole log (an ordered consumer: no acks, no state on
/// the server worth keeping), from `start`.
async fn open_reader(
    log: &stream::Stream,
    start: consumer::DeliverPolicy,
) -> anyhow::Result<consumer::pull::Ordered> {
    log.create_consumer(consumer::pull::OrderedConfig {
        filter_subjects: wire::LOG_SUBJECTS.map(str::to_string).to_vec(),
        deliver_policy: start,
        max_expires: READ_EXPIRES,
        ..Default::default()
    })
    .await
    .context("cannot read the cluster's log")?
    .messages()
    .await
    .context("cannot read the cluster's log")
}

/// Where the reader opens the log again when NATS comes back.
struct Position {
    log: stream::Stream,
    /// Where it began, if it has read nothing since.
    start: consumer::DeliverPolicy,
    reconnected: Arc<Notify>,
}

/// Brings the log, in its order, to the hub: what is ready at once goes
/// as one batch. When NATS comes back the reader opens the log again
/// after the last message it read, at once (the ordered consumer would
/// see for itself only after missing the server's heartbeats).
async fn read(
    hub: crate::hub::WeakHub,
    me: Origin,
    mut reader: consumer::pull::Ordered,
    position: Position,
    stop: CancellationToken,
) {
    let mut last_read = None;
    let mut recent = RecentTickets::default();
    let mut check = tokio::time::interval(STALL_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Checks in a row that found the reader behind with nothing read.
    let (mut stalled, mut read_since_check) = (0, false);
    loop {
        let reopen_now = tokio::select! {
            next = reader.next() => {
                read_since_check = true;
                stalled = 0;
                match next {
                    Some(first) => Some(first),
                    None => return,
                }
            }
            () = position.reconnected.notified() => None,
            _ = check.tick() => {
                let wanted = match (last_read, position.start) {
                    (Some(sequence), _) => sequence + 1,
                    (None, consumer::DeliverPolicy::ByStartSequence { start_sequence }) => {
                        start_sequence
                    }
                    // Reading only what is new: never behind before the first.
                    (None, _) => u64::MAX,
                };
                let behind = match position.log.get_info().await {
                    Ok(info) => info.state.last_sequence >= wanted,
                    Err(_) => false,
                };
                if behind && !read_since_check {
                    stalled += 1;
                } else {
                    stalled = 0;
                }
                read_since_check = false;
                if stalled < 2 {
                    continue;
                }
                tracing::info!("the cluster's log is ahead and nothing comes; reading it again");
                None
            }
            () = stop.cancelled() => return,
        };
        let Some(first) = reopen_now else {
            stalled = 0;
            let from = match last_read {
                Some(sequence) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: sequence + 1,
                },
                None => position.start,
            };
            match reopen(&position.log, from, &stop).await {
                Some(reopened) => reader = reopened,
                None => return,
            }
            continue;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(message) => {
                    if let Ok(info) = message.info() {
                        last_read = Some(info.stream_sequence);
                        if let Some(hub) = hub.upgrade() {
                            hub.metrics().cluster_received.inc();
                            hub.metrics().cluster_lag.set(info.pending as i64);
                        }
                    }
                    if message.subject.starts_with(wire::PRIVATE_PREFIX) {
                        if let Some(hub) = hub.upgrade() {
                            privates::take_private(&hub, &me, &message.payload);
                        }
                    } else {
                        batch.extend(read_one(&me, &message, &mut recent));
                    }
                }
                Err(error) => tracing::warn!(%error, "reading the cluster's log"),
            }
            if batch.len() < READ_BATCH {
                next = futures_util::FutureExt::now_or_never(reader.next()).flatten();
            }
        }
        let Some(hub) = hub.upgrade() else { return };
        hub.take_from_cluster(batch);
    }
}

/// Opens the log again from `from`, every second until it works (or the
/// node stops: `None`).
async fn reopen(
    log: &stream::Stream,
    from: consumer::DeliverPolicy,
    stop: &CancellationToken,
) -> Option<consumer::pull::Ordered> {
    loop {
        match open_reader(log, from).await {
            Ok(reader) => return Some(reader),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reopening the cluster's log")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return None,
        }
    }
}

/// The last [`RecentTickets::KEPT`] messages read, by who said them and
/// their ticket there: a message published twice (its first
/// acknowledgement lost, and the second sent after the log's duplicate
/// window) is in the log twice, and read once.
#[derive(Debug, Default)]
struct RecentTickets {
    seen: HashSet<(String, u64)>,
    order: VecDeque<(String, u64)>,
}

impl RecentTickets {
    const KEPT: usize = 64 * 1024;

    /// Whether `(origin, ticket)` is new, remembering it.
    fn first_time(&mut self, origin: &str, ticket: u64) -> bool {
        let said = (origin.to_string(), ticket);
        if !self.seen.insert(said.clone()) {
            return false;
        }
        self.order.push_back(said);
        if self.order.len() > Self::KEPT {
            let oldest = self.order.pop_front().expect("not empty");
            self.seen.remove(&oldest);
        }
        true
    }
}

/// One message of the log, if it is one sockchat wrote and not read
/// before.
fn read_one(
    me: &Origin,
    message: &jetstream::Message,
    recent: &mut RecentTickets,
) -> Option<StoredMessage> {
    let sequence = message.info().ok()?.stream_sequence;
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str())
    };
    let ticket = header(wire::TICKET_HEADER).and_then(|ticket| ticket.parse::<u64>().ok());
    // A ticket that is not a number names no message of sockchat's: not
    // taken for a copy of another.
    if let (Some(origin), Some(ticket)) = (header(wire::ORIGIN_HEADER), ticket) {
        if !recent.first_time(origin, ticket) {
            tracing::info!(
                sequence,
                "skipping a second copy of a message in the cluster's log"
            );
            return None;
        }
    }
    let decoded = wire::decode(
        me,
        sequence,
        message.subject.as_str(),
        header(wire::ORIGIN_HEADER),
        header(wire::TICKET_HEADER),
        &message.payload,
    );
    decoded
        .inspect_err(
            |error| tracing::warn!(sequence, %error, "skipping a message of the cluster's log"),
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::RecentTickets;

    #[test]
    fn a_message_is_read_once_by_origin_and_ticket() {
        let mut recent = RecentTickets::default();
        assert!(recent.first_time("n1/1", 7));
        assert!(recent.first_time("n2/1", 7));
        assert!(!recent.first_time("n1/1", 7));
        for ticket in 0..RecentTickets::KEPT as u64 {
            recent.first_time("n3/1", ticket);
        }
        // Long forgotten by now.
        assert!(recent.first_time("n1/1", 7));
        assert_eq!(recent.order.len(), RecentTickets::KEPT);
    }
}
