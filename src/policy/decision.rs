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

/// Four eyes: whose approvals a step needs before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// How many different people.
    pub approvers: u32,
    /// The requester's own approval does not count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_requester: bool,
    /// Each approver needs one of these roles (none: anyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The rule that asks for it.
    pub rule: String,
}

impl Quorum {
    /// The stricter of two: more approvers wins; the requester and role
    /// limits of both hold.
    pub fn merge(self, other: Quorum) -> Quorum {
        let (mut base, extra) = if other.approvers > self.approvers {
            (other, self)
        } else {
            (self, other)
        };
        base.not_requester |= extra.not_requester;
        for r in extra.roles {
            if !base.roles.contains(&r) {
                base.roles.push(r);
            }
        }
        base
    }

    /// Why `approver` cannot be one of the approvers, if they cannot:
    /// the requester themselves, or without a role the rule asks for.
    pub fn refuses(&self, approver: &str, roles: &[String], requester: &str) -> Option<String> {
        let who = person(approver);
        if self.not_requester && who == person(requester) {
            return Some(format!(
                "{who}'s own approval does not count here: {} asks for someone other than the requester",
                self.rule
            ));
        }
        if !self.roles.is_empty() && !roles.iter().any(|r| self.roles.contains(r)) {
            return Some(format!(
                "{} asks for an approver with role {}; {who} has {}",
                self.rule,
                self.roles.join(" or "),
                if roles.is_empty() {
                    "none".to_string()
                } else {
                    roles.join(", ")
                }
            ));
        }
        None
    }

    /// The different people whose approvals (`by`, arguments' hash) count
    /// for a call with arguments `hash`, in the order they came.
    pub fn counted<'a>(
        &self,
        approvals: impl IntoIterator<Item = (&'a str, &'a str)>,
        hash: &str,
        requester: &str,
        roles_of: impl Fn(&str) -> Vec<String>,
    ) -> Vec<String> {
        let mut people: Vec<String> = Vec::new();
        for (by, bound) in approvals {
            let who = person(by).to_string();
            if bound != hash || people.contains(&who) {
                continue;
            }
            if self.refuses(&who, &roles_of(&who), requester).is_none() {
                people.push(who);
            }
        }
        people
    }

    /// Who must still approve, in words: "1 more approval from someone
    /// other than alice, with role sre".
    pub fn wanted(&self, have: usize, requester: &str) -> String {
        let more = (self.approvers as usize).saturating_sub(have);
        let mut s = format!(
            "{more} more approval{} ({} of {} given)",
            if more == 1 { "" } else { "s" },
            have.min(self.approvers as usize),
            self.approvers
        );
        if self.not_requester {
            s.push_str(&format!(" from someone other than {requester}"));
        }
        if !self.roles.is_empty() {
            s.push_str(&format!(" with role {}", self.roles.join(" or ")));
        }
        s.push_str(&format!(" [{}]", self.rule));
        s
    }
}

/// The person behind an approval's `by`: "alice (via Claude 1.2)" and
/// "alice (k8s.status is trusted for this session)" are both alice.
pub fn person(by: &str) -> &str {
    by.split(" (").next().unwrap_or(by).trim()
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
        /// Four eyes: approvals from these people, not only the requester.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quorum: Option<Box<Quorum>>,
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
    pub fn quorum(&self) -> Option<&Quorum> {
        match self {
            Decision::NeedsApproval { quorum, .. } => quorum.as_deref(),
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
