//! Plain-text rendering of events, shared by `run` (live) and `history show`.

use opsbot::plan::Plan;
use opsbot::policy::Decision;
use opsbot::session::{Event, Record};
use opsbot::text::truncate;

pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn compact(v: &impl serde::Serialize, max: usize) -> String {
    truncate(&serde_json::to_string(v).unwrap_or_default(), max)
}

pub fn plan(plan: &Plan, decisions: &[(opsbot::plan::StepId, Decision)]) -> String {
    let mut out = format!("plan: {}\n", plan.title);
    for step in &plan.steps {
        let d = decisions
            .iter()
            .find(|(id, _)| id == &step.id)
            .map(|(_, d)| d);
        let label = d.map_or("?", Decision::label);
        let deps = if step.depends_on.is_empty() {
            String::new()
        } else {
            format!(
                " after {}",
                step.depends_on
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.push_str(&format!(
            "  {:<8} {:<18} {:<22} {}{}\n",
            label,
            step.id,
            step.tool,
            compact(&step.args, 70),
            deps
        ));
        if let Some(d) = d
            && !matches!(d, Decision::Allow { .. })
        {
            out.push_str(&format!(
                "  {:<8} {:<18} ↳ {} [{}]\n",
                "",
                "",
                d.reason(),
                d.rule()
            ));
        }
    }
    out
}

/// One line for an event, or nothing for events not worth a line.
pub fn record(r: &Record, with_progress: bool) -> Option<String> {
    let time = r.ts.get(11..19).unwrap_or(&r.ts);
    let line = match &r.event {
        Event::SessionStarted { actor, planner, .. } => {
            format!(
                "session {} started by {actor} (planner: {planner})",
                r.session
            )
        }
        Event::UserMessage { text } => format!("you     {text}"),
        Event::AssistantMessage { text } => format!("opsbot  {text}"),
        Event::ClarificationAsked { question } => format!("opsbot  ? {question}"),
        Event::PlanProposed { plan } => {
            format!("plan    {} ({} steps)", plan.title, plan.steps.len())
        }
        Event::PlanInvalid { errors } => format!("invalid {}", errors.join("; ")),
        Event::PolicyDecision { step, decision } => {
            format!(
                "policy  {:<8} {step}: {} [{}]",
                decision.label(),
                decision.reason(),
                decision.rule()
            )
        }
        Event::Approved {
            step, by, gated, ..
        } => {
            format!(
                "approve {step} by {by}{}",
                if *gated { " (gated, confirmed)" } else { "" }
            )
        }
        Event::AwaitingApproval { step, gated } => {
            format!(
                "? {step:<16} awaiting approval{}",
                if *gated { " (gated)" } else { "" }
            )
        }
        Event::ArgsEdited { step, args } => format!("edit    {step}: {}", compact(args, 90)),
        Event::StepStarted { step, tool, args } => {
            format!("▶ {step:<16} {tool} {}", compact(args, 90))
        }
        Event::StepProgress { step, progress } => {
            if !with_progress {
                return None;
            }
            let of = progress.total.map(|t| format!("/{t}")).unwrap_or_default();
            format!(
                "… {step:<16} {}{of} {}",
                progress.progress,
                progress.message.clone().unwrap_or_default()
            )
        }
        Event::StepSucceeded {
            step,
            output,
            duration_ms,
        } => format!(
            "✓ {step:<16} {:>6}  {}",
            duration(*duration_ms),
            compact(&output.value(), 100)
        ),
        Event::StepFailed {
            step,
            error,
            duration_ms,
            ..
        } => {
            format!(
                "✗ {step:<16} {:>6}  {}",
                duration(*duration_ms),
                truncate(error, 300)
            )
        }
        Event::StepSkipped { step, reason } => format!("- {step:<16} skipped: {reason}"),
        Event::StepInterrupted { step } => format!("! {step:<16} interrupted"),
        Event::SessionResumed { by } => format!("session resumed by {by}"),
        Event::ServerProblem { server, message } => format!("server  {server}: {message}"),
        Event::RunFinished { outcome, summary } => format!("= {}: {summary}", outcome.as_str()),
        Event::Note { text } => format!("note    {text}"),
    };
    Some(format!("{time} {line}"))
}
