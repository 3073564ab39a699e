//! Reads of the shared store: the same questions the SQLite store answers,
//! in PostgreSQL's words.

use postgres::Row;
use postgres::types::ToSql;

use super::super::store::{Record, SessionId, SessionSummary, StoreError};
use super::{Pg, describe};

/// Parameters moved to the connection's thread.
pub(crate) type Params = Vec<Box<dyn ToSql + Send + Sync>>;

/// A column, or the store's error naming the query's problem.
pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| StoreError::Pg(describe(&e)))
}

/// One record as stored, every field the chain covers.
pub(crate) struct Raw {
    pub seq: i64,
    pub fields: [String; 7],
}

impl Pg {
    /// Rows of a statement prepared once per connection.
    pub(crate) fn rows(&self, sql: &'static str, params: Params) -> Result<Vec<Row>, StoreError> {
        self.call(move |c| {
            let s = c.prepared(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            c.client.query(&s, &refs)
        })
    }

    /// Rows of `(seq, session, ts, actor, body, prev_hash, hash)` as records.
    pub(crate) fn records(
        &self,
        sql: &'static str,
        params: Params,
    ) -> Result<Vec<Record>, StoreError> {
        self.rows(sql, params)?
            .iter()
            .map(|r| {
                Ok(Record {
                    seq: col(r, 0)?,
                    session: SessionId::from_stored(col::<String>(r, 1)?),
                    ts: col(r, 2)?,
                    actor: col(r, 3)?,
                    event: serde_json::from_str(col::<&str>(r, 4)?)?,
                    prev_hash: col(r, 5)?,
                    hash: col(r, 6)?,
                })
            })
            .collect()
    }

    pub(crate) fn one_i64(&self, sql: &'static str, params: Params) -> Result<i64, StoreError> {
        let rows = self.rows(sql, params)?;
        match rows.first() {
            Some(r) => Ok(col::<Option<i64>>(r, 0)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    pub(crate) fn events(&self, session: &SessionId) -> Result<Vec<Record>, StoreError> {
        self.records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
             WHERE session_id = $1 ORDER BY seq",
            vec![Box::new(session.as_str().to_string())],
        )
    }

    pub(crate) fn events_before(
        &self,
        session: &SessionId,
        before: i64,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        self.records(
            "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
             WHERE session_id = $1 AND seq < $2 AND kind = ANY($3)
             ORDER BY seq DESC LIMIT $4",
            vec![
                Box::new(session.as_str().to_string()),
                Box::new(before),
                Box::new(kinds),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
    }

    pub(crate) fn last_of_kinds(
        &self,
        session: &SessionId,
        kinds: &[&str],
    ) -> Result<Option<Record>, StoreError> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        Ok(self
            .records(
                "SELECT seq, session_id, ts, actor, body, prev_hash, hash FROM events
                 WHERE session_id = $1 AND kind = ANY($2) ORDER BY seq DESC LIMIT 1",
                vec![Box::new(session.as_str().to_string()), Box::new(kinds)],
            )?
            .pop())
    }

    pub(crate) fn list_sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let rows = self.rows(
            "SELECT s.id, s.started_at, s.actor, s.title, s.outcome,
                    (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id)
             FROM sessions s ORDER BY s.started_at DESC, s.id DESC LIMIT $1",
            vec![Box::new(i64::try_from(limit).unwrap_or(i64::MAX))],
        )?;
        rows.iter()
            .map(|r| {
                Ok(SessionSummary {
                    id: SessionId::from_stored(col::<String>(r, 0)?),
                    started_at: col(r, 1)?,
                    actor: col(r, 2)?,
                    title: col(r, 3)?,
                    outcome: col(r, 4)?,
                    events: col(r, 5)?,
                })
            })
            .collect()
    }

    /// Ids starting with `prefix`, at most two (enough to say "ambiguous").
    pub(crate) fn sessions_like(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        self.rows(
            "SELECT id FROM sessions WHERE id LIKE $1 || '%' ESCAPE '\\' LIMIT 2",
            vec![Box::new(escaped)],
        )?
        .iter()
        .map(|r| col(r, 0))
        .collect()
    }

    pub(crate) fn sessions_waiting(&self, window: i64) -> Result<Vec<SessionId>, StoreError> {
        self.rows(
            "SELECT DISTINCT session_id FROM events
             WHERE kind = 'awaiting_approval'
               AND seq > (SELECT seq FROM chain_head WHERE id = 1) - $1",
            vec![Box::new(window)],
        )?
        .iter()
        .map(|r| Ok(SessionId::from_stored(col::<String>(r, 0)?)))
        .collect()
    }

    /// Up to `limit` records after `after`, every stored field: for walks
    /// over the whole chain (verify, export, migration), a page at a time.
    pub(crate) fn raw_after(
        &self,
        after: i64,
        since: Option<String>,
        limit: i64,
    ) -> Result<Vec<Raw>, StoreError> {
        let rows = self.rows(
            "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events
             WHERE seq > $1 AND ($2::text IS NULL OR ts >= $2) ORDER BY seq LIMIT $3",
            vec![Box::new(after), Box::new(since), Box::new(limit)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Raw {
                    seq: col(r, 0)?,
                    fields: [
                        col(r, 1)?,
                        col(r, 2)?,
                        col(r, 3)?,
                        col(r, 4)?,
                        col(r, 5)?,
                        col(r, 6)?,
                        col(r, 7)?,
                    ],
                })
            })
            .collect()
    }

    /// Every record from `after` on (at or after `since`), in order, a page
    /// at a time, until `visit` says stop (true).
    pub(crate) fn walk(
        &self,
        after: i64,
        since: Option<&str>,
        visit: &mut dyn FnMut(&Raw) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = after;
        loop {
            let page = self.raw_after(after, since.map(str::to_string), 2_000)?;
            let Some(last) = page.last().map(|r| r.seq) else {
                return Ok(());
            };
            for raw in &page {
                if visit(raw)? {
                    return Ok(());
                }
            }
            after = last;
        }
    }

    /// The newest pruned range: its last record, hash, and all pruned events.
    pub(crate) fn chain_start(&self) -> Result<Option<(i64, String, i64)>, StoreError> {
        let rows = self.rows(
            "SELECT upto_seq, last_hash, (SELECT SUM(events) FROM pruned)::bigint FROM pruned
             ORDER BY upto_seq DESC LIMIT 1",
            vec![],
        )?;
        rows.first()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?)))
            .transpose()
    }

    pub(crate) fn pins(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.rows("SELECT tool, def_hash FROM pins", vec![])?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
            .collect()
    }

    pub(crate) fn pin(&self, tool: &str) -> Result<Option<super::super::Pin>, StoreError> {
        let rows = self.rows(
            "SELECT tool, def_hash, definition, pinned_at, pinned_by FROM pins WHERE tool = $1",
            vec![Box::new(tool.to_string())],
        )?;
        rows.first()
            .map(|r| {
                Ok(super::super::Pin {
                    tool: col(r, 0)?,
                    def_hash: col(r, 1)?,
                    definition: col(r, 2)?,
                    pinned_at: col(r, 3)?,
                    pinned_by: col(r, 4)?,
                })
            })
            .transpose()
    }

    /// `(tool, def_hash, pinned_by, mac)` of every pin.
    pub(crate) fn signed_pins(&self) -> Result<Vec<super::PinRow>, StoreError> {
        self.rows(
            "SELECT tool, def_hash, pinned_by, mac FROM pins ORDER BY tool",
            vec![],
        )?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
        .collect()
    }

    pub(crate) fn pin_changes(
        &self,
        tool: Option<&str>,
    ) -> Result<Vec<super::super::pins::PinChange>, StoreError> {
        let rows = self.rows(
            "SELECT tool, def_hash, definition, seen_at, rejected_by FROM pin_changes
             WHERE $1::text IS NULL OR tool = $1 ORDER BY tool",
            vec![Box::new(tool.map(str::to_string))],
        )?;
        rows.iter()
            .map(|r| {
                Ok(super::super::pins::PinChange {
                    tool: col(r, 0)?,
                    def_hash: col(r, 1)?,
                    definition: col(r, 2)?,
                    seen_at: col(r, 3)?,
                    rejected_by: col(r, 4)?,
                })
            })
            .collect()
    }

    /// `(id, actor, title, outcome)` of every session, by id.
    pub(crate) fn session_rows(&self) -> Result<Vec<super::SessionFields>, StoreError> {
        self.rows(
            "SELECT id, actor, title, outcome FROM sessions ORDER BY id",
            vec![],
        )?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
        .collect()
    }
}

impl Pg {
    /// Runs (sessions that were asked something) started at or after
    /// `from`, by day and outcome.
    pub(crate) fn runs_by_day(&self, from: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.rows(
            "SELECT substr(started_at, 1, 10), COALESCE(outcome, 'unfinished'), COUNT(*)
             FROM sessions WHERE started_at >= $1 AND title IS NOT NULL
             GROUP BY 1, 2",
            vec![Box::new(from.to_string())],
        )?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?)))
        .collect()
    }

    /// Every record the insights tallies count, in order.
    pub(in crate::session) fn facts(&self) -> Result<Vec<super::super::rollup::Fact>, StoreError> {
        self.rows(
            "SELECT session_id, ts, kind, b ->> 'step', b ->> 'tool',
                    (b ->> 'duration_ms')::bigint, b #>> '{decision,verdict}',
                    b #>> '{decision,rule}',
                    (b ->> 'prompt_tokens')::bigint + (b ->> 'completion_tokens')::bigint,
                    (b ->> 'cost_usd')::float8
             FROM (SELECT seq, session_id, ts, kind, body::jsonb AS b FROM events
                   WHERE kind IN ('step_started', 'step_succeeded', 'step_failed',
                       'awaiting_approval', 'approved', 'policy_decision',
                       'policy_recheck', 'llm_call')) f
             ORDER BY seq",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(super::super::rollup::Fact {
                session: col(r, 0)?,
                ts: col(r, 1)?,
                kind: col(r, 2)?,
                step: col(r, 3)?,
                tool: col(r, 4)?,
                ms: col(r, 5)?,
                verdict: col(r, 6)?,
                rule: col(r, 7)?,
                tokens: col(r, 8)?,
                cost: col(r, 9)?,
            })
        })
        .collect()
    }
}
