//! Plain-text rendering of events, shared by `run` (live) and `history show`.

use opsbot::plan::Plan;
use opsbot::policy::Decision;
use opsbot::session::{Event, Record, compact, describe};

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
            if let Some(q) = d.quorum() {
                out.push_str(&format!(
                    "  {:<8} {:<18} ↳ four eyes: {}\n",
                    "",
                    "",
                    q.wanted(0, "the requester")
                ));
            }
        }
    }
    out
}

/// One line for an event, or nothing for events not worth a line. The
/// wording is the log's own (`session::describe`); step events get a glyph.
pub fn record(r: &Record, with_progress: bool) -> Option<String> {
    if !with_progress && matches!(r.event, Event::StepProgress { .. }) {
        return None;
    }
    let time = r.ts.get(11..19).unwrap_or(&r.ts);
    let (kind, text) = describe(&r.event);
    let glyph = match kind {
        "call" => "▶",
        "ok" => "✓",
        "failed" => "✗",
        "not started" => "⊘",
        "skipped" => "-",
        "progress" => "…",
        "finished" => "=",
        "waiting" => "?",
        "interrupted" => "!",
        _ => return Some(format!("{time} {kind:<7} {text}")),
    };
    Some(format!("{time} {glyph} {text}"))
}
