//! `chat`: a team chat with channels.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::support::{Ctx, fail, now, ok};

const STATE: &str = "chat.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct ChatState {
    channels: BTreeMap<String, Vec<Message>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    at: String,
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NotifyArgs {
    /// Channel name, starting with '#'.
    pub channel: String,
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct HistoryArgs {
    pub channel: String,
}

#[derive(Clone)]
pub struct Chat {
    ctx: Arc<Ctx>,
    lock: Arc<Mutex<()>>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Chat {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            lock: Arc::new(Mutex::new(())),
            tool_router: Self::tool_router(),
        }
    }

    /// Post a message to a channel.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn notify(
        &self,
        Parameters(args): Parameters<NotifyArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if !args.channel.starts_with('#') {
            return Ok(fail(
                format!("channel `{}` must start with '#'", args.channel),
                json!({ "error": "bad_channel" }),
            ));
        }
        if let Some(r) = self.ctx.inject("notify", None, None).await {
            return Ok(r);
        }
        self.ctx.work(50).await;
        let _guard = self.lock.lock().await;
        let _file = self.ctx.lock_state(STATE)?;
        let mut state: ChatState = self.ctx.load(STATE);
        let messages = state.channels.entry(args.channel.clone()).or_default();
        messages.push(Message {
            at: now(),
            text: args.text.clone(),
        });
        let id = messages.len();
        self.ctx
            .save(STATE, &state)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ok(
            json!({ "channel": args.channel, "message_id": id, "posted": true }),
        ))
    }

    /// The messages of a channel, oldest first.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn history(
        &self,
        Parameters(args): Parameters<HistoryArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let state: ChatState = self.ctx.load(STATE);
        let messages = state
            .channels
            .get(&args.channel)
            .cloned()
            .unwrap_or_default();
        Ok(ok(
            json!({ "channel": args.channel, "count": messages.len(), "messages": messages }),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Chat {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox team chat.")
    }
}
