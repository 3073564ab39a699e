//! Pinned tool definitions: the hash and text of each tool's definition the
//! first time it was used, so a later change can be shown and reviewed.

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

impl Store {
    /// Every pinned tool's definition hash.
    pub fn pins(&self) -> Result<HashMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT tool, def_hash FROM pins")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pin(&self, tool: &str) -> Result<Option<Pin>, StoreError> {
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
            "INSERT OR REPLACE INTO pins (tool, def_hash, definition, pinned_at, pinned_by) VALUES (?1, ?2, ?3, ?4, ?5)"
        } else {
            "INSERT OR IGNORE INTO pins (tool, def_hash, definition, pinned_at, pinned_by) VALUES (?1, ?2, ?3, ?4, ?5)"
        };
        self.conn().execute(
            sql,
            params![tool, def_hash, definition, super::store::now_rfc3339(), by],
        )?;
        Ok(())
    }
}
