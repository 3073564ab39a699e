//! `opsbot store migrate --from sqlite PATH`: an existing SQLite log copied
//! into the shared store record for record, so its chain (every hash as
//! written) verifies there unchanged. Pages commit as they go and a
//! migration that stopped resumes where the shared store's head is.

use rusqlite::params;
use serde::Serialize;

use super::pg::Raw;
use super::store::{GENESIS, Store, StoreError};

/// Records copied per transaction.
const PAGE: i64 = 5_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Migrated {
    pub sessions: i64,
    pub events: i64,
    pub pins: i64,
    /// Records the shared store already had from an earlier, stopped run.
    pub resumed_after: i64,
}

impl Store {
    /// Copy this (SQLite) log into `target` (a shared store that is empty,
    /// or holds the start of this very log from a migration that stopped).
    pub fn migrate_into(&self, target: &Store) -> Result<Migrated, StoreError> {
        let Some(pg) = target.pg() else {
            return Err(StoreError::BadQuery(
                "the target is not a shared store: set [store] url first".into(),
            ));
        };
        if self.pg().is_some() {
            return Err(StoreError::BadQuery(
                "the source must be an SQLite log file".into(),
            ));
        }
        let (head_seq, head_hash) = pg.head()?;
        let start = self.chain_start()?;
        let resumed_after = if head_seq == 0 {
            0
        } else if start
            .as_ref()
            .is_some_and(|(upto, hash, _)| *upto == head_seq && *hash == head_hash)
            || self.hash_of(head_seq)?.as_deref() == Some(head_hash.as_str())
        {
            head_seq
        } else {
            return Err(StoreError::BadQuery(format!(
                "the shared store already holds another log (its newest record, #{head_seq}, is not this log's); migrate into an empty database"
            )));
        };
        let mut out = Migrated {
            resumed_after,
            ..Migrated::default()
        };
        if resumed_after == 0 {
            // What is not a record: sessions' rows, pins, pruned ranges.
            let conn = self.conn();
            let sessions: Vec<super::pg::SessionRow> = conn
                .prepare("SELECT id, started_at, actor, title, outcome FROM sessions")?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            let pins: Vec<[Option<String>; 6]> = conn
                .prepare("SELECT tool, def_hash, definition, pinned_at, pinned_by, mac FROM pins")?
                .query_map([], |r| {
                    Ok([
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ])
                })?
                .collect::<Result<_, _>>()?;
            let pruned: Vec<(i64, String, i64, i64, String, Option<String>)> = conn
                .prepare("SELECT upto_seq, last_hash, sessions, events, at, mac FROM pruned")?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            drop(conn);
            out.sessions = sessions.len() as i64;
            out.pins = pins.len() as i64;
            let head = start
                .as_ref()
                .map_or((0, GENESIS.to_string()), |(upto, hash, _)| {
                    (*upto, hash.clone())
                });
            pg.import_rest(sessions, pins, pruned, head)?;
        }
        let mut after = resumed_after;
        loop {
            let page = self.raw_page(after)?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            out.events += page.len() as i64;
            pg.import_records(page)?;
            after = last;
        }
        Ok(out)
    }

    fn hash_of(&self, seq: i64) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn()
            .query_row(
                "SELECT hash FROM events WHERE seq = ?1",
                params![seq],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn raw_page(&self, after: i64) -> Result<Vec<Raw>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, PAGE], |r| {
            Ok(Raw {
                seq: r.get(0)?,
                fields: [
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ],
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
