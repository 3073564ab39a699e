//! The planner's sink: model calls become session events, budgets are
//! checked before each call, and the phase feeds the live "planning" line.

use crate::planner::{ModelCall, Phase, PlanSink};
use crate::session::{Event, Session, StoreError};

use super::Runtime;

/// The planner's reports, turned into session events and budget checks.
pub(super) struct SessionSink<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) session: &'a Session,
    /// A model call could not be recorded: planning must not go on with
    /// an audit log that misses it.
    pub(super) problem: std::sync::Mutex<Option<StoreError>>,
}

impl SessionSink<'_> {
    fn keep(&self, result: Result<crate::session::Record, StoreError>) {
        if let Err(e) = result
            && let Ok(mut p) = self.problem.lock()
        {
            p.get_or_insert(e);
        }
    }
}

impl PlanSink for SessionSink<'_> {
    fn before_call(&self) -> Result<(), String> {
        if let Ok(p) = self.problem.lock()
            && let Some(e) = p.as_ref()
        {
            return Err(format!("the audit log cannot be written ({e})"));
        }
        let budget = &self.rt.config.config.llm.budget;
        if *budget == crate::config::LlmBudget::default() {
            return Ok(());
        }
        let today = self
            .rt
            .store
            .llm_spend_today()
            .map_err(|e| format!("cannot read today's model use to check the budget: {e}"))?;
        crate::usage::check(budget, &self.session.state().llm, &today)
    }

    fn call_finished(&self, call: ModelCall) {
        let cost = crate::usage::cost(
            &self.rt.config.config.llm.prices,
            &call.model,
            call.prompt_tokens,
            call.completion_tokens,
        );
        self.keep(self.session.record(Event::LlmCall {
            profile: call.profile,
            model: call.model,
            prompt_tokens: call.prompt_tokens,
            completion_tokens: call.completion_tokens,
            cost_usd: cost,
            duration_ms: u64::try_from(call.duration.as_millis()).unwrap_or(u64::MAX),
            status: call.status,
        }));
    }

    fn phase(&self, phase: Phase) {
        self.rt.planning.send_modify(|p| {
            if let Some(p) = p {
                p.phase = Some(phase);
            }
        });
    }

    fn progress(&self, tokens: u64) {
        self.rt.planning.send_if_modified(|p| match p {
            Some(p) if p.tokens != tokens => {
                p.tokens = tokens;
                true
            }
            _ => false,
        });
    }

    fn draft(&self, steps: &[crate::plan::Step]) {
        self.rt.planning.send_modify(|p| {
            if let Some(p) = p {
                p.draft = steps.to_vec();
            }
        });
    }

    fn cancel_token(&self) -> tokio_util::sync::CancellationToken {
        self.rt
            .planning
            .borrow()
            .as_ref()
            .map(|p| p.cancel.clone())
            .unwrap_or_default()
    }

    fn notice(&self, text: &str) {
        self.keep(self.session.record(Event::Note {
            text: text.to_string(),
        }));
    }
}
