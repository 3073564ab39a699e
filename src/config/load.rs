//! Reading, layering and validating configuration files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, DEFAULT_TOML};
use crate::paths::Paths;
use crate::text::closest;

/// One layer's text and where it came from, kept so later checks can point
/// back at the line that set a value.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub sources: Vec<ConfigSource>,
}

impl LoadedConfig {
    /// An error about what a table means, pointing at the file and line
    /// that last defined it (`policy.rules.no-staging`).
    pub fn error_at(&self, table: &str, message: String) -> ConfigError {
        invalid_at(&self.sources, table, message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Located>),
}

/// An error with the file, line and column it came from.
#[derive(Debug)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub source_line: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(src) = &self.source_line {
            let pad = " ".repeat(self.line.to_string().len());
            write!(
                f,
                "\n {pad} |\n {} | {src}\n {pad} | {}^",
                self.line,
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn at(source: &ConfigSource, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(&source.text, offset);
        let source_line = source.text.lines().nth(line - 1).map(str::to_string);
        ConfigError::Invalid(Box::new(Located {
            file: source.name.clone(),
            line,
            column,
            message: message.into(),
            source_line,
        }))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

/// Load the embedded default, the user's file (if any) and an explicit file.
pub fn load(paths: &Paths, explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let mut layers = vec![ConfigSource {
        name: "<built-in defaults>".into(),
        text: DEFAULT_TOML.into(),
    }];
    let user = paths.user_config_file();
    if user.exists() {
        layers.push(read(&user)?);
    }
    if let Some(path) = explicit {
        layers.push(read(path)?);
    }
    load_layers(layers)
}

fn read(path: &Path) -> Result<ConfigSource, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ConfigSource {
        name: path.display().to_string(),
        text,
    })
}

/// Check each layer alone (for precise locations), merge them table by
/// table, then validate what the merged whole means.
pub fn load_layers(layers: Vec<ConfigSource>) -> Result<LoadedConfig, ConfigError> {
    let mut merged = toml::Table::new();
    for layer in &layers {
        let table: toml::Table = toml::from_str(&layer.text).map_err(|e| toml_error(layer, &e))?;
        toml::from_str::<Config>(&layer.text).map_err(|e| toml_error(layer, &e))?;
        merge(&mut merged, table);
    }
    let config: Config = toml::Value::Table(merged).try_into().map_err(|e| {
        ConfigError::Invalid(Box::new(Located {
            file: "<merged config>".into(),
            line: 1,
            column: 1,
            message: format!("{e}"),
            source_line: None,
        }))
    })?;
    validate(&config, &layers)?;
    Ok(LoadedConfig {
        config,
        sources: layers,
    })
}

fn toml_error(layer: &ConfigSource, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    ConfigError::at(layer, offset, explain(e.message()))
}

/// Turn serde's "unknown field" wording into opsbot's, with a suggestion.
fn explain(message: &str) -> String {
    let message = message.trim();
    for int in ["u64", "u32", "u16", "u8", "i64", "i32", "usize"] {
        if let Some(head) = message.strip_suffix(&format!("expected {int}")) {
            return format!("{head}expected a whole number");
        }
    }
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    let mut out = format!("unknown key `{field}`");
    if let Some(best) = closest(field, expected.iter().copied()) {
        out.push_str(&format!("; did you mean `{best}`?"));
    }
    if !expected.is_empty() {
        out.push_str(&format!(" (expected one of: {})", expected.join(", ")));
    }
    out
}

/// Where each value of the merged config comes from: its dotted path (a
/// leaf, or an array as a whole) → the name of the last layer that set it.
pub fn provenance(layers: &[ConfigSource]) -> BTreeMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, layer: &str, out: &mut BTreeMap<String, String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&path, t, layer, out),
                _ => {
                    out.insert(path, layer.to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for layer in layers {
        if let Ok(table) = toml::from_str::<toml::Table>(&layer.text) {
            walk("", &table, &layer.name, &mut out);
        }
    }
    out
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => merge(dst, src),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Find where a table such as `[servers.ci]` was last defined, for errors
/// about what a table means rather than how it is spelled.
fn locate(layers: &[ConfigSource], header: &str) -> Option<(usize, usize)> {
    layers.iter().enumerate().rev().find_map(|(i, l)| {
        let mut offset = 0;
        for line in l.text.split_inclusive('\n') {
            let t = line.trim();
            if t.starts_with('[') && t.trim_matches(|c| c == '[' || c == ']').trim() == header {
                return Some((i, offset));
            }
            offset += line.len();
        }
        None
    })
}

pub(super) fn invalid_at(layers: &[ConfigSource], header: &str, message: String) -> ConfigError {
    match locate(layers, header) {
        Some((i, offset)) => ConfigError::at(&layers[i], offset, message),
        None => ConfigError::Invalid(Box::new(Located {
            file: layers.last().map_or("<config>".into(), |l| l.name.clone()),
            line: 1,
            column: 1,
            message,
            source_line: None,
        })),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate(config: &Config, layers: &[ConfigSource]) -> Result<(), ConfigError> {
    for (name, server) in &config.servers {
        let header = format!("servers.{name}");
        if !is_name(name) {
            return Err(invalid_at(
                layers,
                &header,
                format!(
                    "server name `{name}` may only hold letters, digits, `-` and `_` (tools are addressed as `server.tool`)"
                ),
            ));
        }
        match (&server.command, &server.url) {
            (None, None) if server.enabled => {
                return Err(invalid_at(
                    layers,
                    &header,
                    format!(
                        "server `{name}` has neither `command` nor `url`: set `command = \"...\"` for a stdio server or `url = \"http://...\"` for streamable HTTP, or `enabled = false`"
                    ),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid_at(
                    layers,
                    &header,
                    format!("server `{name}` has both `command` and `url`: keep one"),
                ));
            }
            _ => {}
        }
        const LEVELS: [&str; 8] = [
            "debug",
            "info",
            "notice",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency",
        ];
        if let Some(level) = &server.log_level
            && !LEVELS.contains(&level.as_str())
        {
            return Err(invalid_at(
                layers,
                &header,
                format!(
                    "server `{name}`: log_level `{level}` is not an MCP log level; use one of {}",
                    LEVELS.join(", ")
                ),
            ));
        }
        if server.timeout_ms == 0 || server.startup_timeout_ms == 0 {
            return Err(invalid_at(
                layers,
                &header,
                format!("server `{name}`: timeouts must be greater than 0 ms"),
            ));
        }
        if let Some(url) = &server.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid_at(
                layers,
                &header,
                format!("server `{name}`: url `{url}` must start with http:// or https://"),
            ));
        }
    }
    if !matches!(config.tui.notify_osc, 9 | 777) {
        return Err(invalid_at(
            layers,
            "tui",
            format!(
                "tui: notify_osc = {} is not a notification escape; use 9 or 777",
                config.tui.notify_osc
            ),
        ));
    }
    let telemetry = &config.telemetry;
    if let Some(url) = &telemetry.otlp_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid_at(
            layers,
            "telemetry",
            format!(
                "telemetry: otlp_endpoint `{url}` must start with http:// or https:// (OTLP over HTTP, e.g. http://localhost:4318)"
            ),
        ));
    }
    if telemetry.batch == 0 || telemetry.interval_ms == 0 || telemetry.timeout_ms == 0 {
        return Err(invalid_at(
            layers,
            "telemetry",
            "telemetry: batch, interval_ms and timeout_ms must be greater than 0".into(),
        ));
    }
    if let Some(url) = &config.store.url
        && let Err(problem) = crate::session::pg::check_url(url)
    {
        return Err(invalid_at(layers, "store", format!("store: {problem}")));
    }
    for (action, key) in &config.keys {
        if !crate::config::keys::actions().any(|a| a == action) {
            let hint = closest(action, crate::config::keys::actions())
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            return Err(invalid_at(
                layers,
                "keys",
                format!(
                    "unknown action `{action}` in [keys]{hint} (actions: {})",
                    crate::config::keys::actions()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Err(e) = crate::config::keys::KeySpec::parse(key) {
            return Err(invalid_at(
                layers,
                "keys",
                format!("[keys] {action} = \"{key}\": {e}"),
            ));
        }
    }
    if !super::THEMES.contains(&config.tui.theme.as_str()) {
        return Err(invalid_at(
            layers,
            "tui",
            format!(
                "unknown theme `{}`; the themes are dark, light and high-contrast",
                config.tui.theme
            ),
        ));
    }
    super::llm_checks::check(config, layers)?;
    if let Err(e) = crate::policy::Policy::new(config.policy.clone()) {
        return Err(invalid_at(layers, &e.table, e.message));
    }
    if let Err(e) =
        crate::session::Redactor::new(&config.audit.redact_keys, &config.audit.redact_patterns)
    {
        return Err(invalid_at(layers, "audit", e.to_string()));
    }
    let sep = &config.serve.separator;
    if sep.is_empty() || sep.chars().any(char::is_whitespace) {
        return Err(invalid_at(
            layers,
            "serve",
            format!(
                "`separator` is {sep:?}; it must be one or more characters without spaces, e.g. \".\" or \"__\""
            ),
        ));
    }
    if let Some(server) = config
        .servers
        .keys()
        .find(|name| name.contains(sep.as_str()))
    {
        return Err(invalid_at(
            layers,
            "serve",
            format!(
                "`separator` {sep:?} appears in the server name `{server}`, so served tool names would be ambiguous; choose another separator"
            ),
        ));
    }
    for (name, runbook) in &config.runbooks {
        let header = format!("runbooks.{name}");
        let ids: Vec<&str> = runbook.steps.iter().map(|s| s.id.as_str()).collect();
        if runbook.phrases.is_empty() {
            return Err(invalid_at(
                layers,
                &header,
                format!(
                    "runbook `{name}` has no `phrases`: add at least one, e.g. \"deploy {{service}} to {{env}}\""
                ),
            ));
        }
        for phrase in &runbook.phrases {
            for slot in slots(phrase) {
                if slot != "service" && slot != "env" {
                    return Err(invalid_at(
                        layers,
                        &header,
                        format!(
                            "runbook `{name}`: phrase \"{phrase}\" has slot `{{{slot}}}`; the known slots are {{service}} and {{env}}"
                        ),
                    ));
                }
            }
        }
        for (i, step) in runbook.steps.iter().enumerate() {
            if !is_name(&step.id) {
                return Err(invalid_at(
                    layers,
                    &header,
                    format!(
                        "runbook `{name}`: step {} needs an `id` of letters, digits, `-` or `_`",
                        i + 1
                    ),
                ));
            }
            if ids.iter().filter(|id| **id == step.id).count() > 1 {
                return Err(invalid_at(
                    layers,
                    &header,
                    format!("runbook `{name}`: step id `{}` is used twice", step.id),
                ));
            }
            if step.tool.split_once('.').is_none() {
                return Err(invalid_at(
                    layers,
                    &header,
                    format!(
                        "runbook `{name}`, step `{}`: tool `{}` must be written `server.tool`",
                        step.id, step.tool
                    ),
                ));
            }
            for dep in &step.depends_on {
                if !ids.contains(&dep.as_str()) {
                    let hint = closest(dep, ids.iter().copied())
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default();
                    return Err(invalid_at(
                        layers,
                        &header,
                        format!(
                            "runbook `{name}`, step `{}` depends on unknown step `{dep}`{hint}",
                            step.id
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The `{slot}` names in a phrase template.
pub(crate) fn slots(phrase: &str) -> impl Iterator<Item = &str> {
    phrase
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(slot, _)| slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str) -> Vec<ConfigSource> {
        vec![
            ConfigSource {
                name: "<built-in defaults>".into(),
                text: DEFAULT_TOML.into(),
            },
            ConfigSource {
                name: "user.toml".into(),
                text: text.into(),
            },
        ]
    }

    fn err(text: &str) -> String {
        match load_layers(layer(text)) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_default_loads_and_has_the_sandbox() {
        let loaded = load_layers(layer("")).expect("default config loads");
        let names: Vec<_> = loaded.config.servers.keys().cloned().collect();
        assert_eq!(
            names,
            ["chat", "ci", "k8s", "monitor", "quality", "registry"]
        );
        assert!(loaded.config.runbooks.contains_key("deploy"));
    }

    #[test]
    fn unknown_key_names_file_line_and_suggests() {
        let e = err("[servers.ci]\ncomand = \"x\"\n");
        assert!(
            e.starts_with("user.toml:2:1: unknown key `comand`; did you mean `command`?"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let e = err("[servers.ci]\ntimeout_ms = \"fast\"\n");
        assert!(e.starts_with("user.toml:2:14:"), "{e}");
        assert!(
            e.contains("invalid type: string \"fast\", expected a whole number"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let e = err("[servers.ci\n");
        assert!(e.starts_with("user.toml:1:"), "{e}");
    }

    #[test]
    fn server_without_command_or_url_points_at_its_table() {
        let e = err("\n\n[servers.new]\nargs = []\n");
        assert!(
            e.starts_with("user.toml:3:1: server `new` has neither"),
            "{e}"
        );
    }

    #[test]
    fn telemetry_and_notification_settings_are_checked_where_written() {
        let e = err("[tui]\nnotify_osc = 5\n");
        assert!(e.starts_with("user.toml:1:1: tui: notify_osc = 5"), "{e}");
        let e = err("\n[telemetry]\notlp_endpoint = \"localhost:4318\"\n");
        assert!(
            e.starts_with(
                "user.toml:2:1: telemetry: otlp_endpoint `localhost:4318` must start with http://"
            ),
            "{e}"
        );
        let e = err("[telemetry]\nbatch = 0\n");
        assert!(
            e.contains("batch, interval_ms and timeout_ms must be greater than 0"),
            "{e}"
        );
    }

    #[test]
    fn layers_merge_table_by_table() {
        let loaded = load_layers(layer("[servers.ci]\nenabled = false\n")).expect("loads");
        let ci = &loaded.config.servers["ci"];
        assert!(!ci.enabled);
        assert_eq!(ci.command.as_deref(), Some("{exe}"), "other keys kept");
    }

    #[test]
    fn runbook_with_unknown_dependency_suggests() {
        let e = err(
            "[runbooks.x]\nphrases = [\"x {service}\"]\n[[runbooks.x.steps]]\nid = \"build\"\ntool = \"ci.build\"\n[[runbooks.x.steps]]\nid = \"t\"\ntool = \"ci.run_tests\"\ndepends_on = [\"buld\"]\n",
        );
        assert!(
            e.contains("unknown step `buld`; did you mean `build`?"),
            "{e}"
        );
    }
}
