//! Ranking tools against a request (BM25 over names and descriptions), so a
//! prompt carries the relevant part of a large catalog and stays bounded.

use std::collections::HashMap;

use crate::mcp::ToolInfo;

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Lowercase word pieces; `server.tool_name` splits into its parts.
pub(super) fn terms(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_string)
        .collect()
}

fn document(tool: &ToolInfo) -> Vec<String> {
    // The name counts twice: it is the strongest signal of what a tool does.
    let mut words = terms(&tool.qualified());
    words.extend(terms(&tool.qualified()));
    words.extend(terms(&tool.description));
    words
}

/// The `limit` tools most relevant to `request`, best first. Tools with no
/// term in common with the request come last, in catalog order, so a small
/// catalog is always sent whole.
pub fn rank<'a>(request: &str, tools: &'a [ToolInfo], limit: usize) -> Vec<&'a ToolInfo> {
    let docs: Vec<Vec<String>> = tools.iter().map(document).collect();
    let n = docs.len().max(1) as f64;
    let avg = docs.iter().map(Vec::len).sum::<usize>() as f64 / n;
    let mut df: HashMap<&str, usize> = HashMap::new();
    for doc in &docs {
        let mut seen: Vec<&str> = doc.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *df.entry(t).or_default() += 1;
        }
    }
    // Adjacent words joined too: people write "roll back", tools say "rollback".
    let words = terms(request);
    let mut query = words.clone();
    query.extend(words.windows(2).map(|w| format!("{}{}", w[0], w[1])));
    let mut scored: Vec<(f64, usize)> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let len = doc.len() as f64;
            let score = query
                .iter()
                .map(|q| {
                    let tf = doc.iter().filter(|t| *t == q).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let d = df.get(q.as_str()).copied().unwrap_or(0) as f64;
                    let idf = ((n - d + 0.5) / (d + 0.5) + 1.0).ln();
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg.max(1.0)))
                })
                .sum();
            (score, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(limit)
        .map(|(_, i)| &tools[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Annotations;

    fn tool(server: &str, name: &str, description: &str) -> ToolInfo {
        ToolInfo {
            server: server.into(),
            name: name.into(),
            description: description.into(),
            input_schema: serde_json::json!({"type": "object"}),
            annotations: Annotations::default(),
            def_hash: String::new(),
            sent: None,
        }
    }

    #[test]
    fn relevant_tools_rank_first() {
        let tools = vec![
            tool("chat", "notify", "Post a message to a channel"),
            tool(
                "k8s",
                "deploy",
                "Roll out an image to a service in an environment",
            ),
            tool(
                "k8s",
                "rollback",
                "Return a service in an environment to an earlier revision",
            ),
            tool(
                "ci",
                "build",
                "Build a service from a git ref and push its image",
            ),
        ];
        let names = |r: Vec<&ToolInfo>| r.iter().map(|t| t.qualified()).collect::<Vec<_>>();
        assert_eq!(
            names(rank("roll back checkout in staging", &tools, 1)),
            ["k8s.rollback"]
        );
        assert_eq!(
            names(rank("tell #oncall in a message", &tools, 1)),
            ["chat.notify"]
        );
        let top2 = names(rank("build and deploy checkout", &tools, 2));
        assert!(
            top2.contains(&"ci.build".to_string()) && top2.contains(&"k8s.deploy".to_string()),
            "{top2:?}"
        );
    }

    #[test]
    fn a_small_catalog_is_kept_whole() {
        let tools = vec![tool("a", "x", "one"), tool("b", "y", "two")];
        assert_eq!(rank("nothing in common", &tools, 10).len(), 2);
    }
}
