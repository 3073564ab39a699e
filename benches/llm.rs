//! The LLM planner's prompt and streaming, measured side by side in one run
//! (`cargo bench --bench llm`):
//!
//! 1. Prompt size for the sandbox estate (its 14 live tools, 5 runbooks) and
//!    for a 500-tool catalog: the lean prompt against the previous format
//!    (one JSON line per tool with its whole schema, every runbook with every
//!    step), in characters and in gpt-4o tokens (tiktoken).
//! 2. Time from the first streamed byte of the model's answer to the first
//!    step drawn in the plan pane: the real app in a pty of its own, planning
//!    against a local server that streams the answer as OpenAI does.
//!
//! Under `cargo test` it runs a couple of times, as a smoke test.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opsbot::config::{ConfigSource, DEFAULT_TOML, Runbook, load_layers};
use opsbot::mcp::{Servers, SpawnContext, ToolInfo};
use opsbot::planner::prompt::{PromptInput, count_tokens, estate_section, system_prompt};
use serde_json::{Value, json};
use support::percentile;

/// The prompt as it was before: instructions, then one JSON object a tool
/// (name, description, read_only, whole input schema) for up to 40 ranked
/// tools within 24,000 characters, then every runbook with every step.
fn previous_prompt(request: &str, tools: &[ToolInfo], runbooks: &[(String, Runbook)]) -> String {
    let mut section = String::new();
    for tool in opsbot::planner::rank::rank(request, tools, 40) {
        let line = json!({
            "name": tool.qualified(),
            "description": opsbot::text::truncate(&tool.description, 300),
            "read_only": tool.annotations.read_only,
            "input_schema": tool.input_schema,
        })
        .to_string();
        if section.len() + line.len() + 1 > 24_000 {
            continue;
        }
        section.push_str(&line);
        section.push('\n');
    }
    let runbooks: Vec<Value> = runbooks
        .iter()
        .map(|(name, rb)| {
            json!({"name": name, "description": rb.description, "phrases": rb.phrases,
                   "steps": rb.steps.iter().map(|s| json!({"id": s.id, "tool": s.tool, "args": s.args, "depends_on": s.depends_on})).collect::<Vec<_>>()})
        })
        .collect();
    format!(
        "You plan infrastructure operations as a graph of MCP tool calls. Use only the tools listed below, \
         addressed as server.tool, with arguments that match each tool's input_schema. A step may use an \
         earlier step's output as \"${{step_id.field}}\" and must then list that step in depends_on. \
         If the request is ambiguous or names something unknown, set needs_clarification and ask one \
         question instead of guessing. Runbooks are known-good templates ({{service}} and {{env}} are slots).\n\n\
         TOOLS (one JSON object per line):\n{section}\nRUNBOOKS:\n{}\n",
        serde_json::to_string(&runbooks).unwrap_or_default()
    )
}

fn prompt_part() {
    let dir = tempfile::tempdir().expect("dir");
    let config = load_layers(vec![ConfigSource {
        name: "<built-in defaults>".into(),
        text: DEFAULT_TOML.into(),
    }])
    .expect("defaults")
    .config;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox: Vec<ToolInfo> = rt.block_on(async {
        let ctx = SpawnContext {
            exe: support::opsbot_exe(),
            data_dir: dir.path().join("data"),
            config_dir: dir.path().join("config"),
            relay: None,
        };
        let servers = Servers::start(&config, &ctx);
        servers.wait_settled().await;
        let tools = servers.catalog().iter().cloned().collect();
        servers.shutdown().await;
        tools
    });
    let runbooks: Vec<(String, Runbook)> = config
        .runbooks
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let estate = estate_section(&config);
    let mut big = sandbox.clone();
    big.extend(support::synthetic_tools());
    let request = "deploy checkout to staging";
    for (what, tools) in [("sandbox estate", &sandbox), ("500-tool catalog", &big)] {
        let before = previous_prompt(request, tools, &runbooks);
        let (after, prefix) = system_prompt(
            &estate,
            &PromptInput {
                request,
                tools,
                runbooks: &runbooks,
                max_tools: 40,
            },
        );
        let t = |s: &str| count_tokens("gpt-4o", s).0;
        println!(
            "system prompt, {what} ({} tools): before {} chars / {} tokens, after {} chars / {} tokens (ratio {:.2}x); {} of them request-independent",
            tools.len(),
            before.len(),
            t(&before),
            after.len(),
            t(&after),
            t(&after) as f64 / t(&before).max(1) as f64,
            if prefix == after.len() {
                "all".to_string()
            } else {
                format!("the first {} chars", prefix)
            }
        );
    }
}

/// A local chat-completions server that streams one plan per request: the
/// first step at once (the moment of its first byte is sent back), the rest
/// when told.
fn streaming_server() -> (u16, mpsc::Receiver<Instant>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (first_byte, first_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 65536];
            let mut need = None;
            while need.is_none_or(|n| head.len() < n) {
                let Ok(n) = conn.read(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&head).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    need = Some(end + 4 + len);
                }
            }
            let plan = r#"{"needs_clarification": false, "question": "", "title": "bench", "steps": [{"id": "first", "tool": "nope.first", "args": {"service": "checkout"}, "depends_on": [], "rationale": "measured"}, {"id": "second", "tool": "nope.second", "args": {}, "depends_on": ["first"], "rationale": "the rest"}]}"#;
            let split = plan.find(r#", {"id": "second""#).unwrap_or(plan.len());
            let event = |text: &str| {
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
                )
            };
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            );
            let _ = conn.flush();
            let first: String = plan.as_bytes()[..split]
                .chunks(16)
                .map(|c| event(&String::from_utf8_lossy(c)))
                .collect();
            let _ = first_byte.send(Instant::now());
            let _ = conn.write_all(first.as_bytes());
            let _ = conn.flush();
            let _ = go_rx.recv();
            let _ = conn.write_all(event(&plan[split..]).as_bytes());
            let done = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 900, "completion_tokens": 90}});
            let _ = conn.write_all(format!("data: {done}\n\ndata: [DONE]\n\n").as_bytes());
        }
    });
    (port, first_rx, go)
}

fn streaming_part(full: bool) {
    let (port, first_byte, go) = streaming_server();
    let home = tempfile::tempdir().expect("dir");
    let config = home.path().join("llm.toml");
    std::fs::write(
        &config,
        format!("[llm]\nprofile = \"bench\"\n[llm.profiles.bench]\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"bench\"\nmax_repairs = 0\ntimeout_ms = 60000\n"),
    )
    .expect("config");
    let args = format!("--config {}", config.display());
    let mut app = support::pty::PtyApp::start(&support::opsbot_exe(), home.path(), &args, 160, 48);
    if !app.wait_text("Type a request", Duration::from_secs(120)) {
        let _ = std::fs::write(
            std::env::temp_dir().join("opsbot-llm-bench-screen.txt"),
            app.text(),
        );
        panic!(
            "the app did not start; its output is in opsbot-llm-bench-screen.txt in the temp dir"
        );
    }
    let n = if full { 30 } else { 2 };
    let mut took = Vec::new();
    for i in 0..n {
        let mark = app.mark();
        app.send(format!("check checkout {i}\r").as_bytes());
        let sent = first_byte
            .recv_timeout(Duration::from_secs(60))
            .expect("the app asked the model");
        assert!(
            app.wait_text_after(mark, "nope.first", Duration::from_secs(60)),
            "the first step was never drawn"
        );
        took.push(sent.elapsed());
        let _ = go.send(());
        assert!(
            app.wait_text_after(mark, "planner failed", Duration::from_secs(60)),
            "the plan did not end"
        );
        app.settle(Duration::from_millis(50));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "first streamed byte to the first step in the plan pane (real app, pty), {n} plans: p50 {:.1} ms, p99 {:.1} ms (aim: under 50 ms)",
        ms(percentile(took.clone(), 0.5)),
        ms(percentile(took, 0.99))
    );
    app.send(b"\x03\x03");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    prompt_part();
    streaming_part(full);
}
