//! What an exporter reads from the log: records after a cursor, a run's
//! records, and the cursors themselves (kept in the log's `meta` table, so
//! an export resumes where it stopped whichever process made it).

use rusqlite::{OptionalExtension, params};

use super::store::{Record, SessionId, Store, StoreError};

impl Store {
    /// Up to `limit` records after `after`, oldest first.
    pub fn records_after(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash
                 FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                vec![
                    Box::new(after),
                    Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ));
        }
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash
             FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// Up to `limit` `run_finished` records after `after`, oldest first
    /// (read from the cursor on, not through the index on kind, which
    /// would go over every run of the log).
    pub fn run_ends_after(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash
                 FROM events WHERE seq > $1 AND kind = 'run_finished' ORDER BY seq LIMIT $2",
                vec![
                    Box::new(after),
                    Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ));
        }
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash
             FROM events WHERE seq > ?1 AND +kind = 'run_finished' ORDER BY seq LIMIT ?2",
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// How many `kind` records there are after `after` (read from the
    /// cursor on: `after` is a recent export's).
    pub fn count_after(&self, kind: &str, after: i64) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            let n = self.failed_if(pg.one_i64(
                "SELECT COUNT(*) FROM events WHERE seq > $1 AND kind = $2",
                vec![Box::new(after), Box::new(kind.to_string())],
            ))?;
            return Ok(u64::try_from(n).unwrap_or(0));
        }
        let conn = self.conn();
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM events WHERE seq > ?1 AND +kind = ?2")?
            .query_row(params![after, kind], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The records of the run in `session` that holds record `seq`: from
    /// the first after the session's previous `run_finished` up to `seq`.
    pub fn run_upto(&self, session: &SessionId, seq: i64) -> Result<Vec<Record>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
                 WHERE session_id = $1 AND seq <= $2 AND seq > (
                    SELECT COALESCE(MAX(seq), 0) FROM events
                    WHERE session_id = $1 AND kind = 'run_finished' AND seq < $2)
                 ORDER BY seq",
                vec![Box::new(session.as_str().to_string()), Box::new(seq)],
            ));
        }
        self.query_records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
             WHERE session_id = ?1 AND seq <= ?2 AND seq > (
                SELECT COALESCE(MAX(seq), 0) FROM events
                WHERE session_id = ?1 AND kind = 'run_finished' AND seq < ?2)
             ORDER BY seq",
            params![session.as_str(), seq],
        )
    }

    /// The first record of the run in `session` that holds record `seq`.
    pub fn run_first_seq(&self, session: &SessionId, seq: i64) -> Result<i64, StoreError> {
        if let Some(pg) = self.pg() {
            let first = self.failed_if(pg.one_i64(
                "SELECT MIN(seq) FROM events WHERE session_id = $1 AND seq <= $2 AND seq > (
                    SELECT COALESCE(MAX(seq), 0) FROM events
                    WHERE session_id = $1 AND kind = 'run_finished' AND seq < $2)",
                vec![Box::new(session.as_str().to_string()), Box::new(seq)],
            ))?;
            return Ok(if first == 0 { seq } else { first });
        }
        let conn = self.conn();
        let first: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(seq) FROM events WHERE session_id = ?1 AND seq <= ?2 AND seq > (
                    SELECT COALESCE(MAX(seq), 0) FROM events
                    WHERE session_id = ?1 AND kind = 'run_finished' AND seq < ?2)",
            )?
            .query_row(params![session.as_str(), seq], |r| r.get(0))?;
        Ok(first.unwrap_or(seq))
    }

    /// The newest record's seq (0 for an empty log).
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.one_i64("SELECT MAX(seq) FROM events", vec![]));
        }
        let conn = self.conn();
        let seq: Option<i64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        Ok(seq.unwrap_or(0))
    }

    /// A cursor kept in the log, if set.
    pub fn cursor(&self, key: &str) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = self.pg() {
            let rows = self.failed_if(pg.rows(
                "SELECT value FROM meta WHERE key = $1",
                vec![Box::new(key.to_string())],
            ))?;
            return rows.first().map(|r| super::pg::col(r, 0)).transpose();
        }
        let conn = self.conn();
        Ok(conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?)
    }

    /// Move a cursor from `from` (None: not set) to `to`; false if another
    /// process moved it first (then nothing changes).
    pub fn move_cursor(&self, key: &str, from: Option<i64>, to: i64) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.move_cursor(key, from, to));
        }
        let conn = self.conn();
        let changed = match from {
            Some(from) => conn.execute(
                "UPDATE meta SET value = ?3 WHERE key = ?1 AND value = ?2",
                params![key, from, to],
            )?,
            None => conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![key, to],
            )?,
        };
        Ok(changed == 1)
    }

    /// Take (or keep) the exporter's turn until `until_ms` (Unix ms): true
    /// if this process (`pid`) holds it, because no one did or the holder's
    /// turn ran out. One exporter at a time keeps a collector from getting
    /// every batch twice when the app and `serve` share a data directory.
    pub fn claim_turn(
        &self,
        name: &str,
        pid: u32,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.claim_turn(name, pid, now_ms, until_ms));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (pid_key, until_key) = (format!("{name}_pid"), format!("{name}_until"));
        let get = |key: &str| -> Result<Option<i64>, rusqlite::Error> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
        };
        let holder = get(&pid_key)?;
        let expires = get(&until_key)?.unwrap_or(0);
        let mine = holder == Some(i64::from(pid));
        if !mine && holder.is_some() && expires > now_ms {
            return Ok(false);
        }
        for (key, value) in [(&pid_key, i64::from(pid)), (&until_key, until_ms)] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }
}
