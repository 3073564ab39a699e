//! Reading other MCP clients' server lists (`opsbot servers import`):
//! Claude Desktop, Claude Code (`.mcp.json`, `~/.claude.json`), VS Code
//! (`.vscode/mcp.json`, whose key is `servers`), Cursor (`mcp.json`) and
//! Codex (`config.toml`, `[mcp_servers.NAME]`).
//!
//! What comes out is each server as opsbot would run it, with every
//! secret-looking value taken out and replaced by a reference
//! (`${keyring}` or `${env:VAR}`): the caller decides where the secret goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A server found in another client's config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    pub name: String,
    /// The file it came from.
    pub origin: PathBuf,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    pub env: BTreeMap<String, Value>,
    pub headers: BTreeMap<String, Value>,
    pub enabled: bool,
    /// Things the user should know (an SSE server, an input prompt).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not valid {1}: {2}")]
    Parse(PathBuf, &'static str, String),
    #[error(
        "{0} has no MCP servers opsbot knows how to read (looked for mcpServers, servers and [mcp_servers])"
    )]
    Empty(PathBuf),
}

/// The places clients keep their server lists, for this user and the
/// current directory, that exist.
pub fn default_sources(home: &Path, cwd: &Path) -> Vec<PathBuf> {
    let mut out = vec![
        home.join(".config/Claude/claude_desktop_config.json"),
        home.join("Library/Application Support/Claude/claude_desktop_config.json"),
        home.join(".claude.json"),
        cwd.join(".mcp.json"),
        cwd.join(".vscode/mcp.json"),
        home.join(".config/Code/User/mcp.json"),
        home.join("Library/Application Support/Code/User/mcp.json"),
        home.join(".cursor/mcp.json"),
        cwd.join(".cursor/mcp.json"),
        home.join(".codex/config.toml"),
    ];
    if let Some(appdata) = std::env::var_os("APPDATA") {
        let appdata = PathBuf::from(appdata);
        out.push(appdata.join("Claude/claude_desktop_config.json"));
        out.push(appdata.join("Code/User/mcp.json"));
    }
    out.retain(|p| p.is_file());
    out.dedup();
    out
}

/// Every server in one file.
pub fn read(path: &Path) -> Result<Vec<Found>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read(path.into(), e))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let found = if is_toml {
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| ImportError::Parse(path.into(), "TOML", e.to_string()))?;
        let json = serde_json::to_value(&table)
            .map_err(|e| ImportError::Parse(path.into(), "TOML", e.to_string()))?;
        servers_in(&json, "mcp_servers", path)
    } else {
        let json: Value = serde_json::from_str(&strip_json_comments(&text))
            .map_err(|e| ImportError::Parse(path.into(), "JSON", e.to_string()))?;
        let mut all = servers_in(&json, "mcpServers", path);
        all.extend(servers_in(&json, "servers", path));
        all
    };
    if found.is_empty() {
        return Err(ImportError::Empty(path.into()));
    }
    Ok(found)
}

/// VS Code's and Cursor's files are JSON with comments (and trailing commas).
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
            }
            (',', _) => {
                // A trailing comma: the next non-space is a closing bracket.
                let rest: String = chars.clone().take_while(|c| c.is_whitespace()).collect();
                let next = chars.clone().nth(rest.chars().count());
                if !matches!(next, Some('}' | ']')) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn servers_in(doc: &Value, key: &str, origin: &Path) -> Vec<Found> {
    let Some(map) = doc.get(key).and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, v)| server(name, v, origin))
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn server(name: &str, v: &Value, origin: &Path) -> Option<Found> {
    let obj = v.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let mut found = Found {
        name: name.to_string(),
        origin: origin.to_path_buf(),
        command: text("command"),
        args: strings(obj.get("args")),
        cwd: text("cwd"),
        url: text("url").or_else(|| text("serverUrl")),
        enabled: !obj
            .get("disabled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            && obj.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        ..Default::default()
    };
    if found.command.is_none() && found.url.is_none() {
        return None;
    }
    for table in ["env", "environment"] {
        if let Some(env) = obj.get(table).and_then(Value::as_object) {
            found
                .env
                .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    for table in ["headers", "http_headers"] {
        if let Some(h) = obj.get(table).and_then(Value::as_object) {
            found
                .headers
                .extend(h.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    // Codex: a bearer token in a named variable; headers from variables.
    if let Some(var) = text("bearer_token_env_var") {
        found.headers.insert(
            "Authorization".into(),
            Value::String(format!("Bearer ${{env:{var}}}")),
        );
    }
    if let Some(h) = obj.get("env_http_headers").and_then(Value::as_object) {
        for (k, var) in h {
            if let Some(var) = var.as_str() {
                found
                    .headers
                    .insert(k.clone(), Value::String(format!("${{env:{var}}}")));
            }
        }
    }
    // Codex: variables passed through from the client's environment.
    for var in strings(obj.get("env_vars")) {
        found
            .env
            .insert(var.clone(), Value::String(format!("${{env:{var}}}")));
    }
    if text("type").as_deref() == Some("sse") {
        found.notes.push(
            "uses the old SSE transport; opsbot speaks streamable HTTP, which most servers also serve (check the URL)"
                .into(),
        );
    }
    if obj.contains_key("envFile") {
        found
            .notes
            .push("reads an envFile, which opsbot does not: add what it needs to env".into());
    }
    Some(found)
}

/// What to do with one `env` or `headers` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value2 {
    /// Not secret: written as it is.
    Plain(String),
    /// Already a reference to an environment variable (`${env:VAR}`,
    /// `${VAR}`, `$VAR`): written as `${env:VAR}`, nothing to store.
    FromEnv(String),
    /// A secret value: stored in the keyring (or the user is told which
    /// variable to set), never written.
    Secret(String),
    /// Asked for at run time by the other client (`${input:ID}`): the
    /// user has to provide it.
    Prompted(String),
}

/// Sort a value into plain, reference or secret.
pub fn classify(key: &str, value: &Value) -> Value2 {
    let raw = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let trimmed = raw.trim();
    if let Some(var) = env_reference(trimmed) {
        return Value2::FromEnv(var);
    }
    if let Some(start) = trimmed.find("${input:") {
        let id = trimmed[start + 8..].split('}').next().unwrap_or_default();
        return Value2::Prompted(id.to_string());
    }
    if trimmed.contains("${env:") {
        // Already in opsbot's reference form inside a longer value.
        return Value2::Plain(raw);
    }
    if looks_secret(key, trimmed) {
        Value2::Secret(raw)
    } else {
        Value2::Plain(raw)
    }
}

/// `${env:VAR}`, `${VAR}`, `$VAR` or `env:VAR` as the whole value.
fn env_reference(v: &str) -> Option<String> {
    let name = v
        .strip_prefix("${env:")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| v.strip_prefix("${").and_then(|r| r.strip_suffix('}')))
        .or_else(|| v.strip_prefix('$'))?;
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| name.to_string())
}

const SECRET_WORDS: [&str; 10] = [
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "auth",
    "credential",
    "private",
    "session",
];

const SECRET_PREFIXES: [&str; 12] = [
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "sk-",
    "xoxb-",
    "xoxp-",
    "akia",
    "eyj",
    "ntn_",
    "lin_api_",
];

/// Whether a value would be a secret: by its name, by a known token
/// shape, or by being a long run of random-looking characters.
pub fn looks_secret(key: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let k = key.to_lowercase().replace('-', "_");
    if SECRET_WORDS.iter().any(|w| k.contains(w)) || k.ends_with("_key") || k == "key" {
        return true;
    }
    let v = value.to_lowercase();
    let v = v.strip_prefix("bearer ").unwrap_or(&v);
    if SECRET_PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    // A long run of letters and digits with no spaces or slashes: a token.
    value.len() >= 24
        && !value.contains(char::is_whitespace)
        && !value.contains('/')
        && value.chars().any(|c| c.is_ascii_digit())
        && value.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn every_client_format_is_read() {
        let dir = tempfile::tempdir().expect("dir");
        let claude = write(
            dir.path(),
            "claude_desktop_config.json",
            r#"{"mcpServers": {"git": {"command": "uvx", "args": ["mcp-server-git"], "env": {"GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123"}}}}"#,
        );
        let vscode = write(
            dir.path(),
            ".vscode/mcp.json",
            "{\n // comment\n \"servers\": {\"gh\": {\"type\": \"http\", \"url\": \"https://api.example.com/mcp\", \"headers\": {\"Authorization\": \"Bearer ${input:pat}\"},},},\n \"inputs\": []}",
        );
        let codex = write(
            dir.path(),
            "config.toml",
            "[mcp_servers.time]\ncommand = \"uvx\"\nargs = [\"mcp-server-time\"]\n\n[mcp_servers.linear]\nurl = \"https://mcp.linear.app/mcp\"\nbearer_token_env_var = \"LINEAR_TOKEN\"\nenabled = false\n",
        );
        let c = read(&claude).expect("claude");
        assert_eq!(c[0].name, "git");
        assert_eq!(c[0].args, vec!["mcp-server-git"]);
        assert_eq!(
            classify("GITHUB_TOKEN", &c[0].env["GITHUB_TOKEN"]),
            Value2::Secret("ghp_abcdefghijklmnopqrstuvwxyz0123".into())
        );
        let v = read(&vscode).expect("vscode");
        assert_eq!(v[0].url.as_deref(), Some("https://api.example.com/mcp"));
        assert_eq!(
            classify("Authorization", &v[0].headers["Authorization"]),
            Value2::Prompted("pat".into())
        );
        let x = read(&codex).expect("codex");
        let linear = x.iter().find(|f| f.name == "linear").expect("linear");
        assert!(!linear.enabled);
        assert_eq!(
            linear.headers["Authorization"],
            json!("Bearer ${env:LINEAR_TOKEN}")
        );
        assert_eq!(
            classify("Authorization", &linear.headers["Authorization"]),
            Value2::Plain("Bearer ${env:LINEAR_TOKEN}".into())
        );
        let empty = write(dir.path(), "empty.json", "{}");
        assert!(matches!(read(&empty), Err(ImportError::Empty(_))));
        let bad = write(dir.path(), "bad.json", "{nope");
        assert!(
            read(&bad)
                .expect_err("bad")
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn secrets_are_told_from_plain_values() {
        assert!(looks_secret("API_KEY", "abc123"));
        assert!(looks_secret("X", "sk-proj-123"));
        assert!(looks_secret("ANYTHING", "a8f3k2m9q7w1e5r4t6y8u0i2o4p6"));
        assert!(!looks_secret("LOG_LEVEL", "debug"));
        assert!(!looks_secret("ROOT", "/srv/app/with/a/long/path/12345"));
        assert_eq!(
            classify("TOKEN", &json!("${GH_TOKEN}")),
            Value2::FromEnv("GH_TOKEN".into())
        );
        assert_eq!(
            classify("TOKEN", &json!("$GH_TOKEN")),
            Value2::FromEnv("GH_TOKEN".into())
        );
        assert_eq!(
            classify("PAT", &json!("${input:pat}")),
            Value2::Prompted("pat".into())
        );
    }
}
