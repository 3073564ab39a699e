//! Policy: every step gets a decision before anything runs, and every
//! decision carries the rule that made it and a reason a person can read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::PolicyConfig;
use crate::mcp::{Catalog, ToolInfo};
use crate::plan::{Plan, Step, StepId};

/// A deliberate confirmation: the user must type `confirm` to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub confirm: String,
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
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::NeedsApproval { gate: Some(_), .. } => "gated",
            Decision::NeedsApproval { .. } => "approve",
            Decision::Deny { .. } => "deny",
        }
    }
}

pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Self {
        Self { config }
    }

    /// Decide every step of a plan.
    pub fn decide_plan(&self, plan: &Plan, catalog: &Catalog) -> Vec<(StepId, Decision)> {
        plan.steps
            .iter()
            .map(|s| (s.id.clone(), self.decide(s, catalog.get(&s.tool))))
            .collect()
    }

    pub fn decide(&self, step: &Step, tool: Option<&ToolInfo>) -> Decision {
        let Some(tool) = tool else {
            return Decision::Deny {
                rule: "builtin.unknown-tool".into(),
                reason: format!("`{}` is not a tool of any connected server", step.tool),
            };
        };
        let env = step.args.get("env").and_then(Value::as_str);
        let target = || {
            env.or_else(|| step.args.get("service").and_then(Value::as_str))
                .unwrap_or(&tool.name)
                .to_string()
        };
        if step.gate {
            return Decision::NeedsApproval {
                rule: "builtin.step-gate".into(),
                reason: format!("the plan marks `{}` as gated", step.id),
                gate: Some(Gate { confirm: target() }),
            };
        }
        if !tool.annotations.read_only
            && let Some(env) = env.filter(|e| self.config.gated_envs.iter().any(|g| g == e))
        {
            return Decision::NeedsApproval {
                rule: "builtin.gated-env".into(),
                reason: format!("{} changes {env}, a gated environment", step.tool),
                gate: Some(Gate {
                    confirm: env.to_string(),
                }),
            };
        }
        if tool.annotations.destructive && self.config.gate_destructive {
            return Decision::NeedsApproval {
                rule: "builtin.destructive".into(),
                reason: format!("{} is marked destructive by its server", step.tool),
                gate: Some(Gate { confirm: target() }),
            };
        }
        if tool.annotations.read_only {
            Decision::Allow {
                rule: "builtin.read-only".into(),
                reason: format!("{} only reads", step.tool),
            }
        } else {
            Decision::NeedsApproval {
                rule: "builtin.changes-state".into(),
                reason: format!("{} changes state", step.tool),
                gate: None,
            }
        }
    }
}

/// What an approval is bound to: the step's tool and exact arguments.
pub fn args_hash(tool: &str, args: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0u8]);
    h.update(Value::Object(args.clone()).to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Annotations;
    use serde_json::json;

    fn tool(name: &str, read_only: bool, destructive: bool) -> ToolInfo {
        ToolInfo {
            server: "k8s".into(),
            name: name.into(),
            description: String::new(),
            input_schema: json!({}),
            annotations: Annotations {
                read_only,
                destructive,
                idempotent: false,
                open_world: false,
            },
            def_hash: String::new(),
        }
    }

    fn step(tool: &str, args: serde_json::Value) -> Step {
        let serde_json::Value::Object(args) = args else {
            unreachable!()
        };
        Step {
            id: StepId::new("s"),
            tool: tool.into(),
            args,
            depends_on: vec![],
            description: String::new(),
            gate: false,
            timeout_ms: None,
        }
    }

    #[test]
    fn decisions_carry_rule_and_reason() {
        let p = Policy::new(PolicyConfig::default());
        let deploy = tool("deploy", false, false);
        let d = p.decide(
            &step("k8s.deploy", json!({"env":"production"})),
            Some(&deploy),
        );
        assert_eq!(d.rule(), "builtin.gated-env");
        assert_eq!(
            d.gate(),
            Some(&Gate {
                confirm: "production".into()
            })
        );
        assert_eq!(
            d.reason(),
            "k8s.deploy changes production, a gated environment"
        );
        let d = p.decide(&step("k8s.deploy", json!({"env":"staging"})), Some(&deploy));
        assert_eq!(d.label(), "approve");
        let d = p.decide(
            &step("k8s.status", json!({"env":"production"})),
            Some(&tool("status", true, false)),
        );
        assert_eq!(d.label(), "allow", "reading production is not gated");
        let d = p.decide(
            &step("k8s.rollback", json!({"env":"dev", "service":"x"})),
            Some(&tool("rollback", false, true)),
        );
        assert_eq!(d.rule(), "builtin.destructive");
        let d = p.decide(&step("k8s.nope", json!({})), None);
        assert!(d.is_denied());
    }

    #[test]
    fn approval_binding_changes_with_args() {
        let a = args_hash(
            "k8s.deploy",
            json!({"env":"staging"})
                .as_object()
                .cloned()
                .as_ref()
                .unwrap_or(&Map::new()),
        );
        let b = args_hash(
            "k8s.deploy",
            json!({"env":"production"})
                .as_object()
                .cloned()
                .as_ref()
                .unwrap_or(&Map::new()),
        );
        assert_ne!(a, b);
    }
}
