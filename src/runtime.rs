//! Wiring: config → servers → planner → policy → session. The headless CLI
//! and the TUI both drive the core through this, so they cannot disagree
//! about what a request means.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{self, ConfigError, LoadedConfig};
use crate::engine::{Approvals, Engine};
use crate::mcp::{ServerEvent, ServerStatus, Servers, SpawnContext};
use crate::paths::Paths;
use crate::plan::{Plan, StepId, validate};
use crate::planner::runbook::RunbookPlanner;
use crate::planner::{Planner, Proposal};
use crate::policy::{Decision, Policy, args_hash};
use crate::session::{Event, Outcome, Session, Store, StoreError};

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
}

/// The LLM planner when a profile is selected (and the kind allows it),
/// else the runbook planner.
fn choose_planner(
    config: &crate::config::Config,
    servers: &Servers,
) -> Result<Box<dyn Planner>, RuntimeError> {
    use crate::config::PlannerKind;
    match (&config.planner.kind, &config.llm.profile) {
        (PlannerKind::Auto, Some(name)) => {
            let profile = config.llm.profiles.get(name).cloned().unwrap_or_default();
            let (key, source) = crate::secrets::api_key(name, profile.api_key_env.as_deref());
            tracing::info!("LLM profile `{name}`: API key from {source}");
            Ok(Box::new(crate::planner::llm::LlmPlanner::new(
                name,
                profile,
                key,
                servers.clone(),
                config,
            )?))
        }
        _ => Ok(Box::new(RunbookPlanner::new(config))),
    }
}

pub struct Runtime {
    pub paths: Paths,
    pub config: LoadedConfig,
    pub servers: Servers,
    pub store: Arc<Store>,
    pub planner: Box<dyn Planner>,
    pub policy: Policy,
}

/// What a resumed session still has to do.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub plan: Plan,
    pub decisions: Vec<(StepId, Decision)>,
    pub done: HashMap<StepId, serde_json::Value>,
}

/// The planner's answer, validated and governed.
#[derive(Debug, Clone)]
pub enum Planned {
    Ready {
        plan: Plan,
        decisions: Vec<(StepId, Decision)>,
    },
    Clarify(String),
    Invalid(Vec<String>),
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
        let store = Arc::new(Store::open(&paths.database())?);
        let ctx = SpawnContext {
            exe,
            data_dir: paths.data_dir.clone(),
            config_dir: paths.config_dir.clone(),
        };
        let _ = std::fs::create_dir_all(paths.sandbox_state());
        let servers = Servers::start(&config.config, &ctx);
        let planner = choose_planner(&config.config, &servers)?;
        let policy = Policy::new(config.config.policy.clone());
        Ok(Self {
            paths,
            config,
            servers,
            store,
            planner,
            policy,
        })
    }

    pub fn new_session(&self, actor: &str) -> Result<Arc<Session>, StoreError> {
        Session::start(Arc::clone(&self.store), actor, self.planner.name())
    }

    /// Record server trouble in the session as it happens: exits, failed
    /// starts and garbage on stdout.
    pub fn watch_servers(&self, session: &Arc<Session>) {
        let mut events = self.servers.subscribe();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let (server, message) = match event {
                    ServerEvent::Garbage { server, line } => (
                        server,
                        format!("wrote a line that is not JSON-RPC to stdout: {line}"),
                    ),
                    ServerEvent::Status {
                        server,
                        status: status @ (ServerStatus::Exited { .. } | ServerStatus::Failed { .. }),
                    } => (server, status.summary()),
                    ServerEvent::Status { .. } => continue,
                };
                if let Err(e) = session.record(Event::ServerProblem { server, message }) {
                    tracing::error!("cannot record a server problem: {e}");
                }
            }
        });
    }

    pub fn engine(&self) -> Engine {
        Engine::new(self.servers.clone(), 8)
    }

    /// Record the request, plan it, validate the plan against the live
    /// catalog, and record policy's decision for every step.
    pub async fn plan_request(
        &self,
        session: &Session,
        request: &str,
    ) -> Result<Planned, StoreError> {
        session.record(Event::UserMessage {
            text: request.to_string(),
        })?;
        if self.planner.needs_catalog() {
            self.servers.wait_settled().await;
        }
        let proposal = match self.planner.plan(request).await {
            Ok(p) => p,
            Err(e) => {
                let text = format!("{e}");
                session.record(Event::AssistantMessage { text: text.clone() })?;
                return Ok(Planned::Invalid(vec![text]));
            }
        };
        let plan = match proposal {
            Proposal::Clarify { question } => {
                session.record(Event::ClarificationAsked {
                    question: question.clone(),
                })?;
                session.record(Event::RunFinished {
                    outcome: Outcome::NeedsClarification,
                    summary: question.clone(),
                })?;
                return Ok(Planned::Clarify(question));
            }
            Proposal::Plan(plan) => plan,
        };
        let used: std::collections::BTreeSet<&str> = plan
            .steps
            .iter()
            .filter_map(|s| s.tool.split_once('.').map(|(server, _)| server))
            .collect();
        self.servers.wait_for(used).await;
        let catalog = self.servers.catalog();
        if let Err(errors) = validate(&plan, &catalog) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            session.record(Event::PlanInvalid {
                errors: errors.clone(),
            })?;
            session.record(Event::AssistantMessage {
                text: format!(
                    "The plan is not valid, so nothing will run:\n- {}",
                    errors.join("\n- ")
                ),
            })?;
            session.record(Event::RunFinished {
                outcome: Outcome::InvalidPlan,
                summary: errors.join("; "),
            })?;
            return Ok(Planned::Invalid(errors));
        }
        session.record(Event::PlanProposed { plan: plan.clone() })?;
        let decisions = self.policy.decide_plan(&plan, &catalog);
        for (step, decision) in &decisions {
            session.record(Event::PolicyDecision {
                step: step.clone(),
                decision: decision.clone(),
            })?;
        }
        let gated = decisions.iter().filter(|(_, d)| d.gate().is_some()).count();
        let denied = decisions.iter().filter(|(_, d)| d.is_denied()).count();
        let mut text = format!("Plan: {} with {} steps.", plan.title, plan.steps.len());
        if gated > 0 {
            text.push_str(&format!(" {gated} gated."));
        }
        if denied > 0 {
            text.push_str(&format!(" {denied} denied."));
        }
        session.record(Event::AssistantMessage { text })?;
        Ok(Planned::Ready { plan, decisions })
    }

    /// Record an approval, bound to the step's exact tool and arguments.
    pub fn approve(
        &self,
        session: &Session,
        plan: &Plan,
        step: &StepId,
        gated: bool,
    ) -> Result<Option<String>, StoreError> {
        let Some(s) = plan.step(step) else {
            return Ok(None);
        };
        let hash = args_hash(&s.tool, &s.args);
        session.record(Event::Approved {
            step: step.clone(),
            by: session.actor.clone(),
            args_hash: hash.clone(),
            gated,
        })?;
        Ok(Some(hash))
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
        let session = Session::resume(Arc::clone(&self.store), &id, actor)?;
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

    /// Run an approved plan.
    pub async fn run(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &[(StepId, Decision)],
        approvals: &Approvals,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<Outcome, StoreError> {
        let decisions: HashMap<StepId, Decision> = decisions.iter().cloned().collect();
        self.engine()
            .run(session, plan, &decisions, approvals, cancel)
            .await
    }
}
