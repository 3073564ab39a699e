//! Policy for what a served client does besides calling tools: reading a
//! resource, getting a prompt, and a server's sampling requests. Each is
//! decided like a call to a tool named `SERVER.METHOD` (`github.resources/read`,
//! `notes.sampling/createMessage`) with its parameters as arguments, so the
//! same rules (tools, roles, conditions, schedules) reach them.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::Runtime;
use super::guard::Knowledge;
use crate::mcp::{Annotations, ToolInfo};
use crate::policy::Decision;
use crate::policy::Policy;
use crate::session::Session;

impl Runtime {
    /// The decision on `server`'s `method` with `args`, for this session's
    /// actor, now. None of these changes anything by itself, so without a
    /// rule they are allowed as reads are; a rule can deny them or ask for
    /// approval.
    pub fn decide_exchange(
        &self,
        session: &Session,
        server: &str,
        method: &str,
        args: &Map<String, Value>,
    ) -> Decision {
        self.judge().exchange(session, server, method, args)
    }

    /// Policy with what it knows of the past, as a value an answerer that
    /// outlives a borrow of the runtime can hold.
    pub(crate) fn judge(&self) -> Judge {
        Judge {
            policy: Arc::clone(&self.policy),
            knowledge: Arc::clone(&self.knowledge),
        }
    }
}

/// Run `f` with policy's context for `session`'s actor, now.
pub(super) fn in_context<R>(
    policy: &Policy,
    knowledge: &Mutex<Knowledge>,
    session: &Session,
    f: impl FnOnce(&crate::policy::Context<'_>) -> R,
) -> R {
    let roles = policy.roles_of(&session.actor);
    let k = knowledge.lock().unwrap_or_else(|p| p.into_inner());
    f(&crate::policy::Context {
        actor: &session.actor,
        roles: &roles,
        session: session.id.as_str(),
        now: time::OffsetDateTime::now_utc(),
        history: &k.history,
        pins: &k.pins,
        planned: &[],
    })
}

/// Policy and its knowledge of the past: decides for a session's actor, now.
#[derive(Clone)]
pub(crate) struct Judge {
    pub(super) policy: Arc<Policy>,
    pub(super) knowledge: Arc<Mutex<Knowledge>>,
}

impl Judge {
    pub(crate) fn with_context<R>(
        &self,
        session: &Session,
        f: impl FnOnce(&crate::policy::Context<'_>) -> R,
    ) -> R {
        in_context(&self.policy, &self.knowledge, session, f)
    }

    pub(crate) fn exchange(
        &self,
        session: &Session,
        server: &str,
        method: &str,
        args: &Map<String, Value>,
    ) -> Decision {
        let name = format!("{server}.{method}");
        let read = ToolInfo {
            server: server.to_string(),
            name: method.to_string(),
            description: String::new(),
            input_schema: Value::Object(Map::new()),
            annotations: Annotations::from_mcp(Some(
                &rmcp::model::ToolAnnotations::new().read_only(true),
            )),
            def_hash: String::new(),
            sent: None,
        };
        let call = crate::policy::Call {
            tool: &name,
            args,
            gated: false,
        };
        self.with_context(session, |ctx| {
            self.policy.decide(&call, Some(&read), ctx, None)
        })
    }
}
