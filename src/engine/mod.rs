//! Running a plan: steps whose dependencies succeeded and which are approved
//! run concurrently (bounded); outputs feed later steps' arguments; a failure
//! stops everything downstream of it; every transition is recorded before
//! it takes effect.

mod call;
mod desk;
mod outcome;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use call::{Finished, StepCall};
pub use desk::{ApprovalDesk, Verdict};
pub use retry::RetryPolicy;

use crate::mcp::{CallError, Catalog, Servers};
use crate::plan::validate::check_args;
use crate::plan::{Plan, Step, StepId, resolve};
use crate::policy::{Decision, args_hash};
use crate::session::{Event, Outcome, Session, StoreError};

/// Where a run's approvals come from.
pub enum Approvals {
    /// Decided before the run (headless): a step without an approval ends
    /// the run for its branch as "awaiting approval".
    Fixed(HashMap<StepId, String>),
    /// Decided while the run goes on (the TUI): the engine waits.
    Live(Arc<ApprovalDesk>),
}

impl Approvals {
    fn verdict(&self, step: &StepId) -> Verdict {
        match self {
            Approvals::Fixed(map) => map
                .get(step)
                .map_or(Verdict::Pending, |h| Verdict::Approved(h.clone())),
            Approvals::Live(desk) => desk.verdict(step),
        }
    }

    fn desk(&self) -> Option<&Arc<ApprovalDesk>> {
        match self {
            Approvals::Live(desk) => Some(desk),
            Approvals::Fixed(_) => None,
        }
    }

    /// The arguments a step will run with: edited ones win.
    pub fn args_of(&self, step: &Step) -> Map<String, Value> {
        self.desk()
            .and_then(|d| d.edited_args(&step.id))
            .unwrap_or_else(|| step.args.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    /// Live runs: ready, waiting for someone at the desk.
    AtDesk,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Its call never left opsbot (server down, breaker open).
    NotStarted,
    /// Final: nobody will approve it in this run.
    AwaitingApproval,
    Denied,
}

/// Stored outputs are capped at this many bytes by default (1 MiB).
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;

/// Policy's say at the moment of a call, against what has actually
/// happened: the plan's decisions were made before anything ran.
pub trait CallGuard: Send + Sync {
    /// Put arguments filled in from earlier outputs in canonical terms,
    /// as the plan's own were before policy decided it.
    fn canonical(&self, _args: &mut Map<String, Value>) {}
    /// Right before a call, with the arguments it will be sent. An error is
    /// the decision that stops it.
    fn admit(
        &self,
        session: &Session,
        step: &Step,
        args: &Map<String, Value>,
    ) -> Result<(), Decision>;
    /// After a call: what it left behind, as events the engine records
    /// with the step's outcome. The guard takes them into account at once,
    /// since the next call may depend on them.
    fn finished(
        &self,
        session: &Session,
        step: &Step,
        args: &Map<String, Value>,
        result: &Value,
        succeeded: bool,
    ) -> Vec<Event>;
}

/// One run's moving parts, so the steps of the loop can share them.
struct Run<'a> {
    session: &'a Arc<Session>,
    plan: &'a Plan,
    decisions: &'a HashMap<StepId, Decision>,
    approvals: &'a Approvals,
    catalog: Arc<Catalog>,
    /// The definitions the plan was decided against (from its proposal).
    planned_defs: std::collections::BTreeMap<String, String>,
    state: HashMap<StepId, State>,
    outputs: HashMap<StepId, Value>,
    /// Steps in flight, polled by the run itself: a finished call wakes the
    /// run directly, with no task hop in between.
    running: FuturesUnordered<BoxFuture<'static, Finished>>,
    /// Events decided but not yet durable. They are written together, in
    /// one transaction, before the run acts on any of them: before a call
    /// starts, and before the run waits.
    pending: Vec<Event>,
    cancel: CancellationToken,
    /// The arguments each started step was sent.
    sent: HashMap<StepId, Map<String, Value>>,
    /// Running steps per server, for per-server limits.
    per_server: HashMap<String, usize>,
    /// What failed steps answered, for conditions on them.
    failed_outputs: HashMap<StepId, Value>,
}

impl Run<'_> {
    /// Make the pending events durable before the run acts on them. Calls
    /// about to be made are journaled, their commit behind them
    /// (`Session::record_ahead`); a wait for a person is committed at
    /// once, for other processes (an approver's app) to see.
    fn flush(&mut self) -> Result<(), StoreError> {
        let waits = self
            .pending
            .iter()
            .any(|e| matches!(e, Event::AwaitingApproval { .. }));
        if waits {
            self.commit()
        } else {
            self.session.record_ahead(std::mem::take(&mut self.pending))
        }
    }

    /// Commit the pending events, with any deferred before them.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.session.record_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }
}

/// A run's last events, deferred to the session's next commit, as they
/// will be stored.
#[derive(Debug, Default)]
pub struct Ended {
    pub events: Vec<Event>,
    /// When they start a new batch of deferred events: the caller
    /// arranges a `Session::flush_deferred` of it soon.
    pub flush: Option<crate::session::Ticket>,
}

/// Where a run starts.
#[derive(Debug, Default)]
pub struct Start {
    /// Steps of a resumed session that finished before the interruption,
    /// with their outputs: they do not run again.
    pub done: HashMap<StepId, Value>,
    /// Events not on record yet (a proposal), recorded in the commit that
    /// starts the first step, ahead of it.
    pub unrecorded: Vec<Event>,
    /// Defer the run's last events (its steps' ends and its finish) to the
    /// session's next commit (see `Session::defer`) and return them as
    /// they will be stored: a served call answers from them without
    /// waiting on a second commit.
    pub defer_end: bool,
}

pub struct Engine {
    servers: Servers,
    max_parallel: usize,
    guard: Option<Arc<dyn CallGuard>>,
    output_cap: usize,
}

impl Engine {
    pub fn new(servers: Servers, max_parallel: usize) -> Self {
        Self {
            servers,
            max_parallel: max_parallel.max(1),
            guard: None,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// Store at most this many bytes of each output (the rest is hashed).
    pub fn with_output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes.max(1024);
        self
    }

    /// Check every call with `guard` just before it is made.
    pub fn with_guard(mut self, guard: Arc<dyn CallGuard>) -> Self {
        self.guard = Some(guard);
        self
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
        self.run_from(
            session,
            plan,
            decisions,
            approvals,
            cancel,
            Start::default(),
        )
        .await
        .map(|(outcome, _)| outcome)
    }

    /// As `run`, from `start`: steps that finished before, events not on
    /// record yet, and where the run's end goes. The end is returned when
    /// it was deferred; else it is on record (journaled, its commit shortly
    /// behind, as a call's start) and `Ended` is empty.
    pub async fn run_from(
        &self,
        session: &Arc<Session>,
        plan: &Plan,
        decisions: &HashMap<StepId, Decision>,
        approvals: &Approvals,
        cancel: CancellationToken,
        start: Start,
    ) -> Result<(Outcome, Ended), StoreError> {
        let Start {
            done,
            unrecorded: before,
            defer_end,
        } = start;
        // The proposal, when it is not on record yet, defines the plan.
        let planned_defs = before
            .iter()
            .find_map(|e| match e {
                Event::PlanProposed { defs, .. } => Some(defs.clone()),
                _ => None,
            })
            .unwrap_or_else(|| session.with_state(|s| s.plan_defs.clone()));
        // Servers not started yet (lazy) start now, side by side, while
        // the steps that do not need them go ahead.
        let used: std::collections::BTreeSet<&str> = plan
            .steps
            .iter()
            .filter(|s| !done.contains_key(&s.id))
            .filter_map(|s| s.tool.split_once('.').map(|(server, _)| server))
            .collect();
        self.servers.ensure(used);
        let mut run = Run {
            session,
            plan,
            decisions,
            approvals,
            catalog: self.servers.catalog(),
            planned_defs,
            state: plan
                .steps
                .iter()
                .map(|s| {
                    let state = if done.contains_key(&s.id) {
                        State::Succeeded
                    } else {
                        State::Waiting
                    };
                    (s.id.clone(), state)
                })
                .collect(),
            outputs: done,
            running: FuturesUnordered::new(),
            pending: before,
            cancel,
            sent: HashMap::new(),
            per_server: HashMap::new(),
            failed_outputs: HashMap::new(),
        };
        let mut cancelled = false;
        loop {
            // Cancelled before this turn (or before the run began): nothing
            // more may start.
            if !cancelled && run.cancel.is_cancelled() {
                cancelled = true;
                run.pending.push(Event::Note {
                    text: "run cancelled: no new steps start; running steps are being cancelled"
                        .into(),
                });
            }
            // Subscribe before looking, so a decision made meanwhile wakes us.
            let desk_changed = approvals.desk().map(|d| d.changed());
            if !cancelled {
                self.schedule(&mut run)?;
            }
            let at_desk = run.state.values().any(|s| *s == State::AtDesk);
            // The run ends here: what is pending is recorded with its end,
            // in one commit (nothing more is called).
            if run.running.is_empty() && (cancelled || !at_desk) {
                break;
            }
            // Before anything started here is called, it is on record.
            run.flush()?;
            let desk_wait = async {
                match desk_changed {
                    Some(n) => n.await,
                    None => std::future::pending().await,
                }
            };
            let finished = tokio::select! {
                done = run.running.next(), if !run.running.is_empty() => done,
                () = desk_wait => continue,
                () = run.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    session.record(Event::Note {
                        text: "run cancelled: no new steps start; running steps are being cancelled".into(),
                    })?;
                    continue;
                }
            };
            match finished {
                Some(done) => self.finish(&mut run, done)?,
                None => break,
            }
        }
        self.conclude(run, cancelled, defer_end)
    }

    fn finish(&self, run: &mut Run<'_>, done: Finished) -> Result<(), StoreError> {
        let Finished {
            id,
            result,
            took,
            note,
            reached,
        } = done;
        if let Some(desk) = run.approvals.desk() {
            desk.finished(&id);
        }
        if let Some(server) = run
            .plan
            .step(&id)
            .and_then(|s| s.tool.split_once('.'))
            .map(|(s, _)| s)
            && let Some(n) = run.per_server.get_mut(server)
        {
            *n = n.saturating_sub(1);
        }
        let step_id = id.clone();
        let duration_ms = took.as_millis() as u64;
        let result = result.map(|o| o.capped(self.output_cap));
        let with_note = |e: String| match &note {
            Some(n) => format!("{e} ({n})"),
            None => e,
        };
        let event = match result {
            Ok(output) if !output.is_error => {
                run.outputs.insert(id.clone(), output.value());
                run.state.insert(id.clone(), State::Succeeded);
                Event::StepSucceeded {
                    step: id,
                    output,
                    duration_ms,
                }
            }
            Ok(output) => {
                run.state.insert(id.clone(), State::Failed);
                run.failed_outputs.insert(id.clone(), output.value());
                let error = if output.text.is_empty() {
                    "the tool reported an error".to_string()
                } else {
                    output.text.clone()
                };
                Event::StepFailed {
                    step: id,
                    error: with_note(error),
                    output: Some(output),
                    duration_ms,
                }
            }
            Err(e) if e.never_sent() && !reached => {
                run.state.insert(id.clone(), State::NotStarted);
                run.pending.push(Event::StepNotStarted {
                    step: id,
                    reason: with_note(e.to_string()),
                });
                // Nothing happened, so nothing is left behind: no effect.
                return Ok(());
            }
            Err(e) => {
                run.state.insert(id.clone(), State::Failed);
                Event::StepFailed {
                    step: id,
                    error: with_note(e.to_string()),
                    output: None,
                    duration_ms,
                }
            }
        };
        let succeeded = matches!(event, Event::StepSucceeded { .. });
        run.pending.push(event);
        if let (Some(guard), Some(step), Some(args)) =
            (&self.guard, run.plan.step(&step_id), run.sent.get(&step_id))
        {
            let result = if succeeded {
                run.outputs.get(&step_id)
            } else {
                run.failed_outputs.get(&step_id)
            };
            let effects = guard.finished(
                run.session,
                step,
                args,
                result.unwrap_or(&Value::Null),
                succeeded,
            );
            run.pending.extend(effects);
        }
        Ok(())
    }

    fn conclude(
        &self,
        mut run: Run<'_>,
        cancelled: bool,
        defer_end: bool,
    ) -> Result<(Outcome, Ended), StoreError> {
        for step in &run.plan.steps {
            if matches!(run.state[&step.id], State::Waiting | State::AtDesk) {
                let reason = if cancelled {
                    "the run was cancelled"
                } else {
                    "not reached"
                };
                run.state.insert(step.id.clone(), State::Skipped);
                run.pending.push(Event::StepSkipped {
                    step: step.id.clone(),
                    reason: reason.into(),
                });
            }
        }
        let rejected = run.approvals.desk().and_then(|d| d.rejected()).is_some();
        let (outcome, summary) = outcome::of(run.plan, &run.state, cancelled, rejected);
        run.pending.push(Event::RunFinished { outcome, summary });
        if defer_end {
            let (events, flush) = run.session.defer(&run.pending)?;
            return Ok((outcome, Ended { events, flush }));
        }
        // Durable as a call's start is, the commit behind: over a chain of
        // twenty calls, committing the end here cost each call ~10 µs.
        run.flush()?;
        Ok((outcome, Ended::default()))
    }

    /// Settle what can be settled and start what is ready, until nothing
    /// changes (a skip can make further steps skippable).
    fn schedule(&self, run: &mut Run<'_>) -> Result<(), StoreError> {
        let mut changed = true;
        while changed {
            changed = false;
            for step in &run.plan.steps {
                if !matches!(run.state[&step.id], State::Waiting | State::AtDesk) {
                    continue;
                }
                if let Some(d @ Decision::Deny { .. }) = run.decisions.get(&step.id) {
                    run.state.insert(step.id.clone(), State::Denied);
                    run.pending.push(Event::StepSkipped {
                        step: step.id.clone(),
                        reason: format!("denied by {}: {}", d.rule(), d.reason()),
                    });
                    changed = true;
                    continue;
                }
                let tolerated = |d: &StepId| run.plan.step(d).is_some_and(|s| s.continue_on_error);
                let blocker = step.depends_on.iter().find_map(|d| match run.state.get(d) {
                    Some(State::Failed | State::NotStarted) if tolerated(d) => None,
                    Some(State::Failed) => Some(format!("`{d}` failed")),
                    Some(State::NotStarted) => Some(format!("`{d}` was not started")),
                    Some(State::Skipped) => Some(format!("`{d}` was skipped")),
                    Some(State::Denied) => Some(format!("`{d}` was denied")),
                    Some(State::AwaitingApproval) => Some(format!("`{d}` is awaiting approval")),
                    _ => None,
                });
                if let Some(reason) = blocker {
                    run.state.insert(step.id.clone(), State::Skipped);
                    run.pending.push(Event::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    changed = true;
                    continue;
                }
                let ready = step.depends_on.iter().all(|d| match run.state.get(d) {
                    Some(State::Succeeded) => true,
                    Some(State::Failed | State::NotStarted) => tolerated(d),
                    _ => false,
                });
                if !ready {
                    continue;
                }
                if let Some(cond) = &step.when
                    && !self.condition_holds(run, cond)
                {
                    run.state.insert(step.id.clone(), State::Skipped);
                    run.pending.push(Event::StepSkipped {
                        step: step.id.clone(),
                        reason: format!("its condition `{cond}` does not hold"),
                    });
                    changed = true;
                    continue;
                }
                if run.running.len() >= self.max_parallel || self.server_full(run, step) {
                    continue;
                }
                changed |= self.decide_ready(run, step)?;
            }
        }
        Ok(())
    }

    /// A ready step: start it, skip it, or wait for (or give up on) approval.
    /// Returns whether the others may need another look.
    fn decide_ready(&self, run: &mut Run<'_>, step: &Step) -> Result<bool, StoreError> {
        let args = run.approvals.args_of(step);
        let gate = run.decisions.get(&step.id).and_then(Decision::gate);
        match run.approvals.verdict(&step.id) {
            Verdict::Approved(hash) if hash == args_hash(&step.tool, &args) => {
                self.start(run, step, args)?;
                // A step that started settles nothing for the others until
                // it ends; one failed or denied on the way may.
                Ok(run.state.get(&step.id) != Some(&State::Running))
            }
            Verdict::Skipped(reason) => {
                run.state.insert(step.id.clone(), State::Skipped);
                run.pending.push(Event::StepSkipped {
                    step: step.id.clone(),
                    reason,
                });
                Ok(true)
            }
            _ if run.approvals.desk().is_some() => {
                if run.state[&step.id] != State::AtDesk {
                    run.state.insert(step.id.clone(), State::AtDesk);
                    run.pending.push(Event::AwaitingApproval {
                        step: step.id.clone(),
                        gated: gate.is_some(),
                    });
                }
                Ok(false)
            }
            _ => {
                run.state.insert(step.id.clone(), State::AwaitingApproval);
                let reason = match gate {
                    Some(gate) => format!(
                        "awaiting approval: gated ({}); confirm by typing `{}`",
                        run.decisions
                            .get(&step.id)
                            .map(Decision::reason)
                            .unwrap_or_default(),
                        gate.confirm
                    ),
                    None => "awaiting approval".to_string(),
                };
                run.pending.push(Event::StepSkipped {
                    step: step.id.clone(),
                    reason,
                });
                Ok(true)
            }
        }
    }

    /// Whether the step's server is at its `max_concurrency`.
    fn server_full(&self, run: &Run<'_>, step: &Step) -> bool {
        let server = step
            .tool
            .split_once('.')
            .map_or(step.tool.as_str(), |(s, _)| s);
        let limit = self
            .servers
            .config_of(server)
            .and_then(|c| c.max_concurrency);
        limit.is_some_and(|l| run.per_server.get(server).copied().unwrap_or(0) >= l.max(1))
    }

    /// A step's `when`, over earlier steps: each is its output with a
    /// `status` (succeeded, failed, skipped, ...) added. A condition that
    /// cannot be read does not hold.
    fn condition_holds(&self, run: &Run<'_>, cond: &str) -> bool {
        let Ok(expr) = crate::policy::cond::parse(cond) else {
            return false;
        };
        let mut scope = Map::new();
        for s in &run.plan.steps {
            let mut v = match run.outputs.get(&s.id) {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            if let Some(state) = run.failed_outputs.get(&s.id)
                && let Value::Object(o) = state
            {
                for (k, val) in o {
                    v.entry(k.clone()).or_insert(val.clone());
                }
            }
            let status = match run.state[&s.id] {
                State::Succeeded => "succeeded",
                State::Failed => "failed",
                State::NotStarted => "not_started",
                State::Skipped => "skipped",
                State::Denied => "denied",
                State::Running => "running",
                State::AwaitingApproval => "awaiting_approval",
                State::Waiting | State::AtDesk => "pending",
            };
            v.insert("status".into(), Value::String(status.into()));
            scope.insert(s.id.as_str().to_string(), Value::Object(v));
        }
        expr.eval(&crate::policy::cond::Scope {
            args: &scope,
            result: None,
        })
    }

    fn start(
        &self,
        run: &mut Run<'_>,
        step: &Step,
        template: Map<String, Value>,
    ) -> Result<(), StoreError> {
        let id = step.id.clone();
        let mut args = match resolve(&template, &run.outputs) {
            Ok(args) => args,
            Err(e) => return fail_early(run, id, format!("cannot fill arguments: {e}")),
        };
        if let Some(guard) = &self.guard {
            guard.canonical(&mut args);
        }
        if let Some(tool) = run.catalog.get(&step.tool) {
            let problems = check_args(&tool.input_schema, &args, false);
            if !problems.is_empty() {
                let error = format!(
                    "arguments do not match {}'s schema: {}",
                    step.tool,
                    problems.join("; ")
                );
                return fail_early(run, id, error);
            }
        }
        if let Some(guard) = &self.guard
            && let Err(decision) = guard.admit(run.session, step, &args)
        {
            let reason = format!(
                "denied when about to run, by {}: {}",
                decision.rule(),
                decision.reason()
            );
            run.pending.push(Event::PolicyRecheck {
                step: id.clone(),
                decision,
            });
            run.state.insert(id.clone(), State::Denied);
            run.pending.push(Event::StepSkipped { step: id, reason });
            return Ok(());
        }
        run.sent.insert(id.clone(), args.clone());
        let server = step
            .tool
            .split_once('.')
            .map_or(step.tool.as_str(), |(s, _)| s);
        *run.per_server.entry(server.to_string()).or_default() += 1;
        run.state.insert(id.clone(), State::Running);
        run.pending.push(Event::StepStarted {
            step: id.clone(),
            tool: step.tool.clone(),
            args: args.clone(),
        });
        let cancel = run.cancel.child_token();
        if let Some(desk) = run.approvals.desk() {
            desk.started(id.clone(), cancel.clone());
        }
        let retry = RetryPolicy::for_step(&self.servers, step);
        // Not polled until the run next waits, which is after the events
        // above are durable: nothing is called before it is on record.
        let call = StepCall {
            servers: self.servers.clone(),
            session: Arc::clone(run.session),
            id: id.clone(),
            tool: step.tool.clone(),
            args,
            timeout: step.timeout_ms.map(Duration::from_millis),
            cancel,
            retry,
            expect_def: run
                .planned_defs
                .get(&step.tool)
                .or_else(|| run.catalog.get(&step.tool).map(|t| &t.def_hash))
                .cloned(),
        };
        run.running.push(
            std::panic::AssertUnwindSafe(call.run())
                .catch_unwind()
                .map(move |done| {
                    done.unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        tracing::error!("step {id} panicked: {what}");
                        Finished {
                            id,
                            result: Err(CallError::Internal(what)),
                            took: Duration::ZERO,
                            note: None,
                            reached: true,
                        }
                    })
                })
                .boxed(),
        );
        Ok(())
    }
}

fn fail_early(run: &mut Run<'_>, id: StepId, error: String) -> Result<(), StoreError> {
    run.state.insert(id.clone(), State::Failed);
    run.pending.push(Event::StepFailed {
        step: id,
        error,
        output: None,
        duration_ms: 0,
    });
    Ok(())
}
