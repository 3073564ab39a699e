//! Versioned migrations of the shared store: each runs once, in order,
//! under a lock every opsbot connecting at the same time waits on.

use postgres::Client;

/// Taken while migrating (any constant of our own).
const MIGRATE_LOCK: i64 = 0x6f70_7362_6f74_0001;

/// `(version, SQL)`, oldest first. Never edit one that shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        title TEXT,
        outcome TEXT
    );
    CREATE INDEX sessions_by_start ON sessions (started_at DESC, id DESC);
    CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        -- Every string of the event (see search.rs), and its words.
        search_text TEXT NOT NULL DEFAULT '',
        search tsvector GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED
    );
    CREATE INDEX events_by_session ON events (session_id, seq);
    CREATE INDEX events_by_kind ON events (kind, ts);
    CREATE INDEX events_search ON events USING GIN (search);
    -- The chain's newest link: every append locks this row, so appends
    -- from every process and host line up behind one another.
    CREATE TABLE chain_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO chain_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE pins (
        tool TEXT PRIMARY KEY,
        def_hash TEXT NOT NULL,
        definition TEXT NOT NULL,
        pinned_at TEXT NOT NULL,
        pinned_by TEXT NOT NULL,
        mac TEXT
    );
    CREATE TABLE pin_changes (
        tool TEXT PRIMARY KEY,
        def_hash TEXT NOT NULL,
        definition TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        rejected_by TEXT
    );
    CREATE TABLE pruned (
        upto_seq BIGINT PRIMARY KEY,
        last_hash TEXT NOT NULL,
        sessions BIGINT NOT NULL,
        events BIGINT NOT NULL,
        at TEXT NOT NULL,
        mac TEXT
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    -- Who drives a session; the driver holds an advisory lock on lock_key
    -- for as long as its connection lives.
    CREATE TABLE leases (
        session_id TEXT PRIMARY KEY,
        lock_key BIGINT NOT NULL,
        holder TEXT NOT NULL
    );
    CREATE INDEX leases_by_key ON leases (lock_key);",
)];

pub(super) enum MigrateError {
    /// The store was migrated by a newer opsbot.
    TooNew(i32),
    Pg(postgres::Error),
}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Pg(e)
    }
}

/// The newest version this build knows.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Bring the schema to `latest()`.
pub(super) fn migrate(client: &mut Client) -> Result<(), MigrateError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS opsbot_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let have: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM opsbot_migrations",
            &[],
        )?
        .get(0);
    if have > latest() {
        return Err(MigrateError::TooNew(have));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO opsbot_migrations (version) VALUES ($1)",
            &[version],
        )?;
        tracing::info!("store schema migrated to version {version}");
    }
    tx.commit()?;
    Ok(())
}
