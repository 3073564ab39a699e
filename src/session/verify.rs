//! Walking the hash chain, and what a person wants to know of it.

use serde::Serialize;

use super::store::{GENESIS, Store, StoreError, link_hash};

/// What walking the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ChainReport {
    Whole {
        events: i64,
    },
    Broken {
        seq: i64,
        problem: String,
    },
    /// The file is damaged: records from `from` on could not be read (up
    /// to `to`, where some were readable again after the damage).
    Unreadable {
        from: i64,
        to: Option<i64>,
        detail: String,
    },
}

/// What `verify` found, with the counts a person wants to see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub report: ChainReport,
    pub sessions: i64,
    /// Records removed by retention before the first one checked.
    pub pruned_events: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
    /// What SQLite's integrity check found (pages and what is wrong with
    /// them); empty when the file is sound.
    pub damage: Vec<String>,
}

impl Store {
    /// Walk every record in order and check each link.
    pub fn verify(&self) -> Result<ChainReport, StoreError> {
        Ok(self.verify_all()?.report)
    }

    /// As `verify`, with counts. The first record that was changed,
    /// deleted or moved is named: a change breaks its own hash, a deletion
    /// leaves a gap in the numbers, a move breaks the link to the record
    /// before it.
    pub fn verify_all(&self) -> Result<Verification, StoreError> {
        // A damaged `pruned` table reads as no pruning: the walk then says
        // where the chain does not start from genesis.
        let start = self.chain_start().unwrap_or(None);
        if let Some(pg) = self.pg() {
            return verify_shared(pg, start);
        }
        let damage = self.damage();
        let conn = self.conn();
        let sessions: i64 = conn
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap_or(0);
        let (mut last_seq, mut prev, pruned_events) = match start {
            Some((upto, hash, events)) => (upto, hash, events),
            None => (0, GENESIS.to_string(), 0),
        };
        let first_seq = last_seq + 1;
        let mut count = 0i64;
        let walked = walk(&conn, &mut |seq, fields: [&str; 7]| {
            let [session, ts, actor, kind, body, prev_hash, hash] = fields;
            let problem = check_link(seq, last_seq, &prev, prev_hash, hash, || {
                link_hash(&prev, seq, session, ts, actor, kind, body)
            });
            if problem.is_none() {
                prev = hash.to_string();
                last_seq = seq;
                count += 1;
            }
            problem.map(|problem| ChainReport::Broken { seq, problem })
        });
        let report = match walked {
            Ok(Some(broken)) => broken,
            Ok(None) => ChainReport::Whole { events: count },
            Err(e) => ChainReport::Unreadable {
                from: last_seq + 1,
                to: readable_again_after(&conn, last_seq),
                detail: e.to_string(),
            },
        };
        Ok(Verification {
            report,
            sessions,
            pruned_events,
            first_seq,
            last_seq,
            last_hash: prev,
            damage,
        })
    }

    /// SQLite's integrity check: what it found wrong, at most 20 lines.
    pub fn damage(&self) -> Vec<String> {
        if self.pg().is_some() {
            return Vec::new();
        }
        let conn = self.conn();
        let rows: Result<Vec<String>, _> = conn
            .prepare("PRAGMA integrity_check(20)")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
        match rows {
            Ok(rows) if rows.first().is_some_and(|r| r == "ok") => Vec::new(),
            Ok(rows) => rows,
            Err(e) => vec![e.to_string()],
        }
    }
}

/// `verify_all` on the shared store: the same walk, a page at a time (the
/// database answers for its own pages, so there is no file damage to read).
fn verify_shared(
    pg: &super::pg::Pg,
    start: Option<(i64, String, i64)>,
) -> Result<Verification, StoreError> {
    let sessions = pg.one_i64("SELECT COUNT(*) FROM sessions", vec![])?;
    let (mut last_seq, mut prev, pruned_events) = match start {
        Some((upto, hash, events)) => (upto, hash, events),
        None => (0, GENESIS.to_string(), 0),
    };
    let first_seq = last_seq + 1;
    let mut count = 0i64;
    let mut broken = None;
    pg.walk(0, None, &mut |raw| {
        let [session, ts, actor, kind, body, prev_hash, hash] = &raw.fields;
        let seq = raw.seq;
        let problem = check_link(seq, last_seq, &prev, prev_hash, hash, || {
            link_hash(&prev, seq, session, ts, actor, kind, body)
        });
        match problem {
            None => {
                prev = hash.clone();
                last_seq = seq;
                count += 1;
                Ok(false)
            }
            Some(problem) => {
                broken = Some(ChainReport::Broken { seq, problem });
                Ok(true)
            }
        }
    })?;
    Ok(Verification {
        report: broken.unwrap_or(ChainReport::Whole { events: count }),
        sessions,
        pruned_events,
        first_seq,
        last_seq,
        last_hash: prev,
        damage: Vec::new(),
    })
}

/// Every record in order, to `visit`, until it returns a verdict; an error
/// is a record that could not be read.
fn walk(
    conn: &rusqlite::Connection,
    visit: &mut dyn FnMut(i64, [&str; 7]) -> Option<ChainReport>,
) -> rusqlite::Result<Option<ChainReport>> {
    let mut stmt = conn.prepare(
        "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let fields: [String; 7] = [
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ];
        let fields = fields.each_ref().map(String::as_str);
        if let Some(verdict) = visit(seq, fields) {
            return Ok(Some(verdict));
        }
    }
    Ok(None)
}

/// After damage at record `last + 1`: the first record that can be read
/// again, probing further and further ahead (the damage is a run of pages).
fn readable_again_after(conn: &rusqlite::Connection, last: i64) -> Option<i64> {
    let max: i64 = conn
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .ok()?;
    let mut step = 1;
    while last + step <= max {
        let probe: rusqlite::Result<i64> = conn.query_row(
            "SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [last + step],
            |r| {
                let _: String = r.get(5)?;
                r.get(0)
            },
        );
        if let Ok(seq) = probe {
            return Some(seq);
        }
        step *= 2;
    }
    None
}

/// What is wrong with one record's place in the chain, if anything.
fn check_link(
    seq: i64,
    last_seq: i64,
    prev: &str,
    prev_hash: &str,
    hash: &str,
    computed: impl FnOnce() -> String,
) -> Option<String> {
    if seq <= last_seq {
        return Some(format!(
            "is numbered {seq} but records up to {last_seq} were pruned"
        ));
    }
    if seq != last_seq + 1 {
        return Some(if seq - 1 == last_seq + 1 {
            format!("record {} is missing (deleted)", last_seq + 1)
        } else {
            format!(
                "records {} to {} are missing (deleted)",
                last_seq + 1,
                seq - 1
            )
        });
    }
    if prev_hash != prev {
        return Some(
            "does not link to the record before it (records were moved, swapped or replaced)"
                .into(),
        );
    }
    if computed() != hash {
        return Some("its content does not match its hash (changed after it was written)".into());
    }
    None
}
