//! How a run ended, from the state each step was left in: the outcome
//! recorded with the run's finish, and its one-line summary.

use std::collections::HashMap;

use super::State;
use crate::plan::{Plan, StepId};
use crate::session::Outcome;

/// The outcome and summary of a run whose steps ended in `state`. A
/// failure in a step marked `continue_on_error` does not fail the run;
/// a denial or a missing approval only decides it when nothing failed.
pub(super) fn of(
    plan: &Plan,
    state: &HashMap<StepId, State>,
    cancelled: bool,
    rejected: bool,
) -> (Outcome, String) {
    let in_state = |s: State| state.values().filter(|v| **v == s).count();
    let tolerated = plan
        .steps
        .iter()
        .filter(|s| {
            s.continue_on_error
                && matches!(state.get(&s.id), Some(State::Failed | State::NotStarted))
        })
        .count();
    let outcome = if cancelled {
        Outcome::Cancelled
    } else if rejected {
        Outcome::Rejected
    } else if in_state(State::Failed) + in_state(State::NotStarted) > tolerated {
        Outcome::Failed
    } else if in_state(State::Denied) > 0 {
        Outcome::Denied
    } else if in_state(State::AwaitingApproval) > 0 {
        Outcome::AwaitingApproval
    } else {
        Outcome::Succeeded
    };
    let mut summary = format!(
        "{} of {} steps succeeded",
        in_state(State::Succeeded),
        plan.steps.len()
    );
    for (label, s) in [
        ("failed", State::Failed),
        ("not started", State::NotStarted),
        ("denied", State::Denied),
        ("awaiting approval", State::AwaitingApproval),
        ("skipped", State::Skipped),
    ] {
        let ids: Vec<&str> = plan
            .steps
            .iter()
            .filter(|st| state.get(&st.id) == Some(&s))
            .map(|st| st.id.as_str())
            .collect();
        if !ids.is_empty() {
            summary.push_str(&format!("; {label}: {}", ids.join(", ")));
        }
    }
    (outcome, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;

    fn plan(steps: &[(&str, bool)]) -> Plan {
        Plan {
            title: "t".into(),
            steps: steps
                .iter()
                .map(|(id, tolerate)| Step {
                    continue_on_error: *tolerate,
                    ..Step::new(*id, "k8s.status", serde_json::Map::new())
                })
                .collect(),
        }
    }

    fn states(of: &[(&str, State)]) -> HashMap<StepId, State> {
        of.iter().map(|(id, s)| (StepId::new(*id), *s)).collect()
    }

    #[test]
    fn a_tolerated_failure_does_not_fail_the_run_and_the_summary_names_each_step() {
        let p = plan(&[("check", true), ("deploy", false), ("notify", false)]);
        let st = states(&[
            ("check", State::Failed),
            ("deploy", State::Succeeded),
            ("notify", State::Skipped),
        ]);
        assert_eq!(
            of(&p, &st, false, false),
            (
                Outcome::Succeeded,
                "1 of 3 steps succeeded; failed: check; skipped: notify".into()
            )
        );
    }

    #[test]
    fn a_failure_outranks_a_denial_and_a_denial_a_missing_approval() {
        let p = plan(&[("a", false), ("b", false), ("c", false)]);
        let failed = states(&[
            ("a", State::Failed),
            ("b", State::Denied),
            ("c", State::AwaitingApproval),
        ]);
        assert_eq!(of(&p, &failed, false, false).0, Outcome::Failed);
        let denied = states(&[
            ("a", State::Succeeded),
            ("b", State::Denied),
            ("c", State::AwaitingApproval),
        ]);
        assert_eq!(of(&p, &denied, false, false).0, Outcome::Denied);
        let waiting = states(&[
            ("a", State::Succeeded),
            ("b", State::Succeeded),
            ("c", State::AwaitingApproval),
        ]);
        assert_eq!(of(&p, &waiting, false, false).0, Outcome::AwaitingApproval);
        // A cancel, then a person's rejection, say more than any step.
        assert_eq!(of(&p, &failed, true, true).0, Outcome::Cancelled);
        assert_eq!(of(&p, &failed, false, true).0, Outcome::Rejected);
    }
}
