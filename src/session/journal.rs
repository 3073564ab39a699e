//! Events made durable with one write, ahead of their SQLite commit.
//!
//! A call must be on record before it is made, and a SQLite commit (WAL
//! frames for the events, their indexes and the signed head, with the
//! locks around them) was most of what a governed call added. A line
//! appended to this process's journal survives a killed process as surely
//! as a WAL commit with `synchronous=NORMAL` does (neither survives a lost
//! machine), so a session journals what it is about to act on, acts, and
//! commits behind it, many calls' events per commit (see deferred.rs).
//!
//! Each commit marks, in the same transaction, the newest journal line of
//! its session it holds. The journal is locked by its process for as long
//! as it lives; the next opsbot to start on the data directory replays a
//! journal nobody holds (the lines past their session's mark, each with the
//! time it was journaled at) and removes it. A journal names the log it was
//! written for, so it is never replayed into another one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::store::{Entry, Prepared, SessionId, Store, StoreError};

/// A journal is emptied once everything in it is committed and it has
/// grown past this.
const TRUNCATE_PAST: u64 = 4 << 20;

/// The format's version, in every journal's first line.
const FORMAT: u32 = 1;

/// Where a database's journals live.
fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// The `meta` key holding the newest line of `session` committed from the
/// journal `name`.
fn mark_key(name: &str, session: &str) -> String {
    format!("journal:{name}:{session}")
}

#[derive(Serialize, Deserialize)]
struct Header {
    opsbot_journal: u32,
    store: i64,
    pid: u32,
}

impl Header {
    /// Whether a journal with this header was written for the log `store`,
    /// in the format this build reads.
    fn is_for(&self, store: i64) -> bool {
        self.opsbot_journal == FORMAT && self.store == store
    }
}

#[derive(Serialize)]
struct LineOut<'a> {
    n: u64,
    session: &'a str,
    actor: &'a str,
    /// Each event's time and body, as they will be stored.
    events: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct LineIn {
    n: u64,
    session: String,
    actor: String,
    events: Vec<(String, String)>,
}

/// The journal lines a batch of events was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lines {
    upto: u64,
    count: usize,
}

impl Lines {
    /// Two batches of one session, the later second.
    pub(super) fn join(a: Option<Lines>, b: Option<Lines>) -> Option<Lines> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Lines {
                upto: a.upto.max(b.upto),
                count: a.count + b.count,
            }),
            (a, b) => a.or(b),
        }
    }
}

/// Written in the commit of journaled events: the newest line of the
/// session it holds.
pub(super) struct Mark {
    key: String,
    upto: u64,
}

impl Mark {
    pub(super) fn write(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![self.key, self.upto as i64])
            .map(drop)
    }
}

/// This process's journal.
pub(crate) struct Journal {
    path: PathBuf,
    name: String,
    /// The file (locked while this process lives) and the next line's number.
    file: Mutex<(File, u64)>,
    /// Lines written and not committed yet.
    open: AtomicUsize,
    /// A write failed: events are committed directly from then on.
    broken: AtomicBool,
    /// The log it is written for (in its first line again when emptied).
    store_id: i64,
}

impl Journal {
    fn create(db: &Path, store_id: i64) -> std::io::Result<Self> {
        let dir = dir_of(db);
        std::fs::create_dir_all(&dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("{}-{nanos:x}", std::process::id());
        let path = dir.join(format!("{name}.jsonl"));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.try_lock().map_err(std::io::Error::other)?;
        write_header(&mut file, store_id)?;
        Ok(Self {
            path,
            name,
            file: Mutex::new((file, 1)),
            open: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            store_id,
        })
    }

    /// One line, in one write.
    fn append(&self, session: &str, actor: &str, entries: &[Entry]) -> std::io::Result<Lines> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, next) = &mut *guard;
        let line = LineOut {
            n: *next,
            session,
            actor,
            events: entries
                .iter()
                .map(|e| (e.ts.as_str(), e.body.as_str()))
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        let lines = Lines {
            upto: *next,
            count: 1,
        };
        *next += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(lines)
    }

    /// `lines` are committed: once nothing is left open in a journal grown
    /// large, it starts again empty.
    fn done(&self, lines: Lines) {
        if self.open.fetch_sub(lines.count, Ordering::AcqRel) != lines.count {
            return;
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, _) = &mut *guard;
        let big = file.metadata().map(|m| m.len() > TRUNCATE_PAST);
        if self.open.load(Ordering::Acquire) == 0 && matches!(big, Ok(true)) {
            let emptied = file
                .set_len(0)
                .and_then(|()| write_header(file, self.store_id));
            if let Err(e) = emptied {
                tracing::warn!("cannot empty the journal {}: {e}", self.path.display());
            }
        }
    }
}

/// A journal as read: the log it names, and its lines up to the first
/// that cannot be read (a write cut short), if any.
struct Read {
    header: Option<Header>,
    lines: Vec<LineIn>,
    cut: Option<String>,
}

fn read_journal(file: &File) -> Read {
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str(&l).ok());
    let mut read = Read {
        header,
        lines: Vec::new(),
        cut: None,
    };
    for (i, line) in lines.enumerate() {
        let parsed = line
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<LineIn>(&l).map_err(|e| e.to_string()));
        match parsed {
            Ok(line) => read.lines.push(line),
            Err(e) => {
                read.cut = Some(format!("line {}: {e}", i + 2));
                break;
            }
        }
    }
    read
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_header(file: &mut File, store: i64) -> std::io::Result<()> {
    let header = Header {
        opsbot_journal: FORMAT,
        store,
        pid: std::process::id(),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    file.write_all(&bytes)
}

impl Store {
    /// This log's name for its journals.
    fn store_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        id.ok_or_else(|| StoreError::Journal {
            path: dir_of(self.path()),
            detail: "the log has no store_id".into(),
        })
    }

    /// Whether events can be made durable in a journal here.
    pub(super) fn keeps_journal(&self) -> bool {
        self.journal().is_some()
    }

    fn journal(&self) -> Option<&Journal> {
        if self.is_shared() || self.is_read_only() {
            return None;
        }
        let journal = self.journal.get_or_init(|| {
            let made = self
                .store_id()
                .map_err(|e| e.to_string())
                .and_then(|id| Journal::create(self.path(), id).map_err(|e| e.to_string()));
            match made {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::warn!("no journal beside {} ({e}): every event is committed before it is acted on", self.path().display());
                    None
                }
            }
        });
        journal
            .as_ref()
            .filter(|j| !j.broken.load(Ordering::Acquire))
    }

    /// Make `prepared` durable in this process's journal. False when there
    /// is none (a shared or read-only store, or a journal that failed):
    /// then only a commit makes them durable.
    pub(super) fn journal_events(
        &self,
        session: &SessionId,
        actor: &str,
        prepared: &mut Prepared,
    ) -> Result<bool, StoreError> {
        if prepared.is_empty() {
            return Ok(true);
        }
        let Some(journal) = self.journal() else {
            return Ok(false);
        };
        self.still_writable()?;
        match journal.append(session.as_str(), actor, &prepared.entries) {
            Ok(lines) => {
                prepared.journaled = Lines::join(prepared.journaled, Some(lines));
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot write the journal {} ({e}): committing every event before it is acted on from now on",
                    journal.path.display()
                );
                journal.broken.store(true, Ordering::Release);
                Ok(false)
            }
        }
    }

    /// What the commit of `session`'s journaled `lines` marks.
    pub(super) fn journal_mark(&self, session: &SessionId, lines: Lines) -> Option<Mark> {
        let journal = self.journal.get()?.as_ref()?;
        Some(Mark {
            key: mark_key(&journal.name, session.as_str()),
            upto: lines.upto,
        })
    }

    pub(super) fn journal_done(&self, lines: Lines) {
        if let Some(journal) = self.journal.get().and_then(Option::as_ref) {
            journal.done(lines);
        }
    }

    /// Replay the journals of processes that ended before committing all
    /// they journaled, and remove them. Returns how many events were
    /// replayed. A journal written for another log is moved aside.
    pub fn recover_journals(&self) -> Result<usize, StoreError> {
        if self.is_shared() || self.is_read_only() {
            return Ok(0);
        }
        let store_id = self.store_id()?;
        let mut replayed = 0;
        for (path, file) in self.orphans() {
            replayed += self.replay(&path, &file, store_id)?;
        }
        Ok(replayed)
    }

    /// The journals beside this log that no live process holds, each
    /// locked by the handle returned.
    fn orphans(&self) -> Vec<(PathBuf, File)> {
        let Ok(listing) = std::fs::read_dir(dir_of(self.path())) else {
            return Vec::new();
        };
        let own = self
            .journal
            .get()
            .and_then(Option::as_ref)
            .map(|j| j.path.clone());
        listing
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl") && Some(p) != own.as_ref())
            .filter_map(|path| {
                let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
                // Held by a live process (this one included): its own to commit.
                file.try_lock().ok()?;
                Some((path, file))
            })
            .collect()
    }

    /// How many events journals left by ended processes hold that the log
    /// does not have yet: the next opsbot to start here adds them.
    pub fn journaled_elsewhere(&self) -> Result<usize, StoreError> {
        if self.is_shared() {
            return Ok(0);
        }
        let store_id = self.store_id()?;
        let mut waiting = 0;
        for (path, file) in self.orphans() {
            let read = read_journal(&file);
            if !read.header.is_some_and(|h| h.is_for(store_id)) {
                continue;
            }
            let name = stem(&path);
            for line in read.lines {
                if !self.marked(&name, &line)? {
                    waiting += line.events.len();
                }
            }
        }
        Ok(waiting)
    }

    /// Drop the marks of the journal `name`, gone now.
    fn forget_marks(&self, name: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "DELETE FROM meta WHERE substr(key, 1, length(?1)) = ?1",
                params![format!("journal:{name}:")],
            )
            .map(drop)
    }

    /// Whether `line` of the journal `name` was committed.
    fn marked(&self, name: &str, line: &LineIn) -> Result<bool, StoreError> {
        let mark: Option<i64> = self
            .conn()
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [mark_key(name, &line.session)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(mark.is_some_and(|m| m >= line.n as i64))
    }

    fn replay(&self, path: &Path, file: &File, store_id: i64) -> Result<usize, StoreError> {
        let name = stem(path);
        let read = read_journal(file);
        match read.header {
            Some(h) if h.is_for(store_id) => {}
            None => {
                // Made and never written: nothing to replay.
                let _ = std::fs::remove_file(path);
                return Ok(0);
            }
            Some(_) => {
                let aside = path.with_extension("other-log");
                tracing::warn!(
                    "the journal {} was written for another audit log: moved to {}, not replayed",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(path, &aside);
                return Ok(0);
            }
        }
        if let Some(cut) = read.cut {
            // A line cut short was never acknowledged: what follows it
            // cannot have been either.
            tracing::warn!(
                "the journal {} ends in an unreadable line ({cut}); replaying what came before it",
                path.display()
            );
        }
        let mut replayed = 0;
        for line in read.lines {
            replayed += self.replay_line(&name, line)?;
        }
        std::fs::remove_file(path).map_err(|e| StoreError::Journal {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        self.forget_marks(&name)?;
        if replayed > 0 {
            tracing::info!(
                "replayed {replayed} events from {}, journaled by a process that ended before committing them",
                path.display()
            );
        }
        Ok(replayed)
    }

    /// One line, unless its session's mark says it was committed.
    fn replay_line(&self, name: &str, line: LineIn) -> Result<usize, StoreError> {
        if self.marked(name, &line)? {
            return Ok(0);
        }
        let key = mark_key(name, &line.session);
        let entries = line
            .events
            .into_iter()
            .map(|(ts, body)| {
                let event = serde_json::from_str(&body).map_err(|e| StoreError::Journal {
                    path: PathBuf::from(name),
                    detail: format!("line {}: {e}", line.n),
                })?;
                Ok(Entry { event, body, ts })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let n = entries.len();
        let session = SessionId::from_stored(&line.session);
        self.append_marked(
            &session,
            &line.actor,
            &entries,
            Some(Mark { key, upto: line.n }),
        )?;
        Ok(n)
    }
}

impl Drop for Store {
    /// A journal whose every line is committed is removed with its marks;
    /// one that is not stays for the next start to replay.
    fn drop(&mut self) {
        let Some(Some(journal)) = self.journal.take() else {
            return;
        };
        if journal.open.load(Ordering::Acquire) != 0 || journal.broken.load(Ordering::Acquire) {
            return;
        }
        if std::fs::remove_file(&journal.path).is_ok()
            && let Err(e) = self.forget_marks(&journal.name)
        {
            tracing::debug!("journal marks left behind: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{note, stored_notes as notes};
    use super::super::{ChainReport, Session, Store};

    /// Journals `deferred` (after committing `committed`), then goes the way
    /// of a killed process: nothing more is committed, the journal's lock
    /// is let go, its file stays.
    fn die_after(path: &std::path::Path, committed: &[&str], deferred: &[&str]) -> Arc<Session> {
        let store = Arc::new(Store::open(path).expect("open"));
        let session =
            Session::start(Arc::clone(&store), "alice", "offline", "test").expect("start");
        for text in committed {
            session.defer(&[note(text)]).expect("defer");
        }
        session.record_all(&[]).expect("commit");
        for text in deferred {
            session.defer(&[note(text)]).expect("defer");
        }
        assert!(store.keeps_journal());
        drop(session.take_deferred());
        session
    }

    fn journal_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(super::dir_of(path))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn what_a_killed_process_journaled_is_replayed_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let session = die_after(&path, &["a", "b"], &["c", "d"]);
        let id = session.id.clone();
        drop(session);
        assert_eq!(journal_files(&path).len(), 1, "left for the next start");

        let store = Store::open(&path).expect("reopen");
        let before = Session::attach(Arc::new(Store::open(&path).expect("open")), &id, "alice")
            .expect("attach");
        assert_eq!(notes(&store, &before), ["a", "b"], "c and d only journaled");
        assert_eq!(store.recover_journals().expect("recover"), 2);
        assert_eq!(notes(&store, &before), ["a", "b", "c", "d"]);
        assert!(journal_files(&path).is_empty(), "removed once replayed");
        assert_eq!(store.recover_journals().expect("again"), 0);
        assert!(matches!(
            store.verify().expect("verify"),
            ChainReport::Whole { .. }
        ));
    }

    #[test]
    fn resuming_a_dead_processs_session_takes_in_its_journal_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let session = die_after(&path, &["a"], &["b"]);
        let id = session.id.clone();
        drop(session);

        let store = Arc::new(Store::open(&path).expect("reopen"));
        let resumed = Session::resume(Arc::clone(&store), &id, "alice", "test").expect("resume");
        assert_eq!(notes(&store, &resumed), ["a", "b"]);
        assert_eq!(
            resumed.with_state(|s| s.events),
            store.events(&id).expect("events").len(),
            "its state folds the replayed events too"
        );
    }

    #[test]
    fn a_line_cut_short_ends_the_replay_and_another_logs_journal_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let session = die_after(&path, &[], &["kept"]);
        drop(session);
        let file = journal_files(&path).pop().expect("a journal");
        let mut text = std::fs::read_to_string(&file).expect("read");
        text.push_str("{\"n\":7,\"session\":");
        // A copy of it beside another log is not that log's to replay.
        let other = dir.path().join("other.db");
        drop(Store::open(&other).expect("other"));
        std::fs::create_dir_all(super::dir_of(&other)).expect("dir");
        let copy = super::dir_of(&other).join("1-1.jsonl");
        std::fs::write(&copy, &text).expect("copy");
        std::fs::write(&file, text).expect("cut");

        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.recover_journals().expect("recover"), 1);
        let other = Store::open(&other).expect("other");
        assert_eq!(other.recover_journals().expect("recover"), 0);
        assert!(!copy.exists() && copy.with_extension("other-log").exists());
    }

    #[test]
    fn a_journal_whose_lines_are_all_committed_goes_with_its_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Arc::new(Store::open(&path).expect("open"));
        let session =
            Session::start(Arc::clone(&store), "alice", "offline", "test").expect("start");
        session.defer(&[note("x")]).expect("defer");
        assert_eq!(journal_files(&path).len(), 1);
        let id = session.id.clone();
        drop(session);
        let attached = Session::attach(Arc::clone(&store), &id, "alice").expect("attach");
        assert_eq!(
            notes(&store, &attached),
            ["x"],
            "committed as the session ended"
        );
        drop(attached);
        drop(store);
        assert!(journal_files(&path).is_empty());
        let marks: i64 = rusqlite::Connection::open(&path)
            .expect("open")
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key LIKE 'journal:%'",
                [],
                |r| r.get(0),
            )
            .expect("marks");
        assert_eq!(marks, 0);
    }
}
