//! The live tail of the session's events, filterable by kind.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, AuditLine, Tone};
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
    let kept: Vec<&AuditLine> = app
        .audit
        .iter()
        .rev()
        .filter(|l| app.audit_filter.keeps(l.kind))
        .take(height + app.audit_scroll)
        .collect();
    app.audit_scroll = app.audit_scroll.min(kept.len().saturating_sub(height));
    let lines: Vec<Line<'static>> = kept
        .iter()
        .skip(app.audit_scroll)
        .take(height)
        .rev()
        .map(|l| {
            let style = match l.tone {
                Tone::Error => theme.error,
                Tone::Ok => theme.ok,
                Tone::Gated => theme.gated,
                Tone::Warn => theme.warn,
                Tone::Base => theme.base,
            };
            let body = crate::text::truncate(&l.text, width.saturating_sub(9));
            Line::from(vec![
                Span::styled(format!("{} ", l.time), theme.muted),
                Span::styled(body, style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
