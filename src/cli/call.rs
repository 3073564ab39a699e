//! `opsbot call SERVER.TOOL [KEY=VALUE …]`: one tool, by name, governed
//! like any plan (validated, decided by policy, approved, run, recorded).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use opsbot::paths::Paths;

use super::run::RunArgs;

#[derive(Args)]
pub struct CallArgs {
    /// The tool, as `server.tool` (`opsbot tools` lists them).
    pub tool: String,
    /// Arguments as KEY=VALUE, typed by the tool's schema (replicas=5,
    /// dry_run=true, labels=a,b; objects as JSON).
    #[arg(value_name = "KEY=VALUE")]
    pub pairs: Vec<String>,
    /// Arguments as one JSON object; KEY=VALUE pairs win over it.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
    /// Approve the call if it is not gated.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also approve it when gated (production, destructive) without typing a confirmation.
    #[arg(long)]
    pub approve_gated: bool,
    /// Why: required with --approve-gated to override a change freeze.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print one JSON object describing the run instead of text.
    #[arg(long)]
    pub json: bool,
    /// How to answer a server that asks for input or to use the model:
    /// `ask` on the terminal (the default when there is one), accept forms
    /// with their `defaults`, or `decline`.
    #[arg(long, value_enum, value_name = "HOW")]
    pub elicit: Option<super::answer::Elicit>,
}

/// What `run` needs to propose a named call instead of planning a request.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub tool: String,
    pub pairs: Vec<String>,
    pub args: Option<String>,
}

pub async fn run(
    paths: Paths,
    config: Option<&Path>,
    args: CallArgs,
    as_user: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let request = format!("call {}", args.tool);
    let run = RunArgs {
        request: Some(request),
        resume: None,
        yes: args.yes,
        approve_gated: args.approve_gated,
        undo: false,
        reason: args.reason,
        json: args.json,
        elicit: args.elicit,
        call: Some(CallSpec {
            tool: args.tool,
            pairs: args.pairs,
            args: args.args,
        }),
    };
    super::run::run(paths, config, run, as_user).await
}
