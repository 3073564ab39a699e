//! One tool call from the catalog, planned offline: the tools are ranked
//! against the request (names, descriptions, argument names and their
//! descriptions, with the words engineers use for them), arguments are
//! filled from the request's parts as each tool's JSON schema types them,
//! and a missing required argument is asked for by name. Below a clear
//! winner it asks which tool was meant; it never guesses.

use super::rank::terms;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::understand::Understood;
use crate::estate::Estate;
use crate::mcp::{Catalog, ToolInfo};
use crate::plan::{Plan, Step};

/// What the catalog made of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Single {
    Plan(Plan),
    Ask(String),
    /// No tool is a plausible match.
    Nothing,
}

/// Other words for what tools do, as their names and descriptions say it.
const SYNONYMS: &[(&str, &[&str])] = &[
    ("healthy", &["health"]),
    ("unhealthy", &["health"]),
    ("alive", &["health"]),
    ("down", &["health", "alerts"]),
    ("fire", &["alerts"]),
    ("firing", &["alerts"]),
    ("burning", &["alerts"]),
    ("broken", &["alerts", "health"]),
    ("alerting", &["alerts"]),
    ("paging", &["alerts"]),
    ("incident", &["alerts"]),
    ("incidents", &["alerts"]),
    ("alert", &["alerts"]),
    ("tell", &["notify", "message", "post"]),
    ("say", &["notify", "message", "post"]),
    ("post", &["notify", "message"]),
    ("announce", &["notify", "message"]),
    ("ping", &["notify", "message"]),
    ("message", &["notify"]),
    ("messages", &["history"]),
    ("said", &["history"]),
    ("replicas", &["scale"]),
    ("replica", &["scale"]),
    ("resize", &["scale"]),
    ("pods", &["scale"]),
    ("instances", &["scale"]),
    ("running", &["status"]),
    ("runs", &["status"]),
    ("live", &["status"]),
    ("version", &["status"]),
    ("revision", &["status"]),
    ("deployed", &["status"]),
    ("compile", &["build"]),
    ("tests", &["run_tests", "test"]),
    ("test", &["run_tests", "tests"]),
    ("coverage", &["scan"]),
    ("quality", &["scan"]),
    ("vulnerabilities", &["scan"]),
    ("latency", &["metrics"]),
    ("errors", &["metrics"]),
    ("cpu", &["metrics"]),
    ("memory", &["metrics"]),
    ("clock", &["time"]),
    ("ls", &["list", "directory"]),
    ("files", &["list", "directory", "file"]),
    ("folder", &["directory"]),
    ("cat", &["read", "file"]),
    ("show", &["read", "show"]),
    ("commits", &["log"]),
    ("history", &["log", "history"]),
    ("changes", &["diff", "status"]),
    ("tags", &["tags", "list"]),
    ("images", &["tags", "image"]),
];

/// Words that ask for something without saying what.
const WEAK: &[&str] = &[
    "show", "get", "give", "display", "see", "check", "find", "tell-me",
];

/// Argument names that take a message's text.
const TEXT_ARGS: &[&str] = &["text", "message", "body", "content", "msg"];
/// Argument names that take a path.
const PATH_ARGS: &[&str] = &[
    "path",
    "repo_path",
    "repo",
    "repository",
    "dir",
    "directory",
    "file",
    "filename",
    "root",
];
/// Argument names that take a git ref.
const REF_ARGS: &[&str] = &["ref", "git_ref", "branch", "commit", "sha"];

/// What a tool is, as words: its name (twice: the strongest signal), its
/// description, and its arguments' names and descriptions.
fn document(tool: &ToolInfo) -> Vec<String> {
    let mut words = terms(&tool.qualified());
    words.extend(terms(&tool.name));
    words.push(tool.name.to_lowercase());
    words.extend(terms(&tool.description));
    if let Some(props) = tool
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
    {
        for (name, spec) in props {
            words.extend(terms(name));
            if let Some(d) = spec.get("description").and_then(Value::as_str) {
                words.extend(terms(d));
            }
        }
    }
    words
}

/// The request's words, joined pairs ("roll back" → "rollback") and the
/// words tools use for them.
fn expand(words: &[&str]) -> Vec<String> {
    // Verbs that say "do it", not what: they would pick `git_show` for
    // "show the git log".
    let words: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !WEAK.contains(w))
        .collect();
    let mut query: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    query.extend(words.windows(2).map(|w| format!("{}{}", w[0], w[1])));
    for w in words {
        if let Some((_, more)) = SYNONYMS.iter().find(|(k, _)| k == &w) {
            query.extend(more.iter().map(|m| m.to_string()));
        }
    }
    query.sort_unstable();
    query.dedup();
    query
}

/// The BM25 index of a catalog: each tool's term counts and length, and
/// in how many tools each term occurs. Built once per catalog (the last
/// one is kept): requests are planned against the same catalog many times.
struct Index {
    key: u64,
    docs: Vec<(HashMap<String, u32>, f64)>,
    df: HashMap<String, usize>,
    avg: f64,
}

static INDEX: std::sync::Mutex<Option<std::sync::Arc<Index>>> = std::sync::Mutex::new(None);

fn index_for(key: u64, tools: &[&ToolInfo]) -> std::sync::Arc<Index> {
    let mut cached = INDEX.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(index) = cached.as_ref().filter(|i| i.key == key) {
        return std::sync::Arc::clone(index);
    }
    let mut df: HashMap<String, usize> = HashMap::new();
    let docs: Vec<(HashMap<String, u32>, f64)> = tools
        .iter()
        .map(|t| {
            let words = document(t);
            let len = words.len() as f64;
            let mut tf: HashMap<String, u32> = HashMap::new();
            for w in words {
                *tf.entry(w).or_default() += 1;
            }
            for term in tf.keys() {
                *df.entry(term.clone()).or_default() += 1;
            }
            (tf, len)
        })
        .collect();
    let n = docs.len().max(1) as f64;
    let avg = docs.iter().map(|(_, len)| len).sum::<f64>() / n;
    let index = std::sync::Arc::new(Index { key, docs, df, avg });
    *cached = Some(std::sync::Arc::clone(&index));
    index
}

/// Each tool's BM25 score for the request's words and their synonyms.
fn scores<'a>(u: &Understood, catalog: &'a Catalog) -> Vec<(f64, &'a ToolInfo)> {
    let tools: Vec<&ToolInfo> = catalog.iter().collect();
    let index = index_for(catalog.key(), &tools);
    let n = index.docs.len().max(1) as f64;
    let query = expand(&u.words());
    let (k1, b) = (1.2, 0.75);
    tools
        .iter()
        .zip(&index.docs)
        .map(|(tool, (tf_of, len))| {
            let score: f64 = query
                .iter()
                .map(|q| {
                    let tf = tf_of.get(q.as_str()).copied().unwrap_or(0) as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let d = index.df.get(q.as_str()).copied().unwrap_or(0) as f64;
                    let idf = ((n - d + 0.5) / (d + 0.5) + 1.0).ln();
                    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / index.avg.max(1.0)))
                })
                .sum();
            (score, *tool)
        })
        .collect()
}

/// The score a best match needs, and how far ahead of the next it must be.
const MIN_SCORE: f64 = 1.5;
const LEAD: f64 = 1.25;

/// A tool call for the request from the catalog, a question, or nothing.
pub fn plan_single(u: &Understood, catalog: &Catalog, estate: &Estate) -> Single {
    if let Some(name) = &u.tool {
        return match catalog.get(name) {
            Some(tool) => call(tool, u, estate),
            None => {
                let known: Vec<String> = catalog.iter().map(|t| t.qualified()).collect();
                let hint = crate::text::closest(name, known.iter().map(String::as_str))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                Single::Ask(format!(
                    "No connected server has a tool `{name}`.{hint} `opsbot tools` lists them."
                ))
            }
        };
    }
    let words = u.words();
    let query: Vec<String> = expand(&words);
    let mut ranked: Vec<(f64, &ToolInfo, usize)> = scores(u, catalog)
        .into_iter()
        // A tool is a candidate only if the request names what it does (its
        // name, or a word for it), not merely a word of its description.
        .filter(|(_, t)| terms(&t.name).iter().any(|n| query.contains(n)))
        .map(|(s, t)| {
            let (args, missing) = fill(t, u, estate);
            // What the request fills speaks for a tool, what it cannot
            // speaks against; and a name the request covers whole beats a
            // longer one (`list_directory` over `list_directory_with_sizes`).
            let name = terms(&t.name);
            let hits = name.iter().filter(|n| query.contains(n)).count() as f64;
            let covered = hits / name.len().max(1) as f64;
            let uncovered = name.len() as f64 - hits;
            let fit =
                args.len() as f64 * 0.5 - missing.len() as f64 * 0.75 + covered - uncovered * 0.5;
            (s + fit, t, missing.len())
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let Some((best, tool, _)) = ranked.first().copied() else {
        return Single::Nothing;
    };
    if best < MIN_SCORE {
        return Single::Nothing;
    }
    if let Some((second, other, _)) = ranked.get(1).copied()
        && second * LEAD > best
    {
        return Single::Ask(format!(
            "Did you mean {} ({}) or {} ({})? Say which, or name the tool.",
            tool.qualified(),
            first_sentence(&tool.description),
            other.qualified(),
            first_sentence(&other.description)
        ));
    }
    call(tool, u, estate)
}

fn first_sentence(text: &str) -> String {
    let s = text.split(['.', '\n']).next().unwrap_or(text).trim();
    crate::text::truncate(s, 80).to_lowercase()
}

/// One step calling `tool`, or the question for what it still needs.
fn call(tool: &ToolInfo, u: &Understood, estate: &Estate) -> Single {
    let (args, missing) = fill(tool, u, estate);
    if let Some((name, spec)) = missing.first() {
        let about = spec
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(" ({})", first_sentence(d)))
            .unwrap_or_default();
        let known = if estate.is_env_arg(name) {
            format!(" One of: {}.", estate.envs.join(", "))
        } else if estate.service_args.iter().any(|a| a == name) {
            format!(" One of: {}.", estate.services.join(", "))
        } else {
            String::new()
        };
        return Single::Ask(format!(
            "To call {} I need `{name}`{about}. What should it be?{known}",
            tool.qualified()
        ));
    }
    let target = [
        args.iter()
            .find(|(k, _)| estate.service_args.contains(k))
            .and_then(|(_, v)| v.as_str()),
        args.iter()
            .find(|(k, _)| estate.is_env_arg(k))
            .and_then(|(_, v)| v.as_str()),
    ];
    let title = match target {
        [Some(s), Some(e)] => format!("{} {s} → {e}", tool.qualified()),
        [Some(s), None] => format!("{} {s}", tool.qualified()),
        [None, Some(e)] => format!("{} → {e}", tool.qualified()),
        [None, None] => tool.qualified(),
    };
    let description = first_sentence(&tool.description);
    let mut step = Step::new(tool.name.clone(), tool.qualified(), args);
    step.description = description;
    Single::Plan(Plan {
        title,
        steps: vec![step],
    })
}

/// The tool's arguments from the request, and the required ones it could
/// not fill (name and schema).
fn fill<'a>(
    tool: &'a ToolInfo,
    u: &Understood,
    estate: &Estate,
) -> (Map<String, Value>, Vec<(&'a str, &'a Value)>) {
    let mut args = Map::new();
    let mut missing = Vec::new();
    let Some(props) = tool
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
    else {
        return (args, missing);
    };
    let required: Vec<&str> = tool
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // One value from the request fills one argument: a timezone named
    // once is not both the source and the target of a conversion.
    let mut used: Vec<Value> = Vec::new();
    for (name, spec) in props {
        let value = value_for(name, spec, u, estate).filter(|v| !used.contains(v));
        if let Some(v) = &value {
            used.push(v.clone());
        }
        match value {
            Some(v) => {
                args.insert(name.clone(), v);
            }
            None if required.contains(&name.as_str()) => missing.push((name.as_str(), spec)),
            None => {}
        }
    }
    (args, missing)
}

/// The value the request gives argument `name`, typed by its schema.
fn value_for(name: &str, spec: &Value, u: &Understood, estate: &Estate) -> Option<Value> {
    let lower = name.to_lowercase();
    let typed = |raw: &str| crate::plan::call::typed(spec, raw).ok();
    if let Some((_, v)) = u.pairs.iter().find(|(k, _)| k == name) {
        return typed(v);
    }
    if let Some(options) = spec.get("enum").and_then(Value::as_array) {
        return options
            .iter()
            .find(|o| {
                o.as_str()
                    .is_some_and(|o| u.tokens.iter().any(|w| w.eq_ignore_ascii_case(o)))
            })
            .cloned();
    }
    if estate.is_env_arg(name) {
        return u.env().map(|e| Value::String(e.to_string()));
    }
    if estate.service_args.iter().any(|a| a == name) {
        return match u.services.as_slice() {
            [one] => Some(Value::String(one.clone())),
            _ => None,
        };
    }
    if lower.contains("channel") {
        return u.channels.first().map(|c| Value::String(c.clone()));
    }
    if TEXT_ARGS.contains(&lower.as_str()) {
        return u.text.clone().map(Value::String);
    }
    if PATH_ARGS.contains(&lower.as_str()) {
        return u.paths.first().map(|p| Value::String(p.clone()));
    }
    if REF_ARGS.contains(&lower.as_str()) {
        return u.git_ref.clone().map(Value::String);
    }
    if lower.contains("timezone") || lower == "tz" {
        return u
            .slashed
            .first()
            .cloned()
            .or_else(|| {
                u.tokens
                    .iter()
                    .find(|w| *w == "utc")
                    .map(|_| "UTC".to_string())
            })
            .map(Value::String);
    }
    if crate::plan::call::types(spec)
        .iter()
        .any(|t| matches!(*t, "integer" | "number"))
    {
        return match u.numbers.as_slice() {
            [one] => typed(&one.to_string()),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, DEFAULT_TOML, load_layers};
    use crate::mcp::Annotations;
    use serde_json::json;

    fn tool(server: &str, name: &str, description: &str, schema: Value) -> ToolInfo {
        ToolInfo {
            server: server.into(),
            name: name.into(),
            description: description.into(),
            input_schema: schema,
            annotations: Annotations::default(),
            def_hash: String::new(),
            sent: None,
        }
    }

    fn estate() -> Estate {
        let loaded = load_layers(vec![ConfigSource {
            name: "d".into(),
            text: DEFAULT_TOML.into(),
        }])
        .expect("config");
        Estate::new(&loaded.config)
    }

    fn catalog() -> Catalog {
        let target = |extra: Value| {
            let mut s = json!({"type": "object", "properties": {
                "service": {"type": "string"}, "env": {"type": "string"}},
                "required": ["service", "env"]});
            if let Value::Object(more) = extra {
                for (k, v) in more {
                    s["properties"][&k] = v;
                    s["required"]
                        .as_array_mut()
                        .expect("list")
                        .push(Value::String(k));
                }
            }
            s
        };
        Catalog::new([
            tool(
                "monitor",
                "health",
                "Health of a service in an environment.",
                target(json!({})),
            ),
            tool(
                "k8s",
                "status",
                "What runs where: live revision and image.",
                target(json!({})),
            ),
            tool(
                "k8s",
                "scale",
                "Change the number of replicas.",
                target(json!({"replicas": {"type": "integer", "description": "How many pods"}})),
            ),
            tool(
                "monitor",
                "alerts",
                "Alerts firing now.",
                json!({"type": "object", "properties": {}}),
            ),
            tool(
                "chat",
                "notify",
                "Post a message to a channel.",
                json!({"type": "object", "properties": {
                    "channel": {"type": "string"}, "text": {"type": "string"}},
                    "required": ["channel", "text"]}),
            ),
        ])
    }

    fn single(request: &str) -> Single {
        let e = estate();
        plan_single(
            &super::super::understand::understand(request, &e),
            &catalog(),
            &e,
        )
    }

    #[test]
    fn a_tool_is_found_and_filled_by_its_schema() {
        let Single::Plan(p) = single("scale payments to 5 replicas in staging") else {
            panic!("{:?}", single("scale payments to 5 replicas in staging"));
        };
        assert_eq!(p.steps[0].tool, "k8s.scale");
        assert_eq!(
            Value::Object(p.steps[0].args.clone()),
            json!({"service": "payments", "env": "staging", "replicas": 5})
        );
        let Single::Plan(p) = single("is search healthy on staging") else {
            panic!();
        };
        assert_eq!(p.steps[0].tool, "monitor.health");
        let Single::Plan(p) = single("what's on fire") else {
            panic!();
        };
        assert_eq!(p.steps[0].tool, "monitor.alerts");
        let Single::Plan(p) = single("tell #oncall that checkout is fixed") else {
            panic!();
        };
        assert_eq!(
            Value::Object(p.steps[0].args.clone()),
            json!({"channel": "#oncall", "text": "checkout is fixed"})
        );
    }

    #[test]
    fn a_missing_argument_is_asked_for_by_name_and_nonsense_is_nothing() {
        match single("scale payments in staging") {
            Single::Ask(q) => assert!(q.contains("I need `replicas` (how many pods)"), "{q}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(single("make me a sandwich"), Single::Nothing);
    }
}
