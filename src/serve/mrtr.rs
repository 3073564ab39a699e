//! Approvals for clients on MCP 2026-07-28, where a server may no longer
//! send its client requests in the middle of a call. A call that needs a
//! person answers `input_required`: the approval form as an elicitation,
//! and a sealed `requestState`. The client asks its user and calls again
//! with the answer and the state. The state is sealed with a key only this
//! process holds and bound to the hash of the exact tool and arguments, so
//! an edited call, a forged or expired state, or a state used twice is
//! refused.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ElicitResult, ElicitationAction, InputRequest, InputRequests,
    InputRequiredResult, RequestStateCodec, SealOptions,
};
use rmcp::service::{RequestContext, RoleServer};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::approval::{self, Answer, Granted, Refused};
use crate::plan::Step;
use crate::policy::Decision;

/// The key under which the approval form is asked and answered.
const FORM: &str = "approval";

#[derive(Serialize, Deserialize)]
struct State {
    /// Once only: a second call with the same state is a replay.
    nonce: String,
}

/// This process's sealing key: random, never stored, so a state outlives
/// neither the process nor its `approval_timeout_secs`.
fn codec() -> &'static RequestStateCodec {
    static CODEC: OnceLock<RequestStateCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let mut seed = sha2::Sha256::new();
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
            seed.update(bytes);
        }
        seed.update(std::process::id().to_le_bytes());
        seed.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        seed.update(format!("{:p}", &seed).as_bytes());
        RequestStateCodec::new_unchecked(seed.finalize().to_vec())
    })
}

fn used() -> &'static Mutex<HashSet<String>> {
    static USED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    USED.get_or_init(Mutex::default)
}

/// Whether the request comes from a client on MCP 2026-07-28 or later.
pub fn modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_some_and(|v| !v.has_initialize())
}

/// What the call answers instead of running: the form to fill in and the
/// state to send back with it.
pub fn ask(
    step: &Step,
    decision: &Decision,
    client: &str,
    args_hash: &str,
    ttl: Duration,
) -> Result<InputRequiredResult, String> {
    let form = serde_json::json!({
        "method": "elicitation/create",
        "params": {
            "message": approval::prompt(step, decision, client),
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "approve": { "type": "boolean", "description": "Approve this call." },
                    "confirm": { "type": "string", "description": "For a gated call: type the target named in the message." },
                    "reason": { "type": "string", "description": "Why (required when overriding a change freeze)." }
                },
                "required": ["approve"]
            }
        }
    });
    let request: InputRequest = serde_json::from_value(form).map_err(|e| e.to_string())?;
    let nonce = hex(&sha2::Sha256::digest(format!(
        "{args_hash}{:?}{}",
        std::time::SystemTime::now(),
        used().lock().map(|u| u.len()).unwrap_or(0)
    )));
    let state = codec()
        .seal_json_with(
            &State { nonce },
            &SealOptions::new()
                .associated_data(args_hash.as_bytes())
                .ttl(ttl),
        )
        .map_err(|e| e.to_string())?;
    let mut requests = InputRequests::new();
    requests.insert(FORM.into(), request);
    Ok(InputRequiredResult::new(Some(requests), Some(state)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The person's answer carried by a retried call, if it carries one:
/// `None` for a first call. Anything but a clear, untampered yes is a no.
pub fn answer(
    request: &CallToolRequestParams,
    args_hash: &str,
    decision: &Decision,
    by: String,
) -> Option<Result<Granted, Refused>> {
    let sealed = request.request_state.as_deref()?;
    let refused = |why: &str| Some(Err(Refused::NotAnApproval(why.to_string())));
    let Ok(state) = codec().open_json_with::<State>(sealed, args_hash.as_bytes()) else {
        return refused(
            "its requestState is not one opsbot gave for this exact call: edited arguments, another call's state, a forged or an expired one",
        );
    };
    let fresh = used()
        .lock()
        .map(|mut u| u.insert(state.nonce))
        .unwrap_or(false);
    if !fresh {
        return refused("its requestState was used already");
    }
    let Some(reply) = request.input_responses.as_ref().and_then(|r| r.get(FORM)) else {
        return refused("the call came back without an answer to the approval form");
    };
    let Ok(reply) = serde_json::from_value::<ElicitResult>(reply.clone()) else {
        return refused("its answer to the approval form is not an elicitation result");
    };
    if reply.action != ElicitationAction::Accept {
        return Some(Err(Refused::Declined(by)));
    }
    let Some(content) = reply.content else {
        return refused("it was empty");
    };
    match serde_json::from_value::<Answer>(content) {
        Ok(a) => Some(approval::check(a, decision).map(|reason| Granted { by, reason })),
        Err(e) => Some(Err(Refused::NotAnApproval(format!(
            "it does not fit the approval form: {e}"
        )))),
    }
}
