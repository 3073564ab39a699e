//! The pending-approvals overlay: served calls waiting for a person, the
//! selected one shown in full (exactly what would run, and why policy wants
//! a person), with the field for a gated call's typed target.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use crate::session::Pending;
use crate::tui::theme::Theme;

pub fn draw(
    f: &mut Frame,
    area: Rect,
    pending: &[Pending],
    selected: usize,
    typed: &mut TextArea<'static>,
    error: Option<&str>,
    theme: &Theme,
) {
    let r = super::modal::centered(area, 110, 30);
    f.render_widget(Clear, r);
    let block = super::modal::frame(
        "calls waiting for approval · ↑↓ choose · enter approves · ctrl-x refuses · esc closes",
        theme,
        theme.gated,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let [list, input, msg] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(inner);

    let mut lines = Vec::new();
    if pending.is_empty() {
        lines.push(Line::from(Span::styled(
            "No call is waiting. Calls from opsbot serve clients that need a person, and steps that need your approval besides their requester's (four eyes), appear here.",
            theme.muted,
        )));
    }
    for (i, p) in pending.iter().enumerate() {
        let chosen = i == selected;
        let since = p.since.get(11..19).unwrap_or(&p.since);
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} {} ", if chosen { "›" } else { " " }, p.client),
                if chosen { theme.selection } else { theme.base },
            ),
            Span::styled(format!("wants {} ", p.tool), theme.accent),
            Span::styled(
                format!("(session {}, {}, waiting since {since})", p.session, p.step),
                theme.muted,
            ),
        ]));
        if !chosen {
            continue;
        }
        let args = serde_json::to_string_pretty(&p.args).unwrap_or_default();
        for l in args.lines() {
            lines.push(Line::from(Span::styled(format!("    {l}"), theme.base)));
        }
        lines.push(Line::from(Span::styled(
            format!(
                "    policy ({}): {}",
                p.decision.rule(),
                p.decision.reason()
            ),
            theme.warn,
        )));
        if let Some(g) = p.decision.gate() {
            lines.push(Line::from(Span::styled(
                if g.reason_required {
                    format!("    gated: type `{}` and then why, below", g.confirm)
                } else {
                    format!("    gated: type `{}` below", g.confirm)
                },
                theme.gated,
            )));
        }
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), list);
    typed.set_block(
        Block::default()
            .borders(Borders::ALL)
            .border_style(theme.gated),
    );
    f.render_widget(&*typed, input);
    if let Some(e) = error {
        f.render_widget(
            Paragraph::new(Line::from(Span::styled(e.to_string(), theme.error))),
            msg,
        );
    }
}
