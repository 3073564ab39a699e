//! The tool catalog: what each server offers, addressed as `server.tool`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::text::closest;

/// What a server says about a tool's behaviour. Hints, not guarantees: the
/// policy layer decides how far to trust them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
    /// `destructive` is MCP's default for a tool whose server gave no
    /// destructive hint, not the server's word.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub assumed_destructive: bool,
}

impl Annotations {
    /// Apply the MCP defaults for absent hints: not read-only, destructive,
    /// not idempotent, open world.
    pub fn from_mcp(a: Option<&rmcp::model::ToolAnnotations>) -> Self {
        let read_only = a.and_then(|a| a.read_only_hint).unwrap_or(false);
        let hint = a.and_then(|a| a.destructive_hint);
        Self {
            read_only,
            assumed_destructive: !read_only && hint.is_none(),
            destructive: !read_only && hint.unwrap_or(true),
            idempotent: read_only || a.and_then(|a| a.idempotent_hint).unwrap_or(false),
            open_world: a.and_then(|a| a.open_world_hint).unwrap_or(true),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolInfo {
    pub server: String,
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    pub annotations: Annotations,
    /// Hash of the definition as the server sent it: a change of
    /// description or schema changes it.
    pub def_hash: String,
    /// The whole definition as the server sent it (title, output schema,
    /// hints, `_meta`, …): what `opsbot serve` hands on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Box<Value>>,
}

impl ToolInfo {
    pub fn from_mcp(server: &str, tool: &rmcp::model::Tool) -> Self {
        let input_schema = Value::Object((*tool.input_schema).clone());
        Self {
            server: server.to_string(),
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_string(),
            annotations: Annotations::from_mcp(tool.annotations.as_ref()),
            def_hash: definition_hash(tool),
            input_schema,
            sent: serde_json::to_value(tool).ok().map(Box::new),
        }
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.server, self.name)
    }

    /// `SERVER.resources/read`: reading one of a server's resources as a
    /// plan step, for servers that offer resources. Made by opsbot, not
    /// sent by the server (a `/` is not allowed in MCP tool names, so it
    /// cannot clash), and never served to other clients as a tool.
    pub fn resource_reader(server: &str) -> Self {
        let input_schema = serde_json::json!({
            "type": "object",
            "properties": {"uri": {"type": "string", "description": "The resource's URI, as the server lists it"}},
            "required": ["uri"],
        });
        let annotations = rmcp::model::ToolAnnotations::new()
            .read_only(true)
            .idempotent(true)
            .open_world(false);
        let tool = rmcp::model::Tool::new(
            super::conn::READ_RESOURCE,
            "Read one of this server's resources by its URI",
            std::sync::Arc::new(input_schema.as_object().cloned().unwrap_or_default()),
        )
        .with_annotations(annotations);
        Self {
            sent: None,
            ..Self::from_mcp(server, &tool)
        }
    }

    /// Whether opsbot made this tool (`resources/read`) rather than the server.
    pub fn made_by_opsbot(&self) -> bool {
        self.name == super::conn::READ_RESOURCE
    }
}

/// SHA-256 over the tool's canonical JSON (serde_json sorts object keys).
pub fn definition_hash(tool: &rmcp::model::Tool) -> String {
    let canonical = serde_json::to_value(tool)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    crate::text::hex(&digest)
}

/// A snapshot of every ready server's tools.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tools: BTreeMap<String, ToolInfo>,
    /// See `key`: made once, as a snapshot never changes and every served
    /// call asks for it.
    key: u64,
}

impl Catalog {
    pub fn new(tools: impl IntoIterator<Item = ToolInfo>) -> Self {
        use std::hash::{Hash, Hasher};
        let tools: BTreeMap<String, ToolInfo> =
            tools.into_iter().map(|t| (t.qualified(), t)).collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for t in tools.values() {
            t.server.hash(&mut h);
            t.name.hash(&mut h);
            t.def_hash.hash(&mut h);
        }
        Self {
            tools,
            key: h.finish(),
        }
    }

    pub fn get(&self, qualified: &str) -> Option<&ToolInfo> {
        self.tools.get(qualified)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ToolInfo> {
        self.tools.values()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// What identifies the catalog's contents (every tool's name and
    /// definition hash): work derived from a catalog is kept under it.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The closest known tool name, for "did you mean".
    pub fn suggest(&self, qualified: &str) -> Option<&str> {
        closest(qualified, self.tools.keys().map(String::as_str))
    }
}
