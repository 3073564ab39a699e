//! The event store: one SQLite file (WAL) holding every session's events in
//! one hash chain.
//!
//! Each record's hash covers the previous record's hash and the record's
//! own stored bytes, so any later edit, deletion or reordering shows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::event::{Event, Outcome};
use super::fault::{FileId, StoreFault};
pub use super::id::SessionId;

const SCHEMA_VERSION: i64 = 2;
/// The hash the first record chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the event store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the event store at {path} was written by a newer opsbot (schema {found}, this build knows {SCHEMA_VERSION}); upgrade opsbot"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("event store: {0}")]
    Sql(rusqlite::Error),
    #[error(
        "the audit log file is damaged ({0}); `opsbot audit verify` says which records can still be read, and `sqlite3 opsbot.db .recover` saves what is left"
    )]
    Damaged(rusqlite::Error),
    #[error("event store: cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no session matches `{0}`; `opsbot history list` shows them")]
    NoSuchSession(String),
    #[error("`{prefix}` matches {count} sessions; give more of the id")]
    Ambiguous { prefix: String, count: usize },
    #[error("{0}")]
    BadQuery(String),
    #[error("cannot write the export: {0}")]
    Export(String),
    /// The log cannot take events: see the fault for why and what to do.
    #[error("{0}")]
    Fault(StoreFault),
    /// Another process drives the session.
    #[error(
        "session {session} is already being driven by {}; wait for it to finish or stop it, then try again",
        .by.as_ref().map_or_else(|| "another opsbot".to_string(), super::LeaseHolder::describe)
    )]
    Driven {
        session: String,
        by: Option<super::LeaseHolder>,
    },
    #[error(
        "cannot replay the journal {} ({detail}): it is left in place for the next start; `opsbot audit verify` checks what was committed",
        .path.display()
    )]
    Journal { path: PathBuf, detail: String },
    #[error("cannot take the lease on a session ({}): {detail}", .path.display())]
    LeaseIo { path: PathBuf, detail: String },
    #[error(
        "cannot use the shared store at {url}: {detail}. Check [store] url, that the database is up and reachable, and its password (`opsbot auth set store`, or the variable [store] password_env names)"
    )]
    PgConnect { url: String, detail: String },
    #[error(
        "the shared store at {url} was migrated by a newer opsbot (schema {found}, this build knows {}); upgrade opsbot",
        super::pg::latest_schema()
    )]
    PgTooNew { url: String, found: i32 },
    #[error("shared store: {0}")]
    Pg(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let damaged = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        );
        if damaged {
            StoreError::Damaged(e)
        } else {
            StoreError::Sql(e)
        }
    }
}

impl StoreError {
    /// The store's own failure (disk full, file gone, damaged, read-only),
    /// as opposed to a question it could not answer.
    pub fn fault(&self) -> Option<&StoreFault> {
        match self {
            StoreError::Fault(f) => Some(f),
            _ => None,
        }
    }

    /// The log itself failed (a fault, or a damaged file): for exit codes.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, StoreError::Fault(_) | StoreError::Damaged(_))
    }
}

/// Events made ready to append (see `Store::prepare`): each redacted, with
/// the JSON body its hash covers and the time it is recorded at.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub(super) entries: Vec<Entry>,
    /// The journal lines holding these events, when they were journaled
    /// (see journal.rs): their commit marks them done.
    pub(super) journaled: Option<super::journal::Lines>,
}

/// One event ready to append.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub event: Event,
    pub body: String,
    pub ts: String,
}

impl Prepared {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The events as they will be stored.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.entries.iter().map(|e| &e.event)
    }

    /// Drop the entries past the first `n`: ones appended to a batch that
    /// were never journaled (its journal lines stay the batch's).
    pub(super) fn truncate(&mut self, n: usize) {
        self.entries.truncate(n);
    }

    /// `later`'s events after these.
    pub fn extend(&mut self, later: Prepared) {
        self.entries.extend(later.entries);
        self.journaled = super::journal::Lines::join(self.journaled, later.journaled);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub seq: i64,
    pub session: SessionId,
    pub ts: String,
    pub actor: String,
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    pub id: SessionId,
    pub started_at: String,
    pub actor: String,
    pub title: Option<String>,
    pub outcome: Option<String>,
    pub events: i64,
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Commits so far, to nudge the checkpointer every so many.
    commits: std::sync::atomic::AtomicU64,
    checkpointer: Option<super::checkpoint::Checkpointer>,
    /// Applied to every event before it is hashed and stored.
    redactor: std::sync::RwLock<Arc<super::Redactor>>,
    /// The file opened, checked before each commit: a deleted or replaced
    /// database must not swallow events unseen.
    identity: Option<FileId>,
    /// When a journal write last found the file to be the one opened.
    identity_seen: Mutex<Option<std::time::Instant>>,
    /// Set by the first failed append; every later append fails with it.
    fault: tokio::sync::watch::Sender<Option<StoreFault>>,
    /// Opened for reading only: nothing is written, not even the index.
    read_only: bool,
    /// Signs the newest record of each commit (see seal.rs), once set.
    seal: std::sync::OnceLock<super::seal::Seal>,
    /// Writes the signed head beside the database, off the append path.
    anchor: std::sync::OnceLock<super::seal::AnchorWriter>,
    /// The shared PostgreSQL store, when `[store] url` names one. Then
    /// `conn` is an empty in-memory database: a read this backend does
    /// not answer fails loudly ("no such table") rather than finding
    /// nothing.
    pg: Option<super::pg::Pg>,
    /// This process's journal (see journal.rs), opened at its first use;
    /// none for a shared or read-only store, or when it cannot be made.
    pub(super) journal: std::sync::OnceLock<Option<super::journal::Journal>>,
}

/// Databases up to this size get SQLite's quick check at open (about a
/// tenth of a second per 100 MB); larger ones are checked in the
/// background, and appends stop as soon as a check fails.
const CHECK_AT_OPEN_BYTES: u64 = 256 << 20;

pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

/// The chain link: SHA-256 over the previous hash and the record's fields
/// exactly as stored.
pub fn link_hash(
    prev: &str,
    seq: i64,
    session: &str,
    ts: &str,
    actor: &str,
    kind: &str,
    body: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), session, ts, actor, kind, body] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    crate::text::hex(&h.finalize())
}

impl Store {
    /// Open (or create) the log for writing. A file that fails SQLite's
    /// integrity check opens, for reading, with appends refused and the
    /// reason given; a file on a read-only file system opens for reading.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = match Self::open_writer(path) {
            Ok(conn) => conn,
            Err(e) if Self::read_only_place(path, &e) => {
                let store = Self::open_read(path)?;
                store.fail(StoreFault::ReadOnly {
                    path: path.to_path_buf(),
                });
                return Ok(store);
            }
            Err(e) => return Err(e),
        };
        let checkpointer = super::checkpoint::Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
                .map_err(|source| StoreError::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let store = Self::assemble(path, conn, checkpointer);
        if size <= CHECK_AT_OPEN_BYTES {
            if let Some(problem) = store.quick_check() {
                store.fail(StoreFault::Corrupt {
                    path: path.to_path_buf(),
                    detail: problem,
                });
            }
        } else if let Some(c) = &store.checkpointer {
            c.check_integrity(store.fault.clone(), path.to_path_buf());
        }
        Ok(store)
    }

    /// Open an existing log for reading only: for commands that only read
    /// (history, audit verify, audit export), which must work on a
    /// read-only mount and never change the file.
    pub fn open_read(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let plain = Connection::open_with_flags(path, flags).and_then(|c| {
            c.query_row("SELECT COUNT(*) FROM sessions", [], |_| Ok(()))
                .map(|()| c)
        });
        let conn = match plain {
            Ok(c) => c,
            // A WAL database on a read-only file system cannot make its
            // shared-memory file: read the file as it is, unlocked.
            Err(_) => {
                let uri = format!(
                    "file:{}?immutable=1",
                    path.to_string_lossy()
                        .replace('%', "%25")
                        .replace('?', "%3f")
                        .replace('#', "%23")
                );
                Connection::open_with_flags(uri, flags).map_err(open_err)?
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let mut store = Self::assemble(path, conn, None);
        store.read_only = true;
        store.fail(StoreFault::ReadOnly {
            path: path.to_path_buf(),
        });
        Ok(store)
    }

    /// Whether opening for writing failed because the place is read-only
    /// (a mount, a file mode) while the log itself is there to read.
    fn read_only_place(path: &Path, e: &StoreError) -> bool {
        let read_only_sql = matches!(
            e,
            StoreError::Open { source: rusqlite::Error::SqliteFailure(f, _), .. }
                if matches!(f.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
        );
        read_only_sql && path.exists()
    }

    fn assemble(
        path: &Path,
        conn: Connection,
        checkpointer: Option<super::checkpoint::Checkpointer>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            commits: std::sync::atomic::AtomicU64::new(0),
            checkpointer,
            redactor: std::sync::RwLock::new(Arc::new(super::Redactor::default())),
            identity: FileId::of(path).ok().flatten(),
            identity_seen: Mutex::new(None),
            fault: tokio::sync::watch::Sender::new(None),
            read_only: false,
            seal: std::sync::OnceLock::new(),
            anchor: std::sync::OnceLock::new(),
            pg: None,
            journal: std::sync::OnceLock::new(),
        }
    }

    /// Open the shared store `opts` names (and migrate its schema); `local`
    /// is the data directory's log path, beside which local files (lease
    /// locks of SQLite, the anchor) would go: nothing is written there.
    pub fn open_shared(opts: super::pg::PgOptions, local: &Path) -> Result<Self, StoreError> {
        let pg = super::pg::Pg::connect(opts)?;
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: local.to_path_buf(),
            source,
        })?;
        let mut store = Self::assemble(local, conn, None);
        store.identity = None;
        store.pg = Some(pg);
        Ok(store)
    }

    /// Whether this is a shared (PostgreSQL) store.
    pub fn is_shared(&self) -> bool {
        self.pg.is_some()
    }

    /// The shared store, if this is one.
    pub(crate) fn pg(&self) -> Option<&super::pg::Pg> {
        self.pg.as_ref()
    }

    /// Where the log is, for people: the file, or the database's URL.
    pub fn location(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => self.path.display().to_string(),
        }
    }

    /// Another handle on the same log, for a reader on its own thread.
    pub fn reader(&self) -> Result<Self, StoreError> {
        match &self.pg {
            Some(pg) => Self::open_shared(pg.opts.clone(), &self.path),
            None => Self::open_read(&self.path),
        }
    }

    /// Whether this store only reads (a read-only file or file system).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// SQLite's quick check: the first problem it names, if any.
    fn quick_check(&self) -> Option<String> {
        let conn = self.conn();
        let rows: Result<Vec<String>, _> = conn
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
        match rows {
            Ok(rows) if rows.first().is_some_and(|r| r == "ok") => None,
            Ok(rows) => Some(rows.join("; ")),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Stop taking events, for this reason; views are told.
    pub(super) fn fail(&self, fault: StoreFault) {
        tracing::error!("{fault}");
        self.fault.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(fault);
                true
            } else {
                false
            }
        });
    }

    /// Why the log takes no more events, if it does not.
    pub fn fault(&self) -> Option<StoreFault> {
        self.fault.borrow().clone()
    }

    /// Follow the store's health: `Some` once it can take no more events.
    pub fn watch_fault(&self) -> tokio::sync::watch::Receiver<Option<StoreFault>> {
        self.fault.subscribe()
    }

    /// Before a commit: the file must still be the one opened. If it was
    /// deleted or replaced, what this process wrote is in the file it has
    /// open; a copy of it is saved where a person will find it.
    fn check_identity(&self, conn: &Connection) -> Result<(), StoreFault> {
        let Some(opened) = self.identity else {
            return Ok(());
        };
        let now = match FileId::of(&self.path) {
            Ok(now) => now,
            Err(e) => {
                return Err(StoreFault::Io {
                    path: self.path.clone(),
                    detail: e.to_string(),
                });
            }
        };
        match now {
            Some(id) if id == opened => Ok(()),
            None => {
                let saved = self.rescue(conn, &self.path).or_else(|_| {
                    self.rescue(conn, &super::fault::rescue_name(&self.path, "recovered"))
                });
                let saved = match saved {
                    Ok(to) => format!(
                        "Everything it held up to now was written back to {}.",
                        to.display()
                    ),
                    Err(e) => format!("It could not be saved ({e}); it is gone when opsbot exits."),
                };
                Err(StoreFault::Deleted {
                    path: self.path.clone(),
                    saved,
                })
            }
            Some(_) => {
                let to = super::fault::rescue_name(&self.path, "orphaned");
                let saved = match self.rescue(conn, &to) {
                    Ok(to) => {
                        // The write-ahead log under the old name is this
                        // connection's: left there, SQLite would replay it
                        // into the new file when that is next opened.
                        for suffix in ["-wal", "-shm"] {
                            let mut from = self.path.clone().into_os_string();
                            from.push(suffix);
                            let mut aside = to.clone().into_os_string();
                            aside.push(format!("{suffix}-stale"));
                            let _ = std::fs::rename(&from, &aside);
                        }
                        format!(
                            "What opsbot had written is saved in {}; the new file was not touched.",
                            to.display()
                        )
                    }
                    Err(e) => format!("What opsbot had written could not be saved ({e})."),
                };
                Err(StoreFault::Replaced {
                    path: self.path.clone(),
                    saved,
                })
            }
        }
    }

    /// A consistent copy of the open database at `to` (which must not exist).
    fn rescue(&self, conn: &Connection, to: &Path) -> Result<PathBuf, rusqlite::Error> {
        conn.execute("VACUUM INTO ?1", params![to.to_string_lossy()])?;
        Ok(to.to_path_buf())
    }

    fn open_writer(path: &Path) -> Result<Connection, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        // WAL with synchronous=NORMAL: a committed event survives a killed
        // process; only an OS crash or power loss can drop the newest ones.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                started_at TEXT NOT NULL,
                actor TEXT NOT NULL,
                title TEXT,
                outcome TEXT
            );
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions(id),
                ts TEXT NOT NULL,
                actor TEXT NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id, seq);
            -- Only the kinds looked up across sessions are indexed, each on
            -- its own: an index on every event's kind cost each commit a
            -- page per kind it wrote, and a governed call writes five kinds.
            DROP INDEX IF EXISTS events_by_kind;
            CREATE INDEX IF NOT EXISTS calls_by_time ON events(ts) WHERE kind = 'step_started';
            CREATE INDEX IF NOT EXISTS effects_by_time ON events(ts) WHERE kind = 'effect';
            CREATE INDEX IF NOT EXISTS llm_calls_by_time ON events(ts) WHERE kind = 'llm_call';
            CREATE INDEX IF NOT EXISTS waits ON events(seq) WHERE kind = 'awaiting_approval';
            CREATE TABLE IF NOT EXISTS pins (
                tool TEXT PRIMARY KEY,
                def_hash TEXT NOT NULL,
                definition TEXT NOT NULL,
                pinned_at TEXT NOT NULL,
                pinned_by TEXT NOT NULL
            );
            -- A pinned tool's definition as served later, differently: kept
            -- when seen, so it is reviewed (and accepted by its hash) without
            -- starting its server again. `rejected` keeps it denied.
            CREATE TABLE IF NOT EXISTS pin_changes (
                tool TEXT PRIMARY KEY,
                def_hash TEXT NOT NULL,
                definition TEXT NOT NULL,
                seen_at TEXT NOT NULL,
                rejected_by TEXT
            );
            -- Ranges removed by retention: verification resumes from the
            -- hash the last pruned record had.
            CREATE TABLE IF NOT EXISTS pruned (
                upto_seq INTEGER PRIMARY KEY,
                last_hash TEXT NOT NULL,
                sessions INTEGER NOT NULL,
                events INTEGER NOT NULL,
                at TEXT NOT NULL
            );
            -- Full-text search over every event's text, keyed by seq.
            -- Filled behind the appends (see search.rs), not on their path.
            CREATE VIRTUAL TABLE IF NOT EXISTS search
                USING fts5(session_id UNINDEXED, text, tokenize = 'unicode61');
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            -- Names this log for the journals written ahead of it (journal.rs).
            INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', abs(random()));
            -- The newest record's seq and hash, signed (see seal.rs).
            CREATE TABLE IF NOT EXISTS audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL,
                mac TEXT NOT NULL
            );
            PRAGMA user_version = 2;",
        )
        .map_err(open_err)?;
        conn.execute_batch(super::rollup::SCHEMA)
            .map_err(open_err)?;
        // Pruned markers are signed too; logs made before that gain the column.
        let signed_markers: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('pruned') WHERE name = 'mac'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(open_err)?
            > 0;
        if !signed_markers {
            add_column(&conn, "ALTER TABLE pruned ADD COLUMN mac TEXT").map_err(open_err)?;
        }
        let signed_pins: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('pins') WHERE name = 'mac'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(open_err)?
            > 0;
        if !signed_pins {
            add_column(&conn, "ALTER TABLE pins ADD COLUMN mac TEXT").map_err(open_err)?;
        }
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent:
        // every write is one transaction. Carry on with the connection.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn create_session(&self, id: &SessionId, actor: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            if let Some(f) = self.fault() {
                return Err(StoreError::Fault(f));
            }
            return self.failed_if(pg.create_session(id, actor, now_rfc3339()));
        }
        let conn = self.writable()?;
        let inserted = conn
            .execute(
                "INSERT INTO sessions (id, started_at, actor) VALUES (?1, ?2, ?3)",
                params![id.as_str(), now_rfc3339(), actor],
            )
            .map(drop)
            .map_err(StoreError::from);
        drop(conn);
        self.failed_if(inserted)
    }

    /// Redact events with this from now on (from `[audit]`).
    pub fn set_redactor(&self, redactor: super::Redactor) {
        let redactor = Arc::new(redactor);
        super::set_for_logs(Arc::clone(&redactor));
        if let Ok(mut r) = self.redactor.write() {
            *r = redactor;
        }
    }

    pub fn redactor(&self) -> Arc<super::Redactor> {
        self.redactor
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// Append one event to the chain, durably, and return its record.
    pub fn append(
        &self,
        session: &SessionId,
        actor: &str,
        event: &Event,
    ) -> Result<Record, StoreError> {
        let mut records = self.append_all(session, actor, std::slice::from_ref(event))?;
        records
            .pop()
            .ok_or_else(|| StoreError::NoSuchSession(session.to_string()))
    }

    /// Append events to the chain in order, in one transaction: all of them
    /// are durable when this returns, or none is. One commit for several
    /// events is what keeps the audit write off a governed call's path.
    pub fn append_all(
        &self,
        session: &SessionId,
        actor: &str,
        events: &[Event],
    ) -> Result<Vec<Record>, StoreError> {
        let prepared = self.prepare(events)?;
        self.append_prepared(session, actor, &prepared)
    }

    /// Events as they will be stored: cut to the size limits and redacted,
    /// each with its body. What a caller shows of an event it has not
    /// appended yet must come from here, never from the event as made.
    pub fn prepare(&self, events: &[Event]) -> Result<Prepared, StoreError> {
        self.prepare_each(events.iter().map(std::borrow::Cow::Borrowed))
    }

    /// As `prepare`, for events the caller hands over: not copied.
    pub fn prepare_owned(&self, events: Vec<Event>) -> Result<Prepared, StoreError> {
        self.prepare_each(events.into_iter().map(std::borrow::Cow::Owned))
    }

    fn prepare_each<'a>(
        &self,
        events: impl Iterator<Item = std::borrow::Cow<'a, Event>>,
    ) -> Result<Prepared, StoreError> {
        let redactor = self.redactor();
        let ts = now_rfc3339();
        let entries = events
            .map(|e| {
                let (event, body) = match e.within_limits() {
                    Some(cut) => redactor.cow_event(std::borrow::Cow::Owned(cut)),
                    None => redactor.cow_event(e),
                }?;
                Ok(Entry {
                    event,
                    body,
                    ts: ts.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Prepared {
            entries,
            journaled: None,
        })
    }

    /// As `append_all`, for events already prepared. They are left with
    /// the caller, to try again should the commit fail.
    pub fn append_prepared(
        &self,
        session: &SessionId,
        actor: &str,
        prepared: &Prepared,
    ) -> Result<Vec<Record>, StoreError> {
        let Prepared { entries, journaled } = prepared;
        let journaled = *journaled;
        let mark = journaled.and_then(|lines| self.journal_mark(session, lines));
        let records = self.append_marked(session, actor, entries, mark)?;
        if let Some(lines) = journaled {
            self.journal_done(lines);
        }
        Ok(records)
    }

    /// As `append_prepared`, marking journal lines committed with `mark`
    /// in the same transaction.
    pub(super) fn append_marked(
        &self,
        session: &SessionId,
        actor: &str,
        redacted: &[Entry],
        mark: Option<super::journal::Mark>,
    ) -> Result<Vec<Record>, StoreError> {
        if redacted.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(pg) = &self.pg {
            if let Some(f) = self.fault() {
                return Err(StoreError::Fault(f));
            }
            let ready = redacted
                .iter()
                .map(|Entry { event, body, .. }| {
                    let text = serde_json::from_str(body)
                        .map(|v| super::search::text_of(&v))
                        .unwrap_or_default();
                    (event.clone(), body.clone(), text)
                })
                .collect();
            return self.failed_if(pg.append(session, actor, now_rfc3339(), ready));
        }
        let mut conn = self.writable()?;
        let gate = self.checkpointer.as_ref().map(|c| c.hold());
        let seal = self.seal.get();
        let written = Self::write_batch(&mut conn, session, actor, redacted, seal, mark.as_ref());
        // Handed over under the connection's lock, so heads arrive in order.
        if let (Ok((_, Some(head))), Some(anchor)) = (&written, self.anchor.get()) {
            anchor.note(&self.path, head.clone());
        }
        drop(gate);
        drop(conn);
        let (records, _) = self.failed_if(written)?;
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = &self.checkpointer
            && (n + 1).is_multiple_of(super::checkpoint::EVERY)
        {
            c.nudge();
        }
        Ok(records)
    }

    /// The checks a commit makes before it writes, without taking the
    /// connection while the file is the one opened: for a write that does
    /// not go through SQLite (the journal). The file is looked at once per
    /// `LOOK_EVERY` at most: the look (a path lookup) was most of a journal
    /// write. A log deleted in between is found by the commit behind the
    /// write, which saves the log in its place; the journaled lines wait
    /// in the journal for the next start, like any that a commit missed.
    pub(super) fn still_writable(&self) -> Result<(), StoreError> {
        const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(1);
        if let Some(f) = self.fault() {
            return Err(StoreError::Fault(f));
        }
        let Some(opened) = self.identity else {
            return Ok(());
        };
        let mut seen = self.identity_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
            return Ok(());
        }
        match FileId::of(&self.path) {
            Ok(Some(now)) if now == opened => {
                *seen = Some(std::time::Instant::now());
                Ok(())
            }
            _ => {
                *seen = None;
                drop(seen);
                self.writable().map(drop)
            }
        }
    }

    /// The connection, if the log may be written: not in a fault, and
    /// still the file it was opened as.
    fn writable(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        if let Some(f) = self.fault() {
            return Err(StoreError::Fault(f));
        }
        let conn = self.conn();
        if let Err(f) = self.check_identity(&conn) {
            self.fail(f.clone());
            return Err(StoreError::Fault(f));
        }
        Ok(conn)
    }

    /// A write's result, with a failure of the store itself turned into
    /// the store's fault: nothing more is appended after it.
    pub(super) fn failed_if<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(StoreError::Fault(f)) => {
                self.fail(f.clone());
                Err(StoreError::Fault(f))
            }
            Err(StoreError::Sql(e) | StoreError::Damaged(e)) => {
                match StoreFault::classify(&self.path, &e) {
                    Some(f) => {
                        self.fail(f.clone());
                        Err(StoreError::Fault(f))
                    }
                    None => Err(StoreError::from(e)),
                }
            }
            other => other,
        }
    }

    /// One transaction: the events, chained after the newest record.
    fn write_batch(
        conn: &mut Connection,
        session: &SessionId,
        actor: &str,
        redacted: &[Entry],
        seal: Option<&super::seal::Seal>,
        mark: Option<&super::journal::Mark>,
    ) -> Result<(Vec<Record>, Option<super::seal::Head>), StoreError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Statements are prepared once per connection: every event passes here.
        let (mut seq, mut prev): (i64, String) = tx
            .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_string()));
        let mut records = Vec::with_capacity(redacted.len());
        for Entry { event, body, ts } in redacted {
            seq += 1;
            let kind = event.kind();
            let hash = link_hash(&prev, seq, session.as_str(), ts, actor, kind, body);
            tx.prepare_cached(
                "INSERT INTO events (seq, session_id, ts, actor, kind, body, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq,
                session.as_str(),
                ts,
                actor,
                kind,
                body,
                prev,
                hash
            ])?;
            match event {
                Event::PlanProposed { plan, .. } => {
                    tx.prepare_cached("UPDATE sessions SET title = ?2 WHERE id = ?1")?
                        .execute(params![session.as_str(), plan.title])?;
                }
                Event::UserMessage { text } => {
                    tx.prepare_cached(
                        "UPDATE sessions SET title = COALESCE(title, ?2) WHERE id = ?1",
                    )?
                    .execute(params![session.as_str(), text])?;
                }
                Event::RunFinished { outcome, .. } => {
                    tx.prepare_cached("UPDATE sessions SET outcome = ?2 WHERE id = ?1")?
                        .execute(params![session.as_str(), outcome_key(*outcome)])?;
                }
                _ => {}
            }
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            records.push(Record {
                seq,
                session: session.clone(),
                ts: ts.clone(),
                actor: actor.to_string(),
                event: event.clone(),
                prev_hash,
                hash,
            });
        }
        if let Some(mark) = mark {
            mark.write(&tx)?;
        }
        let head = match (seal, records.last()) {
            (Some(seal), Some(last)) => {
                Some(super::seal::sign_head(&tx, seal, last.seq, &last.hash)?)
            }
            _ => None,
        };
        tx.commit()?;
        Ok((records, head))
    }

    /// Sign every commit from now on with `seal` (a store has one key for
    /// its life; a second is ignored).
    pub fn set_seal(&self, seal: super::seal::Seal) {
        // An installation's key signs its own file; a shared store has
        // many installations writing it (see adopt_seal).
        if self.pg.is_some() {
            return;
        }
        if self.seal.set(seal).is_ok() && !self.read_only {
            let _ = self
                .anchor
                .set(super::seal::AnchorWriter::start(&self.path));
        }
    }

    pub(crate) fn seal(&self) -> Option<&super::seal::Seal> {
        self.seal.get()
    }

    /// Model use across all sessions since the start of today (UTC), for
    /// the per-day budget.
    pub fn llm_spend_today(&self) -> Result<super::Spend, StoreError> {
        let today = now_rfc3339().get(..10).unwrap_or_default().to_string();
        let mut spend = super::Spend::default();
        for r in self.events_of_kind_since("llm_call", &format!("{today}T"))? {
            if let Event::LlmCall {
                prompt_tokens,
                completion_tokens,
                cost_usd,
                ..
            } = r.event
            {
                spend.add(prompt_tokens, completion_tokens, cost_usd);
            }
        }
        Ok(spend)
    }

    pub fn list_sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        if let Some(pg) = &self.pg {
            return self.failed_if(pg.list_sessions(limit));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT s.id, s.started_at, s.actor, s.title, s.outcome,
                    (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id)
             FROM sessions s ORDER BY s.started_at DESC, s.id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(SessionSummary {
                id: SessionId::from_stored(r.get::<_, String>(0)?),
                started_at: r.get(1)?,
                actor: r.get(2)?,
                title: r.get(3)?,
                outcome: r.get(4)?,
                events: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A session by its id or a unique prefix of it.
    pub fn find_session(&self, prefix: &str) -> Result<SessionId, StoreError> {
        let ids: Vec<String> = match &self.pg {
            Some(pg) => self.failed_if(pg.sessions_like(prefix))?,
            None => {
                let conn = self.conn();
                let mut stmt = conn.prepare(
                    "SELECT id FROM sessions WHERE id LIKE ?1 || '%' ESCAPE '\\' LIMIT 2",
                )?;
                let escaped = prefix
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                stmt.query_map(params![escaped], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            }
        };
        match ids.as_slice() {
            [] => Err(StoreError::NoSuchSession(prefix.to_string())),
            [one] => Ok(SessionId::from_stored(one.clone())),
            _ => Err(StoreError::Ambiguous {
                prefix: prefix.to_string(),
                count: ids.len(),
            }),
        }
    }

    /// Every event of one session, in order.
    pub fn events(&self, session: &SessionId) -> Result<Vec<Record>, StoreError> {
        if let Some(pg) = &self.pg {
            return self.failed_if(pg.events(session));
        }
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash
             FROM events WHERE session_id = ?1 ORDER BY seq",
            params![session.as_str()],
        )
    }

    /// Up to `limit` events of `kinds` in `session` before record `before`,
    /// oldest first, and whether there are older ones still: for views
    /// that page back through a long session.
    pub fn events_before(
        &self,
        session: &SessionId,
        before: i64,
        kinds: &[&str],
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        let mut page = match &self.pg {
            Some(pg) => self.failed_if(pg.events_before(session, before, kinds, limit + 1))?,
            None => self.query_records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
                 WHERE session_id = ?1 AND seq < ?2 AND kind IN (SELECT value FROM json_each(?3))
                 ORDER BY seq DESC LIMIT ?4",
                params![
                    session.as_str(),
                    before,
                    serde_json::to_string(kinds)?,
                    limit as i64 + 1
                ],
            )?,
        };
        let more = page.len() > limit;
        page.truncate(limit);
        page.reverse();
        Ok((page, more))
    }

    /// The newest event of one of `kinds` in `session`.
    pub fn last_of_kinds(
        &self,
        session: &SessionId,
        kinds: &[&str],
    ) -> Result<Option<Record>, StoreError> {
        if let Some(pg) = &self.pg {
            return self.failed_if(pg.last_of_kinds(session, kinds));
        }
        let kinds = serde_json::to_string(kinds)?;
        Ok(self
            .query_records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
                 WHERE session_id = ?1 AND kind IN (SELECT value FROM json_each(?2))
                 ORDER BY seq DESC LIMIT 1",
                params![session.as_str(), kinds],
            )?
            .pop())
    }

    /// Events of one kind, from every session, at or after `since` (an
    /// RFC 3339 time as stored), oldest first.
    pub fn events_of_kind_since(&self, kind: &str, since: &str) -> Result<Vec<Record>, StoreError> {
        if let Some(pg) = &self.pg {
            return self.failed_if(pg.records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash
                 FROM events WHERE kind = $1 AND ts >= $2 ORDER BY seq",
                vec![Box::new(kind.to_string()), Box::new(since.to_string())],
            ));
        }
        // A partial index serves a query only when the query names its
        // kind as a literal. Its entries come in (ts, seq) order, which is
        // seq order but for clocks set back: sorted here, not by SQLite,
        // which would rather scan every event than sort.
        let sql = match kind {
            "step_started" | "effect" | "llm_call" => format!(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash
                 FROM events WHERE kind = '{kind}' AND ts >= ?1 ORDER BY ts, seq"
            ),
            _ => {
                return self.query_records(
                    "SELECT seq, session_id, ts, actor, body, prev_hash, hash
                     FROM events WHERE kind = ?2 AND ts >= ?1 ORDER BY seq",
                    params![since, kind],
                );
            }
        };
        let mut records = self.query_records(&sql, params![since])?;
        records.sort_by_key(|r| r.seq);
        Ok(records)
    }

    pub(super) fn query_records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, sid, ts, actor, body, prev_hash, hash) = row?;
            out.push(Record {
                seq,
                session: SessionId::from_stored(sid),
                ts,
                actor,
                event: serde_json::from_str(&body)?,
                prev_hash,
                hash,
            });
        }
        Ok(out)
    }
}

/// Add a column, unless another process opening the same new log added
/// it between our look and now.
fn add_column(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    match conn.execute_batch(sql) {
        Err(rusqlite::Error::SqliteFailure(_, Some(m)))
            if m.starts_with("duplicate column name") =>
        {
            Ok(())
        }
        other => other,
    }
}

pub(super) fn outcome_key(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Denied => "denied",
        Outcome::AwaitingApproval => "awaiting_approval",
        Outcome::NeedsClarification => "needs_clarification",
        Outcome::InvalidPlan => "invalid_plan",
        Outcome::Cancelled => "cancelled",
        Outcome::Rejected => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ChainReport;

    fn note(text: &str) -> Event {
        Event::Note { text: text.into() }
    }

    #[test]
    fn a_replaced_file_stops_appends_and_what_was_written_is_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Store::open(&path).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "a").expect("session");
        store.append(&id, "a", &note("before")).expect("append");
        // Someone moves another log into place.
        let other = dir.path().join("other.db");
        drop(Store::open(&other).expect("other"));
        std::fs::rename(&other, &path).expect("replace");
        let err = store.append(&id, "a", &note("after")).expect_err("refused");
        let Some(StoreFault::Replaced { saved, .. }) = err.fault() else {
            panic!("{err}");
        };
        assert!(saved.contains("orphaned"), "{saved}");
        // Sticky: the next append fails at once, with the same fault.
        let again = store.append(&id, "a", &note("again")).expect_err("refused");
        assert_eq!(again.fault(), err.fault());
        assert_eq!(store.fault().as_ref(), err.fault());
        // The orphaned copy holds what was written, and verifies.
        let copy = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.to_string_lossy();
                name.contains("orphaned") && !name.ends_with("-stale")
            })
            .expect("a saved copy");
        let saved = Store::open(&copy).expect("open copy");
        assert_eq!(saved.events(&id).expect("events").len(), 1);
        assert!(matches!(
            saved.verify().expect("verify"),
            ChainReport::Whole { events: 1 }
        ));
        // The new file was not touched (once this store is closed: its
        // write-ahead log still goes by the old name until then).
        drop(store);
        let new = Store::open(&path).expect("open new");
        assert!(new.list_sessions(5).expect("list").is_empty());
    }

    #[test]
    fn a_deleted_file_is_written_back_and_appends_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Store::open(&path).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "a").expect("session");
        store.append(&id, "a", &note("kept")).expect("append");
        std::fs::remove_file(&path).expect("delete");
        let err = store.append(&id, "a", &note("lost")).expect_err("refused");
        assert!(
            matches!(err.fault(), Some(StoreFault::Deleted { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("written back to"), "{err}");
        drop(store);
        let back = Store::open(&path).expect("reopen");
        let events = back.events(&id).expect("events");
        assert_eq!(events.len(), 1);
        assert!(back.fault().is_none(), "the written-back file is sound");
    }

    #[test]
    fn a_column_another_opener_added_meanwhile_is_no_error() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch("CREATE TABLE t (a TEXT)")
            .expect("table");
        add_column(&conn, "ALTER TABLE t ADD COLUMN mac TEXT").expect("added");
        add_column(&conn, "ALTER TABLE t ADD COLUMN mac TEXT").expect("already there");
        assert!(add_column(&conn, "ALTER TABLE nope ADD COLUMN mac TEXT").is_err());
    }

    /// The kinds looked up across sessions are found through their own
    /// small indexes, and the others cost an append no index on kind.
    #[test]
    fn kind_lookups_use_their_partial_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "alice").expect("session");
        let started = Event::StepStarted {
            step: crate::plan::StepId::new("s1"),
            tool: "k8s.status".into(),
            args: serde_json::Map::new(),
        };
        let note = Event::Note { text: "n".into() };
        store
            .append_all(&id, "alice", &[note.clone(), started, note])
            .expect("append");
        let found = store
            .events_of_kind_since("step_started", "2000-01-01T")
            .expect("calls");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].event.kind(), "step_started");
        let conn = store.conn();
        let plan = |sql: &str| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain")
                .query_map([], |r| r.get::<_, String>(3))
                .expect("rows")
                .collect::<Result<Vec<_>, _>>()
                .expect("plan")
                .join("; ")
        };
        for (kind, index) in [
            ("step_started", "calls_by_time"),
            ("effect", "effects_by_time"),
            ("llm_call", "llm_calls_by_time"),
        ] {
            let p = plan(&format!(
                "SELECT seq FROM events WHERE kind = '{kind}' AND ts >= '2000' ORDER BY ts, seq"
            ));
            assert!(p.contains(index), "{kind}: {p}");
        }
        let p = plan(
            "SELECT session_id FROM events WHERE kind = 'awaiting_approval'
             AND seq > (SELECT COALESCE(MAX(seq), 0) FROM events) - 5000",
        );
        assert!(p.contains("waits"), "{p}");
        let kinds: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events_by_kind'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(kinds, 0, "the index on every kind is gone");
    }

    #[test]
    fn appends_chain_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "alice").expect("session");
        let a = store
            .append(
                &id,
                "alice",
                &Event::UserMessage {
                    text: "deploy checkout to staging".into(),
                },
            )
            .expect("append");
        let b = store
            .append(&id, "alice", &Event::Note { text: "n".into() })
            .expect("append");
        assert_eq!(a.prev_hash, GENESIS);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(b.seq, a.seq + 1);
        let back = store.events(&id).expect("events");
        assert_eq!(back, vec![a, b]);
        let list = store.list_sessions(10).expect("list");
        assert_eq!(list[0].title.as_deref(), Some("deploy checkout to staging"));
        assert_eq!(list[0].events, 2);
        let prefix = &id.as_str()[..10];
        assert_eq!(store.find_session(prefix).expect("find"), id);
        assert!(matches!(
            store.find_session("nope"),
            Err(StoreError::NoSuchSession(_))
        ));
        assert_eq!(
            store.verify().expect("verify"),
            ChainReport::Whole { events: 2 }
        );
    }

    #[test]
    fn several_events_append_as_one_linked_run_across_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Store::open(&path).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "alice").expect("session");
        // Enough commits for the checkpoint thread to run a few times.
        let mut last = GENESIS.to_string();
        for i in 0..(3 * super::super::checkpoint::EVERY) {
            let records = store
                .append_all(
                    &id,
                    "alice",
                    &[
                        Event::Note {
                            text: format!("result {i}"),
                        },
                        Event::Note {
                            text: format!("start {i}"),
                        },
                    ],
                )
                .expect("append");
            assert_eq!(records.len(), 2);
            assert_eq!(records[0].prev_hash, last);
            assert_eq!(records[1].prev_hash, records[0].hash);
            assert_eq!(records[1].seq, records[0].seq + 1);
            last = records[1].hash.clone();
        }
        assert!(
            store
                .append_all(&id, "alice", &[])
                .expect("empty")
                .is_empty()
        );
        drop(store);
        // Reopened (the WAL checkpointed on close), the chain is whole.
        let store = Store::open(&path).expect("reopen");
        let events = 6 * super::super::checkpoint::EVERY;
        assert_eq!(store.events(&id).expect("events").len() as u64, events);
        assert_eq!(
            store.verify().expect("verify"),
            ChainReport::Whole {
                events: events as i64
            }
        );
    }

    #[test]
    fn verify_names_a_changed_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).expect("open");
        let id = SessionId::generate();
        store.create_session(&id, "a").expect("session");
        for i in 0..3 {
            store
                .append(
                    &id,
                    "a",
                    &Event::Note {
                        text: format!("n{i}"),
                    },
                )
                .expect("append");
        }
        store
            .conn()
            .execute(
                "UPDATE events SET body = replace(body, 'n1', 'nX') WHERE seq = 2",
                [],
            )
            .expect("tamper");
        match store.verify().expect("verify") {
            ChainReport::Broken { seq, problem } => {
                assert_eq!(seq, 2);
                assert!(problem.contains("does not match its hash"), "{problem}");
            }
            other => panic!("tampering not detected: {other:?}"),
        }
    }
}
