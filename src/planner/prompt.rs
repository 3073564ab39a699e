//! The tool part of an LLM planning prompt, kept within a budget however
//! large the catalog: the most relevant tools first (BM25), descriptions
//! cut, and no tool added once the budget would be exceeded.

use serde_json::json;

use super::rank::rank;
use crate::mcp::ToolInfo;

#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// At most this many tools.
    pub max_tools: usize,
    /// At most this many characters for the whole tool section.
    pub max_chars: usize,
    /// Each description is cut to this many characters.
    pub max_description: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_tools: 40,
            max_chars: 24_000,
            max_description: 300,
        }
    }
}

/// One JSON line per tool: name, description, read-only flag, input schema.
/// Returns the section and how many tools it holds.
pub fn tool_section(request: &str, tools: &[ToolInfo], budget: Budget) -> (String, usize) {
    let mut out = String::new();
    let mut count = 0;
    for tool in rank(request, tools, budget.max_tools) {
        let line = json!({
            "name": tool.qualified(),
            "description": crate::text::truncate(&tool.description, budget.max_description),
            "read_only": tool.annotations.read_only,
            "input_schema": tool.input_schema,
        })
        .to_string();
        if out.len() + line.len() + 1 > budget.max_chars {
            continue;
        }
        out.push_str(&line);
        out.push('\n');
        count += 1;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Annotations;

    fn synthetic(i: usize) -> ToolInfo {
        ToolInfo {
            server: format!("srv{}", i % 25),
            name: format!("tool_{i}"),
            description: format!("Synthetic tool number {i} that manages widget {i}. ").repeat(20),
            input_schema: json!({
                "type": "object",
                "properties": { "id": {"type": "string"}, "count": {"type": "integer"} },
                "required": ["id"]
            }),
            annotations: Annotations::default(),
            def_hash: String::new(),
        }
    }

    #[test]
    fn five_hundred_tools_stay_within_the_budget_and_keep_the_relevant_one() {
        let mut tools: Vec<ToolInfo> = (0..500).map(synthetic).collect();
        tools.push(ToolInfo {
            server: "k8s".into(),
            name: "rollback".into(),
            description: "Return a service in an environment to an earlier revision".into(),
            input_schema: json!({"type": "object"}),
            annotations: Annotations::default(),
            def_hash: String::new(),
        });
        let budget = Budget::default();
        let whole: usize = tools
            .iter()
            .map(|t| t.description.len() + t.input_schema.to_string().len())
            .sum();
        let (section, count) = tool_section("roll back checkout in staging", &tools, budget);
        assert!(section.len() <= budget.max_chars, "{} chars", section.len());
        assert!(count <= budget.max_tools);
        assert!(
            section
                .lines()
                .next()
                .is_some_and(|l| l.contains(r#""k8s.rollback""#)),
            "most relevant first"
        );
        // The measurement the issue asks for: the section against the whole catalog.
        assert!(
            whole > 10 * section.len(),
            "catalog {whole} chars, section {} chars",
            section.len()
        );
    }
}
