//! `opsbot policy`: a dry run of a plan, why a call is decided as it is,
//! and the review of pinned tool definitions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use opsbot::paths::Paths;
use opsbot::plan::Plan;
use opsbot::policy::{Call, Context, Decision};
use opsbot::runtime::{Runtime, short};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print each step's decision and reason for a plan (JSON), running nothing.
    Check {
        plan: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show which rules match a call and why.
    Explain {
        /// The tool, as server.tool.
        tool: String,
        /// The call's arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
    },
    /// Review pinned tool definitions.
    Pins {
        #[command(subcommand)]
        command: PinsCommand,
    },
}

#[derive(Subcommand)]
pub enum PinsCommand {
    /// Every pinned tool, and whether a changed definition waits for review.
    List,
    /// The pinned definition beside the changed one, word by word, hidden
    /// characters shown (from the store: no server is started).
    Diff { tool: String },
    /// Pin the changed definition that was reviewed: its hash, as `diff`
    /// prints it, must be given, so what is accepted is what was read.
    Accept {
        tool: String,
        /// The changed definition's hash (a prefix of 12 or more characters is enough).
        #[arg(long)]
        hash: String,
    },
    /// Keep the changed definition denied.
    Reject { tool: String },
}

fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan {}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON; a plan is {{\"title\": ..., \"steps\": [...]}}",
            path.display()
        )
    })?;
    // `opsbot run --json` output holds the plan under "plan".
    if let Some(plan) = v.get_mut("plan").filter(|p| p.is_object()) {
        v = plan.take();
    }
    serde_json::from_value(v).with_context(|| {
        format!(
            "{} is not a plan: expected {{\"title\": ..., \"steps\": [{{\"id\", \"tool\", \"args\", \"depends_on\"}}]}}",
            path.display()
        )
    })
}

fn line(step: &str, tool: &str, d: &Decision) -> String {
    let gate = match d.gate() {
        Some(g) if g.reason_required => format!(" (type `{}` and a reason)", g.confirm),
        Some(g) => format!(" (type `{}`)", g.confirm),
        None => String::new(),
    };
    format!(
        "{step:<14} {tool:<24} {:<8} {}{gate} [{}]",
        d.label(),
        d.reason(),
        d.rule()
    )
}

pub async fn run(
    paths: Paths,
    config: Option<&Path>,
    command: PolicyCommand,
    as_user: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let rt = Runtime::start(paths, config)?;
    let actor = rt.actor(as_user)?;
    let result = run_with(&rt, &actor, command).await;
    rt.servers.shutdown().await;
    result
}

/// Policy that fails its check against the tools is an error: nothing is
/// decided or run with it (exit 2, each problem with its file and line).
pub fn refuse_broken_policy(rt: &Runtime) -> anyhow::Result<()> {
    let errors = rt.policy_errors(&rt.servers.catalog());
    if errors.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the policy has errors, so nothing is decided or run until they are fixed:\n{}",
        errors.join("\n")
    )
}

async fn run_with(rt: &Runtime, actor: &str, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    rt.servers.wait_settled().await;
    if !matches!(command, PolicyCommand::Pins { .. }) {
        refuse_broken_policy(rt)?;
    }
    let catalog = rt.servers.catalog();
    let roles = rt.policy.roles_of(actor);
    let knowledge = rt.knowledge();
    let ctx = Context {
        actor,
        roles: &roles,
        // A dry run belongs to no session: only time-windowed effects count.
        session: "",
        now: time::OffsetDateTime::now_utc(),
        history: &knowledge.history,
        pins: &knowledge.pins,
        planned: &[],
    };
    match command {
        PolicyCommand::Check { plan, json } => {
            let mut plan = read_plan(&plan)?;
            for renamed in rt.canonicalize(&mut plan) {
                err!("read as: {renamed}");
            }
            let decisions = rt.policy.decide_plan(&plan, &catalog, &ctx);
            let denied = decisions.iter().any(|(_, d)| d.is_denied());
            if json {
                let steps: Vec<Value> = decisions
                    .iter()
                    .map(|(id, d)| json!({"step": id, "decision": d}))
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"actor": actor, "roles": roles, "steps": steps})
                    )?
                );
            } else {
                out!("{} as {actor} (roles: {})", plan.title, roles_text(&roles));
                for (id, d) in &decisions {
                    let tool = plan.step(id).map(|s| s.tool.as_str()).unwrap_or_default();
                    out!("  {}", line(id.as_str(), tool, d));
                }
            }
            Ok(ExitCode::from(if denied { 3 } else { 0 }))
        }
        PolicyCommand::Explain { tool, args } => {
            let mut args: Map<String, Value> = serde_json::from_str(&args)
                .context("--args must be a JSON object, e.g. '{\"env\": \"production\"}'")?;
            for renamed in rt.estate.canonicalize(&mut args) {
                err!("read as: {renamed}");
            }
            let call = Call {
                tool: &tool,
                args: &args,
                gated: false,
            };
            let mut trace = Vec::new();
            let d = rt
                .policy
                .decide(&call, catalog.get(&tool), &ctx, Some(&mut trace));
            out!(
                "{tool} {} as {actor} (roles: {})",
                Value::Object(args.clone()),
                roles_text(&roles)
            );
            for t in &trace {
                let mark = if t.applied { "✓" } else { "·" };
                out!("  {mark} {:<28} {}", t.rule, t.note);
            }
            out!("decision: {}", line("", &tool, &d).trim_start());
            Ok(ExitCode::from(if d.is_denied() { 3 } else { 0 }))
        }
        PolicyCommand::Pins { command } => {
            // Accepting re-pins in what policy knows, behind this lock.
            drop(knowledge);
            pins_command(rt, actor, command)
        }
    }
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "none".into()
    } else {
        roles.join(", ")
    }
}

fn pins_command(rt: &Runtime, actor: &str, command: PinsCommand) -> anyhow::Result<ExitCode> {
    let catalog = rt.servers.catalog();
    match command {
        PinsCommand::List => {
            let pins = rt.store.pins()?;
            if pins.is_empty() {
                out!("no tool is pinned yet: a tool is pinned when its server first lists it");
            }
            let mut tools: Vec<_> = pins.into_iter().collect();
            tools.sort();
            for (tool, hash) in tools {
                let state = match (rt.store.pin_change(&tool)?, catalog.get(&tool)) {
                    (Some(c), _) if c.rejected_by.is_some() => format!(
                        "CHANGED to {}: rejected by {}",
                        short(&c.def_hash),
                        c.rejected_by.unwrap_or_default()
                    ),
                    (Some(c), _) => format!(
                        "CHANGED to {}: quarantined until reviewed (opsbot policy pins diff {tool})",
                        short(&c.def_hash)
                    ),
                    (None, Some(t)) if t.def_hash != hash => {
                        "CHANGED: quarantined until reviewed".into()
                    }
                    (None, Some(_)) => "unchanged".into(),
                    (None, None) => "not listed now".into(),
                };
                out!("{tool:<28} {}  {state}", short(&hash));
            }
            Ok(ExitCode::SUCCESS)
        }
        PinsCommand::Diff { tool } => {
            let pin = rt
                .store
                .pin(&tool)?
                .with_context(|| format!("`{tool}` is not pinned"))?;
            out!(
                "pinned {} by {} ({})",
                pin.pinned_at,
                pin.pinned_by,
                short(&pin.def_hash)
            );
            let Some(review) = rt.pin_reviews()?.into_iter().find(|r| r.tool == tool) else {
                out!("unchanged: no other definition of it has been seen");
                return Ok(ExitCode::SUCCESS);
            };
            out!(
                "changed definition seen {} ({}){}",
                review.seen_at,
                review.new_hash,
                review
                    .rejected_by
                    .as_deref()
                    .map(|by| format!(", rejected by {by}"))
                    .unwrap_or_default()
            );
            out!("[-removed-] {{+added+}}, hidden characters shown as ⟨U+XXXX⟩:\n");
            super::emit(false, &review.diff, true);
            out!(
                "\naccept it: opsbot policy pins accept {tool} --hash {}\nkeep it denied: opsbot policy pins reject {tool}",
                short(&review.new_hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        PinsCommand::Accept { tool, hash } => {
            let pinned = rt.accept_pin(&tool, &hash, actor)?;
            out!("{tool} pinned as reviewed ({}) by {actor}", short(&pinned));
            Ok(ExitCode::SUCCESS)
        }
        PinsCommand::Reject { tool } => {
            rt.reject_pin(&tool, actor)?;
            out!("{tool}: the changed definition stays denied (rejected by {actor})");
            Ok(ExitCode::SUCCESS)
        }
    }
}
