//! Reviewing a tool whose definition changed after it was pinned, from the
//! store alone (no server is started): the change shown word by word with
//! hidden characters revealed, accepted by the exact hash that was shown,
//! or kept denied. The CLI (`opsbot policy pins`) and the app's review view
//! both go through here.

use super::Runtime;
use crate::session::StoreError;

/// One changed definition waiting for (or refused by) a person.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PinReview {
    pub tool: String,
    pub pinned_hash: String,
    pub pinned_by: String,
    pub pinned_at: String,
    pub new_hash: String,
    pub seen_at: String,
    /// Old vs new, `[-removed-]` and `{+added+}`, hidden characters shown
    /// as `⟨U+XXXX⟩`.
    pub diff: String,
    pub rejected_by: Option<String>,
}

/// Why an accept did not take.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no changed definition of `{0}` waits for review")]
    Nothing(String),
    #[error(
        "the changed definition of `{tool}` is now {now}, not the {shown} that was reviewed: review it again"
    )]
    Moved {
        tool: String,
        shown: String,
        now: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use crate::text::short;

impl Runtime {
    /// Every changed definition kept for review, oldest pin first by tool.
    pub fn pin_reviews(&self) -> Result<Vec<PinReview>, StoreError> {
        let mut out = Vec::new();
        for change in self.store.pin_changes()? {
            let Some(pin) = self.store.pin(&change.tool)? else {
                continue;
            };
            out.push(PinReview {
                diff: crate::text::word_diff(&pin.definition, &change.definition),
                tool: change.tool,
                pinned_hash: pin.def_hash,
                pinned_by: pin.pinned_by,
                pinned_at: pin.pinned_at,
                new_hash: change.def_hash,
                seen_at: change.seen_at,
                rejected_by: change.rejected_by,
            });
        }
        Ok(out)
    }

    /// Re-pin `tool` as the definition whose hash starts with `shown` (at
    /// least 12 characters: what the reviewer saw), by `by`; refused when
    /// the kept change is another one.
    pub fn accept_pin(&self, tool: &str, shown: &str, by: &str) -> Result<String, ReviewError> {
        let change = self
            .store
            .pin_change(tool)?
            .ok_or_else(|| ReviewError::Nothing(tool.to_string()))?;
        let moved = || ReviewError::Moved {
            tool: tool.to_string(),
            shown: shown.to_string(),
            now: short(&change.def_hash).to_string(),
        };
        if shown.len() < 12 || !change.def_hash.starts_with(shown) {
            return Err(moved());
        }
        if !self.store.accept_pin_change(tool, &change.def_hash, by)? {
            return Err(moved());
        }
        if let Ok(mut k) = self.knowledge.lock() {
            k.pins.insert(tool.to_string(), change.def_hash.clone());
        }
        Ok(change.def_hash)
    }

    /// Keep `tool`'s changed definition denied, saying who decided.
    pub fn reject_pin(&self, tool: &str, by: &str) -> Result<(), ReviewError> {
        if self.store.reject_pin_change(tool, by)? {
            Ok(())
        } else {
            Err(ReviewError::Nothing(tool.to_string()))
        }
    }
}
