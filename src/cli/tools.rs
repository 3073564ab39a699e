//! `opsbot tools`: every server's health and tools.

use std::path::Path;
use std::process::ExitCode;

use opsbot::mcp::ServerStatus;
use opsbot::paths::Paths;
use opsbot::runtime::Runtime;

pub async fn run(paths: Paths, config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let rt = Runtime::start(paths, config)?;
    rt.servers.wait_settled().await;
    let statuses = rt.servers.statuses();
    let breakers: std::collections::HashMap<String, opsbot::mcp::BreakerState> =
        rt.servers.breakers().into_iter().collect();
    if json {
        let out: Vec<_> = statuses
            .iter()
            .map(|(name, status)| {
                serde_json::json!({
                    "server": name,
                    "status": status,
                    "breaker": breakers.get(name),
                    "tools": rt.servers.tools_of(name),
                })
            })
            .collect();
        super::json_out(&out)?;
    } else {
        for (name, status) in &statuses {
            let glyph = match status {
                ServerStatus::Ready { .. } => "●",
                ServerStatus::Disabled => "○",
                _ => "✗",
            };
            let breaker = breakers
                .get(name)
                .filter(|b| !matches!(b, opsbot::mcp::BreakerState::Closed))
                .map(|b| format!(" · breaker {}", b.summary()))
                .unwrap_or_default();
            out!("{glyph} {name}: {}{breaker}", status.summary());
            if let ServerStatus::Failed { stderr, .. } | ServerStatus::Exited { stderr, .. } =
                status
            {
                for line in stderr.iter().rev().take(5).rev() {
                    out!("    stderr: {line}");
                }
            }
            for tool in rt.servers.tools_of(name) {
                let a = tool.annotations;
                let flags = if a.read_only {
                    "read-only"
                } else if a.destructive {
                    "destructive"
                } else {
                    "changes state"
                };
                let desc = tool.description.lines().next().unwrap_or_default();
                out!(
                    "    {:<28} {:<14} {}",
                    tool.qualified(),
                    flags,
                    opsbot::text::truncate(desc, 80)
                );
            }
        }
    }
    rt.servers.shutdown().await;
    let all_up = statuses
        .iter()
        .all(|(_, s)| matches!(s, ServerStatus::Ready { .. } | ServerStatus::Disabled));
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
