//! What the benches share: percentiles, the side-by-side comparison line,
//! and where the opsbot binary is.
#![allow(dead_code)]

pub mod engine;
pub mod pty;

use std::path::PathBuf;
use std::time::Duration;

use opsbot::mcp::{Annotations, ToolInfo};
use serde_json::json;

pub fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// "median A µs vs B µs (ratio R, +D µs); p99 …": `slow` measured against
/// `base` in the same run.
pub fn versus(slow: &[Duration], base: &[Duration]) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (b50, s50) = (
        us(percentile(base.to_vec(), 0.5)),
        us(percentile(slow.to_vec(), 0.5)),
    );
    let (b99, s99) = (
        us(percentile(base.to_vec(), 0.99)),
        us(percentile(slow.to_vec(), 0.99)),
    );
    format!(
        "median {s50:.0} µs vs {b50:.0} µs (ratio {:.2}x, +{:.0} µs); p99 {s99:.0} µs vs {b99:.0} µs (ratio {:.2}x)",
        s50 / b50.max(1e-9),
        s50 - b50,
        s99 / b99.max(1e-9)
    )
}

/// The opsbot binary the bench spawns (sandbox servers, `serve`).
pub fn opsbot_exe() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_opsbot")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // Benches run from target/release/deps; the binary is one up.
            let mut p = std::env::current_exe().expect("exe");
            p.pop();
            p.pop();
            p.push("opsbot");
            p
        })
}

const VERBS: [&str; 18] = [
    "list", "get", "create", "delete", "update", "restart", "rotate", "search", "describe",
    "purge", "page", "show", "sync", "tag", "archive", "resize", "export", "lock",
];
const NOUNS: [&str; 27] = [
    "issue",
    "pull_request",
    "ticket",
    "bucket",
    "queue",
    "cache",
    "dns_record",
    "certificate",
    "secret",
    "user",
    "team",
    "incident",
    "runbook",
    "dashboard",
    "alert_rule",
    "database",
    "snapshot",
    "volume",
    "node",
    "pod",
    "repo",
    "branch",
    "release",
    "budget",
    "trace",
    "log",
    "worker",
];

/// 486 made-up tools with realistic names, descriptions and schemas.
pub fn synthetic_tools() -> Vec<ToolInfo> {
    let mut out = Vec::new();
    for (i, noun) in NOUNS.iter().enumerate() {
        let server = format!("svc{i:02}");
        for verb in VERBS {
            let read_only = matches!(
                verb,
                "list" | "get" | "search" | "describe" | "show" | "export"
            );
            out.push(ToolInfo {
                server: server.clone(),
                name: format!("{verb}_{noun}"),
                description: format!(
                    "{} a {} in the {server} system. Use it when an engineer asks to {verb} one.",
                    verb,
                    noun.replace('_', " ")
                ),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": format!("Which {noun}")},
                        "env": {"type": "string", "description": "Environment"},
                        "limit": {"type": "integer", "description": "At most this many"},
                    },
                    "required": ["name"],
                }),
                annotations: Annotations {
                    read_only,
                    destructive: !read_only,
                    ..Annotations::default()
                },
                def_hash: format!("h{i}{verb}"),
                sent: None,
            });
        }
    }
    out
}

// The history benches' log: a realistic session, generated.
use opsbot::plan::{Step, StepId};
use opsbot::session::{Event, Outcome};

const SERVICES: [&str; 6] = [
    "checkout", "payments", "catalog", "search", "auth", "ledger",
];
const ENVS: [&str; 3] = ["dev", "staging", "production"];

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Ten events a session: a request, two governed steps, their results.
pub fn session_events(i: usize) -> Vec<Event> {
    let svc = SERVICES[i % SERVICES.len()];
    let env = ENVS[(i / SERVICES.len()) % ENVS.len()];
    let failed = i.is_multiple_of(17);
    let deploy =
        args(json!({"service": svc, "env": env, "image": format!("registry.local/{svc}:{i}")}));
    let mut plan_steps = vec![
        Step::new("deploy", "k8s.deploy", deploy.clone()),
        Step::new(
            "verify",
            "monitor.health",
            args(json!({"service": svc, "env": env})),
        ),
    ];
    plan_steps[1].depends_on = vec![StepId::new("deploy")];
    let step = |id: &str| StepId::new(id);
    vec![
        Event::UserMessage {
            text: format!("deploy {svc} to {env}"),
        },
        Event::PlanProposed {
            plan: opsbot::plan::Plan {
                title: format!("deploy {svc} → {env}"),
                steps: plan_steps,
            },
            defs: Default::default(),
            influenced_by: Vec::new(),
        },
        Event::Approved {
            step: step("deploy"),
            by: "alice".into(),
            args_hash: format!("{i:064x}"),
            gated: env == "production",
            reason: None,
            from: None,
        },
        Event::StepStarted {
            step: step("deploy"),
            tool: "k8s.deploy".into(),
            args: deploy,
        },
        if failed {
            Event::StepFailed {
                step: step("deploy"),
                error: format!("rollout of {svc} stuck: 1 of 3 replicas ready"),
                output: None,
                duration_ms: 30_000,
            }
        } else {
            Event::StepSucceeded {
                step: step("deploy"),
                output: serde_json::from_value(json!({
                    "is_error": false,
                    "text": format!("{{\"service\":\"{svc}\",\"env\":\"{env}\",\"revision\":{i},\"status\":\"rolled out\"}}"),
                    "structured": null
                }))
                .expect("output"),
                duration_ms: 900,
            }
        },
        Event::StepStarted {
            step: step("verify"),
            tool: "monitor.health".into(),
            args: args(json!({"service": svc, "env": env})),
        },
        Event::StepSucceeded {
            step: step("verify"),
            output: serde_json::from_value(json!({
                "is_error": false,
                "text": format!("{{\"service\":\"{svc}\",\"healthy\":true,\"p99_ms\":{}}}", 40 + i % 60),
                "structured": null
            }))
            .expect("output"),
            duration_ms: 300,
        },
        Event::Note {
            text: format!("ticket OPS-{}", 1000 + i),
        },
        Event::AssistantMessage {
            text: format!("Deployed {svc} to {env}."),
        },
        Event::RunFinished {
            outcome: if failed {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            },
            summary: "2 steps".into(),
        },
    ]
}
