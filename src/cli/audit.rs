//! `opsbot audit`: check the hash chain, export it for a SIEM, prune it.
//! Works offline, with no servers and no LLM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use opsbot::paths::Paths;
use opsbot::session::{ChainReport, Retention, Seal, parse_anchor};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the chain: name the first record changed, deleted or moved, or
    /// say it is whole. Exits 1 when it is broken.
    Verify {
        #[arg(long)]
        json: bool,
        /// A head kept elsewhere (`opsbot audit anchor` printed it): the
        /// log must still hold that record with that hash.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<String>,
        /// Rewrite the session list from the records (values no record
        /// backs are replaced) and rebuild the search index, then verify.
        #[arg(long)]
        repair: bool,
    },
    /// Print the newest signed head as SEQ:HASH, for another system to
    /// keep; `audit verify --anchor SEQ:HASH` checks the log against it.
    Anchor,
    /// Write events, one JSON object a line, with their hashes, so the
    /// chain can be checked elsewhere.
    Export {
        /// From this time: a date (2026-11-20), an RFC 3339 time, or an
        /// age (90m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Prune old sessions now, as [audit] retention_days / retention_max_mib
    /// say (the app also does this when it starts), then compact the file.
    Prune,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

pub fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let db = paths.database();
    let Some(store) = super::open_log(paths, config, false)? else {
        out!("no audit log yet: {} does not exist", db.display());
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        AuditCommand::Anchor if store.is_shared() => {
            // Many installations write a shared store: no one key signs
            // its head. The tip, checked, is the anchor to keep elsewhere.
            let v = store.verify_all()?;
            if !matches!(v.report, ChainReport::Whole { .. }) {
                anyhow::bail!(
                    "the shared store's chain does not verify; run `opsbot audit verify`"
                );
            }
            out!("{}:{}", v.last_seq, v.last_hash);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Anchor => {
            let seal = Seal::load(&paths.config_dir)?;
            let head = store.signed_head()?;
            match head {
                Some(h)
                    if seal
                        .as_ref()
                        .is_some_and(|s| s.check("head", h.seq, &h.hash, &h.mac)) =>
                {
                    out!("{}", h.anchor());
                    Ok(ExitCode::SUCCESS)
                }
                Some(_) => anyhow::bail!(
                    "the newest head is not signed with this installation's key ({}); run `opsbot audit verify`",
                    Seal::place(&paths.config_dir)
                ),
                None => anyhow::bail!(
                    "no signed head yet: opsbot signs the log from its first record written with a key"
                ),
            }
        }
        AuditCommand::Verify {
            json,
            anchor,
            repair,
        } => {
            if repair {
                let changed = store.repair_derived()?;
                err!(
                    "repaired {changed} session rows from the records and rebuilt the search index"
                );
            }
            let external = match anchor.as_deref() {
                Some(a) => Some(parse_anchor(a).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--anchor takes SEQ:HASH as `opsbot audit anchor` prints it (a number, a colon, 64 hex digits), not {a:?}"
                    )
                })?),
                None => None,
            };
            let v = store.verify_all()?;
            let seal = Seal::load(&paths.config_dir)?;
            // A damaged file is reported as such below; what cannot be read
            // for the proof is one more thing not proven, not a crash.
            let proof = store
                .prove(seal.as_ref(), v.last_seq, &v.last_hash, external)
                .unwrap_or_else(|e| opsbot::session::Proof {
                    sealed: seal.is_some(),
                    problems: vec![format!(
                        "the signatures and the session list could not be checked: {e}"
                    )],
                    ..opsbot::session::Proof::default()
                });
            let proven = proof.problems.is_empty();
            // What a killed opsbot journaled is added by the next one to
            // start here: not missing, and not in the log yet either.
            let journaled = store.journaled_elsewhere().unwrap_or_else(|e| {
                err!("cannot read the journals beside the log: {e}");
                0
            });
            if json {
                super::json_out(&serde_json::json!({
                    "chain": v,
                    "proof": proof,
                    "journaled_not_in_log": journaled,
                }))?;
            } else {
                if journaled > 0 {
                    out!(
                        "{journaled} events journaled by an opsbot that ended before committing them are not in the log yet; the next opsbot to start on this data directory (the app, run, serve or tools) adds them"
                    );
                }
                match &v.report {
                    ChainReport::Whole { events } => {
                        out!(
                            "the audit log is whole: {events} events in {} sessions, #{} to #{}, last hash {}",
                            v.sessions,
                            v.first_seq,
                            v.last_seq,
                            v.last_hash
                        );
                        if v.pruned_events > 0 {
                            out!(
                                "({} older events were pruned by retention; the chain is checked from the hash the last of them had)",
                                v.pruned_events
                            );
                        }
                    }
                    ChainReport::Broken { seq, problem } => {
                        out!(
                            "the audit log is BROKEN at record #{seq}: {problem}\n{} records before it verified",
                            (v.last_seq - v.first_seq + 1).max(0)
                        );
                    }
                    ChainReport::Unreadable { from, to, detail } => {
                        let range = match to {
                            Some(to) => format!(
                                "records #{from} to #{} cannot be read; #{to} on can",
                                to - 1
                            ),
                            None => format!("records from #{from} on cannot be read"),
                        };
                        out!(
                            "the audit log file is DAMAGED: {range} ({detail})\n{} records before it verified, up to #{}",
                            (v.last_seq - v.first_seq + 1).max(0),
                            v.last_seq
                        );
                    }
                }
                for p in &proof.problems {
                    out!("NOT PROVEN: {p}");
                }
                if proof.problems.iter().any(|p| p.starts_with("session ")) {
                    out!(
                        "the session list is derived from the records: `opsbot audit verify --repair` rewrites it from them"
                    );
                }
                match (&proof.head, proof.sealed) {
                    (Some(h), _) if proven => out!(
                        "signed head #{} checks out{}; keep `{}` elsewhere to catch a rewrite by someone holding the key",
                        h.seq,
                        if proof.external.is_some() {
                            ", and so does the anchor given"
                        } else {
                            ""
                        },
                        h.anchor()
                    ),
                    (_, false) if store.is_shared() => out!(
                        "shared store {}: its head is not signed by one installation's key; keep `{}:{}` (opsbot audit anchor) elsewhere and check it later with `opsbot audit verify --anchor`",
                        store.location(),
                        v.last_seq,
                        v.last_hash
                    ),
                    (_, false) => out!(
                        "unsigned: no audit key in {}, so a log cut short or rewritten whole cannot be told from this one",
                        Seal::place(&paths.config_dir)
                    ),
                    _ => {}
                }
                if !v.damage.is_empty() {
                    out!("SQLite's integrity check found:");
                    for d in &v.damage {
                        out!("  {d}");
                    }
                    out!(
                        "keep the file; `sqlite3 {} .recover` saves what can still be read",
                        db.display()
                    );
                }
            }
            Ok(match v.report {
                ChainReport::Whole { .. } if v.damage.is_empty() && proven => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
        AuditCommand::Export {
            since,
            format: ExportFormat::Jsonl,
            output,
        } => {
            let since = since.as_deref().map(super::since).transpose()?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = store.export_jsonl(since.as_deref(), &mut out)?;
            out.flush()?;
            if let Some(path) = output {
                err!("wrote {n} events to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prune => {
            let loaded = opsbot::config::load(paths, config)?;
            let audit = &loaded.config.audit;
            let retention = Retention {
                max_age_days: audit.retention_days,
                max_bytes: audit.retention_max_mib.saturating_mul(1 << 20),
            };
            if retention.max_age_days == 0 && retention.max_bytes == 0 {
                out!("nothing to do: set [audit] retention_days or retention_max_mib to prune");
                return Ok(ExitCode::SUCCESS);
            }
            // A signed log's marker is signed; an unsigned log stays so.
            if let Some(seal) = Seal::load(&paths.config_dir)? {
                store.set_seal(seal);
            }
            let r = store.prune(retention)?;
            if r.sessions == 0 {
                out!("nothing to prune");
            } else {
                out!(
                    "pruned {} sessions ({} events, up to #{}); `opsbot audit verify` checks the rest from there",
                    r.sessions,
                    r.events,
                    r.upto_seq
                );
                // The app only prunes (freed pages are reused); here the
                // user asked, so give the space back to the disk too.
                match store.compact() {
                    Ok((before, after)) => out!(
                        "compacted {}: {:.1} MiB → {:.1} MiB",
                        db.display(),
                        before as f64 / 1048576.0,
                        after as f64 / 1048576.0
                    ),
                    Err(e) => out!(
                        "could not compact {} now ({e}); the freed space will be reused",
                        db.display()
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
