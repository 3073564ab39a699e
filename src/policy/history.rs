//! What has happened, as policy needs it: effects (with their scope, time
//! and session) and calls per actor and tool, indexed so a check costs the
//! same with ten events or ten thousand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::pattern::Pattern;

/// An effect's scope: argument name → value, e.g. `{service: "checkout"}`.
pub type ScopeMap = BTreeMap<String, String>;

/// Which past effects count.
#[derive(Debug, Clone, Copy)]
pub enum Since<'a> {
    /// Only those of this session.
    Session(&'a str),
    /// Any session, at or after this time.
    Time(OffsetDateTime),
}

/// A scope value as text: strings as they are, other values as JSON.
pub fn scope_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The scope of `keys` taken from a call's arguments; `None` names the
/// first key the arguments lack.
pub fn scope_of(keys: &[String], args: &Map<String, Value>) -> Result<ScopeMap, String> {
    keys.iter()
        .map(|k| match args.get(k) {
            Some(v) if !v.is_null() => Ok((k.clone(), scope_value(v))),
            _ => Err(k.clone()),
        })
        .collect()
}

fn key_of(scope: &ScopeMap) -> String {
    let mut k = String::new();
    for (name, value) in scope {
        k.push_str(name);
        k.push('\u{1f}');
        k.push_str(value);
        k.push('\u{1e}');
    }
    k
}

#[derive(Debug, Clone)]
struct Seen {
    at: OffsetDateTime,
    session: Arc<str>,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    /// effect → scope key → (scope, sightings oldest first)
    effects: HashMap<String, HashMap<String, (ScopeMap, Vec<Seen>)>>,
    /// actor → tool → call times, oldest first
    calls: HashMap<String, HashMap<String, Vec<OffsetDateTime>>>,
    sessions: HashMap<String, Arc<str>>,
}

impl History {
    fn session(&mut self, id: &str) -> Arc<str> {
        Arc::clone(
            self.sessions
                .entry(id.to_string())
                .or_insert_with(|| Arc::from(id)),
        )
    }

    pub fn add_effect(&mut self, effect: &str, scope: ScopeMap, at: OffsetDateTime, session: &str) {
        let session = self.session(session);
        let entry = self
            .effects
            .entry(effect.to_string())
            .or_default()
            .entry(key_of(&scope))
            .or_insert_with(|| (scope, Vec::new()));
        let pos = entry.1.partition_point(|s| s.at <= at);
        entry.1.insert(pos, Seen { at, session });
    }

    pub fn add_call(&mut self, actor: &str, tool: &str, at: OffsetDateTime) {
        let times = self
            .calls
            .entry(actor.to_string())
            .or_default()
            .entry(tool.to_string())
            .or_default();
        let pos = times.partition_point(|t| *t <= at);
        times.insert(pos, at);
    }

    /// Whether `effect` was seen with (at least) this scope.
    pub fn has(&self, effect: &str, want: &ScopeMap, since: Since<'_>) -> bool {
        let Some(by_scope) = self.effects.get(effect) else {
            return false;
        };
        let counts = |seen: &[Seen]| match since {
            Since::Session(id) => seen.iter().rev().any(|s| &*s.session == id),
            Since::Time(t) => seen.last().is_some_and(|s| s.at >= t),
        };
        if let Some((_, seen)) = by_scope.get(&key_of(want)) {
            return counts(seen);
        }
        // The rule names fewer arguments than the effect is scoped by.
        by_scope
            .values()
            .any(|(scope, seen)| want.iter().all(|(k, v)| scope.get(k) == Some(v)) && counts(seen))
    }

    /// Calls by `actor` to tools matching `pattern` at or after `since`.
    pub fn calls(&self, actor: &str, pattern: &Pattern, since: OffsetDateTime) -> usize {
        self.calls.get(actor).map_or(0, |tools| {
            tools
                .iter()
                .filter(|(tool, _)| pattern.matches(tool))
                .map(|(_, times)| times.len() - times.partition_point(|t| *t < since))
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn scope(pairs: &[(&str, &str)]) -> ScopeMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn effects_by_scope_session_and_time() {
        let mut h = History::default();
        let t = datetime!(2026-11-21 10:00 UTC);
        h.add_effect("tests.passed", scope(&[("service", "checkout")]), t, "s1");
        let want = scope(&[("service", "checkout")]);
        assert!(h.has("tests.passed", &want, Since::Session("s1")));
        assert!(!h.has("tests.passed", &want, Since::Session("s2")));
        assert!(h.has("tests.passed", &want, Since::Time(t)));
        assert!(!h.has(
            "tests.passed",
            &want,
            Since::Time(t + time::Duration::SECOND)
        ));
        assert!(!h.has(
            "tests.passed",
            &scope(&[("service", "payments")]),
            Since::Session("s1")
        ));
        assert!(!h.has("scan.passed", &want, Since::Session("s1")));
        h.add_effect(
            "deployed",
            scope(&[("env", "staging"), ("service", "checkout")]),
            t,
            "s1",
        );
        assert!(
            h.has("deployed", &want, Since::Session("s1")),
            "a narrower rule scope matches"
        );
    }

    #[test]
    fn calls_are_counted_per_actor_in_the_window() {
        let mut h = History::default();
        let t = datetime!(2026-11-21 10:00 UTC);
        for m in 0..5 {
            h.add_call("alice", "k8s.deploy", t + time::Duration::minutes(m * 10));
        }
        h.add_call("bob", "k8s.deploy", t);
        let p = Pattern::parse("k8s.*").expect("pattern");
        assert_eq!(h.calls("alice", &p, t), 5);
        assert_eq!(h.calls("alice", &p, t + time::Duration::minutes(25)), 2);
        assert_eq!(h.calls("carol", &p, t), 0);
    }
}
