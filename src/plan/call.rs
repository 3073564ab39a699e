//! One tool call written out by hand (`opsbot call`, the app's `/call`):
//! a one-step plan whose `KEY=VALUE` arguments are typed by the tool's
//! input schema. It is then proposed, decided, approved and run like any
//! other plan; nothing here bypasses policy.

use serde_json::{Map, Value};

use super::{Plan, Step};
use crate::mcp::{Catalog, ToolInfo};
use crate::text::{closest, first_sentence};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallSpecError {
    #[error(
        "write the tool as `server.tool`, e.g. `time.get_current_time` (`opsbot tools` lists them)"
    )]
    BadName(String),
    #[error("there is no tool `{tool}`{}; `opsbot tools` lists them", hint(.suggestion))]
    UnknownTool {
        tool: String,
        suggestion: Option<String>,
    },
    #[error("`{0}` is not KEY=VALUE (e.g. env=staging)")]
    NotPair(String),
    #[error("{tool} takes no argument `{key}`{}; it takes {known}", hint(.suggestion))]
    UnknownArg {
        tool: String,
        key: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("`{key}` {problem}")]
    BadValue { key: String, problem: String },
    #[error("--args must be a JSON object, e.g. '{{\"env\": \"staging\"}}': {0}")]
    BadJson(String),
    #[error("{tool} needs {missing}: add {example}")]
    Missing {
        tool: String,
        missing: String,
        example: String,
    },
    #[error("a quote is not closed: {0}")]
    OpenQuote(String),
}

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// Split a `/call` line into words the way a shell would for simple
/// quoting: `server.tool text='hello world' n=3`.
pub fn split_words(line: &str) -> Result<Vec<String>, CallSpecError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if quote.is_some() {
        return Err(CallSpecError::OpenQuote(line.to_string()));
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

/// The one-step plan for `tool` with `pairs` (`KEY=VALUE`) over `json`
/// (a JSON object given whole); a pair wins over the same key in `json`.
pub fn call_plan(
    catalog: &Catalog,
    tool: &str,
    pairs: &[String],
    json: Option<&str>,
) -> Result<Plan, CallSpecError> {
    if !tool.contains('.') || tool.starts_with('.') || tool.ends_with('.') {
        return Err(CallSpecError::BadName(tool.to_string()));
    }
    let info = catalog
        .get(tool)
        .ok_or_else(|| CallSpecError::UnknownTool {
            tool: tool.to_string(),
            suggestion: catalog.suggest(tool).map(str::to_string),
        })?;
    let mut args = match json {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(CallSpecError::BadJson(format!("got {other}"))),
            Err(e) => return Err(CallSpecError::BadJson(e.to_string())),
        },
    };
    let props = info
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let open = info
        .input_schema
        .get("additionalProperties")
        .is_none_or(|a| a != &Value::Bool(false))
        && props.is_empty();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| CallSpecError::NotPair(pair.clone()))?;
        let spec = match props.get(key) {
            Some(spec) => spec,
            None if open => &Value::Null,
            None => {
                return Err(CallSpecError::UnknownArg {
                    tool: tool.to_string(),
                    key: key.to_string(),
                    suggestion: closest(key, props.keys().map(String::as_str)).map(str::to_string),
                    known: known_args(&props),
                });
            }
        };
        let value = typed(spec, raw).map_err(|problem| CallSpecError::BadValue {
            key: key.to_string(),
            problem,
        })?;
        args.insert(key.to_string(), value);
    }
    let missing = missing_required(info, &args);
    if !missing.is_empty() {
        return Err(CallSpecError::Missing {
            tool: tool.to_string(),
            example: missing
                .iter()
                .map(|m| format!("{m}=…"))
                .collect::<Vec<_>>()
                .join(" "),
            missing: missing
                .iter()
                .map(|m| describe_arg(m, props.get(*m)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut step = Step::new("call", tool, args);
    step.description = first_sentence(&info.description);
    Ok(Plan {
        title: format!("call {tool}"),
        steps: vec![step],
    })
}

fn known_args(props: &Map<String, Value>) -> String {
    if props.is_empty() {
        "no arguments".into()
    } else {
        props
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn missing_required<'a>(info: &'a ToolInfo, args: &Map<String, Value>) -> Vec<&'a str> {
    info.input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .filter(|k| !args.contains_key(*k))
                .collect()
        })
        .unwrap_or_default()
}

/// `name` with what its schema says about it, for a question.
pub fn describe_arg(name: &str, spec: Option<&Value>) -> String {
    let Some(spec) = spec else {
        return format!("`{name}`");
    };
    let ty = types(spec).join(" or ");
    let desc = spec
        .get("description")
        .and_then(Value::as_str)
        .map(first_sentence)
        .unwrap_or_default();
    match (ty.is_empty(), desc.is_empty()) {
        (true, true) => format!("`{name}`"),
        (false, true) => format!("`{name}` ({ty})"),
        (true, false) => format!("`{name}` ({desc})"),
        (false, false) => format!("`{name}` ({ty}: {desc})"),
    }
}

/// The JSON types a schema allows.
pub fn types(spec: &Value) -> Vec<&str> {
    match spec.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `raw` as the value `spec` describes: a number for a number, a list for
/// an array (JSON, or comma-separated), JSON for an object; a string when
/// the schema says string or says nothing.
pub fn typed(spec: &Value, raw: &str) -> Result<Value, String> {
    let t = types(spec);
    let has = |name: &str| t.contains(&name);
    if has("string") || t.is_empty() {
        return Ok(Value::String(raw.to_string()));
    }
    if has("integer")
        && let Ok(n) = raw.trim().parse::<i64>()
    {
        return Ok(Value::from(n));
    }
    if has("number")
        && let Ok(n) = raw.trim().parse::<f64>()
        && n.is_finite()
    {
        return Ok(Value::from(n));
    }
    if has("boolean") {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => return Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => return Ok(Value::Bool(false)),
            _ => {}
        }
    }
    if has("array") {
        if raw.trim_start().starts_with('[') {
            return match serde_json::from_str::<Value>(raw) {
                Ok(v @ Value::Array(_)) => Ok(v),
                _ => Err(format!("expects a list, and `{raw}` is not a JSON array")),
            };
        }
        let items = spec.get("items").unwrap_or(&Value::Null);
        return raw
            .split(',')
            .map(|part| typed(items, part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if has("object") {
        return match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(format!(
                "expects an object, given as JSON, e.g. '{{\"k\": 1}}'; `{raw}` is not one"
            )),
        };
    }
    if has("null") && raw == "null" {
        return Ok(Value::Null);
    }
    Err(format!("expects {}, not `{raw}`", t.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::new([ToolInfo {
            server: "k8s".into(),
            name: "scale".into(),
            description: "Scale a deployment. More text.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "env": {"type": "string"},
                    "replicas": {"type": "integer", "description": "How many pods."},
                    "dry_run": {"type": "boolean"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["service", "env", "replicas"],
                "additionalProperties": false,
            }),
            annotations: Default::default(),
            def_hash: "h".into(),
            sent: None,
        }])
    }

    fn words(line: &str) -> Vec<String> {
        split_words(line).expect("words")
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let plan = call_plan(
            &catalog(),
            "k8s.scale",
            &words("service=checkout env=staging replicas=5 dry_run=yes labels=a,b"),
            None,
        )
        .expect("plan");
        assert_eq!(
            Value::Object(plan.steps[0].args.clone()),
            json!({"service": "checkout", "env": "staging", "replicas": 5, "dry_run": true, "labels": ["a", "b"]})
        );
        assert_eq!(plan.steps[0].description, "Scale a deployment.");
    }

    #[test]
    fn json_then_pairs_and_quotes() {
        let plan = call_plan(
            &catalog(),
            "k8s.scale",
            &words("env='stag ing' replicas=2"),
            Some(r#"{"service": "payments", "replicas": 9}"#),
        )
        .expect("plan");
        assert_eq!(plan.steps[0].args["env"], json!("stag ing"));
        assert_eq!(plan.steps[0].args["replicas"], json!(2));
        assert_eq!(plan.steps[0].args["service"], json!("payments"));
    }

    #[test]
    fn mistakes_are_named_with_what_to_do() {
        let c = catalog();
        let e = |tool: &str, line: &str, json: Option<&str>| {
            call_plan(&c, tool, &words(line), json)
                .expect_err("error")
                .to_string()
        };
        assert!(e("k8s.scal", "", None).contains("did you mean `k8s.scale`"));
        assert!(e("scale", "", None).contains("server.tool"));
        assert!(
            e("k8s.scale", "servce=a env=b replicas=1", None).contains("did you mean `service`")
        );
        assert!(
            e("k8s.scale", "service=a env=b replicas=five", None)
                .contains("`replicas` expects integer, not `five`")
        );
        assert!(
            e("k8s.scale", "service=a", None)
                .contains("needs `env` (string), `replicas` (integer: How many pods.)")
        );
        assert!(e("k8s.scale", "service", None).contains("not KEY=VALUE"));
        assert!(e("k8s.scale", "", Some("[1]")).contains("JSON object"));
        assert!(split_words("a 'b").is_err());
    }
}
