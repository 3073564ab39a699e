//! Wiring: config → servers → planner → policy → session. The headless CLI
//! and the TUI both drive the core through this, so they cannot disagree
//! about what a request means.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::config::{self, ConfigError, LoadedConfig};
use crate::engine::{Approvals, Engine};
use crate::mcp::{ServerEvent, ServerStatus, Servers, SpawnContext};
use crate::paths::Paths;
use crate::plan::{Plan, StepId, validate};
use crate::planner::runbook::RunbookPlanner;
use crate::planner::{PlanInput, Planner, Proposal, Turn};
use crate::policy::{Decision, Policy, args_hash};

mod asker;
mod call;
mod exchange;
mod guard;
pub mod influence;
mod notify;
mod propose;
mod quorum;
mod remote;
mod review;
mod sink;
mod undo;

pub use notify::Waiting;
pub use quorum::{Approval, Standing, approve_step};
pub use remote::{PendingError, approve_pending, pending_approvals, refuse_pending};
pub use review::{PinReview, ReviewError, short};

use crate::session::{Event, Outcome, Session, SessionId, Store, StoreError};
pub use guard::{Knowledge, PolicyGuard, definition};
use sink::SessionSink;
pub use undo::compensation_plan;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot find opsbot's own executable to start the sandbox: {0}")]
    Exe(std::io::Error),
    #[error(transparent)]
    Planner(#[from] crate::planner::PlannerError),
    #[error("{0}")]
    Actor(String),
    #[error(transparent)]
    Seal(#[from] crate::session::SealError),
    #[error("{0}")]
    Telemetry(String),
}

/// The planner for a profile: the LLM planner when one is named, else the
/// runbook planner.
fn build_planner(
    config: &crate::config::Config,
    servers: &Servers,
    profile: Option<&str>,
) -> Result<Arc<dyn Planner>, RuntimeError> {
    let Some(name) = profile else {
        return Ok(Arc::new(
            RunbookPlanner::new(config).with_servers(servers.clone()),
        ));
    };
    let Some(profile) = config.llm.profiles.get(name).cloned() else {
        let known: Vec<&str> = config.llm.profiles.keys().map(String::as_str).collect();
        return Err(crate::planner::PlannerError::Failed(format!(
            "no LLM profile `{name}`; the profiles are: {}",
            if known.is_empty() {
                "none (add one under [llm.profiles])".to_string()
            } else {
                known.join(", ")
            }
        ))
        .into());
    };
    let (key, source) = crate::secrets::api_key(name, profile.api_key_env.as_deref());
    tracing::info!("LLM profile `{name}`: API key from {source}");
    Ok(Arc::new(crate::planner::llm::LlmPlanner::new(
        name,
        profile,
        key,
        servers.clone(),
        config,
    )?))
}

/// What the runtime does as servers come and go, on one subscription
/// taken when the servers start (so nothing is missed before this runs):
/// every tool is pinned when it is first listed (from the cache now, and
/// each time a server lists its tools) and a definition served differently
/// from its pin is kept for review (a call is still checked against the
/// pin as it is made, in `guard`); and, unless serving (the clients get
/// them then), servers' log messages go to opsbot's log, redacted.
/// Nothing is spawned outside a tokio runtime.
fn follow_servers(
    mut events: tokio::sync::broadcast::Receiver<ServerEvent>,
    servers: &Servers,
    store: Arc<Store>,
    knowledge: Arc<std::sync::Mutex<Knowledge>>,
    serving: bool,
) {
    let all: Vec<crate::mcp::ToolInfo> = servers
        .statuses()
        .into_iter()
        .flat_map(|(name, _)| servers.tools_of(&name))
        .collect();
    guard::pin_listed(&store, &knowledge, &all);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let servers = servers.clone();
    handle.spawn(async move {
        loop {
            match events.recv().await {
                Ok(
                    ServerEvent::Status {
                        server,
                        status: ServerStatus::Ready { .. },
                    }
                    | ServerEvent::ToolsChanged { server, .. },
                ) => guard::pin_listed(&store, &knowledge, &servers.tools_of(&server)),
                Ok(ServerEvent::Log { server, message }) if !serving => {
                    let line = ServerEvent::log_line(&message, &store.redactor());
                    tracing::info!(target: "opsbot::server_log", "{server}: {line}");
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The model servers may sample: `[sampling] profile`, when set.
fn sampler(config: &crate::config::Config) -> Result<Option<Arc<asker::Sampler>>, RuntimeError> {
    let Some(name) = &config.sampling.profile else {
        return Ok(None);
    };
    let profile = config.llm.profiles.get(name).ok_or_else(|| {
        crate::planner::PlannerError::Failed(format!(
            "[sampling] profile `{name}` is not defined under [llm.profiles]"
        ))
    })?;
    let (key, source) = crate::secrets::api_key(name, profile.api_key_env.as_deref());
    tracing::info!("sampling profile `{name}`: API key from {source}");
    let endpoint = crate::planner::endpoint::Endpoint::new(profile, key);
    let chat = crate::planner::chat::ChatClient::new(&endpoint, profile.timeout_ms)
        .map_err(crate::planner::PlannerError::Failed)?;
    Ok(Some(Arc::new(asker::Sampler {
        profile: name.clone(),
        model: profile.model.clone(),
        chat,
        max_tokens: config.sampling.max_tokens,
        llm: config.llm.clone(),
    })))
}

/// The profile planning starts with: the selected one, unless the planner
/// kind is pinned to runbooks.
fn initial_profile(config: &crate::config::Config) -> Option<&str> {
    match config.planner.kind {
        crate::config::PlannerKind::Auto => config.llm.profile.as_deref(),
        _ => None,
    }
}

/// The longest request opsbot plans, in characters: a request is a
/// sentence or a paragraph, not a document.
pub const MAX_REQUEST_CHARS: usize = 8_000;

/// Why a request is not planned at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the request is {0} characters; opsbot plans requests of at most {MAX_REQUEST_CHARS}. Say what to do in a sentence or two, and put long text (logs, manifests) in a file a tool can read"
)]
pub struct RequestTooLong(pub usize);

/// A request opsbot will plan, or why not.
pub fn check_request(text: &str) -> Result<(), RequestTooLong> {
    let n = text.chars().count();
    if n > MAX_REQUEST_CHARS {
        return Err(RequestTooLong(n));
    }
    Ok(())
}

/// What the planner is doing, for views that show a live "thinking" line.
#[derive(Debug, Clone)]
pub struct Planning {
    pub since: std::time::Instant,
    pub planner: String,
    pub phase: Option<crate::planner::Phase>,
    /// Tokens of the answer so far (streamed).
    pub tokens: u64,
    /// The steps complete so far, shown before the plan is whole; nothing
    /// here can be approved.
    pub draft: Vec<crate::plan::Step>,
    /// Cancels this planning turn.
    pub cancel: tokio_util::sync::CancellationToken,
}

pub struct Runtime {
    pub paths: Paths,
    pub config: LoadedConfig,
    pub servers: Servers,
    pub store: Arc<Store>,
    /// Services, environments, their other names, and which arguments name them.
    pub estate: crate::estate::Estate,
    planner: RwLock<Arc<dyn Planner>>,
    planning: watch::Sender<Option<Planning>>,
    pub policy: Arc<Policy>,
    knowledge: Arc<std::sync::Mutex<Knowledge>>,
    /// What kind of driver this process is (`app`, `run`, `serve`), named
    /// in the lease of every session it drives.
    pub driver: String,
    /// Cancelled when the process is asked to stop (a stop signal): what
    /// runs is cancelled and recorded, then the process ends.
    pub stopping: tokio_util::sync::CancellationToken,
    stop_reason: std::sync::Mutex<Option<String>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The policy's problems against the last catalog it was checked with
    /// (by the catalog's definitions): every proposal asks, the catalog
    /// rarely changes.
    lint: std::sync::Mutex<Option<(u64, Vec<String>)>>,
    /// Where servers' questions for the person go (the app's modal, a
    /// terminal prompt, or the unattended rule).
    desk: Arc<crate::ask::Desk>,
    /// The model servers may sample, with a `[sampling] profile`.
    sampler: Option<Arc<asker::Sampler>>,
    /// The answerer lent to servers for the session being driven; none
    /// when serving (the serving clients answer).
    answering: std::sync::Mutex<Option<crate::mcp::relay::Lend>>,
    serving: bool,
    /// Sends the log on to an OpenTelemetry collector, when configured;
    /// dropped last, it sends what is left as the process ends.
    telemetry: Option<crate::telemetry::Exporter>,
}

/// Who acts: the OS user, or `requested` where `[policy] allow_as` lets
/// people act as someone else (for commands that start no runtime).
pub fn acting_as(
    policy: &crate::config::PolicyConfig,
    requested: Option<&str>,
) -> Result<String, String> {
    let me = crate::session::os_user();
    match requested {
        None => Ok(me),
        Some(who) if who == me => Ok(me),
        Some(who) if policy.allow_as => Ok(who.to_string()),
        Some(who) => Err(format!(
            "--as {who}: acting as someone else is off; set [policy] allow_as = true to allow it"
        )),
    }
}

/// A call in progress, counted while it lives: stopping waits for these.
pub struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A plan with policy's decision for each step.
pub type Decided = (Plan, Vec<(StepId, Decision)>);

/// What a resumed session still has to do.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub plan: Plan,
    pub decisions: Vec<(StepId, Decision)>,
    pub done: HashMap<StepId, serde_json::Value>,
}

/// The planner's answer, validated and governed.
/// Why a past plan cannot be proposed again.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("session {0} has no plan to re-run")]
    NoPlan(SessionId),
    #[error(
        "the log keeps only the redacted arguments of {0} (they held a secret); type the request again instead"
    )]
    Redacted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub enum Planned {
    Ready {
        plan: Plan,
        decisions: Vec<(StepId, Decision)>,
    },
    Clarify(String),
    Invalid(Vec<String>),
    /// The user cancelled planning.
    Cancelled,
}

impl Runtime {
    /// Load config, open the store and start every server in the background.
    pub fn start(paths: Paths, config_file: Option<&Path>) -> Result<Self, RuntimeError> {
        let config = config::load(&paths, config_file)?;
        Self::with_config(paths, config)
    }

    pub fn with_config(paths: Paths, config: LoadedConfig) -> Result<Self, RuntimeError> {
        let exe = std::env::current_exe().map_err(RuntimeError::Exe)?;
        Self::with_exe(paths, config, exe)
    }

    /// As `with_config`, with `{exe}` (the sandbox's binary) given: for
    /// embedding opsbot's core in another program, such as a test.
    pub fn with_exe(
        paths: Paths,
        config: LoadedConfig,
        exe: std::path::PathBuf,
    ) -> Result<Self, RuntimeError> {
        Self::build(paths, config, exe, None)
    }

    /// `start` for `opsbot serve`: servers are told opsbot can sample,
    /// elicit and list roots, and their requests go to the serving clients.
    pub fn start_serving(paths: Paths, config_file: Option<&Path>) -> Result<Self, RuntimeError> {
        let config = config::load(&paths, config_file)?;
        let exe = std::env::current_exe().map_err(RuntimeError::Exe)?;
        Self::build(
            paths,
            config,
            exe,
            Some(crate::mcp::relay::Relay::serving()),
        )
    }

    fn build(
        paths: Paths,
        config: LoadedConfig,
        exe: std::path::PathBuf,
        relay: Option<crate::mcp::relay::Relay>,
    ) -> Result<Self, RuntimeError> {
        let store = Arc::new(crate::session::open_store(
            &paths.database(),
            &config.config.store,
        )?);
        // A key that exists but cannot be read stops here (the log could
        // not be proven whole); one that cannot be made is warned about,
        // and `audit verify` says the log is unsigned.
        match crate::session::Seal::load_or_create(&paths.config_dir) {
            Ok((seal, fresh)) => store.adopt_seal(seal, fresh)?,
            Err(e @ crate::session::SealError::Read { .. }) => return Err(e.into()),
            Err(e) => tracing::warn!("{e}"),
        }
        // What a killed opsbot journaled and did not commit goes into the
        // log before anything reads it to resume (signed, as the seal is
        // set by now).
        store.recover_journals()?;
        let audit = &config.config.audit;
        let found = crate::secrets::remember_environment(&audit.secret_env);
        tracing::info!("{found} secret-looking environment variables are redacted");
        match crate::session::Redactor::new(&audit.redact_keys, &audit.redact_patterns) {
            Ok(r) => store.set_redactor(r),
            Err(e) => {
                // Config loading checks the patterns; this is a config built
                // in code. Keep the key names at least.
                tracing::error!("{e}; redacting by key name only");
                if let Ok(r) = crate::session::Redactor::new(&audit.redact_keys, &[]) {
                    store.set_redactor(r);
                }
            }
        }
        let retention = crate::session::Retention {
            max_age_days: audit.retention_days,
            max_bytes: audit.retention_max_mib.saturating_mul(1 << 20),
        };
        match store.prune(retention) {
            Ok(r) if r.sessions > 0 => tracing::info!(
                "retention pruned {} old sessions ({} events, up to #{})",
                r.sessions,
                r.events,
                r.upto_seq
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("retention could not prune the audit log: {e}"),
        }
        let telemetry = crate::telemetry::Exporter::start(&store, &config.config.telemetry)
            .map_err(|e| RuntimeError::Telemetry(e.to_string()))?;
        let sampler = sampler(&config.config)?;
        let serving = relay.is_some();
        let relay = relay.unwrap_or_else(|| {
            crate::mcp::relay::Relay::offering(crate::mcp::relay::Offers {
                elicitation: true,
                sampling: sampler.is_some(),
                tasks: true,
                ..Default::default()
            })
        });
        let ctx = SpawnContext {
            exe,
            data_dir: paths.data_dir.clone(),
            config_dir: paths.config_dir.clone(),
            relay: Some(relay),
        };
        let _ = std::fs::create_dir_all(paths.sandbox_state());
        let servers = Servers::start(&config.config, &ctx);
        let server_events = servers.subscribe();
        let planner = build_planner(&config.config, &servers, initial_profile(&config.config))?;
        // Loading checked the policy already; this cannot fail for a loaded config.
        let policy = Policy::new(config.config.policy.clone()).map_err(|e| {
            ConfigError::Invalid(Box::new(config::Located {
                file: "[policy]".into(),
                line: 1,
                column: 1,
                message: e.message,
                source_line: None,
            }))
        })?;
        let knowledge = Arc::new(std::sync::Mutex::new(Knowledge::load(&store, &policy)?));
        follow_servers(
            server_events,
            &servers,
            Arc::clone(&store),
            Arc::clone(&knowledge),
            serving,
        );
        let estate = crate::estate::Estate::new(&config.config);
        let policy = policy.with_estate(estate.clone());
        Ok(Self {
            paths,
            config,
            servers,
            store,
            estate,
            planner: RwLock::new(planner),
            planning: watch::channel(None).0,
            policy: Arc::new(policy),
            knowledge,
            driver: "opsbot".into(),
            stopping: tokio_util::sync::CancellationToken::new(),
            stop_reason: std::sync::Mutex::new(None),
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            lint: std::sync::Mutex::new(None),
            desk: Arc::default(),
            sampler,
            answering: std::sync::Mutex::new(None),
            serving,
            telemetry,
        })
    }

    /// Where servers' questions for the person arrive: a front end attaches
    /// to it, a headless command sets what answers unattended.
    pub fn desk(&self) -> &Arc<crate::ask::Desk> {
        &self.desk
    }

    /// Answer servers' requests (elicitation, sampling) for `session` from
    /// now on, recording them in it. Serving, the clients answer instead.
    pub fn answer_in(&self, session: &Arc<Session>) {
        if self.serving {
            return;
        }
        let Some(relay) = self.servers.relay() else {
            return;
        };
        let asker = asker::LocalAsker {
            desk: Arc::clone(&self.desk),
            session: Arc::downgrade(session),
            judge: self.judge(),
            store: Arc::clone(&self.store),
            sampler: self.sampler.clone(),
        };
        let lend = relay.lend(None, Arc::new(asker));
        // The previous session's answerer is returned only now, so no
        // request finds none in between.
        let old = self
            .answering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(lend);
        drop(old);
    }

    /// Ask everything this process runs to stop, because of `why` (a
    /// signal's name); the first reason given is kept.
    pub fn stop(&self, why: &str) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert_with(|| why.to_string());
        drop(r);
        self.stopping.cancel();
    }

    /// Why the process is stopping, once it is.
    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Count a call as in progress for as long as the value lives.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Wait (at most `within`) until no call is in progress.
    pub async fn drained(&self, within: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// A planner for an LLM profile, or the offline one (`None`), over
    /// this runtime's servers; the session's planner is not changed.
    pub fn planner_for(&self, profile: Option<&str>) -> Result<Arc<dyn Planner>, RuntimeError> {
        build_planner(&self.config.config, &self.servers, profile)
    }

    /// The planner in use now.
    pub fn planner(&self) -> Arc<dyn Planner> {
        Arc::clone(&self.planner.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Cancel the planning under way, if any; true if there was one.
    pub fn cancel_planning(&self) -> bool {
        match self.planning.borrow().as_ref() {
            Some(p) => {
                p.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The OpenTelemetry export's health, when one is configured:
    /// `Some(why)` while it is failing.
    pub fn telemetry_health(&self) -> Option<watch::Receiver<Option<String>>> {
        self.telemetry
            .as_ref()
            .map(crate::telemetry::Exporter::health)
    }

    /// Follow what the planner is doing: `None` when it is idle.
    pub fn planning(&self) -> watch::Receiver<Option<Planning>> {
        self.planning.subscribe()
    }

    /// Plan with another LLM profile from now on, or with the runbooks
    /// (`None`). The change is recorded in the session.
    pub fn switch_planner(
        &self,
        session: &Session,
        profile: Option<&str>,
    ) -> Result<String, RuntimeError> {
        let planner = build_planner(&self.config.config, &self.servers, profile)?;
        let name = planner.name().to_string();
        session.record(Event::PlannerChanged {
            planner: name.clone(),
        })?;
        *self.planner.write().unwrap_or_else(|p| p.into_inner()) = planner;
        Ok(name)
    }

    /// The planners to choose from: the runbooks, then every LLM profile as
    /// `(profile, "llm:NAME", model at base_url)`.
    pub fn planner_choices(&self) -> Vec<(Option<String>, String, String)> {
        let mut out = vec![(
            None,
            "runbook".to_string(),
            "offline: the configured runbooks".to_string(),
        )];
        for (name, p) in &self.config.config.llm.profiles {
            out.push((
                Some(name.clone()),
                format!("llm:{name}"),
                format!("{} at {}", p.model, p.base_url),
            ));
        }
        out
    }

    /// Who acts: the OS user, or `requested` where `[policy] allow_as` lets
    /// people act as someone else.
    pub fn actor(&self, requested: Option<&str>) -> Result<String, RuntimeError> {
        acting_as(&self.config.config.policy, requested).map_err(RuntimeError::Actor)
    }

    /// What policy knows of the past: effects and calls within the rules'
    /// horizon, and pinned definitions.
    pub fn knowledge(&self) -> std::sync::MutexGuard<'_, Knowledge> {
        self.knowledge.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The guard that checks each call against policy as it is made.
    pub fn guard(&self) -> Arc<PolicyGuard> {
        Arc::new(PolicyGuard {
            policy: Arc::clone(&self.policy),
            knowledge: Arc::clone(&self.knowledge),
            servers: self.servers.clone(),
            store: Arc::clone(&self.store),
        })
    }

    /// Policy checked against the tools it governs (`catalog`): each
    /// problem with the file, line and rule it comes from. While there is
    /// one, nothing is proposed: a rule that could never match is policy
    /// failing open.
    pub fn policy_errors(&self, catalog: &crate::mcp::Catalog) -> Vec<String> {
        // A tool still starting would look like no tool taking an argument.
        if !self.servers.all_settled() {
            return Vec::new();
        }
        let key = catalog.key();
        let mut cached = self.lint.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, errors)) = cached.as_ref()
            && *k == key
        {
            return errors.clone();
        }
        let errors: Vec<String> = self
            .policy
            .check_against(catalog)
            .into_iter()
            .map(|p| {
                let rule = p.table.rsplit('.').next().unwrap_or(&p.table).to_string();
                let what = if p.table.starts_with("policy.rules.") {
                    format!("rule `{rule}`: {}", p.message)
                } else {
                    format!("[{}]: {}", p.table, p.message)
                };
                self.config.error_at(&p.table, what).to_string()
            })
            .collect();
        *cached = Some((key, errors.clone()));
        errors
    }

    /// Put a plan in canonical terms (aliases → names): what policy
    /// decides, approvals bind to and servers receive. Says what changed.
    pub fn canonicalize(&self, plan: &mut Plan) -> Vec<String> {
        let mut said = Vec::new();
        for step in &mut plan.steps {
            for r in self.estate.canonicalize(&mut step.args) {
                said.push(format!("{} {r}", step.id));
            }
        }
        said
    }

    /// The tools this session's actor is denied whatever the arguments.
    pub fn denied_outright(
        &self,
        session: &Session,
        catalog: &crate::mcp::Catalog,
    ) -> std::collections::HashSet<String> {
        self.with_policy(session, |ctx| {
            catalog
                .iter()
                .map(|t| t.qualified())
                .filter(|name| self.policy.denies_outright(name, catalog.get(name), ctx))
                .collect()
        })
    }

    /// `f` with policy's context for this session's actor, now: roles, and
    /// the history and pins opsbot knows.
    pub(crate) fn with_policy<R>(
        &self,
        session: &Session,
        f: impl FnOnce(&crate::policy::Context<'_>) -> R,
    ) -> R {
        exchange::in_context(&self.policy, &self.knowledge, session, f)
    }

    /// Decide a plan's steps for this session's actor, now.
    pub fn decide_plan(
        &self,
        session: &Session,
        plan: &Plan,
        catalog: &crate::mcp::Catalog,
    ) -> Vec<(StepId, Decision)> {
        self.with_policy(session, |ctx| self.policy.decide_plan(plan, catalog, ctx))
    }

    pub fn new_session(&self, actor: &str) -> Result<Arc<Session>, StoreError> {
        Session::start(
            Arc::clone(&self.store),
            actor,
            self.planner().name(),
            &self.driver,
        )
    }

    /// Record server trouble in the session as it happens: exits, failed
    /// starts and garbage on stdout.
    /// The watch ends with the session (the app moves to a new session
    /// when a past plan is re-run).
    pub fn watch_servers(&self, session: &Arc<Session>) {
        self.answer_in(session);
        let mut events = self.servers.subscribe();
        let session = Arc::downgrade(session);
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let Some(session) = session.upgrade() else {
                    return;
                };
                let (server, message) = match event {
                    ServerEvent::Garbage { server, line } => (
                        server,
                        format!("wrote a line that is not JSON-RPC to stdout: {line}"),
                    ),
                    ServerEvent::Status {
                        server,
                        status: status @ (ServerStatus::Exited { .. } | ServerStatus::Failed { .. }),
                    } => (server, status.summary()),
                    ServerEvent::Breaker { server, state } => {
                        (server, format!("circuit breaker {}", state.summary()))
                    }
                    ServerEvent::ToolsChanged {
                        server,
                        since,
                        tools,
                    } => (
                        server,
                        format!(
                            "lists these tools differently than when {since}: {}; a call planned against the old definition is not made (plan again)",
                            tools.join(", ")
                        ),
                    ),
                    ServerEvent::Declined { server, what } => {
                        (server, format!("asked for {what}; declined"))
                    }
                    ServerEvent::Status { .. }
                    | ServerEvent::Log { .. }
                    | ServerEvent::ListChanged { .. }
                    | ServerEvent::ResourceUpdated { .. } => continue,
                };
                if let Err(e) = session.record(Event::ServerProblem { server, message }) {
                    tracing::error!("cannot record a server problem: {e}");
                }
            }
        });
    }

    /// An engine whose every call is checked by policy as it is made.
    pub fn engine(&self) -> Engine {
        let cfg = &self.config.config.engine;
        Engine::new(self.servers.clone(), cfg.max_parallel)
            .with_guard(self.guard())
            .with_output_cap(cfg.output_cap_bytes)
    }

    /// Whether the server behind `tool` (`server.tool`) is trusted to steer
    /// the model (`[servers.X] trust`); an unknown server is not.
    pub fn trusts(&self, tool: &str) -> bool {
        let server = tool.split_once('.').map_or(tool, |(s, _)| s);
        self.config
            .config
            .servers
            .get(server)
            .is_some_and(|s| s.trust == crate::config::Trust::Trusted)
    }

    /// Record an approval, bound to the step's exact tool and arguments;
    /// its hash once the step may run (four eyes may want more people).
    pub fn approve(
        &self,
        session: &Session,
        plan: &Plan,
        step: &StepId,
        gated: bool,
        reason: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            match self.approve_checked(session, plan, step, gated, reason)? {
                quorum::Approval::Granted(hash) => Some(hash),
                quorum::Approval::Counted { .. } | quorum::Approval::Refused(_) => None,
            },
        )
    }

    /// Reopen an interrupted session. Returns the session and, when its
    /// plan had not finished, the plan to continue: finished steps stay
    /// finished, running ones are marked interrupted, and nothing is
    /// approved until someone approves it again.
    pub fn resume_session(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(Arc<Session>, Option<Resumed>), StoreError> {
        let id = self.store.find_session(id)?;
        let session = Session::resume(Arc::clone(&self.store), &id, actor, &self.driver)?;
        {
            let mut k = self.knowledge.lock().unwrap_or_else(|p| p.into_inner());
            for r in self.store.events(&id)? {
                if matches!(r.event, Event::Effect { .. }) {
                    k.learn(&r);
                }
            }
        }
        let state = session.state();
        session.record(Event::SessionResumed {
            by: actor.to_string(),
        })?;
        let Some(plan) = state.plan.clone().filter(|_| state.outcome.is_none()) else {
            return Ok((session, None));
        };
        let mut done = HashMap::new();
        for (step, st) in &state.steps {
            match st.status() {
                crate::session::StepStatus::Succeeded => {
                    if let Some(out) = &st.output {
                        done.insert(step.clone(), out.value());
                    }
                }
                crate::session::StepStatus::Running => {
                    session.record(Event::StepInterrupted { step: step.clone() })?;
                }
                _ => {}
            }
        }
        let decisions = state
            .steps
            .iter()
            .filter_map(|(id, st)| st.decision.clone().map(|d| (id.clone(), d)))
            .collect();
        Ok((
            session,
            Some(Resumed {
                plan,
                decisions,
                done,
            }),
        ))
    }

    /// After a failed run: propose undoing what it changed. Records the
    /// undo plan and policy's decisions like any plan, and says in the chat
    /// what would be undone; returns the plan to run once approved.
    pub fn propose_undo(
        &self,
        session: &Session,
        failed: &Plan,
    ) -> Result<Option<Decided>, StoreError> {
        // The failed run's end may still wait for its commit.
        session.settle()?;
        let records = self.store.events(&session.id)?;
        let Some(undo) = compensation_plan(&self.config.config, failed, &records) else {
            return Ok(None);
        };
        let catalog = self.servers.catalog();
        if let Err(errors) = validate(&undo, &catalog) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            session.record(Event::AssistantMessage {
                text: format!(
                    "The run failed after changing things, and the undo cannot be planned: {}. Check the system by hand.",
                    errors.join("; ")
                ),
            })?;
            return Ok(None);
        }
        let lines: Vec<String> = undo
            .steps
            .iter()
            .map(|s| format!("{} ({})", s.description, s.tool))
            .collect();
        session.record(Event::AssistantMessage {
            text: format!(
                "The run failed after changing things. Proposed undo, newest change first:\n- {}\nApprove its steps to run it, or reject it to leave things as they are.",
                lines.join("\n- ")
            ),
        })?;
        session.record(Event::PlanProposed {
            plan: undo.clone(),
            defs: propose::defs_of(&undo, &catalog),
            influenced_by: Vec::new(),
        })?;
        let decisions = self.decide_plan(session, &undo, &catalog);
        for (step, decision) in &decisions {
            session.record(Event::PolicyDecision {
                step: step.clone(),
                decision: decision.clone(),
            })?;
        }
        Ok(Some((undo, decisions)))
    }

    /// Run what is left of a plan from `start`: steps that finished earlier
    /// (a resumed session) do not run again, and events not on record yet
    /// (a proposal `propose_approving` left unrecorded) go into the commit
    /// that starts the first step.
    pub async fn run_from(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &[(StepId, Decision)],
        approvals: &Approvals,
        cancel: tokio_util::sync::CancellationToken,
        start: crate::engine::Start,
    ) -> Result<(Outcome, crate::engine::Ended), StoreError> {
        let decisions: HashMap<StepId, Decision> = decisions.iter().cloned().collect();
        self.engine()
            .run_from(session, plan, &decisions, approvals, cancel, start)
            .await
    }

    /// Run an approved plan.
    pub async fn run(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &[(StepId, Decision)],
        approvals: &Approvals,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<Outcome, StoreError> {
        let start = crate::engine::Start::default();
        self.run_from(session, plan, decisions, approvals, cancel, start)
            .await
            .map(|(outcome, _)| outcome)
    }
}
