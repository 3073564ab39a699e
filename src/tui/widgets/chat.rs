//! The conversation: messages and step results, newest at the bottom.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, PlanningView, Who};
use crate::tui::theme::Theme;
use crate::tui::wrap::wrap;

/// Wrapped lines per chat entry, for one width: built once per entry, so a
/// long conversation costs only what is on screen.
#[derive(Default)]
pub struct ChatCache {
    width: usize,
    /// The chat position of `entries[0]` (see `Chat::first`).
    first: i64,
    entries: std::collections::VecDeque<Vec<Line<'static>>>,
}

impl ChatCache {
    /// Follow the chat: entries let go are dropped, new ones wrapped;
    /// entries paged in front (rare) mean wrapping again.
    fn sync(&mut self, chat: &crate::tui::app::log::Chat, width: usize, theme: &Theme) {
        if self.width != width || chat.first() < self.first {
            self.width = width;
            self.first = chat.first();
            self.entries.clear();
        }
        while self.first < chat.first() && !self.entries.is_empty() {
            self.entries.pop_front();
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = chat.first();
        }
        while self.entries.len() < chat.len() {
            let Some(entry) = chat.get(self.entries.len()) else {
                break;
            };
            self.entries.push_back(lines_of(entry, width, theme));
        }
    }
}

fn lines_of(entry: &crate::tui::app::ChatEntry, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let (label, style) = match entry.who {
        Who::You => ("you", theme.user),
        Who::Bot => ("opsbot", theme.assistant),
        Who::Ok => ("result", theme.ok),
        Who::Failed => ("result", theme.error),
        Who::Warn => ("note", theme.warn),
    };
    let mut out = vec![Line::from(vec![
        Span::styled(format!("{} ", entry.ts), theme.muted),
        Span::styled(label.to_string(), style),
    ])];
    let body_style = match entry.who {
        Who::Failed => theme.error,
        Who::Warn => theme.warn,
        _ => theme.base,
    };
    for l in wrap(&entry.text, width.saturating_sub(2)) {
        out.push(Line::from(Span::styled(format!("  {l}"), body_style)));
    }
    out
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    app: &mut App,
    cache: &mut ChatCache,
    theme: &Theme,
    focused: bool,
) {
    let title = if app.chat_scroll > 0 {
        format!(" chat ↑{} ", app.chat_scroll)
    } else {
        " chat ".to_string()
    };
    let block = super::pane(title, focused, theme);
    let mut inner = block.inner(area);
    f.render_widget(block, area);
    if let Some(planning) = &app.planning
        && inner.height > 2
    {
        let line = thinking_line(planning, app.tick, theme);
        let rows = if line.width() > inner.width as usize {
            2
        } else {
            1
        };
        inner.height -= rows;
        let area = Rect {
            y: inner.y + inner.height,
            height: rows,
            ..inner
        };
        f.render_widget(
            Paragraph::new(line).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
    }
    let width = inner.width as usize;
    cache.sync(&app.chat, width, theme);
    let height = inner.height as usize;
    let total: usize = cache.entries.iter().map(Vec::len).sum();
    let top = total.saturating_sub(height);
    if app.chat_scroll >= top && app.chat_scroll > 0 && app.chat.more_before().is_some() {
        // Read back to the oldest entry held: older ones come from the store.
        app.wants_older = true;
    }
    app.chat_scroll = app.chat_scroll.min(top);
    // Walk back from the newest entry until the window is filled.
    let want = height + app.chat_scroll;
    let mut visible: Vec<Line<'static>> = Vec::with_capacity(want);
    for entry in cache.entries.iter().rev() {
        for line in entry.iter().rev() {
            visible.push(line.clone());
            if visible.len() >= want {
                break;
            }
        }
        if visible.len() >= want {
            break;
        }
    }
    visible.reverse();
    let start = visible.len().saturating_sub(want);
    let end = visible.len().saturating_sub(app.chat_scroll);
    let shown: Vec<Line<'static>> = visible[start..end].to_vec();
    if shown.is_empty() {
        let hint = Paragraph::new(vec![
            Line::from(Span::styled(
                "Type a request below and press Enter, for example:",
                theme.muted,
            )),
            Line::from(Span::styled("  deploy checkout to staging", theme.accent)),
            Line::from(Span::styled(
                "  promote payments · roll back search in staging",
                theme.muted,
            )),
        ]);
        f.render_widget(hint, inner);
        return;
    }
    f.render_widget(Paragraph::new(shown), inner);
}

/// What the planner is doing, with a spinner and the time it has taken.
fn thinking_line(p: &PlanningView, tick: u64, theme: &Theme) -> Line<'static> {
    use crate::planner::Phase;
    let phase = match &p.phase {
        None => "reading the request".to_string(),
        Some(Phase::Calling { repair: 0, call: 1 }) => "waiting for the model".to_string(),
        Some(Phase::Calling { repair: 0, call }) => format!("waiting for the model (try {call})"),
        Some(Phase::Calling { repair, .. }) => {
            format!("fixing an invalid plan (round {repair})")
        }
        Some(Phase::RateLimited { wait }) => format!(
            "rate limited, retrying in {}",
            crate::session::duration(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
        ),
    };
    Line::from(vec![
        Span::styled(
            format!(
                "{} planning with {} ",
                super::SPINNER[(tick as usize) % super::SPINNER.len()],
                p.planner
            ),
            theme.running,
        ),
        Span::styled(
            if p.tokens > 0 {
                format!(
                    "· {:.1}s · {phase} · {} tokens · ctrl-c cancels",
                    p.elapsed.as_secs_f64(),
                    p.tokens
                )
            } else {
                format!(
                    "· {:.1}s · {phase} · ctrl-c cancels",
                    p.elapsed.as_secs_f64()
                )
            },
            theme.muted,
        ),
    ])
}
