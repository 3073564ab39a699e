//! config.example.toml is documentation that must stay true: it parses,
//! and it shows every key the configuration knows.

use opsbot::config::{Config, ConfigSource, DEFAULT_TOML, load_layers};

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
        .expect("read example")
}

#[test]
fn the_example_parses_over_the_defaults() {
    let loaded = load_layers(vec![
        ConfigSource {
            name: "<built-in defaults>".into(),
            text: DEFAULT_TOML.into(),
        },
        ConfigSource {
            name: "config.example.toml".into(),
            text: example(),
        },
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let restart = &loaded.config.runbooks["restart"];
    assert_eq!(restart.steps.len(), 5);
    assert!(restart.steps[1].gate);
    assert!(!loaded.config.servers["fs"].enabled);
    assert_eq!(
        loaded.config.servers["remote-tools"].url.as_deref(),
        Some("http://127.0.0.1:3001/mcp")
    );
}

/// Every key of every table, from the types themselves, must appear in the
/// example as `key =`.
#[test]
fn the_example_documents_every_key() {
    let text = example();
    let full = serde_json::to_value(Config::default()).expect("serialize");
    let mut keys = Vec::new();
    collect(&full, &mut keys);
    let server = serde_json::to_value(opsbot::config::ServerConfig::default()).expect("server");
    collect(&server, &mut keys);
    let step = serde_json::to_value(opsbot::config::RunbookStep::default()).expect("step");
    collect(&step, &mut keys);
    let runbook = serde_json::to_value(opsbot::config::Runbook::default()).expect("runbook");
    collect(&runbook, &mut keys);
    let profile = serde_json::to_value(opsbot::config::LlmProfile::default()).expect("profile");
    collect(&profile, &mut keys);
    let price = serde_json::to_value(opsbot::config::ModelPrice::default()).expect("price");
    collect(&price, &mut keys);
    for v in [
        serde_json::to_value(opsbot::config::RuleConfig::default()),
        serde_json::to_value(opsbot::config::EffectConfig::default()),
        serde_json::to_value(opsbot::config::FreezeConfig::default()),
        serde_json::to_value(opsbot::config::LimitConfig::default()),
        serde_json::to_value(opsbot::config::Compensation::default()),
    ] {
        collect(&v.expect("policy table"), &mut keys);
    }
    for key in keys {
        let shown = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            let header = l.trim_matches(['[', ']']);
            l.starts_with(&format!("{key} ="))
                || header == key
                || header.starts_with(&format!("{key}."))
                || header.ends_with(&format!(".{key}"))
        });
        assert!(shown, "config.example.toml does not show `{key}`");
    }
}

fn collect(v: &serde_json::Value, keys: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            // Tables of named entries: their entries' keys are checked below.
            if !matches!(
                k.as_str(),
                "servers"
                    | "runbooks"
                    | "profiles"
                    | "prices"
                    | "users"
                    | "rules"
                    | "freezes"
                    | "limits"
            ) {
                keys.push(k.clone());
            }
            if !matches!(k.as_str(), "aliases" | "env" | "args" | "headers" | "query") {
                collect(v, keys);
            }
        }
    }
}
