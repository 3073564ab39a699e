//! What the served servers say without being asked, passed on to a
//! client: changed tool, resource and prompt lists, updates of resources it
//! subscribed to, and log messages (redacted like the log).

use rmcp::{Peer, RoleServer};

use super::proxy::Proxy;
use crate::mcp::{Listing, ServerEvent};

impl Proxy {
    /// Follow the servers' events for this client until it goes away.
    pub(super) fn forward(&self, peer: Peer<RoleServer>) {
        let mut events = self.rt().servers.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            let names = |me: &Proxy| -> Vec<String> {
                me.rt()
                    .servers
                    .catalog()
                    .iter()
                    .map(|t| format!("{}#{}", t.qualified(), t.def_hash))
                    .collect()
            };
            // Servers still starting are not news: a client lists tools
            // once they have settled.
            me.rt().servers.wait_settled().await;
            let mut last = names(&me);
            while let Ok(event) = events.recv().await {
                let sent = match event {
                    // Logging is deprecated from MCP 2026-07-28; earlier peers use it.
                    #[allow(deprecated)]
                    ServerEvent::Log {
                        server,
                        mut message,
                    } if me.naming().serves(&server) => {
                        me.rt().store.redactor().value(&mut message.data);
                        let logger = message.logger.take().unwrap_or_default();
                        message.logger = Some(if logger.is_empty() {
                            server
                        } else {
                            format!("{server}/{logger}")
                        });
                        #[allow(deprecated)]
                        peer.notify_logging_message(message).await
                    }
                    ServerEvent::ListChanged { server, list } if me.naming().serves(&server) => {
                        match list {
                            Listing::Resources => peer.notify_resource_list_changed().await,
                            Listing::Prompts => peer.notify_prompt_list_changed().await,
                        }
                    }
                    ServerEvent::ResourceUpdated { server, uri } if me.following(&server, &uri) => {
                        match serde_json::from_value(serde_json::json!({ "uri": uri })) {
                            Ok(note) => peer.notify_resource_updated(note).await,
                            Err(_) => Ok(()),
                        }
                    }
                    // A server that (re)connects may bring other tools.
                    ServerEvent::Status { .. } => {
                        let now = names(&me);
                        if now == last {
                            continue;
                        }
                        last = now;
                        peer.notify_tool_list_changed().await
                    }
                    _ => continue,
                };
                if sent.is_err() {
                    return;
                }
            }
        });
    }
}
