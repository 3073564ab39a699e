//! Policy against the tools it governs: a rule whose condition names an
//! argument none of its tools take, or compares one with a value of the
//! wrong type, would never match, and a deny rule that never matches is
//! policy failing open. Checked whenever the catalog is known; such a rule
//! is an error that names its table, and nothing runs until it is fixed.

use serde_json::Value;

use super::Policy;
use super::cond::{Expr, Op, type_name};
use super::rules::Tools;
use crate::mcp::{Catalog, ToolInfo};
use crate::text::closest;

/// One problem: the config table it belongs to, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub table: String,
    pub message: String,
}

/// What a tool's input schema says an argument is: its JSON types, or
/// none when the schema does not say (then nothing is checked).
fn arg_types(tool: &ToolInfo, arg: &str) -> Option<Vec<&'static str>> {
    let spec = tool.input_schema.get("properties")?.get(arg)?;
    let one = |t: &str| match t {
        "integer" | "number" => Some("number"),
        "string" => Some("string"),
        "boolean" => Some("boolean"),
        "array" => Some("list"),
        "object" => Some("object"),
        "null" => Some("null"),
        _ => None,
    };
    match spec.get("type")? {
        Value::String(t) => one(t).map(|t| vec![t]),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| one(t.as_str()?)).collect()),
        _ => None,
    }
}

/// Whether a tool's schema lists its arguments (so a missing one is known
/// to be missing).
fn lists_args(tool: &ToolInfo) -> bool {
    tool.input_schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some()
}

fn arg_names(tool: &ToolInfo) -> impl Iterator<Item = &str> {
    tool.input_schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
}

/// The argument a comparison reads (`env`, `args.env`), or none when it
/// reads something else (`result.…`, an earlier step).
fn argument(path: &[String]) -> Option<&str> {
    match path {
        [a, name] if a == "args" => Some(name),
        [name] if name != "result" => Some(name),
        _ => None,
    }
}

/// The argument `arg` was probably meant to be: the closest one its tools
/// take, or, for a misspelt environment argument (`enviroment`), the
/// environment argument they do take (`env`).
fn suggest(arg: &str, listed: &[&ToolInfo], estate: &crate::estate::Estate) -> Option<String> {
    if let Some(s) = closest(arg, listed.iter().flat_map(|t| arg_names(t))) {
        return Some(s.to_string());
    }
    let env_like = closest(arg, estate.env_args.iter().map(String::as_str)).is_some()
        || closest(arg, ["environment", "env"]).is_some();
    if !env_like {
        return None;
    }
    listed
        .iter()
        .flat_map(|t| arg_names(t))
        .find(|n| estate.is_env_arg(n) || *n == "env")
        .map(str::to_string)
}

/// Problems with one condition over the tools its table matches.
fn check(
    table: &str,
    tools: &Tools,
    when: &Expr,
    catalog: &Catalog,
    estate: &crate::estate::Estate,
) -> Vec<Problem> {
    let matched: Vec<&ToolInfo> = catalog
        .iter()
        .filter(|t| tools.matches(&t.qualified()))
        .collect();
    let listed: Vec<&ToolInfo> = matched.iter().copied().filter(|t| lists_args(t)).collect();
    if listed.is_empty() || listed.len() < matched.len() {
        return Vec::new();
    }
    let names: Vec<String> = listed.iter().map(|t| t.qualified()).collect();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (path, op, value, transformed) in when.comparisons() {
        let Some(arg) = argument(path) else { continue };
        let takers: Vec<&&ToolInfo> = listed
            .iter()
            .filter(|t| arg_names(t).any(|n| n == arg))
            .collect();
        if takers.is_empty() {
            if seen.insert(arg.to_string()) {
                let suggestion = suggest(arg, &listed, estate)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                out.push(Problem {
                    table: table.to_string(),
                    message: format!(
                        "its condition names `{arg}`, an argument none of its tools take ({}){suggestion}",
                        names.join(", ")
                    ),
                });
            }
            continue;
        }
        // A value changed by a function, or tested as text, is not checked
        // against the argument's type here (`contains` also takes lists).
        if transformed || op.on_text() {
            continue;
        }
        let literals: Vec<&Value> = match (op, value) {
            (Op::In | Op::NotIn, Value::Array(items)) => items.iter().collect(),
            (_, v) if v.is_null() => Vec::new(),
            (_, v) => vec![v],
        };
        for lit in literals {
            let wrong = takers
                .iter()
                .all(|t| arg_types(t, arg).is_some_and(|types| !types.contains(&type_name(lit))));
            if wrong {
                let expected = takers
                    .iter()
                    .find_map(|t| arg_types(t, arg))
                    .map(|ts| ts.join(" or "))
                    .unwrap_or_default();
                out.push(Problem {
                    table: table.to_string(),
                    message: format!(
                        "its condition compares `{arg}` (a {expected}) with the {} {lit}; it would never match",
                        type_name(lit)
                    ),
                });
            }
        }
    }
    out
}

impl Policy {
    /// Every condition checked against the catalog's input schemas.
    pub fn check_against(&self, catalog: &Catalog) -> Vec<Problem> {
        let c = &self.compiled;
        let mut out = Vec::new();
        for r in &c.rules {
            if let Some(w) = &r.when {
                out.extend(check(
                    &format!("policy.rules.{}", r.id),
                    &r.tools,
                    w,
                    catalog,
                    &self.estate,
                ));
            }
        }
        for f in &c.freezes {
            if let Some(w) = &f.when {
                out.extend(check(
                    &format!("policy.freezes.{}", f.id),
                    &f.tools,
                    w,
                    catalog,
                    &self.estate,
                ));
            }
        }
        for e in &c.effects {
            if let Some(w) = &e.when {
                out.extend(check("policy.effects", &e.tools, w, catalog, &self.estate));
            }
        }
        out
    }
}
