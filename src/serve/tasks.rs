//! MCP tasks (the tasks extension) through `opsbot serve`. A served call is
//! decided, approved and recorded before its server sees it, like any
//! call; when the server answers with a task instead of a result, a client
//! that takes tasks gets the task and polls it through opsbot (`tasks/get`,
//! `tasks/cancel`, routed to the server that made it); for a client that
//! does not, opsbot follows the task itself and answers with its result.
//! The task's end (completed, failed, cancelled) is recorded either way.

use std::time::Duration;

use rmcp::model::{
    CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock, CreateTaskResult,
    GetTaskParams, GetTaskResult, TaskPayload,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, Peer, RoleClient};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::features::passed_error;
use super::proxy::Proxy;

/// How often opsbot polls a task for a client that cannot, unless the task
/// asks for another interval.
const POLL: Duration = Duration::from_millis(100);

fn error_result(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

/// The end of a task in words, for the log; `None` while it runs.
fn ending(task: &GetTaskResult) -> Option<String> {
    match &task.task.payload {
        TaskPayload::Completed { result } => {
            let failed = result.get("isError").and_then(Value::as_bool) == Some(true);
            Some(
                if failed {
                    "completed with an error"
                } else {
                    "completed"
                }
                .into(),
            )
        }
        TaskPayload::Failed { error } => Some(format!(
            "failed: {}",
            error.get("message").and_then(Value::as_str).unwrap_or("")
        )),
        TaskPayload::Cancelled => Some("cancelled".into()),
        _ => None,
    }
}

impl Proxy {
    /// The answer to a call whose server made a task.
    pub(super) async fn task_answer(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        created: Value,
        cancel: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        let task: CreateTaskResult = serde_json::from_value(created).map_err(|e| {
            McpError::internal_error(format!("a task opsbot cannot read: {e}"), None)
        })?;
        let id = task.task.task_id.clone();
        self.task_routes()
            .insert(id.clone(), (server.to_string(), false));
        let takes_tasks = ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        if takes_tasks {
            return Ok(CallToolResponse::Task(task));
        }
        // Followed here: the client waits for the result as for any call.
        let peer = self
            .rt()
            .servers
            .peer(server)
            .await
            .map_err(|e| McpError::internal_error(e, None))?;
        let mut every = task
            .task
            .poll_interval_ms
            .map(|ms| Duration::from_millis(ms.clamp(20, 5_000)))
            .unwrap_or(POLL);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => {
                    let _ = peer.cancel_task(CancelTaskParams::new(id.clone())).await;
                    self.record(ctx, server, "tasks/cancel", &id, None, "ok: the call was cancelled".into());
                    return Ok(error_result(format!("the call was cancelled; its task {id} was cancelled too")));
                }
            }
            let now = peer
                .get_task(GetTaskParams::new(id.clone()))
                .await
                .map_err(passed_error)?;
            if let Some(ms) = now.task.task.poll_interval_ms {
                every = Duration::from_millis(ms.clamp(20, 5_000));
            }
            let Some(end) = ending(&now) else { continue };
            self.record(ctx, server, "tasks/get", &id, None, end);
            return Ok(match now.task.payload {
                TaskPayload::Completed { result } => {
                    serde_json::from_value::<CallToolResult>(Value::Object(result))
                        .map(Into::into)
                        .unwrap_or_else(|e| {
                            error_result(format!(
                                "task {id} ended with a result opsbot cannot read: {e}"
                            ))
                        })
                }
                TaskPayload::Failed { error } => error_result(format!(
                    "task {id} failed: {}",
                    error.get("message").and_then(Value::as_str).unwrap_or("")
                )),
                _ => error_result(format!("task {id} was cancelled")),
            });
        }
    }

    async fn task_peer(&self, id: &str) -> Result<(String, Peer<RoleClient>), McpError> {
        let server = self
            .task_routes()
            .get(id)
            .map(|(s, _)| s.clone())
            .ok_or_else(|| {
                McpError::invalid_params(format!("opsbot knows no task `{id}`"), None)
            })?;
        let peer = self
            .rt()
            .servers
            .peer(&server)
            .await
            .map_err(|e| McpError::internal_error(e, None))?;
        Ok((server, peer))
    }

    pub(super) async fn task_status(
        &self,
        request: GetTaskParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let (server, peer) = self.task_peer(&request.task_id).await?;
        let id = request.task_id.clone();
        let now = peer.get_task(request).await.map_err(passed_error)?;
        let first_end = || {
            self.task_routes()
                .get_mut(&id)
                .is_some_and(|(_, ended)| !std::mem::replace(ended, true))
        };
        if let Some(end) = ending(&now)
            && first_end()
        {
            // Recorded once, when the client first sees the end.
            self.record(ctx, &server, "tasks/get", &id, None, end);
        }
        Ok(now)
    }

    pub(super) async fn task_cancel(
        &self,
        request: CancelTaskParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let (server, peer) = self.task_peer(&request.task_id).await?;
        let id = request.task_id.clone();
        let sent = peer.cancel_task(request).await;
        let outcome = match &sent {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.record(ctx, &server, "tasks/cancel", &id, None, outcome);
        sent.map_err(passed_error)
    }
}
