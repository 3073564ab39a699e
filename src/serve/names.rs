//! The names and definitions clients see: `server.tool` (or another
//! separator), with the downstream definition as pinned.

use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};

use crate::mcp::{Catalog, ToolInfo};

/// The name a client sees for a tool.
pub fn served(tool: &ToolInfo, separator: &str) -> String {
    format!("{}{separator}{}", tool.server, tool.name)
}

/// The tool a served name stands for. Looked up in the catalog rather than
/// split, so a separator that also occurs in tool names still works.
pub fn resolve<'a>(name: &str, catalog: &'a Catalog, separator: &str) -> Option<&'a ToolInfo> {
    catalog.iter().find(|t| {
        name.strip_prefix(t.server.as_str())
            .and_then(|rest| rest.strip_prefix(separator))
            == Some(t.name.as_str())
    })
}

/// The definition a client sees: the downstream one under its served name,
/// with the hints opsbot read from it.
pub fn definition(tool: &ToolInfo, separator: &str) -> Tool {
    let schema = match &tool.input_schema {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    let mut hints = ToolAnnotations::default();
    hints.read_only_hint = Some(tool.annotations.read_only);
    hints.destructive_hint = Some(tool.annotations.destructive);
    hints.idempotent_hint = Some(tool.annotations.idempotent);
    hints.open_world_hint = Some(tool.annotations.open_world);
    Tool::new(
        served(tool, separator),
        tool.description.clone(),
        Arc::new(schema),
    )
    .with_annotations(hints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Annotations;

    fn tool(server: &str, name: &str) -> ToolInfo {
        ToolInfo {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            annotations: Annotations::default(),
            def_hash: String::new(),
        }
    }

    #[test]
    fn served_names_resolve_back_whatever_the_separator() {
        let catalog = Catalog::new([tool("k8s", "deploy"), tool("fs", "read__file")]);
        for sep in [".", "__", "-"] {
            for t in catalog.iter() {
                let name = served(t, sep);
                assert_eq!(
                    resolve(&name, &catalog, sep).map(ToolInfo::qualified),
                    Some(t.qualified()),
                    "{name}"
                );
            }
        }
        assert!(resolve("k8s.nope", &catalog, ".").is_none());
        assert!(resolve("k8sdeploy", &catalog, ".").is_none());
    }
}
