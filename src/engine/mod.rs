//! Running a plan: steps whose dependencies succeeded and which are approved
//! run concurrently (bounded); outputs feed later steps' arguments; a failure
//! stops everything downstream of it; every transition is recorded before
//! it takes effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::mcp::{CallError, CallOptions, Catalog, Servers, ToolOutput};
use crate::plan::validate::check_args;
use crate::plan::{Plan, Step, StepId, resolve};
use crate::policy::{Decision, args_hash};
use crate::session::{Event, Outcome, Session, StoreError};

/// Approvals given for this run: step → the argument hash approved.
pub type Approvals = HashMap<StepId, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
    AwaitingApproval,
    Denied,
}

pub struct Engine {
    servers: Servers,
    max_parallel: usize,
}

type Finished = (StepId, Result<ToolOutput, CallError>, Duration);

impl Engine {
    pub fn new(servers: Servers, max_parallel: usize) -> Self {
        Self {
            servers,
            max_parallel: max_parallel.max(1),
        }
    }

    /// Run `plan` to the end or until cancelled; returns the outcome, which
    /// is also recorded.
    pub async fn run(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &HashMap<StepId, Decision>,
        approvals: &Approvals,
        cancel: CancellationToken,
    ) -> Result<Outcome, StoreError> {
        let catalog = self.servers.catalog();
        let mut state: HashMap<StepId, State> = plan
            .steps
            .iter()
            .map(|s| (s.id.clone(), State::Waiting))
            .collect();
        let mut outputs: HashMap<StepId, Value> = HashMap::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut cancelled = false;

        loop {
            if !cancelled {
                self.schedule(
                    session,
                    plan,
                    decisions,
                    approvals,
                    &catalog,
                    &mut state,
                    &outputs,
                    &mut running,
                    &cancel,
                )?;
            }
            if running.is_empty() {
                break;
            }
            let finished = tokio::select! {
                joined = running.join_next() => joined,
                () = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    session.record(Event::Note { text: "run cancelled: no new steps start; running steps are being cancelled".into() })?;
                    continue;
                }
            };
            let Some(joined) = finished else { break };
            let (id, result, took) = match joined {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!("step task panicked: {e}");
                    continue;
                }
            };
            let duration_ms = took.as_millis() as u64;
            match result {
                Ok(output) if !output.is_error => {
                    outputs.insert(id.clone(), output.value());
                    state.insert(id.clone(), State::Succeeded);
                    session.record(Event::StepSucceeded {
                        step: id,
                        output,
                        duration_ms,
                    })?;
                }
                Ok(output) => {
                    state.insert(id.clone(), State::Failed);
                    let error = if output.text.is_empty() {
                        "the tool reported an error".to_string()
                    } else {
                        output.text.clone()
                    };
                    session.record(Event::StepFailed {
                        step: id,
                        error,
                        output: Some(output),
                        duration_ms,
                    })?;
                }
                Err(e) => {
                    state.insert(id.clone(), State::Failed);
                    session.record(Event::StepFailed {
                        step: id,
                        error: e.to_string(),
                        output: None,
                        duration_ms,
                    })?;
                }
            }
        }

        for step in &plan.steps {
            if state[&step.id] == State::Waiting {
                let reason = if cancelled {
                    "the run was cancelled"
                } else {
                    "not reached"
                };
                state.insert(step.id.clone(), State::Skipped);
                session.record(Event::StepSkipped {
                    step: step.id.clone(),
                    reason: reason.into(),
                })?;
            }
        }
        let count = |s: State| state.values().filter(|v| **v == s).count();
        let outcome = if cancelled {
            Outcome::Cancelled
        } else if count(State::Failed) > 0 {
            Outcome::Failed
        } else if count(State::Denied) > 0 {
            Outcome::Denied
        } else if count(State::AwaitingApproval) > 0 {
            Outcome::AwaitingApproval
        } else {
            Outcome::Succeeded
        };
        let mut summary = format!(
            "{} of {} steps succeeded",
            count(State::Succeeded),
            plan.steps.len()
        );
        for (label, s) in [
            ("failed", State::Failed),
            ("denied", State::Denied),
            ("awaiting approval", State::AwaitingApproval),
            ("skipped", State::Skipped),
        ] {
            let ids: Vec<&str> = plan
                .steps
                .iter()
                .filter(|st| state[&st.id] == s)
                .map(|st| st.id.as_str())
                .collect();
            if !ids.is_empty() {
                summary.push_str(&format!("; {label}: {}", ids.join(", ")));
            }
        }
        session.record(Event::RunFinished { outcome, summary })?;
        Ok(outcome)
    }

    /// Settle what can be settled and start what is ready.
    #[allow(clippy::too_many_arguments)]
    fn schedule(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &HashMap<StepId, Decision>,
        approvals: &Approvals,
        catalog: &Catalog,
        state: &mut HashMap<StepId, State>,
        outputs: &HashMap<StepId, Value>,
        running: &mut JoinSet<Finished>,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        // Repeat until stable: a skip can make further steps skippable.
        let mut changed = true;
        while changed {
            changed = false;
            for step in &plan.steps {
                if state[&step.id] != State::Waiting {
                    continue;
                }
                if let Some(d @ Decision::Deny { .. }) = decisions.get(&step.id) {
                    state.insert(step.id.clone(), State::Denied);
                    session.record(Event::StepSkipped {
                        step: step.id.clone(),
                        reason: format!("denied by {}: {}", d.rule(), d.reason()),
                    })?;
                    changed = true;
                    continue;
                }
                let blocker = step.depends_on.iter().find_map(|d| match state.get(d) {
                    Some(State::Failed) => Some(format!("`{d}` failed")),
                    Some(State::Skipped) => Some(format!("`{d}` was skipped")),
                    Some(State::Denied) => Some(format!("`{d}` was denied")),
                    Some(State::AwaitingApproval) => Some(format!("`{d}` is awaiting approval")),
                    _ => None,
                });
                if let Some(reason) = blocker {
                    state.insert(step.id.clone(), State::Skipped);
                    session.record(Event::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    })?;
                    changed = true;
                    continue;
                }
                let ready = step
                    .depends_on
                    .iter()
                    .all(|d| state.get(d) == Some(&State::Succeeded));
                if !ready || running.len() >= self.max_parallel {
                    continue;
                }
                if approvals.get(&step.id) != Some(&args_hash(&step.tool, &step.args)) {
                    state.insert(step.id.clone(), State::AwaitingApproval);
                    let why = match decisions.get(&step.id).and_then(Decision::gate) {
                        Some(gate) => format!(
                            "awaiting approval: gated ({}); confirm by typing `{}`",
                            decisions
                                .get(&step.id)
                                .map(Decision::reason)
                                .unwrap_or_default(),
                            gate.confirm
                        ),
                        None => "awaiting approval".to_string(),
                    };
                    session.record(Event::StepSkipped {
                        step: step.id.clone(),
                        reason: why,
                    })?;
                    changed = true;
                    continue;
                }
                self.start(session, step, catalog, outputs, running, cancel, state)?;
                changed = true;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        session: &Arc<Session>,
        step: &Step,
        catalog: &Catalog,
        outputs: &HashMap<StepId, Value>,
        running: &mut JoinSet<Finished>,
        cancel: &CancellationToken,
        state: &mut HashMap<StepId, State>,
    ) -> Result<(), StoreError> {
        let id = step.id.clone();
        let args = match resolve(&step.args, outputs) {
            Ok(args) => args,
            Err(e) => {
                return self.fail_early(session, state, id, format!("cannot fill arguments: {e}"));
            }
        };
        if let Some(tool) = catalog.get(&step.tool) {
            let problems = check_args(&tool.input_schema, &args, false);
            if !problems.is_empty() {
                return self.fail_early(
                    session,
                    state,
                    id,
                    format!(
                        "arguments do not match {}'s schema: {}",
                        step.tool,
                        problems.join("; ")
                    ),
                );
            }
        }
        state.insert(id.clone(), State::Running);
        session.record(Event::StepStarted {
            step: id.clone(),
            tool: step.tool.clone(),
            args: args.clone(),
        })?;

        let servers = self.servers.clone();
        let session = Arc::clone(session);
        let tool = step.tool.clone();
        let timeout = step.timeout_ms.map(Duration::from_millis);
        let cancel = cancel.child_token();
        running.spawn(async move {
            let began = Instant::now();
            let result =
                call_with_progress(&servers, &session, &id, &tool, args, timeout, cancel).await;
            (id, result, began.elapsed())
        });
        Ok(())
    }

    fn fail_early(
        &self,
        session: &Arc<Session>,
        state: &mut HashMap<StepId, State>,
        id: StepId,
        error: String,
    ) -> Result<(), StoreError> {
        state.insert(id.clone(), State::Failed);
        session.record(Event::StepFailed {
            step: id,
            error,
            output: None,
            duration_ms: 0,
        })?;
        Ok(())
    }
}

/// Call a tool, recording its progress reports as they arrive.
async fn call_with_progress(
    servers: &Servers,
    session: &Arc<Session>,
    id: &StepId,
    tool: &str,
    args: Map<String, Value>,
    timeout: Option<Duration>,
    cancel: CancellationToken,
) -> Result<ToolOutput, CallError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let call = servers.call(
        tool,
        args,
        CallOptions {
            timeout,
            progress: Some(tx),
            cancel: Some(cancel),
        },
    );
    tokio::pin!(call);
    loop {
        tokio::select! {
            result = &mut call => {
                while let Ok(p) = rx.try_recv() {
                    let _ = session.record(Event::StepProgress { step: id.clone(), progress: p });
                }
                return result;
            }
            Some(p) = rx.recv() => {
                if let Err(e) = session.record(Event::StepProgress { step: id.clone(), progress: p }) {
                    tracing::error!("cannot record progress: {e}");
                }
            }
        }
    }
}
