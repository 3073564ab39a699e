//! What the store answers: sessions listed and found by prefix, a
//! session's records, the kinds looked up across sessions, and today's
//! model spend. On a shared store each is asked of PostgreSQL.

use rusqlite::params;

use super::*;

impl Store {
    /// Model use across all sessions since the start of today (UTC), for
    /// the per-day budget.
    pub fn llm_spend_today(&self) -> Result<crate::session::Spend, StoreError> {
        let today = now_rfc3339().get(..10).unwrap_or_default().to_string();
        let mut spend = crate::session::Spend::default();
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

    pub(in crate::session) fn query_records(
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
