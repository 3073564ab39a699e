//! The offline planner. In order: a runbook phrase that matches word for
//! word; a runbook asked for by one of its verbs, in any word order and
//! phrasing ("staging deploy of checkout", "push catalog out to prod",
//! "revert the last deploy of checkout on prod"); then one tool call from
//! the catalog (`single`), filled from the request by the tool's schema.
//!
//! It never guesses. A request that matches nothing, could mean several
//! things, names an unknown service or environment, or leaves something
//! required unsaid gets a question back instead of a plan.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Planner, PlannerError, Proposal};
use crate::config::{Config, Runbook};
use crate::mcp::Catalog;
use crate::plan::{Plan, Step, StepId};
use crate::text::{closest, edit_distance};

/// Words people add that change nothing.
const FILLER: [&str; 12] = [
    "please",
    "pls",
    "kindly",
    "now",
    "can",
    "could",
    "you",
    "would",
    "the",
    "service",
    "environment",
    "env",
];

pub struct RunbookPlanner {
    runbooks: BTreeMap<String, Runbook>,
    services: Vec<String>,
    envs: Vec<String>,
    aliases: BTreeMap<String, String>,
    estate: crate::estate::Estate,
    /// Where single tool calls come from; none plans from runbooks only.
    servers: Option<crate::mcp::Servers>,
}

#[derive(Debug, Clone, PartialEq)]
struct Match {
    runbook: String,
    slots: BTreeMap<String, String>,
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| {
            !(c.is_alphanumeric() || c == '-' || c == '_' || c == '#' || c == '{' || c == '}')
        })
        .filter(|w| !w.is_empty() && !FILLER.contains(w))
        .map(str::to_string)
        .collect()
}

fn slot_name(word: &str) -> Option<&str> {
    word.strip_prefix('{').and_then(|w| w.strip_suffix('}'))
}

impl RunbookPlanner {
    pub fn new(config: &Config) -> Self {
        Self {
            runbooks: config.runbooks.clone(),
            services: config.estate.services.clone(),
            envs: config.estate.envs.clone(),
            aliases: config.estate.aliases.clone(),
            estate: crate::estate::Estate::new(config),
            servers: None,
        }
    }

    /// Plan single tool calls from these servers' catalog too.
    pub fn with_servers(mut self, servers: crate::mcp::Servers) -> Self {
        self.servers = Some(servers);
        self
    }

    fn known(&self, slot: &str) -> &[String] {
        if slot == "env" {
            &self.envs
        } else {
            &self.services
        }
    }

    fn canonical(&self, word: &str) -> String {
        self.aliases
            .get(word)
            .cloned()
            .unwrap_or_else(|| word.to_string())
    }

    /// Phrases whose literal words all match, with the words in slot places.
    fn matches(&self, request: &[String]) -> Vec<Match> {
        let mut out = Vec::new();
        for (name, rb) in &self.runbooks {
            for phrase in &rb.phrases {
                let pattern = words(phrase);
                if pattern.len() != request.len() {
                    continue;
                }
                let mut slots = BTreeMap::new();
                let fits = pattern
                    .iter()
                    .zip(request)
                    .all(|(p, w)| match slot_name(p) {
                        // Word for word, a slot takes only what it names: an
                        // unknown or misspelt value is for the verb matcher,
                        // which asks about it.
                        Some(slot) => {
                            let value = self.canonical(w);
                            let known = self.known(slot).contains(&value);
                            slots.insert(slot.to_string(), value);
                            known
                        }
                        None => p == w,
                    });
                let m = Match {
                    runbook: name.clone(),
                    slots,
                };
                if fits && !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// The first slot value that is not a known service or environment,
    /// as a question.
    fn unknown_slot(&self, m: &Match) -> Option<String> {
        m.slots.iter().find_map(|(slot, value)| {
            let known = self.known(slot);
            if known.iter().any(|k| k == value) {
                return None;
            }
            let what = if slot == "env" {
                "environment"
            } else {
                "service"
            };
            let hint = closest(value, known.iter().map(String::as_str))
                .map(|c| format!(" Did you mean `{c}`?"))
                .unwrap_or_default();
            Some(format!(
                "I don't know {} {what} called `{value}`.{hint} Known {what}s: {}.",
                if what == "environment" { "an" } else { "a" },
                known.join(", ")
            ))
        })
    }

    /// A phrase the request starts like, with the slots it still needs.
    fn partial(&self, request: &[String]) -> Option<String> {
        for rb in self.runbooks.values() {
            for phrase in &rb.phrases {
                let pattern = words(phrase);
                if request.is_empty() || request.len() >= pattern.len() {
                    continue;
                }
                let fits = pattern
                    .iter()
                    .zip(request)
                    .all(|(p, w)| slot_name(p).is_some() || p == w);
                if !fits || slot_name(&pattern[0]).is_some() {
                    continue;
                }
                let missing: Vec<&str> = pattern[request.len()..]
                    .iter()
                    .filter_map(|p| slot_name(p))
                    .collect();
                if let Some(slot) = missing.first() {
                    let what = if *slot == "env" {
                        "environment"
                    } else {
                        "service"
                    };
                    return Some(format!(
                        "Which {what}? Try \"{}\" with one of: {}.",
                        phrase,
                        self.known(slot).join(", ")
                    ));
                }
            }
        }
        None
    }

    /// The nearest phrase by words, for "did you mean".
    fn nearest(&self, request: &[String]) -> Option<String> {
        let req = request.join(" ");
        self.runbooks
            .values()
            .flat_map(|rb| rb.phrases.iter())
            .map(|p| {
                let literal: Vec<String> = words(p)
                    .into_iter()
                    .filter(|w| slot_name(w).is_none())
                    .collect();
                let req_literal: Vec<&String> = request
                    .iter()
                    .filter(|w| {
                        !self.services.contains(w) && !self.envs.contains(&self.canonical(w))
                    })
                    .collect();
                let d = edit_distance(
                    &literal.join(" "),
                    &req_literal
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                (d, p)
            })
            .filter(|(d, _)| *d <= 3 && !req.is_empty())
            .min_by_key(|(d, _)| *d)
            .map(|(_, p)| p.clone())
    }

    fn build(&self, m: &Match) -> Plan {
        let rb = &self.runbooks[&m.runbook];
        let mut slots = rb.defaults.clone();
        slots.extend(m.slots.clone());
        let fill = |s: &str| {
            slots.iter().fold(s.to_string(), |acc, (k, v)| {
                acc.replace(&format!("{{{k}}}"), v)
            })
        };
        let steps = rb
            .steps
            .iter()
            .map(|s| Step {
                id: StepId::new(&s.id),
                tool: s.tool.clone(),
                args: fill_map(&s.args, &fill),
                depends_on: s.depends_on.iter().map(StepId::new).collect(),
                description: fill(&s.description),
                gate: s.gate,
                timeout_ms: s.timeout_ms,
                when: s.when.clone(),
                continue_on_error: s.continue_on_error,
                retries: s.retries,
                undo: s.undo.as_ref().map(|u| crate::config::Compensation {
                    tool: u.tool.clone(),
                    args: fill_map(&u.args, &fill),
                    description: fill(&u.description),
                }),
            })
            .collect();
        let target = match (slots.get("service"), slots.get("env")) {
            (Some(s), Some(e)) => format!("{s} → {e}"),
            (Some(s), None) => s.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        Plan {
            title: format!("{} {target}", m.runbook).trim().to_string(),
            steps,
        }
        .with_implied_dependencies()
    }

    /// "checkout and payments" (or "checkout payments search"): a run of
    /// two or more known services. Returns them and the request with the
    /// run replaced by the first, so phrases match as for one service.
    fn fan_out(&self, request: &[String]) -> Option<(Vec<String>, Vec<String>)> {
        let is_service = |w: &str| self.services.iter().any(|s| *s == self.canonical(w));
        let start = request.iter().position(|w| is_service(w))?;
        let mut services = vec![self.canonical(&request[start])];
        let mut end = start + 1;
        while end < request.len() {
            let joiner = matches!(request[end].as_str(), "and" | "&");
            let next = if joiner { end + 1 } else { end };
            match request.get(next) {
                Some(w) if is_service(w) => {
                    services.push(self.canonical(w));
                    end = next + 1;
                }
                _ => break,
            }
        }
        if services.len() < 2 {
            return None;
        }
        services.dedup();
        let mut single = request[..start].to_vec();
        single.push(services[0].clone());
        single.extend_from_slice(&request[end..]);
        Some((services, single))
    }

    /// One chain per service, side by side: each step's id gets the
    /// service as a prefix, and references follow.
    fn build_fanned(&self, m: &Match, services: &[String]) -> Plan {
        let mut steps = Vec::new();
        for service in services {
            let mut one = m.clone();
            one.slots.insert("service".into(), service.clone());
            let plan = self.build(&one);
            let ids: Vec<String> = plan
                .steps
                .iter()
                .map(|s| s.id.as_str().to_string())
                .collect();
            let rename = |text: &str| {
                ids.iter().fold(text.to_string(), |t, id| {
                    t.replace(&format!("${{{id}."), &format!("${{{service}_{id}."))
                })
            };
            for mut step in plan.steps {
                step.id = StepId::new(format!("{service}_{}", step.id));
                step.depends_on = step
                    .depends_on
                    .iter()
                    .map(|d| StepId::new(format!("{service}_{d}")))
                    .collect();
                step.args = fill_map(&step.args, &rename);
                step.when = step.when.as_deref().map(|w| {
                    ids.iter().fold(w.to_string(), |t, id| {
                        t.replace(&format!("{id}."), &format!("{service}_{id}."))
                    })
                });
                steps.push(step);
            }
        }
        let env = m
            .slots
            .get("env")
            .map(|e| format!(" → {e}"))
            .unwrap_or_default();
        Plan {
            title: format!("{} {}{env}", m.runbook, services.join(", ")),
            steps,
        }
    }

    /// Plan from the runbooks only (no catalog): a phrase that matches
    /// word for word, else one asked for by its verbs.
    pub fn propose(&self, request: &str) -> Proposal {
        match self.match_runbooks(request) {
            Ok(p) => p,
            Err(fallback) => fallback,
        }
    }

    /// A runbook plan or question; else the question to ask if no tool
    /// fits either.
    fn match_runbooks(&self, request: &str) -> Result<Proposal, Proposal> {
        let words_ = words(request);
        if let Some((services, single)) = self.fan_out(&words_)
            && let [m] = self.matches(&single).as_slice()
            && m.slots.contains_key("service")
        {
            let mut probe = m.clone();
            for service in &services {
                probe.slots.insert("service".into(), service.clone());
                if let Some(question) = self.unknown_slot(&probe) {
                    return Ok(Proposal::Clarify { question });
                }
            }
            return Ok(Proposal::Plan(self.build_fanned(m, &services)));
        }
        let found = self.matches(&words_);
        match found.as_slice() {
            [] => {}
            [m] => {
                return Ok(match self.unknown_slot(m) {
                    Some(question) => Proposal::Clarify { question },
                    None => Proposal::Plan(self.build(m)),
                });
            }
            many => {
                return Ok(Proposal::Clarify {
                    question: format!(
                        "That could mean several things: {}. Which one?",
                        many.iter()
                            .map(|m| format!(
                                "{} ({})",
                                m.runbook,
                                m.slots
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                });
            }
        }
        let u = super::understand::understand(request, &self.estate);
        if let Some(found) = self.by_verb(&u) {
            return Ok(found);
        }
        Err(self.no_match(&words_))
    }

    /// The question when nothing matches.
    fn no_match(&self, request: &[String]) -> Proposal {
        if let Some(q) = self.partial(request) {
            return Proposal::Clarify { question: q };
        }
        let hint = self
            .nearest(request)
            .map(|p| format!(" Did you mean \"{p}\"?"))
            .unwrap_or_default();
        Proposal::Clarify {
            question: format!(
                "I don't know how to do that.{hint} I can run {}, or call any tool (`/tools` lists them; name one, e.g. \"k8s.status service=checkout env=dev\").",
                self.runbooks
                    .iter()
                    .filter_map(|(name, rb)| rb
                        .phrases
                        .first()
                        .map(|p| format!("{name} (\"{p}\")")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// A runbook asked for by one of its verbs, in any word order: the
    /// earliest verb in the request decides ("revert the last deploy" is a
    /// rollback). Its slots come from the request's parts.
    fn by_verb(&self, u: &super::understand::Understood) -> Option<Proposal> {
        let (name, rb) = self
            .runbooks
            .iter()
            .filter_map(|(name, rb)| {
                rb.verbs
                    .iter()
                    .filter_map(|v| u.position(v))
                    .min()
                    .map(|at| (at, name, rb))
            })
            .min_by_key(|(at, name, _)| (*at, name.len()))
            .map(|(_, name, rb)| (name, rb))?;
        let needs: std::collections::BTreeSet<&str> = rb
            .phrases
            .iter()
            .flat_map(|p| crate::config::phrase_slots(p))
            .collect();
        if let Some(bad) = u.unknown_envs.first() {
            return Some(Proposal::Clarify {
                question: format!(
                    "I don't know an environment called `{bad}`.{} Known environments: {}.",
                    closest(bad, self.envs.iter().map(String::as_str))
                        .map(|c| format!(" Did you mean `{c}`?"))
                        .unwrap_or_default(),
                    self.envs.join(", ")
                ),
            });
        }
        let mut slots = BTreeMap::new();
        if let Some(r) = &u.git_ref {
            slots.insert("ref".to_string(), r.clone());
        }
        if needs.contains("env") {
            match u.env() {
                Some(env) => {
                    slots.insert("env".to_string(), env.to_string());
                }
                None => {
                    return Some(Proposal::Clarify {
                        question: if u.envs.len() > 1 {
                            format!("Which environment for {name}: {}?", u.envs.join(" or "))
                        } else {
                            format!(
                                "Which environment? {name} needs one of: {}.",
                                self.envs.join(", ")
                            )
                        },
                    });
                }
            }
        }
        let m = |service: Option<&String>| Match {
            runbook: name.clone(),
            slots: {
                let mut s = slots.clone();
                if let Some(service) = service {
                    s.insert("service".into(), service.clone());
                }
                s
            },
        };
        if !needs.contains("service") {
            return Some(Proposal::Plan(self.build(&m(None))));
        }
        // A misspelt service beside a known one is asked about, not dropped.
        if let Some(bad) = u
            .unknown_services
            .first()
            .filter(|_| !u.services.is_empty())
        {
            return Some(Proposal::Clarify {
                question: format!(
                    "I don't know a service called `{bad}`.{} Known services: {}.",
                    closest(bad, self.services.iter().map(String::as_str))
                        .map(|c| format!(" Did you mean `{c}`?"))
                        .unwrap_or_default(),
                    self.services.join(", ")
                ),
            });
        }
        match u.services.as_slice() {
            [] => Some(Proposal::Clarify {
                question: match u.unknown_services.first() {
                    Some(bad) => format!(
                        "I don't know a service called `{bad}`.{} Known services: {}.",
                        closest(bad, self.services.iter().map(String::as_str))
                            .map(|c| format!(" Did you mean `{c}`?"))
                            .unwrap_or_default(),
                        self.services.join(", ")
                    ),
                    None => format!(
                        "Which service? {name} needs one of: {}.",
                        self.services.join(", ")
                    ),
                },
            }),
            [one] => Some(Proposal::Plan(self.build(&m(Some(one))))),
            many => Some(Proposal::Plan(self.build_fanned(&m(None), many))),
        }
    }

    /// With the catalog: runbooks first, then one tool call.
    pub async fn plan_request(&self, request: &str) -> Proposal {
        match &self.servers {
            Some(servers) => {
                servers.wait_settled().await;
                self.plan_with_catalog(request, Some(&servers.catalog()))
            }
            None => self.plan_with_catalog(request, None),
        }
    }

    /// `plan_request` over a given catalog (none: runbooks only).
    pub fn plan_with_catalog(&self, request: &str, catalog: Option<&Catalog>) -> Proposal {
        let u = super::understand::understand(request, &self.estate);
        // A runbook's verb in a request about none of its services or
        // environments ("git status of /srv/app"): a tool that fits the
        // request wins over the runbook's question.
        let (fallback, asked_by_verb) = match self.match_runbooks(request) {
            Ok(q @ Proposal::Clarify { .. }) if u.services.is_empty() && u.envs.is_empty() => {
                (q, true)
            }
            Ok(p) => return p,
            Err(question) => (question, false),
        };
        let Some(catalog) = catalog else {
            return fallback;
        };
        match super::single::plan_single(&u, catalog, &self.estate) {
            super::single::Single::Plan(p) => Proposal::Plan(p),
            super::single::Single::Ask(question) if u.tool.is_some() => {
                Proposal::Clarify { question }
            }
            // Both only ask: the runbook's question is the one meant.
            super::single::Single::Ask(_) if asked_by_verb => fallback,
            super::single::Single::Ask(question) => Proposal::Clarify { question },
            super::single::Single::Nothing => fallback,
        }
    }
}

fn fill_map(map: &Map<String, Value>, fill: &impl Fn(&str) -> String) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| (k.clone(), fill_value(v, fill)))
        .collect()
}

fn fill_value(v: &Value, fill: &impl Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(fill(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_value(v, fill)).collect()),
        Value::Object(o) => Value::Object(fill_map(o, fill)),
        other => other.clone(),
    }
}

impl Planner for RunbookPlanner {
    fn name(&self) -> &str {
        "runbook"
    }

    fn plan<'a>(
        &'a self,
        input: &'a super::PlanInput,
        _sink: &'a dyn super::PlanSink,
    ) -> futures::future::BoxFuture<'a, Result<Proposal, PlannerError>> {
        Box::pin(async move { Ok(self.plan_request(&input.request()).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, DEFAULT_TOML, load_layers};

    fn planner() -> RunbookPlanner {
        let loaded = load_layers(vec![ConfigSource {
            name: "default".into(),
            text: DEFAULT_TOML.into(),
        }])
        .expect("default config");
        RunbookPlanner::new(&loaded.config)
    }

    fn plan(req: &str) -> Plan {
        match planner().propose(req) {
            Proposal::Plan(p) => p,
            other => panic!("expected a plan for {req:?}, got {other:?}"),
        }
    }

    #[test]
    fn several_services_fan_out_into_side_by_side_chains() {
        let p = plan("deploy checkout and payments to staging");
        assert_eq!(p.title, "deploy checkout, payments → staging");
        assert_eq!(p.steps.len(), 14, "two chains of seven");
        let deploy = p
            .step(&StepId::new("payments_deploy"))
            .expect("payments' deploy");
        assert_eq!(deploy.args["image"], "${payments_build.image}");
        assert_eq!(deploy.args["service"], "payments");
        assert!(
            deploy
                .depends_on
                .iter()
                .all(|d| d.as_str().starts_with("payments_")),
            "the chains do not wait on each other: {:?}",
            deploy.depends_on
        );
        let three = plan("deploy checkout payments and search to dev");
        assert_eq!(three.steps.len(), 21);
        // A misspelt second service is asked about, not dropped.
        assert!(!question("deploy checkout and paymnts to dev").is_empty());
    }

    fn question(req: &str) -> String {
        match planner().propose(req) {
            Proposal::Clarify { question } => question,
            other => panic!("expected a question for {req:?}, got {other:?}"),
        }
    }

    #[test]
    fn deploy_phrases_fill_slots() {
        let p = plan("Please deploy checkout to staging!");
        assert_eq!(p.title, "deploy checkout → staging");
        let deploy = p.step(&StepId::new("deploy")).expect("deploy step");
        assert_eq!(deploy.args["env"], "staging");
        assert_eq!(deploy.args["image"], "${build.image}");
        assert_eq!(
            plan("ship payments to prod")
                .step(&StepId::new("deploy"))
                .map(|s| s.args["env"].clone()),
            Some("production".into())
        );
        assert_eq!(
            plan("roll back search in staging").title,
            "rollback search → staging"
        );
    }

    #[test]
    fn unknown_values_get_a_question_with_a_suggestion() {
        let q = question("deploy chekout to staging");
        assert!(
            q.contains("I don't know a service called `chekout`. Did you mean `checkout`?"),
            "{q}"
        );
        let q = question("deploy checkout to qa");
        assert!(q.contains("environment called `qa`"), "{q}");
    }

    #[test]
    fn missing_slots_and_nonsense_are_questions_not_guesses() {
        let q = question("deploy checkout");
        assert!(q.starts_with("Which environment?"), "{q}");
        let q = question("make me a sandwich");
        assert!(q.starts_with("I don't know how to do that."), "{q}");
        let q = question("deplyo checkout to staging");
        assert!(
            q.contains("Did you mean \"deploy {service} to {env}\""),
            "{q}"
        );
    }
}
