//! One tool call asked for by name (`opsbot call`, the app's `/call`):
//! planned without a planner, then proposed like any plan.

use super::{Planned, Runtime};
use crate::session::{Event, Outcome, Session, StoreError};

impl Runtime {
    /// Record `/call TOOL WORDS…`, build its one-step plan from the tool's
    /// schema and propose it (validated, decided, recorded). A call that
    /// cannot be built (unknown tool or argument, a value of the wrong
    /// type, a required argument missing) is an invalid plan that says
    /// what to write instead.
    pub async fn propose_call(
        &self,
        session: &Session,
        tool: &str,
        pairs: &[String],
        json: Option<&str>,
    ) -> Result<Planned, StoreError> {
        let mut said = format!("/call {tool}");
        for p in pairs {
            said.push(' ');
            said.push_str(p);
        }
        if let Some(j) = json {
            said.push_str(&format!(" --args {j}"));
        }
        let asked = Event::UserMessage { text: said };
        // The tool's own server (when nothing is cached for it yet) must be
        // listed before its schema is known; no other server is waited for.
        if let Some((server, _)) = tool.split_once('.') {
            self.servers.wait_for([server]).await;
        }
        let catalog = self.servers.catalog();
        match crate::plan::call::call_plan(&catalog, tool, pairs, json) {
            Ok(plan) => self.propose(session, plan, vec![asked]).await,
            Err(e) => {
                let error = e.to_string();
                session.record_all(&[
                    asked,
                    Event::PlanInvalid {
                        errors: vec![error.clone()],
                    },
                    Event::AssistantMessage {
                        text: format!("Nothing was called: {error}"),
                    },
                    Event::RunFinished {
                        outcome: Outcome::InvalidPlan,
                        summary: error.clone(),
                    },
                ])?;
                Ok(Planned::Invalid(vec![error]))
            }
        }
    }
}
