//! Requests a server makes of its client (sampling, elicitation, roots)
//! while `opsbot serve` serves: opsbot has no model or form of its own to
//! answer them with, so they go up to the client whose call the server is
//! working on. The serving side holds a [`Lend`] for as long as that call
//! runs; with none held, a request is declined cleanly.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

// Sampling and roots are deprecated from MCP 2026-07-28 (SEP-2577); servers
// on earlier versions still ask, and the clients that answer them are relayed to.
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ListRootsResult};
use rmcp::model::{ElicitRequestParams, ElicitResult};

pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, rmcp::ErrorData>> + Send + 'a>>;

/// Who answers a server's requests: an upstream client, through opsbot's
/// policy and log.
#[allow(deprecated)]
pub trait Upstream: Send + Sync {
    fn sample(
        &self,
        server: &str,
        params: CreateMessageRequestParams,
    ) -> Answer<'_, CreateMessageResult>;
    fn elicit(&self, server: &str, params: ElicitRequestParams) -> Answer<'_, ElicitResult>;
    fn roots(&self, server: &str) -> Answer<'_, ListRootsResult>;
}

type Lender = (u64, Option<String>, Arc<dyn Upstream>);

/// The upstream clients that may be asked, newest last. Present only when
/// serving: opsbot then tells servers it can sample, elicit and list roots.
#[derive(Clone, Default)]
pub struct Relay {
    lenders: Arc<Mutex<Vec<Lender>>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relay")
    }
}

/// A client lent to one server's requests (or, with no server, to any
/// server with no call in flight) until it is dropped.
pub struct Lend {
    relay: Relay,
    id: u64,
}

impl Drop for Lend {
    fn drop(&mut self) {
        if let Ok(mut l) = self.relay.lenders.lock() {
            l.retain(|(id, _, _)| *id != self.id);
        }
    }
}

impl Relay {
    pub fn lend(&self, server: Option<&str>, to: Arc<dyn Upstream>) -> Lend {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.lenders.lock() {
            l.push((id, server.map(str::to_string), to));
        }
        Lend {
            relay: self.clone(),
            id,
        }
    }

    /// Who answers `server` now: the newest client with a call on it, else
    /// the newest client at all.
    pub fn upstream(&self, server: &str) -> Option<Arc<dyn Upstream>> {
        let l = self.lenders.lock().ok()?;
        let on = |want: Option<&str>| {
            l.iter()
                .rev()
                .find(|(_, s, _)| s.as_deref() == want)
                .map(|(_, _, u)| Arc::clone(u))
        };
        on(Some(server)).or_else(|| on(None))
    }
}
