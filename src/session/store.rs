//! The event store: one SQLite file (WAL) holding every session's events in
//! one hash chain.
//!
//! Each record's hash covers the previous record's hash and the record's
//! own stored bytes, so any later edit, deletion or reordering shows.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::{Event, Outcome};

const SCHEMA_VERSION: i64 = 2;
/// The hash the first record chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Sortable by time and readable: `20261121-193012-4f2a`.
    pub fn generate() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let nanos = now.unix_timestamp_nanos();
        // Distinct within a process (a counter), and very likely across
        // processes (pid and time); `Session::start` retries a collision.
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let salt = std::process::id() as i128 ^ (nanos >> 7);
        let tag = (crate::sandbox::support::fnv(&format!("{nanos}{salt}{n}")) & 0xffff) as u16;
        Self(format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}-{tag:04x}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    }

    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
    Sql(#[from] rusqlite::Error),
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
}

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
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
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
            CREATE INDEX IF NOT EXISTS events_by_kind ON events(kind, ts);
            CREATE TABLE IF NOT EXISTS pins (
                tool TEXT PRIMARY KEY,
                def_hash TEXT NOT NULL,
                definition TEXT NOT NULL,
                pinned_at TEXT NOT NULL,
                pinned_by TEXT NOT NULL
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
            PRAGMA user_version = 2;",
        )
        .map_err(open_err)?;
        let checkpointer = super::checkpoint::Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
                .map_err(open_err)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            commits: std::sync::atomic::AtomicU64::new(0),
            checkpointer,
            redactor: std::sync::RwLock::new(Arc::new(super::Redactor::default())),
        })
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
        self.conn().execute(
            "INSERT INTO sessions (id, started_at, actor) VALUES (?1, ?2, ?3)",
            params![id.as_str(), now_rfc3339(), actor],
        )?;
        Ok(())
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
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let redactor = self.redactor();
        let redacted = events
            .iter()
            .map(|e| redactor.event(e))
            .collect::<Result<Vec<_>, _>>()?;
        let ts = now_rfc3339();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Statements are prepared once per connection: every event passes here.
        let (mut seq, mut prev): (i64, String) = tx
            .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_string()));
        let mut records = Vec::with_capacity(events.len());
        for (event, body) in redacted {
            seq += 1;
            let kind = event.kind();
            let hash = link_hash(&prev, seq, session.as_str(), &ts, actor, kind, &body);
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
            match &event {
                Event::PlanProposed { plan } => {
                    tx.execute(
                        "UPDATE sessions SET title = ?2 WHERE id = ?1",
                        params![session.as_str(), plan.title],
                    )?;
                }
                Event::UserMessage { text } => {
                    tx.execute(
                        "UPDATE sessions SET title = COALESCE(title, ?2) WHERE id = ?1",
                        params![session.as_str(), text],
                    )?;
                }
                Event::RunFinished { outcome, .. } => {
                    tx.execute(
                        "UPDATE sessions SET outcome = ?2 WHERE id = ?1",
                        params![session.as_str(), outcome_key(*outcome)],
                    )?;
                }
                _ => {}
            }
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            records.push(Record {
                seq,
                session: session.clone(),
                ts: ts.clone(),
                actor: actor.to_string(),
                event,
                prev_hash,
                hash,
            });
        }
        tx.commit()?;
        drop(conn);
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
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id FROM sessions WHERE id LIKE ?1 || '%' ESCAPE '\\' LIMIT 2")?;
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let ids: Vec<String> = stmt
            .query_map(params![escaped], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
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
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash
             FROM events WHERE session_id = ?1 ORDER BY seq",
            params![session.as_str()],
        )
    }

    /// Events of one kind, from every session, at or after `since` (an
    /// RFC 3339 time as stored), oldest first.
    pub fn events_of_kind_since(&self, kind: &str, since: &str) -> Result<Vec<Record>, StoreError> {
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash
             FROM events WHERE kind = ?1 AND ts >= ?2 ORDER BY seq",
            params![kind, since],
        )
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

/// What walking the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ChainReport {
    Whole { events: i64 },
    Broken { seq: i64, problem: String },
}

/// What `verify` found, with the counts a person wants to see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub report: ChainReport,
    pub sessions: i64,
    /// Records removed by retention before the first one checked.
    pub pruned_events: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
}

impl Store {
    /// Walk every record in order and check each link.
    pub fn verify(&self) -> Result<ChainReport, StoreError> {
        Ok(self.verify_all()?.report)
    }

    /// As `verify`, with counts. The first record that was changed,
    /// deleted or moved is named: a change breaks its own hash, a deletion
    /// leaves a gap in the numbers, a move breaks the link to the record
    /// before it.
    pub fn verify_all(&self) -> Result<Verification, StoreError> {
        let start = self.chain_start()?;
        let conn = self.conn();
        let sessions: i64 = conn.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?;
        let mut stmt = conn.prepare(
            "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let (mut last_seq, mut prev, pruned_events) = match start {
            Some((upto, hash, events)) => (upto, hash, events),
            None => (0, GENESIS.to_string(), 0),
        };
        let first_seq = last_seq + 1;
        let mut count = 0i64;
        let broken = |seq, problem: String| ChainReport::Broken { seq, problem };
        let report = loop {
            let Some(r) = rows.next()? else {
                break ChainReport::Whole { events: count };
            };
            let seq: i64 = r.get(0)?;
            let (session, ts, actor, kind, body): (String, String, String, String, String) =
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
            let (prev_hash, hash): (String, String) = (r.get(6)?, r.get(7)?);
            if seq <= last_seq {
                break broken(
                    seq,
                    format!("is numbered {seq} but records up to {last_seq} were pruned"),
                );
            }
            if seq != last_seq + 1 {
                let gap = if seq - 1 == last_seq + 1 {
                    format!("record {} is missing (deleted)", last_seq + 1)
                } else {
                    format!(
                        "records {} to {} are missing (deleted)",
                        last_seq + 1,
                        seq - 1
                    )
                };
                break broken(seq, gap);
            }
            if prev_hash != prev {
                break broken(
                    seq,
                    "does not link to the record before it (records were moved, swapped or replaced)"
                        .into(),
                );
            }
            if link_hash(&prev, seq, &session, &ts, &actor, &kind, &body) != hash {
                break broken(
                    seq,
                    "its content does not match its hash (changed after it was written)".into(),
                );
            }
            prev = hash;
            last_seq = seq;
            count += 1;
        };
        Ok(Verification {
            report,
            sessions,
            pruned_events,
            first_seq,
            last_seq,
            last_hash: prev,
        })
    }
}

fn outcome_key(o: Outcome) -> &'static str {
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
