//! Opening the log: for writing (schema, pragmas, the checkpoint thread),
//! for reading, or shared in PostgreSQL; and what keeps appends going to
//! the file that was opened (its identity, a rescue of one deleted or
//! replaced, the fault that stops appends).

use super::*;

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
        let checkpointer = crate::session::checkpoint::Checkpointer::start(path);
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
        checkpointer: Option<crate::session::checkpoint::Checkpointer>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            commits: std::sync::atomic::AtomicU64::new(0),
            checkpointer,
            redactor: std::sync::RwLock::new(Arc::new(crate::session::Redactor::default())),
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
    pub fn open_shared(
        opts: crate::session::pg::PgOptions,
        local: &Path,
    ) -> Result<Self, StoreError> {
        let pg = crate::session::pg::Pg::connect(opts)?;
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
    pub(crate) fn pg(&self) -> Option<&crate::session::pg::Pg> {
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
    pub(in crate::session) fn fail(&self, fault: StoreFault) {
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
    pub(super) fn check_identity(&self, conn: &Connection) -> Result<(), StoreFault> {
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
                    self.rescue(
                        conn,
                        &crate::session::fault::rescue_name(&self.path, "recovered"),
                    )
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
                let to = crate::session::fault::rescue_name(&self.path, "orphaned");
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
        conn.execute_batch(crate::session::rollup::SCHEMA)
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
}
