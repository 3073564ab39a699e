//! Changing the user's config file in place (`opsbot servers import|
//! enable|disable|remove`): comments, order and layout are kept; only the
//! tables touched change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, value};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not valid TOML ({1}); fix it first, nothing was changed")]
    Parse(PathBuf, String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// A server as it is written into `[servers.NAME]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerEntry {
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
}

/// The user's config file, parsed for editing.
pub struct UserConfig {
    path: PathBuf,
    doc: DocumentMut,
}

impl UserConfig {
    /// The file at `path`, or an empty one if it does not exist yet.
    pub fn open(path: &Path) -> Result<Self, EditError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(EditError::Read(path.into(), e)),
        };
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| EditError::Parse(path.into(), e.to_string()))?;
        Ok(Self {
            path: path.into(),
            doc,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn servers_mut(&mut self) -> &mut Table {
        let item = self.doc.entry("servers").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        if !item.is_table() {
            *item = Item::Table(Table::new());
        }
        item.as_table_mut().expect("made a table above")
    }

    /// Whether this file defines `[servers.NAME]`.
    pub fn has_server(&self, name: &str) -> bool {
        self.doc.get("servers").and_then(|s| s.get(name)).is_some()
    }

    /// Add `[servers.NAME]`.
    pub fn add_server(&mut self, name: &str, entry: &ServerEntry) {
        let mut t = Table::new();
        if let Some(c) = &entry.command {
            t["command"] = value(c.as_str());
        }
        if !entry.args.is_empty() {
            let mut a = toml_edit::Array::new();
            for arg in &entry.args {
                a.push(arg.as_str());
            }
            t["args"] = value(a);
        }
        if let Some(u) = &entry.url {
            t["url"] = value(u.as_str());
        }
        if let Some(c) = &entry.cwd {
            t["cwd"] = value(c.as_str());
        }
        for (key, map) in [("env", &entry.env), ("headers", &entry.headers)] {
            if !map.is_empty() {
                let mut it = InlineTable::new();
                for (k, v) in map {
                    it.insert(k, v.as_str().into());
                }
                t[key] = value(it);
            }
        }
        if !entry.enabled {
            t["enabled"] = value(false);
        }
        self.servers_mut().insert(name, Item::Table(t));
    }

    /// Set `enabled` in `[servers.NAME]`, adding the table if the server
    /// is defined elsewhere (the built-in defaults).
    pub fn set_enabled(&mut self, name: &str, enabled: bool) {
        let servers = self.servers_mut();
        let table = servers
            .entry(name)
            .or_insert_with(|| Item::Table(Table::new()));
        if let Some(t) = table.as_table_mut() {
            t["enabled"] = value(enabled);
        }
    }

    /// Remove `[servers.NAME]`; false when this file does not define it.
    pub fn remove_server(&mut self, name: &str) -> bool {
        self.servers_mut().remove(name).is_some()
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// Write the file whole under a temporary name, then rename it.
    pub fn save(&self) -> Result<(), EditError> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self
                .path
                .with_extension(format!("toml.{}.tmp", std::process::id()));
            std::fs::write(&tmp, self.text())?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| EditError::Write(self.path.clone(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_layout_survive_an_edit() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.toml");
        let original =
            "# my settings\n[tui]\ntheme = \"light\" # I like it\n\n[servers.ci]\nenabled = true\n";
        std::fs::write(&path, original).expect("write");
        let mut c = UserConfig::open(&path).expect("open");
        c.add_server(
            "git",
            &ServerEntry {
                command: Some("uvx".into()),
                args: vec!["mcp-server-git".into()],
                env: [("GITHUB_TOKEN".to_string(), "${keyring}".to_string())].into(),
                enabled: true,
                ..Default::default()
            },
        );
        c.set_enabled("k8s", false);
        assert!(c.remove_server("ci"));
        assert!(!c.remove_server("nope"));
        c.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("# my settings\n[tui]\ntheme = \"light\" # I like it\n"),
            "{text}"
        );
        assert!(text.contains("[servers.git]\ncommand = \"uvx\"\nargs = [\"mcp-server-git\"]\nenv = { GITHUB_TOKEN = \"${keyring}\" }\n"), "{text}");
        assert!(text.contains("[servers.k8s]\nenabled = false\n"), "{text}");
        assert!(!text.contains("[servers.ci]"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).expect("still TOML");
        assert!(parsed["servers"]["git"].is_table());
    }
}
