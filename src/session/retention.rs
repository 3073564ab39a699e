//! Retention: whole sessions pruned from the start of the log, by age or
//! by size, without breaking the chain. What is cut is one range of records
//! from the first to some `upto_seq`; the hash that record had is kept, and
//! verification resumes from it.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::store::{Store, StoreError, now_rfc3339};

/// Rows cost more than their bodies: hashes, indexes, the search index.
const ROW_OVERHEAD: i64 = 400;

#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Prune sessions that started before this many days ago (0: never).
    pub max_age_days: u32,
    /// Prune the oldest sessions while the log is larger (0: no cap).
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    pub sessions: i64,
    pub events: i64,
    /// The last record removed; 0 when nothing was.
    pub upto_seq: i64,
}

/// A session's place in the log: id, start, first and last record, bytes.
pub(crate) type Extent = (String, String, i64, i64, i64);

/// How many of `sessions` (in the order their records start) go: the
/// oldest, while too old or while the log is too big, never the newest
/// (it may be the one being written), and only as far as they form one
/// range (two apps at once interleave their sessions).
pub(crate) fn prunable(sessions: &[Extent], retention: Retention, cutoff: &str) -> usize {
    let mut size: i64 = sessions.iter().map(|s| s.4).sum();
    let mut take = 0;
    while take + 1 < sessions.len() {
        let (_, started, _, _, bytes) = &sessions[take];
        let too_old = retention.max_age_days > 0 && started.as_str() < cutoff;
        let too_big = retention.max_bytes > 0 && size > retention.max_bytes as i64;
        if !(too_old || too_big) {
            break;
        }
        size -= bytes;
        take += 1;
    }
    while let Some(keep_from) = sessions[take..].iter().map(|s| s.2).min() {
        match sessions[..take].iter().rposition(|s| s.3 >= keep_from) {
            Some(i) => take = i,
            None => break,
        }
    }
    take
}

impl Store {
    /// Prune what `retention` says may go. Only whole sessions go, oldest
    /// first, and only while they form one range at the start of the log.
    pub fn prune(&self, retention: Retention) -> Result<PruneReport, StoreError> {
        let nothing = PruneReport {
            sessions: 0,
            events: 0,
            upto_seq: 0,
        };
        if retention.max_age_days == 0 && retention.max_bytes == 0 {
            return Ok(nothing);
        }
        let cutoff = (time::OffsetDateTime::now_utc()
            - time::Duration::days(i64::from(retention.max_age_days)))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.prune(retention, cutoff, now_rfc3339()));
        }
        let mut conn = self.conn();
        // This runs at every start: look at the whole log only when the
        // oldest session is old enough or the file is big enough.
        let (oldest, file_bytes): (Option<String>, i64) = conn.query_row(
            "SELECT (SELECT MIN(started_at) FROM sessions),
                    (SELECT page_count FROM pragma_page_count()) * (SELECT page_size FROM pragma_page_size())",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let maybe_old =
            retention.max_age_days > 0 && oldest.is_some_and(|o| o.as_str() < cutoff.as_str());
        let maybe_big = retention.max_bytes > 0 && file_bytes > retention.max_bytes as i64;
        if !(maybe_old || maybe_big) {
            return Ok(nothing);
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Sessions in the order their records start, with their extent.
        let sessions: Vec<Extent> = tx
            .prepare(
                "SELECT s.id, s.started_at, MIN(e.seq), MAX(e.seq), SUM(length(e.body)) + COUNT(*) * ?1
                 FROM sessions s JOIN events e ON e.session_id = s.id
                 GROUP BY s.id ORDER BY MIN(e.seq)",
            )?
            .query_map(params![ROW_OVERHEAD], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        let take = prunable(&sessions, retention, &cutoff);
        if take == 0 {
            return Ok(nothing);
        }
        let upto = sessions[..take].iter().map(|s| s.3).max().unwrap_or(0);
        let last_hash: String = tx
            .query_row(
                "SELECT hash FROM events WHERE seq = ?1",
                params![upto],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default();
        let events = tx.execute("DELETE FROM events WHERE seq <= ?1", params![upto])? as i64;
        tx.execute("DELETE FROM search WHERE rowid <= ?1", params![upto])?;
        for (id, ..) in &sessions[..take] {
            tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
        }
        // The insights tallies of the days now gone go too.
        let oldest: Option<String> = tx.query_row(
            "SELECT MIN(substr(started_at, 1, 10)) FROM sessions",
            [],
            |r| r.get(0),
        )?;
        super::rollup::forget_before(&tx, oldest.as_deref().unwrap_or("9999"))?;
        let mac = self.seal().map(|s| s.mac("pruned", upto, &last_hash));
        tx.execute(
            "INSERT INTO pruned (upto_seq, last_hash, sessions, events, at, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![upto, last_hash, take as i64, events, now_rfc3339(), mac],
        )?;
        tx.commit()?;
        Ok(PruneReport {
            sessions: take as i64,
            events,
            upto_seq: upto,
        })
    }

    /// Give freed pages back to the disk (VACUUM). Returns the file's size
    /// before and after. Fails, changing nothing, while another process
    /// is writing the log.
    pub fn compact(&self) -> Result<(u64, u64), StoreError> {
        if let Some(pg) = self.pg() {
            let size = || pg.one_i64("SELECT pg_total_relation_size('events')", vec![]);
            let before = size()?;
            pg.call(|c| c.client.batch_execute("VACUUM events"))?;
            return Ok((before.max(0) as u64, size()?.max(0) as u64));
        }
        let conn = self.conn();
        let size = |conn: &rusqlite::Connection| -> Result<u64, StoreError> {
            Ok(conn.query_row(
                "SELECT (SELECT page_count FROM pragma_page_count()) * (SELECT page_size FROM pragma_page_size())",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        };
        let before = size(&conn)?;
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok((before, size(&conn)?))
    }

    /// Where verification starts: after the last pruned record, from its
    /// hash; or at the beginning.
    pub(super) fn chain_start(&self) -> Result<Option<(i64, String, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.chain_start();
        }
        Ok(self
            .conn()
            .query_row(
                "SELECT upto_seq, last_hash, (SELECT SUM(events) FROM pruned) FROM pruned
                 ORDER BY upto_seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }
}
