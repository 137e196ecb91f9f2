//! The default history store: one SQLite file, WAL mode, full-text search
//! with FTS5's trigram tokenizer (which works for Chinese, Japanese and
//! every other script, since it needs no word boundaries).
//!
//! New messages reach the full-text index off the commit path, in large
//! steps, when the writer is idle (or once the unindexed tail passes
//! `MAX_UNINDEXED`): each FTS5 commit writes an index segment that later
//! has to be merged, so the bigger the step the less indexing costs per
//! message, and a busy room's commits never wait for it. Searches cover
//! the not-yet-indexed tail with `LIKE`, so they find every message all
//! the same.
//!
//! Search semantics: every word must occur in the message as a substring,
//! case folded for ASCII (`LIKE`'s rule), in any script.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{HistoryReader, HistoryStore, Range, Retention, StoreError, StoredMessage};
use crate::protocol::{MessageRecord, Point};

/// The schema, one step per version. Version N is reached by running
/// steps 1..=N; `PRAGMA user_version` records where a file stands.
const MIGRATIONS: &[&str] = &[
    // 1: room messages.
    "CREATE TABLE messages (
         id INTEGER PRIMARY KEY,
         room TEXT NOT NULL,
         sender TEXT NOT NULL,
         time INTEGER NOT NULL,
         text TEXT NOT NULL
     );
     CREATE INDEX messages_by_room ON messages (room, id);",
    // 2: the door, /me actions, private messages, full-text search.
    "ALTER TABLE messages ADD COLUMN door TEXT NOT NULL DEFAULT 'tcp';
     ALTER TABLE messages ADD COLUMN action INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN recipient TEXT;
     CREATE INDEX messages_by_time ON messages (time);
     CREATE VIRTUAL TABLE messages_fts USING fts5(
         text, content = 'messages', content_rowid = 'id', tokenize = 'trigram'
     );
     INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
         INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
         INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
     END;",
    // 3: the full-text index is filled in batches (see the module comment);
    // only indexed messages may be deleted from it. It keeps which messages
    // hold each trigram, not where (detail = none): a third cheaper to
    // build, and searches check the text with LIKE anyway.
    "DROP TRIGGER messages_fts_insert;
     DROP TRIGGER messages_fts_delete;
     DROP INDEX messages_by_time;
     CREATE TABLE search_index (indexed_through INTEGER NOT NULL);
     INSERT INTO search_index VALUES ((SELECT coalesce(max(id), 0) FROM messages));
     DROP TABLE messages_fts;
     CREATE VIRTUAL TABLE messages_fts USING fts5(
         text, content = 'messages', content_rowid = 'id', tokenize = 'trigram',
         detail = none
     );
     INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
     WHEN old.id <= (SELECT indexed_through FROM search_index) BEGIN
         INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
     END;",
    // 4: no per-message length table in the index (columnsize = 0: only
    // ranking uses it, and searches order by id), and merges when eight
    // segments of a size pile up rather than four: a quarter less work per
    // indexed message, for searches that read a few more segments.
    "DROP TRIGGER messages_fts_delete;
     DROP TABLE messages_fts;
     UPDATE search_index SET indexed_through = (SELECT coalesce(max(id), 0) FROM messages);
     CREATE VIRTUAL TABLE messages_fts USING fts5(
         text, content = 'messages', content_rowid = 'id', tokenize = 'trigram',
         detail = none, columnsize = 0
     );
     INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 8);
     INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
     WHEN old.id <= (SELECT indexed_through FROM search_index) BEGIN
         INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
     END;",
    // 5: notices (IRC's NOTICE, /notice) are kept as such.
    "ALTER TABLE messages ADD COLUMN notice INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Shortest word FTS5's trigram index can find; shorter words (two-character
/// Chinese words, say) are matched with `LIKE` instead.
const TRIGRAM: usize = 3;

/// Most distinct words in one search (SQLite's expression depth is finite,
/// and every word is a condition on every candidate).
pub const MAX_SEARCH_WORDS: usize = 32;

/// How long one lookup (a search, a page of history) may run by default.
pub const DEFAULT_LOOKUP_BUDGET: Duration = Duration::from_millis(500);

/// The file whose lock keeps a second server off the database.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Most messages added to the full-text index in one step. Bigger steps
/// cost less per message (fewer segments to merge: 1024 at a time cost
/// three times what 16384 do) and pause the writer longer (16384 short
/// messages take some 30 ms), so steps are taken when it is idle.
const INDEX_STEP: usize = 16 * 1024;

/// Unindexed messages past which a step is taken even while the writer is
/// busy, so a search's unindexed tail (scanned with `LIKE`) stays short.
const MAX_UNINDEXED: usize = 64 * 1024;

/// A history database file, opened for this server alone.
pub struct SqliteStore {
    connection: Connection,
    /// Held while open: the lock that keeps out a second server.
    _lock: std::fs::File,
    path: PathBuf,
    /// How long one lookup may run on the reader's connection.
    lookup_budget: Duration,
    /// Messages with ids up to this one are in the full-text index.
    indexed_through: i64,
    /// Messages appended since (about; pruning can take some away).
    unindexed: usize,
    index_step: usize,
    max_unindexed: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, takes it for this
    /// process alone, and brings its schema up to date. `max_bytes` caps
    /// the file's size (0: no cap); past it, writes fail as on a full disk.
    pub fn open(path: &Path, max_bytes: u64) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            let in_the_way = || {
                let kind = std::io::ErrorKind::NotADirectory;
                std::io::Error::new(kind, "a file of that name is in the way")
            };
            let made = match std::fs::create_dir_all(dir) {
                Err(_) if dir.exists() && !dir.is_dir() => Err(in_the_way()),
                made => made,
            };
            made.map_err(|reason| StoreError::CreateDir {
                dir: dir.display().to_string(),
                path: shown.clone(),
                reason,
            })?;
        }
        // SQLite says only "unable to open database file"; opening it
        // ourselves first gets the OS's reason (permission, a directory in
        // the way, a read-only file system).
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|reason| StoreError::CannotOpen {
                path: shown.clone(),
                reason,
            })?;
        // One server per file: a second is refused rather than
        // interleaving its writes with ours. A lock of our own, not
        // SQLite's exclusive mode, so lookups can read on a connection of
        // their own while the writer commits (WAL).
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(path))
            .map_err(|reason| StoreError::CannotOpen {
                path: shown.clone(),
                reason,
            })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked { path: shown });
        }
        let classify = |error: rusqlite::Error| classify_open_error(error, &shown);
        let connection = Connection::open(path).map_err(classify)?;
        connection
            .busy_timeout(Duration::from_millis(200))
            .map_err(classify)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(classify)?;
        // In WAL mode, NORMAL writes every commit to the log before it
        // returns: a killed process loses nothing committed. Only a power
        // cut can lose the last commits (FULL would fsync each one).
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(classify)?;
        let mut store = SqliteStore {
            connection,
            _lock: lock,
            path: path.to_path_buf(),
            lookup_budget: DEFAULT_LOOKUP_BUDGET,
            indexed_through: 0,
            unindexed: 0,
            index_step: INDEX_STEP,
            max_unindexed: MAX_UNINDEXED,
        };
        store.migrate()?;
        store.indexed_through =
            store
                .connection
                .query_row("SELECT indexed_through FROM search_index", [], |row| {
                    row.get(0)
                })?;
        store.unindexed = count_after(&store.connection, store.indexed_through)?;
        if max_bytes > 0 {
            let page_size: i64 = store
                .connection
                .pragma_query_value(None, "page_size", |row| row.get(0))?;
            let pages = (max_bytes / page_size.max(512) as u64).max(1) as i64;
            store
                .connection
                .pragma_update(None, "max_page_count", pages)?;
        }
        Ok(store)
    }

    /// How long one lookup may run before it is given up as too broad.
    pub fn set_lookup_budget(&mut self, budget: Duration) {
        self.lookup_budget = budget;
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (index, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = index as i64 + 1;
            let transaction = self.connection.transaction()?;
            transaction.execute_batch(step)?;
            transaction.pragma_update(None, "user_version", version)?;
            transaction.commit()?;
            tracing::info!(path = %self.path.display(), version, "history schema upgraded");
        }
        Ok(())
    }

    /// Adds the oldest `index_step` messages not yet in the full-text
    /// index to it, in one transaction.
    fn index_step(&mut self) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(classify)?;
        let through: i64 = transaction.query_row(
            "SELECT coalesce(max(id), ?1) FROM
             (SELECT id FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2)",
            params![self.indexed_through, self.index_step as i64],
            |row| row.get(0),
        )?;
        transaction
            .execute(
                "INSERT INTO messages_fts (rowid, text)
                 SELECT id, text FROM messages WHERE id > ?1 AND id <= ?2 ORDER BY id",
                params![self.indexed_through, through],
            )
            .map_err(classify)?;
        transaction
            .execute("UPDATE search_index SET indexed_through = ?1", [through])
            .map_err(classify)?;
        transaction.commit().map_err(classify)?;
        self.indexed_through = through;
        // Counted, not subtracted: pruning may have taken some away.
        self.unindexed = count_after(&self.connection, through)?;
        Ok(())
    }
}

/// Messages with ids above `id`.
fn count_after(connection: &Connection, id: i64) -> Result<usize, StoreError> {
    let count: i64 =
        connection.query_row("SELECT count(*) FROM messages WHERE id > ?1", [id], |row| {
            row.get(0)
        })?;
    Ok(count as usize)
}

/// Room messages of `room` containing every word of `query`, the newest
/// `limit`, oldest first: from the full-text index up to
/// `indexed_through`, and by scanning the tail after it.
fn search_in(
    connection: &Connection,
    indexed_through: i64,
    room: &str,
    query: &str,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    // Each word once: a repeated one adds work and finds nothing more.
    let mut words: Vec<&str> = Vec::new();
    for word in query.split_whitespace() {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    if words.len() > MAX_SEARCH_WORDS {
        return Err(StoreError::TooManyWords {
            most: MAX_SEARCH_WORDS,
        });
    }
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = format!("SELECT {COLUMNS} FROM messages WHERE room = ? AND recipient IS NULL");
    let mut values: Vec<Value> = vec![room.to_string().into()];
    // Candidates from the index: words of three characters or more
    // without LIKE wildcards (an ESCAPE clause keeps FTS5 from using its
    // index), plus the tail not yet indexed.
    let indexable: Vec<&str> = words
        .iter()
        .copied()
        .filter(|word| word.chars().count() >= TRIGRAM && !word.contains(['%', '_', '\\']))
        .collect();
    if !indexable.is_empty() {
        sql.push_str(" AND (id > ? OR id IN (SELECT rowid FROM messages_fts WHERE ");
        values.push(indexed_through.into());
        let conditions = vec!["text LIKE ?"; indexable.len()].join(" AND ");
        sql.push_str(&conditions);
        sql.push_str("))");
        values.extend(indexable.iter().map(|word| format!("%{word}%").into()));
    }
    // Every word checked against the text itself.
    for word in &words {
        sql.push_str(" AND text LIKE ? ESCAPE '\\'");
        values.push(like_pattern(word).into());
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
    let mut statement = connection.prepare(&sql)?;
    let mut records = statement
        .query_map(params_from_iter(values.iter()), to_record)?
        .collect::<Result<Vec<_>, _>>()?;
    records.reverse();
    Ok(records)
}

/// The last `limit` room messages of `room` with ids up to `up_to`,
/// oldest first.
fn recent_in(
    connection: &Connection,
    room: &str,
    up_to: u64,
    range: Range,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let as_sql = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    // (condition beyond the room and `up_to`, its value, newest first?)
    let (condition, value, newest_first) = match range {
        Range::Latest => ("1", 0, true),
        Range::Before(Point::Id(id)) => ("id < ?4", as_sql(id), true),
        Range::Before(Point::Time(time)) => ("time < ?4", as_sql(time), true),
        Range::After(Point::Id(id)) => ("id > ?4", as_sql(id), false),
        Range::After(Point::Time(time)) => ("time > ?4", as_sql(time), false),
    };
    let order = if newest_first { "DESC" } else { "ASC" };
    let mut query = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE room = ?1 AND recipient IS NULL AND id <= ?2 AND ({condition} OR ?4 IS NULL)
         ORDER BY id {order} LIMIT ?3"
    ))?;
    let mut records = query
        .query_map(params![room, as_sql(up_to), limit as i64, value], to_record)?
        .collect::<Result<Vec<_>, _>>()?;
    if newest_first {
        records.reverse();
    }
    Ok(records)
}

/// Lookups on a read-only connection of their own: SQLite's WAL lets them
/// read while the writer commits, so no lookup ever delays a message. Each
/// runs within a time budget; past it, it is given up as too broad.
pub struct SqliteReader {
    connection: Connection,
    budget: Duration,
}

impl SqliteReader {
    /// Runs `lookup` within the budget, in one read transaction (one
    /// snapshot).
    fn bounded<T>(
        &mut self,
        lookup: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = std::time::Instant::now() + self.budget;
        // Checked every thousand virtual-machine steps: cheap, and fine
        // grained enough to stop within a millisecond or so.
        self.connection
            .progress_handler(1000, Some(move || std::time::Instant::now() >= deadline))?;
        let transaction = self.connection.unchecked_transaction()?;
        let result = lookup(&transaction);
        drop(transaction);
        self.connection.progress_handler(0, None::<fn() -> bool>)?;
        result.map_err(|error| match &error {
            StoreError::Sqlite(inner)
                if inner.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) =>
            {
                StoreError::TooBroad {
                    budget_ms: self.budget.as_millis() as u64,
                }
            }
            _ => error,
        })
    }
}

impl HistoryReader for SqliteReader {
    fn recent(
        &mut self,
        room: &str,
        up_to: u64,
        range: Range,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.bounded(|connection| recent_in(connection, room, up_to, range, limit))
    }

    fn search(
        &mut self,
        room: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.bounded(|connection| {
            let indexed_through: i64 =
                connection.query_row("SELECT indexed_through FROM search_index", [], |row| {
                    row.get(0)
                })?;
            search_in(connection, indexed_through, room, query, limit)
        })
    }
}

fn classify_open_error(error: rusqlite::Error, path: &str) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_string(),
            detail: error.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_string(),
        },
        _ => StoreError::Sqlite(error),
    }
}

fn classify(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full,
        _ => StoreError::Sqlite(error),
    }
}

fn to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get::<_, i64>(0)? as u64,
        room: row.get(1)?,
        from: row.get(2)?,
        time: row.get::<_, i64>(3)? as u64,
        text: row.get(4)?,
        action: row.get(5)?,
        notice: row.get(6)?,
        ticket: None,
    })
}

const COLUMNS: &str = "id, room, sender, time, text, action, notice";

/// `%word%`, with `LIKE`'s own wildcards in `word` taken literally.
fn like_pattern(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl HistoryReader for SqliteStore {
    fn recent(
        &mut self,
        room: &str,
        up_to: u64,
        range: Range,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        recent_in(&self.connection, room, up_to, range, limit)
    }

    fn search(
        &mut self,
        room: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        search_in(&self.connection, self.indexed_through, room, query, limit)
    }
}

impl HistoryStore for SqliteStore {
    fn append(&mut self, messages: &[StoredMessage]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(classify)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    // A message a cluster's log brings again keeps its
                    // first copy: storing is idempotent by id.
                    "INSERT OR IGNORE INTO messages (id, room, sender, time, text, door, action, recipient, notice)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(classify)?;
            for message in messages {
                let record = &message.record;
                insert
                    .execute(params![
                        record.id as i64,
                        record.room,
                        record.from,
                        record.time as i64,
                        record.text,
                        message.door,
                        record.action,
                        message.to,
                        record.notice,
                    ])
                    .map_err(classify)?;
            }
        }
        transaction.commit().map_err(classify)?;
        self.unindexed += messages.len();
        Ok(())
    }

    fn reader(&self) -> Result<Option<Box<dyn HistoryReader>>, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(Duration::from_millis(200))?;
        Ok(Some(Box::new(SqliteReader {
            connection,
            budget: self.lookup_budget,
        })))
    }

    fn rooms(&mut self) -> Result<Vec<String>, StoreError> {
        let mut query = self
            .connection
            .prepare_cached("SELECT DISTINCT room FROM messages WHERE recipient IS NULL")?;
        let rooms = query
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rooms)
    }

    fn last_id(&mut self) -> Result<u64, StoreError> {
        let id: Option<i64> = self
            .connection
            .query_row("SELECT max(id) FROM messages", [], |row| row.get(0))
            .optional()?
            .flatten();
        Ok(id.unwrap_or(0) as u64)
    }

    fn upkeep(&mut self, idle: bool) -> Result<bool, StoreError> {
        if self.unindexed > 0 && (idle || self.unindexed >= self.max_unindexed) {
            self.index_step()?;
        }
        Ok(self.unindexed > 0)
    }

    fn prune(
        &mut self,
        retention: &Retention,
        now_ms: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        if let Some(max_age) = retention.max_age {
            let cutoff = now_ms.saturating_sub(max_age.as_millis() as u64) as i64;
            deleted += self
                .connection
                .execute(
                    // Ids and times rise together (one server stamps both),
                    // so the oldest messages are the first ids: no index
                    // on time to keep up on every insert.
                    "DELETE FROM messages WHERE id IN
                     (SELECT id FROM (SELECT id, time FROM messages ORDER BY id LIMIT ?2)
                      WHERE time < ?1)",
                    params![cutoff, batch as i64],
                )
                .map_err(classify)?;
        }
        if let Some(max_per_room) = retention.max_per_room {
            for room in self.rooms()? {
                if deleted >= batch {
                    break;
                }
                // The newest id that falls outside the kept window, if any.
                let oldest_dropped: Option<i64> = self
                    .connection
                    .query_row(
                        "SELECT id FROM messages WHERE room = ?1 AND recipient IS NULL
                         ORDER BY id DESC LIMIT 1 OFFSET ?2",
                        params![room, max_per_room as i64],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(newest_to_drop) = oldest_dropped {
                    deleted += self
                        .connection
                        .execute(
                            "DELETE FROM messages WHERE id IN
                             (SELECT id FROM messages WHERE room = ?1 AND recipient IS NULL AND id <= ?2
                              ORDER BY id LIMIT ?3)",
                            params![room, newest_to_drop, (batch - deleted) as i64],
                        )
                        .map_err(classify)?;
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, room: &str, text: &str, time: u64) -> StoredMessage {
        StoredMessage {
            record: MessageRecord {
                id,
                room: room.into(),
                from: "alice".into(),
                text: text.into(),
                time,
                action: false,
                notice: false,
                ticket: None,
            },
            door: "tcp",
            to: None,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested/history.db"), 0).unwrap();
        (dir, store)
    }

    /// Lookups read on a connection of their own, beside the writer, and
    /// one that runs past its budget is given up as too broad.
    #[test]
    fn a_reader_sees_commits_and_gives_up_a_lookup_past_its_budget() {
        let (_dir, mut store) = store();
        let batch: Vec<_> = (1..=20_000)
            .map(|id| {
                message(
                    id,
                    "lobby",
                    &format!("message {id} about rust and sqlite"),
                    id,
                )
            })
            .collect();
        store.append(&batch).unwrap();
        store.set_lookup_budget(Duration::from_secs(60));
        let mut reader = store.reader().unwrap().unwrap();
        // Committed after the reader opened: it sees them.
        store
            .append(&[message(20_001, "lobby", "the newest one", 20_001)])
            .unwrap();
        let found = reader.search("lobby", "newest", 10).unwrap();
        assert_eq!(
            found.iter().map(|record| record.id).collect::<Vec<_>>(),
            [20_001]
        );
        assert_eq!(
            reader.recent("lobby", u64::MAX, Range::Latest, 1).unwrap()[0].id,
            20_001
        );

        store.set_lookup_budget(Duration::from_millis(1));
        let mut hurried = store.reader().unwrap().unwrap();
        let broad = "a b c d e f g h i j k l m n o p q r s t u v w x y z ".repeat(20);
        let error = hurried.search("lobby", &broad, 50).unwrap_err();
        assert!(
            matches!(error, StoreError::TooBroad { budget_ms: 1 }),
            "{error}"
        );
        assert!(error.to_string().starts_with("search too broad"));
        // The reader is fine afterwards, for a lookup that fits.
        assert_eq!(
            hurried
                .recent("lobby", u64::MAX, Range::Latest, 1)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_message_stored_again_keeps_its_first_copy() {
        let (_dir, mut store) = store();
        store.append(&[message(1, "lobby", "first", 1)]).unwrap();
        // A redelivery, alone and within a batch of new ones.
        store.append(&[message(1, "lobby", "again", 1)]).unwrap();
        store
            .append(&[
                message(1, "lobby", "again", 1),
                message(2, "lobby", "next", 2),
            ])
            .unwrap();
        let recent = store.recent("lobby", u64::MAX, Range::Latest, 10).unwrap();
        let texts: Vec<_> = recent.iter().map(|record| record.text.as_str()).collect();
        assert_eq!(texts, ["first", "next"]);
        assert!(store.search("lobby", "again", 10).unwrap().is_empty());
        assert_eq!(store.search("lobby", "first", 10).unwrap().len(), 1);
    }

    #[test]
    fn append_recent_and_last_id() {
        let (_dir, mut store) = store();
        assert_eq!(store.last_id().unwrap(), 0);
        let batch: Vec<_> = (1..=5)
            .map(|id| message(id, "lobby", &format!("m{id}"), id))
            .collect();
        store.append(&batch).unwrap();
        store.append(&[message(6, "rust", "elsewhere", 6)]).unwrap();
        assert_eq!(store.last_id().unwrap(), 6);
        let recent = store.recent("lobby", u64::MAX, Range::Latest, 3).unwrap();
        let texts: Vec<_> = recent.iter().map(|record| record.text.as_str()).collect();
        assert_eq!(texts, ["m3", "m4", "m5"]);
        let before = store.recent("lobby", 2, Range::Latest, 10).unwrap();
        assert_eq!(before.len(), 2);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        // How a message was said is kept.
        let mut action = message(12, "styles", "waves", 12);
        action.record.action = true;
        let mut notice = message(13, "styles", "build is green", 13);
        notice.record.notice = true;
        store.append(&[action, notice]).unwrap();
        let styles = store.recent("styles", u64::MAX, Range::Latest, 2).unwrap();
        let styles: Vec<_> = styles.iter().map(|r| (r.action, r.notice)).collect();
        assert_eq!(styles, [(true, false), (false, true)]);
        // Next to a point, by id or by time (here time = id * 1000).
        let timed: Vec<_> = (7..=11)
            .map(|id| message(id, "timed", &format!("t{id}"), id * 1000))
            .collect();
        store.append(&timed).unwrap();
        let texts = |range: Range, limit: usize, store: &mut SqliteStore| -> Vec<String> {
            let found = store.recent("timed", u64::MAX, range, limit).unwrap();
            found.into_iter().map(|record| record.text).collect()
        };
        assert_eq!(
            texts(Range::Before(Point::Id(10)), 2, &mut store),
            ["t8", "t9"]
        );
        assert_eq!(
            texts(Range::After(Point::Id(8)), 2, &mut store),
            ["t9", "t10"]
        );
        assert_eq!(
            texts(Range::Before(Point::Time(9_500)), 10, &mut store),
            ["t7", "t8", "t9"]
        );
        assert_eq!(
            texts(Range::After(Point::Time(9_000)), 10, &mut store),
            ["t10", "t11"]
        );
        // Never past what was published.
        let up_to = store
            .recent("timed", 9, Range::After(Point::Id(7)), 10)
            .unwrap();
        assert_eq!(up_to.len(), 2);
    }

    /// Every search finds the same whether its messages are in the
    /// full-text index (an idle step of the default size), not yet (no
    /// step) or some of each (a step of 3: messages 4 and 5 are in the tail).
    #[test]
    fn search_finds_chinese_and_short_words_indexed_or_not() {
        for (step, expected_indexed) in [(Some(INDEX_STEP), 5), (Some(3), 3), (None, 0)] {
            let (_dir, mut store) = store();
            for message in [
                message(1, "lobby", "今天天气很好", 1),
                message(2, "lobby", "我们去吃饭吧", 2),
                message(3, "lobby", "hello world", 3),
                message(4, "other", "今天天气很好", 4),
                message(5, "lobby", "100% sure_thing", 5),
            ] {
                store.append(&[message]).unwrap();
            }
            // Busy: nothing is indexed while the tail is short.
            assert!(store.upkeep(false).unwrap());
            assert_eq!(store.indexed_through, 0);
            if let Some(step) = step {
                store.index_step = step;
                let left = store.upkeep(true).unwrap();
                assert_eq!(left, expected_indexed < 5);
            }
            assert_eq!(store.indexed_through, expected_indexed);
            search_cases(&mut store);
        }
    }

    /// A tail past the limit is indexed even while the writer is busy, a
    /// step at a time; idle steps take the rest.
    #[test]
    fn a_long_tail_is_indexed_even_when_busy() {
        let (_dir, mut store) = store();
        store.index_step = 2;
        store.max_unindexed = 4;
        let batch: Vec<_> = (1..=5)
            .map(|id| message(id, "lobby", &format!("word{id}"), id))
            .collect();
        store.append(&batch).unwrap();
        assert!(store.upkeep(false).unwrap());
        assert_eq!(store.indexed_through, 2);
        // Three left, under the limit: a busy writer leaves them.
        assert!(store.upkeep(false).unwrap());
        assert_eq!(store.indexed_through, 2);
        assert!(store.upkeep(true).unwrap());
        assert!(!store.upkeep(true).unwrap());
        assert_eq!(store.indexed_through, 5);
        let ids = |records: Vec<MessageRecord>| {
            records.iter().map(|record| record.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(store.search("lobby", "word3", 10).unwrap()), [3]);
    }

    #[test]
    fn indexed_words_are_looked_up_in_the_index() {
        let (_dir, store) = store();
        let plan: Vec<String> = store
            .connection
            .prepare("EXPLAIN QUERY PLAN SELECT rowid FROM messages_fts WHERE text LIKE ?")
            .unwrap()
            .query_map(["%weather%"], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // "INDEX 0:L0" is FTS5 answering the LIKE from its trigram index.
        assert!(
            plan.iter().any(|step| step.contains("INDEX 0:L")),
            "{plan:?}"
        );
    }

    fn search_cases(store: &mut SqliteStore) {
        let ids = |records: Vec<MessageRecord>| {
            records.iter().map(|record| record.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(store.search("lobby", "天气很好", 10).unwrap()), [1]);
        assert_eq!(ids(store.search("lobby", "吃饭", 10).unwrap()), [2]);
        assert_eq!(ids(store.search("lobby", "WORLD", 10).unwrap()), [3]);
        assert_eq!(ids(store.search("lobby", "天气 好", 10).unwrap()), [1]);
        assert_eq!(ids(store.search("lobby", "% _", 10).unwrap()), [5]);
        assert!(store.search("lobby", "\"NEAR(", 10).unwrap().is_empty());
        assert!(store
            .search("lobby", "nothing-here", 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn prune_by_count_and_age_in_batches() {
        let (_dir, mut store) = store();
        // Half of them in the search index: deleting works on both sides.
        let batch: Vec<_> = (1..=5)
            .map(|id| message(id, "lobby", "xyz", id * 1000))
            .collect();
        store.append(&batch).unwrap();
        store.upkeep(true).unwrap();
        let batch: Vec<_> = (6..=10)
            .map(|id| message(id, "lobby", "xyz", id * 1000))
            .collect();
        store.append(&batch).unwrap();
        let keep_three = Retention {
            max_per_room: Some(3),
            max_age: None,
        };
        assert_eq!(store.prune(&keep_three, 0, 4).unwrap(), 4);
        assert_eq!(store.prune(&keep_three, 0, 100).unwrap(), 3);
        assert_eq!(store.prune(&keep_three, 0, 100).unwrap(), 0);
        let recent = store.recent("lobby", u64::MAX, Range::Latest, 100).unwrap();
        assert_eq!(recent.iter().map(|r| r.id).collect::<Vec<_>>(), [8, 9, 10]);
        let young = Retention {
            max_per_room: None,
            max_age: Some(Duration::from_secs(1)),
        };
        // At 10.5 s, only the message from 10 s is younger than 1 s.
        assert_eq!(store.prune(&young, 10_500, 100).unwrap(), 2);
        assert_eq!(store.search("lobby", "xyz", 10).unwrap().len(), 1);
        while store.upkeep(true).unwrap() {}
        assert_eq!(store.search("lobby", "xyz", 10).unwrap().len(), 1);
        let check: String = store
            .connection
            .query_row(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)
                 RETURNING 'ok'",
                [],
                |row| row.get(0),
            )
            .unwrap_or_else(|error| error.to_string());
        assert_eq!(check, "ok", "the index matches the messages");
    }

    #[test]
    fn prune_by_age_takes_old_messages_even_behind_a_clock_jump() {
        let (_dir, mut store) = store();
        // Message 2 was stamped by a clock that later stepped back.
        let times = [1_000, 90_000, 2_000, 3_000, 4_000];
        let batch: Vec<_> = (1..=5)
            .map(|id| message(id, "lobby", "xyz", times[id as usize - 1]))
            .collect();
        store.append(&batch).unwrap();
        let young = Retention {
            max_per_room: None,
            max_age: Some(Duration::from_secs(10)),
        };
        // At 14.5 s, everything but message 2 is older than 10 s.
        assert_eq!(store.prune(&young, 14_500, 100).unwrap(), 4);
        let left = store.recent("lobby", u64::MAX, Range::Latest, 10).unwrap();
        assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn prune_by_count_right_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let mut store = SqliteStore::open(&path, 0).unwrap();
        let batch: Vec<_> = (1..=6).map(|id| message(id, "lobby", "x", id)).collect();
        store.append(&batch).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path, 0).unwrap();
        let keep_three = Retention {
            max_per_room: Some(3),
            max_age: None,
        };
        assert_eq!(store.prune(&keep_three, 0, 500).unwrap(), 3);
    }

    #[test]
    fn a_second_server_on_the_same_file_is_refused() {
        let (dir, _store) = store();
        let error = SqliteStore::open(&dir.path().join("nested/history.db"), 0).unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "these are my notes, not a database ".repeat(100)).unwrap();
        let error = SqliteStore::open(&path, 0).unwrap_err();
        assert!(matches!(error, StoreError::NotADatabase { .. }), "{error}");
    }

    #[test]
    fn a_full_database_reports_full_and_accepts_writes_after_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("small.db"), 64 * 1024).unwrap();
        let big = "字".repeat(1000);
        let mut id = 0;
        let error = loop {
            id += 1;
            if let Err(error) = store.append(&[message(id, "lobby", &big, id)]) {
                break error;
            }
            assert!(id < 1000, "the cap never bit");
        };
        assert!(matches!(error, StoreError::Full), "{error}");
        let keep_one = Retention {
            max_per_room: Some(1),
            max_age: None,
        };
        store.prune(&keep_one, 0, 1000).unwrap();
        store.append(&[message(id, "lobby", &big, id)]).unwrap();
    }
}
