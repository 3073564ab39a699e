//! Day-by-day tallies behind `opsbot insights`, kept beside the log.
//!
//! Reading every step of 100,000 sessions on each `insights` took seconds.
//! The tallies are filled behind the appends (by the checkpoint thread, by
//! any writer that asks for insights, and as a process ends), like the
//! search index; whatever they have not reached yet is tallied in memory
//! from the log itself, so the answer never lags the log. Durations are
//! kept exact below 1,000 (ms, or tenths of a second for approval waits)
//! and to three significant digits above, so a percentile is off by at
//! most 0.05%. The tallies are derived: `audit verify --repair` rebuilds
//! them from the chain.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS rollup_steps (
        day TEXT NOT NULL, tool TEXT NOT NULL, ms INTEGER NOT NULL,
        calls INTEGER NOT NULL, failures INTEGER NOT NULL,
        PRIMARY KEY (day, tool, ms)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS rollup_waits (
        day TEXT NOT NULL, ds INTEGER NOT NULL, n INTEGER NOT NULL, total_s REAL NOT NULL,
        PRIMARY KEY (day, ds)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS rollup_denials (
        day TEXT NOT NULL, rule TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (day, rule)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS rollup_days (
        day TEXT PRIMARY KEY, approvals INTEGER NOT NULL, tokens INTEGER NOT NULL,
        cost REAL NOT NULL) WITHOUT ROWID;
    -- Steps started and not ended (their tool), approvals asked and not
    -- given (since when): what a later record needs from an earlier one.
    CREATE TABLE IF NOT EXISTS rollup_open (
        session TEXT NOT NULL, step TEXT NOT NULL, what TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (session, step, what)) WITHOUT ROWID;";

const CURSOR: &str = "rolled_upto";
/// Records of the log covered per transaction.
const SPAN: i64 = 20_000;

/// `v` exact below 1,000, else to three significant digits.
pub(super) fn coarse(v: i64) -> i64 {
    if v < 1_000 {
        return v.max(0);
    }
    let mut scale = 1;
    while v / scale >= 1_000 {
        scale *= 10;
    }
    (v + scale / 2) / scale * scale
}

/// One record, as much of it as the tallies need.
pub(super) struct Fact {
    pub(super) session: String,
    pub(super) ts: String,
    pub(super) kind: String,
    pub(super) step: Option<String>,
    pub(super) tool: Option<String>,
    pub(super) ms: Option<i64>,
    pub(super) verdict: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) tokens: Option<i64>,
    pub(super) cost: Option<f64>,
}

impl Fact {
    fn day(&self) -> String {
        self.ts.get(..10).unwrap_or(&self.ts).to_string()
    }
}

/// The records in (`after`, `upto`] the tallies count. (`+kind`: read in
/// seq order over that range, never through the index on kind, which
/// would compute every matching record of the log and sort it.)
fn facts_between(conn: &Connection, after: i64, upto: i64) -> rusqlite::Result<Vec<Fact>> {
    let mut stmt = conn.prepare_cached(
        "SELECT session_id, ts, kind,
                json_extract(body, '$.step'), json_extract(body, '$.tool'),
                json_extract(body, '$.duration_ms'), json_extract(body, '$.decision.verdict'),
                json_extract(body, '$.decision.rule'),
                json_extract(body, '$.prompt_tokens') + json_extract(body, '$.completion_tokens'),
                json_extract(body, '$.cost_usd')
         FROM events WHERE seq > ?1 AND seq <= ?2 AND +kind IN ('step_started',
             'step_succeeded', 'step_failed', 'awaiting_approval', 'approved',
             'policy_decision', 'policy_recheck', 'llm_call')
         ORDER BY seq",
    )?;
    let mut facts = Vec::new();
    let mut rows = stmt.query(params![after, upto])?;
    while let Some(r) = rows.next()? {
        facts.push(Fact {
            session: r.get(0)?,
            ts: r.get(1)?,
            kind: r.get(2)?,
            step: r.get(3).ok().flatten(),
            tool: r.get(4).ok().flatten(),
            ms: r.get(5).ok().flatten(),
            verdict: r.get(6).ok().flatten(),
            rule: r.get(7).ok().flatten(),
            tokens: r.get(8).ok().flatten(),
            cost: r.get(9).ok().flatten(),
        });
    }
    Ok(facts)
}

fn newest_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}

/// Tallies not yet stored: from the records after the stored ones.
#[derive(Default)]
pub(super) struct Tally {
    pub steps: BTreeMap<(String, String, i64), (u64, u64)>,
    pub waits: BTreeMap<(String, i64), (u64, f64)>,
    pub denials: BTreeMap<(String, String), u64>,
    /// Approvals, tokens, cost.
    pub days: BTreeMap<String, (u64, u64, f64)>,
    /// Changes to `rollup_open`: Some sets, None removes.
    open: HashMap<(String, String, &'static str), Option<String>>,
    /// Whether the log has the tally tables (a log written by an older
    /// opsbot, opened read-only, does not).
    no_tables: bool,
}

impl Tally {
    fn open_value(
        &self,
        conn: Option<&Connection>,
        session: &str,
        step: &str,
        what: &'static str,
    ) -> rusqlite::Result<Option<String>> {
        if let Some(v) = self
            .open
            .get(&(session.to_string(), step.to_string(), what))
        {
            return Ok(v.clone());
        }
        let Some(conn) = conn.filter(|_| !self.no_tables) else {
            return Ok(None);
        };
        conn.prepare_cached(
            "SELECT value FROM rollup_open WHERE session = ?1 AND step = ?2 AND what = ?3",
        )?
        .query_row(params![session, step, what], |r| r.get(0))
        .optional()
    }

    fn apply(&mut self, conn: Option<&Connection>, f: &Fact) -> rusqlite::Result<()> {
        let step = f.step.clone().unwrap_or_default();
        let key = |what| (f.session.clone(), step.clone(), what);
        match f.kind.as_str() {
            "step_started" => {
                self.open
                    .insert(key("tool"), Some(f.tool.clone().unwrap_or_default()));
            }
            "step_succeeded" | "step_failed" => {
                let Some(tool) = self.open_value(conn, &f.session, &step, "tool")? else {
                    return Ok(());
                };
                self.open.insert(key("tool"), None);
                let ms = coarse(f.ms.unwrap_or(0));
                let e = self.steps.entry((f.day(), tool, ms)).or_default();
                e.0 += 1;
                if f.kind == "step_failed" {
                    e.1 += 1;
                }
            }
            "awaiting_approval" => {
                self.open.insert(key("waiting"), Some(f.ts.clone()));
            }
            "approved" => {
                self.days.entry(f.day()).or_default().0 += 1;
                if let Some(since) = self.open_value(conn, &f.session, &step, "waiting")? {
                    self.open.insert(key("waiting"), None);
                    if let Some(s) = super::insights::seconds_between(&since, &f.ts) {
                        let s = s.max(0.0);
                        let ds = coarse((s * 10.0).round() as i64);
                        let e = self.waits.entry((f.day(), ds)).or_default();
                        e.0 += 1;
                        e.1 += s;
                    }
                }
            }
            "policy_decision" | "policy_recheck" if f.verdict.as_deref() == Some("deny") => {
                *self
                    .denials
                    .entry((f.day(), f.rule.clone().unwrap_or_default()))
                    .or_default() += 1;
            }
            "llm_call" => {
                let d = self.days.entry(f.day()).or_default();
                d.1 += f.tokens.unwrap_or(0).max(0) as u64;
                d.2 += f.cost.unwrap_or(0.0);
            }
            _ => {}
        }
        Ok(())
    }

    fn store(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        for ((day, tool, ms), (calls, failures)) in &self.steps {
            tx.prepare_cached(
                "INSERT INTO rollup_steps VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET calls = calls + excluded.calls,
                     failures = failures + excluded.failures",
            )?
            .execute(params![day, tool, ms, *calls as i64, *failures as i64])?;
        }
        for ((day, ds), (n, total)) in &self.waits {
            tx.prepare_cached(
                "INSERT INTO rollup_waits VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET n = n + excluded.n, total_s = total_s + excluded.total_s",
            )?
            .execute(params![day, ds, *n as i64, total])?;
        }
        for ((day, rule), n) in &self.denials {
            tx.prepare_cached(
                "INSERT INTO rollup_denials VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![day, rule, *n as i64])?;
        }
        for (day, (approvals, tokens, cost)) in &self.days {
            tx.prepare_cached(
                "INSERT INTO rollup_days VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET approvals = approvals + excluded.approvals,
                     tokens = tokens + excluded.tokens, cost = cost + excluded.cost",
            )?
            .execute(params![day, *approvals as i64, *tokens as i64, cost])?;
        }
        for ((session, step, what), value) in &self.open {
            match value {
                Some(v) => tx
                    .prepare_cached("INSERT OR REPLACE INTO rollup_open VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![session, step, what, v])?,
                None => tx
                    .prepare_cached(
                        "DELETE FROM rollup_open WHERE session = ?1 AND step = ?2 AND what = ?3",
                    )?
                    .execute(params![session, step, what])?,
            };
        }
        Ok(())
    }
}

/// Whether this log has the tally tables.
pub(super) fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'rollup_steps'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// How far the stored tallies reach.
pub(super) fn stored_upto(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![CURSOR],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Store the tallies of up to `max` records of the log not yet tallied
/// (all of them with None), a bounded range per transaction so appends
/// never wait long behind it; how many records were covered.
pub(super) fn catch_up(
    conn: &Connection,
    max: Option<i64>,
    gate: Option<&std::sync::Mutex<()>>,
) -> rusqlite::Result<i64> {
    let mut total = 0;
    loop {
        let span = max.map_or(SPAN, |m| (m - total).clamp(0, SPAN));
        if span == 0 {
            return Ok(total);
        }
        let _turn = gate.map(|g| g.lock().unwrap_or_else(|p| p.into_inner()));
        let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let from = stored_upto(&tx)?;
        let upto = newest_seq(&tx)?.min(from.saturating_add(span));
        if upto <= from {
            return Ok(total);
        }
        let mut tally = Tally::default();
        for f in &facts_between(&tx, from, upto)? {
            tally.apply(Some(&tx), f)?;
        }
        tally.store(&tx)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![CURSOR, upto],
        )?;
        tx.commit()?;
        total += upto - from;
    }
}

/// The tallies of the records the stored ones do not reach, in memory.
pub(super) fn tail(conn: &Connection, tables: bool) -> rusqlite::Result<Tally> {
    let from = if tables { stored_upto(conn)? } else { 0 };
    let mut tally = Tally {
        no_tables: !tables,
        ..Tally::default()
    };
    for f in &facts_between(conn, from, newest_seq(conn)?)? {
        tally.apply(Some(conn), f)?;
    }
    Ok(tally)
}

/// The tallies of `facts` (every one the log has), with nothing stored:
/// what a store without tally tables (the shared one) counts.
pub(super) fn tally_of(facts: &[Fact]) -> Tally {
    let mut tally = Tally {
        no_tables: true,
        ..Tally::default()
    };
    for f in facts {
        // With no tables nothing is read: this cannot fail.
        let _ = tally.apply(None, f);
    }
    tally
}

/// Forget every tally: they are rebuilt from the log.
pub(super) fn reset(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DELETE FROM rollup_steps; DELETE FROM rollup_waits; DELETE FROM rollup_denials;
         DELETE FROM rollup_days; DELETE FROM rollup_open;",
    )?;
    tx.execute("DELETE FROM meta WHERE key = ?1", params![CURSOR])?;
    Ok(())
}

/// Forget the tallies of days before `day` (retention pruned them).
pub(super) fn forget_before(tx: &Transaction<'_>, day: &str) -> rusqlite::Result<()> {
    for table in [
        "rollup_steps",
        "rollup_waits",
        "rollup_denials",
        "rollup_days",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE day < ?1"), params![day])?;
    }
    tx.execute(
        "DELETE FROM rollup_open WHERE session NOT IN (SELECT id FROM sessions)",
        [],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::coarse;

    #[test]
    fn coarse_keeps_three_digits() {
        assert_eq!(coarse(0), 0);
        assert_eq!(coarse(999), 999);
        assert_eq!(coarse(1_234), 1_230);
        assert_eq!(coarse(1_235), 1_240);
        assert_eq!(coarse(98_765), 98_800);
        assert_eq!(coarse(-5), 0);
    }
}
