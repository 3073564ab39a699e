//! Effects and ordering: what finished calls leave behind, and whether a
//! call's required effects exist (or forbidden ones do not) for its scope.

use serde_json::{Map, Value};

use super::cond::Scope;
use super::history::{self, ScopeMap, Since};
use super::rules::{Kind, Rule};
use super::{Call, Context, Policy, describe_scope};
use crate::config::EffectOn;

impl Policy {
    /// Why an ordering rule does not hold for this call, if it does not.
    pub(super) fn ordering(
        &self,
        rule: &Rule,
        call: &Call<'_>,
        ctx: &Context<'_>,
    ) -> Option<String> {
        let since = match rule.within {
            Some(w) => Since::Time(ctx.now - w),
            None => Since::Session(ctx.session),
        };
        let when = match rule.within {
            Some(_) => format!("in the last {}", humantime(rule.within)),
            None => "in this session".to_string(),
        };
        let (names, want_present) = match &rule.kind {
            Kind::Requires(n) => (n, true),
            Kind::Forbids(n) => (n, false),
            Kind::Verdict => return None,
        };
        for name in names {
            let keys = rule.scope.get(name).cloned().unwrap_or_default();
            let want = match history::scope_of(&keys, call.args) {
                Ok(w) => w,
                Err(missing) if want_present => {
                    return Some(format!("needs `{missing}` to know which {name} counts"));
                }
                Err(_) => continue,
            };
            let planned = ctx
                .planned
                .iter()
                .any(|(e, s)| e == name && want.iter().all(|(k, v)| s.get(k) == Some(v)));
            let seen = ctx.history.has(name, &want, since);
            match (want_present, seen || planned) {
                (true, false) => {
                    return Some(format!(
                        "{name}{} has not happened {when}; run it first, as a step this one depends on",
                        describe_scope(&want)
                    ));
                }
                (false, true) if seen => {
                    return Some(format!("{name}{} happened {when}", describe_scope(&want)));
                }
                _ => {}
            }
        }
        None
    }

    /// Effects a call leaves once it has finished.
    pub fn effects_of(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        result: &Value,
        succeeded: bool,
    ) -> Vec<(String, ScopeMap)> {
        let on = if succeeded {
            EffectOn::Success
        } else {
            EffectOn::Failure
        };
        let scope = Scope {
            args,
            result: Some(result),
        };
        self.compiled
            .effects
            .iter()
            .filter(|e| e.on == on && e.tools.matches(tool))
            .filter(|e| e.when.as_ref().is_none_or(|w| w.eval(&scope)))
            .filter_map(|e| {
                history::scope_of(&e.scope, args)
                    .ok()
                    .map(|s| (e.effect.clone(), s))
            })
            .collect()
    }

    /// Effects a step will leave if it succeeds, as far as can be known
    /// before it runs (conditions on its result are assumed to hold).
    pub(super) fn promised_effects(
        &self,
        tool: &str,
        args: &Map<String, Value>,
    ) -> Vec<(String, ScopeMap)> {
        let scope = Scope { args, result: None };
        self.compiled
            .effects
            .iter()
            .filter(|e| e.on == EffectOn::Success && e.tools.matches(tool))
            .filter(|e| {
                e.when
                    .as_ref()
                    .is_none_or(|w| w.reads_result() || w.eval(&scope))
            })
            .filter_map(|e| {
                history::scope_of(&e.scope, args)
                    .ok()
                    .map(|s| (e.effect.clone(), s))
            })
            .collect()
    }
}

fn humantime(d: Option<time::Duration>) -> String {
    let Some(d) = d else { return String::new() };
    let s = d.whole_seconds();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}
