//! The audit log as JSON lines, for a SIEM.
//!
//! Each line is one record: `seq`, `session`, `ts`, `actor`, `kind`, the
//! event as an object (`event`), and what the chain covers: `body` (the
//! event's JSON exactly as stored), `prev_hash` and `hash`. The hash is
//! SHA-256 over prev_hash, seq, session, ts, actor, kind and body, each
//! followed by a NUL byte, so the chain can be checked without opsbot.

use std::io::Write;

use rusqlite::params;
use serde_json::{Value, json};

use super::store::{Store, StoreError};

impl Store {
    /// Write every record at or after `since` (a stored time or a prefix of
    /// one), oldest first; returns how many were written.
    pub fn export_jsonl(
        &self,
        since: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            let mut n = 0;
            pg.walk(0, since, &mut |raw| {
                let [session, ts, actor, kind, body, prev_hash, hash] = &raw.fields;
                write_line(
                    out,
                    raw.seq,
                    [session, ts, actor, kind, body, prev_hash, hash],
                )?;
                n += 1;
                Ok(false)
            })?;
            return Ok(n);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events
             WHERE ?1 IS NULL OR ts >= ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![since])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let fields: [String; 7] = [
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ];
            write_line(out, r.get(0)?, fields.each_ref())?;
            n += 1;
        }
        Ok(n)
    }
}

/// One record as a line: `[session, ts, actor, kind, body, prev_hash, hash]`.
fn write_line(out: &mut dyn Write, seq: i64, fields: [&String; 7]) -> Result<(), StoreError> {
    let [session, ts, actor, kind, body, prev_hash, hash] = fields;
    let event: Value = serde_json::from_str(body)?;
    let line = json!({
        "seq": seq,
        "session": session,
        "ts": ts,
        "actor": actor,
        "kind": kind,
        "event": event,
        "body": body,
        "prev_hash": prev_hash,
        "hash": hash,
    });
    // Controls a terminal would act on are written as \u escapes: the same
    // string to any JSON reader, inert on a screen.
    let text = serde_json::to_string(&line)?;
    out.write_all(crate::sanitize::json_text(&text).as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| StoreError::Export(e.to_string()))
}
