//! The interactive driver: what a front end (the TUI) asks for, turned into
//! session actions. It holds the rules — gates need the typed target, an
//! approval is bound to the arguments it saw, approval modes — so views only
//! send intents and render the event log.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::engine::{ApprovalDesk, Approvals};
use crate::plan::{Plan, StepId, check_args};
use crate::policy::{Decision, args_hash};
use crate::runtime::{Planned, Runtime};
use crate::session::{Event, Session, StoreError};

/// When steps run without someone approving each one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// Every step is approved by hand.
    #[default]
    Step,
    /// Tools their server marks read-only are approved automatically.
    SafeAuto,
    /// Approving one step approves the whole plan; gates still ask.
    Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("there is no plan to act on; type a request first")]
    NoPlan,
    #[error("no step `{0}` in the plan")]
    NoStep(StepId),
    #[error("`{0}` is gated: confirm it by typing `{1}`")]
    NeedsConfirmation(StepId, String),
    #[error("{0}")]
    WrongConfirmation(String),
    #[error("`{0}` is denied by policy: {1}")]
    Denied(StepId, String),
    #[error("`{0}` has already started; it cannot be changed")]
    AlreadyStarted(StepId),
    #[error("the new arguments do not fit `{tool}`: {problems}")]
    BadArgs { tool: String, problems: String },
    #[error("a plan is still running: wait for it, or cancel it first")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Planner(String),
    /// Four eyes: the approval was refused (why) or recorded and the step
    /// still needs other people (who).
    #[error("{0}")]
    WaitsForOthers(String),
}

struct Active {
    plan: Plan,
    decisions: HashMap<StepId, Decision>,
    desk: Arc<ApprovalDesk>,
    cancel: CancellationToken,
    started: HashSet<StepId>,
    plan_approved: bool,
}

impl Active {
    fn step(&self, id: &StepId) -> Result<&crate::plan::Step, DriverError> {
        self.plan
            .step(id)
            .ok_or_else(|| DriverError::NoStep(id.clone()))
    }
}

pub struct Driver {
    rt: Arc<Runtime>,
    session: Arc<Session>,
    mode: ApprovalMode,
    active: Mutex<Option<Active>>,
    /// Tools the user said not to ask about again this session (never gated steps).
    trusted: Mutex<HashSet<String>>,
    /// Undo steps approved in advance by config.
    pre_approved: Mutex<HashSet<StepId>>,
    /// Four-eyes steps whose approvers were told (`[notify]`), once each.
    told: Mutex<HashSet<StepId>>,
    busy: Mutex<bool>,
}

impl Driver {
    pub fn new(rt: Arc<Runtime>, session: Arc<Session>, mode: ApprovalMode) -> Arc<Self> {
        let driver = Arc::new(Self {
            rt,
            session,
            mode,
            active: Mutex::new(None),
            trusted: Mutex::new(HashSet::new()),
            pre_approved: Mutex::new(HashSet::new()),
            told: Mutex::new(HashSet::new()),
            busy: Mutex::new(false),
        });
        Self::follow(&driver);
        driver
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn mode(&self) -> ApprovalMode {
        self.mode
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_busy(&self) -> bool {
        *Self::lock(&self.busy)
    }

    /// Wait (at most `within`) until no request or run is in progress.
    pub async fn wait_idle(&self, within: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while self.is_busy() {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// Plan with another LLM profile (or the runbooks) from the next
    /// request on.
    pub fn switch_planner(&self, profile: Option<&str>) -> Result<String, DriverError> {
        self.rt
            .switch_planner(&self.session, profile)
            .map_err(|e| DriverError::Planner(e.to_string()))
    }

    /// Plan a request and, if it yields a plan, start running it: steps wait
    /// at the desk for approvals.
    pub fn submit(self: &Arc<Self>, request: String) -> Result<(), DriverError> {
        crate::runtime::check_request(&request).map_err(|e| DriverError::Planner(e.to_string()))?;
        self.claim()?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let planned = me.rt.plan_request(&me.session, &request).await;
            me.finish_turn(planned).await;
        });
        Ok(())
    }

    /// Call one tool by name (the app's `/call server.tool key=value …`):
    /// its one-step plan is proposed, decided and approved like any other.
    pub fn call(self: &Arc<Self>, line: &str) -> Result<(), DriverError> {
        let words = crate::plan::call::split_words(line)
            .map_err(|e| DriverError::Planner(e.to_string()))?;
        let Some((tool, pairs)) = words.split_first() else {
            return Err(DriverError::Planner(
                "write /call server.tool key=value …; /tools lists the tools".into(),
            ));
        };
        let (tool, pairs) = (tool.clone(), pairs.to_vec());
        self.claim()?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let planned = me.rt.propose_call(&me.session, &tool, &pairs, None).await;
            me.finish_turn(planned).await;
        });
        Ok(())
    }

    /// Propose a past session's plan (from `Runtime::past_plan`) again in
    /// this session and run it as any new plan: policy decides afresh and
    /// every approval is asked for again.
    pub fn rerun(
        self: &Arc<Self>,
        from: crate::session::SessionId,
        plan: crate::plan::Plan,
    ) -> Result<(), DriverError> {
        self.claim()?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let planned = me.rt.rerun(&me.session, &from, plan).await;
            me.finish_turn(planned).await;
        });
        Ok(())
    }

    /// Take the session for one request; one at a time.
    fn claim(&self) -> Result<(), DriverError> {
        let mut busy = Self::lock(&self.busy);
        if *busy {
            return Err(DriverError::Busy);
        }
        *busy = true;
        Ok(())
    }

    /// Run what planning produced, note any failure in the session, and
    /// free the session for the next request.
    async fn finish_turn(self: &Arc<Self>, planned: Result<Planned, StoreError>) {
        let result = match planned {
            Ok(planned) => self.run_planned(planned).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!("request failed: {e}");
            let _ = self.session.record(Event::Note {
                text: format!("error: {e}"),
            });
        }
        *Self::lock(&self.busy) = false;
    }

    async fn run_planned(self: &Arc<Self>, planned: Planned) -> Result<(), StoreError> {
        let Planned::Ready { plan, decisions } = planned else {
            return Ok(());
        };
        let outcome = self
            .run_plan(plan.clone(), decisions, HashMap::new())
            .await?;
        if outcome == crate::session::Outcome::Failed
            && let Some((undo, decisions)) = self.rt.propose_undo(&self.session, &plan)?
        {
            self.pre_approve_undo(&undo, &decisions);
            self.run_plan(undo, decisions, HashMap::new()).await?;
        }
        Ok(())
    }

    /// Undo steps in environments the config lists under
    /// `[engine] pre_approve_undo` are approved now (never gated ones).
    fn pre_approve_undo(self: &Arc<Self>, undo: &Plan, decisions: &[(StepId, Decision)]) {
        let envs = &self.rt.config.config.engine.pre_approve_undo;
        let ids: Vec<StepId> = undo
            .steps
            .iter()
            .filter(|s| {
                s.args
                    .get("env")
                    .and_then(Value::as_str)
                    .is_some_and(|e| envs.iter().any(|x| x == e))
            })
            .filter(|s| {
                decisions
                    .iter()
                    .any(|(id, d)| id == &s.id && !d.is_denied() && d.gate().is_none())
            })
            .map(|s| s.id.clone())
            .collect();
        self.pre_approved.lock().map(|mut p| p.extend(ids)).ok();
    }

    async fn run_plan(
        self: &Arc<Self>,
        plan: Plan,
        decisions: Vec<(StepId, Decision)>,
        done: HashMap<StepId, Value>,
    ) -> Result<crate::session::Outcome, StoreError> {
        let desk = Arc::new(ApprovalDesk::new());
        let cancel = CancellationToken::new();
        let decisions: HashMap<StepId, Decision> = decisions.into_iter().collect();
        *Self::lock(&self.active) = Some(Active {
            plan: plan.clone(),
            decisions: decisions.clone(),
            desk: Arc::clone(&desk),
            cancel: cancel.clone(),
            started: done.keys().cloned().collect(),
            plan_approved: false,
        });
        let approvals = Approvals::Live(desk);
        self.rt
            .engine()
            .run_from(
                &self.session,
                &plan,
                &decisions,
                &approvals,
                cancel,
                crate::engine::Start {
                    done,
                    ..Default::default()
                },
            )
            .await
            .map(|(outcome, _)| outcome)
    }

    /// Continue a resumed session's unfinished plan; its steps wait for
    /// fresh approvals.
    pub fn continue_plan(self: &Arc<Self>, resumed: crate::runtime::Resumed) {
        *Self::lock(&self.busy) = true;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            // The app is already drawn; wait only for the servers this plan uses.
            let servers: HashSet<String> = resumed
                .plan
                .steps
                .iter()
                .filter_map(|s| s.tool.split_once('.').map(|(server, _)| server.to_string()))
                .collect();
            me.rt
                .servers
                .wait_for(servers.iter().map(String::as_str))
                .await;
            if let Err(e) = me
                .run_plan(resumed.plan, resumed.decisions, resumed.done)
                .await
                .map(drop)
            {
                let _ = me.session.record(Event::Note {
                    text: format!("error: {e}"),
                });
            }
            *Self::lock(&me.busy) = false;
        });
    }

    /// Watch the log: auto-approve per the mode and trusted tools, and note
    /// which steps have started (they can no longer be edited).
    fn follow(me: &Arc<Self>) {
        let mut records = me.session.subscribe();
        let weak = Arc::downgrade(me);
        tokio::spawn(async move {
            while let Ok(record) = records.recv().await {
                let Some(me) = weak.upgrade() else { return };
                match record.event {
                    Event::AwaitingApproval { step, gated: false } => me.auto_approve(&step),
                    Event::StepStarted { step, .. } => {
                        if let Some(a) = Self::lock(&me.active).as_mut() {
                            a.started.insert(step);
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    fn auto_approve(&self, step: &StepId) {
        let reason = {
            let active = Self::lock(&self.active);
            let Some(a) = active.as_ref() else { return };
            let Some(s) = a.plan.step(step) else { return };
            let catalog = self.rt.servers.catalog();
            let listed = catalog.get(&s.tool);
            let read_only = listed.is_some_and(|t| t.annotations.read_only);
            // A tool the scan flags is never trusted silently, whatever
            // the mode or an earlier "trust this tool".
            let flagged = listed.is_some_and(|t| !crate::policy::scan::tool(t).is_empty());
            // A plan steered by untrusted output gets no shortcut: each
            // step that changes something is approved by a person, itself.
            let (influenced, approved) = self.session.with_state(|st| {
                (
                    !st.influenced_by.is_empty(),
                    st.steps.get(step).is_some_and(|s| s.approved_by.is_some()),
                )
            });
            // A person may have approved it while this record was on its
            // way here: one approval is enough.
            if approved || flagged || (influenced && !read_only) {
                None
            } else if a.plan_approved && self.mode == ApprovalMode::Plan {
                Some("approval mode `plan`: the plan was approved".to_string())
            } else if self.mode == ApprovalMode::SafeAuto && read_only {
                Some(format!(
                    "approval mode `safe-auto`: {} is read-only",
                    s.tool
                ))
            } else if Self::lock(&self.trusted).contains(&s.tool) {
                Some(format!("{} is trusted for this session", s.tool))
            } else if Self::lock(&self.pre_approved).contains(step) {
                Some("an undo in an environment [engine] pre_approve_undo lists".to_string())
            } else {
                None
            }
        };
        if let Some(reason) = reason
            && let Err(e) =
                self.approve_as(step, &format!("{} ({reason})", self.session.actor), None)
        {
            tracing::warn!("auto-approval of {step} failed: {e}");
        }
    }

    fn approve_as(
        &self,
        step: &StepId,
        by: &str,
        reason: Option<String>,
    ) -> Result<(), DriverError> {
        let mut active = Self::lock(&self.active);
        let a = active.as_mut().ok_or(DriverError::NoPlan)?;
        let s = a.step(step)?;
        if let Some(Decision::Deny { reason, .. }) = a.decisions.get(step) {
            return Err(DriverError::Denied(step.clone(), reason.clone()));
        }
        let args = a.desk.edited_args(step).unwrap_or_else(|| s.args.clone());
        let decision = a.decisions.get(step);
        let gated = decision.and_then(Decision::gate).is_some();
        match crate::runtime::approve_step(
            &self.rt.store,
            &self.rt.policy,
            &self.session,
            step,
            &s.tool,
            &args,
            decision,
            by,
            gated,
            reason,
        )? {
            crate::runtime::Approval::Granted(hash) => {
                a.desk.approve(step.clone(), hash);
                Ok(())
            }
            crate::runtime::Approval::Counted { wanted } => {
                if let Some(q) = decision.and_then(Decision::quorum) {
                    self.tell_approvers(step, &s.tool, q);
                }
                Err(DriverError::WaitsForOthers(format!(
                    "your approval of {step} is recorded; it still needs {wanted}"
                )))
            }
            crate::runtime::Approval::Refused(why) => {
                if let Some(q) = decision.and_then(Decision::quorum) {
                    self.tell_approvers(step, &s.tool, q);
                }
                Err(DriverError::WaitsForOthers(format!(
                    "{step} waits for other people: {why} (they approve it with `opsbot approvals approve {}:{step}` or in their app)",
                    self.session.id
                )))
            }
        }
    }

    /// `[notify]`: tell approvers that `step` waits for them, once per
    /// step, off the caller's path.
    fn tell_approvers(&self, step: &StepId, tool: &str, q: &crate::policy::Quorum) {
        if self.rt.config.config.notify.tool.is_none()
            || !Self::lock(&self.told).insert(step.clone())
        {
            return;
        }
        let rt = Arc::clone(&self.rt);
        let id = format!("{}:{step}", self.session.id);
        let (tool, requester) = (tool.to_string(), self.session.actor.clone());
        let wanted = q.wanted(0, &requester);
        tokio::spawn(async move {
            rt.notify_waiting(&crate::runtime::Waiting {
                id: &id,
                tool: &tool,
                requester: &requester,
                wanted: &wanted,
            })
            .await;
        });
    }

    /// Four eyes: approve, on the desk, the steps of the running plan that
    /// other people have approved enough (from their app or `opsbot
    /// approvals`) since; returns them.
    pub fn take_others_approvals(&self) -> Vec<StepId> {
        let mut active = Self::lock(&self.active);
        let Some(a) = active.as_mut() else {
            return Vec::new();
        };
        let mut granted = Vec::new();
        // Read once, and only when some step waits for others.
        let mut records = None;
        for s in &a.plan.steps {
            let Some(q) = a.decisions.get(&s.id).and_then(Decision::quorum) else {
                continue;
            };
            if a.started.contains(&s.id)
                || matches!(
                    a.desk.verdict(&s.id),
                    crate::engine::Verdict::Approved(_) | crate::engine::Verdict::Skipped(_)
                )
            {
                continue;
            }
            let args = a.desk.edited_args(&s.id).unwrap_or_else(|| s.args.clone());
            let hash = args_hash(&s.tool, &args);
            if records.is_none() {
                match self.rt.store.events(&self.session.id) {
                    Ok(r) => records = Some(r),
                    Err(e) => {
                        tracing::warn!("cannot read the approvals of this session: {e}");
                        break;
                    }
                }
            }
            let read = records.as_deref().unwrap_or_default();
            if let crate::runtime::Standing::Approved(_) =
                self.rt
                    .quorum_standing(&self.session, read, &s.id, &hash, q)
            {
                // Their approvals were written by other processes.
                if let Err(e) = self.session.take_in_others() {
                    tracing::warn!("cannot read the approvals of {}: {e}", s.id);
                    continue;
                }
                a.desk.approve(s.id.clone(), hash);
                granted.push(s.id.clone());
            }
        }
        granted
    }

    /// Approve an ungated step; `remember` trusts its tool for the session.
    pub fn approve(&self, step: &StepId, remember: bool) -> Result<(), DriverError> {
        let (tool, gate) = {
            let active = Self::lock(&self.active);
            let a = active.as_ref().ok_or(DriverError::NoPlan)?;
            let s = a.step(step)?;
            (
                s.tool.clone(),
                a.decisions.get(step).and_then(Decision::gate).cloned(),
            )
        };
        if let Some(gate) = gate {
            return Err(DriverError::NeedsConfirmation(step.clone(), gate.confirm));
        }
        self.approve_as(step, &self.session.actor, None)?;
        if remember {
            Self::lock(&self.trusted).insert(tool);
        }
        if self.mode == ApprovalMode::Plan {
            let waiting = {
                let mut active = Self::lock(&self.active);
                let Some(a) = active.as_mut() else {
                    return Ok(());
                };
                a.plan_approved = true;
                self.waiting_steps(a)
            };
            for s in waiting {
                self.auto_approve(&s);
            }
        }
        Ok(())
    }

    /// Ungated steps already awaiting approval.
    fn waiting_steps(&self, a: &Active) -> Vec<StepId> {
        let state = self.session.state();
        a.plan
            .steps
            .iter()
            .filter(|s| {
                state.steps.get(&s.id).map(|st| st.status())
                    == Some(crate::session::StepStatus::AwaitingApproval)
                    && a.decisions.get(&s.id).and_then(Decision::gate).is_none()
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// Approve a gated step: `typed` must be exactly the gate's target.
    pub fn confirm_gate(&self, step: &StepId, typed: &str) -> Result<(), DriverError> {
        let gate = {
            let active = Self::lock(&self.active);
            let a = active.as_ref().ok_or(DriverError::NoPlan)?;
            a.step(step)?;
            a.decisions.get(step).and_then(Decision::gate).cloned()
        };
        match gate {
            Some(g) => {
                let reason = g.check(typed).map_err(DriverError::WrongConfirmation)?;
                self.approve_as(step, &self.session.actor, reason)
            }
            None => self.approve(step, false),
        }
    }

    /// Approve every ungated step that is waiting; returns how many.
    pub fn approve_ready(&self) -> Result<usize, DriverError> {
        let waiting = {
            let active = Self::lock(&self.active);
            let a = active.as_ref().ok_or(DriverError::NoPlan)?;
            self.waiting_steps(a)
        };
        for s in &waiting {
            self.approve_as(s, &self.session.actor, None)?;
        }
        Ok(waiting.len())
    }

    pub fn skip(&self, step: &StepId) -> Result<(), DriverError> {
        let active = Self::lock(&self.active);
        let a = active.as_ref().ok_or(DriverError::NoPlan)?;
        a.step(step)?;
        a.desk
            .skip(step.clone(), format!("skipped by {}", self.session.actor));
        Ok(())
    }

    /// Reject the plan: nothing further starts.
    pub fn reject_plan(&self) -> Result<(), DriverError> {
        let active = Self::lock(&self.active);
        let a = active.as_ref().ok_or(DriverError::NoPlan)?;
        self.session.record(Event::Note {
            text: format!("plan rejected by {}", self.session.actor),
        })?;
        a.desk
            .reject(format!("the plan was rejected by {}", self.session.actor));
        Ok(())
    }

    /// Replace a step's arguments before it runs. They must fit the tool's
    /// schema; any approval is withdrawn.
    pub fn edit_args(&self, step: &StepId, args: Map<String, Value>) -> Result<(), DriverError> {
        let active = Self::lock(&self.active);
        let a = active.as_ref().ok_or(DriverError::NoPlan)?;
        let s = a.step(step)?;
        if a.started.contains(step) {
            return Err(DriverError::AlreadyStarted(step.clone()));
        }
        // The editor started from the redacted arguments the screen shows.
        let current = a.desk.edited_args(step).unwrap_or_else(|| s.args.clone());
        let mut args = match self
            .rt
            .store
            .redactor()
            .restore(&Value::Object(current), Value::Object(args))
        {
            Value::Object(args) => args,
            _ => Map::new(),
        };
        // An edit is policy's business like any plan: in canonical terms.
        self.rt.estate.canonicalize(&mut args);
        if let Some(tool) = self.rt.servers.catalog().get(&s.tool) {
            let problems = check_args(&tool.input_schema, &args, true);
            if !problems.is_empty() {
                return Err(DriverError::BadArgs {
                    tool: s.tool.clone(),
                    problems: problems.join("; "),
                });
            }
        }
        // Policy decides the edited call afresh: an edit into a gated
        // environment needs the typed confirmation the original did not.
        // Within the whole plan, so steps it depends on still count.
        let mut probe = a.plan.clone();
        if let Some(edited) = probe.steps.iter_mut().find(|x| &x.id == step) {
            edited.args = args.clone();
        }
        let catalog = self.rt.servers.catalog();
        let decision = self
            .rt
            .decide_plan(&self.session, &probe, &catalog)
            .into_iter()
            .find(|(id, _)| id == step)
            .map(|(_, d)| d);
        let mut events = vec![Event::ArgsEdited {
            step: step.clone(),
            args: args.clone(),
        }];
        if let Some(d) = &decision {
            events.push(Event::PolicyDecision {
                step: step.clone(),
                decision: d.clone(),
            });
        }
        self.session.record_all(&events)?;
        drop(active);
        let mut active = Self::lock(&self.active);
        if let Some(a) = active.as_mut() {
            if let Some(d) = decision {
                a.decisions.insert(step.clone(), d);
            }
            a.desk.edit(step.clone(), args);
        }
        Ok(())
    }

    /// The arguments a step would run with now (edits included).
    pub fn args_of(&self, step: &StepId) -> Option<Map<String, Value>> {
        let active = Self::lock(&self.active);
        let a = active.as_ref()?;
        let s = a.plan.step(step)?;
        Some(a.desk.edited_args(step).unwrap_or_else(|| s.args.clone()))
    }

    pub fn cancel_step(&self, step: &StepId) -> bool {
        Self::lock(&self.active)
            .as_ref()
            .is_some_and(|a| a.desk.cancel_step(step))
    }

    /// Cancel the running step(s) if any; true if something was cancelled.
    pub fn cancel_running(&self) -> bool {
        let active = Self::lock(&self.active);
        let Some(a) = active.as_ref() else {
            return false;
        };
        let running = a.desk.running();
        for s in &running {
            a.desk.cancel_step(s);
        }
        !running.is_empty()
    }

    pub fn cancel_run(&self) {
        if let Some(a) = Self::lock(&self.active).as_ref() {
            a.cancel.cancel();
        }
    }
}
