//! Search on the shared store: PostgreSQL's own full-text search (a
//! `tsvector` of every event's strings, kept by the database as each
//! event is inserted, under a GIN index), with the same filters and the
//! same answers as the SQLite store's.

use std::collections::{HashMap, HashSet};

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

/// Events (or sessions, with no words) looked at per round trip.
const PAGE: i64 = 500;

/// A session's steps: tool and `env` argument.
type Steps = Vec<(String, Option<String>)>;

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
        Ok(self
            .steps_of(vec![sid.to_string()])?
            .remove(sid)
            .unwrap_or_default())
    }

    /// `step_tools_and_envs` for several sessions in one round trip.
    fn steps_of(&self, ids: Vec<String>) -> Result<HashMap<String, Steps>, StoreError> {
        let mut out: HashMap<String, Steps> = HashMap::new();
        for r in self.rows(
            "SELECT session_id, body::jsonb ->> 'tool', body::jsonb #>> '{args,env}'
             FROM events WHERE session_id = ANY($1) AND kind = 'step_started' ORDER BY seq",
            vec![Box::new(ids)],
        )? {
            out.entry(col(&r, 0)?).or_default().push((
                col::<Option<String>>(&r, 1)?.unwrap_or_default(),
                col(&r, 2)?,
            ));
        }
        Ok(out)
    }

    pub(crate) fn search(&self, q: &Query) -> Result<Vec<Found>, StoreError> {
        let limit = q.limit.max(1);
        let tool = q.tool_pattern()?;
        let words = ts_query(&q.text);
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        // Sessions by their newest matching event, newest first: matching
        // events are read backwards a page at a time (the database walks
        // the index on seq for common words, the GIN index for rare ones),
        // so a search stops as soon as enough sessions pass.
        let mut before = i64::MAX;
        let mut offset = 0i64;
        'pages: loop {
            let rows = match &words {
                Some(w) => self.rows(
                    "SELECT s.id, s.started_at, s.actor, s.title, s.outcome, e.seq
                     FROM events e JOIN sessions s ON s.id = e.session_id
                     WHERE e.search @@ to_tsquery('simple', $1) AND e.seq < $2
                     ORDER BY e.seq DESC LIMIT $3",
                    vec![Box::new(w.clone()), Box::new(before), Box::new(PAGE)],
                )?,
                None => self.rows(
                    "SELECT id, started_at, actor, title, outcome, 0::bigint FROM sessions
                     ORDER BY started_at DESC, id DESC LIMIT $1 OFFSET $2",
                    vec![Box::new(PAGE), Box::new(offset)],
                )?,
            };
            let Some(last) = rows.last() else {
                break;
            };
            before = col(last, 5)?;
            offset += PAGE;
            let mut admitted = Vec::new();
            let mut done = false;
            for r in &rows {
                let f = self.found(r)?;
                if !seen.insert(f.id.clone()) {
                    continue;
                }
                match q.admits(&f, words.is_some()) {
                    Admit::Yes => admitted.push(f),
                    Admit::No => {}
                    Admit::Done => {
                        done = true;
                        break;
                    }
                }
            }
            let mut steps =
                self.steps_of(admitted.iter().map(|f| f.id.as_str().to_string()).collect())?;
            let mut kept = Vec::new();
            for mut f in admitted {
                let mine = steps.remove(f.id.as_str()).unwrap_or_default();
                if !ran_tool(tool.as_ref(), &mine) {
                    continue;
                }
                f.add_envs(mine);
                kept.push(f);
                if found.len() + kept.len() >= limit {
                    done = true;
                    break;
                }
            }
            if let Some(w) = &words {
                let mut snippets =
                    self.snippets(kept.iter().map(|f| f.id.as_str().to_string()).collect(), w)?;
                for f in &mut kept {
                    f.snippet = snippets.remove(f.id.as_str());
                }
            }
            found.extend(kept);
            if done || (rows.len() as i64) < PAGE {
                break 'pages;
            }
        }
        Ok(found)
    }

    /// Where the words matched in each session's newest matching event,
    /// with the words in [brackets].
    fn snippets(
        &self,
        ids: Vec<String>,
        words: &str,
    ) -> Result<HashMap<String, String>, StoreError> {
        self.rows(
            "SELECT DISTINCT ON (session_id) session_id,
                    ts_headline('simple', search_text, to_tsquery('simple', $2),
                        'StartSel=[, StopSel=], MaxWords=14, MinWords=4, ShortWord=1, FragmentDelimiter=…')
             FROM events WHERE session_id = ANY($1) AND search @@ to_tsquery('simple', $2)
             ORDER BY session_id, seq DESC",
            vec![Box::new(ids), Box::new(words.to_string())],
        )?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect()
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
