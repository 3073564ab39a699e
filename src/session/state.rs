//! Session state as a fold over its events. Live views and history replay
//! both use this, so what is shown is exactly what was recorded.

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::{Event, Outcome};
use super::store::Record;
use crate::mcp::{Progress, ToolOutput};
use crate::plan::{Plan, StepId};
use crate::policy::Decision;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub text: String,
    pub ts: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    AwaitingApproval,
    Approved,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Its call was never sent: nothing happened.
    NotStarted,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepState {
    pub status: Option<StepStatus>,
    pub decision: Option<Decision>,
    pub approved_by: Option<String>,
    /// Everyone who approved the step as it stands (four eyes count them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The approval was a typed confirmation of a gate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approved_gated: bool,
    pub progress: Option<Progress>,
    pub output: Option<ToolOutput>,
    pub error: Option<String>,
    pub skipped_reason: Option<String>,
    pub duration_ms: Option<u64>,
    /// It was running when opsbot stopped.
    pub interrupted: bool,
    /// Retries so far.
    pub retries: u32,
}

impl StepState {
    pub fn status(&self) -> StepStatus {
        self.status.unwrap_or(StepStatus::Pending)
    }

    /// Take in how the step ended (succeeded, failed, not started,
    /// skipped); any other event leaves it as it is.
    pub fn end(&mut self, event: &Event) {
        match event {
            Event::StepSucceeded {
                output,
                duration_ms,
                ..
            } => {
                self.status = Some(StepStatus::Succeeded);
                self.output = Some(output.clone());
                self.duration_ms = Some(*duration_ms);
            }
            Event::StepFailed {
                error,
                output,
                duration_ms,
                ..
            } => {
                self.status = Some(StepStatus::Failed);
                self.error = Some(error.clone());
                self.output = output.clone();
                self.duration_ms = Some(*duration_ms);
            }
            Event::StepNotStarted { reason, .. } => {
                self.status = Some(StepStatus::NotStarted);
                self.error = Some(reason.clone());
                self.progress = None;
            }
            Event::StepSkipped { reason, .. } => {
                self.status = Some(StepStatus::Skipped);
                self.skipped_reason = Some(reason.clone());
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionState {
    pub actor: String,
    pub planner: String,
    pub messages: Vec<Message>,
    pub plan: Option<Plan>,
    pub steps: BTreeMap<StepId, StepState>,
    pub plan_errors: Vec<String>,
    pub outcome: Option<Outcome>,
    pub events: usize,
    /// Where in `messages` the open planning turn starts: the request, then
    /// any questions the planner asked and their answers.
    pub turn_start: Option<usize>,
    /// The planner asked a question: the next user message answers it.
    pub awaiting_answer: bool,
    /// Language-model use in this session.
    pub llm: Spend,
    /// The definitions the current plan was decided against, by tool.
    pub plan_defs: BTreeMap<String, String>,
    /// The newest tool results of the session (at most `RESULTS_KEPT`),
    /// oldest first: what a planner may read as context.
    pub results: Vec<SeenResult>,
    /// The current plan was proposed after these untrusted outputs entered
    /// the conversation.
    pub influenced_by: Vec<String>,
}

/// How many recent tool results a session keeps for its planner.
pub const RESULTS_KEPT: usize = 6;

/// A step's result as the conversation saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeenResult {
    pub step: StepId,
    /// `server.tool`.
    pub tool: String,
    pub text: String,
}

/// Tokens and money spent on model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl Spend {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn add(&mut self, prompt_tokens: u64, completion_tokens: u64, cost_usd: Option<f64>) {
        self.calls += 1;
        self.prompt_tokens += prompt_tokens;
        self.completion_tokens += completion_tokens;
        self.cost_usd += cost_usd.unwrap_or(0.0);
    }
}

impl SessionState {
    pub fn replay<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut state = Self::default();
        for r in records {
            state.apply(r);
        }
        state
    }

    pub fn apply(&mut self, record: &Record) {
        self.events += 1;
        let ts = record.ts.clone();
        match &record.event {
            Event::SessionStarted { actor, planner, .. } => {
                self.actor = actor.clone();
                self.planner = planner.clone();
            }
            Event::UserMessage { text } => {
                if !self.awaiting_answer {
                    self.turn_start = Some(self.messages.len());
                }
                self.awaiting_answer = false;
                self.messages.push(Message {
                    role: Role::User,
                    text: text.clone(),
                    ts,
                })
            }
            Event::ClarificationAsked { question } => {
                self.awaiting_answer = true;
                self.messages.push(Message {
                    role: Role::Assistant,
                    text: question.clone(),
                    ts,
                })
            }
            Event::AssistantMessage { text } => self.messages.push(Message {
                role: Role::Assistant,
                text: text.clone(),
                ts,
            }),
            Event::LlmCall {
                prompt_tokens,
                completion_tokens,
                cost_usd,
                ..
            } => self.llm.add(*prompt_tokens, *completion_tokens, *cost_usd),
            Event::PlannerChanged { planner } => self.planner = planner.clone(),
            Event::Effect { .. } => {}
            Event::PlanProposed {
                plan,
                defs,
                influenced_by,
            } => {
                self.plan_defs = defs.clone();
                self.influenced_by = influenced_by.clone();
                self.steps = plan
                    .steps
                    .iter()
                    .map(|s| (s.id.clone(), StepState::default()))
                    .collect();
                self.plan = Some(plan.clone());
                self.plan_errors.clear();
                self.outcome = None;
            }
            Event::PlanInvalid { errors } => self.plan_errors = errors.clone(),
            Event::PolicyDecision { step, decision } | Event::PolicyRecheck { step, decision } => {
                self.step_mut(step).decision = Some(decision.clone());
            }
            Event::Approved {
                step, by, gated, ..
            } => {
                let requester = self.actor.clone();
                let s = self.step_mut(step);
                let who = crate::policy::person(by).to_string();
                let quorum = s.decision.as_ref().and_then(Decision::quorum);
                let counts = !quorum
                    .is_some_and(|q| q.not_requester && who == crate::policy::person(&requester));
                if counts && !s.approvers.contains(&who) {
                    s.approvers.push(who);
                }
                s.approved_by = Some(by.clone());
                s.approved_gated = *gated;
                // Four eyes: approved once enough different people have.
                let met = quorum.is_none_or(|q| s.approvers.len() >= q.approvers as usize);
                s.status = Some(if met {
                    StepStatus::Approved
                } else {
                    StepStatus::AwaitingApproval
                });
            }
            Event::AwaitingApproval { step, .. } => {
                let s = self.step_mut(step);
                if s.status != Some(StepStatus::Approved) {
                    s.status = Some(StepStatus::AwaitingApproval);
                }
            }
            Event::ArgsEdited { step, args } => {
                if let Some(plan) = &mut self.plan
                    && let Some(s) = plan.steps.iter_mut().find(|s| &s.id == step)
                {
                    s.args = args.clone();
                }
                let s = self.step_mut(step);
                s.approved_by = None;
                s.approvers.clear();
                s.approved_gated = false;
                s.status = Some(StepStatus::Pending);
            }
            Event::StepStarted { step, .. } => {
                self.step_mut(step).status = Some(StepStatus::Running)
            }
            Event::StepProgress { step, progress } => {
                self.step_mut(step).progress = Some(progress.clone());
            }
            Event::StepSucceeded { step, output, .. } => {
                self.step_mut(step).end(&record.event);
                if let Some(tool) = self.plan.as_ref().and_then(|p| p.step(step)) {
                    let tool = tool.tool.clone();
                    if self.results.len() == RESULTS_KEPT {
                        self.results.remove(0);
                    }
                    self.results.push(SeenResult {
                        step: step.clone(),
                        tool,
                        text: output.text.clone(),
                    });
                }
            }
            Event::StepFailed { step, .. }
            | Event::StepNotStarted { step, .. }
            | Event::StepSkipped { step, .. } => self.step_mut(step).end(&record.event),
            Event::StepRetrying { step, attempt, .. } => {
                self.step_mut(step).retries = *attempt;
            }
            Event::StepInterrupted { step } => {
                let s = self.step_mut(step);
                s.interrupted = true;
                s.status = Some(StepStatus::Pending);
                s.approved_by = None;
                s.approved_gated = false;
                s.progress = None;
            }
            Event::SessionResumed { .. } => {
                // Approvals given before the interruption do not carry over.
                for s in self.steps.values_mut() {
                    if matches!(
                        s.status(),
                        StepStatus::Approved | StepStatus::AwaitingApproval
                    ) {
                        s.status = Some(StepStatus::Pending);
                        s.approved_by = None;
                        s.approved_gated = false;
                    }
                }
            }
            Event::RunFinished { outcome, .. } => self.outcome = Some(*outcome),
            Event::ServerProblem { .. }
            | Event::Exchanged { .. }
            | Event::Note { .. }
            | Event::ClientConnected { .. }
            | Event::SessionLeased { .. }
            | Event::LeaseReleased { .. } => {}
        }
    }

    fn step_mut(&mut self, id: &StepId) -> &mut StepState {
        self.steps.entry(id.clone()).or_default()
    }
}
