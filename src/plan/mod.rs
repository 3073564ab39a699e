//! Plans: a small graph of MCP tool calls.
//!
//! A plan is only a proposal until it is validated against the catalog and
//! annotated by policy. Arguments may reference earlier steps' outputs
//! (`${build.image}`); such a reference also makes the step depend on the one
//! it names.

pub mod call;
mod template;
pub mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use template::{Reference, TemplateError, references, resolve};
pub use validate::{PlanError, check_args, validate};

/// A step's name inside its plan. Not a free-form string: it is checked to
/// be a short identifier so references (`${id.field}`) stay unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(String);

impl StepId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    /// `server.tool`
    pub tool: String,
    #[serde(default)]
    pub args: Map<String, Value>,
    #[serde(default)]
    pub depends_on: Vec<StepId>,
    #[serde(default)]
    pub description: String,
    /// Needs a deliberate, typed confirmation whatever policy says.
    #[serde(default)]
    pub gate: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Run only if this holds over earlier steps' outcomes, e.g.
    /// `test.status == "failed"` or `test.failed > 0`; otherwise skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A failure of this step does not stop the steps after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    /// Retries for transient failures, overriding the server's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// How to undo this step if the run fails after it, overriding the
    /// tool's entry in `[compensations]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<crate::config::Compensation>,
}

impl Step {
    /// A plain call: no dependencies, gate, timeout, condition, retries or undo.
    pub fn new(id: impl Into<String>, tool: impl Into<String>, args: Map<String, Value>) -> Self {
        Self {
            id: StepId::new(id),
            tool: tool.into(),
            args,
            depends_on: Vec::new(),
            description: String::new(),
            gate: false,
            timeout_ms: None,
            when: None,
            continue_on_error: false,
            retries: None,
            undo: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// One line saying what the plan does, e.g. "deploy checkout → staging".
    pub title: String,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn step(&self, id: &StepId) -> Option<&Step> {
        self.steps.iter().find(|s| &s.id == id)
    }

    /// Add the dependencies that argument references imply, unless the
    /// step already depends on the referenced one, directly or not.
    pub fn with_implied_dependencies(mut self) -> Self {
        for i in 0..self.steps.len() {
            let id = self.steps[i].id.clone();
            for r in references(&Value::Object(self.steps[i].args.clone())) {
                if r.step != id && !self.ancestors(&id).contains(&r.step) {
                    self.steps[i].depends_on.push(r.step);
                }
            }
        }
        self
    }

    /// Every step this one depends on, directly or not.
    pub fn ancestors(&self, id: &StepId) -> Vec<StepId> {
        let mut out: Vec<StepId> = Vec::new();
        let mut stack: Vec<StepId> = self
            .step(id)
            .map(|s| s.depends_on.clone())
            .unwrap_or_default();
        while let Some(next) = stack.pop() {
            if out.contains(&next) {
                continue;
            }
            if let Some(s) = self.step(&next) {
                stack.extend(s.depends_on.iter().cloned());
            }
            out.push(next);
        }
        out
    }
}
