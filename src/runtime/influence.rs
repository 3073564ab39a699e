//! A plan proposed after untrusted output entered the planner's context may
//! have been steered by it: every step that changes something then needs a
//! person's fresh approval, whatever policy would otherwise allow.

use crate::mcp::Catalog;
use crate::plan::{Plan, StepId};
use crate::policy::Decision;

/// The rule a step carries when untrusted output is why it needs approval.
pub const RULE: &str = "builtin.untrusted-output";

/// Raise each state-changing step that policy allows to needing approval,
/// naming the outputs the planner read. A step that already needs approval
/// or is denied keeps its heavier decision; a read-only tool changes
/// nothing and is left alone.
pub fn apply(
    plan: &Plan,
    catalog: &Catalog,
    influenced_by: &[String],
    decisions: &mut [(StepId, Decision)],
) {
    for (step, decision) in decisions.iter_mut() {
        let Some(s) = plan.step(step) else { continue };
        let read_only = catalog
            .get(&s.tool)
            .is_some_and(|t| t.annotations.read_only);
        if read_only || !matches!(decision, Decision::Allow { .. }) {
            continue;
        }
        *decision = Decision::NeedsApproval {
            rule: RULE.into(),
            reason: format!(
                "planned after output from an untrusted server ({}) entered the conversation; {} changes something, so a person approves it",
                influenced_by.join(", "),
                s.tool
            ),
            gate: None,
            quorum: None,
        };
    }
}
