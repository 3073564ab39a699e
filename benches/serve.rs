//! The latency `opsbot serve` adds to a call: an MCP client calling the
//! sandbox k8s server directly, against the same client calling it through
//! `opsbot serve` (policy, the audit log's durable commits, the engine),
//! interleaved in one run so both see the same machine.
//!
//! Then throughput: 8 clients calling at once, each straight to a server of
//! its own, against 8 clients on one `opsbot serve --http` (one store, one
//! k8s server for all).
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
    let per_client = if full { 100 } else { 3 };
    let (direct_rate, served_rate) = tokio.block_on(throughput(dir.path(), per_client));
    println!(
        "8 clients at once, {per_client} calls each: straight to 8 servers {direct_rate:.0} calls/s, through one opsbot serve --http {served_rate:.0} calls/s (ratio {:.2}x)",
        served_rate / direct_rate
    );
}

/// Calls per second from 8 clients calling `name` as fast as they can.
async fn rate(clients: &[RunningService<RoleClient, ()>], name: &str, per_client: usize) -> f64 {
    let start = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for c in clients {
        let peer = c.peer().clone();
        let name = name.to_string();
        all.spawn(async move {
            for _ in 0..per_client {
                let serde_json::Value::Object(args) = json!({"service": "checkout", "env": "dev"})
                else {
                    unreachable!()
                };
                let r = peer
                    .call_tool(CallToolRequestParams::new(name.clone()).with_arguments(args))
                    .await
                    .expect("call");
                assert!(!r.content.is_empty());
            }
        });
    }
    while let Some(done) = all.join_next().await {
        done.expect("client");
    }
    (clients.len() * per_client) as f64 / start.elapsed().as_secs_f64()
}

async fn throughput(dir: &std::path::Path, per_client: usize) -> (f64, f64) {
    let mut direct = Vec::new();
    for _ in 0..8 {
        direct.push(client(&["sandbox", "k8s"], dir).await);
    }
    let config = dir.join("bench.toml").to_string_lossy().into_owned();
    let mut serve = std::process::Command::new(support::opsbot_exe())
        .arg("--data-dir")
        .arg(dir)
        .args(["--config", &config, "serve", "--http", "127.0.0.1:0"])
        .env("OPSBOT_SANDBOX_LATENCY", "0")
        .env("OPSBOT_SANDBOX_DIR", dir.join("data/sandbox"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve --http");
    let url = {
        use std::io::BufRead;
        let err = serve.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(err).lines();
        let url = loop {
            let line = lines.next().expect("serve said where").expect("read");
            if let Some(at) = line.find("http://") {
                break line[at..].trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        url
    };
    let mut served = Vec::new();
    for _ in 0..8 {
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.clone());
        served.push(().serve(transport).await.expect("connect over HTTP"));
    }
    // Warm both.
    rate(&direct, "status", 1).await;
    rate(&served, "k8s.status", 1).await;
    let direct_rate = rate(&direct, "status", per_client).await;
    let served_rate = rate(&served, "k8s.status", per_client).await;
    for c in direct.into_iter().chain(served) {
        let _ = c.cancel().await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
    (direct_rate, served_rate)
}
