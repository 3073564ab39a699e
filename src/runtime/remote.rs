//! Answering, from the app, calls made through `opsbot serve` that wait
//! for a person. The serving process watches the log for the answer, so the
//! answer is simply recorded in the call's session, bound to its arguments.

use super::Runtime;
use crate::policy::args_hash;
use crate::session::{Event, Pending, Session, SessionId, StoreError, pending_in};

#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error("that call is no longer waiting: it was answered, refused or gave up")]
    Gone,
    #[error("{0}")]
    WrongConfirmation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Runtime {
    /// Served calls waiting for approval, in sessions other than `mine`.
    pub fn pending_approvals(&self, mine: &SessionId) -> Vec<Pending> {
        let Ok(ids) = self.store.sessions_waiting() else {
            return Vec::new();
        };
        ids.iter()
            .filter(|id| *id != mine)
            .filter_map(|id| self.store.events(id).ok())
            .flat_map(|records| pending_in(&records))
            .collect()
    }

    /// The call as it waits now: still waiting, with the same arguments.
    fn still_waiting(&self, p: &Pending) -> Result<Pending, PendingError> {
        let records = self.store.events(&p.session)?;
        pending_in(&records)
            .into_iter()
            .find(|now| now.step == p.step && now.tool == p.tool && now.args == p.args)
            .ok_or(PendingError::Gone)
    }

    /// Approve a waiting call as `actor`. A gated call needs its target
    /// typed (and, overriding a freeze, a reason after it), as in the app.
    pub fn approve_pending(
        &self,
        actor: &str,
        p: &Pending,
        typed: &str,
    ) -> Result<(), PendingError> {
        let now = self.still_waiting(p)?;
        let gate = now.decision.gate();
        let reason = match gate {
            Some(g) => g.check(typed).map_err(PendingError::WrongConfirmation)?,
            None => None,
        };
        let session = Session::attach(std::sync::Arc::clone(&self.store), &now.session, actor)?;
        session.record(Event::Approved {
            step: now.step.clone(),
            by: actor.to_string(),
            args_hash: args_hash(&now.tool, &now.args),
            gated: gate.is_some(),
            reason,
        })?;
        Ok(())
    }

    /// Refuse a waiting call as `actor`: it will not run.
    pub fn refuse_pending(&self, actor: &str, p: &Pending) -> Result<(), PendingError> {
        let now = self.still_waiting(p)?;
        let session = Session::attach(std::sync::Arc::clone(&self.store), &now.session, actor)?;
        session.record(Event::StepSkipped {
            step: now.step,
            reason: format!("refused by {actor} in the opsbot app"),
        })?;
        Ok(())
    }
}
