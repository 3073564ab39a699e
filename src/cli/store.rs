//! `opsbot store`: where the log lives, and moving an existing SQLite log
//! into the shared PostgreSQL store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use opsbot::paths::Paths;
use opsbot::session::{ChainReport, Store};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Which store this config uses, and whether it answers.
    Status,
    /// Copy an existing log into the shared store ([store] url), every
    /// record as written, so its chain verifies there unchanged. A
    /// migration that stopped resumes when run again.
    Migrate {
        #[arg(long, value_enum)]
        from: Source,
        /// The SQLite log file (the data directory's `opsbot.db`).
        path: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    Sqlite,
}

pub fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: StoreCommand,
) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    let cfg = &loaded.config.store;
    match command {
        StoreCommand::Status => {
            let store = opsbot::session::open_store_read(&paths.database(), cfg)?;
            let kind = if store.is_shared() {
                "shared (PostgreSQL)"
            } else {
                "embedded (SQLite)"
            };
            out!("{kind}: {}", store.location());
            out!("records: {}", store.last_seq()?);
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Migrate {
            from: Source::Sqlite,
            path,
        } => {
            if cfg.url.is_none() {
                anyhow::bail!(
                    "no shared store to migrate into: set [store] url = \"postgres://USER@HOST:PORT/DATABASE\" first"
                );
            }
            if !path.is_file() {
                anyhow::bail!(
                    "{} is not a file: give the SQLite log (opsbot.db)",
                    path.display()
                );
            }
            let source = Store::open_read(&path)?;
            let before = source.verify_all()?;
            if !matches!(before.report, ChainReport::Whole { .. }) {
                anyhow::bail!(
                    "{} does not verify ({:?}); check it with `opsbot audit verify` before moving it",
                    path.display(),
                    before.report
                );
            }
            let target = opsbot::session::open_store(&paths.database(), cfg)?;
            let done = source.migrate_into(&target)?;
            let after = target.verify_all()?;
            let whole = matches!(after.report, ChainReport::Whole { .. })
                && after.last_hash == before.last_hash
                && after.last_seq == before.last_seq;
            if done.resumed_after > 0 {
                out!(
                    "resumed after #{} (copied by an earlier run)",
                    done.resumed_after
                );
            }
            out!(
                "copied {} records, {} sessions and {} pins from {} to {}",
                done.events,
                done.sessions,
                done.pins,
                path.display(),
                target.location()
            );
            if whole {
                out!(
                    "the chain verifies there: #{} to #{}, last hash {} (the same as the file's)",
                    after.first_seq,
                    after.last_seq,
                    after.last_hash
                );
                Ok(ExitCode::SUCCESS)
            } else {
                err!(
                    "the copied chain does not match the file's: {:?}, ending at #{} {} (the file ends at #{} {})",
                    after.report,
                    after.last_seq,
                    after.last_hash,
                    before.last_seq,
                    before.last_hash
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}
