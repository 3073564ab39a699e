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

    /// opsbot does not lend its model to servers: a server's sampling
    /// request gets a clear refusal (the code MCP uses for a user's no),
    /// not "method not found". (Sampling is deprecated from MCP 2026-07-28;
    /// earlier servers may still ask.)
    #[allow(deprecated)]
    async fn create_message(
        &self,
        _params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        if let Some((server, events)) = &self.logs {
            let _ = events.send(super::ServerEvent::Declined {
                server: server.clone(),
                what: "a sampling request (opsbot does not let servers use a model)".into(),
            });
        }
        Err(rmcp::ErrorData::new(
            rmcp::model::ErrorCode(-1),
            "opsbot declined the sampling request: it does not let MCP servers use a model",
            None,
        ))
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("opsbot", env!("CARGO_PKG_VERSION")),
        )
    }
}
