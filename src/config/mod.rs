//! Configuration: the file format, layered loading and validation.
//!
//! Layers, later wins: the embedded default (the sandbox estate, the runbook
//! planner, no LLM) → the user's `config.toml` → `--config PATH`. Each layer is
//! checked on its own so an error points at the file and line that caused it.

pub mod edit;
pub mod import;
pub mod keys;
mod llm_checks;
mod load;
mod policy;
mod types;

pub use load::{ConfigError, ConfigSource, LoadedConfig, Located, load, load_layers, provenance};

/// The `{slot}` names in a runbook phrase.
pub fn phrase_slots(phrase: &str) -> impl Iterator<Item = &str> {
    load::slots(phrase)
}
pub use policy::*;
pub use types::*;

/// The themes shipped in `themes/`.
pub const THEMES: [&str; 3] = ["dark", "light", "high-contrast"];

/// The built-in defaults, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("default.toml");
