//! `opsbot config check`: the effective configuration, each value with the
//! file it comes from, secrets hidden.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use opsbot::paths::Paths;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load every layer, say whether the result is valid, and print each
    /// value with the file it comes from.
    Check {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: ConfigCommand,
) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { json } = command;
    let loaded = opsbot::config::load(paths, config)?;
    let origin = opsbot::config::provenance(&loaded.sources);
    let merged = toml::Value::try_from(&loaded.config)?;
    let mut values = Vec::new();
    flatten("", &merged, &mut values);
    let redactor = opsbot::session::Redactor::new(
        &loaded.config.audit.redact_keys,
        &loaded.config.audit.redact_patterns,
    )
    .ok();
    let shown = |path: &str, v: &toml::Value| -> String {
        let key = path.rsplit('.').next().unwrap_or(path);
        let text = v.to_string();
        let secret = match v {
            toml::Value::String(s) => {
                !s.contains("${") && opsbot::config::import::looks_secret(key, s)
            }
            _ => false,
        };
        let by_pattern = redactor.as_ref().is_some_and(|r| r.text(&text) != text);
        if secret || by_pattern {
            "\"[redacted]\"".into()
        } else {
            text
        }
    };
    if json {
        let rows: Vec<_> = values
            .iter()
            .map(|(path, v)| {
                serde_json::json!({
                    "key": path,
                    "value": shown(path, v),
                    "from": origin.get(path).map_or("<default>", String::as_str),
                })
            })
            .collect();
        super::json_out(
            &serde_json::json!({"valid": true, "layers": loaded.sources.iter().map(|s| &s.name).collect::<Vec<_>>(), "values": rows}),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "valid: {} layer{} ({})",
        loaded.sources.len(),
        if loaded.sources.len() == 1 { "" } else { "s" },
        loaded
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut table = String::new();
    for (path, v) in &values {
        let (head, key) = path.rsplit_once('.').unwrap_or(("", path));
        if head != table {
            out!("\n[{head}]");
            table = head.to_string();
        }
        let from = origin.get(path).map_or("<default>", String::as_str);
        out!("{key} = {}    # {from}", shown(path, v));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every leaf (and every array as a whole) with its dotted path.
fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}
