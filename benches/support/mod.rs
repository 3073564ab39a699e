//! What the benches share: percentiles, the side-by-side comparison line,
//! and where the opsbot binary is.
#![allow(dead_code)]

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
