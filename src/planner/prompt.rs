//! The LLM planning prompt, lean: tools as one-line signatures
//! (`k8s.deploy(service: string, env: "dev"|"staging"|"production", image:
//! string) — Roll out an image…`), a full schema only where a signature
//! cannot say it; the relevant tools in a stable (name) order; runbooks as
//! one-liners; the estate's services, environments, aliases and gates.
//!
//! What does not depend on the request comes first, byte for byte the same
//! across requests and repairs, so a provider's prompt cache applies; when
//! the whole catalog fits, the tool list is part of that prefix too.

use serde_json::Value;

use super::rank::rank;
use crate::config::{Config, Runbook};
use crate::mcp::ToolInfo;

/// Instructions: the same for every request.
const RULES: &str = "You plan infrastructure operations as a graph of MCP tool calls.\n\
Rules:\n\
- Use only the TOOLS below, named server.tool, with the arguments their signatures give (`?` = optional).\n\
- A step may use an earlier step's output as \"${step_id.field}\" and must then list that step in depends_on.\n\
- If the request is ambiguous or names a service, environment or tool that is not known, set needs_clarification and ask one question instead of guessing.\n\
- When a RUNBOOK fits, follow its steps.\n\
- Keep ids short (letters, digits, _), rationales to a few words.\n";

/// What goes into a system prompt besides the request.
pub struct PromptInput<'a> {
    pub request: &'a str,
    pub tools: &'a [ToolInfo],
    pub runbooks: &'a [(String, Runbook)],
    pub max_tools: usize,
}

/// The estate section: services, environments (and which are gated),
/// aliases, from the config.
pub fn estate_section(config: &Config) -> String {
    let e = &config.estate;
    let mut out = String::from("ESTATE:\n");
    if !e.services.is_empty() {
        out.push_str(&format!("services: {}\n", e.services.join(", ")));
    }
    if !e.envs.is_empty() {
        out.push_str(&format!("environments: {}\n", e.envs.join(", ")));
    }
    if !config.policy.gated_envs.is_empty() {
        out.push_str(&format!(
            "gated (a person confirms each step): {}\n",
            config.policy.gated_envs.join(", ")
        ));
    }
    if !e.aliases.is_empty() {
        let aliases: Vec<String> = e.aliases.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("aliases: {}\n", aliases.join(", ")));
    }
    out
}

/// The prompt's tools: every tool if they fit `max_tools`, else the most
/// relevant ones; either way in name order, so the same set is always the
/// same text.
pub fn tool_section(input: &PromptInput<'_>) -> (String, usize, bool) {
    let whole = input.tools.len() <= input.max_tools;
    let mut chosen: Vec<&ToolInfo> = if whole {
        input.tools.iter().collect()
    } else {
        rank(input.request, input.tools, input.max_tools)
    };
    chosen.sort_by_key(|t| t.qualified());
    let mut out = String::from("TOOLS:\n");
    for t in &chosen {
        out.push_str(&signature(t));
        out.push('\n');
    }
    (out, chosen.len(), whole)
}

/// One line for a tool: name, typed arguments (required first), the first
/// sentence of its description, and what it does to the world.
pub fn signature(tool: &ToolInfo) -> String {
    let schema = &tool.input_schema;
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort_by_key(|n| (!required.contains(&n.as_str()), n.as_str()));
    let args: Vec<String> = names
        .iter()
        .map(|n| {
            let opt = if required.contains(&n.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{n}{opt}: {}", type_of(&props[n.as_str()]))
        })
        .collect();
    let a = tool.annotations;
    let effect = if a.read_only {
        "read-only"
    } else if a.destructive {
        "destructive"
    } else {
        "changes state"
    };
    let description = crate::text::truncate(&crate::text::first_sentence(&tool.description), 120);
    format!(
        "{}({}) — {description} [{effect}]",
        tool.qualified(),
        args.join(", ")
    )
}

/// A schema as a short type: `string`, `integer`, `"a"|"b"`, `string[]`;
/// an object with properties (which a word cannot say) as compact JSON.
fn type_of(spec: &Value) -> String {
    if let Some(options) = spec.get("enum").and_then(Value::as_array) {
        return options
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("|");
    }
    let ty = match spec.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join("|"),
        _ => "any".into(),
    };
    match ty.as_str() {
        "array" => format!(
            "{}[]",
            spec.get("items").map_or_else(|| "any".into(), type_of)
        ),
        "object" if spec.get("properties").is_some() => {
            let mut compact = spec.clone();
            strip_noise(&mut compact);
            compact.to_string()
        }
        _ => ty,
    }
}

/// Keys a model does not need: `$schema`, titles, descriptions of nested
/// fields, `additionalProperties`.
fn strip_noise(v: &mut Value) {
    if let Value::Object(map) = v {
        for k in [
            "$schema",
            "title",
            "description",
            "additionalProperties",
            "examples",
        ] {
            map.remove(k);
        }
        for child in map.values_mut() {
            strip_noise(child);
        }
    }
}

/// Runbooks as one-liners: name, a phrase, the step tools in order.
/// A few are always all listed (stable, cacheable); many, only those
/// whose words appear in the request.
pub fn runbook_section(request: &str, runbooks: &[(String, Runbook)]) -> String {
    const ALL_UP_TO: usize = 8;
    let words: Vec<String> = request
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_string)
        .collect();
    let relevant = |(name, rb): &&(String, Runbook)| {
        runbooks.len() <= ALL_UP_TO
            || std::iter::once(name.as_str())
                .chain(rb.verbs.iter().map(String::as_str))
                .chain(rb.phrases.iter().map(String::as_str))
                .any(|t| words.iter().any(|w| t.to_lowercase().contains(w.as_str())))
    };
    let mut out = String::new();
    for (name, rb) in runbooks.iter().filter(relevant) {
        let tools: Vec<String> = rb
            .steps
            .iter()
            .map(|s| format!("{}:{}", s.id, s.tool))
            .collect();
        let phrase = rb.phrases.first().cloned().unwrap_or_default();
        out.push_str(&format!("{name} (\"{phrase}\"): {}\n", tools.join(" → ")));
    }
    if out.is_empty() {
        out
    } else {
        format!("RUNBOOKS (steps in order; {{slots}} from the request):\n{out}")
    }
}

/// The whole system prompt; returns it and where its request-independent
/// prefix ends (for measuring what a prompt cache can reuse).
pub fn system_prompt(estate: &str, input: &PromptInput<'_>) -> (String, usize) {
    let mut prompt = String::from(RULES);
    prompt.push_str(estate);
    let (tools, _, whole) = tool_section(input);
    let runbooks = runbook_section(input.request, input.runbooks);
    let stable_runbooks = input.runbooks.len() <= 8;
    // Request-independent parts first, in a fixed order.
    let mut prefix_end;
    if whole {
        prompt.push_str(&tools);
        prefix_end = prompt.len();
        if stable_runbooks {
            prompt.push_str(&runbooks);
            prefix_end = prompt.len();
        } else {
            prompt.push_str(&runbooks);
        }
    } else {
        if stable_runbooks {
            prompt.push_str(&runbooks);
        }
        prefix_end = prompt.len();
        prompt.push_str(&tools);
        if !stable_runbooks {
            prompt.push_str(&runbooks);
        }
    }
    (prompt, prefix_end)
}

/// Tokens in `text` for `model`: exact for OpenAI's models (their
/// tokenizer), estimated for others (about four characters a token).
pub fn count_tokens(model: &str, text: &str) -> (usize, bool) {
    use std::sync::OnceLock;
    static O200K: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    let m = model.to_lowercase();
    let bpe = if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("chatgpt")
    {
        O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref()
    } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref()
    } else {
        None
    };
    match bpe {
        Some(bpe) => (bpe.encode_with_special_tokens(text).len(), true),
        None => (text.chars().count().div_ceil(4), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Annotations;
    use serde_json::json;

    fn tool(server: &str, name: &str, schema: Value) -> ToolInfo {
        ToolInfo {
            server: server.into(),
            name: name.into(),
            description: "Roll out an image to a service. More words here.".into(),
            input_schema: schema,
            annotations: Annotations::default(),
            def_hash: String::new(),
            sent: None,
        }
    }

    #[test]
    fn a_signature_says_types_enums_and_what_is_optional() {
        let t = tool(
            "k8s",
            "deploy",
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                   "properties": {"service": {"type": "string"}, "env": {"enum": ["dev", "staging"]},
                                  "replicas": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
                                  "limits": {"type": "object", "title": "x", "properties": {"cpu": {"type": "string", "description": "d"}}}},
                   "required": ["service", "env"]}),
        );
        assert_eq!(
            signature(&t),
            r#"k8s.deploy(env: "dev"|"staging", service: string, limits?: {"properties":{"cpu":{"type":"string"}},"type":"object"}, replicas?: integer, tags?: string[]) — Roll out an image to a service. [changes state]"#
        );
    }

    #[test]
    fn five_hundred_tools_keep_the_relevant_one_in_a_stable_order() {
        let mut tools: Vec<ToolInfo> = (0..500)
            .map(|i| {
                tool(
                    &format!("srv{}", i % 25),
                    &format!("tool_{i}"),
                    json!({"type": "object"}),
                )
            })
            .collect();
        tools.push(ToolInfo {
            description: "Return a service in an environment to an earlier revision".into(),
            ..tool("k8s", "rollback", json!({"type": "object"}))
        });
        let input = PromptInput {
            request: "roll back checkout in staging",
            tools: &tools,
            runbooks: &[],
            max_tools: 40,
        };
        let (section, count, whole) = tool_section(&input);
        assert!(!whole);
        assert_eq!(count, 40);
        assert!(section.contains("k8s.rollback("), "{section}");
        let names: Vec<&str> = section.lines().skip(1).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "name order");
    }

    #[test]
    fn tokens_are_counted_exactly_for_openai_models_and_estimated_else() {
        let (n, exact) = count_tokens("gpt-4o-mini", "deploy checkout to staging");
        assert!(exact);
        assert!((3..=8).contains(&n), "{n}");
        assert_eq!(count_tokens("llama3.1", "abcdefgh"), (2, false));
    }
}
