//! `opsbot tools`: every server's health and tools, from the cached lists
//! unless asked to refresh them.

use std::path::Path;
use std::process::ExitCode;

use opsbot::mcp::{ServerStatus, ToolInfo};
use opsbot::paths::Paths;
use opsbot::runtime::Runtime;

#[derive(clap::Args)]
pub struct ToolsArgs {
    /// Only tools whose name or description has all these words.
    pub words: Vec<String>,
    /// Start every server and list its tools afresh (the list is cached).
    #[arg(long)]
    pub refresh: bool,
    #[arg(long)]
    pub json: bool,
}

/// Whether `tool` has every word (case-insensitive) in its name or description.
pub fn matches(tool: &ToolInfo, words: &[String]) -> bool {
    let hay = format!("{} {}", tool.qualified(), tool.description).to_lowercase();
    words.iter().all(|w| hay.contains(&w.to_lowercase()))
}

pub async fn run(paths: Paths, config: Option<&Path>, args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::start(paths, config)?;
    if args.refresh {
        rt.servers.refresh().await;
    } else {
        rt.servers.wait_settled().await;
    }
    let statuses = rt.servers.statuses();
    let breakers: std::collections::HashMap<String, opsbot::mcp::BreakerState> =
        rt.servers.breakers().into_iter().collect();
    let tools_of = |name: &str| -> Vec<ToolInfo> {
        rt.servers
            .tools_of(name)
            .into_iter()
            .filter(|t| matches(t, &args.words))
            .collect()
    };
    if args.json {
        let out: Vec<_> = statuses
            .iter()
            .map(|(name, status)| {
                serde_json::json!({
                    "server": name,
                    "status": status,
                    "breaker": breakers.get(name),
                    "cached_at": rt.servers.cached_at(name),
                    "tools": tools_of(name),
                })
            })
            .collect();
        super::json_out(&out)?;
    } else {
        for (name, status) in &statuses {
            let tools = tools_of(name);
            if !args.words.is_empty() && tools.is_empty() {
                continue;
            }
            let glyph = match status {
                ServerStatus::Ready { .. } => "●",
                ServerStatus::Idle { .. } => "◌",
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
            for tool in tools {
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
        if statuses
            .iter()
            .any(|(_, s)| matches!(s, ServerStatus::Idle { .. }))
        {
            out!("(◌ cached lists: `opsbot tools --refresh` starts every server and lists afresh)");
        }
    }
    rt.servers.shutdown().await;
    let all_up = statuses.iter().all(|(_, s)| {
        matches!(
            s,
            ServerStatus::Ready { .. } | ServerStatus::Idle { .. } | ServerStatus::Disabled
        )
    });
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
