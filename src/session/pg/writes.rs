//! Appends and the other writes of the shared store.

use super::super::event::Event;
use super::super::store::{Record, SessionId, StoreError, link_hash, outcome_key};
use super::Pg;

/// Appends that find the head moved before one is given up (each time,
/// another writer made progress; a head row that never matches is damage).
const MAX_ATTEMPTS: usize = 10_000;

/// One event ready to be chained: the event, its stored JSON, its text
/// for search.
pub(crate) type Ready = (Event, String, String);

impl Pg {
    pub(crate) fn create_session(
        &self,
        id: &SessionId,
        actor: &str,
        at: String,
    ) -> Result<(), StoreError> {
        let (id, actor) = (id.as_str().to_string(), actor.to_string());
        self.call(move |c| {
            let s =
                c.prepared("INSERT INTO sessions (id, started_at, actor) VALUES ($1, $2, $3)")?;
            c.client.execute(&s, &[&id, &at, &actor]).map(drop)
        })
    }

    /// Chain `events` after the newest record, in one statement: the
    /// head row moves from the head these records link to, or nothing is
    /// written (another process appended first; then the head is read
    /// again and the records linked anew). The head row's lock orders
    /// appends across every process and host, and a writer that knows the
    /// head (its own last append) needs one round trip.
    pub(crate) fn append(
        &self,
        session: &SessionId,
        actor: &str,
        ts: String,
        events: Vec<Ready>,
    ) -> Result<Vec<Record>, StoreError> {
        let (session, actor) = (session.clone(), actor.to_string());
        self.call(move |c| {
            let read_head = c.prepared("SELECT seq, hash FROM chain_head WHERE id = 1")?;
            let write = c.prepared(
                "WITH h AS (
                    UPDATE chain_head SET seq = $13, hash = $14
                    WHERE id = 1 AND seq = $15 AND hash = $16
                    RETURNING 1
                ), ins AS (
                    INSERT INTO events (seq, session_id, ts, actor, kind, body, prev_hash, hash, search_text)
                    SELECT n.seq, $1, $2, $3, n.kind, n.body, n.prev_hash, n.hash, n.text
                    FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                        AS n(seq, kind, body, prev_hash, hash, text)
                    WHERE EXISTS (SELECT 1 FROM h)
                ), s AS (
                    UPDATE sessions SET
                        title = CASE WHEN $10::text IS NOT NULL THEN $10 ELSE COALESCE(title, $11::text) END,
                        outcome = COALESCE($12::text, outcome)
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM h)
                      AND ($10::text IS NOT NULL OR $11::text IS NOT NULL OR $12::text IS NOT NULL)
                )
                SELECT COUNT(*) FROM h",
            )?;
            let (mut title, mut first_message, mut outcome) = (None, None, None);
            for (event, ..) in &events {
                match event {
                    Event::PlanProposed { plan, .. } => title = Some(plan.title.clone()),
                    Event::UserMessage { text } if first_message.is_none() => {
                        first_message = Some(text.clone());
                    }
                    Event::RunFinished { outcome: o, .. } => outcome = Some(outcome_key(*o)),
                    _ => {}
                }
            }
            let kinds: Vec<&str> = events.iter().map(|(e, ..)| e.kind()).collect();
            let bodies: Vec<&str> = events.iter().map(|(_, b, _)| b.as_str()).collect();
            let texts: Vec<&str> = events.iter().map(|(.., t)| t.as_str()).collect();
            for _ in 0..MAX_ATTEMPTS {
                let (base_seq, base_hash) = match c.head.take() {
                    Some(head) => head,
                    None => {
                        let row = c.client.query_one(&read_head, &[])?;
                        (row.get::<_, i64>(0), row.get::<_, String>(1))
                    }
                };
                let (mut seq, mut prev) = (base_seq, base_hash.clone());
                let (mut seqs, mut prevs, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
                for (kind, body) in kinds.iter().zip(&bodies) {
                    seq += 1;
                    let hash = link_hash(&prev, seq, session.as_str(), &ts, &actor, kind, body);
                    seqs.push(seq);
                    prevs.push(std::mem::replace(&mut prev, hash.clone()));
                    hashes.push(hash);
                }
                let applied: i64 = c
                    .client
                    .query_one(
                        &write,
                        &[
                            &session.as_str(),
                            &ts,
                            &actor,
                            &seqs,
                            &kinds,
                            &bodies,
                            &prevs,
                            &hashes,
                            &texts,
                            &title,
                            &first_message,
                            &outcome,
                            &seq,
                            &prev,
                            &base_seq,
                            &base_hash,
                        ],
                    )?
                    .get(0);
                if applied != 1 {
                    // Another writer moved the head: read it and link again.
                    continue;
                }
                c.head = Some((seq, prev));
                let records = events
                    .into_iter()
                    .zip(seqs.into_iter().zip(prevs.into_iter().zip(hashes)))
                    .map(|((event, ..), (seq, (prev_hash, hash)))| Record {
                        seq,
                        session: session.clone(),
                        ts: ts.clone(),
                        actor: actor.clone(),
                        event,
                        prev_hash,
                        hash,
                    })
                    .collect();
                return Ok(Ok(records));
            }
            Ok(Err(()))
        })?
        .map_err(|()| {
            StoreError::Pg(format!(
                "the chain's head row did not take {MAX_ATTEMPTS} appends in a row: is chain_head intact? `opsbot audit verify` checks the chain"
            ))
        })
    }

    /// Move a cursor in `meta` from `from` (None: unset) to `to`.
    pub(crate) fn move_cursor(
        &self,
        key: &str,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.call(move |c| {
            let n = match from {
                Some(from) => c.client.execute(
                    "UPDATE meta SET value = $3 WHERE key = $1 AND value = $2",
                    &[&key, &from, &to],
                )?,
                None => c.client.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &to],
                )?,
            };
            Ok(n == 1)
        })
    }

    /// The exporter's turn (see `Store::claim_turn`), in one transaction.
    pub(crate) fn claim_turn(
        &self,
        name: &str,
        pid: u32,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (pid_key, until_key) = (format!("{name}_pid"), format!("{name}_until"));
        self.call(move |c| {
            let mut tx = c.client.transaction()?;
            // Two claimers queue here rather than both reading "free".
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1)::bigint)",
                &[&pid_key],
            )?;
            let get = |tx: &mut postgres::Transaction<'_>, key: &str| {
                tx.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                    .map(|r| r.map(|r| r.get::<_, i64>(0)))
            };
            let holder = get(&mut tx, &pid_key)?;
            let expires = get(&mut tx, &until_key)?.unwrap_or(0);
            let mine = holder == Some(i64::from(pid));
            if !mine && holder.is_some() && expires > now_ms {
                return Ok(false);
            }
            for (key, value) in [(&pid_key, i64::from(pid)), (&until_key, until_ms)] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[key, &value],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    pub(crate) fn note_pin_change(
        &self,
        tool: &str,
        def_hash: &str,
        definition: &str,
        at: String,
    ) -> Result<(), StoreError> {
        let (tool, def_hash, definition) = (
            tool.to_string(),
            def_hash.to_string(),
            definition.to_string(),
        );
        self.call(move |c| {
            c.client.execute(
                "INSERT INTO pin_changes (tool, def_hash, definition, seen_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tool) DO UPDATE SET def_hash = $2, definition = $3, seen_at = $4,
                   rejected_by = CASE WHEN pin_changes.def_hash = $2 THEN pin_changes.rejected_by ELSE NULL END",
                &[&tool, &def_hash, &definition, &at],
            )?;
            Ok(())
        })
    }

    pub(crate) fn delete_pin_change(&self, tool: &str) -> Result<(), StoreError> {
        let tool = tool.to_string();
        self.call(move |c| {
            c.client
                .execute("DELETE FROM pin_changes WHERE tool = $1", &[&tool])
                .map(drop)
        })
    }

    pub(crate) fn reject_pin_change(&self, tool: &str, by: &str) -> Result<bool, StoreError> {
        let (tool, by) = (tool.to_string(), by.to_string());
        self.call(move |c| {
            c.client
                .execute(
                    "UPDATE pin_changes SET rejected_by = $2 WHERE tool = $1",
                    &[&tool, &by],
                )
                .map(|n| n > 0)
        })
    }

    /// Pins: `(tool, def_hash, definition, mac)` by `by`, replacing an
    /// existing pin or leaving it.
    pub(crate) fn set_pins(
        &self,
        pins: Vec<super::PinRow>,
        by: &str,
        at: String,
        replace: bool,
    ) -> Result<(), StoreError> {
        let by = by.to_string();
        self.call(move |c| {
            let sql = if replace {
                "INSERT INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tool) DO UPDATE SET def_hash = excluded.def_hash,
                   definition = excluded.definition, pinned_at = excluded.pinned_at,
                   pinned_by = excluded.pinned_by, mac = excluded.mac"
            } else {
                "INSERT INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tool) DO NOTHING"
            };
            let mut tx = c.client.transaction()?;
            for (tool, hash, definition, mac) in &pins {
                tx.execute(sql, &[tool, hash, definition, &at, &by, mac])?;
            }
            tx.commit()
        })
    }

    /// Rewrite `sessions` rows (`id, actor, title, outcome`) as the chain
    /// backs them; rows no record backs go. How many rows changed.
    pub(crate) fn repair_sessions(
        &self,
        backed: Vec<super::SessionFields>,
    ) -> Result<usize, StoreError> {
        self.call(move |c| {
            let mut tx = c.client.transaction()?;
            let mut changed = tx.execute(
                "DELETE FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.id)",
                &[],
            )?;
            for (id, actor, title, outcome) in &backed {
                changed += tx.execute(
                    "UPDATE sessions SET actor = $2, title = $3, outcome = $4
                     WHERE id = $1 AND (actor IS DISTINCT FROM $2 OR title IS DISTINCT FROM $3
                                        OR outcome IS DISTINCT FROM $4)",
                    &[id, actor, title, outcome],
                )?;
            }
            tx.commit()?;
            Ok(usize::try_from(changed).unwrap_or(usize::MAX))
        })
    }

    /// Retention: remove whole sessions from the start of the log and
    /// keep the hash the range ended on (see retention.rs).
    pub(crate) fn prune(
        &self,
        retention: super::super::Retention,
        cutoff: String,
        at: String,
    ) -> Result<super::super::PruneReport, StoreError> {
        use super::super::retention::{Extent, prunable};
        let nothing = super::super::PruneReport {
            sessions: 0,
            events: 0,
            upto_seq: 0,
        };
        self.call(move |c| {
            // This runs at every start: look at the whole log only when the
            // oldest session is old enough or the log is big enough.
            let row = c.client.query_one(
                "SELECT (SELECT MIN(started_at) FROM sessions), pg_total_relation_size('events')",
                &[],
            )?;
            let (oldest, bytes): (Option<String>, i64) = (row.get(0), row.get(1));
            let maybe_old = retention.max_age_days > 0
                && oldest.is_some_and(|o| o.as_str() < cutoff.as_str());
            let maybe_big = retention.max_bytes > 0 && bytes > retention.max_bytes as i64;
            if !(maybe_old || maybe_big) {
                return Ok(nothing);
            }
            let mut tx = c.client.transaction()?;
            // Appends wait while the range is cut.
            tx.execute("SELECT 1 FROM chain_head WHERE id = 1 FOR UPDATE", &[])?;
            let sessions: Vec<Extent> = tx
                .query(
                    "SELECT s.id, s.started_at, MIN(e.seq), MAX(e.seq),
                            (SUM(length(e.body)) + COUNT(*) * 400)::bigint
                     FROM sessions s JOIN events e ON e.session_id = s.id
                     GROUP BY s.id ORDER BY MIN(e.seq)",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect();
            let take = prunable(&sessions, retention, &cutoff);
            if take == 0 {
                return Ok(nothing);
            }
            let upto = sessions[..take].iter().map(|s| s.3).max().unwrap_or(0);
            let last_hash: String = tx
                .query_opt("SELECT hash FROM events WHERE seq = $1", &[&upto])?
                .map(|r| r.get(0))
                .unwrap_or_default();
            let events = tx.execute("DELETE FROM events WHERE seq <= $1", &[&upto])? as i64;
            let ids: Vec<&str> = sessions[..take].iter().map(|s| s.0.as_str()).collect();
            tx.execute("DELETE FROM leases WHERE session_id = ANY($1)", &[&ids])?;
            tx.execute("DELETE FROM sessions WHERE id = ANY($1)", &[&ids])?;
            tx.execute(
                "INSERT INTO pruned (upto_seq, last_hash, sessions, events, at) VALUES ($1, $2, $3, $4, $5)",
                &[&upto, &last_hash, &(take as i64), &events, &at],
            )?;
            tx.commit()?;
            Ok(super::super::PruneReport {
                sessions: take as i64,
                events,
                upto_seq: upto,
            })
        })
    }
}

/// A pruned range as migrated: upto_seq, last_hash, sessions, events, at, mac.
type PrunedRow = (i64, String, i64, i64, String, Option<String>);

impl Pg {
    /// The chain's newest link here.
    pub(crate) fn head(&self) -> Result<(i64, String), StoreError> {
        let rows = self.rows("SELECT seq, hash FROM chain_head WHERE id = 1", vec![])?;
        match rows.first() {
            Some(r) => Ok((super::col(r, 0)?, super::col(r, 1)?)),
            None => Ok((0, super::super::GENESIS.to_string())),
        }
    }

    /// A migration's first step: sessions, pins, pruned ranges, and the
    /// head the first copied record will link to.
    pub(crate) fn import_rest(
        &self,
        sessions: Vec<super::SessionRow>,
        pins: Vec<[Option<String>; 6]>,
        pruned: Vec<PrunedRow>,
        head: (i64, String),
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.head = None;
            let mut tx = c.client.transaction()?;
            tx.execute("SELECT 1 FROM chain_head WHERE id = 1 FOR UPDATE", &[])?;
            let ins = tx.prepare(
                "INSERT INTO sessions (id, started_at, actor, title, outcome)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )?;
            for (id, started, actor, title, outcome) in &sessions {
                tx.execute(&ins, &[id, started, actor, title, outcome])?;
            }
            for [tool, hash, definition, at, by, mac] in &pins {
                tx.execute(
                    "INSERT INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tool) DO NOTHING",
                    &[tool, hash, definition, at, by, mac],
                )?;
            }
            for (upto, hash, n_sessions, n_events, at, mac) in &pruned {
                tx.execute(
                    "INSERT INTO pruned (upto_seq, last_hash, sessions, events, at, mac)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (upto_seq) DO NOTHING",
                    &[upto, hash, n_sessions, n_events, at, mac],
                )?;
            }
            tx.execute(
                "UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1",
                &[&head.0, &head.1],
            )?;
            tx.commit()
        })
    }

    /// Records copied as they are (their hashes untouched), after the
    /// head; the head moves to the last of them.
    pub(crate) fn import_records(&self, page: Vec<super::Raw>) -> Result<(), StoreError> {
        let texts: Vec<String> = page
            .iter()
            .map(|r| {
                serde_json::from_str(&r.fields[4])
                    .map(|v| super::super::search::text_of(&v))
                    .unwrap_or_default()
            })
            .collect();
        self.call(move |c| {
            c.head = None;
            let mut tx = c.client.transaction()?;
            tx.execute("SELECT 1 FROM chain_head WHERE id = 1 FOR UPDATE", &[])?;
            let ins = tx.prepare(
                "INSERT INTO events (seq, session_id, ts, actor, kind, body, prev_hash, hash, search_text)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )?;
            for (raw, text) in page.iter().zip(&texts) {
                let [session, ts, actor, kind, body, prev, hash] = &raw.fields;
                tx.execute(&ins, &[&raw.seq, session, ts, actor, kind, body, prev, hash, text])?;
            }
            if let Some(last) = page.last() {
                tx.execute(
                    "UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1",
                    &[&last.seq, &last.fields[6]],
                )?;
            }
            tx.commit()
        })
    }
}
