//! `opsbot insights`: what happened, in aggregate, from the log (offline).

use std::process::ExitCode;

use opsbot::paths::Paths;
use opsbot::session::{Insights, sparkline};

pub fn run(
    paths: &Paths,
    config: Option<&std::path::Path>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let since = since.map(super::since).transpose()?;
    let Some(store) = super::open_log(paths, config, true)? else {
        out!(
            "no audit log yet: {} does not exist",
            paths.database().display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let insights = store.insights(since.as_deref())?;
    if json {
        super::json_out(&insights)?;
    } else {
        print(&insights);
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(s: f64) -> String {
    match s {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        s => format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        seconds(ms as f64 / 1000.0)
    }
}

fn print(i: &Insights) {
    let from = i
        .since
        .as_deref()
        .map(|s| format!("since {}", s.get(..10).unwrap_or(s)))
        .unwrap_or_else(|| "everything in the log".into());
    let rate = i
        .success_rate
        .map(|r| format!(", {:.0}% of those that ended succeeded", r * 100.0))
        .unwrap_or_default();
    out!("{from}: {} runs{rate}", i.runs);
    if let (Some(first), Some(last)) = (i.days.first(), i.days.last()) {
        let runs: Vec<u64> = i.days.iter().map(|d| d.runs).collect();
        let failed: Vec<u64> = i
            .days
            .iter()
            .map(|d| d.outcomes.get("failed").copied().unwrap_or(0))
            .collect();
        out!(
            "  runs per day    {}  ({} to {}, at most {})",
            sparkline(&runs),
            first.day,
            last.day,
            runs.iter().max().copied().unwrap_or(0)
        );
        out!(
            "  failed per day  {}  ({} in all)",
            sparkline(&failed),
            failed.iter().sum::<u64>()
        );
    }
    if !i.tools.is_empty() {
        out!(
            "\n  {:<32} {:>6} {:>7} {:>9} {:>9}",
            "tool",
            "calls",
            "failed",
            "p50",
            "p95"
        );
        for t in i.tools.iter().take(20) {
            out!(
                "  {:<32} {:>6} {:>7} {:>9} {:>9}",
                t.tool,
                t.calls,
                t.failures,
                millis(t.p50_ms),
                millis(t.p95_ms)
            );
        }
        if i.tools.len() > 20 {
            out!(
                "  … and {} more tools (--json has them all)",
                i.tools.len() - 20
            );
        }
    }
    let list = |v: &[(String, u64)]| {
        v.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !i.failures_by_server.is_empty() {
        out!(
            "\n  failed steps by server: {}",
            list(&i.failures_by_server)
        );
    }
    match (i.approval_wait_p50_s, i.approval_wait_p95_s) {
        (Some(p50), Some(p95)) => out!(
            "  approvals: {}, waited p50 {}, p95 {}, {} in all",
            i.approvals,
            seconds(p50),
            seconds(p95),
            seconds(i.approval_wait_total_s)
        ),
        _ => out!("  approvals: {}", i.approvals),
    }
    if !i.denials.is_empty() {
        out!("  denied by rule: {}", list(&i.denials));
    }
    if i.llm_tokens > 0 {
        let tokens: Vec<u64> = i.days.iter().map(|d| d.llm_tokens).collect();
        out!(
            "  model use: {} tokens, ${:.2}  {}",
            i.llm_tokens,
            i.llm_cost_usd,
            sparkline(&tokens)
        );
    }
}
