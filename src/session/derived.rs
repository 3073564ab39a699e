//! Tables derived from the chain, checked against it. `sessions` (actor,
//! title, outcome) is what `history` lists and filters by: each row is
//! folded again from its session's records, exactly as the append path
//! writes it, and a value the records do not back is named (and, with
//! `--repair`, rewritten from them, with the search index rebuilt). Pins
//! are not events: each pin row is signed with the audit key instead, so
//! an edited pin is named too.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;

use super::Event;
use super::seal::Seal;
use super::store::{Store, StoreError, outcome_key};

/// What a session's records say its row should hold.
#[derive(Debug, Default, Clone, PartialEq)]
struct Backed {
    actor: String,
    title: Option<String>,
    outcome: Option<String>,
}

impl Backed {
    /// What one record changes in its session's row (as the append path
    /// writes it).
    fn fold(&mut self, kind: &str, body: &str) {
        if !matches!(kind, "user_message" | "plan_proposed" | "run_finished") {
            return;
        }
        match serde_json::from_str::<Event>(body) {
            Ok(Event::UserMessage { text }) => {
                self.title.get_or_insert(text);
            }
            Ok(Event::PlanProposed { plan, .. }) => self.title = Some(plan.title),
            Ok(Event::RunFinished { outcome, .. }) => {
                self.outcome = Some(outcome_key(outcome).to_string())
            }
            _ => {}
        }
    }
}

/// A pin row and whether its signature holds.
struct SignedPin {
    tool: String,
    hash: String,
    by: String,
    signed: bool,
}

/// Most problems named one by one; the rest are counted.
const NAMED: usize = 20;

impl Store {
    /// Every session's row as its records back it, folded the way
    /// `write_batch` writes it.
    fn sessions_from_chain(&self) -> Result<BTreeMap<String, Backed>, StoreError> {
        if let Some(pg) = self.pg() {
            let mut out: BTreeMap<String, Backed> = BTreeMap::new();
            pg.walk(0, None, &mut |raw| {
                let [session, _, actor, kind, body, ..] = &raw.fields;
                let entry = out.entry(session.clone()).or_default();
                if entry.actor.is_empty() {
                    entry.actor = actor.clone();
                }
                entry.fold(kind, body);
                Ok(false)
            })?;
            return Ok(out);
        }
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT session_id, actor, kind, body FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut out: BTreeMap<String, Backed> = BTreeMap::new();
        while let Some(r) = rows.next()? {
            let session: String = r.get(0)?;
            let kind: String = r.get(2)?;
            let entry = out.entry(session).or_default();
            if entry.actor.is_empty() {
                entry.actor = r.get(1)?;
            }
            if matches!(
                kind.as_str(),
                "user_message" | "plan_proposed" | "run_finished"
            ) {
                entry.fold(&kind, &r.get::<_, String>(3)?);
            }
        }
        Ok(out)
    }

    /// Rows of `sessions` the chain does not back, named.
    pub fn check_sessions(&self) -> Result<Vec<String>, StoreError> {
        let backed = self.sessions_from_chain()?;
        let stored: Vec<(String, String, Option<String>, Option<String>)> = if let Some(pg) =
            self.pg()
        {
            pg.session_rows()?
        } else {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT id, actor, title, outcome FROM sessions ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut problems = Vec::new();
        let show = |v: &Option<String>| {
            v.as_deref().map_or("(none)".to_string(), |t| {
                format!("`{}`", crate::text::truncate(t, 60))
            })
        };
        for (id, actor, title, outcome) in stored {
            let Some(b) = backed.get(&id) else {
                problems.push(format!("session {id} is listed but no record backs it"));
                continue;
            };
            if actor != b.actor {
                problems.push(format!(
                    "session {id}: the list says actor `{actor}`, its records say `{}`",
                    b.actor
                ));
            }
            if outcome != b.outcome {
                problems.push(format!(
                    "session {id}: the list says outcome {}, its records say {}",
                    show(&outcome),
                    show(&b.outcome)
                ));
            }
            if title != b.title {
                problems.push(format!(
                    "session {id}: the list says title {}, its records say {}",
                    show(&title),
                    show(&b.title)
                ));
            }
        }
        if problems.len() > NAMED {
            let more = problems.len() - NAMED;
            problems.truncate(NAMED);
            problems.push(format!("and {more} more"));
        }
        Ok(problems)
    }

    /// Rewrite `sessions` from the chain (rows no record backs are
    /// removed) and rebuild the search index and the insights tallies;
    /// how many session rows changed.
    pub fn repair_derived(&self) -> Result<usize, StoreError> {
        let backed = self.sessions_from_chain()?;
        if let Some(pg) = self.pg() {
            return pg.repair_sessions(
                backed
                    .into_iter()
                    .map(|(id, b)| (id, b.actor, b.title, b.outcome))
                    .collect(),
            );
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut changed = tx.execute(
            "DELETE FROM sessions WHERE id NOT IN (SELECT DISTINCT session_id FROM events)",
            [],
        )?;
        for (id, b) in &backed {
            changed += tx.execute(
                "UPDATE sessions SET actor = ?2, title = ?3, outcome = ?4
                 WHERE id = ?1 AND (actor IS NOT ?2 OR title IS NOT ?3 OR outcome IS NOT ?4)",
                params![id, b.actor, b.title, b.outcome],
            )?;
        }
        tx.execute("DELETE FROM search", [])?;
        tx.execute("DELETE FROM meta WHERE key = 'indexed_upto'", [])?;
        super::rollup::reset(&tx)?;
        tx.commit()?;
        super::search::catch_up(&conn, None)?;
        super::rollup::catch_up(&conn, None, None)?;
        Ok(changed)
    }

    /// Pins whose signature does not hold (sealed logs only).
    pub fn check_pins(&self, seal: &Seal) -> Result<Vec<String>, StoreError> {
        Ok(self
            .signed_pins(seal)?
            .into_iter()
            .filter(|p| !p.signed)
            .map(|p| {
                format!(
                    "the pin of {} ({}, by {}) was not written by opsbot: review it with `opsbot policy pins diff {0}`",
                    p.tool,
                    crate::text::short(&p.hash),
                    p.by
                )
            })
            .collect())
    }

    /// Every pin, by tool, with whether its signature holds under `seal`.
    fn signed_pins(&self, seal: &Seal) -> Result<Vec<SignedPin>, StoreError> {
        if let Some(pg) = self.pg() {
            return Ok(pg
                .signed_pins()?
                .into_iter()
                .map(|(tool, hash, by, mac)| {
                    let (what, covered) = pin_signed(&tool, &hash, &by);
                    let signed = mac.is_some_and(|m| seal.check(&what, 0, &covered, &m));
                    SignedPin {
                        tool,
                        hash,
                        by,
                        signed,
                    }
                })
                .collect());
        }
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT tool, def_hash, pinned_by, mac FROM pins ORDER BY tool")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (tool, hash, by, mac) = row?;
            let (what, covered) = pin_signed(&tool, &hash, &by);
            let signed = mac.is_some_and(|m| seal.check(&what, 0, &covered, &m));
            out.push(SignedPin {
                tool,
                hash,
                by,
                signed,
            });
        }
        Ok(out)
    }
}

/// The mark policy sees for a pin whose signature fails: no definition
/// has this hash, so the tool is quarantined until its live definition is
/// reviewed and accepted (which signs a new pin).
pub const UNSIGNED_PIN: &str = "unsigned:";

impl Store {
    /// Every pin's hash, as policy should trust it: in a signed log a pin
    /// whose signature fails is marked `unsigned:HASH`.
    pub fn trusted_pins(&self) -> Result<HashMap<String, String>, StoreError> {
        let Some(seal) = self.seal() else {
            return self.pins();
        };
        Ok(self
            .signed_pins(seal)?
            .into_iter()
            .map(|p| {
                let hash = if p.signed {
                    p.hash
                } else {
                    tracing::warn!(
                        "the pin of {} was not written by opsbot: quarantined until reviewed",
                        p.tool
                    );
                    format!("{UNSIGNED_PIN}{}", p.hash)
                };
                (p.tool, hash)
            })
            .collect())
    }
}

/// What a pin's MAC covers: the tool, the definition's hash, who pinned it.
pub(super) fn pin_signed(tool: &str, def_hash: &str, by: &str) -> (String, String) {
    (format!("pin:{tool}"), format!("{def_hash}\0{by}"))
}

/// The MAC for a pin row, when the store signs.
pub(super) fn pin_mac(store: &Store, tool: &str, def_hash: &str, by: &str) -> Option<String> {
    let (what, signed) = pin_signed(tool, def_hash, by);
    store.seal().map(|s| s.mac(&what, 0, &signed))
}
