//! Answering calls made through `opsbot serve` that wait for a person, from
//! another process on the same log: the app's waiting list (`W`) and
//! `opsbot approvals`. The serving process watches the log for the answer,
//! so the answer is simply recorded in the call's session, bound to its
//! arguments.

use std::sync::Arc;

use super::Runtime;
use super::quorum::{Approval, approve_step};
use crate::policy::Policy;
use crate::session::{Event, Pending, Session, SessionId, Store, StoreError, pending_in};

#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error("that call is no longer waiting: it was answered, refused or gave up")]
    Gone,
    #[error("{0}")]
    WrongConfirmation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Served calls waiting for approval in `store`, except in session `except`.
pub fn pending_approvals(store: &Store, except: Option<&SessionId>) -> Vec<Pending> {
    let Ok(ids) = store.sessions_waiting() else {
        return Vec::new();
    };
    ids.iter()
        .filter(|id| Some(*id) != except)
        .filter_map(|id| store.events(id).ok())
        .flat_map(|records| pending_in(&records))
        .collect()
}

/// The call as it waits now: still waiting, with the same arguments.
fn still_waiting(store: &Store, p: &Pending) -> Result<Pending, PendingError> {
    let records = store.events(&p.session)?;
    pending_in(&records)
        .into_iter()
        .find(|now| now.step == p.step && now.tool == p.tool && now.args == p.args)
        .ok_or(PendingError::Gone)
}

/// Approve a waiting call as `actor`. A gated call needs its target typed
/// (and, overriding a freeze, a reason after it), as in the app; a four
/// eyes step counts the approval only from someone its rule accepts.
pub fn approve_pending(
    store: &Arc<Store>,
    policy: &Policy,
    actor: &str,
    p: &Pending,
    typed: &str,
) -> Result<Approval, PendingError> {
    let now = still_waiting(store, p)?;
    let gate = now.decision.gate();
    let reason = match gate {
        Some(g) => g.check(typed).map_err(PendingError::WrongConfirmation)?,
        None => None,
    };
    let session = Session::attach(Arc::clone(store), &now.session, actor)?;
    Ok(approve_step(
        store,
        policy,
        &session,
        &now.step,
        &now.tool,
        &now.args,
        Some(&now.decision),
        actor,
        gate.is_some(),
        reason,
    )?)
}

/// Refuse a waiting call as `actor`, from `place` (the app, the command
/// line), with an optional reason: it will not run.
pub fn refuse_pending(
    store: &Arc<Store>,
    actor: &str,
    p: &Pending,
    place: &str,
    why: Option<&str>,
) -> Result<(), PendingError> {
    let now = still_waiting(store, p)?;
    let session = Session::attach(Arc::clone(store), &now.session, actor)?;
    let why = why
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    session.record(Event::StepSkipped {
        step: now.step,
        reason: format!("refused by {actor} {place}{why}"),
    })?;
    Ok(())
}

impl Runtime {
    /// Served calls waiting for approval, in sessions other than `mine`.
    pub fn pending_approvals(&self, mine: &SessionId) -> Vec<Pending> {
        pending_approvals(&self.store, Some(mine))
    }

    /// Approve a waiting call as `actor` (see [`approve_pending`]).
    pub fn approve_pending(
        &self,
        actor: &str,
        p: &Pending,
        typed: &str,
    ) -> Result<Approval, PendingError> {
        approve_pending(&self.store, &self.policy, actor, p, typed)
    }

    /// Refuse a waiting call as `actor` from the app.
    pub fn refuse_pending(&self, actor: &str, p: &Pending) -> Result<(), PendingError> {
        refuse_pending(&self.store, actor, p, "in the opsbot app", None)
    }
}
