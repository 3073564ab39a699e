//! The live plan: every step with its status, tool and time, indented by
//! its depth in the graph; the selected step opens to show its arguments,
//! the policy's reason, progress and output.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::plan::{Plan, StepId};
use crate::policy::Decision;
use crate::session::{StepState, StepStatus, duration};
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::wrap::wrap;

/// Depth of each step: one more than its deepest dependency. One pass with
/// memoisation (plans are validated acyclic), so long chains stay linear.
pub fn depths(plan: &Plan) -> HashMap<StepId, usize> {
    let index: HashMap<&StepId, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i))
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; plan.steps.len()];
    for start in 0..plan.steps.len() {
        // Iterative DFS: resolve dependencies before the step itself.
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if depth[i].is_some() {
                continue;
            }
            let deps: Vec<usize> = plan.steps[i]
                .depends_on
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect();
            if expanded || deps.iter().all(|d| depth[*d].is_some()) {
                let d = deps
                    .iter()
                    .filter_map(|d| depth[*d])
                    .map(|d| d + 1)
                    .max()
                    .unwrap_or(0);
                depth[i] = Some(d);
            } else {
                stack.push((i, true));
                stack.extend(
                    deps.into_iter()
                        .filter(|d| depth[*d].is_none())
                        .map(|d| (d, false)),
                );
            }
        }
    }
    plan.steps
        .iter()
        .zip(depth)
        .map(|(s, d)| (s.id.clone(), d.unwrap_or(0)))
        .collect()
}

pub fn glyph(st: Option<&StepState>, tick: u64, theme: &Theme) -> (String, Style) {
    let Some(st) = st else {
        return ("◌".into(), theme.muted);
    };
    let gated = st.decision.as_ref().and_then(Decision::gate).is_some();
    match st.status() {
        StepStatus::Pending if st.decision.as_ref().is_some_and(Decision::is_denied) => {
            ("⛔".into(), theme.error)
        }
        StepStatus::Pending => ("◌".into(), theme.muted),
        StepStatus::AwaitingApproval if gated => ("⚑".into(), theme.gated),
        StepStatus::AwaitingApproval => ("⚑".into(), theme.warn),
        StepStatus::Approved => ("●".into(), theme.accent),
        StepStatus::Running => (
            super::SPINNER[(tick as usize) % super::SPINNER.len()].into(),
            theme.running,
        ),
        StepStatus::Succeeded => ("✓".into(), theme.ok),
        StepStatus::Failed => ("✗".into(), theme.error),
        StepStatus::Skipped if st.decision.as_ref().is_some_and(Decision::is_denied) => {
            ("⛔".into(), theme.error)
        }
        StepStatus::Skipped => ("⊘".into(), theme.muted),
        StepStatus::NotStarted => ("⊘".into(), theme.error),
    }
}

/// A replay says what a step was waiting for, not what to do about it.
fn tail(st: Option<&StepState>, replay: bool, theme: &Theme) -> Span<'static> {
    let Some(st) = st else { return Span::raw("") };
    let gated = st.decision.as_ref().and_then(Decision::gate).is_some();
    match st.status() {
        StepStatus::Pending | StepStatus::AwaitingApproval if st.interrupted && replay => {
            Span::styled("interrupted", theme.warn)
        }
        StepStatus::AwaitingApproval if replay => Span::styled("was awaiting approval", theme.warn),
        StepStatus::Pending | StepStatus::AwaitingApproval if st.interrupted => {
            Span::styled("interrupted: approve", theme.warn)
        }
        StepStatus::AwaitingApproval if gated => Span::styled("gated: confirm", theme.gated),
        StepStatus::AwaitingApproval => Span::styled("approve?", theme.warn),
        StepStatus::Pending if gated => Span::styled("gated", theme.gated),
        StepStatus::Running => match &st.progress {
            Some(p) => Span::styled(
                format!(
                    "{}{}",
                    p.total
                        .map(|t| format!("{}/{} ", p.progress, t))
                        .unwrap_or_default(),
                    p.message.clone().unwrap_or_default()
                ),
                theme.running,
            ),
            None => Span::styled("running", theme.running),
        },
        StepStatus::Succeeded | StepStatus::Failed => Span::styled(
            st.duration_ms.map(duration).unwrap_or_default(),
            theme.muted,
        ),
        StepStatus::Skipped => Span::styled("skipped", theme.muted),
        StepStatus::NotStarted => Span::styled("not started", theme.error),
        _ => Span::raw(""),
    }
}

fn detail(app: &App, id: &StepId, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let Some(step) = app.state.plan.as_ref().and_then(|p| p.step(id)) else {
        return out;
    };
    let st = app.state.steps.get(id);
    let indent = "      ";
    let push = |out: &mut Vec<Line<'static>>, text: &str, style: Style| {
        for l in wrap(text, width.saturating_sub(indent.len())) {
            out.push(Line::from(Span::styled(format!("{indent}{l}"), style)));
        }
    };
    if !step.description.is_empty() {
        push(&mut out, &step.description, theme.muted);
    }
    if let Some(p) = st
        .and_then(|s| s.progress.as_ref())
        .filter(|_| st.is_some_and(|s| s.status() == StepStatus::Running))
    {
        let frac = p
            .total
            .filter(|t| *t > 0.0)
            .map_or(0.0, |t| (p.progress / t).clamp(0.0, 1.0));
        let bar_w = 20;
        let filled = (frac * bar_w as f64).round() as usize;
        push(
            &mut out,
            &format!(
                "▕{}{}▏ {}",
                "█".repeat(filled),
                "░".repeat(bar_w - filled),
                p.message.clone().unwrap_or_default()
            ),
            theme.running,
        );
    }
    if let Some(e) = st.and_then(|s| s.error.as_ref()) {
        push(&mut out, &format!("error: {e}"), theme.error);
    }
    if let Some(r) = st.and_then(|s| s.skipped_reason.as_ref()) {
        push(&mut out, &format!("skipped: {r}"), theme.muted);
    }
    if let Some(d) = st.and_then(|s| s.decision.as_ref()) {
        let style = match d {
            Decision::Allow { .. } => theme.ok,
            Decision::NeedsApproval { gate: Some(_), .. } => theme.gated,
            Decision::NeedsApproval { .. } => theme.warn,
            Decision::Deny { .. } => theme.error,
        };
        push(
            &mut out,
            &format!("policy: {} — {} [{}]", d.label(), d.reason(), d.rule()),
            style,
        );
    }
    if let Some(q) = st
        .and_then(|s| s.decision.as_ref())
        .and_then(Decision::quorum)
    {
        let approvers = st.map(|s| s.approvers.as_slice()).unwrap_or_default();
        let line = if approvers.len() >= q.approvers as usize {
            format!("four eyes: approved by {}", approvers.join(", "))
        } else {
            format!(
                "four eyes: awaits {} (W in their app, or `opsbot approvals`)",
                q.wanted(approvers.len(), &app.state.actor)
            )
        };
        push(&mut out, &line, theme.gated);
    }
    if let Some(by) = st.and_then(|s| s.approved_by.as_ref()) {
        push(&mut out, &format!("approved by {by}"), theme.muted);
    }
    let args = serde_json::to_string_pretty(&step.args).unwrap_or_default();
    push(&mut out, &format!("args: {args}"), theme.base);
    if let Some(o) = st.and_then(|s| s.output.as_ref()) {
        let text = serde_json::to_string_pretty(&o.value()).unwrap_or_default();
        push(
            &mut out,
            &format!("output: {}", crate::tui::app::fold(&text, 12)),
            theme.base,
        );
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme, focused: bool) {
    if let Some(p) = &app.planning
        && !p.draft.is_empty()
    {
        return draw_draft(f, area, &p.draft, theme, focused);
    }
    let Some(plan) = &app.state.plan else {
        let block = super::pane(" plan ".into(), focused, theme);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let text = if app.state.plan_errors.is_empty() {
            "No plan yet."
        } else {
            "The last plan was not valid; nothing ran. See the chat for why."
        };
        f.render_widget(Paragraph::new(Span::styled(text, theme.muted)), inner);
        return;
    };
    let done = app
        .state
        .steps
        .values()
        .filter(|s| s.status() == StepStatus::Succeeded)
        .count();
    let title = format!(" plan: {} · {done}/{} ", plan.title, plan.steps.len());
    let block = super::pane(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let height = inner.height as usize;
    let mut selected_detail = app
        .selected_step()
        .map(|s| detail(app, &s.id, width, theme))
        .unwrap_or_default();
    // The detail may take what the rows leave, but never hides the tree:
    // at least half the pane stays for the steps.
    let room = height.saturating_sub(plan.steps.len() + 1).max(height / 2);
    if selected_detail.len() > room {
        selected_detail.truncate(room.saturating_sub(1));
        selected_detail.push(Line::from(Span::styled(
            "      … (more in the chat and audit)",
            theme.muted,
        )));
    }
    // Keep the selected row (and as much of its detail as fits) in view;
    // build only the rows that can show.
    let first = app
        .selected
        .saturating_sub(height.saturating_sub(selected_detail.len().min(height / 2) + 1));
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(height);
    for (i, step) in plan.steps.iter().enumerate().skip(first) {
        if lines.len() >= height {
            break;
        }
        let st = app.state.steps.get(&step.id);
        let (g, gstyle) = glyph(st, app.tick, theme);
        let d = app.depths.get(&step.id).copied().unwrap_or(0).min(6);
        let indent = if d == 0 {
            String::new()
        } else {
            format!("{}└ ", "  ".repeat(d - 1))
        };
        let name_w = 16usize.saturating_sub(indent.chars().count()).max(4);
        let mut row = Line::from(vec![
            Span::styled(indent, theme.muted),
            Span::styled(format!("{g} "), gstyle),
            Span::styled(
                format!(
                    "{:<name_w$} ",
                    crate::text::truncate(step.id.as_str(), name_w)
                ),
                theme.base,
            ),
            Span::styled(
                format!("{:<22} ", crate::text::truncate(&step.tool, 22)),
                theme.muted,
            ),
            tail(st, app.read_only, theme),
        ]);
        if i == app.selected {
            row = row.style(theme.selection);
        }
        lines.push(row);
        if i == app.selected {
            lines.extend(selected_detail.iter().cloned());
        }
    }
    lines.truncate(height);
    f.render_widget(Paragraph::new(lines), inner);
}

/// A plan still being written: its finished steps, none approvable yet.
fn draw_draft(
    f: &mut Frame,
    area: Rect,
    draft: &[(String, String, String)],
    theme: &Theme,
    focused: bool,
) {
    let block = super::pane(
        format!(" plan: being written · {} steps so far ", draft.len()),
        focused,
        theme,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let lines: Vec<Line> = draft
        .iter()
        .take(inner.height as usize)
        .map(|(id, tool, description)| {
            Line::from(vec![
                Span::styled("◌ planning  ", theme.muted),
                Span::styled(
                    crate::text::truncate(
                        &format!("{id:<18} {tool:<22} {description}"),
                        width.saturating_sub(12),
                    ),
                    theme.base,
                ),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
