//! What MCP carries besides tool calls (resources, prompts, completion,
//! subscriptions), reached one server at a time: for `opsbot serve`, which
//! decides and records each use before it gets here, and for `opsbot tools`.

use rmcp::model::ServerCapabilities;
use rmcp::{Peer, RoleClient};

use super::servers::{ServerStatus, Servers};

/// One resource (by URI), resource template (by URI template) or prompt
/// (by name, its arguments in `title`, required ones marked `*`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Offered {
    pub name: String,
    pub title: String,
    pub description: String,
}

/// What a server offers besides tools.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Offerings {
    pub resources: Vec<Offered>,
    pub templates: Vec<Offered>,
    pub prompts: Vec<Offered>,
}

impl Servers {
    /// The connection to `server`, started first if it waits unstarted;
    /// the error says why there is none.
    pub async fn peer(&self, server: &str) -> Result<Peer<RoleClient>, String> {
        let entry = self
            .entries
            .get(server)
            .ok_or_else(|| format!("there is no server `{server}`"))?;
        let waiting = matches!(
            *entry.status.borrow(),
            ServerStatus::Idle { .. } | ServerStatus::Starting
        );
        if waiting {
            self.started(entry, None).await;
        }
        let conn = entry.conn.read().ok().and_then(|c| c.clone());
        conn.filter(|_| entry.status.borrow().is_ready())
            .map(|c| c.peer.clone())
            .ok_or_else(|| {
                format!(
                    "server `{server}` is not available: {}",
                    entry.status.borrow().summary()
                )
            })
    }

    /// What a started server said it offers when it initialised.
    pub fn capabilities(&self, server: &str) -> Option<ServerCapabilities> {
        let entry = self.entries.get(server)?;
        let conn = entry.conn.read().ok().and_then(|c| c.clone())?;
        conn.peer.peer_info().map(|i| i.capabilities.clone())
    }

    /// What a started server offers besides tools: its resources, resource
    /// templates and prompts (none for a server not started; each list
    /// empty where the server offers none or does not answer within its
    /// call timeout).
    pub async fn offerings(&self, server: &str) -> Option<Offerings> {
        let entry = self.entries.get(server)?;
        if !entry.status.borrow().is_ready() {
            return None;
        }
        let conn = entry.conn.read().ok().and_then(|c| c.clone())?;
        let caps = conn.peer.peer_info().map(|i| i.capabilities.clone())?;
        let within = conn.timeout;
        let mut out = Offerings::default();
        if caps.resources.is_some() {
            if let Ok(Ok(list)) = tokio::time::timeout(within, conn.peer.list_all_resources()).await
            {
                out.resources = list
                    .into_iter()
                    .map(|r| Offered {
                        name: r.uri.clone(),
                        title: r.name.clone(),
                        description: r.description.clone().unwrap_or_default(),
                    })
                    .collect();
            }
            if let Ok(Ok(list)) =
                tokio::time::timeout(within, conn.peer.list_all_resource_templates()).await
            {
                out.templates = list
                    .into_iter()
                    .map(|t| Offered {
                        name: t.uri_template.clone(),
                        title: t.name.clone(),
                        description: t.description.clone().unwrap_or_default(),
                    })
                    .collect();
            }
        }
        if caps.prompts.is_some()
            && let Ok(Ok(list)) = tokio::time::timeout(within, conn.peer.list_all_prompts()).await
        {
            out.prompts = list
                .into_iter()
                .map(|p| Offered {
                    title: p
                        .arguments
                        .iter()
                        .flatten()
                        .map(|a| {
                            if a.required == Some(true) {
                                format!("{}*", a.name)
                            } else {
                                a.name.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    name: p.name,
                    description: p.description.unwrap_or_default(),
                })
                .collect();
        }
        Some(out)
    }

    /// The relay servers' requests go through, when serving.
    pub fn relay(&self) -> Option<&super::relay::Relay> {
        self.relay.as_ref()
    }
}
