//! Requests a server makes of its client (sampling, elicitation, roots).
//! Serving, they go up to the client whose call the server is working on:
//! the serving side holds a [`Lend`] for as long as that call runs. In the
//! app and headless commands, the runtime lends its own answerer (the
//! person at the terminal, through `crate::ask`). With none held, a
//! request is declined cleanly.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

// Sampling and roots are deprecated from MCP 2026-07-28 (SEP-2577); servers
// on earlier versions still ask, and the clients that answer them are relayed to.
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ListRootsResult};
use rmcp::model::{ElicitRequestParams, ElicitResult};

/// A refusal, with the code MCP uses for a user's no.
pub fn refusal(text: String) -> rmcp::ErrorData {
    rmcp::ErrorData::new(rmcp::model::ErrorCode(-1), text, None)
}

/// A sampling request's messages as `(role, text)`, content that is not
/// text named by its type (`[image content]`).
#[allow(deprecated)]
pub fn sampling_messages(params: &CreateMessageRequestParams) -> Vec<(String, String)> {
    let messages = serde_json::to_value(&params.messages).unwrap_or_default();
    messages
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|message| {
            let role = message
                .get("role")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("user")
                .to_string();
            let blocks = match message.get("content") {
                Some(serde_json::Value::Array(a)) => a.clone(),
                Some(one) => vec![one.clone()],
                None => Vec::new(),
            };
            let text: Vec<String> = blocks
                .iter()
                .map(
                    |b| match b.get("type").and_then(serde_json::Value::as_str) {
                        Some("text") => b
                            .get("text")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        Some(other) => format!("[{other} content]"),
                        None => String::new(),
                    },
                )
                .collect();
            (role, text.join("\n"))
        })
        .collect()
}

/// What a sampling request is recorded as (its last message) and the
/// arguments policy decides it by.
#[allow(deprecated)]
pub fn sampling_subject(
    params: &CreateMessageRequestParams,
    messages: &[(String, String)],
) -> (String, serde_json::Map<String, serde_json::Value>) {
    let subject = messages
        .last()
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| format!("{} message(s)", messages.len()));
    let mut args = serde_json::Map::new();
    args.insert("max_tokens".into(), params.max_tokens.into());
    args.insert("messages".into(), messages.len().into());
    (subject, args)
}

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

/// What opsbot tells servers it can answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
    /// Declare the tasks extension: servers may answer a call with a task.
    pub tasks: bool,
    /// Hand a server's task to the client (serving) instead of following
    /// it to its end.
    pub hands_on_tasks: bool,
}

/// The answerers that may be asked, newest last, and what they can answer.
#[derive(Clone, Default)]
pub struct Relay {
    lenders: Arc<Mutex<Vec<Lender>>>,
    next: Arc<AtomicU64>,
    offers: Offers,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relay")
    }
}

/// A client lent to one server's requests (or, with no server, to any
/// server with no call in flight while it is the only client) until it is
/// dropped.
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
    /// Serving: everything a client may answer is passed up to one.
    pub fn serving() -> Self {
        Self::offering(Offers {
            sampling: true,
            elicitation: true,
            roots: true,
            tasks: true,
            hands_on_tasks: true,
        })
    }

    pub fn offering(offers: Offers) -> Self {
        Self {
            offers,
            ..Self::default()
        }
    }

    pub fn offers(&self) -> Offers {
        self.offers
    }

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

    /// Who answers `server` now: the newest client with a call on it; with
    /// none, the one client connected, if only one is (with several, a
    /// request made outside any call could reach the wrong person, so it is
    /// declined).
    pub fn upstream(&self, server: &str) -> Option<Arc<dyn Upstream>> {
        let l = self.lenders.lock().ok()?;
        if let Some((_, _, u)) = l
            .iter()
            .rev()
            .find(|(_, s, _)| s.as_deref() == Some(server))
        {
            return Some(Arc::clone(u));
        }
        let mut idle = l.iter().filter(|(_, s, _)| s.is_none());
        match (idle.next(), idle.next()) {
            (Some((_, _, u)), None) => Some(Arc::clone(u)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    #[allow(deprecated)]
    impl Upstream for Named {
        fn sample(
            &self,
            _: &str,
            _: CreateMessageRequestParams,
        ) -> Answer<'_, CreateMessageResult> {
            Box::pin(async { Err(rmcp::ErrorData::internal_error(self.0, None)) })
        }
        fn elicit(&self, _: &str, _: ElicitRequestParams) -> Answer<'_, ElicitResult> {
            Box::pin(async { Err(rmcp::ErrorData::internal_error(self.0, None)) })
        }
        fn roots(&self, _: &str) -> Answer<'_, ListRootsResult> {
            Box::pin(async { Err(rmcp::ErrorData::internal_error(self.0, None)) })
        }
    }

    async fn who(relay: &Relay, server: &str) -> Option<String> {
        let up = relay.upstream(server)?;
        Some(up.roots(server).await.err()?.message.to_string())
    }

    #[tokio::test]
    async fn requests_go_to_the_client_whose_call_it_is_and_never_to_a_guess() {
        let relay = Relay::default();
        assert_eq!(who(&relay, "fx").await, None, "no client: declined");
        let alice = relay.lend(None, Arc::new(Named("alice")));
        assert_eq!(
            who(&relay, "fx").await.as_deref(),
            Some("alice"),
            "the only client"
        );
        let bob = relay.lend(None, Arc::new(Named("bob")));
        assert_eq!(
            who(&relay, "fx").await,
            None,
            "two clients, no call: declined"
        );
        let call = relay.lend(Some("fx"), Arc::new(Named("bob")));
        assert_eq!(
            who(&relay, "fx").await.as_deref(),
            Some("bob"),
            "bob's call on fx"
        );
        assert_eq!(who(&relay, "other").await, None);
        drop(call);
        drop(bob);
        assert_eq!(who(&relay, "fx").await.as_deref(), Some("alice"));
        drop(alice);
        assert_eq!(who(&relay, "fx").await, None);
    }
}
