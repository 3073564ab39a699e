//! Four eyes: a step whose rule asks for approvers runs once enough
//! different people, other than the requester where the rule says so and
//! with the roles it names, approved exactly its arguments. Every approval
//! path (the app, `run`, `opsbot approvals`, serve) asks here.

use std::sync::Arc;

use super::Runtime;
use crate::plan::{Plan, StepId};
use crate::policy::{Decision, Policy, Quorum, args_hash};
use crate::session::{Event, Record, Session, Store, StoreError};

/// What an approval came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// The step may run: approved with this arguments' hash.
    Granted(String),
    /// Recorded, and more approvals are needed (who, in words).
    Counted { wanted: String },
    /// Not recorded: this person's approval cannot count (why).
    Refused(String),
}

/// Where a four-eyes step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Someone refused it (why).
    Refused(String),
    /// Enough people approved it (who).
    Approved(Vec<String>),
    /// Who must still approve, in words.
    Short(String),
}

/// The people whose approvals of `step` in `records`, bound to `hash`,
/// count for `quorum`.
fn counted(
    quorum: &Quorum,
    records: &[Record],
    step: &StepId,
    hash: &str,
    requester: &str,
    policy: &Policy,
) -> Vec<String> {
    let approvals = records.iter().filter_map(|r| match &r.event {
        Event::Approved {
            step: s,
            by,
            args_hash,
            ..
        } if s == step => Some((by.as_str(), args_hash.as_str())),
        _ => None,
    });
    quorum.counted(approvals, hash, requester, |who| policy.roles_of(who))
}

/// Record `approver`'s approval of `step` (with `tool` and `args`) in
/// `session`, under `decision`: refused, not recorded, when it cannot
/// count; granted once the quorum is met (or when there is none).
#[allow(clippy::too_many_arguments)]
pub fn approve_step(
    store: &Arc<Store>,
    policy: &Policy,
    session: &Session,
    step: &StepId,
    tool: &str,
    args: &serde_json::Map<String, serde_json::Value>,
    decision: Option<&Decision>,
    approver: &str,
    gated: bool,
    reason: Option<String>,
) -> Result<Approval, StoreError> {
    let hash = args_hash(tool, args);
    let requester = session.with_state(|s| s.actor.clone());
    let quorum = decision.and_then(Decision::quorum);
    if let Some(q) = quorum
        && let Some(why) = q.refuses(
            approver,
            &policy.roles_of(crate::policy::person(approver)),
            &requester,
        )
    {
        return Ok(Approval::Refused(why));
    }
    session.record(Event::Approved {
        step: step.clone(),
        by: approver.to_string(),
        args_hash: hash.clone(),
        gated,
        reason,
        from: Some(crate::session::host_name()),
    })?;
    let Some(q) = quorum else {
        return Ok(Approval::Granted(hash));
    };
    let records = store.events(&session.id)?;
    let people = counted(q, &records, step, &hash, &requester, policy);
    if people.len() >= q.approvers as usize {
        Ok(Approval::Granted(hash))
    } else {
        Ok(Approval::Counted {
            wanted: q.wanted(people.len(), &requester),
        })
    }
}

impl Runtime {
    /// Approve `step` of `plan` as the session's actor (see [`approve_step`]).
    pub fn approve_checked(
        &self,
        session: &Session,
        plan: &Plan,
        step: &StepId,
        gated: bool,
        reason: Option<&str>,
    ) -> Result<Approval, StoreError> {
        let Some(s) = plan.step(step) else {
            return Ok(Approval::Refused(format!("the plan has no step {step}")));
        };
        let decision = session.with_state(|st| st.steps.get(step).and_then(|x| x.decision.clone()));
        approve_step(
            &self.store,
            &self.policy,
            session,
            step,
            &s.tool,
            &s.args,
            decision.as_ref(),
            &session.actor,
            gated,
            reason.map(str::to_string),
        )
    }

    /// Where a four-eyes `step` (arguments' hash `hash`) stands in its
    /// session's `records`, written by whichever process.
    pub fn quorum_standing(
        &self,
        session: &Session,
        records: &[Record],
        step: &StepId,
        hash: &str,
        quorum: &Quorum,
    ) -> Standing {
        if let Some(why) = records.iter().rev().find_map(|r| match &r.event {
            Event::StepSkipped { step: s, reason } if s == step => Some(reason.clone()),
            _ => None,
        }) {
            return Standing::Refused(why);
        }
        let requester = session.with_state(|s| s.actor.clone());
        let people = counted(quorum, records, step, hash, &requester, &self.policy);
        if people.len() >= quorum.approvers as usize {
            Standing::Approved(people)
        } else {
            Standing::Short(quorum.wanted(people.len(), &requester))
        }
    }
}
