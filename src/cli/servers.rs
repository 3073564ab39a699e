//! `opsbot servers import|list|enable|disable|remove`: the servers in your
//! config, and the ones other MCP clients already know about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use opsbot::config::edit::{ServerEntry, UserConfig};
use opsbot::config::import::{self, Found, Value2};
use opsbot::config::{ConfigSource, DEFAULT_TOML};
use opsbot::paths::Paths;

#[derive(Subcommand)]
pub enum ServersCommand {
    /// Add the servers other MCP clients use (Claude Desktop, Claude Code's
    /// .mcp.json, VS Code, Cursor, Codex) to your config. With no PATH,
    /// their usual places are read. Secrets go to the OS keyring (or you
    /// are told which variable to set), never into the file.
    Import {
        /// Client config files to read (JSON, or Codex's TOML).
        paths: Vec<PathBuf>,
        /// Show what would be added; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every configured server: where it is defined, how it starts, its
    /// cached tools.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Turn a server on.
    Enable { name: String },
    /// Turn a server off (kept in the config).
    Disable { name: String },
    /// Remove a server from your config file.
    Remove { name: String },
}

pub fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: ServersCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ServersCommand::Import {
            paths: files,
            dry_run,
        } => import_servers(paths, config, files, dry_run),
        ServersCommand::List { json } => list(paths, config, json),
        ServersCommand::Enable { name } => set_enabled(paths, config, &name, true),
        ServersCommand::Disable { name } => set_enabled(paths, config, &name, false),
        ServersCommand::Remove { name } => remove(paths, config, &name),
    }
}

/// Check the edited user config loads with the other layers, then save it.
fn save_checked(config: Option<&Path>, user: &UserConfig) -> anyhow::Result<()> {
    let mut layers = vec![ConfigSource {
        name: "<built-in defaults>".into(),
        text: DEFAULT_TOML.into(),
    }];
    layers.push(ConfigSource {
        name: user.path().display().to_string(),
        text: user.text(),
    });
    if let Some(extra) = config {
        layers.push(ConfigSource {
            name: extra.display().to_string(),
            text: std::fs::read_to_string(extra)?,
        });
    }
    if let Err(e) = opsbot::config::load_layers(layers) {
        anyhow::bail!("the change would make the config invalid, so nothing was written:\n{e}");
    }
    user.save()?;
    Ok(())
}

fn list(paths: &Paths, config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    let origin = opsbot::config::provenance(&loaded.sources);
    let cache = opsbot::mcp::CatalogCache::new(&paths.data_dir);
    let mut rows = Vec::new();
    for (name, s) in &loaded.config.servers {
        let prefix = format!("servers.{name}.");
        let defined = origin
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .next_back()
            .unwrap_or_else(|| "<built-in defaults>".into());
        let how = match (&s.command, &s.url) {
            (_, Some(url)) => url.clone(),
            (Some(c), None) => std::iter::once(c.clone())
                .chain(s.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
            (None, None) => String::new(),
        };
        let cached = cache.load(name, &opsbot::mcp::fingerprint(s));
        rows.push(serde_json::json!({
            "name": name,
            "enabled": s.enabled,
            "start": s.start,
            "runs": how,
            "defined_in": defined,
            "cached_tools": cached.as_ref().map(|c| c.tools.len()),
            "listed_at": cached.as_ref().map(|c| c.listed_at),
        }));
        if !json {
            let state = if s.enabled { "on " } else { "off" };
            let tools = match &cached {
                Some(c) => format!("{} tools cached {}", c.tools.len(), c.age()),
                None => "not listed yet".into(),
            };
            out!(
                "{state} {name:<14} {:<6} {}",
                format!("{:?}", s.start).to_lowercase(),
                opsbot::text::truncate(&how, 60)
            );
            out!("    {tools} · defined in {defined}");
        }
    }
    if json {
        super::json_out(&rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn set_enabled(
    paths: &Paths,
    config: Option<&Path>,
    name: &str,
    enabled: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    if !loaded.config.servers.contains_key(name) {
        let known: Vec<&str> = loaded.config.servers.keys().map(String::as_str).collect();
        let hint = opsbot::text::closest(name, known.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        anyhow::bail!("no server `{name}`{hint}; `opsbot servers list` shows them");
    }
    let mut user = UserConfig::open(&paths.user_config_file())?;
    user.set_enabled(name, enabled);
    save_checked(config, &user)?;
    out!(
        "{name} {} in {}",
        if enabled { "enabled" } else { "disabled" },
        user.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn remove(paths: &Paths, config: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    let mut user = UserConfig::open(&paths.user_config_file())?;
    if !user.remove_server(name) {
        let loaded = opsbot::config::load(paths, config)?;
        if loaded.config.servers.contains_key(name) {
            anyhow::bail!(
                "`{name}` is not defined in {} (it comes from the built-in defaults or --config); `opsbot servers disable {name}` turns it off",
                user.path().display()
            );
        }
        anyhow::bail!("no server `{name}`; `opsbot servers list` shows them");
    }
    save_checked(config, &user)?;
    out!("removed {name} from {}", user.path().display());
    Ok(ExitCode::SUCCESS)
}

/// A name usable in `server.tool`: letters, digits, `-` and `_`.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "server".into()
    } else {
        trimmed.to_string()
    }
}

/// An environment variable name for a header's secret.
fn var_for(server: &str, key: &str) -> String {
    format!("{server}_{key}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn same_server(a: &ServerEntry, b: &opsbot::config::ServerConfig) -> bool {
    a.command == b.command && a.args == b.args && a.url == b.url
}

fn import_servers(
    paths: &Paths,
    config: Option<&Path>,
    files: Vec<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let files = if files.is_empty() {
        let home = directories::BaseDirs::new()
            .map(|b| b.home_dir().to_path_buf())
            .unwrap_or_default();
        let cwd = std::env::current_dir().unwrap_or_default();
        let found = import::default_sources(&home, &cwd);
        if found.is_empty() {
            anyhow::bail!(
                "found no MCP client config in the usual places (Claude Desktop, ~/.claude.json, .mcp.json, .vscode/mcp.json, ~/.cursor/mcp.json, ~/.codex/config.toml); give a path: opsbot servers import PATH"
            );
        }
        found
    } else {
        files
    };
    let mut found: Vec<Found> = Vec::new();
    let mut failed = 0;
    for file in &files {
        match import::read(file) {
            Ok(servers) => found.extend(servers),
            Err(e) => {
                failed += 1;
                err!("skipped: {e}");
            }
        }
    }
    if found.is_empty() {
        anyhow::bail!("nothing to import");
    }
    let loaded = opsbot::config::load(paths, config)?;
    let mut user = UserConfig::open(&paths.user_config_file())?;
    let mut taken: BTreeMap<String, ServerEntry> = BTreeMap::new();
    let mut to_set: Vec<(String, String)> = Vec::new();
    let mut added = 0;
    let keyring = opsbot::secrets::keyring_available();
    for f in found {
        let mut entry = ServerEntry {
            command: f.command.clone(),
            args: f.args.clone(),
            cwd: f.cwd.clone(),
            url: f.url.clone(),
            enabled: f.enabled,
            ..Default::default()
        };
        let base = clean_name(&f.name);
        // The same server from two clients, or one already configured: skipped.
        let existing = loaded
            .config
            .servers
            .iter()
            .find(|(_, s)| same_server(&entry, s))
            .map(|(n, _)| n.clone());
        let twice = taken
            .values()
            .any(|t| t.command == entry.command && t.args == entry.args && t.url == entry.url);
        if let Some(known) = existing {
            out!(
                "= {base}: already configured as `{known}`, skipped ({})",
                f.origin.display()
            );
            continue;
        }
        if twice {
            out!(
                "= {base}: the same server was found in another file, skipped ({})",
                f.origin.display()
            );
            continue;
        }
        let mut name = base.clone();
        let mut n = 2;
        while loaded.config.servers.contains_key(&name) || taken.contains_key(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let mut said = Vec::new();
        for (is_header, map) in [(false, &f.env), (true, &f.headers)] {
            for (key, raw) in map {
                let var = if is_header {
                    var_for(&name, key)
                } else {
                    key.clone()
                };
                let written = match import::classify(key, raw) {
                    Value2::Plain(v) => v,
                    Value2::FromEnv(v) => format!("${{env:{v}}}"),
                    Value2::Prompted(id) => {
                        let var = var_for(&name, &id);
                        said.push(format!("{key}: asked for by the client; set {var}"));
                        to_set.push((var.clone(), format!("{key} of {name}")));
                        format!("${{env:{var}}}")
                    }
                    Value2::Secret(_) if dry_run && keyring => {
                        said.push(format!("{key}: secret, would go to the OS keyring"));
                        "${keyring}".into()
                    }
                    Value2::Secret(_) if dry_run => {
                        said.push(format!(
                            "{key}: secret, would not be copied (no OS keyring here); set {var}"
                        ));
                        to_set.push((var.clone(), format!("{key} of {name}")));
                        format!("${{env:{var}}}")
                    }
                    Value2::Secret(secret) => {
                        match opsbot::secrets::store_server_secret(&name, key, &secret) {
                            Ok(()) => {
                                said.push(format!("{key}: secret, stored in the OS keyring"));
                                "${keyring}".into()
                            }
                            Err(e) => {
                                tracing::info!("no keyring for {name}/{key}: {e}");
                                said.push(format!(
                                    "{key}: secret, not copied (no OS keyring here); set {var}"
                                ));
                                to_set.push((var.clone(), format!("{key} of {name}")));
                                format!("${{env:{var}}}")
                            }
                        }
                    }
                };
                let target = if is_header {
                    &mut entry.headers
                } else {
                    &mut entry.env
                };
                target.insert(key.clone(), written);
            }
        }
        let renamed = if name != base {
            format!(" (renamed: `{base}` is taken)")
        } else {
            String::new()
        };
        out!(
            "+ {name}{renamed} from {}: {}",
            f.origin.display(),
            entry
                .url
                .clone()
                .or_else(|| entry.command.clone())
                .unwrap_or_default()
        );
        for s in said.iter().chain(f.notes.iter()) {
            out!("    {s}");
        }
        user.add_server(&name, &entry);
        taken.insert(name, entry);
        added += 1;
    }
    if added == 0 {
        out!("nothing new to import");
        return Ok(ExitCode::SUCCESS);
    }
    if dry_run {
        out!(
            "\n--dry-run: nothing written. {} would read:\n",
            user.path().display()
        );
        out!("{}", user.text());
    } else {
        save_checked(config, &user)?;
        out!(
            "added {added} server{} to {}; they start when a plan first uses them (`opsbot tools --refresh` lists them now)",
            if added == 1 { "" } else { "s" },
            user.path().display()
        );
    }
    if !to_set.is_empty() {
        out!(
            "\nset these in opsbot's environment (or store them: opsbot auth set server:NAME KEY, then write \"${{keyring}}\"):"
        );
        for (var, what) in &to_set {
            out!("  {var}  ({what})");
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
