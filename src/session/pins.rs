//! Pinned tool definitions: the hash and text of each tool's definition
//! when it was first listed (or used), and the changed definition a server
//! served later, kept when it was seen, so a change is shown, accepted by
//! its hash or rejected without starting the server again.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::store::{Store, StoreError};

/// A pinned definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub tool: String,
    pub def_hash: String,
    /// The definition as JSON (description, schema, annotations).
    pub definition: String,
    pub pinned_at: String,
    pub pinned_by: String,
}

/// A definition served differently from its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinChange {
    pub tool: String,
    pub def_hash: String,
    pub definition: String,
    pub seen_at: String,
    /// Who rejected it, when someone did.
    pub rejected_by: Option<String>,
}

const CHANGE_COLUMNS: &str =
    "SELECT tool, def_hash, definition, seen_at, rejected_by FROM pin_changes";

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PinChange> {
    Ok(PinChange {
        tool: r.get(0)?,
        def_hash: r.get(1)?,
        definition: r.get(2)?,
        seen_at: r.get(3)?,
        rejected_by: r.get(4)?,
    })
}

impl Store {
    /// Keep the changed definition of a pinned tool (the newest one seen).
    pub fn note_pin_change(
        &self,
        tool: &str,
        def_hash: &str,
        definition: &str,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.note_pin_change(tool, def_hash, definition, super::store::now_rfc3339());
        }
        self.conn().execute(
            "INSERT INTO pin_changes (tool, def_hash, definition, seen_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tool) DO UPDATE SET def_hash = ?2, definition = ?3, seen_at = ?4,
               rejected_by = CASE WHEN def_hash = ?2 THEN rejected_by ELSE NULL END",
            params![tool, def_hash, definition, super::store::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Every kept change, by tool: what is waiting for review.
    pub fn pin_changes(&self) -> Result<Vec<PinChange>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.pin_changes(None);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{CHANGE_COLUMNS} ORDER BY tool"))?;
        let rows = stmt.query_map([], change_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pin_change(&self, tool: &str) -> Result<Option<PinChange>, StoreError> {
        if let Some(pg) = self.pg() {
            return Ok(pg.pin_changes(Some(tool))?.pop());
        }
        Ok(self
            .conn()
            .query_row(
                &format!("{CHANGE_COLUMNS} WHERE tool = ?1"),
                params![tool],
                change_row,
            )
            .optional()?)
    }

    /// Accept the change with hash `def_hash` (the one reviewed): it
    /// becomes the pin. Refused when the kept change has another hash.
    pub fn accept_pin_change(
        &self,
        tool: &str,
        def_hash: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let Some(change) = self.pin_change(tool)? else {
            return Ok(false);
        };
        if change.def_hash != def_hash {
            return Ok(false);
        }
        self.set_pin(tool, &change.def_hash, &change.definition, by, true)?;
        if let Some(pg) = self.pg() {
            pg.delete_pin_change(tool)?;
            return Ok(true);
        }
        self.conn()
            .execute("DELETE FROM pin_changes WHERE tool = ?1", params![tool])?;
        Ok(true)
    }

    /// Keep the change denied, saying who decided.
    pub fn reject_pin_change(&self, tool: &str, by: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.reject_pin_change(tool, by);
        }
        let n = self.conn().execute(
            "UPDATE pin_changes SET rejected_by = ?2 WHERE tool = ?1",
            params![tool, by],
        )?;
        Ok(n > 0)
    }

    /// Every pinned tool's definition hash.
    pub fn pins(&self) -> Result<HashMap<String, String>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.pins());
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT tool, def_hash FROM pins")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pin(&self, tool: &str) -> Result<Option<Pin>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.pin(tool);
        }
        Ok(self
            .conn()
            .query_row(
                "SELECT tool, def_hash, definition, pinned_at, pinned_by FROM pins WHERE tool = ?1",
                params![tool],
                |r| {
                    Ok(Pin {
                        tool: r.get(0)?,
                        def_hash: r.get(1)?,
                        definition: r.get(2)?,
                        pinned_at: r.get(3)?,
                        pinned_by: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Pin each of these definitions not pinned yet, in one transaction
    /// (a server's whole list, when it is first listed).
    pub fn pin_new(&self, defs: &[(String, String, String)], by: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            let pins = defs
                .iter()
                .map(|(tool, hash, definition)| {
                    let mac = super::derived::pin_mac(self, tool, hash, by);
                    (tool.clone(), hash.clone(), definition.clone(), mac)
                })
                .collect();
            return pg.set_pins(pins, by, super::store::now_rfc3339(), false);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = super::store::now_rfc3339();
        for (tool, hash, definition) in defs {
            let mac = super::derived::pin_mac(self, tool, hash, by);
            tx.prepare_cached(
                "INSERT OR IGNORE INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![tool, hash, definition, now, by, mac])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Pin a definition; `replace` re-pins one already pinned.
    pub fn set_pin(
        &self,
        tool: &str,
        def_hash: &str,
        definition: &str,
        by: &str,
        replace: bool,
    ) -> Result<(), StoreError> {
        let sql = if replace {
            "INSERT OR REPLACE INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        } else {
            "INSERT OR IGNORE INTO pins (tool, def_hash, definition, pinned_at, pinned_by, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        };
        let mac = super::derived::pin_mac(self, tool, def_hash, by);
        if let Some(pg) = self.pg() {
            let pin = (
                tool.to_string(),
                def_hash.to_string(),
                definition.to_string(),
                mac,
            );
            return pg.set_pins(vec![pin], by, super::store::now_rfc3339(), replace);
        }
        self.conn().execute(
            sql,
            params![
                tool,
                def_hash,
                definition,
                super::store::now_rfc3339(),
                by,
                mac
            ],
        )?;
        Ok(())
    }
}
