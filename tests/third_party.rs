//! opsbot against an MCP server it did not write: the official filesystem
//! server from npm (installed by .ci/peers.sh, which this test runs if needed).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use opsbot::mcp::CallOptions;
use opsbot::session::{Event, StepStatus};
use serde_json::json;

fn filesystem_server() -> PathBuf {
    peer("mcp-server-filesystem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_server_is_connected_listed_and_called() {
    let fs_bin = filesystem_server();
    let home = Home::new();
    let allowed = home.path().join("allowed");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    let extra = format!(
        "[servers.fs]\ncommand = {:?}\nargs = [{:?}]\n",
        fs_bin.display().to_string(),
        allowed.display().to_string()
    );
    let servers = start_servers(&home, &extra, &["fs"]);
    servers.wait_settled().await;
    let (_, status) = servers.statuses().into_iter().next().expect("one server");
    assert!(status.is_ready(), "filesystem server not ready: {status:?}");

    let catalog = servers.catalog();
    assert!(
        catalog.len() >= 10,
        "expected the filesystem tool set, got {}",
        catalog.len()
    );
    let write = catalog.get("fs.write_file").expect("fs.write_file listed");
    assert!(!write.annotations.read_only);
    assert_eq!(write.def_hash.len(), 64);
    assert!(
        catalog
            .get("fs.read_text_file")
            .is_some_and(|t| t.annotations.read_only)
    );

    let file = allowed.join("notes.txt");
    let out = servers
        .call(
            "fs.write_file",
            args(json!({ "path": file.display().to_string(), "content": "deployed checkout r42" })),
            CallOptions::default(),
        )
        .await
        .expect("write_file call");
    assert!(!out.is_error, "{}", out.text);
    assert_eq!(
        std::fs::read_to_string(&file).expect("written"),
        "deployed checkout r42"
    );

    let out = servers
        .call(
            "fs.read_text_file",
            args(json!({ "path": file.display().to_string() })),
            CallOptions::default(),
        )
        .await
        .expect("read call");
    assert!(out.text.contains("deployed checkout r42"), "{}", out.text);

    // A tool-level failure comes back as an error result with its text, not a crash.
    let out = servers
        .call(
            "fs.read_text_file",
            args(json!({ "path": "/etc/passwd" })),
            CallOptions::default(),
        )
        .await
        .expect("the call itself succeeds");
    assert!(out.is_error, "reading outside the allowed dirs must fail");
    assert!(
        out.text.to_lowercase().contains("access denied") || out.text.contains("outside"),
        "{}",
        out.text
    );

    // Unknown tools never reach the server and get a suggestion.
    let err = servers
        .call(
            "fs.write_fil",
            serde_json::Map::new(),
            CallOptions::default(),
        )
        .await
        .expect_err("unknown tool");
    assert_eq!(
        err.to_string(),
        "server `fs` has no tool `write_fil`; did you mean `write_file`?"
    );
    servers.shutdown().await;
}

#[test]
fn a_runbook_plans_and_runs_third_party_tools_through_policy_and_the_engine() {
    let fs_bin = filesystem_server();
    let home = Home::new();
    let allowed = home.path().join("notes");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    let cfg = home.write_config(
        "fs.toml",
        &format!(
            r##"
[servers.fs]
command = {bin:?}
args = [{dir:?}]

[runbooks.note]
description = "Write a release note for a service and read it back"
phrases = ["write a release note for {{service}}"]

[[runbooks.note.steps]]
id = "write"
tool = "fs.write_file"
args = {{ path = "{dir}/{{service}}.md", content = "# {{service}}\nreleased" }}

[[runbooks.note.steps]]
id = "read"
tool = "fs.read_text_file"
args = {{ path = "{dir}/{{service}}.md" }}
depends_on = ["write"]
"##,
            bin = fs_bin.display().to_string(),
            dir = allowed.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    // The server marks write_file destructive, so policy gates it.
    let out = home.run(
        &[
            "--config",
            cfg,
            "run",
            "write a release note for payments",
            "--yes",
        ],
        &[],
    );
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("fs.write_file is marked destructive by its server"),
        "{}",
        stdout(&out)
    );
    assert!(!allowed.join("payments.md").exists());

    let out = home.run(
        &[
            "--config",
            cfg,
            "run",
            "write a release note for payments",
            "--yes",
            "--approve-gated",
        ],
        &[],
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(allowed.join("payments.md")).expect("note"),
        "# payments\nreleased"
    );
    let records = home.last_session();
    let st = state(&records);
    assert!(
        st.steps
            .values()
            .all(|s| s.status() == StepStatus::Succeeded)
    );
    let decision = records.iter().find_map(|r| match &r.event {
        Event::PolicyDecision { step, decision } if step.as_str() == "read" => {
            Some(decision.clone())
        }
        _ => None,
    });
    assert_eq!(
        decision.map(|d| d.label()),
        Some("allow"),
        "read-only third-party tool is allowed"
    );
}

/// Kills the child when the test ends, however it ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_server_is_connected_listed_and_called() {
    let bin = peer("mcp-server-everything");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _server = Reap(
        Command::new(&bin)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start server-everything"),
    );
    let up = (0..150).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "server-everything did not listen on {port}");

    let home = Home::new();
    let extra = format!("[servers.every]\nurl = \"http://127.0.0.1:{port}/mcp\"\n");
    let servers = start_servers(&home, &extra, &["every"]);
    servers.wait_settled().await;
    let (_, status) = servers.statuses().into_iter().next().expect("one server");
    assert!(status.is_ready(), "not ready over HTTP: {status:?}");
    assert!(
        servers.catalog().get("every.echo").is_some(),
        "tools: {:?}",
        servers.tools_of("every")
    );
    let out = servers
        .call(
            "every.echo",
            args(json!({ "message": "over http" })),
            CallOptions::default(),
        )
        .await
        .expect("echo over HTTP");
    assert!(
        !out.is_error && out.text.contains("over http"),
        "{}",
        out.text
    );
    servers.shutdown().await;
}

/// server-everything's long-running operation over stdio, through the
/// engine: its progress lands in the step, and cancelling it mid-way sends
/// notifications/cancelled, ends the step as cancelled, and records it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_operation_reports_progress_and_cancels_cleanly() {
    use opsbot::engine::{ApprovalDesk, Approvals};
    use opsbot::plan::{Plan, Step};
    use opsbot::policy::args_hash;
    use opsbot::session::{Event, Outcome};
    use std::sync::Arc;

    let bin = peer("mcp-server-everything");
    let home = Home::new();
    let extra = format!(
        "[servers.every]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        bin.display().to_string()
    );
    let rt = Arc::new(runtime_with(&home, &extra));
    rt.servers.wait_for(["every"]).await;
    let step = Step::new(
        "long",
        "every.trigger-long-running-operation",
        args(json!({"duration": 20, "steps": 40})),
    );
    let plan = Plan {
        title: "long".into(),
        steps: vec![step.clone()],
    };
    let session = rt.new_session("dev").expect("session");
    let decisions: std::collections::HashMap<_, _> = rt
        .decide_plan(&session, &plan, &rt.servers.catalog())
        .into_iter()
        .collect();
    assert_eq!(
        decisions[&step.id].label(),
        "allow",
        "read-only by its annotations"
    );
    let desk = Arc::new(ApprovalDesk::new());
    desk.approve(step.id.clone(), args_hash(&step.tool, &step.args));
    let mut records = session.subscribe();
    let run = {
        let (rt, session, desk, plan) = (
            Arc::clone(&rt),
            Arc::clone(&session),
            Arc::clone(&desk),
            plan.clone(),
        );
        tokio::spawn(async move {
            rt.engine()
                .run(
                    &session,
                    &plan,
                    &decisions,
                    &Approvals::Live(desk),
                    tokio_util::sync::CancellationToken::new(),
                )
                .await
                .expect("run")
        })
    };
    let mut progress = 0;
    let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(r) = records.recv().await {
            if matches!(r.event, Event::StepProgress { .. }) {
                progress += 1;
                if progress == 2 {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no progress from the long-running operation"
    );
    assert!(desk.cancel_step(&step.id), "the step was running");
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the run ends soon after the cancel")
        .expect("join");
    assert_eq!(outcome, Outcome::Failed);
    session.settle().expect("the run's end, committed");
    let st = session.state();
    let long = &st.steps[&step.id];
    assert!(
        long.progress
            .as_ref()
            .is_some_and(|p| p.total == Some(40.0)),
        "{:?}",
        long.progress
    );
    assert!(
        long.error
            .as_deref()
            .is_some_and(|e| e.contains("was cancelled")),
        "{:?}",
        long.error
    );
    rt.servers.shutdown().await;
}
