//! `opsbot history`: past sessions, read from the store with no servers.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use opsbot::paths::Paths;
use opsbot::session::{Query, SessionState, report};

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// The newest sessions first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Sessions whose requests, messages, tools, arguments or results hold
    /// every word given, newest first.
    Search {
        /// Words to find ("payments production"); the last may be cut short.
        words: String,
        /// Started at or after: a date, an RFC 3339 time, or an age (7d).
        #[arg(long)]
        since: Option<String>,
        /// Ran a tool matching this pattern (k8s.deploy, k8s.*).
        #[arg(long)]
        tool: Option<String>,
        /// Ended so: succeeded, failed, denied, cancelled, ..., interrupted.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Every event of one session (an id or a unique prefix of one).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A session as a report: request, plan, decisions, approvals (who and
    /// when), results and timings.
    Export {
        id: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

pub fn run(
    paths: &Paths,
    config: Option<&std::path::Path>,
    command: Option<HistoryCommand>,
) -> anyhow::Result<ExitCode> {
    let Some(store) = super::open_log(paths, config, false)? else {
        out!(
            "no history yet: {} does not exist",
            paths.database().display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let command = command.unwrap_or(HistoryCommand::List {
        limit: 20,
        json: false,
    });
    match command {
        HistoryCommand::List { limit, json } => {
            let found = store.search(&Query {
                limit,
                ..Query::default()
            })?;
            print_found(&found, json)?;
        }
        HistoryCommand::Search {
            words,
            since,
            tool,
            status,
            limit,
            json,
        } => {
            let since = since.as_deref().map(super::since).transpose()?;
            let found = store.search(&Query {
                text: words,
                since,
                tool,
                status,
                limit,
                skip_empty: false,
            })?;
            if found.is_empty() && !json {
                out!("no sessions match");
            }
            print_found(&found, json)?;
        }
        HistoryCommand::Show { id, json } => {
            let id = store.find_session(&id)?;
            let records = store.events(&id)?;
            if json {
                super::json_out(&records)?;
            } else {
                for r in &records {
                    if let Some(line) = super::print::record(r, false) {
                        out!("{line}");
                    }
                }
                let state = SessionState::replay(&records);
                if state.outcome.is_none() {
                    out!("(this session was interrupted: it never finished)");
                }
            }
        }
        HistoryCommand::Export { id, format } => {
            let id = store.find_session(&id)?;
            let records = store.events(&id)?;
            match format {
                ReportFormat::Markdown => super::emit(false, &report::markdown(&records), false),
                ReportFormat::Json => {
                    let summary = store.session_summary(&id)?;
                    super::json_out(&serde_json::json!({
                        "session": summary,
                        "events": records,
                    }))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Requests and snippets in a list are cut here: a pasted 100 KB request
/// is one line of a list, not a screenful.
const LIST_WIDTH: usize = 160;

fn print_found(found: &[opsbot::session::Found], json: bool) -> anyhow::Result<()> {
    if json {
        return super::json_out(&found);
    }
    for s in found {
        out!(
            "{}  {}  {:<19} {:<10} {:<22} {}",
            s.id,
            s.started_at.get(..16).unwrap_or(&s.started_at),
            s.outcome,
            s.actor,
            if s.envs.is_empty() {
                "-".to_string()
            } else {
                s.envs.join(",")
            },
            opsbot::sanitize::line(s.title.as_deref().unwrap_or(""), LIST_WIDTH)
        );
        if let Some(snippet) = &s.snippet {
            out!("    {}", opsbot::sanitize::line(snippet, LIST_WIDTH));
        }
    }
    Ok(())
}
