//! Policy: every step gets a decision before anything runs, and every call
//! is checked again when it is about to run. Every decision carries the
//! rule that made it and a reason a person can read.
//!
//! Precedence: deny wins over approval, approval over allow. Built-in
//! rules (unknown tools, quarantined definitions, gated environments, steps
//! marked gated, freezes, rate limits) always apply; with no configured
//! rule matching, the default follows the tool's annotations (read-only →
//! allow, destructive → typed approval) and then `[policy] default`.

pub mod cond;
mod decision;
mod effects;
pub mod history;
mod lint;
mod pattern;
mod rules;
pub mod scan;
pub mod schedule;

use std::collections::HashMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use decision::{Decision, Gate, Quorum, args_hash, person};
pub use history::{History, ScopeMap, Since};
pub use lint::Problem;
pub use pattern::Pattern;
pub use rules::CompileError;

use crate::config::{Confirm, PolicyConfig, Verdict};
use crate::mcp::{Catalog, ToolInfo};
use crate::plan::{Plan, StepId};
use cond::{Scope, Truth};
use rules::{Compiled, Kind};

/// Who is asking, when, and what has happened.
pub struct Context<'a> {
    pub actor: &'a str,
    pub roles: &'a [String],
    pub session: &'a str,
    pub now: OffsetDateTime,
    pub history: &'a History,
    /// Pinned definition hashes by tool.
    pub pins: &'a HashMap<String, String>,
    /// Effects that steps this one depends on will leave (plan-time only).
    pub planned: &'a [(String, ScopeMap)],
}

/// One call as policy sees it.
pub struct Call<'a> {
    pub tool: &'a str,
    pub args: &'a Map<String, Value>,
    /// The plan marks the step as gated.
    pub gated: bool,
}

/// One line of `policy explain`: a rule and what it made of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub rule: String,
    pub applied: bool,
    pub note: String,
}

pub struct Policy {
    config: PolicyConfig,
    compiled: Compiled,
    /// Which arguments name environments, and which environments exist.
    estate: crate::estate::Estate,
}

fn role_ok(required: &[String], roles: &[String]) -> bool {
    required.is_empty() || required.iter().any(|r| roles.contains(r))
}

/// The confirmation word for a typed approval: the environment, else the
/// service, else the tool's name.
fn target(call: &Call<'_>) -> String {
    ["env", "service"]
        .iter()
        .find_map(|k| call.args.get(*k).and_then(Value::as_str))
        .unwrap_or_else(|| call.tool.rsplit('.').next().unwrap_or(call.tool))
        .to_string()
}

fn describe_scope(scope: &ScopeMap) -> String {
    if scope.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Result<Self, CompileError> {
        let compiled = rules::compile(&config)?;
        Ok(Self {
            config,
            compiled,
            estate: crate::estate::Estate::default(),
        })
    }

    /// Decide with the estate's environments: arguments it names as
    /// environment-like are checked against `gated_envs`, and a value it
    /// does not know is gated like the most guarded environment.
    pub fn with_estate(mut self, estate: crate::estate::Estate) -> Self {
        self.estate = estate;
        self
    }

    /// The estate policy decides with.
    pub fn estate(&self) -> &crate::estate::Estate {
        &self.estate
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The roles of an actor.
    pub fn roles_of(&self, actor: &str) -> Vec<String> {
        self.config
            .users
            .get(actor)
            .cloned()
            .unwrap_or_else(|| self.config.default_roles.clone())
    }

    /// How far back history must reach for the rules and limits.
    pub fn horizon(&self) -> Option<time::Duration> {
        self.compiled.horizon
    }

    /// Decide every step of a plan as a whole: a step's requirement may be
    /// met by a step it depends on (directly or not), which runs first.
    pub fn decide_plan(
        &self,
        plan: &Plan,
        catalog: &Catalog,
        ctx: &Context<'_>,
    ) -> Vec<(StepId, Decision)> {
        let leaves: HashMap<&StepId, Vec<(String, ScopeMap)>> = plan
            .steps
            .iter()
            .map(|s| (&s.id, self.promised_effects(&s.tool, &s.args)))
            .collect();
        plan.steps
            .iter()
            .map(|s| {
                let planned: Vec<(String, ScopeMap)> = plan
                    .ancestors(&s.id)
                    .iter()
                    .filter_map(|id| leaves.get(id))
                    .flatten()
                    .cloned()
                    .collect();
                let ctx = Context {
                    planned: &planned,
                    ..*ctx
                };
                let call = Call {
                    tool: &s.tool,
                    args: &s.args,
                    gated: s.gate,
                };
                (
                    s.id.clone(),
                    self.decide(&call, catalog.get(&s.tool), &ctx, None),
                )
            })
            .collect()
    }

    /// The gates a state-changing call's environment arguments call for:
    /// a gated environment, or one opsbot does not know (treated as the
    /// most guarded, unless a configured rule names it).
    fn environment_gates(&self, call: &Call<'_>) -> Vec<Decision> {
        let env_args: Vec<&str> = if self.estate.env_args.is_empty() {
            vec!["env"]
        } else {
            self.estate.env_args.iter().map(String::as_str).collect()
        };
        let mut out = Vec::new();
        for arg in env_args {
            let Some(env) = call.args.get(arg).and_then(Value::as_str) else {
                continue;
            };
            if self.config.gated_envs.iter().any(|g| g == env) {
                out.push(Decision::NeedsApproval {
                    rule: "builtin.gated-env".into(),
                    reason: format!("{} changes {env}, a gated environment", call.tool),
                    gate: Some(Gate::typed(env)),
                    quorum: None,
                });
            }
        }
        for (arg, env) in self.estate.unknown_envs(call.args) {
            if self.compiled.names_value(call.tool, arg, env) {
                continue;
            }
            out.push(Decision::NeedsApproval {
                rule: "builtin.unknown-env".into(),
                reason: format!(
                    "`{env}` ({arg}) is not an environment opsbot knows ({}); it is treated like the most guarded one. Add it to [estate] envs, or an alias, if it is real",
                    self.estate.envs.join(", ")
                ),
                gate: Some(Gate::typed(env)),
                quorum: None,
            });
        }
        out
    }

    /// The decision for one call; with `trace`, every rule's verdict on it.
    pub fn decide(
        &self,
        call: &Call<'_>,
        tool: Option<&ToolInfo>,
        ctx: &Context<'_>,
        trace: Option<&mut Vec<Trace>>,
    ) -> Decision {
        self.decide_with(call, tool, ctx, trace, true)
    }

    /// Whether the actor is denied `tool` whatever the arguments (roles,
    /// quarantine, rules with no condition): what a served client's
    /// `tools/list` leaves out. A condition on arguments it does not know
    /// does not count here; each call is still decided with its own.
    pub fn denies_outright(
        &self,
        tool_name: &str,
        tool: Option<&ToolInfo>,
        ctx: &Context<'_>,
    ) -> bool {
        let none = Map::new();
        let call = Call {
            tool: tool_name,
            args: &none,
            gated: false,
        };
        self.decide_with(&call, tool, ctx, None, false).is_denied()
    }

    /// `decide`; `unknown_counts` says whether a condition that cannot be
    /// evaluated counts against the call (it does, except for a probe with
    /// no arguments).
    fn decide_with(
        &self,
        call: &Call<'_>,
        tool: Option<&ToolInfo>,
        ctx: &Context<'_>,
        mut trace: Option<&mut Vec<Trace>>,
        unknown_counts: bool,
    ) -> Decision {
        let check = |w: &cond::Expr, scope: &Scope<'_>| match w.check(scope) {
            Truth::Unknown(_) if !unknown_counts => Truth::Fails,
            t => t,
        };
        // Notes are built only when someone asked for the trace: a decision
        // is on the path of every call and must not allocate per rule.
        let mut note = |make: &dyn Fn() -> (String, bool, String)| {
            if let Some(t) = trace.as_deref_mut() {
                let (rule, applied, note) = make();
                t.push(Trace {
                    rule,
                    applied,
                    note,
                });
            }
        };
        let Some(tool) = tool else {
            let reason = format!("`{}` is not a tool of any connected server", call.tool);
            note(&|| ("builtin.unknown-tool".into(), true, reason.clone()));
            return Decision::Deny {
                rule: "builtin.unknown-tool".into(),
                reason,
            };
        };
        if self.config.pin_tools
            && let Some(pinned) = ctx.pins.get(call.tool)
            && *pinned != tool.def_hash
        {
            let reason = if pinned.starts_with(crate::session::UNSIGNED_PIN) {
                format!(
                    "{}'s pin was not written by opsbot (it was edited in the store); it is quarantined until you review its definition (opsbot policy pins diff {0}) and re-pin it (opsbot policy pins accept {0})",
                    call.tool
                )
            } else {
                format!(
                    "{}'s definition changed since it was first used; it is quarantined until you review it (opsbot policy pins diff {0}) and re-pin it (opsbot policy pins accept {0})",
                    call.tool
                )
            };
            note(&|| ("builtin.pin-changed".into(), true, reason.clone()));
            return Decision::Deny {
                rule: "builtin.pin-changed".into(),
                reason,
            };
        }
        let mut best: Option<Decision> = None;
        let mut wanted: Option<Quorum> = None;
        let mut consider = |d: Decision| {
            if best.as_ref().is_none_or(|b| d.weight() > b.weight()) {
                best = Some(d);
            }
        };
        let scope = Scope {
            args: call.args,
            result: None,
        };
        // A flagged definition is never trusted silently: it needs a typed
        // approval (a high finding) or an approval, or is denied outright
        // with `deny_flagged`.
        let found = scan::tool(tool);
        let worst = found.iter().min_by_key(|f| std::cmp::Reverse(f.severity));
        if let Some(worst) = worst {
            let reason = format!(
                "{} is flagged ({} finding{}): {worst}",
                call.tool,
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            );
            let rule = worst.rule.to_string();
            note(&|| (rule.clone(), true, reason.clone()));
            if self.config.deny_flagged {
                return Decision::Deny { rule, reason };
            }
            consider(Decision::NeedsApproval {
                rule,
                reason,
                gate: (worst.severity == scan::Severity::High).then(|| Gate::typed(target(call))),
                quorum: None,
            });
        }
        if call.gated {
            let reason = "the plan marks this step as gated".to_string();
            note(&|| ("builtin.step-gate".into(), true, reason.clone()));
            consider(Decision::NeedsApproval {
                rule: "builtin.step-gate".into(),
                reason,
                gate: Some(Gate::typed(target(call))),
                quorum: None,
            });
        }
        if !tool.annotations.read_only {
            for d in self.environment_gates(call) {
                note(&|| (d.rule().to_string(), true, d.reason().to_string()));
                consider(d);
            }
        }
        for f in &self.compiled.freezes {
            let id = || format!("freeze.{}", f.id);
            // A freeze is restrictive: a condition it cannot evaluate holds.
            let truth = f
                .tools
                .matches(call.tool)
                .then(|| f.when.as_ref().map(|w| check(w, &scope)));
            match truth {
                None | Some(Some(Truth::Fails)) => {
                    note(&|| (id(), false, "does not match this call".into()));
                    continue;
                }
                Some(Some(Truth::Unknown(why))) => note(&|| {
                    (
                        id(),
                        true,
                        format!(
                            "its condition cannot be evaluated ({why}), so it counts against the call"
                        ),
                    )
                }),
                _ => {}
            }
            if !f.window.contains(ctx.now) {
                note(&|| (id(), false, "matches, but the freeze is not on now".into()));
                continue;
            }
            let reason = format!("change freeze `{}`: {}", f.id, f.reason);
            note(&|| (id(), true, reason.clone()));
            consider(if f.allow_override {
                Decision::NeedsApproval {
                    rule: id(),
                    reason: format!("{reason} (an approver may override it, giving a reason)"),
                    gate: Some(Gate {
                        confirm: target(call),
                        reason_required: true,
                    }),
                    quorum: None,
                }
            } else {
                Decision::Deny { rule: id(), reason }
            });
        }
        for l in &self.compiled.limits {
            let id = || format!("limit.{}", l.id);
            if !l.tools.matches(call.tool) || !role_ok(&l.roles, ctx.roles) {
                note(&|| (id(), false, "does not match this call".into()));
                continue;
            }
            let used: usize = l
                .tools
                .0
                .iter()
                .map(|p| ctx.history.calls(ctx.actor, p, ctx.now - l.per))
                .sum();
            if used < l.max as usize {
                note(&|| {
                    (
                        id(),
                        false,
                        format!("{used} of {} calls used in the last {}", l.max, l.per_text),
                    )
                });
                continue;
            }
            let reason = format!(
                "rate limit `{}`: {} may make {} calls to {} per {}, and has made {used}",
                l.id,
                ctx.actor,
                l.max,
                l.tools.describe(),
                l.per_text
            );
            note(&|| (id(), true, reason.clone()));
            consider(Decision::Deny { rule: id(), reason });
        }
        let mut verdict_matched = false;
        for rule in self.compiled.candidates(call.tool) {
            if !rule.tools.matches(call.tool) {
                continue;
            }
            let id = || format!("rule.{}", rule.id);
            if !role_ok(&rule.roles, ctx.roles) {
                note(&|| {
                    (
                        id(),
                        false,
                        format!("only for roles {}", rule.roles.join(", ")),
                    )
                });
                continue;
            }
            let when = rule.when_text.as_deref().unwrap_or_default();
            // A condition that cannot be evaluated counts against the call:
            // a restricting rule applies, an allowing one does not.
            let mut unevaluable = None;
            match rule.when.as_ref().map(|w| check(w, &scope)) {
                Some(Truth::Fails) => {
                    note(&|| (id(), false, format!("`{when}` does not hold")));
                    continue;
                }
                Some(Truth::Unknown(why)) if rule.verdict == Verdict::Allow => {
                    note(&|| {
                        (
                            id(),
                            false,
                            format!(
                                "`{when}` cannot be evaluated ({why}), so it does not allow the call"
                            ),
                        )
                    });
                    continue;
                }
                Some(Truth::Unknown(why)) => unevaluable = Some(why),
                _ => {}
            }
            let reason = match &rule.kind {
                Kind::Verdict => {
                    verdict_matched = true;
                    rule.reason.clone()
                }
                Kind::Requires(_) | Kind::Forbids(_) => match self.ordering(rule, call, ctx) {
                    None => {
                        note(&|| (id(), false, "its ordering requirement is met".into()));
                        continue;
                    }
                    Some(detail) => format!("{} ({detail})", rule.reason),
                },
            };
            let reason = match unevaluable {
                Some(why) => format!(
                    "{reason} (its condition `{when}` cannot be evaluated: {why}; that counts against the call)"
                ),
                None => reason,
            };
            note(&|| (id(), true, reason.clone()));
            if let Some(q) = &rule.quorum {
                wanted = Some(match wanted.take() {
                    Some(w) => w.merge(q.clone()),
                    None => q.clone(),
                });
            }
            consider(match rule.verdict {
                Verdict::Allow => Decision::Allow { rule: id(), reason },
                Verdict::Approve => Decision::NeedsApproval {
                    rule: id(),
                    reason,
                    gate: (rule.confirm == Confirm::Typed).then(|| Gate::typed(target(call))),
                    quorum: None,
                },
                Verdict::Deny => Decision::Deny { rule: id(), reason },
            });
        }
        if !verdict_matched {
            let d = if tool.annotations.read_only {
                Decision::Allow {
                    rule: "builtin.read-only".into(),
                    reason: format!("{} only reads", call.tool),
                }
            } else if tool.annotations.destructive && self.config.gate_destructive {
                Decision::NeedsApproval {
                    rule: "builtin.destructive".into(),
                    reason: if tool.annotations.assumed_destructive {
                        format!(
                            "{} has no hints from its server, so it is assumed to change state, possibly destructively (MCP's default)",
                            call.tool
                        )
                    } else {
                        format!("{} is marked destructive by its server", call.tool)
                    },
                    gate: Some(Gate::typed(target(call))),
                    quorum: None,
                }
            } else {
                let reason = format!("{} changes state", call.tool);
                match self.config.default {
                    Verdict::Allow => Decision::Allow {
                        rule: "builtin.default".into(),
                        reason: format!("{reason}; [policy] default = \"allow\""),
                    },
                    Verdict::Approve => Decision::NeedsApproval {
                        rule: "builtin.changes-state".into(),
                        reason,
                        gate: None,
                        quorum: None,
                    },
                    Verdict::Deny => Decision::Deny {
                        rule: "builtin.default".into(),
                        reason: format!(
                            "{reason}; [policy] default = \"deny\" and no rule allows it"
                        ),
                    },
                }
            };
            note(&|| {
                (
                    d.rule().to_string(),
                    true,
                    format!("no rule decides this call: {}", d.reason()),
                )
            });
            consider(d);
        }
        let mut decision = best.unwrap_or(Decision::Deny {
            rule: "builtin.default".into(),
            reason: "no decision could be made".into(),
        });
        // Four eyes hold whichever approval rule weighs most: a gated
        // environment's typed confirmation does not drop the approvers.
        if let (Decision::NeedsApproval { quorum, .. }, Some(w)) = (&mut decision, wanted) {
            *quorum = Some(Box::new(w));
        }
        // A heavier rule decided, but the step still says its tool is
        // flagged: the finding is never hidden behind another reason.
        match worst {
            Some(worst) if !decision.rule().starts_with("scan.") => {
                decision.also(&format!("{} is also flagged: {worst}", call.tool))
            }
            _ => decision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Patterns, RuleConfig};
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
                assumed_destructive: false,
            },
            def_hash: "h".into(),
            sent: None,
        }
    }

    fn decide(p: &Policy, tool_name: &str, info: &ToolInfo, args: serde_json::Value) -> Decision {
        let serde_json::Value::Object(args) = args else {
            panic!("object")
        };
        let (h, pins, roles) = (
            History::default(),
            HashMap::new(),
            vec!["developer".to_string()],
        );
        let ctx = Context {
            actor: "a",
            roles: &roles,
            session: "s",
            now: OffsetDateTime::now_utc(),
            history: &h,
            pins: &pins,
            planned: &[],
        };
        let call = Call {
            tool: tool_name,
            args: &args,
            gated: false,
        };
        p.decide(&call, Some(info), &ctx, None)
    }

    fn rule(tools: &str, verdict: Verdict, reason: &str) -> RuleConfig {
        RuleConfig {
            tools: Patterns::One(tools.into()),
            verdict: Some(verdict),
            reason: reason.into(),
            ..RuleConfig::default()
        }
    }

    #[test]
    fn four_eyes_survive_a_heavier_gate_and_the_strictest_quorum_wins() {
        let mut config = PolicyConfig::default();
        let mut two = rule("k8s.deploy", Verdict::Approve, "production needs two");
        two.when = Some("env == \"production\"".into());
        two.approvers = 2;
        config.rules.insert("two-for-prod".into(), two);
        let mut sre = RuleConfig {
            verdict: None,
            ..rule(
                "k8s.*",
                Verdict::Approve,
                "an SRE looks at every k8s change",
            )
        };
        sre.approver_not_requester = true;
        sre.approver_roles = vec!["sre".into()];
        config.rules.insert("sre-eyes".into(), sre);
        let p = Policy::new(config).expect("policy");
        let d = decide(
            &p,
            "k8s.deploy",
            &tool("deploy", false, false),
            json!({"env": "production"}),
        );
        assert_eq!((d.label(), d.rule()), ("gated", "builtin.gated-env"));
        let q = d.quorum().expect("the quorum holds under the gate");
        assert_eq!(q.approvers, 2);
        assert!(q.not_requester);
        assert_eq!(q.roles, vec!["sre".to_string()]);
        assert_eq!(
            q.wanted(0, "alice"),
            "2 more approvals (0 of 2 given) from someone other than alice with role sre [rule.two-for-prod]"
        );
        let d = decide(&p, "k8s.scale", &tool("scale", false, false), json!({}));
        assert_eq!(d.quorum().map(|q| q.approvers), Some(1));
        assert_eq!(d.rule(), "rule.sre-eyes");

        // Approvers on a rule that allows or denies are a contradiction.
        let mut bad = PolicyConfig::default();
        let mut r = rule("k8s.*", Verdict::Allow, "x");
        r.approvers = 2;
        bad.rules.insert("bad".into(), r);
        let Err(e) = Policy::new(bad) else {
            panic!("approvers on an allow rule were accepted")
        };
        assert!(e.message.contains("verdict = \"approve\""), "{}", e.message);
    }

    #[test]
    fn deny_beats_approval_beats_allow_and_defaults_follow_annotations() {
        let mut config = PolicyConfig::default();
        config.rules.insert(
            "allow-k8s".into(),
            rule("k8s.*", Verdict::Allow, "k8s is fine"),
        );
        config.rules.insert(
            "approve-scale".into(),
            rule("k8s.scale", Verdict::Approve, "scaling costs money"),
        );
        config.rules.insert(
            "deny-delete".into(),
            rule("*.delete_*", Verdict::Deny, "never delete"),
        );
        let p = Policy::new(config).expect("policy");
        let d = decide(&p, "k8s.restart", &tool("restart", false, false), json!({}));
        assert_eq!((d.label(), d.rule()), ("allow", "rule.allow-k8s"));
        let d = decide(&p, "k8s.scale", &tool("scale", false, false), json!({}));
        assert_eq!((d.label(), d.rule()), ("approve", "rule.approve-scale"));
        let d = decide(
            &p,
            "k8s.delete_ns",
            &tool("delete_ns", false, true),
            json!({}),
        );
        assert_eq!(
            (d.label(), d.rule(), d.reason()),
            ("deny", "rule.deny-delete", "never delete")
        );
        // An allow rule does not lift the production gate.
        let d = decide(
            &p,
            "k8s.restart",
            &tool("restart", false, false),
            json!({"env": "production"}),
        );
        assert_eq!((d.label(), d.rule()), ("gated", "builtin.gated-env"));

        let plain = Policy::new(PolicyConfig::default()).expect("policy");
        let d = decide(
            &plain,
            "k8s.status",
            &tool("status", true, false),
            json!({"env": "production"}),
        );
        assert_eq!((d.label(), d.rule()), ("allow", "builtin.read-only"));
        let d = decide(
            &plain,
            "k8s.rollback",
            &tool("rollback", false, true),
            json!({"service": "x"}),
        );
        assert_eq!((d.label(), d.rule()), ("gated", "builtin.destructive"));
        assert_eq!(d.gate().map(|g| g.confirm.as_str()), Some("x"));
        let d = decide(
            &plain,
            "k8s.deploy",
            &tool("deploy", false, false),
            json!({"env": "staging"}),
        );
        assert_eq!((d.label(), d.rule()), ("approve", "builtin.changes-state"));
    }

    #[test]
    fn approval_binding_changes_with_args() {
        let a = args_hash(
            "k8s.deploy",
            json!({"env": "staging"}).as_object().expect("obj"),
        );
        let b = args_hash(
            "k8s.deploy",
            json!({"env": "production"}).as_object().expect("obj"),
        );
        assert_ne!(a, b);
    }
}
