//! `opsbot run "REQUEST"`: plan, approve, run, report, headless.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::Args;
use opsbot::engine::Approvals;
use opsbot::mcp::ServerStatus;
use opsbot::paths::Paths;
use opsbot::policy::{Decision, args_hash};
use opsbot::runtime::{Approval, Planned, Runtime, Standing};
use opsbot::session::{Event, Outcome, Session};
use tokio_util::sync::CancellationToken;

use super::{exit_code, print};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["request", "resume"]))]
pub struct RunArgs {
    /// What to do, e.g. "deploy checkout to staging".
    pub request: Option<String>,
    /// Go on with an interrupted session instead (an id or a unique
    /// prefix): finished steps stay finished, a step that was running
    /// when it stopped is asked for again, and nothing runs unapproved.
    #[arg(long, value_name = "ID", conflicts_with = "request")]
    pub resume: Option<String>,
    /// Approve every step that is not gated.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also approve gated steps (production, destructive) without typing a confirmation.
    #[arg(long)]
    pub approve_gated: bool,
    /// If the run fails after changing things, run the proposed undo plan
    /// (its steps are approved like any others).
    #[arg(long)]
    pub undo: bool,
    /// Why: required with --approve-gated to override a change freeze.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print one JSON object describing the run instead of text.
    #[arg(long)]
    pub json: bool,
    /// How to answer a server that asks for input (a form, a link) or to
    /// use the model: `ask` on the terminal (the default when there is
    /// one), accept forms with their `defaults`, or `decline`.
    #[arg(long, value_enum, value_name = "HOW")]
    pub elicit: Option<super::answer::Elicit>,
    /// One tool called by name instead of a request (`opsbot call`).
    #[arg(skip)]
    pub call: Option<super::call::CallSpec>,
}

/// Questions answered on a terminal before giving up on a request.
const MAX_QUESTIONS: usize = 3;

/// Ask a question on the terminal; `None` when there is no terminal to
/// ask, or a stop signal came first.
async fn ask(prompt: String, stop: &CancellationToken) -> Option<String> {
    if !std::io::stdin().is_terminal() || stop.is_cancelled() {
        return None;
    }
    let answer = tokio::task::spawn_blocking(move || {
        super::emit(true, &prompt, false);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(line.trim().to_string())
    });
    tokio::select! {
        a = answer => a.ok().flatten(),
        () = stop.cancelled() => None,
    }
}

pub async fn run(
    paths: Paths,
    config: Option<&Path>,
    args: RunArgs,
    as_user: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let (Some(request), None) = (&args.request, &args.call) {
        opsbot::runtime::check_request(request)?;
    }
    let mut rt = Runtime::start(paths, config)?;
    rt.driver = "run".into();
    rt.servers.launch_eager();
    let say = |s: &str| {
        if !args.json {
            out!("{s}");
        }
    };
    // Ctrl-C, SIGTERM and SIGHUP all cancel, and are recorded once the
    // session exists; a second one quits at once.
    let stop = CancellationToken::new();
    let driven = Arc::new(OnceLock::new());
    opsbot::signals::cancel_on_stop(Arc::downgrade(&driven), stop.clone(), |which| {
        err!(
            "\n{which}: cancelling: running steps are being stopped ({which} again quits at once)"
        );
    });
    super::answer::attend(&rt, args.elicit, &stop);
    tokio::select! {
        () = rt.servers.wait_settled() => {}
        () = stop.cancelled() => {
            rt.servers.shutdown().await;
            return Ok(exit_code(Outcome::Cancelled));
        }
    }
    for (name, status) in rt.servers.statuses() {
        if let ServerStatus::Failed { error, stderr } = &status {
            err!("warning: server `{name}` is not available: {error}");
            for line in stderr.iter().rev().take(3).rev() {
                err!("    stderr: {line}");
            }
        }
    }
    super::policy::refuse_broken_policy(&rt)?;
    let actor = rt.actor(as_user)?;
    if let Some(id) = &args.resume {
        return resume(&rt, id, &actor, &args, &driven, &stop).await;
    }
    let request = args.request.clone().unwrap_or_default();
    let session = rt.new_session(&actor)?;
    let _ = driven.set(Arc::clone(&session));
    rt.watch_servers(&session);
    for (name, status) in rt.servers.statuses() {
        if let ServerStatus::Failed { error, .. } = status {
            session.record(Event::ServerProblem {
                server: name,
                message: error,
            })?;
        }
    }

    // A streamed plan's steps are printed as the model finishes each.
    if !args.json {
        let mut planning = rt.planning();
        tokio::spawn(async move {
            let mut shown = 0;
            while planning.changed().await.is_ok() {
                let draft: Vec<String> = match planning.borrow_and_update().as_ref() {
                    Some(p) => p
                        .draft
                        .iter()
                        .skip(shown)
                        .map(|s| {
                            format!(
                                "  planning… {} {} {}",
                                s.id,
                                s.tool,
                                serde_json::Value::Object(s.args.clone())
                            )
                        })
                        .collect(),
                    None => {
                        shown = 0;
                        continue;
                    }
                };
                shown += draft.len();
                for line in draft {
                    out!("{line}");
                }
            }
        });
    }
    let plan = |text: String| {
        let (rt, session, stop) = (&rt, &session, &stop);
        async move {
            tokio::select! {
                planned = rt.plan_request(session, &text) => planned.map(Some),
                () = stop.cancelled() => {
                    // Closing the request is what cancels a model's answer.
                    rt.cancel_planning();
                    Ok(None)
                }
            }
        }
    };
    let first = match &args.call {
        Some(call) => tokio::select! {
            planned = rt.propose_call(&session, &call.tool, &call.pairs, call.args.as_deref()) => planned.map(Some)?,
            () = stop.cancelled() => None,
        },
        None => plan(request).await?,
    };
    let Some(mut planned) = first else {
        return cancelled_before_running(&rt, &session, &args).await;
    };
    // On a terminal a question is answered in place, and the answer
    // continues the same planning turn.
    for _ in 0..MAX_QUESTIONS {
        let Planned::Clarify(question) = &planned else {
            break;
        };
        let Some(answer) = ask(format!("? {question}\n> "), &stop)
            .await
            .filter(|a| !a.is_empty())
        else {
            break;
        };
        let Some(next) = plan(answer).await? else {
            return cancelled_before_running(&rt, &session, &args).await;
        };
        planned = next;
    }
    // What the planner had to say while it worked (a fallback, a budget).
    if !args.json {
        for r in rt.store.events(&session.id)? {
            if let Event::Note { text } = &r.event {
                err!("note: {text}");
            }
        }
    }
    let outcome = match planned {
        Planned::Clarify(question) => {
            say(&format!("? {question}"));
            Outcome::NeedsClarification
        }
        Planned::Cancelled => Outcome::Cancelled,
        Planned::Invalid(errors) => {
            err!("the plan is not valid, so nothing ran:");
            for e in &errors {
                err!("  - {e}");
            }
            Outcome::InvalidPlan
        }
        Planned::Ready { plan, decisions } => {
            let outcome = approve_and_run(
                &rt,
                &session,
                &plan,
                &decisions,
                &args,
                HashMap::new(),
                &stop,
            )
            .await?;
            if outcome == Outcome::Failed
                && let Some((undo, undo_decisions)) = rt.propose_undo(&session, &plan)?
            {
                let shown = match rt.store.redactor().redacted(&undo) {
                    Some(shown) => print::plan(&shown, &undo_decisions),
                    None => format!("plan: {} (not shown: it holds secrets)", undo.title),
                };
                say(&format!(
                    "the run failed after changing things; proposed undo:\n{shown}"
                ));
                let go = !stop.is_cancelled()
                    && (args.undo
                        || ask("run the undo plan? [y/N] ".into(), &stop)
                            .await
                            .is_some_and(|a| {
                                a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
                            }));
                if go {
                    let undone = approve_and_run(
                        &rt,
                        &session,
                        &undo,
                        &undo_decisions,
                        &args,
                        HashMap::new(),
                        &stop,
                    )
                    .await?;
                    say(&format!("undo {}", undone.as_str()));
                } else {
                    say("not undone: rerun with --undo, or check the system by hand");
                }
            }
            outcome
        }
    };

    finish(&rt, &session, outcome, &args).await
}

/// Print the JSON summary or the hint, stop the servers, map the outcome.
async fn finish(
    rt: &Runtime,
    session: &std::sync::Arc<opsbot::session::Session>,
    outcome: Outcome,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    if args.json {
        let state = session.state();
        let out = serde_json::json!({
            "session": session.id,
            "outcome": outcome,
            "plan": state.plan,
            "steps": state.steps,
            "messages": state.messages,
            "plan_errors": state.plan_errors,
            "llm": state.llm,
        });
        super::json_out(&out)?;
    } else if outcome == Outcome::AwaitingApproval {
        out!(
            "some steps were not approved: rerun with --yes (and --approve-gated for gated steps), or answer the prompts on a terminal"
        );
    }
    rt.servers.shutdown().await;
    Ok(exit_code(outcome))
}

/// A stop signal came before anything ran: the session says so.
async fn cancelled_before_running(
    rt: &Runtime,
    session: &Arc<Session>,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    session.record(Event::RunFinished {
        outcome: Outcome::Cancelled,
        summary: "cancelled before anything ran".into(),
    })?;
    finish(rt, session, Outcome::Cancelled, args).await
}

/// `run --resume ID`: take the session's lease (refused, naming the
/// holder, while another process drives it), then approve and run what its
/// plan still has to do.
async fn resume(
    rt: &Runtime,
    id: &str,
    actor: &str,
    args: &RunArgs,
    driven: &OnceLock<Arc<Session>>,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let (session, left) = rt.resume_session(id, actor)?;
    let _ = driven.set(Arc::clone(&session));
    rt.watch_servers(&session);
    let Some(left) = left else {
        let outcome = session.with_state(|s| s.outcome);
        err!(
            "session {} has nothing left to run: {}",
            session.id,
            outcome.map_or("it never made a plan", Outcome::as_str)
        );
        rt.servers.shutdown().await;
        return Ok(super::exit_error());
    };
    if !args.json {
        let interrupted: Vec<String> = session.with_state(|s| {
            s.steps
                .iter()
                .filter(|(_, st)| st.interrupted)
                .map(|(id, _)| id.to_string())
                .collect()
        });
        out!(
            "resuming session {}: {} of {} steps had finished",
            session.id,
            left.done.len(),
            left.plan.steps.len()
        );
        if !interrupted.is_empty() {
            out!(
                "  interrupted while running (asked again, never re-sent silently): {}",
                interrupted.join(", ")
            );
        }
    }
    let outcome = approve_and_run(
        rt,
        &session,
        &left.plan,
        &left.decisions,
        args,
        left.done,
        stop,
    )
    .await?;
    finish(rt, &session, outcome, args).await
}

/// Four eyes: wait until other people approve (`opsbot approvals approve`,
/// an app's `W` list) the steps whose rules ask for them, each bound to its
/// exact arguments. Returns the outcome when the run must stop instead: a
/// step refused, or Ctrl-C. Steps still short of approvals when the wait
/// runs out stay unapproved (the run ends awaiting approval).
async fn wait_for_others(
    rt: &Runtime,
    session: &std::sync::Arc<opsbot::session::Session>,
    plan: &opsbot::plan::Plan,
    decisions: &[(opsbot::plan::StepId, Decision)],
    others: &[(opsbot::plan::StepId, String)],
    approvals: &mut HashMap<opsbot::plan::StepId, String>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Outcome>> {
    let mut waiting = Vec::new();
    for (id, wanted) in others {
        let (Some(step), Some((_, decision))) =
            (plan.step(id), decisions.iter().find(|(d, _)| d == id))
        else {
            continue;
        };
        let Some(quorum) = decision.quorum() else {
            continue;
        };
        session.record(Event::AwaitingApproval {
            step: id.clone(),
            gated: decision.gate().is_some(),
        })?;
        err!(
            "{id} ({}) waits for {wanted}: they run `opsbot approvals approve {}:{id}`",
            step.tool,
            session.id
        );
        let waiting_id = format!("{}:{id}", session.id);
        let told = rt
            .notify_waiting(&opsbot::runtime::Waiting {
                id: &waiting_id,
                tool: &step.tool,
                requester: &session.actor,
                wanted,
            })
            .await;
        match (told, rt.config.config.notify.tool.as_deref()) {
            (Some(Outcome::Succeeded), Some(tool)) => err!("  approvers were told through {tool}"),
            (Some(other), Some(tool)) => err!(
                "  approvers were not told through {tool} ({}; see `opsbot history`)",
                other.as_str()
            ),
            _ => {}
        }
        waiting.push((
            id.clone(),
            args_hash(&step.tool, &step.args),
            quorum.clone(),
        ));
    }
    let limit = std::time::Duration::from_secs(rt.config.config.approval.others_wait_secs);
    let deadline = tokio::time::Instant::now() + limit;
    while !waiting.is_empty() {
        let records = session.store().events(&session.id)?;
        let mut still = Vec::new();
        for (id, hash, quorum) in waiting {
            match rt.quorum_standing(session, &records, &id, &hash, &quorum) {
                Standing::Refused(why) => {
                    err!("{id}: {why}; nothing runs");
                    session.record(Event::RunFinished {
                        outcome: Outcome::Rejected,
                        summary: format!("{id} was {why}"),
                    })?;
                    return Ok(Some(Outcome::Rejected));
                }
                Standing::Approved(_) => {
                    // Their approvals were written by other processes.
                    session.take_in_others()?;
                    err!("{id}: approved by enough people");
                    approvals.insert(id, hash);
                }
                Standing::Short(_) => still.push((id, hash, quorum)),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(Some(Outcome::Cancelled)),
            () = tokio::time::sleep_until(deadline) => {
                for (id, _, q) in &waiting {
                    err!(
                        "{id}: no quorum within {} s ({}); it stays unapproved",
                        limit.as_secs(),
                        q.rule
                    );
                }
                break;
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    }
    Ok(None)
}

/// Ask for (or take from the flags) each step's approval, then run the plan.
async fn approve_and_run(
    rt: &Runtime,
    session: &std::sync::Arc<opsbot::session::Session>,
    plan: &opsbot::plan::Plan,
    decisions: &[(opsbot::plan::StepId, Decision)],
    args: &RunArgs,
    done: HashMap<opsbot::plan::StepId, serde_json::Value>,
    cancel: &CancellationToken,
) -> anyhow::Result<Outcome> {
    let say = |s: &str| {
        if !args.json {
            out!("{s}");
        }
    };
    match rt.store.redactor().redacted(plan) {
        Some(shown) => say(&print::plan(&shown, decisions)),
        None => say(&format!(
            "plan: {} (not shown: it holds secrets)",
            plan.title
        )),
    }
    let mut approvals = HashMap::new();
    // Steps whose rule wants other people's approvals too (four eyes).
    let mut others: Vec<(opsbot::plan::StepId, String)> = Vec::new();
    for step in plan.steps.iter().filter(|s| !done.contains_key(&s.id)) {
        let Some((_, decision)) = decisions.iter().find(|(id, _)| id == &step.id) else {
            continue;
        };
        let (approved, reason) = match decision {
            Decision::Deny { .. } => (false, None),
            Decision::NeedsApproval {
                gate: Some(gate),
                reason,
                ..
            } => {
                let typed = if args.approve_gated {
                    let mut t = gate.confirm.clone();
                    if let Some(r) = &args.reason {
                        t.push(' ');
                        t.push_str(r);
                    }
                    Some(t)
                } else {
                    let how = if gate.reason_required {
                        format!("type `{}` and then why", gate.confirm)
                    } else {
                        format!("type `{}`", gate.confirm)
                    };
                    ask(
                        format!(
                            "gated: {} — {reason}\n  {} {}\n  {how} to approve (anything else skips): ",
                            step.id,
                            step.tool,
                            serde_json::to_string(&step.args).unwrap_or_default(),
                        ),
                        cancel,
                    )
                    .await
                };
                match typed.map(|t| gate.check(&t)) {
                    Some(Ok(why)) => (true, why),
                    Some(Err(e)) => {
                        err!("{}: not approved: {e}", step.id);
                        (false, None)
                    }
                    None => (false, None),
                }
            }
            _ => (
                args.yes
                    || ask(
                        format!(
                            "approve {} ({} {})? [y/N] ",
                            step.id,
                            step.tool,
                            serde_json::to_string(&step.args).unwrap_or_default()
                        ),
                        cancel,
                    )
                    .await
                    .is_some_and(|a| a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")),
                None,
            ),
        };
        if !approved {
            continue;
        }
        match rt.approve_checked(
            session,
            plan,
            &step.id,
            decision.gate().is_some(),
            reason.as_deref(),
        )? {
            Approval::Granted(hash) => {
                approvals.insert(step.id.clone(), hash);
            }
            Approval::Counted { wanted } => others.push((step.id.clone(), wanted)),
            Approval::Refused(why) => {
                let wanted = decision
                    .quorum()
                    .map(|q| q.wanted(0, &session.actor))
                    .unwrap_or_default();
                err!("{}: {why}", step.id);
                others.push((step.id.clone(), wanted));
            }
        }
    }
    if !others.is_empty()
        && let Some(stopped) = wait_for_others(
            rt,
            session,
            plan,
            decisions,
            &others,
            &mut approvals,
            cancel,
        )
        .await?
    {
        return Ok(stopped);
    }

    let printer = (!args.json).then(|| {
        let mut live = session.subscribe();
        tokio::spawn(async move {
            while let Ok(record) = live.recv().await {
                // A closed stdout (`| head`) ends nothing: the run goes on.
                if let Some(line) = print::record(&record, true) {
                    out!("{line}");
                }
                if matches!(record.event, Event::RunFinished { .. }) {
                    break;
                }
            }
        })
    });
    let approvals = Approvals::Fixed(approvals);
    let outcome = rt
        .run_from(
            session,
            plan,
            decisions,
            &approvals,
            cancel.clone(),
            opsbot::engine::Start {
                done,
                ..Default::default()
            },
        )
        .await?
        .0;
    // The run's end is journaled, its commit behind: committed here, so a
    // log that cannot take it (a full disk) is this command's error, and
    // the printer, which follows commits, sees the run finish.
    session.settle()?;
    if let Some(printer) = printer {
        let _ = printer.await;
    }
    Ok(outcome)
}
