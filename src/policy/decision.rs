//! What policy says about one call: allowed, needs approval (perhaps with
//! a typed confirmation), or denied, always with the rule and a reason.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A deliberate confirmation: the user must type `confirm` to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub confirm: String,
    /// Overriding a change freeze: the approver must also say why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reason_required: bool,
}

impl Gate {
    pub fn typed(confirm: impl Into<String>) -> Self {
        Self {
            confirm: confirm.into(),
            reason_required: false,
        }
    }

    /// Check what the approver typed: the target, and, when the gate
    /// overrides a freeze, a reason after it. Returns the reason.
    pub fn check(&self, typed: &str) -> Result<Option<String>, String> {
        let typed = typed.trim();
        if !self.reason_required {
            return if typed == self.confirm {
                Ok(None)
            } else {
                Err(format!(
                    "that does not match: type `{}` exactly to confirm",
                    self.confirm
                ))
            };
        }
        let example = format!(
            "this overrides a change freeze: type `{0}` and then why, e.g. `{0} hotfix for INC-123`",
            self.confirm
        );
        let Some(rest) = typed.strip_prefix(self.confirm.as_str()) else {
            return Err(example);
        };
        let reason = rest.trim_start_matches([' ', ':', '-', ',']).trim();
        if reason.chars().count() < 8 || !rest.starts_with([' ', ':', '-', ',']) {
            return Err(example);
        }
        Ok(Some(reason.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Decision {
    Allow {
        rule: String,
        reason: String,
    },
    NeedsApproval {
        rule: String,
        reason: String,
        gate: Option<Gate>,
    },
    Deny {
        rule: String,
        reason: String,
    },
}

impl Decision {
    /// The same decision, its reason extended by `more`.
    pub fn also(mut self, more: &str) -> Self {
        match &mut self {
            Decision::Allow { reason, .. }
            | Decision::NeedsApproval { reason, .. }
            | Decision::Deny { reason, .. } => {
                reason.push_str("; ");
                reason.push_str(more);
            }
        }
        self
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason, .. }
            | Decision::NeedsApproval { reason, .. }
            | Decision::Deny { reason, .. } => reason,
        }
    }
    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule, .. }
            | Decision::NeedsApproval { rule, .. }
            | Decision::Deny { rule, .. } => rule,
        }
    }
    pub fn gate(&self) -> Option<&Gate> {
        match self {
            Decision::NeedsApproval { gate, .. } => gate.as_ref(),
            _ => None,
        }
    }
    pub fn is_denied(&self) -> bool {
        matches!(self, Decision::Deny { .. })
    }
    /// How strongly it holds a call back: deny > typed approval > approval > allow.
    pub fn weight(&self) -> u8 {
        match self {
            Decision::Allow { .. } => 0,
            Decision::NeedsApproval { gate: None, .. } => 1,
            Decision::NeedsApproval { gate: Some(_), .. } => 2,
            Decision::Deny { .. } => 3,
        }
    }
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::NeedsApproval { gate: Some(_), .. } => "gated",
            Decision::NeedsApproval { .. } => "approve",
            Decision::Deny { .. } => "deny",
        }
    }
}

/// What an approval is bound to: the step's tool and exact arguments.
pub fn args_hash(tool: &str, args: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_vec(args).unwrap_or_default());
    crate::text::hex(&h.finalize())
}
