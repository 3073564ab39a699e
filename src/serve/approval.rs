//! Getting a person's approval for a call made through `opsbot serve`:
//! ask the client (MCP elicitation, showing exactly what will run), or wait
//! for someone to answer in an opsbot app on the same data directory; give
//! up after the configured time.

use std::time::Duration;

use rmcp::service::{ElicitationError, Peer, RoleServer};
use serde::{Deserialize, Serialize};

use crate::plan::Step;
use crate::policy::{Decision, args_hash};
use crate::session::{Event, Session};

/// What the client's user fills in.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Answer {
    /// Approve this call.
    pub approve: bool,
    /// For a gated call: type the target named in the message.
    #[serde(default)]
    pub confirm: Option<String>,
    /// Why (required when overriding a change freeze).
    #[serde(default)]
    pub reason: Option<String>,
}
rmcp::elicit_safe!(Answer);

/// The approval, as it goes into the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    pub by: String,
    pub reason: Option<String>,
}

/// Why a call was not approved; said to the client as the call's error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("{0} declined the call")]
    Declined(String),
    #[error("the confirmation did not match: type `{0}` to approve this gated call")]
    WrongConfirmation(String),
    #[error("overriding a change freeze needs a reason")]
    NoReason,
    #[error("{0}")]
    InApp(String),
    #[error(
        "no one approved the call within {0} s: approve it in an opsbot app on the same data directory (W lists the calls that wait), or use a client that supports elicitation"
    )]
    TimedOut(u64),
    #[error("the call was cancelled while it waited for approval")]
    Cancelled,
    #[error(
        "no one can approve this call: the client cannot ask its user (no elicitation) and no opsbot app is open on this data directory. Open `opsbot` on it (W lists calls that wait), or allow the call by policy"
    )]
    NoOne,
    /// The client answered the approval request, but not with an approval.
    #[error("the client's answer is not an approval ({0}); the call is refused")]
    NotAnApproval(String),
}

/// The message a client shows its user: what will run, and why it needs a
/// person.
pub fn prompt(step: &Step, decision: &Decision, client: &str) -> String {
    let args = serde_json::to_string_pretty(&step.args).unwrap_or_default();
    let mut text = format!(
        "{client} wants opsbot to call {}.\n\nArguments:\n{args}\n\nPolicy ({}): {}.",
        step.tool,
        decision.rule(),
        decision.reason()
    );
    if let Some(gate) = decision.gate() {
        text.push_str(&format!(
            "\n\nThis call is gated: to approve it, type `{}` in confirm.",
            gate.confirm
        ));
        if gate.reason_required {
            text.push_str(" It overrides a change freeze: say why in reason.");
        }
    }
    text
}

/// Ask the client's user. `None` when the client cannot be asked.
pub async fn elicit(
    peer: &Peer<RoleServer>,
    step: &Step,
    decision: &Decision,
    client: &str,
    actor: &str,
    timeout: Duration,
) -> Option<Result<Granted, Refused>> {
    let answer = peer
        .elicit_with_timeout::<Answer>(prompt(step, decision, client), Some(timeout))
        .await;
    let declined = || Refused::Declined(format!("{actor} (via {client})"));
    Some(match answer {
        Err(ElicitationError::CapabilityNotSupported) => return None,
        Err(ElicitationError::UserDeclined | ElicitationError::UserCancelled) => Err(declined()),
        Err(ElicitationError::Service(rmcp::ServiceError::Timeout { .. })) => {
            Err(Refused::TimedOut(timeout.as_secs()))
        }
        // Anything but a clear yes is a no: an answer that does not fit
        // the form, an empty one, or an error from the client.
        Err(ElicitationError::ParseError { error, .. }) => Err(Refused::NotAnApproval(format!(
            "it does not fit the approval form: {error}"
        ))),
        Err(ElicitationError::NoContent) => Err(Refused::NotAnApproval("it was empty".into())),
        Err(e) => Err(Refused::NotAnApproval(format!(
            "the client answered with an error: {e}"
        ))),
        Ok(None) => Err(declined()),
        Ok(Some(a)) => check(a, decision).map(|reason| Granted {
            by: format!("{actor} (via {client})"),
            reason,
        }),
    })
}

/// A yes is only a yes with the gate's typed target and, for a freeze
/// override, a reason.
pub(super) fn check(a: Answer, decision: &Decision) -> Result<Option<String>, Refused> {
    if !a.approve {
        return Err(Refused::Declined("the client's user".into()));
    }
    let reason = a.reason.filter(|r| !r.trim().is_empty());
    if let Some(gate) = decision.gate() {
        if a.confirm.as_deref().map(str::trim) != Some(gate.confirm.as_str()) {
            return Err(Refused::WrongConfirmation(gate.confirm.clone()));
        }
        if gate.reason_required && reason.is_none() {
            return Err(Refused::NoReason);
        }
    }
    Ok(reason)
}

/// Wait for an opsbot app on the same data directory to approve (an
/// `Approved` bound to these exact arguments) or refuse (`StepSkipped`)
/// the call. The log is the only channel between the two processes.
pub async fn wait_in_app(
    session: &Session,
    step: &Step,
    timeout: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Granted, Refused> {
    let hash = args_hash(&step.tool, &step.args);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(records) = session.store().events(&session.id) {
            for r in records.iter().rev() {
                match &r.event {
                    Event::Approved {
                        step: s,
                        by,
                        args_hash,
                        reason,
                        ..
                    } if *s == step.id && *args_hash == hash => {
                        return Ok(Granted {
                            by: by.clone(),
                            reason: reason.clone(),
                        });
                    }
                    Event::StepSkipped { step: s, reason } if *s == step.id => {
                        return Err(Refused::InApp(reason.clone()));
                    }
                    _ => {}
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Refused::Cancelled),
            _ = tokio::time::sleep_until(deadline) => return Err(Refused::TimedOut(timeout.as_secs())),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Four eyes: wait until enough people (as the rule says) approve the
/// call's exact arguments through the log, from their app or `opsbot
/// approvals`, or someone refuses it.
pub async fn wait_for_quorum(
    rt: &crate::runtime::Runtime,
    session: &Session,
    step: &Step,
    quorum: &crate::policy::Quorum,
    timeout: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Granted, Refused> {
    use crate::runtime::Standing;
    let hash = args_hash(&step.tool, &step.args);
    let deadline = tokio::time::Instant::now() + timeout;
    let requester = session.with_state(|s| s.actor.clone());
    let id = format!("{}:{}", session.id, step.id);
    rt.notify_waiting(&crate::runtime::Waiting {
        id: &id,
        tool: &step.tool,
        requester: &requester,
        wanted: &quorum.wanted(0, &requester),
    })
    .await;
    loop {
        if let Ok(records) = session.store().events(&session.id) {
            match rt.quorum_standing(session, &records, &step.id, &hash, quorum) {
                Standing::Refused(why) => return Err(Refused::InApp(why)),
                // Their approvals were written by other processes.
                Standing::Approved(people) if session.take_in_others().is_ok() => {
                    return Ok(Granted {
                        by: people.join(", "),
                        reason: None,
                    });
                }
                Standing::Approved(_) | Standing::Short(_) => {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Refused::Cancelled),
            _ = tokio::time::sleep_until(deadline) => return Err(Refused::TimedOut(timeout.as_secs())),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Gate;

    fn gated(reason_required: bool) -> Decision {
        Decision::NeedsApproval {
            rule: "prod".into(),
            reason: "production".into(),
            gate: Some(Gate {
                confirm: "production".into(),
                reason_required,
            }),
            quorum: None,
        }
    }

    fn answer(approve: bool, confirm: Option<&str>, reason: Option<&str>) -> Answer {
        Answer {
            approve,
            confirm: confirm.map(str::to_string),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_gated_call_needs_the_typed_target_and_a_freeze_a_reason() {
        assert_eq!(
            check(answer(true, Some("staging"), None), &gated(false)),
            Err(Refused::WrongConfirmation("production".into()))
        );
        assert_eq!(
            check(answer(true, Some(" production "), None), &gated(false)),
            Ok(None)
        );
        assert_eq!(
            check(answer(true, Some("production"), Some("  ")), &gated(true)),
            Err(Refused::NoReason)
        );
        assert_eq!(
            check(
                answer(true, Some("production"), Some("hotfix")),
                &gated(true)
            ),
            Ok(Some("hotfix".into()))
        );
        assert!(matches!(
            check(answer(false, Some("production"), None), &gated(false)),
            Err(Refused::Declined(_))
        ));
    }
}
