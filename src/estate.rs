//! The estate: the services and environments opsbot knows, the other
//! words people use for them, and which arguments name them.
//!
//! Every plan (from the runbooks, a model, a client of `opsbot serve`, an
//! edit in the app) is put in canonical terms before policy decides it:
//! `prod` becomes `production` in an environment argument, so the gate
//! that guards `production` cannot be walked around by spelling it
//! differently, and the canonical arguments are what is approved, hashed
//! and sent. An environment-like value opsbot does not know at all is
//! reported, and policy treats it as the most guarded environment.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::Config;

#[derive(Debug, Clone, Default)]
pub struct Estate {
    pub services: Vec<String>,
    pub envs: Vec<String>,
    /// Lower-cased other word → canonical name.
    aliases: BTreeMap<String, String>,
    /// Arguments that name an environment (`env`, `environment`, ...).
    pub env_args: Vec<String>,
    /// Arguments that name a service.
    pub service_args: Vec<String>,
}

/// One argument put in canonical terms: `env`: `prod` → `production`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub arg: String,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Renamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.arg, self.from, self.to)
    }
}

impl Estate {
    pub fn new(config: &Config) -> Self {
        let e = &config.estate;
        Self {
            services: e.services.clone(),
            envs: e.envs.clone(),
            aliases: e
                .aliases
                .iter()
                .map(|(k, v)| (k.trim().to_lowercase(), v.clone()))
                .collect(),
            env_args: e.env_args.clone(),
            service_args: e.service_args.clone(),
        }
    }

    /// The canonical name for `word` among `known`: itself when known (in
    /// any case, with stray spaces), else through an alias.
    fn canonical(&self, word: &str, known: &[String]) -> Option<String> {
        let w = word.trim().to_lowercase();
        if let Some(k) = known.iter().find(|k| k.to_lowercase() == w) {
            return Some(k.clone());
        }
        self.aliases
            .get(&w)
            .filter(|to| known.iter().any(|k| k == *to))
            .cloned()
    }

    /// What an other word stands for (`prod` → `production`), any case.
    pub fn alias(&self, word: &str) -> Option<String> {
        self.aliases.get(&word.trim().to_lowercase()).cloned()
    }

    /// Whether `arg` names an environment.
    pub fn is_env_arg(&self, arg: &str) -> bool {
        self.env_args.iter().any(|a| a == arg)
    }

    /// Put `args` in canonical terms, in place; says what changed. Values
    /// that refer to an earlier step's output (`${…}`) are left for the
    /// engine, which checks them again when filled.
    pub fn canonicalize(&self, args: &mut Map<String, Value>) -> Vec<Renamed> {
        let mut changed = Vec::new();
        for (arg, value) in args.iter_mut() {
            let known = if self.is_env_arg(arg) {
                &self.envs
            } else if self.service_args.iter().any(|a| a == arg) {
                &self.services
            } else {
                continue;
            };
            let Value::String(text) = value else { continue };
            if text.contains("${") {
                continue;
            }
            if let Some(to) = self.canonical(text, known)
                && to != *text
            {
                changed.push(Renamed {
                    arg: arg.clone(),
                    from: std::mem::replace(text, to.clone()),
                    to,
                });
            }
        }
        changed
    }

    /// The environment-like values in `args` that are neither a known
    /// environment nor an alias of one (after canonicalisation).
    pub fn unknown_envs<'a>(&self, args: &'a Map<String, Value>) -> Vec<(&'a str, &'a str)> {
        if self.envs.is_empty() {
            return Vec::new();
        }
        args.iter()
            .filter(|(arg, _)| self.is_env_arg(arg))
            .filter_map(|(arg, v)| Some((arg.as_str(), v.as_str()?)))
            .filter(|(_, v)| !v.contains("${") && !self.envs.iter().any(|e| e == v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn estate() -> Estate {
        let mut config = Config::default();
        config.estate.envs = vec!["dev".into(), "staging".into(), "production".into()];
        config.estate.services = vec!["checkout".into(), "payments".into()];
        config.estate.aliases = [
            ("prod", "production"),
            ("Stg", "staging"),
            ("co", "checkout"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        config.estate.env_args = vec!["env".into(), "environment".into()];
        config.estate.service_args = vec!["service".into()];
        Estate::new(&config)
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn aliases_and_case_become_the_canonical_name() {
        let e = estate();
        let mut a = args(json!({"env": "PROD", "service": "co", "replicas": 3, "image": "x"}));
        let changed = e.canonicalize(&mut a);
        assert_eq!(
            a,
            args(json!({"env": "production", "service": "checkout", "replicas": 3, "image": "x"}))
        );
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].to_string(), "env: PROD → production");
        let mut b = args(json!({"environment": " stg ", "env": "${deploy.env}"}));
        e.canonicalize(&mut b);
        assert_eq!(b["environment"], "staging");
        assert_eq!(
            b["env"], "${deploy.env}",
            "references are left to the engine"
        );
    }

    #[test]
    fn unknown_environments_are_named() {
        let e = estate();
        let a = args(json!({"env": "qa", "service": "checkout"}));
        assert_eq!(e.unknown_envs(&a), vec![("env", "qa")]);
        let a = args(json!({"env": "staging"}));
        assert!(e.unknown_envs(&a).is_empty());
    }
}
