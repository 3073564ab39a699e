//! opsbot's side of each MCP connection: relays progress to the call that
//! asked for it and notices when a server's tool list changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

// MCP logging is deprecated from the 2026-07-28 revision (SEP-2577), but
// clients and servers on earlier versions still use it: it is relayed.
#[allow(deprecated)]
use rmcp::model::LoggingMessageNotificationParam;
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::{Notify, mpsc};

use super::conn::Progress;

pub(crate) type ProgressRoutes =
    Arc<Mutex<HashMap<ProgressToken, mpsc::UnboundedSender<Progress>>>>;

#[derive(Clone, Default)]
pub(crate) struct OpsbotClient {
    pub progress: ProgressRoutes,
    pub tools_changed: Arc<Notify>,
    /// Where the server's log messages go: its name and the servers' events.
    pub logs: Option<(String, tokio::sync::broadcast::Sender<super::ServerEvent>)>,
    /// Serving: where the server's own requests go.
    pub relay: Option<super::relay::Relay>,
}

impl ClientHandler for OpsbotClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let route = self
            .progress
            .lock()
            .ok()
            .and_then(|routes| routes.get(&params.progress_token).cloned());
        if let Some(tx) = route {
            let _ = tx.send(Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }

    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some((server, events)) = &self.logs {
            let _ = events.send(super::ServerEvent::Log {
                server: server.clone(),
                message: params,
            });
        }
    }

    /// Relayed to the client whose call the server works on, when serving
    /// one that samples; otherwise a clear refusal (the code MCP uses for a
    /// user's no), never "method not found".
    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        if let Some((server, up)) = self.upstream() {
            return up.sample(&server, params).await;
        }
        self.declined("a sampling request (opsbot does not let servers use a model)");
        Err(rmcp::ErrorData::new(
            rmcp::model::ErrorCode(-1),
            "opsbot declined the sampling request: it does not let MCP servers use a model",
            None,
        ))
    }

    /// Relayed like sampling; otherwise declined.
    async fn create_elicitation(
        &self,
        params: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        if let Some((server, up)) = self.upstream() {
            return up.elicit(&server, params).await;
        }
        self.declined("input from the user (elicitation); no one here can answer it");
        Ok(rmcp::model::ElicitResult::new(
            rmcp::model::ElicitationAction::Decline,
        ))
    }

    /// The serving client's roots; none otherwise.
    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        match self.upstream() {
            Some((server, up)) => up.roots(&server).await,
            None => Ok(rmcp::model::ListRootsResult::default()),
        }
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.tell(|server| super::ServerEvent::ResourceUpdated {
            server,
            uri: params.uri.clone(),
        });
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tell(|server| super::ServerEvent::ListChanged {
            server,
            list: super::Listing::Resources,
        });
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tell(|server| super::ServerEvent::ListChanged {
            server,
            list: super::Listing::Prompts,
        });
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    /// Serving, opsbot can pass a server's requests up to its clients, so
    /// it says it can sample, elicit and list roots, and take tasks (it
    /// hands them on, or follows them for a client that cannot); otherwise
    /// it claims nothing it would only decline.
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.relay.is_some() {
            serde_json::from_value(serde_json::json!({
                "sampling": {},
                "elicitation": { "form": {}, "url": {} },
                "roots": { "listChanged": true },
                "extensions": { (rmcp::model::TASKS_EXTENSION_ID): {} }
            }))
            .unwrap_or_default()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(
            capabilities,
            Implementation::new("opsbot", env!("CARGO_PKG_VERSION")),
        )
    }
}

impl OpsbotClient {
    fn upstream(&self) -> Option<(String, std::sync::Arc<dyn super::relay::Upstream>)> {
        let (server, _) = self.logs.as_ref()?;
        let up = self.relay.as_ref()?.upstream(server)?;
        Some((server.clone(), up))
    }

    fn tell(&self, event: impl FnOnce(String) -> super::ServerEvent) {
        if let Some((server, events)) = &self.logs {
            let _ = events.send(event(server.clone()));
        }
    }

    fn declined(&self, what: &str) {
        self.tell(|server| super::ServerEvent::Declined {
            server,
            what: what.to_string(),
        });
    }
}
