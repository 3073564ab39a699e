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

mod open;
mod reads;

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
