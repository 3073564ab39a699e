//! What can happen in a session.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mcp::{Progress, ToolOutput};
use crate::plan::{Plan, StepId};
use crate::policy::Decision;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Denied,
    AwaitingApproval,
    NeedsClarification,
    InvalidPlan,
    Cancelled,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
            Outcome::AwaitingApproval => "awaiting approval",
            Outcome::NeedsClarification => "needs clarification",
            Outcome::InvalidPlan => "invalid plan",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        actor: String,
        planner: String,
        version: String,
    },
    UserMessage {
        text: String,
    },
    AssistantMessage {
        text: String,
    },
    ClarificationAsked {
        question: String,
    },
    PlanProposed {
        plan: Plan,
        /// The definition hash of each tool the plan uses, as it was
        /// decided and shown (maybe from a cached list): a server that
        /// lists something else by the time of the call is not called.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        defs: std::collections::BTreeMap<String, String>,
        /// Untrusted outputs the planner had read when it proposed this
        /// plan (`step (server.tool)`): its state-changing steps each need
        /// a fresh approval.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        influenced_by: Vec<String>,
    },
    PlanInvalid {
        errors: Vec<String>,
    },
    PolicyDecision {
        step: StepId,
        decision: Decision,
    },
    /// Bound to the exact arguments approved: a different hash at run time
    /// means the approval does not cover what would run.
    Approved {
        step: StepId,
        by: String,
        args_hash: String,
        gated: bool,
        /// Why, when the approval overrides a freeze.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The host the approval came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// Ready to run, waiting for someone to approve it.
    AwaitingApproval {
        step: StepId,
        gated: bool,
    },
    /// Arguments changed before the step ran; any approval was withdrawn.
    ArgsEdited {
        step: StepId,
        args: Map<String, Value>,
    },
    StepStarted {
        step: StepId,
        tool: String,
        args: Map<String, Value>,
    },
    StepProgress {
        step: StepId,
        progress: Progress,
    },
    StepSucceeded {
        step: StepId,
        output: ToolOutput,
        duration_ms: u64,
    },
    StepFailed {
        step: StepId,
        error: String,
        output: Option<ToolOutput>,
        duration_ms: u64,
    },
    StepSkipped {
        step: StepId,
        reason: String,
    },
    /// The call never left opsbot (its server was down, its breaker open,
    /// the tool gone): nothing happened, so it leaves no failure effect.
    StepNotStarted {
        step: StepId,
        reason: String,
    },
    /// A transient failure; the step is tried again after `wait_ms`.
    StepRetrying {
        step: StepId,
        attempt: u32,
        error: String,
        wait_ms: u64,
    },
    /// The step was running when opsbot stopped; on resume it waits for a
    /// fresh approval.
    StepInterrupted {
        step: StepId,
    },
    /// The session was reopened after it was interrupted.
    /// An MCP client connected to `opsbot serve`; its calls make up the
    /// session.
    ClientConnected {
        name: String,
        version: String,
        transport: String,
    },
    SessionResumed {
        by: String,
    },
    /// A process took the lease on the session: it alone drives it now.
    /// `took_over` names a holder that ended without releasing it.
    SessionLeased {
        holder: super::LeaseHolder,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        took_over: Option<super::LeaseHolder>,
    },
    /// The driver let the session go.
    LeaseReleased {
        pid: u32,
    },
    ServerProblem {
        server: String,
        message: String,
    },
    RunFinished {
        outcome: Outcome,
        summary: String,
    },
    Note {
        text: String,
    },
    /// One call to a language model while planning, whatever its result.
    LlmCall {
        profile: String,
        model: String,
        prompt_tokens: u64,
        completion_tokens: u64,
        /// From the price table; none when the model has no price.
        cost_usd: Option<f64>,
        duration_ms: u64,
        /// `ok`, or what went wrong (`http 429`, `timeout`, ...).
        status: String,
    },
    /// A finished call left an effect that policy rules can require or
    /// forbid, e.g. `tests.passed{service=checkout}`.
    Effect {
        effect: String,
        scope: std::collections::BTreeMap<String, String>,
        step: StepId,
    },
    /// Policy's verdict on a call about to run, when it differs from the
    /// plan's: a denial at run time.
    PolicyRecheck {
        step: StepId,
        decision: Decision,
    },
    /// The planner used from here on.
    PlannerChanged {
        planner: String,
    },
    /// Something other than a tool call that passed through `opsbot serve`:
    /// a resource read or a prompt (decided by policy like a call), or a
    /// request a server made of the client (sampling, elicitation, roots).
    Exchanged {
        server: String,
        /// The MCP method, e.g. `resources/read`, `sampling/createMessage`.
        method: String,
        /// What was asked: a URI, a prompt and its arguments, a message.
        subject: String,
        /// The policy rule that let it through or refused it, when policy decided.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// `ok`, or why not: `denied: …`, `declined: …`, `failed: …`.
        outcome: String,
    },
}

/// The longest chat text (a request, an answer, a note) the log keeps, in
/// characters; longer text is cut with a marker saying how long it was.
pub const MAX_MESSAGE_CHARS: usize = 16_000;
/// The most plan errors, and characters of each, one event keeps.
const MAX_ERRORS: usize = 50;
const MAX_ERROR_CHARS: usize = 2_000;

fn cut(text: &str, max: usize) -> Option<String> {
    let n = text.chars().count();
    (n > max).then(|| {
        let head: String = text.chars().take(max).collect();
        format!("{head}… (cut: {n} characters in all)")
    })
}

impl Event {
    /// This event with its free text cut to what the log keeps, if any of
    /// it is longer: a pasted megabyte or a model's runaway answer must not
    /// make every later view of the session slow.
    pub fn within_limits(&self) -> Option<Event> {
        let text = |t: &str| cut(t, MAX_MESSAGE_CHARS);
        match self {
            Event::UserMessage { text: t } => text(t).map(|text| Event::UserMessage { text }),
            Event::AssistantMessage { text: t } => {
                text(t).map(|text| Event::AssistantMessage { text })
            }
            Event::Note { text: t } => text(t).map(|text| Event::Note { text }),
            Event::Exchanged {
                server,
                method,
                subject,
                rule,
                outcome,
            } => {
                let (s, o) = (text(subject), text(outcome));
                (s.is_some() || o.is_some()).then(|| Event::Exchanged {
                    server: server.clone(),
                    method: method.clone(),
                    subject: s.unwrap_or_else(|| subject.clone()),
                    rule: rule.clone(),
                    outcome: o.unwrap_or_else(|| outcome.clone()),
                })
            }
            Event::ClarificationAsked { question } => {
                text(question).map(|question| Event::ClarificationAsked { question })
            }
            Event::PlanInvalid { errors } => {
                let long = errors.len() > MAX_ERRORS
                    || errors.iter().any(|e| e.chars().count() > MAX_ERROR_CHARS);
                long.then(|| {
                    let mut kept: Vec<String> = errors
                        .iter()
                        .take(MAX_ERRORS)
                        .map(|e| cut(e, MAX_ERROR_CHARS).unwrap_or_else(|| e.clone()))
                        .collect();
                    if errors.len() > MAX_ERRORS {
                        kept.push(format!("… and {} more", errors.len() - MAX_ERRORS));
                    }
                    Event::PlanInvalid { errors: kept }
                })
            }
            _ => None,
        }
    }

    /// The tag stored beside the event, for filtering without parsing.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionStarted { .. } => "session_started",
            Event::UserMessage { .. } => "user_message",
            Event::AssistantMessage { .. } => "assistant_message",
            Event::ClarificationAsked { .. } => "clarification_asked",
            Event::PlanProposed { .. } => "plan_proposed",
            Event::PlanInvalid { .. } => "plan_invalid",
            Event::PolicyDecision { .. } => "policy_decision",
            Event::Approved { .. } => "approved",
            Event::AwaitingApproval { .. } => "awaiting_approval",
            Event::ArgsEdited { .. } => "args_edited",
            Event::StepStarted { .. } => "step_started",
            Event::StepProgress { .. } => "step_progress",
            Event::StepSucceeded { .. } => "step_succeeded",
            Event::StepFailed { .. } => "step_failed",
            Event::StepSkipped { .. } => "step_skipped",
            Event::StepNotStarted { .. } => "step_not_started",
            Event::StepRetrying { .. } => "step_retrying",
            Event::StepInterrupted { .. } => "step_interrupted",
            Event::ClientConnected { .. } => "client_connected",
            Event::SessionResumed { .. } => "session_resumed",
            Event::SessionLeased { .. } => "session_leased",
            Event::LeaseReleased { .. } => "lease_released",
            Event::ServerProblem { .. } => "server_problem",
            Event::RunFinished { .. } => "run_finished",
            Event::Note { .. } => "note",
            Event::LlmCall { .. } => "llm_call",
            Event::PlannerChanged { .. } => "planner_changed",
            Event::Effect { .. } => "effect",
            Event::PolicyRecheck { .. } => "policy_recheck",
            Event::Exchanged { .. } => "exchanged",
        }
    }
}
