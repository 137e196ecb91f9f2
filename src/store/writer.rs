//! The history writer: one thread owns the store (SQLite calls block, so
//! they stay off the async runtime). Messages queue up while a commit is
//! under way and go into the next commit together (group commit), so the
//! cost is one commit per batch, not per message. Only after its commit is
//! a message handed back for fan-out: what a client saw is on disk.
//!
//! When writing fails (disk full, I/O error) the chat goes on: messages
//! are fanned out anyway, kept for a retry, everyone is warned once, and
//! writing resumes (with the kept messages first) as soon as it can.

use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{HistoryReader, HistoryStore, Range, Retention, StoreError, StoredMessage};
use crate::hub::Clock;
use crate::protocol::MessageRecord;

/// A batch smaller than this gives the senders one chance to add to it.
const YIELD_BELOW: usize = 4;

/// Most messages in one commit.
const MAX_BATCH: usize = 4096;

/// Messages kept for a retry while writing fails; past this the oldest
/// are given up (and logged).
const MAX_UNSAVED: usize = 100_000;

/// Messages deleted per retention step, so pruning never holds up a commit
/// for long.
const PRUNE_BATCH: usize = 500;

/// How often retention runs when nothing else is pending.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// How often a failed write is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The writer counts as idle, and takes on the store's deferred work (the
/// search index), after this long with nothing to write.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// A read of past messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Up to `limit` messages of `room` with ids up to `up_to`, in `range`.
    Recent {
        room: String,
        up_to: u64,
        range: Range,
        limit: usize,
    },
    /// Messages of `room` containing every word of `text`.
    Search {
        room: String,
        text: String,
        limit: usize,
    },
}

/// Where a query's answer goes.
pub type Reply = Box<dyn FnOnce(Result<Vec<MessageRecord>, StoreError>) + Send>;

/// What the writer hands back to its owner (the hub).
pub trait Publisher: Send + 'static {
    /// These messages are committed (`saved`), or kept for a retry while
    /// writing fails: fan them out either way.
    fn publish(&self, messages: Vec<StoredMessage>, saved: bool);
    /// Tell everyone connected.
    fn announce(&self, text: &str);
}

enum Job {
    Append(StoredMessage),
    Query(Query, Reply),
    Stop,
}

/// The lookup thread's queue and the thread.
type Lookups = (mpsc::Sender<(Query, Reply)>, JoinHandle<()>);

/// A handle to the writer thread (and the lookup thread, when the store
/// has a reader of its own).
pub struct HistoryWriter {
    jobs: mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Lookups, to their own thread: a slow search never delays a commit.
    lookups: Mutex<Option<Lookups>>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryWriter")
    }
}

impl HistoryWriter {
    /// Starts the writer thread around `store`.
    pub fn spawn(
        store: Box<dyn HistoryStore>,
        publisher: impl Publisher,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> HistoryWriter {
        let lookups = match store.reader() {
            Ok(Some(reader)) => Some(spawn_lookups(reader)),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "no reader for lookups; the writer answers them");
                None
            }
        };
        let (jobs, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sockchat-history".into())
            .spawn(move || Worker::new(store, publisher, retention, clock).run(inbox))
            .expect("the OS can start a thread");
        HistoryWriter {
            jobs,
            thread: Mutex::new(Some(thread)),
            lookups: Mutex::new(lookups),
        }
    }

    /// Queues a message for the next commit. Never blocks.
    pub fn submit(&self, message: StoredMessage) {
        // The thread ends only at `stop`; after that there is no one to fan
        // out to either.
        let _ = self.jobs.send(Job::Append(message));
    }

    /// Runs `query`: on the lookup thread, which sees every commit made
    /// before it starts (a message is fanned out only once committed, so
    /// everything a member has seen is there); without one, on the writer
    /// after every message submitted before it.
    pub fn query(&self, query: Query, reply: Reply) {
        let lookups = self
            .lookups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((lookups, _)) = lookups.as_ref() {
            if let Err(mpsc::SendError((_, reply))) = lookups.send((query, reply)) {
                reply(Err(StoreError::Closed));
            }
            return;
        }
        drop(lookups);
        if let Err(mpsc::SendError(Job::Query(_, reply))) = self.jobs.send(Job::Query(query, reply))
        {
            reply(Err(StoreError::Closed));
        }
    }

    /// Commits what is queued and stops the threads. Blocks until they
    /// have.
    pub fn stop(&self) {
        let lookups = self
            .lookups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some((queue, thread)) = lookups {
            // Closing the queue ends the thread after what is queued.
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("the history lookups panicked");
            }
        }
        let _ = self.jobs.send(Job::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the history writer panicked");
            }
        }
    }
}

/// The lookup thread: answers queries in turn on the store's reader.
fn spawn_lookups(mut reader: Box<dyn HistoryReader>) -> Lookups {
    let (queue, inbox) = mpsc::channel::<(Query, Reply)>();
    let thread = std::thread::Builder::new()
        .name("sockchat-lookups".into())
        .spawn(move || {
            for (query, reply) in inbox {
                reply(answer(reader.as_mut(), query));
            }
        })
        .expect("the OS can start a thread");
    (queue, thread)
}

/// One query, on a reader.
fn answer(reader: &mut dyn HistoryReader, query: Query) -> Result<Vec<MessageRecord>, StoreError> {
    match query {
        Query::Recent {
            room,
            up_to,
            range,
            limit,
        } => reader.recent(&room, up_to, range, limit),
        Query::Search { room, text, limit } => reader.search(&room, &text, limit),
    }
}

struct Worker<P> {
    store: Box<dyn HistoryStore>,
    publisher: P,
    retention: Retention,
    /// Wall-clock time, for retention by age.
    clock: Arc<dyn Clock>,
    /// Messages already fanned out but not yet on disk.
    unsaved: Vec<StoredMessage>,
    failing: bool,
    next_prune: Instant,
    /// When the last job came: the writer is idle `IDLE_AFTER` later.
    last_job: Instant,
    /// The store has deferred work left.
    upkeep_left: bool,
}

impl<P: Publisher> Worker<P> {
    fn new(
        store: Box<dyn HistoryStore>,
        publisher: P,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Worker {
            store,
            publisher,
            retention,
            clock,
            unsaved: Vec::new(),
            failing: false,
            // Retention runs once at start, then every PRUNE_EVERY.
            next_prune: Instant::now(),
            last_job: Instant::now(),
            // Work left from the last run is taken up once idle.
            upkeep_left: true,
        }
    }

    fn run(mut self, inbox: mpsc::Receiver<Job>) {
        loop {
            let first = match inbox.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Empty) => self.wait(&inbox),
                Err(mpsc::TryRecvError::Disconnected) => return,
            };
            if !self.handle(first, &inbox) {
                return;
            }
        }
    }

    /// Blocks until a job comes, or a prune, retry or idle upkeep is due
    /// (`None`).
    fn wait(&self, inbox: &mpsc::Receiver<Job>) -> Option<Job> {
        let mut wake_at = if self.unsaved.is_empty() {
            self.next_prune
        } else {
            self.next_prune.min(Instant::now() + RETRY_EVERY)
        };
        if self.upkeep_left {
            wake_at = wake_at.min(self.last_job + IDLE_AFTER);
        }
        // A disconnected inbox is seen by the next `try_recv`.
        inbox
            .recv_timeout(wake_at.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Commits `first` and everything queued behind it, answers queries,
    /// prunes when due; `false` once asked to stop.
    fn handle(&mut self, first: Option<Job>, inbox: &mpsc::Receiver<Job>) -> bool {
        let mut batch = Vec::new();
        let mut queries = Vec::new();
        let mut stop = false;
        let mut next = first;
        let mut yielded = false;
        if next.is_some() {
            self.last_job = Instant::now();
        }
        // Everything that queued up during the last commit joins this one.
        while let Some(job) = next.take() {
            match job {
                Job::Append(message) => batch.push(message),
                Job::Query(query, reply) => queries.push((query, reply)),
                Job::Stop => stop = true,
            }
            if batch.len() < MAX_BATCH && !stop {
                next = inbox.try_recv().ok();
                if next.is_none() && !yielded && batch.len() < YIELD_BELOW {
                    // Woken for one message, likely while its sender's
                    // thread still has more to hand over: let it run once
                    // (microseconds) so they share the commit. Seen under
                    // load: most commits held one message.
                    yielded = true;
                    std::thread::yield_now();
                    next = inbox.try_recv().ok();
                }
            }
        }
        tracing::trace!(messages = batch.len(), "group commit");
        self.write(batch);
        for (query, reply) in queries {
            reply(self.answer(query));
        }
        if stop {
            return false;
        }
        if Instant::now() >= self.next_prune || self.failing {
            self.prune();
        }
        self.upkeep();
        true
    }

    /// The store's deferred work: a step whenever the writer is idle, or
    /// when the store says it cannot wait.
    fn upkeep(&mut self) {
        let idle = self.last_job.elapsed() >= IDLE_AFTER;
        match self.store.upkeep(idle) {
            Ok(left) => self.upkeep_left = left,
            Err(error) => {
                // An index that cannot grow now (a full disk) only means
                // searches scan a longer tail until it can.
                tracing::warn!(%error, "history upkeep failed; will retry");
                self.last_job = Instant::now();
            }
        }
    }

    /// Commits `batch` (after any messages kept from a failed write), then
    /// hands it over for fan-out.
    fn write(&mut self, batch: Vec<StoredMessage>) {
        if !self.unsaved.is_empty() {
            match self.store.append(&self.unsaved) {
                Ok(()) => self.unsaved.clear(),
                Err(error) => {
                    self.fail(&error);
                    self.keep_unsaved(batch.clone());
                    self.publisher.publish(batch, false);
                    return;
                }
            }
        }
        if batch.is_empty() {
            self.recover();
            return;
        }
        let saved = match self.store.append(&batch) {
            Ok(()) => {
                self.recover();
                true
            }
            Err(error) => {
                self.fail(&error);
                self.keep_unsaved(batch.clone());
                false
            }
        };
        self.publisher.publish(batch, saved);
    }

    fn fail(&mut self, error: &StoreError) {
        if !self.failing {
            tracing::error!(%error, "HISTORY IS NOT BEING SAVED; the chat goes on and writing will be retried");
            self.publisher.announce(&format!(
                "warning: history is not being saved ({error}); the chat goes on"
            ));
            self.failing = true;
        }
    }

    fn recover(&mut self) {
        if self.failing && self.unsaved.is_empty() {
            tracing::warn!("history is being saved again");
            self.publisher.announce("history is being saved again");
            self.failing = false;
        }
    }

    fn keep_unsaved(&mut self, batch: Vec<StoredMessage>) {
        self.unsaved.extend(batch);
        if self.unsaved.len() > MAX_UNSAVED {
            let lost = self.unsaved.len() - MAX_UNSAVED;
            self.unsaved.drain(..lost);
            tracing::error!(lost, "gave up saving the oldest unsaved messages");
        }
    }

    /// One step of retention; another follows soon if there is more to do.
    fn prune(&mut self) {
        let now_ms = self.clock.now_millis();
        match self.store.prune(&self.retention, now_ms, PRUNE_BATCH) {
            Ok(deleted) if deleted == PRUNE_BATCH => {
                self.next_prune = Instant::now();
            }
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(deleted, "history pruned");
                }
                self.next_prune = Instant::now() + PRUNE_EVERY;
            }
            Err(error) => {
                tracing::warn!(%error, "history pruning failed");
                self.next_prune = Instant::now() + PRUNE_EVERY;
            }
        }
    }

    fn answer(&mut self, query: Query) -> Result<Vec<MessageRecord>, StoreError> {
        match query {
            Query::Recent {
                room,
                up_to,
                range,
                limit,
            } => self.store.recent(&room, up_to, range, limit),
            Query::Search { room, text, limit } => self.store.search(&room, &text, limit),
        }
    }
}
