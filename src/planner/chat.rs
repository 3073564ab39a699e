//! One chat completion over HTTP, read the way servers really answer:
//! streamed (server-sent events) or whole, and errors from OpenAI, Azure,
//! llama.cpp, vLLM and Ollama (string or numeric codes, an `error` that is
//! a string, a bare `message`) or from something that is not an
//! OpenAI-compatible endpoint at all (an HTML page at a wrong base URL).
//!
//! async-openai's `Config` (`Endpoint`) still says where and with which
//! headers; the request and its reading are ours, because a reply that
//! does not fit async-openai's types (a numeric error code) must still be
//! understood.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What came back from a completion that the server accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub content: String,
    /// The arguments of a forced function call (tool-call mode).
    pub tool_arguments: Option<String>,
    pub finish_reason: Option<String>,
    /// The model declined (OpenAI's `refusal`).
    pub refusal: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Whether the server streamed it.
    pub streamed: bool,
}

/// What an error reply was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    RateLimited,
    QuotaExhausted,
    /// The prompt (with the room asked for the answer) is more than the
    /// model's context holds.
    ContextOverflow,
    /// The server does not take `response_format` as sent.
    FormatUnsupported,
    /// The server does not take function calling (`tools`).
    ToolsUnsupported,
    Auth,
    NotFound,
    Other,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("{}", api_text(.status, .code, .message))]
    Api {
        status: u16,
        kind: ErrorKind,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        prompt_tokens: u64,
    },
    #[error(
        "{url} is not an OpenAI-compatible endpoint (got {content_type}, HTTP {status}: {first_line}); check base_url"
    )]
    NotOpenAi {
        url: String,
        status: u16,
        content_type: String,
        first_line: String,
    },
    #[error("the answer could not be read: {0}")]
    Unreadable(String),
    #[error("cancelled")]
    Cancelled,
}

fn api_text(status: &u16, code: &Option<String>, message: &str) -> String {
    match code {
        Some(c) => format!("HTTP {status} ({c}): {message}"),
        None => format!("HTTP {status}: {message}"),
    }
}

impl ChatError {
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ChatError::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// How the call is recorded: a status word, never a body.
    pub fn status(&self) -> String {
        match self {
            ChatError::Unreachable { .. } => "unreachable".into(),
            ChatError::Timeout(_) => "timeout".into(),
            ChatError::Api { status, .. } => format!("http {status}"),
            ChatError::NotOpenAi { .. } => "not an OpenAI-compatible endpoint".into(),
            ChatError::Unreadable(_) => "unreadable response".into(),
            ChatError::Cancelled => "cancelled".into(),
        }
    }
}

/// Where requests go and how they are signed.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    query: Vec<(String, String)>,
    timeout_ms: u64,
}

impl ChatClient {
    pub fn new(endpoint: &super::endpoint::Endpoint, timeout_ms: u64) -> Result<Self, String> {
        use async_openai::config::Config;
        // The whole-call timeout is ours (below): a streamed answer may
        // take long and still be progressing.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: endpoint.url("/chat/completions"),
            headers: endpoint.headers(),
            query: endpoint
                .query()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Send `body` (a chat completion request; `stream` is set here) and
    /// read the answer, streamed if the server streams. `on_text` hears the
    /// content (or function arguments) so far, each time it grows.
    pub async fn complete(
        &self,
        mut body: Value,
        stream: bool,
        cancel: &CancellationToken,
        on_text: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<Completion, ChatError> {
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let call = self.send(body, on_text);
        tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(self.timeout_ms), call) => {
                r.unwrap_or(Err(ChatError::Timeout(self.timeout_ms)))
            }
            () = cancel.cancelled() => Err(ChatError::Cancelled),
        }
    }

    async fn send(
        &self,
        body: Value,
        on_text: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<Completion, ChatError> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .query(&self.query)
            .json(&body)
            .send()
            .await
            .map_err(|e| ChatError::Unreachable {
                url: self.url.clone(),
                reason: root_cause(&e),
            })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .to_string();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        if content_type.starts_with("text/event-stream") && status < 400 {
            return read_stream(response, on_text).await;
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ChatError::Unreadable(root_cause(&e)))?;
        let text = String::from_utf8_lossy(&bytes);
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let Some(json) = json else {
            return Err(ChatError::NotOpenAi {
                url: self.url.clone(),
                status,
                content_type,
                first_line: first_line(&text),
            });
        };
        if status >= 400 || json.get("error").is_some() && json.get("choices").is_none() {
            return Err(api_error(status, &json, retry_after));
        }
        let completion =
            whole(&json).ok_or_else(|| ChatError::Unreadable("no choices in the answer".into()))?;
        on_text(
            completion
                .tool_arguments
                .as_deref()
                .unwrap_or(&completion.content),
            completion.completion_tokens,
        );
        Ok(completion)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// At most one short line of a body that was not JSON.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(empty)");
    crate::text::truncate(line, 100)
}

/// A non-streamed completion.
fn whole(json: &Value) -> Option<Completion> {
    let choice = json.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let (prompt_tokens, completion_tokens) = usage(json);
    Some(Completion {
        content: message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tool_arguments: message
            .pointer("/tool_calls/0/function/arguments")
            .and_then(Value::as_str)
            .map(str::to_string),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        refusal: message
            .get("refusal")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        prompt_tokens,
        completion_tokens,
        streamed: false,
    })
}

fn usage(json: &Value) -> (u64, u64) {
    let u = json.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (n("prompt_tokens"), n("completion_tokens"))
}

/// Read server-sent events until `[DONE]` or the end of the body.
async fn read_stream(
    response: reqwest::Response,
    on_text: &mut (dyn FnMut(&str, u64) + Send),
) -> Result<Completion, ChatError> {
    let mut out = Completion {
        streamed: true,
        ..Completion::default()
    };
    let mut args = String::new();
    let mut pending = Vec::<u8>::new();
    let mut chunks = 0u64;
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| ChatError::Unreadable(root_cause(&e)))?;
        pending.extend_from_slice(&piece);
        let mut grew = false;
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                return Ok(finish(out, args));
            }
            let Ok(event) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if event.get("error").is_some() {
                return Err(api_error(200, &event, None));
            }
            let (p, c) = usage(&event);
            if p > 0 || c > 0 {
                out.prompt_tokens = p;
                out.completion_tokens = c;
            }
            let Some(choice) = event.pointer("/choices/0") else {
                continue;
            };
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                out.finish_reason = Some(reason.to_string());
            }
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                out.content.push_str(t);
                chunks += 1;
                grew = true;
            }
            if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                out.refusal.get_or_insert_with(String::new).push_str(r);
            }
            if let Some(a) = delta
                .pointer("/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
            {
                args.push_str(a);
                chunks += 1;
                grew = true;
            }
        }
        if grew {
            let tokens = out.completion_tokens.max(chunks);
            on_text(if args.is_empty() { &out.content } else { &args }, tokens);
        }
    }
    Ok(finish(out, args))
}

fn finish(mut out: Completion, args: String) -> Completion {
    if !args.is_empty() {
        out.tool_arguments = Some(args);
    }
    out
}

/// An error body, whatever its server: `{"error": {"message", "type",
/// "code"}}` with a string or numeric code (OpenAI, Azure, llama.cpp),
/// `{"object": "error", "message", "code"}` (vLLM), `{"error": "text"}`
/// (Ollama), `{"detail": …}`.
pub fn api_error(status: u16, json: &Value, retry_after: Option<Duration>) -> ChatError {
    let err = json.get("error").unwrap_or(json);
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let message = match err {
        Value::String(s) => s.clone(),
        _ => text(err.get("message"))
            .or_else(|| text(json.get("detail")))
            .unwrap_or_else(|| crate::text::truncate(&json.to_string(), 200)),
    };
    let code = text(err.get("code")).filter(|c| !c.is_empty());
    let kind_word = text(err.get("type")).unwrap_or_default();
    let status = if status == 200 {
        err.get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500)
    } else {
        status
    };
    let lower = format!(
        "{} {} {}",
        message.to_lowercase(),
        code.as_deref().unwrap_or_default().to_lowercase(),
        kind_word.to_lowercase()
    );
    let overflow = [
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "exceeds the available context",
        "exceed_context_size",
        "too many tokens",
        "prompt is too long",
        "n_ctx",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let kind = if overflow {
        ErrorKind::ContextOverflow
    } else if status == 429 && (lower.contains("insufficient_quota") || lower.contains("quota")) {
        ErrorKind::QuotaExhausted
    } else if status == 429 {
        ErrorKind::RateLimited
    } else if status == 401 || status == 403 {
        ErrorKind::Auth
    } else if status == 404 {
        ErrorKind::NotFound
    } else if (400..500).contains(&status)
        && [
            "response_format",
            "json_schema",
            "structured output",
            "grammar",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        ErrorKind::FormatUnsupported
    } else if (400..500).contains(&status)
        && ["tool_choice", "tools", "function call", "function_call"]
            .iter()
            .any(|w| lower.contains(w))
    {
        ErrorKind::ToolsUnsupported
    } else {
        ErrorKind::Other
    };
    ChatError::Api {
        status,
        kind,
        code,
        message: crate::text::truncate(message.trim(), 300),
        retry_after,
        prompt_tokens: usage(json).0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_servers_error_shape_is_read() {
        let e = api_error(
            400,
            &json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
            None,
        );
        assert_eq!(e.kind(), Some(ErrorKind::ContextOverflow));
        // llama.cpp: a numeric code.
        let e = api_error(
            404,
            &json!({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}),
            None,
        );
        assert_eq!(e.kind(), Some(ErrorKind::NotFound));
        assert_eq!(e.to_string(), "HTTP 404 (404): File Not Found");
        let e = api_error(
            400,
            &json!({"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}}),
            None,
        );
        assert_eq!(e.kind(), Some(ErrorKind::ContextOverflow));
        // vLLM.
        let e = api_error(
            400,
            &json!({"object": "error", "message": "response_format json_schema is not supported", "type": "BadRequestError", "code": 400}),
            None,
        );
        assert_eq!(e.kind(), Some(ErrorKind::FormatUnsupported));
        // Ollama.
        let e = api_error(500, &json!({"error": "model 'x' not found"}), None);
        assert!(e.to_string().contains("model 'x' not found"));
        let e = api_error(
            429,
            &json!({"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}),
            None,
        );
        assert_eq!(e.kind(), Some(ErrorKind::QuotaExhausted));
    }

    #[test]
    fn a_whole_answer_is_read_with_its_reason_and_usage() {
        let c = whole(&json!({
            "choices": [{"message": {"content": "{}", "refusal": null}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 12}
        }))
        .expect("completion");
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        assert_eq!((c.prompt_tokens, c.completion_tokens), (900, 12));
        assert_eq!(
            first_line("\n\n  <!DOCTYPE html><html>…"),
            "<!DOCTYPE html><html>…"
        );
    }
}
