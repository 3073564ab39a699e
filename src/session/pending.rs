//! Calls made through `opsbot serve` that wait for a person: found in the
//! log, so an app on the same data directory can list and answer them.

use serde_json::{Map, Value};

use super::{Event, Record, SessionId, SessionState, StepStatus, Store, StoreError};
use crate::plan::StepId;
use crate::policy::Decision;

/// One served call waiting for approval.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub session: SessionId,
    pub step: StepId,
    pub tool: String,
    pub args: Map<String, Value>,
    /// Who asks: a served client as it introduced itself ("name
    /// version"), or the person whose own run or app waits (four eyes).
    pub client: String,
    pub decision: Decision,
    /// When it started waiting (RFC 3339).
    pub since: String,
}

/// How far back (in records) to look for waiting calls: a call waits
/// minutes, not days.
const WINDOW: i64 = 5_000;

impl Store {
    /// Sessions with a call that started waiting for approval recently.
    pub fn sessions_waiting(&self) -> Result<Vec<SessionId>, StoreError> {
        if let Some(pg) = self.pg() {
            return self.failed_if(pg.sessions_waiting(WINDOW));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            // Distinct here, not in SQL: SQLite would rather walk the
            // index by session than use the small one on waits.
            "SELECT session_id FROM events
             WHERE kind = 'awaiting_approval'
               AND seq > (SELECT COALESCE(MAX(seq), 0) FROM events) - ?1",
        )?;
        let mut ids = stmt
            .query_map([WINDOW], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort();
        ids.dedup();
        Ok(ids.into_iter().map(SessionId::from_stored).collect())
    }
}

/// The calls of one session that wait for someone else: a served call
/// (its client has no person at hand), or a step whose rule asks for other
/// people's approvals (four eyes). Approved, refused or finished ones are
/// not listed, nor ordinary steps waiting in someone's own app or terminal.
pub fn pending_in(records: &[Record]) -> Vec<Pending> {
    let served = records.iter().find_map(|r| match &r.event {
        Event::ClientConnected { name, version, .. } => Some(format!("{name} {version}")),
        _ => None,
    });
    let state = SessionState::replay(records);
    // A run that ended waits for no one any more (its session may still
    // say a step awaited approval when it stopped).
    if state.outcome.is_some() {
        return Vec::new();
    }
    // Who asks: the client, or the person whose run or app waits.
    let client = served.clone().unwrap_or_else(|| state.actor.clone());
    let mut out = Vec::new();
    for (id, st) in &state.steps {
        if st.status() != StepStatus::AwaitingApproval {
            continue;
        }
        let Some(decision) = st.decision.clone() else {
            continue;
        };
        if served.is_none() && decision.quorum().is_none() {
            continue;
        }
        let step = records.iter().rev().find_map(|r| match &r.event {
            Event::PlanProposed { plan, .. } => plan.step(id).cloned(),
            _ => None,
        });
        let since = records.iter().rev().find_map(|r| match &r.event {
            Event::AwaitingApproval { step, .. } if step == id => Some(r.ts.clone()),
            _ => None,
        });
        if let (Some(step), Some(since)) = (step, since) {
            out.push(Pending {
                session: records[0].session.clone(),
                step: id.clone(),
                tool: step.tool,
                args: step.args,
                client: client.clone(),
                decision,
                since,
            });
        }
    }
    out
}
