//! `opsbot history`: past sessions, read from the store with no servers.

use std::process::ExitCode;

use clap::Subcommand;
use opsbot::paths::Paths;
use opsbot::session::{SessionState, Store};

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// The newest sessions first.
    List {
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
}

pub fn run(paths: &Paths, command: HistoryCommand) -> anyhow::Result<ExitCode> {
    let db = paths.database();
    if !db.exists() {
        println!("no history yet: {} does not exist", db.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&db)?;
    match command {
        HistoryCommand::List { limit, json } => {
            let sessions = store.list_sessions(limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else {
                for s in sessions {
                    println!(
                        "{}  {}  {:<20} {:<10} {}",
                        s.id,
                        s.started_at.get(..16).unwrap_or(&s.started_at),
                        s.outcome.as_deref().unwrap_or("unfinished"),
                        s.actor,
                        s.title.as_deref().unwrap_or("")
                    );
                }
            }
        }
        HistoryCommand::Show { id, json } => {
            let id = store.find_session(&id)?;
            let records = store.events(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in &records {
                    if let Some(line) = super::print::record(r, false) {
                        println!("{line}");
                    }
                }
                let state = SessionState::replay(&records);
                if state.outcome.is_none() {
                    println!("(this session did not finish)");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
