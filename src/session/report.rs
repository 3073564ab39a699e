//! A session as a readable report: what was asked, what was planned, what
//! policy said, who approved what and when, what ran and what it answered.

use std::fmt::Write;

use super::{Event, Record, compact, duration};

/// At most this much of a tool's answer is quoted.
const OUTPUT_QUOTE: usize = 600;

#[derive(Default)]
struct StepLine {
    tool: String,
    args: String,
    decision: Option<String>,
    approvals: Vec<String>,
    status: Option<String>,
    duration_ms: Option<u64>,
    detail: Option<String>,
}

/// The report in Markdown. Stable for a given list of records: everything
/// in it comes from them, so a snapshot test can hold it.
pub fn markdown(records: &[Record]) -> String {
    let mut out = String::new();
    let Some(first) = records.first() else {
        return "No events.\n".into();
    };
    let _ = writeln!(out, "# Session {}\n", first.session);
    let _ = writeln!(out, "- Actor: {}", first.actor);
    let _ = writeln!(out, "- Started: {}", first.ts);
    if let Some(last) = records.last() {
        let _ = writeln!(out, "- Last event: {} (#{})", last.ts, last.seq);
    }
    let outcome = records.iter().rev().find_map(|r| match &r.event {
        Event::RunFinished { outcome, summary } => {
            Some(format!("{} ({summary})", outcome.as_str()))
        }
        _ => None,
    });
    let _ = writeln!(
        out,
        "- Outcome: {}",
        outcome.unwrap_or_else(|| "interrupted (the session never finished)".into())
    );
    let _ = writeln!(
        out,
        "- Chain: #{} to #{}, last hash {}\n",
        first.seq,
        records.last().map_or(first.seq, |r| r.seq),
        records.last().map_or("", |r| r.hash.as_str())
    );

    out.push_str("## Conversation\n\n");
    for r in records {
        let line = match &r.event {
            Event::UserMessage { text } => format!("**{}** ({}): {text}", r.actor, r.ts),
            Event::AssistantMessage { text } => format!("**opsbot** ({}): {text}", r.ts),
            Event::ClarificationAsked { question } => {
                format!("**opsbot asked** ({}): {question}", r.ts)
            }
            _ => continue,
        };
        let _ = writeln!(out, "- {line}");
    }

    // Steps in the order they were first mentioned.
    let mut steps: Vec<(String, StepLine)> = Vec::new();
    let mut plan_title = None;
    fn at<'a>(steps: &'a mut Vec<(String, StepLine)>, id: &str) -> &'a mut StepLine {
        let i = match steps.iter().position(|(s, _)| s == id) {
            Some(i) => i,
            None => {
                steps.push((id.to_string(), StepLine::default()));
                steps.len() - 1
            }
        };
        &mut steps[i].1
    }
    for r in records {
        match &r.event {
            Event::PlanProposed { plan, .. } => {
                plan_title = Some(plan.title.clone());
                for s in &plan.steps {
                    let line = at(&mut steps, s.id.as_str());
                    line.tool = s.tool.clone();
                    line.args = compact(&s.args, 120);
                }
            }
            Event::PolicyDecision { step, decision } | Event::PolicyRecheck { step, decision } => {
                at(&mut steps, step.as_str()).decision = Some(format!(
                    "{} by `{}`: {}",
                    decision.label(),
                    decision.rule(),
                    decision.reason()
                ));
            }
            Event::Approved {
                step,
                by,
                gated,
                reason,
                ..
            } => {
                let mut a = format!("{by} at {}", r.ts);
                if *gated {
                    a.push_str(" (gated, confirmed)");
                }
                if let Some(reason) = reason {
                    let _ = write!(a, ", reason: {reason}");
                }
                at(&mut steps, step.as_str()).approvals.push(a);
            }
            Event::StepStarted { step, tool, args } => {
                let line = at(&mut steps, step.as_str());
                line.tool = tool.clone();
                line.args = compact(args, 120);
                line.status = Some("running".into());
            }
            Event::StepSucceeded {
                step,
                output,
                duration_ms,
            } => {
                let line = at(&mut steps, step.as_str());
                line.status = Some("succeeded".into());
                line.duration_ms = Some(*duration_ms);
                line.detail = Some(crate::text::truncate(&output.text, OUTPUT_QUOTE));
            }
            Event::StepFailed {
                step,
                error,
                duration_ms,
                ..
            } => {
                let line = at(&mut steps, step.as_str());
                line.status = Some("failed".into());
                line.duration_ms = Some(*duration_ms);
                line.detail = Some(crate::text::truncate(error, OUTPUT_QUOTE));
            }
            Event::StepNotStarted { step, reason } => {
                let line = at(&mut steps, step.as_str());
                line.status = Some("not started".into());
                line.detail = Some(reason.clone());
            }
            Event::StepSkipped { step, reason } => {
                let line = at(&mut steps, step.as_str());
                line.status = Some("skipped".into());
                line.detail = Some(reason.clone());
            }
            Event::StepInterrupted { step } => {
                at(&mut steps, step.as_str()).status = Some("interrupted".into());
            }
            _ => {}
        }
    }
    if !steps.is_empty() {
        let _ = writeln!(
            out,
            "\n## Plan: {}\n",
            plan_title.as_deref().unwrap_or("(untitled)")
        );
        for (id, s) in &steps {
            let took = s.duration_ms.map(|ms| format!(", {}", duration(ms)));
            let _ = writeln!(
                out,
                "### `{id}`: {} ({}{})\n",
                s.tool,
                s.status.as_deref().unwrap_or("not run"),
                took.unwrap_or_default()
            );
            let _ = writeln!(out, "- Arguments: `{}`", s.args);
            if let Some(d) = &s.decision {
                let _ = writeln!(out, "- Policy: {d}");
            }
            for a in &s.approvals {
                let _ = writeln!(out, "- Approved by {a}");
            }
            if let Some(detail) = &s.detail {
                let quoted = detail.replace('\n', "\n  > ");
                let _ = writeln!(out, "- Result:\n  > {quoted}");
            }
            out.push('\n');
        }
    }

    let notes: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Note { text } => Some(format!("- {} {text}", r.ts)),
            Event::ServerProblem { server, message } => {
                Some(format!("- {} server `{server}`: {message}", r.ts))
            }
            Event::Effect { effect, scope, .. } => Some(format!(
                "- {} effect {effect}{}",
                r.ts,
                if scope.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{{{}}}",
                        scope
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
            _ => None,
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("## Notes and effects\n\n");
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    out
}
