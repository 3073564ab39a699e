//! `opsbot approvals list|show|approve|refuse`: answer, from a terminal,
//! the calls made through `opsbot serve` that wait for a person, as the
//! app's waiting list (`W`) does. Works on the log alone: no servers start.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use opsbot::paths::Paths;
use opsbot::session::Pending;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Every call waiting for approval, with its ID.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One waiting call: its tool, arguments, client and policy's reason.
    Show { id: String },
    /// Approve a waiting call (bound to the arguments shown).
    Approve {
        id: String,
        /// For a gated call: its target, typed as the app asks for it.
        #[arg(long)]
        confirm: Option<String>,
        /// Why (needed when the approval overrides a change freeze).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse a waiting call: it will not run.
    Refuse {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// A waiting call's ID: its session and step.
fn id_of(p: &Pending) -> String {
    format!("{}:{}", p.session, p.step)
}

/// The waiting call an ID (or a unique prefix of one) names.
fn find(waiting: &[Pending], id: &str) -> anyhow::Result<Pending> {
    let matches: Vec<&Pending> = waiting
        .iter()
        .filter(|p| {
            let full = id_of(p);
            full == id || full.starts_with(id)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => anyhow::bail!(
            "no call waits for approval as `{id}`: `opsbot approvals list` shows those that do (one answered or given up is no longer listed)"
        ),
        many => anyhow::bail!(
            "`{id}` names {} waiting calls; give more of the ID: {}",
            many.len(),
            many.iter().map(|p| id_of(p)).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn args_line(p: &Pending) -> String {
    serde_json::to_string(&p.args).unwrap_or_default()
}

pub fn run(
    paths: &Paths,
    config: Option<&Path>,
    as_user: Option<&str>,
    command: ApprovalsCommand,
) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    let actor =
        || opsbot::runtime::acting_as(&loaded.config.policy, as_user).map_err(anyhow::Error::msg);
    let db = paths.database();
    let Some(store) = super::open_log_with(paths, &loaded.config.store, false)? else {
        if matches!(command, ApprovalsCommand::List { json: true }) {
            super::json_out(&Vec::<Pending>::new())?;
        } else {
            out!(
                "nothing waits: there is no audit log yet ({})",
                db.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let store = Arc::new(store);
    let waiting = opsbot::runtime::pending_approvals(&store, None);
    match command {
        ApprovalsCommand::List { json } => {
            if json {
                let rows: Vec<serde_json::Value> = waiting
                    .iter()
                    .map(|p| {
                        let mut v = serde_json::to_value(p).unwrap_or_default();
                        v["id"] = serde_json::Value::String(id_of(p));
                        v
                    })
                    .collect();
                super::json_out(&rows)?;
            } else if waiting.is_empty() {
                out!("no call waits for approval");
            } else {
                for p in &waiting {
                    out!("{}  {} {}", id_of(p), p.tool, args_line(p));
                    out!(
                        "    from {} since {} · {} [{}]{}",
                        p.client,
                        p.since,
                        p.decision.reason(),
                        p.decision.rule(),
                        p.decision
                            .gate()
                            .map(|g| format!(" · gated: --confirm {}", g.confirm))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ApprovalsCommand::Show { id } => {
            let p = find(&waiting, &id)?;
            out!("{}", id_of(&p));
            out!("  tool:      {}", p.tool);
            out!(
                "  arguments: {}",
                serde_json::to_string_pretty(&p.args).unwrap_or_default()
            );
            out!("  client:    {}", p.client);
            out!("  waiting since {}", p.since);
            out!(
                "  policy:    {} ({}): {}",
                p.decision.label(),
                p.decision.rule(),
                p.decision.reason()
            );
            if let Some(g) = p.decision.gate() {
                out!(
                    "  gated:     approve with --confirm {}{}",
                    g.confirm,
                    if g.reason_required {
                        " --reason \"why\" (it overrides a change freeze)"
                    } else {
                        ""
                    }
                );
            }
        }
        ApprovalsCommand::Approve {
            id,
            confirm,
            reason,
        } => {
            let p = find(&waiting, &id)?;
            let actor = actor()?;
            if let Some(g) = p.decision.gate()
                && confirm.is_none()
            {
                anyhow::bail!(
                    "{} is gated: approve it with --confirm {} (the target, typed as the app asks for it)",
                    id_of(&p),
                    g.confirm
                );
            }
            let typed = match (confirm, reason) {
                (Some(c), Some(r)) => format!("{c} {r}"),
                (Some(c), None) => c,
                (None, _) => String::new(),
            };
            let policy = opsbot::policy::Policy::new(loaded.config.policy.clone())
                .map_err(|e| anyhow::anyhow!("[policy]: {}", e.message))?;
            match opsbot::runtime::approve_pending(&store, &policy, &actor, &p, &typed)? {
                opsbot::runtime::Approval::Granted(_) => {
                    out!("approved {} ({}) as {actor}", id_of(&p), p.tool)
                }
                opsbot::runtime::Approval::Counted { wanted } => out!(
                    "approved {} ({}) as {actor}; it still needs {wanted}",
                    id_of(&p),
                    p.tool
                ),
                opsbot::runtime::Approval::Refused(why) => {
                    anyhow::bail!("not approved: {why}")
                }
            }
        }
        ApprovalsCommand::Refuse { id, reason } => {
            let p = find(&waiting, &id)?;
            let actor = actor()?;
            opsbot::runtime::refuse_pending(
                &store,
                &actor,
                &p,
                "from the command line",
                reason.as_deref(),
            )?;
            out!("refused {} ({}) as {actor}", id_of(&p), p.tool);
        }
    }
    Ok(ExitCode::SUCCESS)
}
