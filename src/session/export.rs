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
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, session_id, ts, actor, kind, body, prev_hash, hash FROM events
             WHERE ?1 IS NULL OR ts >= ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![since])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let body: String = r.get(5)?;
            let event: Value = serde_json::from_str(&body)?;
            let line = json!({
                "seq": r.get::<_, i64>(0)?,
                "session": r.get::<_, String>(1)?,
                "ts": r.get::<_, String>(2)?,
                "actor": r.get::<_, String>(3)?,
                "kind": r.get::<_, String>(4)?,
                "event": event,
                "body": body,
                "prev_hash": r.get::<_, String>(6)?,
                "hash": r.get::<_, String>(7)?,
            });
            // Controls a terminal would act on are written as \u escapes:
            // the same string to any JSON reader, inert on a screen.
            let text = serde_json::to_string(&line)?;
            out.write_all(crate::sanitize::json_text(&text).as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| StoreError::Export(e.to_string()))?;
            n += 1;
        }
        Ok(n)
    }
}
