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
    // Resources, templates and prompts of the servers that are up (a
    // search lists tools only).
    let mut offered = std::collections::BTreeMap::new();
    if args.words.is_empty() {
        for (name, _) in &statuses {
            if let Some(o) = rt.servers.offerings(name).await {
                offered.insert(name.clone(), o);
            }
        }
    }
    if args.json {
        let out: Vec<_> = statuses
            .iter()
            .map(|(name, status)| {
                let o = offered.get(name);
                serde_json::json!({
                    "server": name,
                    "status": status,
                    "breaker": breakers.get(name),
                    "cached_at": rt.servers.cached_at(name),
                    "tools": tools_of(name)
                        .iter()
                        .map(|t| {
                            let mut v = serde_json::to_value(t).unwrap_or_default();
                            v["flags"] = serde_json::to_value(&*opsbot::policy::scan::tool(t))
                                .unwrap_or_default();
                            v
                        })
                        .collect::<Vec<_>>(),
                    "resources": o.map(|o| &o.resources),
                    "resource_templates": o.map(|o| &o.templates),
                    "prompts": o.map(|o| &o.prompts),
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
                    opsbot::text::truncate(&opsbot::text::reveal(desc), 80)
                );
                for f in opsbot::policy::scan::tool(&tool).iter() {
                    out!(
                        "      ⚠ {} ({:?}) in {}: \"{}\"",
                        f.rule,
                        f.severity,
                        f.field,
                        opsbot::text::truncate(&f.span, 100)
                    );
                }
            }
            if let Some(o) = offered.get(name) {
                list_offered(name, "resources", &o.resources);
                list_offered(name, "resource templates", &o.templates);
                list_offered(name, "prompts", &o.prompts);
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

/// At most this many resources, templates or prompts are listed per server.
const LISTED: usize = 12;

fn list_offered(server: &str, what: &str, items: &[opsbot::mcp::Offered]) {
    if items.is_empty() {
        return;
    }
    let hint = match what {
        "resources" => format!(" (read one: opsbot call {server}.resources/read uri=URI)"),
        _ => String::new(),
    };
    out!("    {what}{hint}:");
    for item in items.iter().take(LISTED) {
        let desc = item.description.lines().next().unwrap_or_default();
        // A title that the URI already says is not repeated.
        let title = if item.name.contains(&item.title) {
            String::new()
        } else {
            format!(" ({})", item.title)
        };
        out!(
            "      {}{title}  {}",
            item.name,
            opsbot::text::truncate(desc, 70)
        );
    }
    if items.len() > LISTED {
        out!(
            "      … and {} more (--json lists them all)",
            items.len() - LISTED
        );
    }
}
