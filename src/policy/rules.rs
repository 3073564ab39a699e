//! `[policy]` compiled: patterns, conditions, windows and durations parsed
//! once at load, so a bad one fails there (with its table) and evaluation
//! never parses anything.

use std::collections::HashMap;

use time::Duration;

use super::cond::{self, Expr};
use super::pattern::Pattern;
use super::schedule::{Window, parse_duration};
use crate::config::{Confirm, EffectConfig, EffectOn, Patterns, PolicyConfig, Verdict};

/// Tools a rule applies to, with a server index for quick lookup.
#[derive(Debug, Clone)]
pub struct Tools(pub Vec<Pattern>);

impl Tools {
    fn parse(p: &Patterns) -> Result<Self, String> {
        p.list()
            .into_iter()
            .map(Pattern::parse)
            .collect::<Result<_, _>>()
            .map(Tools)
    }
    pub fn matches(&self, tool: &str) -> bool {
        self.0.iter().any(|p| p.matches(tool))
    }
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(Pattern::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// Says allow, approve or deny when it matches.
    Verdict,
    /// Holds only when these effects exist first.
    Requires(Vec<String>),
    /// Holds only when these effects do not exist.
    Forbids(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub tools: Tools,
    pub when: Option<Expr>,
    pub when_text: Option<String>,
    pub roles: Vec<String>,
    pub verdict: Verdict,
    pub confirm: Confirm,
    pub reason: String,
    pub kind: Kind,
    /// Effect name → the arguments that scope it for this rule.
    pub scope: HashMap<String, Vec<String>>,
    pub within: Option<Duration>,
    /// Four eyes: whose approvals the call needs.
    pub quorum: Option<super::Quorum>,
}

#[derive(Debug, Clone)]
pub struct Effect {
    pub effect: String,
    pub tools: Tools,
    pub on: EffectOn,
    pub when: Option<Expr>,
    pub scope: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Freeze {
    pub id: String,
    pub tools: Tools,
    pub when: Option<Expr>,
    pub window: Window,
    pub reason: String,
    pub allow_override: bool,
}

#[derive(Debug, Clone)]
pub struct Limit {
    pub id: String,
    pub tools: Tools,
    pub max: u32,
    pub per: Duration,
    pub per_text: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub rules: Vec<Rule>,
    /// Rules indexed by what their patterns pin down: a literal server
    /// (`k8s.*`), else a literal tool name (`*.delete_all`), else nothing.
    by_server: HashMap<String, Vec<usize>>,
    by_tool: HashMap<String, Vec<usize>>,
    any_server: Vec<usize>,
    pub effects: Vec<Effect>,
    pub freezes: Vec<Freeze>,
    pub limits: Vec<Limit>,
    /// The longest look-back any rule or limit needs, for loading history.
    pub horizon: Option<Duration>,
}

/// A compile error: the config table it belongs to, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub table: String,
    pub message: String,
}

fn when(text: &Option<String>) -> Result<Option<Expr>, String> {
    text.as_deref().map(cond::parse).transpose()
}

fn effect(i: usize, e: &EffectConfig) -> Result<Effect, String> {
    if e.effect.trim().is_empty() {
        return Err(format!(
            "effect #{} needs a name, e.g. effect = \"tests.passed\"",
            i + 1
        ));
    }
    Ok(Effect {
        effect: e.effect.clone(),
        tools: Tools::parse(&e.tools)?,
        on: e.on,
        when: when(&e.when)?,
        scope: e.scope.clone(),
    })
}

pub fn compile(config: &PolicyConfig) -> Result<Compiled, CompileError> {
    let err = |table: String| {
        move |message: String| CompileError {
            table: table.clone(),
            message,
        }
    };
    let mut out = Compiled::default();
    for (i, e) in config.effects.iter().enumerate() {
        out.effects
            .push(effect(i, e).map_err(err("policy.effects".into()))?);
    }
    let mut horizon: Option<Duration> = None;
    let mut widen = |d: Duration| horizon = Some(horizon.map_or(d, |h| h.max(d)));
    for (id, r) in &config.rules {
        let table = format!("policy.rules.{id}");
        let e = err(table.clone());
        let kind = match (r.requires.is_empty(), r.forbids.is_empty()) {
            (true, true) => Kind::Verdict,
            (false, true) => Kind::Requires(r.requires.clone()),
            (true, false) => Kind::Forbids(r.forbids.clone()),
            (false, false) => {
                return Err(e(
                    "a rule has either `requires` or `forbids`, not both; split it in two".into(),
                ));
            }
        };
        let mut scope = HashMap::new();
        for name in r.requires.iter().chain(&r.forbids) {
            let declared: Vec<&Effect> = out.effects.iter().filter(|x| &x.effect == name).collect();
            if declared.is_empty() {
                let known: Vec<&str> = out.effects.iter().map(|x| x.effect.as_str()).collect();
                return Err(e(format!(
                    "effect `{name}` is not produced by any [[policy.effects]] entry{}",
                    crate::text::closest(name, known.iter().copied())
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default()
                )));
            }
            let keys = match &r.scope {
                Some(keys) => {
                    if let Some(bad) = keys
                        .iter()
                        .find(|k| declared.iter().all(|d| !d.scope.contains(k)))
                    {
                        return Err(e(format!(
                            "scope `{bad}` is not part of effect `{name}`'s scope"
                        )));
                    }
                    keys.clone()
                }
                None => declared[0].scope.clone(),
            };
            scope.insert(name.clone(), keys);
        }
        let within = r
            .within
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(&e)?;
        if let Some(d) = within {
            widen(d);
        }
        let four_eyes = r.approvers > 0 || r.approver_not_requester || !r.approver_roles.is_empty();
        if matches!(kind, Kind::Verdict) && r.verdict.is_none() && !four_eyes {
            return Err(e(
                "say what the rule decides: verdict = \"allow\", \"approve\" or \"deny\"".into(),
            ));
        }
        if r.reason.trim().is_empty() {
            return Err(e(
                "give a reason people will read when the rule applies: reason = \"...\"".into(),
            ));
        }
        if four_eyes && !matches!(kind, Kind::Verdict) {
            return Err(e(
                "approvers, approver_not_requester and approver_roles belong on a rule that decides (verdict = \"approve\"), not on one with requires/forbids".into(),
            ));
        }
        if four_eyes && r.verdict.is_some_and(|v| v != Verdict::Approve) {
            return Err(e(
                "a rule that asks for approvers must have verdict = \"approve\": approvers are who approves".into(),
            ));
        }
        let quorum = four_eyes.then(|| super::Quorum {
            approvers: r.approvers.max(1),
            not_requester: r.approver_not_requester,
            roles: r.approver_roles.clone(),
            rule: format!("rule.{id}"),
        });
        out.rules.push(Rule {
            id: id.clone(),
            tools: Tools::parse(&r.tools).map_err(&e)?,
            when: when(&r.when).map_err(&e)?,
            when_text: r.when.clone(),
            roles: r.roles.clone(),
            verdict: r.verdict.unwrap_or(if four_eyes {
                Verdict::Approve
            } else {
                Verdict::Deny
            }),
            confirm: r.confirm,
            reason: r.reason.clone(),
            kind,
            scope,
            within,
            quorum,
        });
    }
    for (id, f) in &config.freezes {
        let e = err(format!("policy.freezes.{id}"));
        if f.reason.trim().is_empty() {
            return Err(e("a freeze needs a reason: reason = \"...\"".into()));
        }
        out.freezes.push(Freeze {
            id: id.clone(),
            tools: Tools::parse(&f.tools).map_err(&e)?,
            when: when(&f.when).map_err(&e)?,
            window: Window::parse(
                &f.days,
                f.from.as_deref(),
                f.to.as_deref(),
                f.utc_offset.as_deref(),
                f.start.as_deref(),
                f.end.as_deref(),
            )
            .map_err(&e)?,
            reason: f.reason.clone(),
            allow_override: f.allow_override,
        });
    }
    for (id, l) in &config.limits {
        let e = err(format!("policy.limits.{id}"));
        if l.max == 0 {
            return Err(e(
                "max must be at least 1; to forbid a tool, write a deny rule".into(),
            ));
        }
        let per = parse_duration(&l.per).map_err(&e)?;
        widen(per);
        out.limits.push(Limit {
            id: id.clone(),
            tools: Tools::parse(&l.tools).map_err(&e)?,
            max: l.max,
            per,
            per_text: l.per.clone(),
            roles: l.roles.clone(),
        });
    }
    out.horizon = horizon;
    for (i, r) in out.rules.iter().enumerate() {
        for p in &r.tools.0 {
            let list = match (p.server(), p.tool_name()) {
                (Some(server), _) => out.by_server.entry(server.to_string()).or_default(),
                (None, Some(name)) => out.by_tool.entry(name.to_string()).or_default(),
                (None, None) => &mut out.any_server,
            };
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    Ok(out)
}

impl Compiled {
    /// Whether a rule for `tool` compares argument `arg` with `value`.
    pub fn names_value(&self, tool: &str, arg: &str, value: &str) -> bool {
        self.candidates(tool)
            .any(|r| r.tools.matches(tool) && r.when.as_ref().is_some_and(|w| w.names(arg, value)))
    }

    /// The rules that could match `tool`, in config order.
    pub fn candidates(&self, tool: &str) -> impl Iterator<Item = &Rule> {
        let (server, name) = tool.split_once('.').unwrap_or((tool, ""));
        fn pick<'m>(m: &'m HashMap<String, Vec<usize>>, k: &str) -> &'m [usize] {
            m.get(k).map(Vec::as_slice).unwrap_or_default()
        }
        let mut idx: Vec<usize> = pick(&self.by_server, server)
            .iter()
            .chain(pick(&self.by_tool, name))
            .chain(&self.any_server)
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| &self.rules[i])
    }
}
