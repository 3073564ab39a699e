//! Planners turn a request into a plan, or into a question when the request
//! is ambiguous. A plan is only a proposal: it is validated and governed
//! like any other before anything runs.

pub mod chat;
pub mod endpoint;
pub mod llm;
pub mod partial;
pub mod prompt;
pub mod rank;
pub mod runbook;
pub mod single;
pub mod understand;

use std::time::Duration;

use crate::plan::Plan;
use crate::session::Role;

#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    Plan(Plan),
    /// Not enough to go on: ask rather than guess.
    Clarify {
        question: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("planner failed: {0}")]
    Failed(String),
    #[error("planning was cancelled")]
    Cancelled,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// What a planner is asked: the request and, when it asked a question, its
/// questions and the answers, all one planning turn; plus the recent
/// conversation before it, for context ("now promote it").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanInput {
    /// The request first, then question/answer pairs.
    pub turn: Vec<Turn>,
    /// Earlier messages in the session, oldest first.
    pub history: Vec<Turn>,
    /// Recent tool results in the session, oldest first, each marked with
    /// whether its server is trusted.
    pub results: Vec<ResultBlock>,
}

/// A tool's result offered to a planner as context. Its text is data: an
/// untrusted one reaches a model only inside an escaped, delimited block.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultBlock {
    pub step: String,
    /// `server.tool`.
    pub tool: String,
    pub trusted: bool,
    pub text: String,
}

impl ResultBlock {
    /// How the block is named to the user: `step (server.tool)`.
    pub fn source(&self) -> String {
        format!("{} ({})", self.step, self.tool)
    }
}

impl PlanInput {
    pub fn new(request: &str) -> Self {
        Self {
            turn: vec![Turn {
                role: Role::User,
                text: request.to_string(),
            }],
            history: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Everything the user said in this turn, as one request: how a planner
    /// that does not converse reads an answer to its question.
    pub fn request(&self) -> String {
        self.turn
            .iter()
            .filter(|t| t.role == Role::User)
            .map(|t| t.text.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a planner is doing right now, for the "thinking" line in the chat.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Waiting for the model; `repair` counts the rounds spent fixing an
    /// invalid plan.
    Calling { call: u32, repair: u32 },
    /// Rate limited by the endpoint; the next try is after `wait`.
    RateLimited { wait: Duration },
}

/// One finished model call, before it is priced.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    pub profile: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub duration: Duration,
    /// `ok`, or what went wrong.
    pub status: String,
}

/// Where a planner reports while it works. The runtime records calls in the
/// session, enforces budgets, and shows the phase; tests can use `NoSink`.
pub trait PlanSink: Send + Sync {
    /// Asked before every model call; an error refuses the call and says why.
    fn before_call(&self) -> Result<(), String> {
        Ok(())
    }
    fn call_finished(&self, _call: ModelCall) {}
    fn phase(&self, _phase: Phase) {}
    /// Something the user should read, such as a fallback to runbooks.
    fn notice(&self, _text: &str) {}
    /// The answer so far has this many tokens (or chunks, until the server
    /// counts them).
    fn progress(&self, _tokens: u64) {}
    /// The steps of the plan complete so far, while the model still writes.
    fn draft(&self, _steps: &[crate::plan::Step]) {}
    /// Cancelled when the user cancels planning.
    fn cancel_token(&self) -> tokio_util::sync::CancellationToken {
        tokio_util::sync::CancellationToken::new()
    }
}

pub struct NoSink;

impl PlanSink for NoSink {}

pub trait Planner: Send + Sync {
    fn name(&self) -> &str;
    /// Whether planning reads the tool catalog (so servers should be up first).
    fn needs_catalog(&self) -> bool {
        false
    }
    /// Whether planning reads earlier tool results (`PlanInput::results`):
    /// a plan from a planner that does can be steered by what it read.
    fn reads_results(&self) -> bool {
        false
    }
    fn plan<'a>(
        &'a self,
        input: &'a PlanInput,
        sink: &'a dyn PlanSink,
    ) -> futures::future::BoxFuture<'a, Result<Proposal, PlannerError>>;
}
