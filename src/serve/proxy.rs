//! The MCP server other clients talk to. Each connection is one session in
//! the log; each `tools/call` is a one-step plan that goes through policy,
//! approval and the engine exactly as a step planned in the app would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};

use super::approval::{self, Granted, Refused};
use super::ending::{relay_progress, step_end};
use super::names;
use crate::engine::Approvals;
use crate::plan::{Plan, Step};
use crate::policy::{Decision, args_hash};
use crate::runtime::{Planned, Runtime};
use crate::session::{Event, Outcome, Session, StepState, StepStatus};
use tokio_util::sync::CancellationToken;

/// One client connection.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    rt: Arc<Runtime>,
    actor: String,
    transport: &'static str,
    naming: names::Naming,
    session: Mutex<Option<Arc<Session>>>,
    calls: AtomicU64,
    routes: Mutex<super::features::Routes>,
    /// The (server, URI) pairs this client subscribed to.
    follows: Mutex<std::collections::HashSet<(String, String)>>,
    /// This client answers servers' requests while no call is in flight.
    lend: Mutex<Option<crate::mcp::relay::Lend>>,
    introduced: Mutex<Option<Implementation>>,
    /// Tasks this client was handed: task id → the server that made it,
    /// and whether its end is on record.
    tasks: Mutex<HashMap<String, (String, bool)>>,
}

fn internal(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// Whether a flagged tool is kept from clients.
fn withheld(mode: crate::config::Flagged, tool: &crate::mcp::ToolInfo) -> bool {
    mode == crate::config::Flagged::Hide && !crate::policy::scan::tool(tool).is_empty()
}

fn refusal(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

impl Proxy {
    pub fn new(
        rt: Arc<Runtime>,
        actor: String,
        naming: names::Naming,
        transport: &'static str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                rt,
                actor,
                transport,
                naming,
                session: Mutex::new(None),
                calls: AtomicU64::new(0),
                routes: Mutex::default(),
                follows: Mutex::default(),
                lend: Mutex::new(None),
                introduced: Mutex::new(None),
                tasks: Mutex::default(),
            }),
        }
    }

    pub(super) fn naming(&self) -> &names::Naming {
        &self.inner.naming
    }

    pub(super) fn rt(&self) -> &Arc<Runtime> {
        &self.inner.rt
    }

    pub(super) fn actor(&self) -> &str {
        &self.inner.actor
    }

    pub(super) fn task_routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, bool)>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn routes(&self) -> std::sync::MutexGuard<'_, super::features::Routes> {
        self.inner.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn follows(&self, server: &str, uri: &str, on: bool) {
        let mut f = self.inner.follows.lock().unwrap_or_else(|p| p.into_inner());
        let key = (server.to_string(), uri.to_string());
        if on {
            f.insert(key);
        } else {
            f.remove(&key);
        }
    }

    pub(super) fn following(&self, server: &str, uri: &str) -> bool {
        self.inner
            .follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(server.to_string(), uri.to_string()))
    }

    /// Who answers the servers' requests on this client's behalf.
    fn asker(
        &self,
        peer: &Peer<RoleServer>,
        session: &Arc<Session>,
    ) -> Arc<dyn crate::mcp::relay::Upstream> {
        Arc::new(super::upstream::Asker::new(
            Arc::clone(&self.inner.rt),
            peer.clone(),
            Arc::clone(session),
            self.inner.naming.clone(),
        ))
    }

    /// "name version" of the client, as it introduced itself: at
    /// initialize, or (MCP 2026-07-28, no initialize) in its requests.
    pub(super) fn client(&self, peer: &Peer<RoleServer>) -> (String, String) {
        peer.peer_info()
            .map(|i| i.client_info.clone())
            .or_else(|| self.inner.introduced.lock().ok().and_then(|i| i.clone()))
            .map(|i| (i.name.to_string(), i.version.to_string()))
            .unwrap_or_else(|| ("an MCP client".into(), String::new()))
    }

    /// Keep who a request says it comes from, for clients that never
    /// initialise.
    pub(super) fn introduced(&self, ctx: &RequestContext<RoleServer>) {
        if let Some(info) = ctx.client_info()
            && let Ok(mut slot) = self.inner.introduced.lock()
            && slot.is_none()
        {
            *slot = Some(info);
        }
    }

    /// The connection's session, started the first time it is needed.
    pub(super) fn session(&self, peer: &Peer<RoleServer>) -> Result<Arc<Session>, McpError> {
        let mut slot = self.inner.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let session = self
            .inner
            .rt
            .new_session(&self.inner.actor)
            .map_err(internal)?;
        let (name, version) = self.client(peer);
        session
            .record(Event::ClientConnected {
                name,
                version,
                transport: self.inner.transport.into(),
            })
            .map_err(internal)?;
        // Server trouble (exits, declined requests) goes on this session's record.
        self.inner.rt.watch_servers(&session);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The tools this actor may use: every connected server's, minus those
    /// policy denies whatever the arguments (roles, quarantined pins).
    fn visible(&self, session: &Session) -> Vec<rmcp::model::Tool> {
        let rt = &self.inner.rt;
        let catalog = rt.servers.catalog();
        let denied = rt.denied_outright(session, &catalog);
        let mode = rt.config.config.serve.flagged;
        catalog
            .iter()
            .filter(|t| self.naming().exposes(t) && !denied.contains(&t.qualified()))
            .filter(|t| !withheld(mode, t))
            .map(|t| {
                let def = names::definition(t, self.naming());
                if mode != crate::config::Flagged::Sanitize
                    || crate::policy::scan::tool(t).is_empty()
                {
                    return def;
                }
                let mut v = serde_json::to_value(&def).unwrap_or_default();
                crate::policy::scan::sanitize(&mut v);
                serde_json::from_value(v).unwrap_or(def)
            })
            .collect()
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let rt = Arc::clone(&self.inner.rt);
        let _flight = rt.in_flight();
        self.introduced(&ctx);
        let session = self.session(&ctx.peer)?;
        // The client's cancellation, or opsbot being asked to stop (which
        // the session records first), cancels the call; the call goes on
        // to record how it ended.
        let cancel = ctx.ct.child_token();
        let stop = async {
            rt.stopping.cancelled().await;
            let why = rt.stop_reason().unwrap_or_else(|| "a stop signal".into());
            if let Err(e) = session.record(crate::signals::stop_note(&why)) {
                tracing::error!("cannot record {why}: {e}");
            }
            cancel.cancel();
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            biased;
            answer = self.governed_call(request, ctx, &rt, &session, cancel.clone()) => answer,
            never = stop => match never {},
        }
    }

    /// A call as `call` describes it, with its stop watched by `call`.
    async fn governed_call(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
        rt: &Arc<Runtime>,
        session: &Arc<Session>,
        cancel: CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        let (rt, session) = (Arc::clone(rt), Arc::clone(session));
        let (client, _) = self.client(&ctx.peer);
        rt.servers.wait_settled().await;
        let catalog = rt.servers.catalog();
        let Some(tool) = self.naming().resolve(&request.name, &catalog) else {
            return Ok(refusal(format!(
                "opsbot has no tool `{}`; tools/list shows the tools you may use",
                request.name
            )));
        };
        if withheld(rt.config.config.serve.flagged, tool) {
            return Ok(refusal(format!(
                "opsbot withholds `{}`: its definition is flagged ({}); an operator can review it with `opsbot tools`",
                request.name,
                crate::policy::scan::tool(tool)
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )));
        }
        // While the call runs, its server's requests (sampling,
        // elicitation, roots) go to this client.
        let _lend = rt
            .servers
            .relay()
            .map(|relay| relay.lend(Some(&tool.server), self.asker(&ctx.peer, &session)));
        let n = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let step = Step::new(
            format!("call-{n}"),
            tool.qualified(),
            request.arguments.clone().unwrap_or_default(),
        );
        let id = step.id.clone();
        let asked = Event::UserMessage {
            text: format!(
                "{client} calls {} {}",
                step.tool,
                crate::session::compact(&step.args, 400)
            ),
        };
        let plan = Plan {
            title: format!("{} for {client}", step.tool),
            steps: vec![step],
        };
        // A client on MCP 2026-07-28 is asked for approval by the call's
        // answer: the first call of one that needs a person is decided
        // (not recorded yet) and answered with the form; the retry carrying
        // the answer is proposed, approved or refused, and recorded.
        let modern = super::mrtr::modern(&ctx);
        if modern && request.request_state.is_none() {
            let step = &plan.steps[0];
            let decisions = rt.decide_plan(&session, &plan, &catalog);
            if let Some((_, d @ Decision::NeedsApproval { .. })) = decisions.first() {
                let timeout = Duration::from_secs(rt.config.config.serve.approval_timeout_secs);
                let hash = args_hash(&step.tool, &step.args);
                return super::mrtr::ask(step, d, &client, &hash, timeout)
                    .map(Into::into)
                    .map_err(internal);
            }
        }
        let (proposed, unrecorded) = rt
            .propose_approving(&session, plan, vec![asked], Some("policy"))
            .await
            .map_err(internal)?;
        let (plan, decisions) = match proposed {
            Planned::Ready { plan, decisions } => (plan, decisions),
            Planned::Invalid(errors) => {
                return Ok(refusal(format!(
                    "opsbot did not run the call: {}",
                    errors.join("; ")
                )));
            }
            Planned::Clarify(q) => return Ok(refusal(q)),
            Planned::Cancelled => return Ok(refusal("cancelled".into())),
        };
        let Some(step) = plan.step(&id).cloned() else {
            return Err(internal("the proposed plan lost its step"));
        };
        let decision = decisions
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| internal("policy made no decision"))?;

        let granted = match &decision {
            Decision::Allow { rule, .. } => Ok(Granted {
                by: format!("policy ({rule})"),
                reason: None,
            }),
            Decision::Deny { .. } => Err(None),
            Decision::NeedsApproval { .. } => {
                let timeout = Duration::from_secs(rt.config.config.serve.approval_timeout_secs);
                session
                    .record(Event::AwaitingApproval {
                        step: id.clone(),
                        gated: decision.gate().is_some(),
                    })
                    .map_err(internal)?;
                // Four eyes: the client's user asked for the call; other
                // people approve it, through the log.
                let asked = if decision.quorum().is_some() {
                    None
                } else if modern {
                    super::mrtr::answer(
                        &request,
                        &args_hash(&step.tool, &step.args),
                        &decision,
                        format!("{} (via {client})", self.inner.actor),
                    )
                } else {
                    approval::elicit(
                        &ctx.peer,
                        &step,
                        &decision,
                        &client,
                        &self.inner.actor,
                        timeout,
                    )
                    .await
                };
                match asked {
                    Some(answer) => answer,
                    None if let Some(quorum) = decision.quorum() => {
                        if let Some(token) = ctx.meta.get_progress_token() {
                            let mut note = ProgressNotificationParam::new(token, 0.0);
                            note.message = Some(format!(
                                "waiting for {}: `opsbot approvals approve {}:{}`; refused after {} s",
                                quorum.wanted(0, &self.inner.actor),
                                session.id,
                                id,
                                timeout.as_secs()
                            ));
                            let _ = ctx.peer.notify_progress(note).await;
                        }
                        approval::wait_for_quorum(&rt, &session, &step, quorum, timeout, &cancel)
                            .await
                    }
                    // Someone can answer in an app on this data directory:
                    // the client hears that it waits, and for whom.
                    None => match rt.store.live_drivers("app").first() {
                        Some(app) => {
                            if let Some(token) = ctx.meta.get_progress_token() {
                                let mut note = ProgressNotificationParam::new(token, 0.0);
                                note.message = Some(format!(
                                    "waiting for approval in opsbot ({}); refused after {} s",
                                    app.describe(),
                                    timeout.as_secs()
                                ));
                                let _ = ctx.peer.notify_progress(note).await;
                            }
                            approval::wait_in_app(&session, &step, timeout, &cancel).await
                        }
                        None => Err(Refused::NoOne),
                    },
                }
                .map_err(Some)
            }
        };
        let mut approved = HashMap::new();
        match &granted {
            Ok(g) => {
                let hash = args_hash(&step.tool, &step.args);
                // An approval given by policy (with the proposal) or in the
                // app is in the log already.
                let logged = !unrecorded.is_empty()
                    || session.with_state(|st| {
                        st.steps.get(&id).is_some_and(|s| {
                            s.approved_by.is_some() && s.status() == StepStatus::Approved
                        })
                    });
                if !logged {
                    session
                        .record(Event::Approved {
                            step: id.clone(),
                            by: g.by.clone(),
                            args_hash: hash.clone(),
                            gated: decision.gate().is_some(),
                            reason: g.reason.clone(),
                            from: None,
                        })
                        .map_err(internal)?;
                }
                approved.insert(id.clone(), hash);
            }
            Err(Some(refused)) => {
                // Nothing runs: close the step and the run in the log, so
                // no one is left looking at a call that waits for nobody.
                // A final outcome: nothing waits on this call any more.
                let outcome = match refused {
                    Refused::Cancelled => Outcome::Cancelled,
                    _ => Outcome::Rejected,
                };
                let mut events = Vec::new();
                if !matches!(refused, Refused::InApp(_)) {
                    events.push(Event::StepSkipped {
                        step: id.clone(),
                        reason: format!("not approved: {refused}"),
                    });
                }
                events.push(Event::RunFinished {
                    outcome,
                    summary: format!("{} was not approved: {refused}", step.tool),
                });
                session.record_all(&events).map_err(internal)?;
                return Ok(self.answer(&step, &decision, Some(refused.clone()), None));
            }
            Err(None) => {}
        }

        // Relay the step's progress until the run is over: every progress
        // event is told before the call is answered.
        let run_over = CancellationToken::new();
        let relay = ctx.meta.get_progress_token().map(|token| {
            relay_progress(
                &session,
                ctx.peer.clone(),
                token,
                id.clone(),
                run_over.clone(),
            )
        });
        // The call is on record before it is made. Its end is deferred to
        // the session's next commit and the client answered from it as it
        // will be stored: one commit on the call's path, not two (see
        // session/deferred.rs).
        let start = crate::engine::Start {
            done: HashMap::new(),
            unrecorded,
            defer_end: true,
        };
        let approvals = Approvals::Fixed(approved);
        let run = async {
            let ran = rt
                .run_from(
                    &session,
                    &plan,
                    &decisions,
                    &approvals,
                    cancel.clone(),
                    start,
                )
                .await
                .map_err(internal);
            // Its progress events were all told to the session's listeners
            // as they were recorded: the relay passes them on, then ends.
            run_over.cancel();
            ran
        };
        let ran = match relay {
            Some(relay) => tokio::join!(run, relay).0,
            None => run.await,
        };
        let (_, ended) = ran?;
        if let Some(batch) = ended.flush {
            session.flush_soon(batch);
        }
        let end = step_end(&session, &id, &ended.events);
        if let Some(task) = end.output.as_ref().and_then(|o| o.task.clone()) {
            return self.task_answer(&ctx, &tool.server, task, &cancel).await;
        }
        Ok(self.answer(&step, &decision, granted.err().flatten(), Some(&end)))
    }

    /// The call's result as the client sees it: the tool's output as the
    /// log holds it (secrets redacted), or why it did not run.
    fn answer(
        &self,
        step: &Step,
        decision: &Decision,
        refused: Option<Refused>,
        end: Option<&StepState>,
    ) -> CallToolResponse {
        if decision.is_denied() {
            return refusal(format!(
                "denied by opsbot policy rule `{}`: {}",
                decision.rule(),
                decision.reason()
            ));
        }
        if let Some(r) = refused {
            return refusal(format!(
                "{} needs approval ({}), and {r}",
                step.tool,
                decision.reason()
            ));
        }
        {
            let Some(st) = end else {
                return refusal(format!("{} did not run", step.tool));
            };
            match (&st.output, &st.error) {
                (Some(out), _) => {
                    // The blocks as the server sent them (redacted like the
                    // log), else the text.
                    let content = out
                        .content
                        .as_ref()
                        .and_then(|c| {
                            serde_json::from_value::<Vec<ContentBlock>>(serde_json::Value::Array(
                                c.clone(),
                            ))
                            .ok()
                        })
                        .unwrap_or_else(|| vec![ContentBlock::text(out.text.clone())]);
                    let mut result = if out.is_error {
                        CallToolResult::error(content)
                    } else {
                        CallToolResult::success(content)
                    };
                    result.structured_content = out.structured.clone();
                    result.meta = out
                        .meta
                        .as_ref()
                        .and_then(|m| serde_json::from_value(m.clone()).ok());
                    result.into()
                }
                (None, Some(e)) => refusal(format!("{} failed: {e}", step.tool)),
                (None, None) => refusal(format!(
                    "{} did not run ({})",
                    step.tool,
                    st.skipped_reason.as_deref().unwrap_or("cancelled")
                )),
            }
        }
    }
}

impl ServerHandler for Proxy {
    // Logging is deprecated from MCP 2026-07-28; clients on earlier
    // versions still set levels and read messages.
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_completions()
                .enable_logging()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("opsbot", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "opsbot governs these tools: every call is checked by policy, may need a person's approval, and is recorded in an audit log. A refused call's text says which rule refused it and why.",
        )
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        match self.session(&ctx.peer) {
            Ok(session) => {
                if let Some(relay) = self.inner.rt.servers.relay() {
                    let lend = relay.lend(None, self.asker(&ctx.peer, &session));
                    *self.inner.lend.lock().unwrap_or_else(|p| p.into_inner()) = Some(lend);
                }
            }
            Err(e) => tracing::error!("cannot start the session for a client: {e:?}"),
        }
        self.forward(ctx.peer.clone());
    }

    /// Forwarded to every started server that logs.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.rt.servers.set_log_level(request.level).await;
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let session = self.session(&ctx.peer)?;
        self.inner.rt.servers.wait_settled().await;
        Ok(ListToolsResult::with_all_items(self.visible(&session)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.call(request, ctx).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, McpError> {
        self.session(&ctx.peer)?;
        self.all_resources().await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, McpError> {
        self.session(&ctx.peer)?;
        self.all_templates().await
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, McpError> {
        self.read(request, ctx).await.map(Into::into)
    }

    // Subscriptions are legacy from MCP 2026-07-28; earlier clients use them.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.follow(&request.uri, true).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.follow(&request.uri, false).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, McpError> {
        self.session(&ctx.peer)?;
        self.all_prompts().await
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, McpError> {
        self.prompt(request, ctx).await.map(Into::into)
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, McpError> {
        self.task_status(request, &ctx).await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.task_cancel(request, &ctx).await
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, McpError> {
        self.completion(request).await
    }
}
