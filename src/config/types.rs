//! The configuration's shape. Every table denies unknown keys so a typo is an
//! error with a suggestion rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::policy::PolicyConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The services and environments requests may name.
    pub estate: Estate,
    /// MCP servers, addressed as `NAME.tool` everywhere.
    pub servers: BTreeMap<String, ServerConfig>,
    pub planner: PlannerConfig,
    /// Known-good plan templates, matched by phrase.
    pub runbooks: BTreeMap<String, Runbook>,
    pub policy: PolicyConfig,
    pub approval: ApprovalConfig,
    pub tui: TuiConfig,
    pub llm: LlmConfig,
    /// Key bindings: action name → key, e.g. `approve = "a"`, `cancel = "ctrl-x"`.
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    pub mode: crate::driver::ApprovalMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// dark, light or high-contrast.
    pub theme: String,
    /// Capture the mouse for wheel scrolling; off leaves the terminal's own
    /// text selection alone.
    pub mouse: bool,
}

impl Default for TuiConfig {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            mouse: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Estate {
    pub services: Vec<String>,
    pub envs: Vec<String>,
    /// Other words for a service or environment (`prod = "production"`).
    pub aliases: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Program to start for a stdio server. `{exe}` is opsbot's own binary.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// The only environment the server gets besides PATH, HOME, LANG and TMPDIR.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP endpoint, instead of `command`.
    pub url: Option<String>,
    pub enabled: bool,
    /// Per-call timeout.
    pub timeout_ms: u64,
    /// How long the server may take to start and answer `initialize`.
    pub startup_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            enabled: true,
            timeout_ms: 30_000,
            startup_timeout_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PlannerKind {
    /// The LLM when one is configured and reachable, else the runbooks.
    #[default]
    Auto,
    Runbook,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerConfig {
    pub kind: PlannerKind,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runbook {
    pub description: String,
    /// Phrase templates with `{service}` / `{env}` slots.
    pub phrases: Vec<String>,
    pub steps: Vec<RunbookStep>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunbookStep {
    pub id: String,
    /// `server.tool`
    pub tool: String,
    /// Arguments; `{slot}` is filled from the request, `${step.field}` from an
    /// earlier step's output when the step runs.
    pub args: serde_json::Map<String, serde_json::Value>,
    pub depends_on: Vec<String>,
    pub description: String,
    /// Always require a deliberate confirmation for this step.
    pub gate: bool,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The profile used for planning; none means the runbook planner.
    pub profile: Option<String>,
    pub profiles: BTreeMap<String, LlmProfile>,
    /// Price per million tokens, by model name, for cost accounting.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Limits that refuse further model calls once reached.
    pub budget: LlmBudget,
    /// How many recent chat messages go into the prompt as context.
    pub history_messages: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            profile: None,
            profiles: BTreeMap::new(),
            prices: BTreeMap::new(),
            budget: LlmBudget::default(),
            history_messages: 8,
        }
    }
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Spending limits; an unset limit does not apply. A day is a UTC day.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmBudget {
    pub session_usd: Option<f64>,
    pub day_usd: Option<f64>,
    pub session_tokens: Option<u64>,
    pub day_tokens: Option<u64>,
}

/// One OpenAI-compatible endpoint: OpenAI, Azure OpenAI, Ollama, vLLM,
/// LM Studio, llama.cpp's server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmProfile {
    /// Including `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the API key (when the keyring has none).
    pub api_key_env: Option<String>,
    pub timeout_ms: u64,
    /// How often a plan that fails validation goes back to the model.
    pub max_repairs: u8,
    /// At most this many tools in the prompt (the most relevant ones).
    pub max_tools: usize,
    /// Ask for `response_format: json_schema`; false sends `json_object`
    /// with the schema in the prompt, for servers without structured output.
    pub structured: bool,
    /// Sent as `OpenAI-Organization` / `OpenAI-Project`.
    pub organization: Option<String>,
    pub project: Option<String>,
    /// Extra request headers (not secrets: those belong in the keyring).
    pub headers: BTreeMap<String, String>,
    /// Extra query parameters, e.g. Azure's `api-version`.
    pub query: BTreeMap<String, String>,
    /// Send the key in this header instead of `Authorization: Bearer`
    /// (Azure OpenAI uses `api-key`).
    pub api_key_header: Option<String>,
}

impl Default for LlmProfile {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: String::new(),
            api_key_env: None,
            timeout_ms: 60_000,
            max_repairs: 2,
            max_tools: 40,
            structured: true,
            organization: None,
            project: None,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            api_key_header: None,
        }
    }
}
