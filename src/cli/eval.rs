//! `opsbot eval planner [CASES.toml] [--profile P] [--runs N] [--json]`:
//! score a planner on a set of requests; nothing is recorded or run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use opsbot::paths::Paths;
use opsbot::runtime::Runtime;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Plan each case (the built-in sandbox set when no file is given) and
    /// report tool and argument accuracy, valid plans, repairs, tokens,
    /// latency and cost, per case and overall.
    Planner {
        /// Cases: [[case]] request, tools, args, asks (see assets/eval/sandbox.toml).
        cases: Option<PathBuf>,
        /// An LLM profile, or `runbook` for the offline planner (default: the configured planner).
        #[arg(long)]
        profile: Option<String>,
        /// Plan each case this many times.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    paths: Paths,
    config: Option<&Path>,
    command: EvalCommand,
) -> anyhow::Result<ExitCode> {
    let EvalCommand::Planner {
        cases,
        profile,
        runs,
        json,
    } = command;
    let text = match &cases {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => opsbot::eval::SANDBOX_CASES.to_string(),
    };
    let name = cases
        .as_ref()
        .map_or("the built-in sandbox cases".to_string(), |p| {
            p.display().to_string()
        });
    let set = opsbot::eval::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let rt = Runtime::start(paths, config)?;
    let report = opsbot::eval::run(&rt, profile.as_deref(), &set, runs.max(1)).await;
    rt.servers.shutdown().await;
    let report = report.map_err(|e| anyhow::anyhow!(e))?;
    if json {
        super::json_out(&report)?;
    } else {
        super::emit(false, &opsbot::eval::table(&report), false);
    }
    Ok(ExitCode::SUCCESS)
}
