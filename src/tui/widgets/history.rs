//! The history browser: the search box and the sessions it finds, newest
//! first, one line each (date, outcome, environments, request, who), with
//! where the words matched under the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::session::Found;
use crate::text::truncate;
use crate::tui::app::HistoryBrowser;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, browser: &mut HistoryBrowser, theme: &Theme) {
    // Everything but the status line, which keeps showing the live session.
    let r = Rect {
        height: area.height.saturating_sub(1),
        ..area
    };
    f.render_widget(Clear, r);
    let block = super::modal::frame(
        "history · type to search · ↑↓ choose · enter replays read-only · esc closes",
        theme,
        theme.border_focused,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let [search, list, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    browser.query.set_block(
        Block::default()
            .borders(Borders::ALL)
            .border_style(theme.accent)
            .title(" search "),
    );
    f.render_widget(&browser.query, search);

    let width = list.width as usize;
    let mut lines = Vec::new();
    if let Some(e) = &browser.error {
        lines.push(Line::from(Span::styled(e.clone(), theme.error)));
    } else if browser.found.is_empty() && browser.current {
        lines.push(Line::from(Span::styled(
            if browser.text().trim().is_empty() {
                "No sessions yet: what you ask opsbot is kept here."
            } else {
                "No session matches. Fewer words, or the start of a word, find more."
            },
            theme.muted,
        )));
    }
    // The selected session takes two lines (its snippet under it); keep
    // it in view.
    let rows = list.height as usize;
    let first = browser.selected.saturating_sub(rows.saturating_sub(3));
    for (i, found) in browser.found.iter().enumerate().skip(first) {
        if lines.len() >= rows {
            break;
        }
        let chosen = i == browser.selected;
        let here = found.id.as_str() == browser.here;
        lines.push(row(found, chosen, here, width, theme));
        if chosen && let Some(snippet) = &found.snippet {
            let flat = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
            lines.push(Line::from(Span::styled(
                truncate(&format!("    … {flat}"), width),
                theme.muted,
            )));
        }
    }
    f.render_widget(Paragraph::new(lines), list);

    let count = match browser.found.len() {
        0 => String::new(),
        1 => "1 session".to_string(),
        n if n >= crate::tui::app::LIST_LIMIT => {
            format!("the newest {n} sessions · type to narrow")
        }
        n => format!("{n} sessions"),
    };
    let state = if browser.current {
        ""
    } else {
        " · searching…"
    };
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(
            format!(" {count}{state}"),
            theme.muted,
        ))),
        footer,
    );
}

/// Wide: `› 2026-11-17 16:05  ✓ succeeded    staging,production  title  alice`;
/// narrow terminals drop the year and the actor to keep the request.
fn row<'a>(found: &Found, chosen: bool, here: bool, width: usize, theme: &Theme) -> Line<'a> {
    let (glyph, style) = outcome_style(&found.outcome, theme);
    let base = if chosen { theme.selection } else { theme.base };
    let wide = width >= 100;
    let when = found
        .started_at
        .get(if wide { 0 } else { 5 }..16)
        .unwrap_or(&found.started_at)
        .replace('T', " ");
    let envs = if found.envs.is_empty() {
        "-".to_string()
    } else {
        found.envs.join(",")
    };
    let env_width = if wide { 18 } else { 11 };
    let head = format!(
        "{} {when}  {glyph} {:<12} {:<env_width$} ",
        if chosen { "›" } else { " " },
        outcome_label(&found.outcome),
        truncate(&envs, env_width)
    );
    let who = if wide {
        format!("  {}", found.actor)
    } else {
        String::new()
    };
    let mut title = String::new();
    if here {
        title.push_str("(this session) ");
    }
    title.push_str(found.title.as_deref().unwrap_or("(no request)"));
    let room = width.saturating_sub(head.chars().count() + who.chars().count());
    Line::from(vec![
        Span::styled(head, base.patch(style)),
        Span::styled(format!("{:<room$}", truncate(&title, room)), base),
        Span::styled(who, base.patch(theme.muted)),
    ])
}

/// At most 12 characters, to keep the columns.
fn outcome_label(outcome: &str) -> &str {
    match outcome {
        "awaiting_approval" => "awaiting",
        "needs_clarification" => "question",
        "invalid_plan" => "invalid plan",
        other => other,
    }
}

fn outcome_style(outcome: &str, theme: &Theme) -> (&'static str, Style) {
    match outcome {
        "succeeded" => ("✓", theme.ok),
        "failed" | "invalid_plan" | "denied" => ("✗", theme.error),
        "interrupted" => ("⚠", theme.warn),
        "cancelled" | "rejected" => ("⊘", theme.muted),
        _ => ("·", theme.muted),
    }
}
