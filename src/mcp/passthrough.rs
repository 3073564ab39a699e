//! What MCP carries besides tool calls (resources, prompts, completion,
//! subscriptions), reached one server at a time for `opsbot serve`, which
//! decides and records each use before it gets here.

use rmcp::model::ServerCapabilities;
use rmcp::{Peer, RoleClient};

use super::servers::{ServerStatus, Servers};

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

    /// The relay servers' requests go through, when serving.
    pub fn relay(&self) -> Option<&super::relay::Relay> {
        self.relay.as_ref()
    }
}
