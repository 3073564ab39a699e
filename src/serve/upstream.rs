//! A served client answering its servers' requests: sampling (decided by
//! policy as `SERVER.sampling/createMessage`, so a rule can deny it per
//! server), elicitation and roots. Each request and its outcome is recorded
//! in the client's session; a client that cannot answer gets none sent,
//! and the server gets a clean decline, never "method not found".

use std::sync::Arc;

// Sampling and roots are deprecated from MCP 2026-07-28 (SEP-2577); servers
// and clients on earlier versions still use them.
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ListRootsResult};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use rmcp::{Peer, RoleServer};
use serde_json::Value;

use super::names::Naming;
use crate::mcp::relay::{
    Answer, Upstream, refusal as declined, sampling_messages, sampling_subject,
};
use crate::runtime::Runtime;
use crate::session::Session;

pub(super) struct Asker {
    rt: Arc<Runtime>,
    peer: Peer<RoleServer>,
    session: Arc<Session>,
    naming: Naming,
}

impl Asker {
    pub(super) fn new(
        rt: Arc<Runtime>,
        peer: Peer<RoleServer>,
        session: Arc<Session>,
        naming: Naming,
    ) -> Self {
        Self {
            rt,
            peer,
            session,
            naming,
        }
    }

    fn record(
        &self,
        server: &str,
        method: &str,
        subject: &str,
        rule: Option<String>,
        outcome: String,
    ) {
        let subject: String = subject.chars().take(200).collect();
        super::features::exchanged(&self.session, server, method, &subject, rule, outcome);
    }

    fn served(&self, server: &str) -> bool {
        self.naming.serves(server)
    }

    fn caps(&self) -> Option<rmcp::model::ClientCapabilities> {
        self.peer.peer_info().map(|i| i.capabilities.clone())
    }
}

#[allow(deprecated)]
impl Upstream for Asker {
    fn sample(
        &self,
        server: &str,
        params: CreateMessageRequestParams,
    ) -> Answer<'_, CreateMessageResult> {
        let server = server.to_string();
        Box::pin(async move {
            const METHOD: &str = "sampling/createMessage";
            let (subject, args) = sampling_subject(&params, &sampling_messages(&params));
            let decision = self
                .rt
                .decide_exchange(&self.session, &server, METHOD, &args);
            if decision.is_denied() || !self.served(&server) {
                let why = format!(
                    "denied by policy rule `{}`: {}",
                    decision.rule(),
                    decision.reason()
                );
                self.record(
                    &server,
                    METHOD,
                    &subject,
                    Some(decision.rule().into()),
                    format!("refused: {why}"),
                );
                return Err(declined(format!(
                    "opsbot declined the sampling request: {why}"
                )));
            }
            if self.caps().is_none_or(|c| c.sampling.is_none()) {
                self.record(
                    &server,
                    METHOD,
                    &subject,
                    None,
                    "declined: the client cannot sample".into(),
                );
                return Err(declined(
                    "opsbot declined the sampling request: its client does not sample".into(),
                ));
            }
            match self.peer.create_message(params).await {
                Ok(r) => {
                    self.record(
                        &server,
                        METHOD,
                        &subject,
                        Some(decision.rule().into()),
                        format!("ok: model {}", r.model),
                    );
                    Ok(r)
                }
                Err(e) => {
                    self.record(
                        &server,
                        METHOD,
                        &subject,
                        Some(decision.rule().into()),
                        format!("failed: {e}"),
                    );
                    Err(super::features::passed_error(e))
                }
            }
        })
    }

    fn elicit(&self, server: &str, params: ElicitRequestParams) -> Answer<'_, ElicitResult> {
        let server = server.to_string();
        Box::pin(async move {
            const METHOD: &str = "elicitation/create";
            let subject = serde_json::to_value(&params)
                .ok()
                .and_then(|p| p.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            if self.caps().is_none_or(|c| c.elicitation.is_none()) || !self.served(&server) {
                self.record(
                    &server,
                    METHOD,
                    &subject,
                    None,
                    "declined: the client cannot ask its user".into(),
                );
                return Ok(ElicitResult::new(ElicitationAction::Decline));
            }
            match self.peer.create_elicitation(params).await {
                Ok(r) => {
                    let action = serde_json::to_value(&r.action)
                        .ok()
                        .and_then(|a| a.as_str().map(str::to_string))
                        .unwrap_or_default();
                    self.record(&server, METHOD, &subject, None, format!("ok: {action}"));
                    Ok(r)
                }
                Err(e) => {
                    self.record(&server, METHOD, &subject, None, format!("failed: {e}"));
                    Err(super::features::passed_error(e))
                }
            }
        })
    }

    fn roots(&self, server: &str) -> Answer<'_, ListRootsResult> {
        let server = server.to_string();
        Box::pin(async move {
            const METHOD: &str = "roots/list";
            if self.caps().is_none_or(|c| c.roots.is_none()) || !self.served(&server) {
                return Ok(ListRootsResult::default());
            }
            match self.peer.list_roots().await {
                Ok(r) => {
                    let uris: Vec<&str> = r.roots.iter().map(|r| r.uri.as_str()).collect();
                    self.record(&server, METHOD, &uris.join(" "), None, "ok".into());
                    Ok(r)
                }
                Err(e) => {
                    self.record(&server, METHOD, "", None, format!("failed: {e}"));
                    Err(super::features::passed_error(e))
                }
            }
        })
    }
}
