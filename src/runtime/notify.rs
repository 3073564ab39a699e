//! `[notify]`: approvals find their approver. When a step starts waiting
//! for other people, a configured MCP tool (a chat server's) is called
//! with what waits and the command that approves it, as a session of its
//! own: planned, decided by policy, run and recorded like any call.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Planned, Runtime};
use crate::engine::Approvals;
use crate::plan::{Plan, Step, StepId};
use crate::session::{Event, Outcome};

/// What waits, for the message.
pub struct Waiting<'a> {
    /// `SESSION:STEP`, as `opsbot approvals` takes it.
    pub id: &'a str,
    pub tool: &'a str,
    pub requester: &'a str,
    /// Who must still approve, in words.
    pub wanted: &'a str,
}

/// `template`'s string values with the placeholders filled in.
fn fill(
    template: &std::collections::BTreeMap<String, Value>,
    w: &Waiting<'_>,
) -> Map<String, Value> {
    let command = format!("opsbot approvals approve {}", w.id);
    let summary = format!(
        "{} asks to run {}; it waits for {}",
        w.requester, w.tool, w.wanted
    );
    let text = |s: &str| {
        s.replace("{summary}", &summary)
            .replace("{command}", &command)
            .replace("{tool}", w.tool)
            .replace("{requester}", w.requester)
            .replace("{wanted}", w.wanted)
            .replace("{id}", w.id)
    };
    template
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::String(text(s)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl Runtime {
    /// Tell people, through `[notify] tool`, that `w` waits for them; the
    /// outcome of that call (None when no tool is configured). Never fails
    /// the caller: a notification that cannot be sent is said in the log.
    pub async fn notify_waiting(&self, w: &Waiting<'_>) -> Option<Outcome> {
        let cfg = &self.config.config.notify;
        let tool = cfg.tool.as_deref()?;
        let args = fill(&cfg.args, w);
        let outcome = async {
            let session = self.new_session(w.requester)?;
            let plan = Plan {
                title: format!("tell approvers {} waits", w.id),
                steps: vec![Step::new("notify", tool, args)],
            };
            let asked = Event::UserMessage {
                text: format!("notify: {} waits for {}", w.id, w.wanted),
            };
            match self.propose(&session, plan, vec![asked]).await? {
                Planned::Ready { plan, decisions } => {
                    // Nobody is there to approve a notification: only what
                    // policy allows is sent.
                    if let Some((_, d)) = decisions.iter().find(|(_, d)| d.weight() > 0) {
                        let why = format!(
                            "not sent: policy {} it ({}: {}); allow {tool} with a rule to notify approvers",
                            if d.is_denied() { "denies" } else { "wants approval for" },
                            d.rule(),
                            d.reason()
                        );
                        session.record(Event::RunFinished {
                            outcome: Outcome::AwaitingApproval,
                            summary: why.clone(),
                        })?;
                        tracing::warn!("[notify] {why}");
                        return Ok(Outcome::AwaitingApproval);
                    }
                    let mut fixed: HashMap<StepId, String> = HashMap::new();
                    for (id, d) in &decisions {
                        let Some(step) = plan.step(id) else { continue };
                        let by = format!("{} (allowed by policy: {})", w.requester, d.rule());
                        if let super::Approval::Granted(hash) = super::approve_step(
                            &self.store,
                            &self.policy,
                            &session,
                            id,
                            &step.tool,
                            &step.args,
                            Some(d),
                            &by,
                            false,
                            None,
                        )? {
                            fixed.insert(id.clone(), hash);
                        }
                    }
                    self.run(
                        &session,
                        &plan,
                        &decisions,
                        &Approvals::Fixed(fixed),
                        tokio_util::sync::CancellationToken::new(),
                    )
                    .await
                }
                Planned::Invalid(errors) => {
                    tracing::warn!("[notify] {tool}: {}", errors.join("; "));
                    Ok(Outcome::InvalidPlan)
                }
                Planned::Clarify(_) | Planned::Cancelled => Ok(Outcome::Cancelled),
            }
        }
        .await;
        match outcome {
            Ok(o) => Some(o),
            Err::<_, crate::session::StoreError>(e) => {
                tracing::warn!("[notify] cannot record the notification: {e}");
                None
            }
        }
    }
}
