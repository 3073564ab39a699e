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

#[derive(Clone)]
pub(crate) struct OpsbotClient {
    pub progress: ProgressRoutes,
    /// Progress counted in the server's order (see ledger.rs).
    pub progress_ledger: Arc<super::ledger::ProgressLedger>,
    pub tools_changed: Arc<Notify>,
    /// True from a `tools/list_changed` until the tools are listed again:
    /// calls wait for the new list, so none is made against a definition
    /// the server has already said it replaced.
    pub tools_stale: Arc<tokio::sync::watch::Sender<bool>>,
    /// Where the server's log messages go: its name and the servers' events.
    pub logs: Option<(String, tokio::sync::broadcast::Sender<super::ServerEvent>)>,
    /// Where the server's own requests go.
    pub relay: Option<super::relay::Relay>,
    /// The roots configured for this server (`file://` URIs), answered
    /// without asking anyone.
    pub roots: Arc<Vec<String>>,
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
        let key = super::ledger::key(&params.progress_token);
        if let Some(tx) = route {
            let _ = tx.send(Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
        self.progress_ledger.relayed(&key);
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

    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        self.sample(params).await
    }

    async fn create_elicitation(
        &self,
        params: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        self.elicit(params).await
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        self.roots().await
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
        self.tools_stale.send_replace(true);
        self.tools_changed.notify_one();
    }

    /// What the relay can answer (serving: everything, passed up to the
    /// client; in the app: elicitation, and sampling with a profile) and
    /// the configured roots; never a claim opsbot would only decline.
    fn get_info(&self) -> ClientConfig {
        let offers = self
            .relay
            .as_ref()
            .map(super::relay::Relay::offers)
            .unwrap_or_default();
        let mut caps = serde_json::Map::new();
        if offers.sampling {
            caps.insert("sampling".into(), serde_json::json!({}));
        }
        if offers.elicitation {
            caps.insert(
                "elicitation".into(),
                serde_json::json!({ "form": {}, "url": {} }),
            );
        }
        if offers.roots {
            caps.insert("roots".into(), serde_json::json!({ "listChanged": true }));
        } else if !self.roots.is_empty() {
            caps.insert("roots".into(), serde_json::json!({ "listChanged": false }));
        }
        if offers.tasks {
            caps.insert(
                "extensions".into(),
                serde_json::json!({ (rmcp::model::TASKS_EXTENSION_ID): {} }),
            );
        }
        let capabilities: ClientCapabilities =
            serde_json::from_value(serde_json::Value::Object(caps)).unwrap_or_default();
        ClientConfig::new(
            capabilities,
            Implementation::new("opsbot", env!("CARGO_PKG_VERSION")),
        )
    }
}

impl Default for OpsbotClient {
    fn default() -> Self {
        Self {
            progress: ProgressRoutes::default(),
            progress_ledger: Arc::default(),
            tools_changed: Arc::default(),
            tools_stale: Arc::new(tokio::sync::watch::Sender::new(false)),
            logs: None,
            relay: None,
            roots: Arc::default(),
        }
    }
}

impl OpsbotClient {
    /// A sampling request: to the answerer lent for this server (the
    /// serving client, or the app's `[sampling] profile`); otherwise a
    /// clear refusal (the code MCP uses for a user's no), never "method
    /// not found". Asked as a request of its own or inside an
    /// `input_required` result alike.
    #[allow(deprecated)]
    pub(crate) async fn sample(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
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

    /// Input from the person, through the lent answerer; declined without one.
    pub(crate) async fn elicit(
        &self,
        params: rmcp::model::ElicitRequestParams,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        if let Some((server, up)) = self.upstream() {
            return up.elicit(&server, params).await;
        }
        self.declined("input from the user (elicitation); no one here can answer it");
        Ok(rmcp::model::ElicitResult::new(
            rmcp::model::ElicitationAction::Decline,
        ))
    }

    /// The configured roots; else the serving client's; none otherwise.
    #[allow(deprecated)]
    pub(crate) async fn roots(&self) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        if !self.roots.is_empty() {
            let roots = self
                .roots
                .iter()
                .map(|uri| rmcp::model::Root::new(uri.clone()))
                .collect();
            return Ok(rmcp::model::ListRootsResult::new(roots));
        }
        match self.upstream() {
            Some((server, up)) => up.roots(&server).await,
            None => Ok(rmcp::model::ListRootsResult::default()),
        }
    }

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

/// Configured roots as `file://` URIs: a URI is kept, a path (`~/` for the
/// home directory, relative to the working directory) is made absolute.
pub(crate) fn root_uris(roots: &[String]) -> Vec<String> {
    roots
        .iter()
        .map(|r| {
            if r.contains("://") {
                return r.clone();
            }
            let path = match r.strip_prefix("~/") {
                Some(rest) => std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(rest))
                    .unwrap_or_else(|| r.into()),
                None => std::path::PathBuf::from(r),
            };
            let path = std::path::absolute(&path).unwrap_or(path);
            let mut uri = String::from("file://");
            for c in path.to_string_lossy().chars() {
                match c {
                    ' ' => uri.push_str("%20"),
                    '%' => uri.push_str("%25"),
                    '#' => uri.push_str("%23"),
                    '?' => uri.push_str("%3F"),
                    c => uri.push(c),
                }
            }
            uri
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn roots_become_file_uris() {
        let roots = super::root_uris(&[
            "/srv/app data".into(),
            "file:///already".into(),
            "rel".into(),
        ]);
        assert_eq!(roots[0], "file:///srv/app%20data");
        assert_eq!(roots[1], "file:///already");
        assert!(roots[2].starts_with("file:///") && roots[2].ends_with("/rel"));
    }
}
