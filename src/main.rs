//! The opsbot binary: the command line over the core library.

#[macro_use]
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "opsbot",
    version,
    about = "A terminal ChatOps assistant: plans MCP tool calls, governs them, runs them, and keeps an audit log."
)]
struct Cli {
    /// Extra config file, layered over the built-in defaults and your config.toml.
    #[arg(long, global = true, env = "OPSBOT_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Keep config, data and logs under this directory instead of the usual places.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Colour theme for the app: dark, light or high-contrast (overrides config).
    #[arg(long, value_name = "NAME")]
    theme: Option<String>,
    /// Act as this user (for roles in policy); needs [policy] allow_as.
    #[arg(long = "as", global = true, value_name = "USER")]
    as_user: Option<String>,
    /// Reopen an interrupted session in the app (an id or a unique prefix).
    #[arg(long, value_name = "ID")]
    resume: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Plan a request, ask for approvals, run it, and print what happened.
    Run(cli::run::RunArgs),
    /// Call one tool by name, e.g. `opsbot call k8s.scale service=checkout
    /// env=staging replicas=3`: decided by policy, approved, run and
    /// recorded like any plan. Same exit codes as `run`.
    Call(cli::call::CallArgs),
    /// List every server's tools and health. Servers not started are shown
    /// from their cached tool list, without starting them.
    Tools(cli::tools::ToolsArgs),
    /// Past sessions, read from the store (works offline): list, search,
    /// show, export. With no subcommand at a terminal: the app's history
    /// browser.
    History {
        #[command(subcommand)]
        command: Option<cli::history::HistoryCommand>,
    },
    /// What happened, in aggregate, from the log (works offline): runs per
    /// day and their outcomes, step durations and failures by tool,
    /// approval waits, denials by rule, model use.
    Insights {
        /// From this time: a date, an RFC 3339 time, or an age (30d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Where the log lives ([store]), and moving an SQLite log into the
    /// shared PostgreSQL store: `opsbot store migrate --from sqlite PATH`.
    Store {
        #[command(subcommand)]
        command: cli::store::StoreCommand,
    },
    /// Calls made through `opsbot serve` that wait for a person: list,
    /// show, approve or refuse them (as the app's `W` list does).
    Approvals {
        #[command(subcommand)]
        command: cli::approvals::ApprovalsCommand,
    },
    /// The OpenTelemetry export ([telemetry]): how far it got, or send the
    /// rest now.
    Telemetry {
        #[command(subcommand)]
        command: cli::telemetry::TelemetryCommand,
    },
    /// Check the audit log's hash chain, export it, prune it (works offline).
    Audit {
        #[command(subcommand)]
        command: cli::audit::AuditCommand,
    },
    /// Dry-run policy on a plan, explain a decision, review pinned tools.
    Policy {
        #[command(subcommand)]
        command: cli::policy::PolicyCommand,
    },
    /// Serve every server's tools as one MCP server (stdio, or streamable
    /// HTTP with --http), each call governed by policy, approvals and the
    /// audit log.
    Serve(cli::serve::ServeArgs),
    /// Your MCP servers: import them from other clients, list, enable,
    /// disable, remove.
    Servers {
        #[command(subcommand)]
        command: cli::servers::ServersCommand,
    },
    /// Measure a planner on your own estate: opsbot eval planner [CASES.toml] --profile P
    Eval {
        #[command(subcommand)]
        command: cli::eval::EvalCommand,
    },
    /// Check the configuration and show where each value comes from.
    Config {
        #[command(subcommand)]
        command: cli::config::ConfigCommand,
    },
    /// Print shell completions: opsbot completions bash > ~/.local/share/bash-completion/completions/opsbot
    Completions { shell: clap_complete::Shell },
    /// Log in to remote MCP servers (OAuth), and keep API keys in the OS keyring.
    Auth {
        #[command(subcommand)]
        command: cli::auth::AuthCommand,
    },
    /// Serve one of the built-in sandbox MCP servers on stdio.
    #[command(hide = true)]
    Sandbox { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Sandbox { name }) = &cli.command {
        return cli::sandbox(name);
    }
    if let Some(Command::Completions { shell }) = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "opsbot", &mut out);
        // Completion scripts are opsbot's own text: printed as they are.
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(&out);
        return ExitCode::SUCCESS;
    }
    // The app draws on a terminal; without one it would start a session it
    // can never show. Say what works instead, before anything is created.
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if cli.command.is_none() && !interactive {
        err!(
            "opsbot's app needs a terminal; try `opsbot run \"deploy checkout to staging\"` for a headless run, or `opsbot --help`"
        );
        return cli::exit_error();
    }
    let paths = match cli::paths(cli.data_dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            err!("opsbot: {e:#}");
            return cli::exit_error();
        }
    };
    let _log_guard = cli::init_logging(&paths);
    // `opsbot history` at a terminal opens the browser in the app; piped,
    // it prints the list.
    let browse = matches!(cli.command, Some(Command::History { command: None }))
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    // Only the commands that may need a secret (an API key, a server's
    // token, the audit key) look for the OS keyring.
    if browse
        || !matches!(
            cli.command,
            Some(Command::History { .. })
                | Some(Command::Insights { .. })
                | Some(Command::Config { .. })
        )
    {
        opsbot::secrets::use_platform_store();
    }
    // `serve` on stdio answers one client: every call passes from the
    // client's pipe to a server's and back, and one thread does that with
    // no wake-up crossing threads (on two cores that was most of a hop).
    let one_client = matches!(&cli.command, Some(Command::Serve(a)) if a.http.is_none());
    let runtime = if one_client {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            err!("opsbot: cannot start the async runtime: {e}");
            return cli::exit_error();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => {
                cli::run::run(paths, cli.config.as_deref(), args, cli.as_user.as_deref()).await
            }
            Some(Command::Call(args)) => {
                cli::call::run(paths, cli.config.as_deref(), args, cli.as_user.as_deref()).await
            }
            Some(Command::Policy { command }) => {
                cli::policy::run(
                    paths,
                    cli.config.as_deref(),
                    command,
                    cli.as_user.as_deref(),
                )
                .await
            }
            Some(Command::Serve(args)) => {
                cli::serve::run(paths, cli.config.as_deref(), args, cli.as_user.as_deref()).await
            }
            Some(Command::Tools(args)) => cli::tools::run(paths, cli.config.as_deref(), args).await,
            Some(Command::History { command: None }) if browse => {
                cli::app(
                    paths,
                    cli.config.as_deref(),
                    cli.theme,
                    None,
                    cli.as_user.as_deref(),
                    true,
                )
                .await
            }
            Some(Command::History { command }) => {
                cli::history::run(&paths, cli.config.as_deref(), command)
            }
            Some(Command::Insights { since, json }) => {
                cli::insights::run(&paths, cli.config.as_deref(), since.as_deref(), json)
            }
            Some(Command::Audit { command }) => {
                cli::audit::run(&paths, cli.config.as_deref(), command)
            }
            Some(Command::Store { command }) => {
                cli::store::run(&paths, cli.config.as_deref(), command)
            }
            Some(Command::Approvals { command }) => cli::approvals::run(
                &paths,
                cli.config.as_deref(),
                cli.as_user.as_deref(),
                command,
            ),
            Some(Command::Telemetry { command }) => {
                cli::telemetry::run(&paths, cli.config.as_deref(), command).await
            }
            Some(Command::Eval { command }) => {
                cli::eval::run(paths, cli.config.as_deref(), command).await
            }
            Some(Command::Servers { command }) => {
                cli::servers::run(&paths, cli.config.as_deref(), command)
            }
            Some(Command::Config { command }) => {
                cli::config::run(&paths, cli.config.as_deref(), command)
            }
            Some(Command::Completions { .. }) => unreachable!("handled above"),
            Some(Command::Auth { command }) => {
                cli::auth::run(&paths, cli.config.as_deref(), command).await
            }
            Some(Command::Sandbox { .. }) => unreachable!("handled above"),
            None => {
                cli::app(
                    paths,
                    cli.config.as_deref(),
                    cli.theme,
                    cli.resume,
                    cli.as_user.as_deref(),
                    false,
                )
                .await
            }
        }
    });
    // Servers that ignore EOF are killed by shutdown; don't wait on stragglers.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            err!("opsbot: {e:#}");
            cli::exit_for(&e)
        }
    }
}
