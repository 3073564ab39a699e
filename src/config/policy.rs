//! The shape of `[policy]`: roles, rules, effects, freezes and rate limits.
//! Expressions (`when`), patterns, durations and times are strings here;
//! `policy::compile` turns them into checked values, and a bad one is a
//! load error pointing at its table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One pattern or several: `tools = "k8s.*"` or `tools = ["k8s.deploy", "*.delete_*"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns::One("*".into())
    }
}

impl Patterns {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Patterns::One(p) => vec![p.as_str()],
            Patterns::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    #[default]
    Approve,
    Deny,
}

/// How an approval is given: a plain approval, or typing the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirm {
    #[default]
    Click,
    Typed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// For a state-changing tool no rule matches: allow, approve or deny.
    /// Read-only tools are allowed and destructive ones gated unless a rule
    /// says otherwise.
    pub default: Verdict,
    /// Steps whose `env` argument names one of these need a typed confirmation.
    pub gated_envs: Vec<String>,
    /// Tools the server marks destructive need a typed confirmation.
    pub gate_destructive: bool,
    /// Whether `--as USER` may name someone other than the OS user.
    pub allow_as: bool,
    /// Roles of users not listed in `users`.
    pub default_roles: Vec<String>,
    /// User → roles.
    pub users: BTreeMap<String, Vec<String>>,
    pub rules: BTreeMap<String, RuleConfig>,
    pub effects: Vec<EffectConfig>,
    pub freezes: BTreeMap<String, FreezeConfig>,
    pub limits: BTreeMap<String, LimitConfig>,
    /// Quarantine a tool whose definition changed since it was first used.
    pub pin_tools: bool,
    /// Deny tools whose definitions the scan flags (hidden characters,
    /// instructions to the model, shadowing, exfiltration, suspicious
    /// URLs) instead of asking for approval.
    pub deny_flagged: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default: Verdict::Approve,
            gated_envs: vec!["production".into()],
            gate_destructive: true,
            allow_as: false,
            default_roles: Vec::new(),
            users: BTreeMap::new(),
            rules: BTreeMap::new(),
            effects: Vec::new(),
            freezes: BTreeMap::new(),
            limits: BTreeMap::new(),
            pin_tools: true,
            deny_flagged: false,
        }
    }
}

/// A rule: which calls it matches, and what it says about them. With
/// `requires` or `forbids` it is an ordering rule: its verdict applies only
/// when the requirement is not met (or the forbidden effect is present).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    pub tools: Patterns,
    /// A condition on the arguments, e.g. `env == "production" and replicas > 10`.
    pub when: Option<String>,
    /// Applies to actors with any of these roles; empty means everyone.
    pub roles: Vec<String>,
    pub verdict: Option<Verdict>,
    pub confirm: Confirm,
    pub reason: String,
    /// Effects that must exist first (`tests.passed`), scoped by `scope`.
    pub requires: Vec<String>,
    /// Effects that must not exist (`backup.failed`), scoped by `scope`.
    pub forbids: Vec<String>,
    /// Arguments the effects must share with this call; default: each
    /// effect's own scope.
    pub scope: Option<Vec<String>>,
    /// How far back an effect counts (`4h`); default: this session only.
    pub within: Option<String>,
    /// Four eyes: how many people must approve (the rule's verdict is
    /// then `approve`).
    pub approvers: u32,
    /// The person who asked for the call cannot be one of them.
    pub approver_not_requester: bool,
    /// Approvers need one of these roles ([policy.users]).
    pub approver_roles: Vec<String>,
}

/// A successful (or failed) call that leaves an effect later rules can
/// require or forbid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EffectConfig {
    pub effect: String,
    pub tools: Patterns,
    /// `success` (the default) or `failure`.
    pub on: EffectOn,
    /// A condition on the arguments and `result.*`.
    pub when: Option<String>,
    /// Arguments that scope the effect, e.g. `["service"]`.
    pub scope: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectOn {
    #[default]
    Success,
    Failure,
}

/// A change freeze: matching calls are denied inside its window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreezeConfig {
    pub tools: Patterns,
    pub when: Option<String>,
    /// Weekdays (`mon` … `sun`); empty means every day.
    pub days: Vec<String>,
    /// Daily window, `HH:MM`, in `utc_offset`; default the whole day.
    pub from: Option<String>,
    pub to: Option<String>,
    /// e.g. `+01:00`; default UTC.
    pub utc_offset: Option<String>,
    /// Absolute bounds (RFC 3339), e.g. a holiday freeze.
    pub start: Option<String>,
    pub end: Option<String>,
    pub reason: String,
    /// An approval with a typed confirmation and a written reason may
    /// override the freeze.
    pub allow_override: bool,
}

/// At most `max` matching calls per actor within `per`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    pub tools: Patterns,
    pub max: u32,
    pub per: String,
    /// Applies to actors with any of these roles; empty means everyone.
    pub roles: Vec<String>,
}
