//! Policy for what a served client does besides calling tools: reading a
//! resource, getting a prompt, and a server's sampling requests. Each is
//! decided like a call to a tool named `SERVER.METHOD` (`github.resources/read`,
//! `notes.sampling/createMessage`) with its parameters as arguments, so the
//! same rules (tools, roles, conditions, schedules) reach them.

use serde_json::{Map, Value};

use super::Runtime;
use crate::mcp::{Annotations, ToolInfo};
use crate::policy::Decision;
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
        self.with_policy(session, |ctx| {
            self.policy.decide(&call, Some(&read), ctx, None)
        })
    }
}
