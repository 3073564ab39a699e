//! A local OpenAI-compatible chat-completions server for tests: real
//! HTTP, scripted replies, every request body kept for inspection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer: HTTP status, body, and how long to wait first.
/// A body `event-stream:["…", …]` is streamed as server-sent events; one
/// `html:…` is served as an HTML page.
pub struct Answer(pub u16, pub String, pub u64);

/// Opened by a test to let a streamed answer go on past its `<gate>`.
pub static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

pub fn completion(content: &str) -> Answer {
    Answer(
        200,
        json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280}
        })
        .to_string(),
        0,
    )
}

pub fn error(status: u16, message: &str) -> Answer {
    Answer(
        status,
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
            .to_string(),
        0,
    )
}

/// Serve the script in order; every request body is kept for inspection.
pub async fn fake_llm(script: Vec<Answer>) -> (u16, Arc<Mutex<Vec<Value>>>) {
    let (port, seen, _) = fake_llm_with_heads(script).await;
    (port, seen)
}

/// As `fake_llm`, also keeping each request's line and headers as sent.
pub async fn fake_llm_with_heads(
    script: Vec<Answer>,
) -> (u16, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let head_log = Arc::clone(&heads);
    tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        head_log
                            .lock()
                            .expect("heads")
                            .push(text[..end].to_string());
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let Some(body) = body else { continue };
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                log.lock().expect("log").push(v);
            }
            let Answer(status, reply, delay) = script
                .next()
                .unwrap_or_else(|| error(500, "script exhausted"));
            tokio::time::sleep(Duration::from_millis(delay)).await;
            // A rate limit says how long to wait, as OpenAI's does.
            let retry_after = if status == 429 {
                "retry-after: 1\r\n"
            } else {
                ""
            };
            // A streamed answer: each event written on its own; `<gate>`
            // waits until the test opens the gate.
            if let Some(events) = reply.strip_prefix("event-stream:") {
                let events: Vec<String> = serde_json::from_str(events).expect("events");
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = sock.write_all(head.as_bytes()).await;
                for e in events {
                    if e == "<gate>" {
                        GATE.notified().await;
                        continue;
                    }
                    let _ = sock.write_all(format!("data: {e}\n\n").as_bytes()).await;
                    let _ = sock.flush().await;
                }
                continue;
            }
            let (content_type, reply) = match reply.strip_prefix("html:") {
                Some(page) => ("text/html; charset=utf-8", page.to_string()),
                None => ("application/json", reply),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n{retry_after}content-length: {}\r\nconnection: close\r\n\r\n",
                reply.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (port, seen, heads)
}
