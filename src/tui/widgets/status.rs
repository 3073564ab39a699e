//! The status line (servers, planner, mode, session) and the key hints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::mcp::ServerStatus;
use crate::tui::app::{App, Pane};
use crate::tui::theme::Theme;

pub fn draw_status(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if app.read_only {
        return draw_replay_status(f, area, app, theme);
    }
    let enabled: Vec<&ServerStatus> = app
        .servers
        .values()
        .filter(|s| !matches!(s, ServerStatus::Disabled))
        .collect();
    // A server not started yet (its tools cached) is as good as ready: it
    // starts when a plan uses it.
    let ready = enabled.iter().filter(|s| s.has_tools()).count();
    let starting = enabled
        .iter()
        .filter(|s| matches!(s, ServerStatus::Starting))
        .count();
    let failing = enabled.len() - ready - starting;
    let (glyph, style) = if failing > 0 {
        ("⚠", theme.warn)
    } else if starting > 0 {
        ("◌", theme.muted)
    } else {
        ("●", theme.ok)
    };
    let mut spans = Vec::new();
    if let Some(fault) = &app.store_fault {
        spans.push(Span::styled(
            format!(" ✗ NOT RECORDING: {} │", fault.short()),
            theme.error,
        ));
    }
    spans.extend([
        Span::styled(format!(" {glyph} {ready}/{} servers", enabled.len()), style),
        Span::styled(
            if failing > 0 {
                format!(" ({} for details)", app.keys.label("servers"))
            } else {
                String::new()
            },
            theme.muted,
        ),
        Span::styled(
            format!(
                " │ planner {} │ mode {} │ session {}",
                app.planner, app.mode, app.session_id
            ),
            theme.muted,
        ),
    ]);
    let open: Vec<&str> = app
        .breakers
        .iter()
        .filter(|(_, b)| !matches!(b, crate::mcp::BreakerState::Closed))
        .map(|(name, _)| name.as_str())
        .collect();
    if !open.is_empty() {
        spans.push(Span::styled(
            format!(" │ ⚡ breaker open: {}", open.join(", ")),
            theme.error,
        ));
    }
    let llm = &app.state.llm;
    if llm.calls > 0 {
        let mut usage = format!(" │ llm {} tok", thousands(llm.tokens()));
        if llm.cost_usd > 0.0 {
            usage.push_str(&format!(" {}", crate::session::usd(llm.cost_usd)));
        }
        spans.push(Span::styled(usage, theme.muted));
    }
    if !app.pending.is_empty() {
        let n = app.pending.len();
        spans.push(Span::styled(
            format!(
                " │ ⏳ {n} call{} waiting for approval ({})",
                if n == 1 { "" } else { "s" },
                app.keys.label("pending")
            ),
            theme.gated,
        ));
    }
    let unreviewed = app
        .reviews
        .iter()
        .filter(|r| r.rejected_by.is_none())
        .count();
    if unreviewed > 0 {
        spans.push(Span::styled(
            format!(
                " │ ⚠ {unreviewed} tool{} changed ({})",
                if unreviewed == 1 { "" } else { "s" },
                app.keys.label("review")
            ),
            theme.error,
        ));
    }
    if app.export_problem.is_some() {
        spans.push(Span::styled(
            " │ ⚠ telemetry not exported (opsbot telemetry status)",
            theme.warn,
        ));
    }
    if let Some((msg, error)) = &app.flash {
        spans.push(Span::styled(
            format!(" │ {msg}"),
            if *error { theme.error } else { theme.accent },
        ));
    } else if app.planning.is_some() {
        spans.push(Span::styled(" │ planning…", theme.running));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A replay says whose session it is and when it ran, not the live
/// servers: nothing in it can reach them.
fn draw_replay_status(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let started = app
        .started
        .as_deref()
        .map(|ts| ts.get(..16).unwrap_or(ts).replace('T', " "))
        .unwrap_or_default();
    let mut spans = vec![Span::styled(" ◷ read-only replay", theme.warn)];
    // A message stands in for the details, so a narrow line still shows it.
    match &app.flash {
        Some((msg, error)) => spans.push(Span::styled(
            format!(" │ {msg}"),
            if *error { theme.error } else { theme.accent },
        )),
        None => spans.push(Span::styled(
            format!(
                " │ session {} │ started {started} by {} │ planner {}",
                app.session_id, app.state.actor, app.planner
            ),
            theme.muted,
        )),
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn key_hints(app: &App) -> String {
    let k = |a: &str| app.keys.label(a);
    if app.read_only {
        return format!(
            " {} re-run as a new session · esc back to the list · {} panes · ↑↓ move · {} help ",
            k("rerun"),
            k("next_pane"),
            k("help")
        );
    }
    match app.focus {
        Pane::Input => format!(
            " enter send · alt-enter newline · ↑↓ recall · ctrl-r past sessions · {} panes · esc plan · ctrl-c cancel/quit ",
            k("next_pane")
        ),
        Pane::Plan => format!(
            " {} approve · {} approve ready · {} trust tool · {} skip · {} edit · {} cancel · {} reject · {} help ",
            k("approve"),
            k("approve_ready"),
            k("approve_remember"),
            k("skip"),
            k("edit"),
            k("cancel"),
            k("reject"),
            k("help")
        ),
        Pane::Chat => format!(
            " ↑↓ pgup pgdn scroll · {} type · {} help ",
            k("input"),
            k("help")
        ),
        Pane::Audit => format!(
            " ↑↓ scroll · {} filter · {} type · {} help ",
            k("filter"),
            k("input"),
            k("help")
        ),
    }
}

/// 950, 1.2k, 3.4M: token counts at a glance.
fn thousands(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}
