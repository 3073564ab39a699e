//! Each server's tool list as last seen, kept in the data dir so commands
//! that only need definitions (`tools`, `policy explain|check|pins`) and
//! planning start no server, and a slow server never delays a plan that
//! does not use it.
//!
//! One JSON file per server, written whole under a temporary name then
//! renamed: a reader sees the old list or the new one, never half of one.
//! The file is keyed by a hash of how the server is started (command,
//! arguments, environment, working directory, URL): changing any of those
//! makes the cache stale. A server that changes its tools under the same
//! configuration is caught before its first call (`CallOptions::expect_def`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::ToolInfo;
use crate::config::ServerConfig;

/// A server's tools as listed at `listed_at` (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedTools {
    pub fingerprint: String,
    pub listed_at: i64,
    pub tools: Vec<ToolInfo>,
}

impl CachedTools {
    pub fn age(&self) -> String {
        age(self.listed_at)
    }
}

/// How long ago `at` (Unix seconds) was, in words ("3 minutes ago").
pub fn age(at: i64) -> String {
    let secs = (now() - at).max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => plural(secs / 60, "minute"),
        3600..=86_399 => plural(secs / 3600, "hour"),
        _ => plural(secs / 86_400, "day"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// How a server is started: a change here means its tools may be
/// different ones (servers pick toolsets from arguments and environment
/// variables). Only the SHA-256 of it is kept.
pub fn fingerprint(cfg: &ServerConfig) -> String {
    let key = serde_json::json!({
        "command": cfg.command,
        "args": cfg.args,
        "env": cfg.env,
        "cwd": cfg.cwd,
        "url": cfg.url,
        "headers": cfg.headers,
    });
    crate::text::hex(&Sha256::digest(key.to_string().as_bytes()))
}

/// The catalog directory in the data dir.
#[derive(Debug, Clone)]
pub struct CatalogCache {
    dir: PathBuf,
}

impl CatalogCache {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("catalog"),
        }
    }

    fn file(&self, server: &str) -> PathBuf {
        // Server names are config keys; anything unusual is hex-encoded so
        // a name can never walk out of the directory.
        let safe = server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let stem = if safe && !server.is_empty() {
            server.to_string()
        } else {
            format!("x-{}", crate::text::hex(server.as_bytes()))
        };
        self.dir.join(format!("{stem}.json"))
    }

    /// The cached list for `server`, if there is one for this fingerprint.
    /// A damaged or foreign file counts as no cache (the server is listed
    /// again and the file rewritten).
    pub fn load(&self, server: &str, fingerprint: &str) -> Option<CachedTools> {
        let text = std::fs::read_to_string(self.file(server)).ok()?;
        match serde_json::from_str::<CachedTools>(&text) {
            Ok(c) if c.fingerprint == fingerprint && c.tools.iter().all(|t| t.server == server) => {
                Some(c)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(server, "ignoring the damaged tool cache: {e}");
                None
            }
        }
    }

    /// Keep `tools` as `server`'s list, listed now. Failing to write only
    /// costs a start next time, so it is logged, not raised.
    pub fn save(&self, server: &str, fingerprint: &str, tools: &[ToolInfo]) -> CachedTools {
        let cached = CachedTools {
            fingerprint: fingerprint.to_string(),
            listed_at: now(),
            tools: tools.to_vec(),
        };
        if let Err(e) = self.write(server, &cached) {
            tracing::warn!(server, "cannot cache the tool list: {e}");
        }
        cached
    }

    fn write(&self, server: &str, cached: &CachedTools) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let file = self.file(server);
        let tmp = file.with_extension(format!("json.{}.tmp", std::process::id()));
        let body = serde_json::to_vec(cached).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &file).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(server: &str, name: &str) -> ToolInfo {
        ToolInfo {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            annotations: Default::default(),
            def_hash: format!("h-{name}"),
            sent: None,
        }
    }

    #[test]
    fn a_list_comes_back_only_for_the_same_program() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = CatalogCache::new(dir.path());
        let mut cfg = ServerConfig {
            command: Some("srv".into()),
            ..Default::default()
        };
        let fp = fingerprint(&cfg);
        cache.save("git", &fp, &[tool("git", "status")]);
        let back = cache.load("git", &fp).expect("cached");
        assert_eq!(back.tools, vec![tool("git", "status")]);
        cfg.args.push("--other".into());
        assert!(cache.load("git", &fingerprint(&cfg)).is_none());
        assert!(cache.load("time", &fp).is_none());
    }

    #[test]
    fn odd_names_stay_in_the_directory_and_damage_is_no_cache() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = CatalogCache::new(dir.path());
        cache.save("../evil", "f", &[tool("../evil", "t")]);
        assert!(cache.load("../evil", "f").is_some());
        assert!(!dir.path().join("evil.json").exists());
        std::fs::write(cache.file("git"), "{not json").expect("write");
        assert!(cache.load("git", "f").is_none());
    }
}
