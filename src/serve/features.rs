//! Resources, prompts and completion of the served servers, passed through
//! as sent. Resource URIs stay as their servers wrote them (a client reads
//! what it was given); resource and prompt *names* are served like tools.
//! A read and a prompt are decided by policy (`SERVER.resources/read`,
//! `SERVER.prompts/get`) and recorded; what they return goes to the client
//! unchanged.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, Prompt,
    ReadResourceRequestParams, ReadResourceResult, Reference, Resource, ResourceTemplate,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, Peer, RoleClient};
use serde_json::{Map, Value, json};

use super::approval::{self, Refused};
use super::proxy::Proxy;
use crate::plan::Step;
use crate::policy::Decision;
use crate::session::Event;

/// Where served resources and prompts come from, learnt from the lists.
#[derive(Default)]
pub(super) struct Routes {
    /// Resource URI → server.
    uris: HashMap<String, String>,
    /// (server, URI template), in list order.
    templates: Vec<(String, String)>,
    /// Served prompt name → (server, its own name).
    prompts: HashMap<String, (String, String)>,
}

impl Routes {
    /// The server of `uri`: the one that listed it, else the one whose
    /// template fits it.
    fn server_of(&self, uri: &str) -> Option<String> {
        self.uris.get(uri).cloned().or_else(|| {
            self.templates
                .iter()
                .find(|(_, t)| fits(t, uri))
                .map(|(s, _)| s.clone())
        })
    }
}

/// Whether `uri` fits an RFC 6570 template's simple `{var}` expressions.
fn fits(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{');
    let Some(head) = parts.next() else {
        return false;
    };
    let Some(r) = rest.strip_prefix(head) else {
        return false;
    };
    rest = r;
    for part in parts {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        if literal.is_empty() {
            // The last variable takes the rest.
            return !rest.is_empty();
        }
        match rest.find(literal) {
            Some(at) if at > 0 => rest = &rest[at + literal.len()..],
            _ => return false,
        }
    }
    rest.is_empty()
}

fn unavailable(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// The code opsbot answers a refused read or prompt with: what a tool
/// call would say in an error result, as a JSON-RPC error (these results
/// have no `isError`).
fn refused(text: String) -> McpError {
    McpError::invalid_request(text, None)
}

impl Proxy {
    /// The exposed servers that said they offer `what`, started if needed.
    async fn offering(
        &self,
        what: fn(&rmcp::model::ServerCapabilities) -> bool,
    ) -> Vec<(String, Peer<RoleClient>)> {
        let servers = &self.rt().servers;
        let names: Vec<String> = servers
            .names()
            .filter(|n| {
                self.naming()
                    .only
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|x| x == n))
            })
            .map(str::to_string)
            .collect();
        let mut out = Vec::new();
        for name in names {
            let Ok(peer) = servers.peer(&name).await else {
                continue;
            };
            if servers.capabilities(&name).as_ref().is_some_and(what) {
                out.push((name, peer));
            }
        }
        out
    }

    /// The server that serves `uri`, and a connection to it.
    async fn route_uri(&self, uri: &str) -> Result<(String, Peer<RoleClient>), McpError> {
        let known = self.routes().server_of(uri);
        let server = match known {
            Some(s) => s,
            None => {
                // Not listed yet in this connection: list, then look again.
                let _ = self.all_resources().await;
                let _ = self.all_templates().await;
                self.routes().server_of(uri).ok_or_else(|| {
                    McpError::resource_not_found(
                        format!("no served server lists the resource {uri}"),
                        None,
                    )
                })?
            }
        };
        let peer = self.rt().servers.peer(&server).await.map_err(unavailable)?;
        Ok((server, peer))
    }

    /// A resource, template or prompt as clients may see it under
    /// `[serve] flagged`: withheld when the scan flags its texts (and then
    /// not routed either), cleaned, or as it is.
    fn screened<T: serde::Serialize + serde::de::DeserializeOwned>(&self, item: T) -> Option<T> {
        use crate::config::Flagged;
        let mode = self.rt().config.config.serve.flagged;
        if mode == Flagged::Pass {
            return Some(item);
        }
        let mut v = serde_json::to_value(&item).ok()?;
        if crate::policy::scan::definition(&v).is_empty() {
            return Some(item);
        }
        match mode {
            Flagged::Hide => None,
            _ => {
                crate::policy::scan::sanitize(&mut v);
                serde_json::from_value(v).ok().or(Some(item))
            }
        }
    }

    pub(super) async fn all_resources(&self) -> Result<ListResourcesResult, McpError> {
        let mut all: Vec<Resource> = Vec::new();
        for (server, peer) in self.offering(|c| c.resources.is_some()).await {
            let Ok(list) = peer.list_all_resources().await else {
                continue;
            };
            let list: Vec<Resource> = list.into_iter().filter_map(|x| self.screened(x)).collect();
            let mut r = self.routes();
            for mut res in list {
                r.uris.insert(res.uri.clone(), server.clone());
                res.name = self.naming().name_of(&server, &res.name);
                all.push(res);
            }
        }
        Ok(ListResourcesResult::with_all_items(all))
    }

    pub(super) async fn all_templates(&self) -> Result<ListResourceTemplatesResult, McpError> {
        let mut all: Vec<ResourceTemplate> = Vec::new();
        for (server, peer) in self.offering(|c| c.resources.is_some()).await {
            let Ok(list) = peer.list_all_resource_templates().await else {
                continue;
            };
            let list: Vec<ResourceTemplate> =
                list.into_iter().filter_map(|x| self.screened(x)).collect();
            let mut r = self.routes();
            r.templates.retain(|(s, _)| *s != server);
            for mut t in list {
                r.templates.push((server.clone(), t.uri_template.clone()));
                t.name = self.naming().name_of(&server, &t.name);
                all.push(t);
            }
        }
        Ok(ListResourceTemplatesResult::with_all_items(all))
    }

    pub(super) async fn all_prompts(&self) -> Result<ListPromptsResult, McpError> {
        let mut all: Vec<Prompt> = Vec::new();
        for (server, peer) in self.offering(|c| c.prompts.is_some()).await {
            let Ok(list) = peer.list_all_prompts().await else {
                continue;
            };
            let list: Vec<Prompt> = list.into_iter().filter_map(|x| self.screened(x)).collect();
            let mut r = self.routes();
            for mut p in list {
                let served = self.naming().name_of(&server, &p.name);
                // Without a namespace, the first server to list a name has it.
                if r.prompts.get(&served).is_some_and(|(s, _)| *s != server) {
                    continue;
                }
                r.prompts
                    .insert(served.clone(), (server.clone(), p.name.clone()));
                p.name = served;
                all.push(p);
            }
        }
        Ok(ListPromptsResult::with_all_items(all))
    }

    async fn route_prompt(&self, served: &str) -> Result<(String, String), McpError> {
        if let Some(found) = self.routes().prompts.get(served).cloned() {
            return Ok(found);
        }
        let _ = self.all_prompts().await;
        self.routes().prompts.get(served).cloned().ok_or_else(|| {
            McpError::invalid_params(
                format!("opsbot serves no prompt `{served}`; prompts/list shows them"),
                None,
            )
        })
    }

    /// Policy's word on a read or a prompt, asking the client's user when
    /// a rule wants approval; recorded when refused.
    async fn admit(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        method: &str,
        subject: &str,
        args: Map<String, Value>,
    ) -> Result<String, McpError> {
        self.introduced(ctx);
        let session = self.session(&ctx.peer)?;
        let rt = self.rt();
        let decision = rt.decide_exchange(&session, server, method, &args);
        let refusal = |why: String| {
            exchanged(
                &session,
                server,
                method,
                subject,
                Some(decision.rule().to_string()),
                format!("refused: {why}"),
            );
            refused(format!("opsbot did not pass on {method} {subject}: {why}"))
        };
        match &decision {
            Decision::Allow { rule, .. } => Ok(rule.clone()),
            Decision::Deny { .. } => Err(refusal(format!(
                "denied by policy rule `{}`: {}",
                decision.rule(),
                decision.reason()
            ))),
            Decision::NeedsApproval { rule, .. } => {
                let (client, _) = self.client(&ctx.peer);
                let step = Step::new("exchange", format!("{server}.{method}"), args);
                let timeout = Duration::from_secs(rt.config.config.serve.approval_timeout_secs);
                let actor = self.actor().to_string();
                match approval::elicit(&ctx.peer, &step, &decision, &client, &actor, timeout).await
                {
                    Some(Ok(_)) => Ok(rule.clone()),
                    Some(Err(r)) => Err(refusal(format!("it needs approval, and {r}"))),
                    None => Err(refusal(format!(
                        "it needs approval ({}), and {}",
                        decision.reason(),
                        Refused::NoOne
                    ))),
                }
            }
        }
    }

    pub(super) fn record(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        method: &str,
        subject: &str,
        rule: Option<String>,
        outcome: String,
    ) {
        if let Ok(session) = self.session(&ctx.peer) {
            exchanged(&session, server, method, subject, rule, outcome);
        }
    }

    pub(super) async fn read(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, McpError> {
        let uri = request.uri.clone();
        let (server, peer) = self.route_uri(&uri).await?;
        let mut args = Map::new();
        args.insert("uri".into(), Value::String(uri.clone()));
        let rule = self
            .admit(&ctx, &server, "resources/read", &uri, args)
            .await?;
        match peer.read_resource(request).await {
            Ok(result) => {
                let bytes: usize = serde_json::to_value(&result.contents)
                    .map(|v| v.to_string().len())
                    .unwrap_or(0);
                self.record(
                    &ctx,
                    &server,
                    "resources/read",
                    &uri,
                    Some(rule),
                    format!("ok: {} item(s), {bytes} bytes", result.contents.len()),
                );
                Ok(result)
            }
            Err(e) => {
                self.record(
                    &ctx,
                    &server,
                    "resources/read",
                    &uri,
                    Some(rule),
                    format!("failed: {e}"),
                );
                Err(passed_error(e))
            }
        }
    }

    pub(super) async fn prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResult, McpError> {
        let (server, name) = self.route_prompt(&request.name).await?;
        let peer = self.rt().servers.peer(&server).await.map_err(unavailable)?;
        let given = request.arguments.clone().unwrap_or_default();
        let subject = format!("{name} {}", Value::Object(given.clone()));
        let mut args = Map::new();
        args.insert("name".into(), Value::String(name.clone()));
        args.insert("arguments".into(), Value::Object(given));
        let rule = self
            .admit(&ctx, &server, "prompts/get", &subject, args)
            .await?;
        let mut forwarded = request;
        forwarded.name = name;
        match peer.get_prompt(forwarded).await {
            Ok(result) => {
                self.record(
                    &ctx,
                    &server,
                    "prompts/get",
                    &subject,
                    Some(rule),
                    format!("ok: {} message(s)", result.messages.len()),
                );
                Ok(result)
            }
            Err(e) => {
                self.record(
                    &ctx,
                    &server,
                    "prompts/get",
                    &subject,
                    Some(rule),
                    format!("failed: {e}"),
                );
                Err(passed_error(e))
            }
        }
    }

    /// Completion names no tool and changes nothing: forwarded to the
    /// server of the prompt or resource template it completes, unrecorded.
    pub(super) async fn completion(
        &self,
        mut request: CompleteRequestParams,
    ) -> Result<CompleteResult, McpError> {
        let server = match &mut request.r#ref {
            Reference::Prompt(p) => {
                let (server, name) = self.route_prompt(&p.name).await?;
                p.name = name;
                server
            }
            Reference::Resource(r) => {
                let template = r.uri.clone();
                let known = self
                    .routes()
                    .templates
                    .iter()
                    .find(|(_, t)| *t == template)
                    .map(|(s, _)| s.clone());
                match known {
                    Some(s) => s,
                    None => self.route_uri(&template).await?.0,
                }
            }
            _ => return Ok(CompleteResult::default()),
        };
        let peer = self.rt().servers.peer(&server).await.map_err(unavailable)?;
        if self
            .rt()
            .servers
            .capabilities(&server)
            .is_none_or(|c| c.completions.is_none())
        {
            return Ok(CompleteResult::default());
        }
        peer.complete(request).await.map_err(passed_error)
    }

    pub(super) async fn follow(&self, uri: &str, on: bool) -> Result<(), McpError> {
        let (server, peer) = self.route_uri(uri).await?;
        let params: Value = json!({ "uri": uri });
        // Subscriptions are legacy from MCP 2026-07-28; earlier clients use them.
        #[allow(deprecated)]
        let sent = if on {
            peer.subscribe(serde_json::from_value(params).map_err(unavailable)?)
                .await
        } else {
            peer.unsubscribe(serde_json::from_value(params).map_err(unavailable)?)
                .await
        };
        sent.map_err(passed_error)?;
        self.follows(&server, uri, on);
        Ok(())
    }
}

/// Record what passed through (or did not) besides a tool call; a record
/// that cannot be written is logged, and the exchange goes on.
pub(super) fn exchanged(
    session: &crate::session::Session,
    server: &str,
    method: &str,
    subject: &str,
    rule: Option<String>,
    outcome: String,
) {
    if let Err(e) = session.record(Event::Exchanged {
        server: server.to_string(),
        method: method.to_string(),
        subject: subject.to_string(),
        rule,
        outcome,
    }) {
        tracing::error!("cannot record {server}'s {method} {subject}: {e}");
    }
}

/// A server's error as the client should see it: its own JSON-RPC error
/// when it sent one.
pub(super) fn passed_error(e: rmcp::ServiceError) -> McpError {
    match e {
        rmcp::ServiceError::McpError(e) => e,
        other => McpError::internal_error(other.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::fits;

    #[test]
    fn uri_templates_fit_the_uris_they_make() {
        assert!(fits(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(fits("file:///{path}", "file:///etc/hosts"));
        assert!(!fits("test://template/{id}/data", "test://template//data"));
        assert!(!fits("test://template/{id}/data", "test://other/123/data"));
        assert!(!fits("test://static", "test://static/more"));
        assert!(fits("test://static", "test://static"));
    }
}
