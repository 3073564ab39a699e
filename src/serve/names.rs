//! The names and definitions clients see: `server.tool` (or another
//! separator), with the downstream definition as pinned.

use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};

use crate::config::Namespace;
use crate::mcp::{Catalog, ToolInfo};

/// How names are served: which servers, and with or without their name.
#[derive(Debug, Clone)]
pub struct Naming {
    pub namespace: Namespace,
    pub separator: String,
    /// Only these servers' tools are served (`--only`); none: all.
    pub only: Option<Vec<String>>,
}

impl Naming {
    pub fn exposes(&self, tool: &ToolInfo) -> bool {
        self.serves(&tool.server) && !tool.made_by_opsbot()
    }

    /// Whether `server` is one of those served (`--only`).
    pub fn serves(&self, server: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == server))
    }

    /// The name a client sees for a tool.
    pub fn served(&self, tool: &ToolInfo) -> String {
        self.name_of(&tool.server, &tool.name)
    }

    /// The name a client sees for `server`'s tool, resource or prompt `name`.
    pub fn name_of(&self, server: &str, name: &str) -> String {
        match self.namespace {
            Namespace::Server => format!("{server}{}{name}", self.separator),
            Namespace::None => name.to_string(),
        }
    }

    /// The tool a served name stands for, among the exposed ones. Looked
    /// up in the catalog rather than split, so a separator that also
    /// occurs in tool names still works.
    pub fn resolve<'a>(&self, name: &str, catalog: &'a Catalog) -> Option<&'a ToolInfo> {
        catalog
            .iter()
            .filter(|t| self.exposes(t))
            .find(|t| self.served(t) == name)
    }

    /// Two exposed tools served under one name (possible without a
    /// namespace): each clash names both servers.
    pub fn collisions(&self, catalog: &Catalog) -> Vec<String> {
        let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
        let mut out = Vec::new();
        for t in catalog.iter().filter(|t| self.exposes(t)) {
            if let Some(first) = seen.insert(self.served(t), t.server.as_str()) {
                out.push(format!(
                    "tool `{}` is served by both `{first}` and `{}`: with [serve] namespace = \"none\" every served name must be unique; serve fewer servers (--only) or use namespace = \"server\"",
                    t.name, t.server
                ));
            }
        }
        out
    }
}

/// The definition a client sees: the downstream one as sent (title, output
/// schema, hints, `_meta`) under its served name; for a tool known only by
/// what opsbot keeps, the hints opsbot read (none where its server gave none).
pub fn definition(tool: &ToolInfo, naming: &Naming) -> Tool {
    if let Some(sent) = &tool.sent {
        let mut sent = (**sent).clone();
        if let Some(o) = sent.as_object_mut() {
            o.insert("name".into(), naming.served(tool).into());
        }
        if let Ok(t) = serde_json::from_value::<Tool>(sent) {
            return t;
        }
    }
    let schema = match &tool.input_schema {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    let mut hints = ToolAnnotations::default();
    hints.read_only_hint = Some(tool.annotations.read_only);
    hints.destructive_hint =
        (!tool.annotations.assumed_destructive).then_some(tool.annotations.destructive);
    hints.idempotent_hint = Some(tool.annotations.idempotent);
    hints.open_world_hint = Some(tool.annotations.open_world);
    Tool::new(
        naming.served(tool),
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
            sent: None,
        }
    }

    fn naming(namespace: Namespace, sep: &str, only: Option<&[&str]>) -> Naming {
        Naming {
            namespace,
            separator: sep.into(),
            only: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn served_names_resolve_back_whatever_the_separator() {
        let catalog = Catalog::new([tool("k8s", "deploy"), tool("fs", "read__file")]);
        for sep in [".", "__", "-"] {
            let n = naming(Namespace::Server, sep, None);
            for t in catalog.iter() {
                let name = n.served(t);
                assert_eq!(
                    n.resolve(&name, &catalog).map(ToolInfo::qualified),
                    Some(t.qualified()),
                    "{name}"
                );
            }
        }
        let n = naming(Namespace::Server, ".", None);
        assert!(n.resolve("k8s.nope", &catalog).is_none());
        assert!(n.resolve("k8sdeploy", &catalog).is_none());
    }

    #[test]
    fn bare_names_and_only_some_servers() {
        let catalog = Catalog::new([
            tool("k8s", "status"),
            tool("git", "status"),
            tool("fs", "read"),
        ]);
        let bare = naming(Namespace::None, ".", None);
        let clashes = bare.collisions(&catalog);
        assert_eq!(clashes.len(), 1);
        assert!(clashes[0].contains("`git` and `k8s`"), "{clashes:?}");
        let some = naming(Namespace::None, ".", Some(&["k8s", "fs"]));
        assert!(some.collisions(&catalog).is_empty());
        assert_eq!(
            some.resolve("status", &catalog)
                .map(ToolInfo::qualified)
                .as_deref(),
            Some("k8s.status")
        );
        assert!(some.resolve("git.status", &catalog).is_none());
    }
}
