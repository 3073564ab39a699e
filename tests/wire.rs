//! MCP details on the wire, against a raw JSON-RPC fixture server:
//! paginated tools/list, tools/list_changed, cancellation, progress relay.

mod common;

use std::time::Duration;

use common::*;
use opsbot::mcp::{CallError, CallOptions, ServerEvent};
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

fn fixture(home: &Home) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire_server.py");
    format!(
        "[servers.wire]\ncommand = \"python3\"\nargs = [{script:?}]\nenv = {{ WIRE_LOG = {:?} }}\ntimeout_ms = 5000\n",
        home.path().join("wire.log").display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_pagination_and_tool_list_changes() {
    let home = Home::new();
    let servers = start_servers(&home, &fixture(&home), &["wire"]);
    let mut events = servers.subscribe();
    servers.wait_settled().await;
    let names: Vec<String> = servers
        .tools_of("wire")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["echo", "grow", "slow"], "all three pages listed");

    let out = servers
        .call("wire.grow", Map::new(), CallOptions::default())
        .await
        .expect("grow");
    assert_eq!(out.text, "grown");
    let relisted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(ServerEvent::Status { status, .. }) if status.summary() == "ready, 4 tools" => {
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await;
    assert!(relisted.is_ok(), "no re-list after tools/list_changed");
    assert!(servers.catalog().get("wire.grown3").is_some());
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_sends_notifications_cancelled() {
    let home = Home::new();
    let servers = start_servers(&home, &fixture(&home), &["wire"]);
    servers.wait_settled().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let err = servers
        .call(
            "wire.slow",
            Map::new(),
            CallOptions {
                cancel: Some(cancel),
                ..Default::default()
            },
        )
        .await
        .expect_err("cancelled");
    assert_eq!(
        err,
        CallError::Cancelled {
            tool: "wire.slow".into()
        }
    );
    // The server is told, and the connection stays usable.
    let out = servers
        .call(
            "wire.echo",
            args(json!({"text": "still here"})),
            CallOptions::default(),
        )
        .await
        .expect("echo after cancel");
    assert_eq!(out.text, "still here");
    let log = std::fs::read_to_string(home.path().join("wire.log")).expect("wire log");
    assert!(log.lines().any(|l| l == "notifications/cancelled"), "{log}");
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_reach_the_caller() {
    let home = Home::new();
    // A little simulated work, so progress arrives while the call is under way.
    let slow = "[servers.ci]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0.05\" }\n";
    let servers = start_servers(&home, slow, &["ci"]);
    servers.wait_settled().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = servers
        .call(
            "ci.build",
            args(json!({"service": "checkout", "ref": "main"})),
            CallOptions {
                progress: Some(tx),
                ..Default::default()
            },
        )
        .await
        .expect("build");
    assert!(!out.is_error, "{}", out.text);
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        seen.push(p.message.unwrap_or_default());
    }
    assert!(
        seen.contains(&"compiling".to_string()),
        "progress seen: {seen:?}"
    );
    servers.shutdown().await;
}
