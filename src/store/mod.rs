//! History: where room messages are kept, behind a small trait so another
//! backend can come later. SQLite is the default ([`sqlite`]); a
//! [`writer`] thread owns the store, groups writes into one commit, and
//! only then lets the hub fan the messages out.

pub mod sqlite;
pub mod writer;

use std::time::Duration;

use crate::protocol::{MessageRecord, Point};

/// A message on its way to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub record: MessageRecord,
    /// The door it came in by (`tcp`, `udp`, `web`, `console`).
    pub door: &'static str,
    /// The recipient of a private message; `None` for room messages.
    pub to: Option<String>,
}

/// Default messages kept per room on disk (`--history-max-per-room`; 0 is
/// no cap).
pub const DEFAULT_MAX_PER_ROOM: usize = 100_000;
/// Default age in seconds past which messages are deleted
/// (`--history-max-age`; 0 keeps them forever).
pub const DEFAULT_MAX_AGE_SECS: u64 = 0;
/// Default cap on the database file's size in bytes (`--db-max-size`; 0 is
/// no cap).
pub const DEFAULT_MAX_DB_BYTES: u64 = 0;

/// How long history is kept. `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per room; older ones are deleted.
    pub max_per_room: Option<usize>,
    /// Messages older than this are deleted.
    pub max_age: Option<Duration>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The OS reason is a field, not a `source`: the message is whole in
    // one line, and printing the error chain does not repeat it.
    #[error(
        "cannot create the directory {dir} for the history database {path}: {reason}; \
         choose another --db, or run with --no-history"
    )]
    CreateDir {
        dir: String,
        path: String,
        reason: std::io::Error,
    },
    #[error(
        "cannot open the history database {path}: {reason}; \
         choose a writable --db, or run with --no-history"
    )]
    CannotOpen {
        path: String,
        reason: std::io::Error,
    },
    #[error("{path} is not a sockchat history database ({detail})")]
    NotADatabase { path: String, detail: String },
    #[error("{path} is in use by another sockchat server")]
    Locked { path: String },
    #[error(
        "{path} has schema version {found}, newer than this sockchat understands ({supported}); \
         use a newer sockchat or another --db"
    )]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("the history database or its disk is full")]
    Full,
    #[error("search too broad: it ran past its {budget_ms} ms; use fewer words, or longer ones")]
    TooBroad { budget_ms: u64 },
    #[error("search too broad: at most {most} different words")]
    TooManyWords { most: usize },
    #[error("history is closed")]
    Closed,
    #[error("history database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Where in a room's past a lookup looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest messages.
    Latest,
    /// The newest messages before this point.
    Before(Point),
    /// The oldest messages after this point.
    After(Point),
}

/// Lookups of past messages: what a store answers, and what a reader on a
/// connection of its own answers (so that lookups never wait for commits
/// and commits never wait for them; see [`HistoryStore::reader`]).
pub trait HistoryReader: Send {
    /// Up to `limit` room messages of `room` with ids up to `up_to`, in
    /// `range` (the newest, the newest before a point, the oldest after
    /// one), oldest first.
    fn recent(
        &mut self,
        room: &str,
        up_to: u64,
        range: Range,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// Room messages of `room` containing every word of `query` (any
    /// script, CJK included), the newest `limit`, oldest first.
    fn search(
        &mut self,
        room: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;
}

/// A history backend. Calls come from one thread at a time (the writer's).
pub trait HistoryStore: HistoryReader {
    /// Stores messages, all or none, in one commit.
    fn append(&mut self, messages: &[StoredMessage]) -> Result<(), StoreError>;
    /// Rooms that have stored messages.
    fn rooms(&mut self) -> Result<Vec<String>, StoreError>;
    /// The highest message id stored (0 if none), so ids go on increasing
    /// across restarts.
    fn last_id(&mut self) -> Result<u64, StoreError>;
    /// Deletes up to `batch` messages that `retention` no longer keeps;
    /// returns how many. Small batches keep each call short.
    fn prune(
        &mut self,
        retention: &Retention,
        now_ms: u64,
        batch: usize,
    ) -> Result<usize, StoreError>;
    /// One bounded step of deferred work (a search index catching up with
    /// what was appended): taken when the writer is `idle`, or when the
    /// work cannot wait any longer. Whether any is left.
    fn upkeep(&mut self, idle: bool) -> Result<bool, StoreError> {
        let _ = idle;
        Ok(false)
    }
    /// A reader of its own for lookups, if the backend can read beside
    /// the writer; without one, lookups run on the writer's thread.
    fn reader(&self) -> Result<Option<Box<dyn HistoryReader>>, StoreError> {
        Ok(None)
    }
}
