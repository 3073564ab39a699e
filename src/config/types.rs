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
    pub engine: EngineConfig,
    pub audit: AuditConfig,
    /// Audit records sent on to an OpenTelemetry collector.
    pub telemetry: TelemetryConfig,
    /// Telling people a step waits for their approval.
    pub notify: NotifyConfig,
    pub serve: ServeConfig,
    /// Where the audit log lives: the embedded SQLite file (default) or a
    /// PostgreSQL database a team shares.
    pub store: StoreConfig,
    /// Whether servers may ask opsbot to run a model for them.
    pub sampling: SamplingConfig,
    /// Compensating calls by tool: how to undo a finished step when a plan
    /// fails after it, e.g. `k8s.deploy` → `k8s.rollback`.
    pub compensations: BTreeMap<String, Compensation>,
    /// Key bindings: action name → key, e.g. `approve = "a"`, `cancel = "ctrl-x"`.
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    pub mode: crate::driver::ApprovalMode,
    /// How long `opsbot run` waits for other people's approvals of a step
    /// whose rule asks for them (four eyes), in seconds.
    pub others_wait_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// dark, light or high-contrast.
    pub theme: String,
    /// Capture the mouse for wheel scrolling; off leaves the terminal's own
    /// text selection alone.
    pub mouse: bool,
    /// Ring (terminal bell and a desktop notification) when a call starts
    /// waiting for your approval or a server asks you something.
    pub notify: bool,
    /// The desktop notification's escape: 9 (iTerm2, WezTerm, Windows
    /// Terminal, kitty) or 777 (urxvt, foot, Ghostty, VTE terminals).
    pub notify_osc: u16,
}

impl Default for TuiConfig {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            mouse: true,
            notify: true,
            notify_osc: 9,
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
    /// Tool arguments that name an environment: their values are put in
    /// canonical terms before policy decides, and an unknown one is gated
    /// like the most guarded environment.
    pub env_args: Vec<String>,
    /// Tool arguments that name a service.
    pub service_args: Vec<String>,
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
    /// HTTP headers sent to a `url` server. Values (like `env` values) may
    /// hold `${keyring}` (`opsbot auth set server:NAME HEADER`) or
    /// `${env:VAR}`, so secrets never sit in the file.
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// Per-call timeout.
    pub timeout_ms: u64,
    /// How long the server may take to start and answer `initialize`.
    pub startup_timeout_ms: u64,
    /// At most this many calls to the server at once (besides the global limit).
    pub max_concurrency: Option<usize>,
    /// Retries of a transient failure (timeout, restart, an error the tool
    /// marks retryable), for idempotent tools only.
    pub retries: u32,
    /// First retry delay; it doubles each time, with jitter, up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Tools to treat as idempotent (safe to retry) whatever their annotations say.
    pub idempotent: Vec<String>,
    /// Tools never retried automatically, whatever their annotations say.
    pub non_idempotent: Vec<String>,
    /// After this many failures in a row, calls fail fast for `breaker_cooldown_ms`.
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    /// Another server with the same tools, used while this one is down or its breaker is open.
    pub fallback: Option<String>,
    /// When the server starts: on first use (its cached tool list serves
    /// planning until then), or with the app.
    pub start: StartMode,
    /// How opsbot identifies itself to the server's OAuth authorization
    /// server (`opsbot auth login NAME`). Without it, opsbot registers
    /// itself (dynamic client registration) where the server allows.
    pub oauth: OAuthConfig,
    /// Directories (paths or `file://` URIs) the server may work in, told
    /// to it as MCP roots. Empty: opsbot declares no roots.
    pub roots: Vec<String>,
    /// The least severe log message the server should send (MCP
    /// `logging/setLevel`: debug, info, notice, warning, error, critical,
    /// alert, emergency), for servers that log. Unset: the server's own.
    pub log_level: Option<String>,
    /// Whether what the server answers may steer the model. An untrusted
    /// server's output reaches a model only inside an escaped data block,
    /// and a plan proposed after it has every state-changing step approved
    /// afresh. The sandbox is trusted; every other server starts untrusted.
    pub trust: Trust,
}

/// How far a server's output is believed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    Trusted,
    #[default]
    Untrusted,
}

/// Sampling: a server asking its client to run a model. Off unless a
/// profile is named; each request is then shown for approval (unless a
/// policy rule allows `SERVER.sampling/createMessage`) and counts against
/// the `[llm.budget]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// An `[llm.profiles]` name.
    pub profile: Option<String>,
    /// The most tokens a server may ask for in one request (its own
    /// `maxTokens` is lowered to this).
    pub max_tokens: u32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            profile: None,
            max_tokens: 4096,
        }
    }
}

/// A `url` server's OAuth client identity and the scopes to ask for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// A client registered with the authorization server beforehand.
    pub client_id: Option<String>,
    /// Its secret, for confidential clients: `${keyring}` (`opsbot auth set
    /// server:NAME client_secret`) or `${env:VAR}`, never the secret itself.
    pub client_secret: Option<String>,
    /// An HTTPS URL of a Client ID Metadata Document describing opsbot,
    /// used where the authorization server accepts them.
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for; empty: what the server's challenge or metadata
    /// names.
    pub scopes: Vec<String>,
    /// `authorization_code` (a person logs in in a browser) or
    /// `client_credentials` (a machine identity: `client_id` with
    /// `client_secret`, or with `private_key_file`; no browser).
    pub grant: OAuthGrant,
    /// A PEM (PKCS#8) private key signing a JWT assertion instead of a
    /// client secret (RFC 7523 `private_key_jwt`), for `client_credentials`.
    pub private_key_file: Option<PathBuf>,
    /// The key's algorithm: ES256 (default), ES384, RS256, RS384 or RS512.
    pub signing_algorithm: Option<String>,
    /// Cross-app access (`grant = "cross_app_access"`): the enterprise
    /// identity provider that turns your ID token into an ID-JAG the
    /// server's authorization server takes.
    pub idp_issuer: Option<String>,
    pub idp_token_endpoint: Option<String>,
    pub idp_client_id: Option<String>,
    /// `${keyring}` or `${env:VAR}`; unset for a public client.
    pub idp_client_secret: Option<String>,
    /// Your ID token from the identity provider's sign-in: `${keyring}` or
    /// `${env:VAR}`, never the token itself.
    pub id_token: Option<String>,
}

/// How opsbot gets a server's tokens.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    #[default]
    AuthorizationCode,
    ClientCredentials,
    /// Enterprise-managed authorization (SEP-990): an ID token from the
    /// company's identity provider, exchanged for an ID-JAG, then for the
    /// server's token. No browser.
    CrossAppAccess,
}

/// When a server's process (or connection) is started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// When a plan or call first uses it, or when nothing is cached yet.
    #[default]
    Lazy,
    /// As soon as the app, `run`, `call` or `serve` starts.
    Eager,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            enabled: true,
            timeout_ms: 30_000,
            startup_timeout_ms: 20_000,
            max_concurrency: None,
            retries: 2,
            retry_base_ms: 200,
            retry_max_ms: 5_000,
            idempotent: Vec::new(),
            non_idempotent: Vec::new(),
            breaker_failures: 5,
            oauth: OAuthConfig::default(),
            roots: Vec::new(),
            log_level: None,
            trust: Trust::Untrusted,
            breaker_cooldown_ms: 30_000,
            fallback: None,
            start: StartMode::Lazy,
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
    /// Words that ask for this runbook in any word order ("ship", "roll
    /// out"); the earliest one in a request wins over a later one.
    pub verbs: Vec<String>,
    /// Values for slots a request may leave out (`ref = "main"`).
    pub defaults: BTreeMap<String, String>,
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
    /// Run only if this holds over earlier steps, e.g. `health.status == "failed"`.
    pub when: Option<String>,
    /// A failure here does not stop the steps after it.
    pub continue_on_error: bool,
    /// Retries for transient failures (default: the server's `retries`).
    pub retries: Option<u32>,
    /// How to undo this step if the run fails after it; `${args.NAME}` and
    /// `${output.NAME}` refer to this step's arguments and output.
    pub undo: Option<Compensation>,
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
    /// The most the model may write in one answer, sent as `max_tokens`
    /// (`max_completion_tokens` to api.openai.com). The default leaves room
    /// for the largest plan the schema allows.
    pub max_output_tokens: u32,
    /// Stream the answer, so steps appear as they are written. An
    /// endpoint that cannot stream answers whole and that is read too.
    pub stream: bool,
    /// How the plan comes back: `json_schema` (structured output),
    /// `tool_call` (one forced function call, for servers with function
    /// calling but no json_schema), or `auto` (json_schema, falling back to
    /// tool_call and then json_object as the server refuses each).
    pub mode: LlmMode,
}

/// How an LLM returns its plan.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    #[default]
    Auto,
    JsonSchema,
    ToolCall,
    JsonObject,
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
            max_output_tokens: 8192,
            stream: true,
            mode: LlmMode::Auto,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Steps running at once, across all servers.
    pub max_parallel: usize,
    /// Outputs larger than this are stored cut, with their size and hash.
    pub output_cap_bytes: usize,
    /// Environments whose compensation plans are approved in advance.
    pub pre_approve_undo: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_parallel: 8,
            output_cap_bytes: 1 << 20,
            pre_approve_undo: Vec::new(),
        }
    }
}

/// The audit log: what is kept out of it, and for how long it is kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Values under these keys (any depth, case-insensitive; `github_token`
    /// matches `token`) are stored and shown as `[redacted]`.
    pub redact_keys: Vec<String>,
    /// Regular expressions: every match in any stored or shown text is
    /// replaced by `[redacted]`.
    pub redact_patterns: Vec<String>,
    /// opsbot's own environment variables whose names match these globs
    /// (`*` any run of characters, case-insensitive) hold secrets: their
    /// values are redacted everywhere from the start, so a tool that reads
    /// opsbot's environment (`/proc/PID/environ`) cannot bring one back.
    pub secret_env: Vec<String>,
    /// Sessions older than this many days are pruned (0 keeps them all).
    pub retention_days: u32,
    /// The oldest sessions are pruned while the log is larger than this
    /// many MiB (0: no limit).
    pub retention_max_mib: u64,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            mode: crate::driver::ApprovalMode::default(),
            others_wait_secs: 1800,
        }
    }
}

/// When a step starts waiting for other people's approval (four eyes),
/// call an MCP tool (a chat server's) with what waits and the command that
/// approves it. The call is its own session, decided by policy and
/// recorded like any other: a rule must allow it, since nobody is there to
/// approve a notification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `server.tool`, e.g. `chat.notify`. Unset: no notification.
    pub tool: Option<String>,
    /// Its arguments. In string values `{summary}`, `{command}`, `{tool}`,
    /// `{requester}`, `{wanted}` and `{id}` are filled in.
    pub args: BTreeMap<String, serde_json::Value>,
}

/// Export to an OpenTelemetry collector (OTLP/HTTP, protobuf): every audit
/// record as a log record, every finished run as a trace with a span per
/// step. Sent from a thread of its own, after the records are stored; a
/// cursor in the log resumes the export after an outage or a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's base URL, e.g. `http://localhost:4318`: logs go to
    /// `/v1/logs`, traces to `/v1/traces`. Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// Request headers (an API key): values may hold `${keyring}` (`opsbot
    /// auth set telemetry HEADER`) or `${env:VAR}`.
    pub headers: BTreeMap<String, String>,
    /// `service.name` of what is exported.
    pub service_name: String,
    pub logs: bool,
    pub traces: bool,
    /// Records per request.
    pub batch: usize,
    /// How often new records are looked for.
    pub interval_ms: u64,
    /// One request's time limit.
    pub timeout_ms: u64,
    /// How long a process that ends waits to send what it has not sent
    /// yet (the rest goes with the next export, from the cursor).
    pub flush_timeout_ms: u64,
    /// When the export is first set up: also send the records from before
    /// (the whole history), not only the new ones.
    pub backfill: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            headers: BTreeMap::new(),
            service_name: "opsbot".into(),
            logs: true,
            traces: true,
            batch: 512,
            interval_ms: 2_000,
            timeout_ms: 10_000,
            flush_timeout_ms: 2_000,
            backfill: false,
        }
    }
}

/// `[store]`: the log in a shared PostgreSQL database instead of the
/// data directory's SQLite file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DB[?sslmode=disable|prefer|require]`.
    /// No password here: it comes from `password_env` or the OS keyring
    /// (`opsbot auth set store`).
    pub url: Option<String>,
    /// The environment variable holding the database password.
    pub password_env: Option<String>,
    /// A PEM file of the CA(s) the server's certificate must chain to;
    /// without it, the platform's roots. Certificates are always checked.
    pub ca_file: Option<std::path::PathBuf>,
    /// Who you are on this store (approvals name it); default: the OS user.
    pub identity: Option<String>,
    /// Seconds to wait for the database before giving up.
    pub connect_timeout_secs: Option<u64>,
}

/// `opsbot serve`: every server's tools as one MCP server, governed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Between a server's name and its tool's in the names clients see
    /// (`k8s.deploy`); some clients accept only letters, digits, `_` and
    /// `-` in tool names: use `__` for them.
    pub separator: String,
    /// `server`: tools are served as `server{separator}tool`; `none`: under
    /// their own names (two exposed servers with a tool of the same name
    /// are then an error naming both).
    pub namespace: Namespace,
    /// How long a call that needs approval waits for one, in seconds: from
    /// the client (elicitation) or from an opsbot app on the same data
    /// directory. Then it is refused.
    pub approval_timeout_secs: u64,
    /// Tools whose definitions the scan flags: `hide` them from clients
    /// (and refuse calls to them), `sanitize` what clients read (hidden
    /// characters and flagged spans removed), or `pass` them as they are.
    pub flagged: Flagged,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            separator: ".".into(),
            namespace: Namespace::Server,
            approval_timeout_secs: 120,
            flagged: Flagged::Hide,
        }
    }
}

/// What `opsbot serve` does with a tool the scan flags.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Flagged {
    #[default]
    Hide,
    Sanitize,
    Pass,
}

/// How served tool names are made.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    #[default]
    Server,
    None,
}

/// How to undo one tool's effect. `args` values may use `${args.NAME}` (the
/// finished step's arguments) and `${output.NAME}` (what it returned).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Compensation {
    pub tool: String,
    pub args: serde_json::Map<String, serde_json::Value>,
    pub description: String,
}
