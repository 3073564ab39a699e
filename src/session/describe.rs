//! One readable line per event, shared by every view of the log (the
//! headless printer, the TUI's audit panel, history).

use super::event::Event;
use crate::text::truncate;

/// JSON on one line, cut to `max` characters.
pub fn compact(v: &impl serde::Serialize, max: usize) -> String {
    truncate(&serde_json::to_string(v).unwrap_or_default(), max)
}

pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// `(kind label, detail)` for an event.
pub fn describe(event: &Event) -> (&'static str, String) {
    match event {
        Event::SessionStarted { actor, planner, .. } => (
            "session",
            format!("started by {actor} (planner: {planner})"),
        ),
        Event::UserMessage { text } => ("you", text.clone()),
        Event::AssistantMessage { text } => ("opsbot", text.clone()),
        Event::ClarificationAsked { question } => ("question", question.clone()),
        Event::PlanProposed { plan, .. } => (
            "plan",
            format!("{} ({} steps)", plan.title, plan.steps.len()),
        ),
        Event::PlanInvalid { errors } => ("invalid", errors.join("; ")),
        Event::PolicyDecision { step, decision } => (
            "policy",
            format!(
                "{} {step}: {} [{}]",
                decision.label(),
                decision.reason(),
                decision.rule()
            ),
        ),
        Event::Approved {
            step,
            by,
            gated,
            from,
            ..
        } => (
            "approve",
            format!(
                "{step} by {by}{}{}",
                from.as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default(),
                if *gated { " (gated, confirmed)" } else { "" }
            ),
        ),
        Event::AwaitingApproval { step, gated } => (
            "waiting",
            format!(
                "{step} awaits approval{}",
                if *gated { " (gated)" } else { "" }
            ),
        ),
        Event::ArgsEdited { step, args } => ("edit", format!("{step}: {}", compact(args, 90))),
        Event::StepStarted { step, tool, args } => {
            ("call", format!("{step} {tool} {}", compact(args, 90)))
        }
        Event::StepProgress { step, progress } => {
            let of = progress.total.map(|t| format!("/{t}")).unwrap_or_default();
            (
                "progress",
                format!(
                    "{step} {}{of} {}",
                    progress.progress,
                    progress.message.clone().unwrap_or_default()
                ),
            )
        }
        Event::StepSucceeded {
            step,
            output,
            duration_ms,
        } => (
            "ok",
            format!(
                "{step} {} {}",
                duration(*duration_ms),
                compact(&output.value(), 100)
            ),
        ),
        Event::StepFailed {
            step,
            error,
            duration_ms,
            ..
        } => (
            "failed",
            format!("{step} {} {}", duration(*duration_ms), truncate(error, 300)),
        ),
        Event::StepSkipped { step, reason } => ("skipped", format!("{step}: {reason}")),
        Event::StepNotStarted { step, reason } => (
            "not started",
            format!("{step} was never sent: {}", truncate(reason, 300)),
        ),
        Event::StepRetrying {
            step,
            attempt,
            error,
            wait_ms,
        } => (
            "retry",
            format!(
                "{step} try {} in {}: {}",
                attempt + 1,
                duration(*wait_ms),
                truncate(error, 200)
            ),
        ),
        Event::StepInterrupted { step } => (
            "interrupted",
            format!("{step} was running when opsbot stopped"),
        ),
        Event::SessionResumed { by } => ("resumed", format!("session reopened by {by}")),
        Event::SessionLeased { holder, took_over } => (
            "lease",
            match took_over {
                Some(old) => format!(
                    "taken over by {} from {}, which ended without releasing it",
                    holder.describe(),
                    old.describe()
                ),
                None => format!("driven by {}", holder.describe()),
            },
        ),
        Event::LeaseReleased { pid } => ("lease", format!("released by pid {pid}")),
        Event::ClientConnected {
            name,
            version,
            transport,
        } => (
            "client",
            format!("MCP client {name} {version} connected over {transport}"),
        ),
        Event::ServerProblem { server, message } => ("server", format!("{server}: {message}")),
        Event::RunFinished { outcome, summary } => {
            ("finished", format!("{}: {summary}", outcome.as_str()))
        }
        Event::Note { text } => ("note", text.clone()),
        Event::LlmCall {
            profile,
            model,
            prompt_tokens,
            completion_tokens,
            cost_usd,
            duration_ms,
            status,
        } => (
            "llm",
            format!(
                "{profile} ({model}) {status} {} · {prompt_tokens} in + {completion_tokens} out tokens{}",
                duration(*duration_ms),
                cost_usd
                    .map(|c| format!(" · {}", usd(c)))
                    .unwrap_or_default()
            ),
        ),
        Event::Effect {
            effect,
            scope,
            step,
        } => {
            let scope: Vec<String> = scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                "effect",
                format!("{step} left {effect}{{{}}}", scope.join(", ")),
            )
        }
        Event::PolicyRecheck { step, decision } => (
            "policy",
            format!(
                "{} {step} at run time: {} [{}]",
                decision.label(),
                decision.reason(),
                decision.rule()
            ),
        ),
        Event::PlannerChanged { planner } => ("planner", format!("now planning with {planner}")),
        Event::Exchanged {
            server,
            method,
            subject,
            rule,
            outcome,
        } => (
            "exchange",
            format!(
                "{server} {method} {subject}: {outcome}{}",
                rule.as_ref().map(|r| format!(" [{r}]")).unwrap_or_default()
            ),
        ),
    }
}

/// Dollars with enough places that a cheap call does not show as $0.00.
pub fn usd(amount: f64) -> String {
    if amount >= 1.0 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.4}")
    }
}
