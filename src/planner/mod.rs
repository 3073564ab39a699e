//! Planners turn a request into a plan, or into a question when the request
//! is ambiguous. A plan is only a proposal: it is validated and governed
//! like any other before anything runs.

pub mod llm;
pub mod prompt;
pub mod rank;
pub mod runbook;

use crate::plan::Plan;

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
}

pub trait Planner: Send + Sync {
    fn name(&self) -> &str;
    /// Whether planning reads the tool catalog (so servers should be up first).
    fn needs_catalog(&self) -> bool {
        false
    }
    fn plan(&self, request: &str)
    -> futures::future::BoxFuture<'_, Result<Proposal, PlannerError>>;
}
