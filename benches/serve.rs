//! The latency `opsbot serve` adds to a call: an MCP client calling the
//! sandbox k8s server directly, against the same client calling it through
//! `opsbot serve` (policy, the audit log's durable commits, the engine),
//! interleaved in one run so both see the same machine.
//!
//! `cargo bench --bench serve`; under `cargo test` it runs a few calls as a
//! smoke test.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::json;

async fn client(args: &[&str], data: &std::path::Path) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(support::opsbot_exe());
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("OPSBOT_SANDBOX_LATENCY", "0")
        .env("OPSBOT_SANDBOX_DIR", data.join("data/sandbox"))
        .stderr(Stdio::null());
    ().serve(rmcp::transport::TokioChildProcess::new(cmd).expect("spawn"))
        .await
        .expect("initialize")
}

async fn one(c: &RunningService<RoleClient, ()>, name: &str) -> Duration {
    let args = json!({"service": "checkout", "env": "dev"});
    let serde_json::Value::Object(args) = args else {
        unreachable!()
    };
    let start = Instant::now();
    let r = c
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
        .await
        .expect("call");
    let took = start.elapsed();
    assert!(!r.content.is_empty(), "{name} answered nothing: {r:?}");
    took
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 400 } else { 5 };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let dir = tempfile::tempdir().expect("tmp");
    let (direct, served) = tokio.block_on(async {
        let direct_client = client(&["sandbox", "k8s"], dir.path()).await;
        // The served k8s server answers as fast as the direct one.
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            "[servers.k8s]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0\" }\n",
        )
        .expect("config");
        let config = config.to_string_lossy().into_owned();
        let served_client = client(&["--config", &config, "serve"], dir.path()).await;
        // Warm both paths (connections, caches, the first session write).
        for _ in 0..3 {
            one(&direct_client, "status").await;
            one(&served_client, "k8s.status").await;
        }
        let (mut direct, mut served) = (Vec::new(), Vec::new());
        for _ in 0..n {
            direct.push(one(&direct_client, "status").await);
            served.push(one(&served_client, "k8s.status").await);
        }
        let _ = direct_client.cancel().await;
        let _ = served_client.cancel().await;
        (direct, served)
    });
    println!(
        "per call, through opsbot serve vs straight to the server ({n} calls each, interleaved): {}",
        support::versus(&served, &direct)
    );
}
