//! A call that takes more than one round trip: the server answers with
//! `input_required` (MCP 2026-07-28: elicitation, sampling or roots
//! carried in the result, answered through opsbot's handler exactly as if
//! the server had asked on its own), or with a task that is followed to
//! its end, its status reported as progress and cancelled with the call.

use std::time::Duration;

use rmcp::model::{
    CallToolResult, CancelTaskParams, CreateTaskResult, GetTaskParams, InputRequest, InputRequests,
    InputResponses, TaskPayload,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::conn::{CallOptions, Connection, Progress, RawCallError, ToolOutput};

/// How often a task is polled unless it asks for another interval.
const POLL: Duration = Duration::from_millis(100);

impl Connection {
    /// Answer each request an `input_required` result carries.
    pub(super) async fn fulfil(
        &self,
        requests: InputRequests,
    ) -> Result<InputResponses, RawCallError> {
        let mut answers = InputResponses::new();
        for (key, request) in requests {
            #[allow(deprecated)]
            let answer = match request {
                InputRequest::Elicitation(r) => {
                    self.client.elicit(r.params).await.and_then(|a| to_json(&a))
                }
                InputRequest::CreateMessage(r) => {
                    self.client.sample(r.params).await.and_then(|a| to_json(&a))
                }
                InputRequest::ListRoots(_) => self.client.roots().await.and_then(|a| to_json(&a)),
                _ => Err(rmcp::ErrorData::invalid_params(
                    "opsbot cannot answer this kind of input request",
                    None,
                )),
            };
            // A refusal is an answer too: the server learns it was declined.
            let value = answer.unwrap_or_else(
                |e| serde_json::json!({ "error": { "code": e.code.0, "message": e.message } }),
            );
            answers.insert(key, value);
        }
        Ok(answers)
    }

    /// Poll a task until it ends; its status messages are progress.
    pub(super) async fn follow(
        &self,
        created: CreateTaskResult,
        opts: &CallOptions,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<ToolOutput, RawCallError> {
        let id = created.task.task_id.clone();
        let mut every = interval(created.task.poll_interval_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut polls = 0u32;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let _ = self.peer.cancel_task(CancelTaskParams::new(id.clone())).await;
                    return Err(RawCallError::Timeout(timeout));
                }
                () = cancel.cancelled() => {
                    let _ = self.peer.cancel_task(CancelTaskParams::new(id.clone())).await;
                    return Err(RawCallError::Cancelled);
                }
            }
            let now = self
                .peer
                .get_task(GetTaskParams::new(id.clone()))
                .await
                .map_err(|e| RawCallError::Other(format!("task {id}: tasks/get failed: {e}")))?;
            polls += 1;
            every = interval(now.task.task.poll_interval_ms);
            match now.task.payload {
                TaskPayload::Completed { result } => {
                    return serde_json::from_value::<CallToolResult>(Value::Object(result))
                        .map(ToolOutput::from_result)
                        .map_err(|e| {
                            RawCallError::Other(format!(
                                "task {id} ended with a result opsbot cannot read: {e}"
                            ))
                        });
                }
                TaskPayload::Failed { error } => {
                    return Err(RawCallError::Other(format!(
                        "task {id} failed: {}",
                        error.get("message").and_then(Value::as_str).unwrap_or("")
                    )));
                }
                TaskPayload::Cancelled => {
                    return Err(RawCallError::Other(format!(
                        "task {id} was cancelled by its server"
                    )));
                }
                TaskPayload::InputRequired { .. } => {
                    let _ = self
                        .peer
                        .cancel_task(CancelTaskParams::new(id.clone()))
                        .await;
                    return Err(RawCallError::Other(format!(
                        "task {id} waits for input, which opsbot cannot give a task yet; it was cancelled"
                    )));
                }
                _ => {
                    if let Some(tx) = &opts.progress {
                        let message = now
                            .task
                            .task
                            .status_message
                            .clone()
                            .unwrap_or_else(|| format!("task {id} working"));
                        let _ = tx.send(Progress {
                            progress: f64::from(polls),
                            total: None,
                            message: Some(message),
                        });
                    }
                }
            }
        }
    }
}

fn interval(ms: Option<u64>) -> Duration {
    ms.map(|ms| Duration::from_millis(ms.clamp(20, 5_000)))
        .unwrap_or(POLL)
}

fn to_json(v: &impl serde::Serialize) -> Result<Value, rmcp::ErrorData> {
    serde_json::to_value(v).map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))
}
