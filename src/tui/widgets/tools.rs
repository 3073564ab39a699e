//! The tool list: the query, then one tool a line (name, kind, first line
//! of its description) with the selected one's arguments under it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::text::truncate;
use crate::tui::app::ToolList;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, list: &ToolList, theme: &Theme) {
    let r = Rect {
        height: area.height.saturating_sub(1),
        ..area
    };
    f.render_widget(Clear, r);
    let block = super::modal::frame(
        "tools · type to filter · ↑↓ choose · enter starts a /call · esc closes",
        theme,
        theme.border_focused,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let shown = list.shown();
    let width = inner.width as usize;
    let mut lines = vec![
        Line::from(vec![
            Span::styled("filter: ", theme.muted),
            Span::styled(format!("{}▏", list.query), theme.accent),
            Span::styled(
                format!("   {} of {} tools", shown.len(), list.rows.len()),
                theme.muted,
            ),
        ]),
        Line::from(""),
    ];
    if shown.is_empty() {
        lines.push(Line::from(Span::styled(
            if list.rows.is_empty() {
                "No tools: no server is ready and none has a cached list (see the server list)."
            } else {
                "No tool matches every word; fewer words find more."
            },
            theme.muted,
        )));
    }
    let rows = (inner.height as usize).saturating_sub(3).max(1);
    let first = list.selected.saturating_sub(rows.saturating_sub(2));
    for (i, row) in shown.iter().enumerate().skip(first).take(rows) {
        let selected = i == list.selected;
        let style = if selected {
            theme.selection
        } else {
            theme.base
        };
        let text = format!(
            "{} {:<30} {:<13} {}",
            if selected { "›" } else { " " },
            row.name,
            row.kind,
            row.description
        );
        lines.push(Line::from(Span::styled(truncate(&text, width), style)));
        if selected && !row.args.is_empty() {
            lines.push(Line::from(Span::styled(
                truncate(&format!("    args: {}  (* required)", row.args), width),
                theme.muted,
            )));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
}
