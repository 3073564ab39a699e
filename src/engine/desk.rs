//! The approval desk: where approvals, skips and step cancellations reach a
//! running plan. Headless runs decide everything up front (`Approvals::Fixed`);
//! the TUI decides while the plan runs (`Approvals::Live`), and the engine
//! waits for it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::plan::StepId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approved for the tool and arguments with this hash.
    Approved(String),
    Skipped(String),
    Pending,
}

#[derive(Default)]
struct Book {
    rejected: Option<String>,
    approved: HashMap<StepId, String>,
    edited: HashMap<StepId, Map<String, Value>>,
    skipped: HashMap<StepId, String>,
    running: HashMap<StepId, CancellationToken>,
}

#[derive(Default)]
pub struct ApprovalDesk {
    book: Mutex<Book>,
    changed: Notify,
}

impl ApprovalDesk {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut book)
    }

    pub fn approve(&self, step: StepId, args_hash: String) {
        self.with(|b| {
            b.skipped.remove(&step);
            b.approved.insert(step, args_hash);
        });
        self.changed.notify_waiters();
    }

    /// Replace a step's arguments before it runs. Any approval is withdrawn:
    /// it was given for other arguments.
    pub fn edit(&self, step: StepId, args: Map<String, Value>) {
        self.with(|b| {
            b.approved.remove(&step);
            b.edited.insert(step, args);
        });
        self.changed.notify_waiters();
    }

    pub fn edited_args(&self, step: &StepId) -> Option<Map<String, Value>> {
        self.with(|b| b.edited.get(step).cloned())
    }

    /// Take an approval back.
    pub fn withdraw(&self, step: &StepId) {
        self.with(|b| b.approved.remove(step));
        self.changed.notify_waiters();
    }

    pub fn skip(&self, step: StepId, reason: String) {
        self.with(|b| {
            b.approved.remove(&step);
            b.skipped.insert(step, reason);
        });
        self.changed.notify_waiters();
    }

    /// Reject the whole plan: nothing more starts, and the run ends as
    /// rejected rather than as a run whose steps were all skipped.
    pub fn reject(&self, reason: String) {
        self.with(|b| b.rejected = Some(reason));
        self.changed.notify_waiters();
    }

    pub fn rejected(&self) -> Option<String> {
        self.with(|b| b.rejected.clone())
    }

    pub fn verdict(&self, step: &StepId) -> Verdict {
        self.with(|b| {
            if let Some(reason) = &b.rejected {
                Verdict::Skipped(reason.clone())
            } else if let Some(reason) = b.skipped.get(step) {
                Verdict::Skipped(reason.clone())
            } else if let Some(hash) = b.approved.get(step) {
                Verdict::Approved(hash.clone())
            } else {
                Verdict::Pending
            }
        })
    }

    /// Cancel one running step; true if it was running.
    pub fn cancel_step(&self, step: &StepId) -> bool {
        self.with(|b| b.running.get(step).map(CancellationToken::cancel).is_some())
    }

    pub fn running(&self) -> Vec<StepId> {
        self.with(|b| b.running.keys().cloned().collect())
    }

    pub(crate) fn started(&self, step: StepId, token: CancellationToken) {
        self.with(|b| b.running.insert(step, token));
    }

    pub(crate) fn finished(&self, step: &StepId) {
        self.with(|b| b.running.remove(step));
    }

    /// Resolves at the next change. Create it before checking the book so
    /// no change is missed in between.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}
