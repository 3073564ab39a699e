//! One live MCP connection and the calls made over it.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ClientRequest, ContentBlock,
    ReadResourceRequestParams, Request, ServerResult,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use rmcp::{Peer, RoleClient};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A progress report relayed from the server to the call that asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct CallOptions {
    /// Overrides the server's `timeout_ms`.
    pub timeout: Option<Duration>,
    pub progress: Option<mpsc::UnboundedSender<Progress>>,
    /// Cancelling sends MCP `notifications/cancelled` and stops waiting.
    pub cancel: Option<CancellationToken>,
    /// The definition hash the call was planned and decided against: when
    /// the server (started for this call) lists something else, the call
    /// is not made.
    pub expect_def: Option<String>,
}

/// What a tool answered. `is_error` results are failures reported by the
/// tool itself, with its text: not crashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    pub is_error: bool,
    pub text: String,
    pub structured: Option<Value>,
    /// Set when the output was larger than the store keeps: what is kept is
    /// the start of the text, and this says how big the whole was and its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
    /// The content blocks as the server sent them, when text cannot say
    /// them (images, audio, resources, links, annotations): what a served
    /// client gets back, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Value>>,
    /// The result's `_meta`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// The server answered with a task (MCP tasks extension) instead of a
    /// result: the task as it was created. Only servers told opsbot takes
    /// tasks (when serving) answer so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    pub original_bytes: usize,
    /// SHA-256 of the whole output as it arrived (text, then structured JSON).
    pub sha256: String,
}

impl ToolOutput {
    pub(super) fn from_result(result: rmcp::model::CallToolResult) -> Self {
        let text = result
            .content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text(t) => Some(t.text.clone()),
                other => serde_json::to_value(other).ok().and_then(|v| {
                    v.get("type")
                        .and_then(Value::as_str)
                        .map(|t| format!("[{t} content]"))
                }),
            })
            .collect::<Vec<_>>()
            .join("\n");
        // Plain text blocks are all `text` says; anything more is kept whole.
        let plain = result.content.iter().all(|b| {
            matches!(b, ContentBlock::Text(_))
                && serde_json::to_value(b).is_ok_and(|v| {
                    v.as_object()
                        .is_some_and(|o| o.keys().all(|k| k == "type" || k == "text"))
                })
        });
        let content = (!plain).then(|| {
            result
                .content
                .iter()
                .filter_map(|b| serde_json::to_value(b).ok())
                .collect()
        });
        Self {
            is_error: result.is_error.unwrap_or(false),
            text,
            structured: result.structured_content,
            truncated: None,
            content,
            meta: result.meta.and_then(|m| serde_json::to_value(m).ok()),
            task: None,
        }
    }

    /// A resource read as a step's output: its text, blobs named by type
    /// and size, every content kept whole as `resource` blocks.
    pub(super) fn from_read(read: rmcp::model::ReadResourceResult) -> Self {
        use rmcp::model::ResourceContents;
        let text = read
            .contents
            .iter()
            .map(|c| match c {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents {
                    mime_type, blob, ..
                } => format!(
                    "[{} blob, {} base64 bytes]",
                    mime_type.as_deref().unwrap_or("binary"),
                    blob.len()
                ),
                _ => "[resource content]".into(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let content = read
            .contents
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .map(|resource| serde_json::json!({ "type": "resource", "resource": resource }))
            .collect();
        Self {
            is_error: false,
            text,
            structured: None,
            truncated: None,
            content: Some(content),
            meta: read.meta.and_then(|m| serde_json::to_value(m).ok()),
            task: None,
        }
    }

    pub(super) fn from_task(created: rmcp::model::CreateTaskResult) -> Self {
        let task = serde_json::to_value(&created).ok();
        let status = serde_json::to_value(created.task.status)
            .ok()
            .and_then(|s| s.as_str().map(str::to_string))
            .unwrap_or_default();
        Self {
            is_error: false,
            text: format!("task {} created ({status})", created.task.task_id),
            structured: None,
            truncated: None,
            content: None,
            meta: None,
            task,
        }
    }

    /// Keep at most `cap` bytes: a larger output keeps the start of its
    /// text, drops its structured part, and records its size and hash.
    pub fn capped(mut self, cap: usize) -> Self {
        let structured = self
            .structured
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let extra: usize = self
            .content
            .iter()
            .flatten()
            .chain(self.meta.iter())
            .map(|v| v.to_string().len())
            .sum();
        let size = self.text.len() + structured.len() + extra;
        if size <= cap {
            return self;
        }
        self.content = None;
        self.meta = None;
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.text.as_bytes());
        h.update(structured.as_bytes());
        let sha256 = crate::text::hex(&h.finalize());
        let mut end = cap.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        self.text.truncate(end);
        self.structured = None;
        self.truncated = Some(Truncation {
            original_bytes: size,
            sha256,
        });
        self
    }

    /// The output as one JSON value for later steps to reference: the
    /// structured content when present, else the text parsed as JSON, else
    /// `{"text": ...}`.
    pub fn value(&self) -> Value {
        if let Some(v) = &self.structured {
            return v.clone();
        }
        match serde_json::from_str::<Value>(&self.text) {
            Ok(v @ Value::Object(_)) => v,
            _ => serde_json::json!({ "text": self.text }),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Serialize, Deserialize)]
pub enum CallError {
    #[error("unknown server `{server}`{}", hint(.suggestion))]
    UnknownServer {
        server: String,
        suggestion: Option<String>,
    },
    #[error("server `{server}` has no tool `{tool}`{}", hint(.suggestion))]
    UnknownTool {
        server: String,
        tool: String,
        suggestion: Option<String>,
    },
    #[error("tool name `{0}` must be written `server.tool`")]
    BadName(String),
    #[error("server `{server}` is not available: {reason}")]
    Unavailable { server: String, reason: String },
    #[error("server `{server}` exited during the call ({how}){}", stderr_tail(.stderr))]
    ServerExited {
        server: String,
        how: String,
        stderr: Vec<String>,
    },
    #[error("`{tool}` did not answer within {} ms; the call was cancelled", .after_ms)]
    Timeout { tool: String, after_ms: u64 },
    #[error("`{tool}` was cancelled")]
    Cancelled { tool: String },
    #[error("server `{server}` rejected the call: {message}")]
    Protocol { server: String, message: String },
    /// The server answered with something that is not a usable message:
    /// too large, cut off, not UTF-8. Not retried: it would answer the same.
    #[error("server `{server}` {problem}")]
    BadReply { server: String, problem: String },
    #[error(
        "server `{server}` failed {failures} times in a row, so calls fail fast for now (its circuit breaker is open; the next try is allowed in {})",
        crate::session::duration(*.retry_in_ms)
    )]
    BreakerOpen {
        server: String,
        failures: u32,
        retry_in_ms: u64,
    },
    #[error(
        "`{tool}` was not called: its definition changed since {since} (the server lists it differently now that it has started). Plan again to use the new definition; `opsbot tools {tool}` shows it"
    )]
    DefinitionChanged { tool: String, since: String },
    #[error("opsbot failed while making the call ({0}); this is a bug in opsbot, please report it")]
    Internal(String),
}

impl CallError {
    /// Whether the call never left opsbot: nothing reached the server, so
    /// nothing can have happened.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            CallError::UnknownServer { .. }
                | CallError::UnknownTool { .. }
                | CallError::BadName(_)
                | CallError::Unavailable { .. }
                | CallError::BreakerOpen { .. }
                | CallError::DefinitionChanged { .. }
        )
    }

    /// Whether trying again later could succeed: the call timed out, or the
    /// server exited or was not available (it may be restarting).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CallError::Timeout { .. }
                | CallError::ServerExited { .. }
                | CallError::Unavailable { .. }
        )
    }
}

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

fn stderr_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n  {}", lines.join("\n  "))
    }
}

/// A ready connection. Cheap to share: calls run concurrently over one peer.
pub(crate) struct Connection {
    pub peer: Peer<RoleClient>,
    /// opsbot's handler on this connection: its progress routes, and the
    /// answerer for requests a result carries (`input_required`).
    pub client: super::client::OpsbotClient,
    pub timeout: Duration,
    /// Follow a task the server makes to its end (the app and headless
    /// commands); serving, the task is handed to the client instead.
    pub follow_tasks: bool,
}

/// A plan step may read a resource: `SERVER.resources/read {uri}`, decided
/// by policy like a tool of that name.
pub const READ_RESOURCE: &str = "resources/read";

/// How many `input_required` rounds one call may take.
const MAX_ROUNDS: usize = 10;

/// Why a call did not produce a result, before it is given a server context.
pub(crate) enum RawCallError {
    Closed,
    /// opsbot's pump answered for the server: its reply was unusable.
    BadReply(String),
    Timeout(Duration),
    Cancelled,
    Other(String),
}

impl Connection {
    /// Call `tool` (or read a resource, for [`READ_RESOURCE`]): answer the
    /// server's `input_required` rounds through opsbot's handler and retry
    /// with the answers and its `requestState`, and follow a task it makes
    /// when this connection follows tasks.
    pub async fn call(
        &self,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, RawCallError> {
        let timeout = opts.timeout.unwrap_or(self.timeout);
        let cancel = opts.cancel.clone().unwrap_or_default();
        let reading = tool == READ_RESOURCE;
        let uri = reading
            .then(|| args.get("uri").and_then(Value::as_str).map(str::to_string))
            .flatten()
            .unwrap_or_default();
        let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        for _ in 0..MAX_ROUNDS {
            let request = if reading {
                let mut read = ReadResourceRequestParams::new(uri.clone());
                read.input_responses = params.input_responses.clone();
                read.request_state = params.request_state.clone();
                ClientRequest::ReadResourceRequest(Request::new(read))
            } else {
                ClientRequest::CallToolRequest(Request::new(params.clone()))
            };
            match self.send(request, &opts, timeout, &cancel).await? {
                ServerResult::CallToolResult(result) => return Ok(ToolOutput::from_result(result)),
                ServerResult::ReadResourceResult(read) => return Ok(ToolOutput::from_read(read)),
                ServerResult::CreateTaskResult(created) if self.follow_tasks => {
                    return self.follow(created, &opts, timeout, &cancel).await;
                }
                ServerResult::CreateTaskResult(created) => {
                    return Ok(ToolOutput::from_task(created));
                }
                ServerResult::InputRequiredResult(asked) => {
                    let requests = asked.input_requests.unwrap_or_default();
                    if requests.is_empty() && asked.request_state.is_none() {
                        return Err(RawCallError::Other(
                            "the server asked for input but said neither what nor how to retry"
                                .into(),
                        ));
                    }
                    let answers = self.fulfil(requests).await?;
                    params.input_responses = (!answers.is_empty()).then_some(answers);
                    params.request_state = asked.request_state;
                }
                other => {
                    return Err(RawCallError::Other(format!(
                        "unexpected answer to {}: {}",
                        if reading {
                            "resources/read"
                        } else {
                            "tools/call"
                        },
                        crate::text::truncate(&format!("{other:?}"), 200)
                    )));
                }
            }
        }
        Err(RawCallError::Other(format!(
            "the server asked for input {MAX_ROUNDS} times without answering; gave up"
        )))
    }

    /// One request and its answer, with progress routed, the timeout and
    /// cancellation applied (a cancelled request is cancelled at the server).
    async fn send(
        &self,
        request: ClientRequest,
        opts: &CallOptions,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<ServerResult, RawCallError> {
        let handle = self
            .peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(classify)?;
        let token = handle.progress_token.clone();
        let id = handle.id.clone();
        if let Some(tx) = &opts.progress
            && let Ok(mut routes) = self.client.progress.lock()
        {
            routes.insert(token.clone(), tx.clone());
        }
        let outcome = tokio::select! {
            r = handle.await_response() => r.map_err(classify),
            () = tokio::time::sleep(timeout) => Err(RawCallError::Timeout(timeout)),
            () = cancel.cancelled() => Err(RawCallError::Cancelled),
        };
        // rmcp hands notifications to the handler on tasks of their own,
        // so progress sent just before the answer may still be on its way.
        // A stdio server's progress was counted as it was read: wait for
        // the handler to have relayed all of it (and forget the count).
        // Elsewhere nothing was counted: let those tasks run before the
        // route closes.
        let ledger = &self.client.progress_ledger;
        ledger
            .settle(&super::ledger::key(&token), Duration::from_secs(2))
            .await;
        if opts.progress.is_some() {
            if !ledger.complete() {
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
            if let Ok(mut routes) = self.client.progress.lock() {
                routes.remove(&token);
            }
        }
        if let Err(RawCallError::Timeout(_) | RawCallError::Cancelled) = &outcome {
            let reason = match outcome {
                Err(RawCallError::Timeout(_)) => "timeout",
                _ => "cancelled by the user",
            };
            let _ = self
                .peer
                .notify_cancelled(CancelledNotificationParam::new(
                    Some(id),
                    Some(reason.into()),
                ))
                .await;
        }
        outcome
    }
}

fn classify(e: ServiceError) -> RawCallError {
    match e {
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => RawCallError::Closed,
        ServiceError::Timeout { timeout } => RawCallError::Timeout(timeout),
        ServiceError::Cancelled { .. } => RawCallError::Cancelled,
        ServiceError::McpError(e) if e.code.0 == super::child::BAD_REPLY => {
            RawCallError::BadReply(e.message.to_string())
        }
        ServiceError::McpError(e) => RawCallError::Other(e.message.to_string()),
        other => RawCallError::Other(other.to_string()),
    }
}
