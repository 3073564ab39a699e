//! Full-text search over the audit log (SQLite FTS5), and the session
//! listings built on it.
//!
//! The index is filled behind the appends: by the checkpoint thread every
//! few hundred commits, and by any search before it runs, so a search sees
//! every event and a tool call never waits on indexing.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::store::{SessionId, Store, StoreError};

/// At most this much of one event's text is indexed.
const MAX_TEXT: usize = 8 * 1024;

/// Index every event not yet indexed; returns how many were.
pub(super) fn catch_up(
    conn: &Connection,
    gate: Option<&std::sync::Mutex<()>>,
) -> rusqlite::Result<usize> {
    let mut total = 0;
    loop {
        // This process's appends wait for at most one batch.
        let _turn = gate.map(|g| g.lock().unwrap_or_else(|p| p.into_inner()));
        // Immediate: two indexers (the checkpoint thread and a search) must
        // queue for the write lock, not fail upgrading a read to a write.
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let done: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'indexed_upto'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let rows: Vec<(i64, String, String)> = tx
            .prepare_cached(
                "SELECT seq, session_id, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT 500",
            )?
            .query_map(params![done], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(total);
        };
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO search (rowid, session_id, text) VALUES (?1, ?2, ?3)",
            )?;
            for (seq, session, body) in &rows {
                let text = serde_json::from_str::<Value>(body)
                    .map(|v| text_of(&v))
                    .unwrap_or_default();
                if !text.is_empty() {
                    insert.execute(params![seq, session, text])?;
                }
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('indexed_upto', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![last],
        )?;
        tx.commit()?;
        total += rows.len();
    }
}

/// An event's searchable text: every string in it (requests, messages,
/// tool names, arguments, results, reasons) and its kind.
pub(crate) fn text_of(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        if out.len() >= MAX_TEXT {
            return;
        }
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Number(n) => {
                out.push_str(&n.to_string());
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    if out.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Words, all of which must appear in the session (any event).
    pub text: String,
    /// Sessions started at or after this RFC 3339 time (or a prefix: a day).
    pub since: Option<String>,
    /// A tool pattern (`k8s.*`) some step of the session ran.
    pub tool: Option<String>,
    /// The session's outcome: succeeded, failed, ..., or `interrupted`.
    pub status: Option<String>,
    pub limit: usize,
    /// Leave out sessions in which nothing was asked (the app opened and
    /// closed again).
    pub skip_empty: bool,
}

/// Whether a session found stays in the answer.
pub(crate) enum Admit {
    Yes,
    No,
    /// No later (older) session can pass either.
    Done,
}

impl Query {
    /// The filters a session's own line decides (time, status, empty).
    /// Sessions come newest first; found by words they come in the order
    /// of their newest matching event, close enough to skip but not to stop.
    pub(crate) fn admits(&self, f: &Found, by_words: bool) -> Admit {
        if self.skip_empty && f.title.is_none() {
            return Admit::No;
        }
        if let Some(since) = &self.since
            && f.started_at.as_str() < since.as_str()
        {
            return if by_words { Admit::No } else { Admit::Done };
        }
        if let Some(status) = &self.status
            && !f.outcome.eq_ignore_ascii_case(status)
        {
            return Admit::No;
        }
        Admit::Yes
    }

    /// The tool filter, parsed.
    pub(crate) fn tool_pattern(&self) -> Result<Option<crate::policy::Pattern>, StoreError> {
        self.tool
            .as_deref()
            .map(|t| crate::policy::Pattern::parse(t).map_err(StoreError::BadQuery))
            .transpose()
    }
}

/// Whether some step ran a tool `pattern` matches (any, with no pattern).
pub(crate) fn ran_tool(
    pattern: Option<&crate::policy::Pattern>,
    steps: &[(String, Option<String>)],
) -> bool {
    pattern.is_none_or(|p| steps.iter().any(|(t, _)| p.matches(t)))
}

/// One session found: what a list of them shows.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Found {
    pub id: SessionId,
    pub started_at: String,
    pub actor: String,
    pub title: Option<String>,
    /// succeeded, failed, ..., or `interrupted` when it never finished.
    pub outcome: String,
    /// Environments its steps named, in order of first use.
    pub envs: Vec<String>,
    /// Where the words matched, with the words in [brackets].
    pub snippet: Option<String>,
}

impl Found {
    /// The environments of these steps, in order of first use.
    pub(crate) fn add_envs(&mut self, steps: Vec<(String, Option<String>)>) {
        for env in steps.into_iter().filter_map(|(_, env)| env) {
            if !self.envs.contains(&env) {
                self.envs.push(env);
            }
        }
    }
}

impl Store {
    /// Bring the search index up to date with the log.
    pub fn index_for_search(&self) -> Result<usize, StoreError> {
        // PostgreSQL indexes each event as it is inserted.
        if self.pg().is_some() {
            return Ok(0);
        }
        // A log that can only be read is searched as far as it was indexed.
        if self.is_read_only() {
            return Ok(0);
        }
        Ok(catch_up(&self.conn(), None)?)
    }

    /// One session's line in a list.
    pub fn session_summary(&self, id: &SessionId) -> Result<Option<Found>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.session_summary(id));
        }
        let conn = self.conn();
        let Some(mut f) = summary(&conn, id.as_str())? else {
            return Ok(None);
        };
        f.add_envs(step_tools_and_envs(&conn, id.as_str())?);
        Ok(Some(f))
    }

    /// Sessions matching `q`, newest first. Empty words list every session
    /// (still filtered), which is what a browser shows before typing.
    pub fn search(&self, q: &Query) -> Result<Vec<Found>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.search(q));
        }
        // Listing needs no index: a damaged one must not hide the sessions.
        if let Err(e) = self.index_for_search() {
            if !q.text.trim().is_empty() {
                return Err(e);
            }
            tracing::warn!("the search index could not be brought up to date: {e}");
        }
        let conn = self.conn();
        let limit = q.limit.max(1);
        let tool = q.tool_pattern()?;
        let words = fts_query(&q.text);
        let mut found: Vec<Found> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Newest first, so the walk stops as soon as enough sessions pass.
        // With no words every session is a candidate (both statements take
        // the words as ?1, so one `query` call serves either).
        let mut candidates = match &words {
            Some(_) => conn.prepare_cached(
                "SELECT session_id, snippet(search, 1, '[', ']', '…', 12) FROM search
                 WHERE search MATCH ?1 ORDER BY rowid DESC",
            )?,
            None => conn.prepare_cached(
                "SELECT id, NULL FROM sessions WHERE ?1 IS NULL ORDER BY started_at DESC, id DESC",
            )?,
        };
        let mut rows = candidates.query(params![words])?;
        while let Some(r) = rows.next()? {
            let sid: String = r.get(0)?;
            if !seen.insert(sid.clone()) {
                continue;
            }
            let Some(mut f) = summary(&conn, &sid)? else {
                continue;
            };
            match q.admits(&f, words.is_some()) {
                Admit::Yes => {}
                Admit::No => continue,
                Admit::Done => break,
            }
            let steps = step_tools_and_envs(&conn, &sid)?;
            if !ran_tool(tool.as_ref(), &steps) {
                continue;
            }
            f.add_envs(steps);
            f.snippet = r.get(1)?;
            found.push(f);
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }
}

/// The words as an FTS5 query: each quoted (so punctuation and operators in
/// what the user typed are just text), all required; the last one also
/// matches as a prefix, for search as you type.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

fn summary(conn: &Connection, sid: &str) -> rusqlite::Result<Option<Found>> {
    conn.prepare_cached("SELECT id, started_at, actor, title, outcome FROM sessions WHERE id = ?1")?
        .query_row(params![sid], |r| {
            Ok(Found {
                id: SessionId::from_stored(r.get::<_, String>(0)?),
                started_at: r.get(1)?,
                actor: r.get(2)?,
                title: r.get(3)?,
                outcome: r
                    .get::<_, Option<String>>(4)?
                    .unwrap_or_else(|| "interrupted".into()),
                envs: Vec::new(),
                snippet: None,
            })
        })
        .optional()
}

/// The tool and `env` argument of every step a session started.
fn step_tools_and_envs(
    conn: &Connection,
    sid: &str,
) -> rusqlite::Result<Vec<(String, Option<String>)>> {
    conn.prepare_cached(
        "SELECT json_extract(body, '$.tool'), json_extract(body, '$.args.env')
         FROM events WHERE session_id = ?1 AND kind = 'step_started' ORDER BY seq",
    )?
    .query_map(params![sid], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_words_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(
            fts_query("payments prod"),
            Some("\"payments\" \"prod\"*".into())
        );
        assert_eq!(fts_query("a\"b OR"), Some("\"a\"\"b\" \"OR\"*".into()));
    }
}
