//! The insights screen (`I`): the last 30 days of the log as charts. Runs
//! per day and failures per day as bars, model tokens per day as a
//! sparkline, the slowest tools' p95 as bars, and the numbers behind them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Clear, Paragraph, Sparkline};

use crate::session::Insights;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, i: &Insights, theme: &Theme) {
    let r = super::modal::centered(area, 116, 34);
    f.render_widget(Clear, r);
    let block = super::modal::frame(
        "insights: the last 30 days · esc closes",
        theme,
        theme.border_focused,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let [summary, runs, tokens, tools] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(8),
        Constraint::Length(4),
        Constraint::Min(8),
    ])
    .areas(inner);

    let rate = i.success_rate.map_or("no run has ended".to_string(), |r| {
        format!("{:.0}% succeeded", r * 100.0)
    });
    let waits = match (i.approval_wait_p50_s, i.approval_wait_p95_s) {
        (Some(a), Some(b)) => format!(
            "approvals {} (waited p50 {a:.1} s, p95 {b:.1} s)",
            i.approvals
        ),
        _ => format!("approvals {}", i.approvals),
    };
    let denials = if i.denials.is_empty() {
        "no denials".to_string()
    } else {
        format!(
            "denied: {}",
            i.denials
                .iter()
                .take(4)
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let failing = if i.failures_by_server.is_empty() {
        "no step failed".to_string()
    } else {
        format!(
            "failed steps: {}",
            i.failures_by_server
                .iter()
                .take(4)
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    f.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(
                    format!("{} runs", i.runs),
                    theme.accent.add_modifier(Modifier::BOLD),
                ),
                Span::styled(format!(" · {rate} · {waits}"), theme.base),
            ]),
            Line::from(Span::styled(failing, theme.error)),
            Line::from(Span::styled(denials, theme.warn)),
            Line::from(Span::styled(
                format!("model use: {} tokens, ${:.2}", i.llm_tokens, i.llm_cost_usd),
                theme.muted,
            )),
        ]),
        summary,
    );

    // Runs per day: succeeded and failed side by side for each day.
    let groups: Vec<BarGroup<'_>> = i
        .days
        .iter()
        .map(|d| {
            let failed = d.outcomes.get("failed").copied().unwrap_or(0);
            BarGroup::default()
                .label(Line::from(d.day.get(5..).unwrap_or(&d.day).to_string()))
                .bars(&[
                    Bar::default().value(d.runs).style(theme.ok),
                    Bar::default().value(failed).style(theme.error),
                ])
        })
        .collect();
    let mut chart = BarChart::default()
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title("runs per day (green) and failed (red)"),
        )
        .bar_width(3)
        .bar_gap(0)
        .group_gap(2);
    for g in groups {
        chart = chart.data(g);
    }
    f.render_widget(chart, runs);

    let per_day: Vec<u64> = i.days.iter().map(|d| d.llm_tokens).collect();
    f.render_widget(
        Sparkline::default()
            .block(
                Block::default()
                    .borders(Borders::TOP)
                    .title("model tokens per day"),
            )
            .data(&per_day)
            .style(theme.accent),
        tokens,
    );

    let mut slow: Vec<_> = i.tools.iter().collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.p95_ms));
    let bars: Vec<Bar<'_>> = slow
        .iter()
        .take(8)
        .map(|t| {
            Bar::default()
                .value(t.p95_ms)
                .text_value(format!("{} ms", t.p95_ms))
                .label(Line::from(t.tool.clone()))
                .style(if t.failures > 0 {
                    theme.warn
                } else {
                    theme.accent
                })
        })
        .collect();
    f.render_widget(
        BarChart::default()
            .block(
                Block::default()
                    .borders(Borders::TOP)
                    .title("slowest tools, p95 (amber: some calls failed)"),
            )
            .direction(ratatui::layout::Direction::Horizontal)
            .bar_width(1)
            .bar_gap(0)
            .data(BarGroup::default().bars(&bars)),
        tools,
    );
}
