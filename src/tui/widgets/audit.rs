//! The live tail of the session's events, filterable by kind.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::session::{Event, describe};
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, app: &mut App, theme: &Theme, focused: bool) {
    let title = format!(
        " audit · {} ({}) ",
        app.audit_filter.label(),
        app.keys.label("filter")
    );
    let block = super::pane(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let width = inner.width as usize;
    let kept: Vec<&crate::session::Record> = app
        .audit
        .iter()
        .rev()
        .filter(|r| app.audit_filter.keeps(&r.event))
        .take(height + app.audit_scroll)
        .collect();
    app.audit_scroll = app.audit_scroll.min(kept.len().saturating_sub(height));
    let lines: Vec<Line<'static>> = kept
        .iter()
        .skip(app.audit_scroll)
        .take(height)
        .rev()
        .map(|r| {
            let (kind, text) = describe(&r.event);
            let style = match &r.event {
                Event::StepFailed { .. }
                | Event::StepNotStarted { .. }
                | Event::ServerProblem { .. }
                | Event::PlanInvalid { .. } => theme.error,
                Event::StepSucceeded { .. } => theme.ok,
                Event::PolicyDecision { decision, .. } if decision.is_denied() => theme.error,
                Event::PolicyDecision { decision, .. } if decision.gate().is_some() => theme.gated,
                Event::AwaitingApproval { .. } | Event::Approved { .. } => theme.warn,
                _ => theme.base,
            };
            let time = r.ts.get(11..19).unwrap_or(&r.ts).to_string();
            let body = crate::text::truncate(&format!("{kind} {text}"), width.saturating_sub(9));
            Line::from(vec![
                Span::styled(format!("{time} "), theme.muted),
                Span::styled(body, style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
