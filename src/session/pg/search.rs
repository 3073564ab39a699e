//! Search on the shared store: PostgreSQL's own full-text search (a
//! `tsvector` of every event's strings, kept by the database as each
//! event is inserted, under a GIN index), with the same filters and the
//! same answers as the SQLite store's.

use super::super::search::{Admit, Found, Query, ran_tool};
use super::super::store::{SessionId, StoreError};
use super::Pg;
use super::reads::col;

/// The words as a `tsquery`: each quoted (what was typed is text, never
/// operators), all required, the last also as a prefix.
fn ts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" & ");
    q.push_str(":*");
    Some(q)
}

/// Sessions looked at per round trip.
const PAGE: i64 = 200;

impl Pg {
    fn found(&self, r: &postgres::Row) -> Result<Found, StoreError> {
        Ok(Found {
            id: SessionId::from_stored(col::<String>(r, 0)?),
            started_at: col(r, 1)?,
            actor: col(r, 2)?,
            title: col(r, 3)?,
            outcome: col::<Option<String>>(r, 4)?.unwrap_or_else(|| "interrupted".into()),
            envs: Vec::new(),
            snippet: None,
        })
    }

    pub(crate) fn session_summary(&self, id: &SessionId) -> Result<Option<Found>, StoreError> {
        let rows = self.rows(
            "SELECT id, started_at, actor, title, outcome FROM sessions WHERE id = $1",
            vec![Box::new(id.as_str().to_string())],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let mut f = self.found(r)?;
        f.add_envs(self.step_tools_and_envs(id.as_str())?);
        Ok(Some(f))
    }

    /// The tool and `env` argument of every step a session started.
    fn step_tools_and_envs(&self, sid: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.rows(
            "SELECT body::jsonb ->> 'tool', body::jsonb #>> '{args,env}'
             FROM events WHERE session_id = $1 AND kind = 'step_started' ORDER BY seq",
            vec![Box::new(sid.to_string())],
        )?
        .iter()
        .map(|r| Ok((col::<Option<String>>(r, 0)?.unwrap_or_default(), col(r, 1)?)))
        .collect()
    }

    pub(crate) fn search(&self, q: &Query) -> Result<Vec<Found>, StoreError> {
        let limit = q.limit.max(1);
        let tool = q.tool_pattern()?;
        let words = ts_query(&q.text);
        let mut found = Vec::new();
        let mut offset = 0i64;
        'pages: loop {
            let rows = match &words {
                Some(w) => self.rows(
                    "SELECT s.id, s.started_at, s.actor, s.title, s.outcome
                     FROM (SELECT session_id, MAX(seq) AS seq FROM events
                           WHERE search @@ to_tsquery('simple', $1) GROUP BY session_id) m
                     JOIN sessions s ON s.id = m.session_id
                     ORDER BY m.seq DESC LIMIT $2 OFFSET $3",
                    vec![Box::new(w.clone()), Box::new(PAGE), Box::new(offset)],
                )?,
                None => self.rows(
                    "SELECT id, started_at, actor, title, outcome FROM sessions
                     ORDER BY started_at DESC, id DESC LIMIT $1 OFFSET $2",
                    vec![Box::new(PAGE), Box::new(offset)],
                )?,
            };
            if rows.is_empty() {
                break;
            }
            offset += PAGE;
            for r in &rows {
                let mut f = self.found(r)?;
                match q.admits(&f, words.is_some()) {
                    Admit::Yes => {}
                    Admit::No => continue,
                    Admit::Done => break 'pages,
                }
                let steps = self.step_tools_and_envs(f.id.as_str())?;
                if !ran_tool(tool.as_ref(), &steps) {
                    continue;
                }
                f.add_envs(steps);
                if let Some(w) = &words {
                    f.snippet = self.snippet(f.id.as_str(), w)?;
                }
                found.push(f);
                if found.len() >= limit {
                    break 'pages;
                }
            }
        }
        Ok(found)
    }

    /// Where the words matched in the session's newest matching event,
    /// with the words in [brackets].
    fn snippet(&self, sid: &str, words: &str) -> Result<Option<String>, StoreError> {
        let rows = self.rows(
            "SELECT ts_headline('simple', search_text, to_tsquery('simple', $2),
                    'StartSel=[, StopSel=], MaxWords=14, MinWords=4, ShortWord=1, FragmentDelimiter=…')
             FROM events WHERE session_id = $1 AND search @@ to_tsquery('simple', $2)
             ORDER BY seq DESC LIMIT 1",
            vec![Box::new(sid.to_string()), Box::new(words.to_string())],
        )?;
        rows.first().map(|r| col(r, 0)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_words_are_quoted_lexemes_and_the_last_is_a_prefix() {
        assert_eq!(ts_query("  "), None);
        assert_eq!(
            ts_query("payments prod"),
            Some("'payments' & 'prod':*".into())
        );
        assert_eq!(ts_query("it's a|b"), Some("'it''s' & 'a|b':*".into()));
    }
}
