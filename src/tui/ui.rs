//! The screen's layout: chat left, plan right-top, audit right-bottom, the
//! input box and the status line; one main pane at a time when narrow.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, Pane};
use super::theme::Theme;
use super::widgets::{audit, chat, modal, plan, status};

/// Below this width the three panes do not fit side by side.
pub const NARROW: u16 = 100;

#[derive(Default)]
pub struct View {
    pub chat: chat::ChatCache,
}

pub fn draw(f: &mut Frame, app: &mut App, view: &mut View, theme: &Theme) {
    let area = f.area();
    f.render_widget(Block::default().style(theme.base), area);
    let input_lines = app.input.lines().len().clamp(1, 5) as u16;
    let [main, input, status_line] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    if area.width >= NARROW {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(main);
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(right);
        chat::draw(f, left, app, &mut view.chat, theme, app.focus == Pane::Chat);
        plan::draw(f, top, app, theme, app.focus == Pane::Plan);
        audit::draw(f, bottom, app, theme, app.focus == Pane::Audit);
    } else {
        draw_narrow(f, main, app, view, theme);
    }
    let hints = status::key_hints(app);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if app.focus == Pane::Input {
            theme.border_focused
        } else {
            theme.border
        })
        .title(Line::from(Span::styled(" > ", theme.accent)))
        .title_bottom(Line::from(Span::styled(
            crate::text::truncate(&hints, area.width.saturating_sub(2) as usize),
            theme.muted,
        )));
    app.input.set_block(block);
    f.render_widget(&app.input, input);
    status::draw_status(f, status_line, app, theme);
    modal::draw(f, app, theme);
}

fn draw_narrow(f: &mut Frame, area: Rect, app: &mut App, view: &mut View, theme: &Theme) {
    let [tabs, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    let shown = app.narrow_pane;
    let tab = |name: &str, pane: Pane| {
        Span::styled(
            format!(" {name} "),
            if shown == pane {
                theme.selection.patch(theme.accent)
            } else {
                theme.muted
            },
        )
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            tab("chat", Pane::Chat),
            Span::raw("│"),
            tab("plan", Pane::Plan),
            Span::raw("│"),
            tab("audit", Pane::Audit),
            Span::styled(
                format!("  {} switches", app.keys.label("next_pane")),
                theme.muted,
            ),
        ])),
        tabs,
    );
    match shown {
        Pane::Plan => plan::draw(f, body, app, theme, app.focus == Pane::Plan),
        Pane::Audit => audit::draw(f, body, app, theme, app.focus == Pane::Audit),
        _ => chat::draw(f, body, app, &mut view.chat, theme, app.focus == Pane::Chat),
    }
}
