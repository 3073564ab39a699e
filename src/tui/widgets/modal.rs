//! Overlays: help, the server list, the gated-step confirmation, the
//! argument editor and the quit confirmation.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use crate::mcp::ServerStatus;
use crate::tui::app::{App, Modal};
use crate::tui::theme::Theme;

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2)).max(10.min(area.width));
    let h = h.min(area.height.saturating_sub(2)).max(3.min(area.height));
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub(super) fn frame<'a>(title: &str, theme: &Theme, style: ratatui::style::Style) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(style)
        .title(format!(" {title} "))
        .style(theme.base)
}

pub fn draw(f: &mut Frame, app: &mut App, theme: &Theme) {
    let area = f.area();
    let keys = app.keys.clone();
    // What a gated step would run, references filled in, worked out before
    // the modal is borrowed for its text field.
    let gate_view = match &app.modal {
        Some(Modal::Gate { step, .. }) => app
            .state
            .plan
            .as_ref()
            .and_then(|p| p.step(step))
            .map(|s| (s.tool.clone(), app.resolved_args(s))),
        _ => None,
    };
    let Some(modal) = app.modal.as_mut() else {
        return;
    };
    match modal {
        Modal::Help => {
            let rows: Vec<(String, &str)> = vec![
                ("enter".into(), "send the request (in the input box)"),
                ("alt-enter".into(), "new line in the input box"),
                (
                    "/tools".into(),
                    "find tools [words]; /call server.tool k=v calls one",
                ),
                ("↑ ↓".into(), "recall earlier requests; move in lists"),
                (
                    keys.label("next_pane"),
                    "next pane (input, plan, chat, audit)",
                ),
                (
                    keys.label("approve"),
                    "approve the selected step (gated: type to confirm)",
                ),
                (
                    keys.label("approve_remember"),
                    "approve, and don't ask again for this tool (never gated)",
                ),
                (
                    keys.label("approve_ready"),
                    "approve every ungated step that is waiting",
                ),
                (keys.label("skip"), "skip the selected step"),
                (
                    keys.label("edit"),
                    "edit the selected step's arguments (JSON)",
                ),
                (keys.label("cancel"), "cancel the selected running step"),
                (keys.label("cancel_run"), "cancel the whole run"),
                (keys.label("reject"), "reject the plan: nothing more starts"),
                (keys.label("filter"), "audit: filter by kind"),
                (keys.label("servers"), "servers and their last errors"),
                (
                    keys.label("history"),
                    "past sessions (ctrl-r when typing): search, replay, re-run",
                ),
                (
                    keys.label("pending"),
                    "calls from opsbot serve clients waiting for approval",
                ),
                (
                    keys.label("review"),
                    "tools whose definitions changed: review, accept or keep denied",
                ),
                (keys.label("insights"), "the last 30 days as charts"),
                (
                    keys.label("planner"),
                    "choose the planner: runbooks or an LLM profile",
                ),
                ("ctrl-c".into(), "cancel the running step; twice to quit"),
                (keys.label("quit"), "quit when idle"),
            ];
            let lines: Vec<Line> = rows
                .into_iter()
                .map(|(k, d)| {
                    Line::from(vec![
                        Span::styled(format!("{k:>10}  "), theme.accent),
                        Span::styled(d, theme.base),
                    ])
                })
                .collect();
            let r = centered(area, 76, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(frame(
                    "keys · esc closes",
                    theme,
                    theme.border_focused,
                )),
                r,
            );
        }
        Modal::Servers => {
            let mut lines = Vec::new();
            for (name, status) in &app.servers {
                let style = match status {
                    ServerStatus::Ready { .. } => theme.ok,
                    ServerStatus::Disabled | ServerStatus::Starting | ServerStatus::Idle { .. } => {
                        theme.muted
                    }
                    _ => theme.error,
                };
                lines.push(Line::from(Span::styled(
                    format!("{name}: {}", status.summary()),
                    style,
                )));
                if let ServerStatus::Failed { stderr, .. } | ServerStatus::Exited { stderr, .. } =
                    status
                {
                    for l in stderr.iter().rev().take(3).rev() {
                        lines.push(Line::from(Span::styled(format!("    {l}"), theme.muted)));
                    }
                }
                for l in app.flagged.get(name).into_iter().flatten() {
                    lines.push(Line::from(Span::styled(format!("    ⚠ {l}"), theme.error)));
                }
                for l in app.server_logs.get(name).into_iter().flatten() {
                    lines.push(Line::from(Span::styled(
                        format!("    log {l}"),
                        theme.muted,
                    )));
                }
            }
            let r = centered(area, 90, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(frame("servers · esc closes", theme, theme.border_focused)),
                r,
            );
        }
        Modal::Planner { selected } => {
            let mut lines = Vec::new();
            for (i, c) in app.planner_choices.iter().enumerate() {
                let current = if c.name == app.planner {
                    " (in use)"
                } else {
                    ""
                };
                let style = if i == *selected {
                    theme.selection
                } else {
                    theme.base
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!(
                            "{} {}{current}",
                            if i == *selected { "›" } else { " " },
                            c.name
                        ),
                        style,
                    ),
                    Span::styled(format!("  {}", c.detail), theme.muted),
                ]));
            }
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                "The choice applies to the next request; plans already made stay as they are.",
                theme.muted,
            )));
            let r = centered(area, 80, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(frame(
                        "planner · ↑↓ choose · enter switches · esc closes",
                        theme,
                        theme.border_focused,
                    )),
                r,
            );
        }
        Modal::History(browser) => super::history::draw(f, area, browser, theme),
        Modal::Tools(list) => super::tools::draw(f, area, list, theme),
        Modal::Ask(view) => super::ask::draw(f, area, view, theme),
        Modal::Reviews { selected } => super::review::draw(f, area, &app.reviews, *selected, theme),
        Modal::Insights(insights) => super::insights::draw(f, area, insights, theme),
        Modal::Pending {
            selected,
            typed,
            error,
        } => super::pending::draw(
            f,
            area,
            &app.pending,
            *selected,
            typed,
            error.as_deref(),
            theme,
        ),
        Modal::StoreFailed => {
            let cause = app
                .store_fault
                .as_ref()
                .map_or_else(|| "the audit log stopped".to_string(), ToString::to_string);
            let r = centered(area, 76, 12);
            f.render_widget(Clear, r);
            let text = vec![
                Line::from(Span::styled(
                    "The audit log can no longer be written.",
                    theme.error,
                )),
                Line::from(""),
                Line::from(Span::styled(cause, theme.base)),
                Line::from(""),
                Line::from(Span::styled(
                    "No further call is made: every call is recorded before it runs. esc/enter closes · q quits",
                    theme.muted,
                )),
            ];
            f.render_widget(
                Paragraph::new(text).wrap(Wrap { trim: false }).block(frame(
                    "audit log stopped",
                    theme,
                    theme.error,
                )),
                r,
            );
        }
        Modal::QuitConfirm => {
            let r = centered(area, 56, 4);
            f.render_widget(Clear, r);
            let text = vec![
                Line::from(Span::styled(
                    "Steps are still running. Quit anyway?",
                    theme.warn,
                )),
                Line::from(Span::styled(
                    "y quits (running calls are cancelled) · any other key stays",
                    theme.muted,
                )),
            ];
            f.render_widget(
                Paragraph::new(text).block(frame("quit", theme, theme.warn)),
                r,
            );
        }
        Modal::Gate {
            step,
            confirm,
            typed,
            error,
        } => {
            let decision = app.state.steps.get(step).and_then(|s| s.decision.as_ref());
            let reason = decision.map(|d| d.reason().to_string()).unwrap_or_default();
            let reason_required = decision
                .and_then(|d| d.gate())
                .is_some_and(|g| g.reason_required);
            let mut lines = vec![
                Line::from(Span::styled(
                    format!("Gated step `{step}`: {reason}."),
                    theme.gated,
                )),
                Line::from(""),
                Line::from(Span::styled("This will run:", theme.base)),
            ];
            if let Some((tool, args)) = &gate_view {
                lines.push(Line::from(Span::styled(
                    format!("  tool    {tool}"),
                    theme.accent,
                )));
                for (k, v) in args {
                    lines.push(Line::from(Span::styled(
                        format!("  {k:<7} {v}"),
                        theme.base,
                    )));
                }
            }
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::styled("Type ", theme.base),
                Span::styled(confirm.clone(), theme.gated),
                Span::styled(
                    if reason_required {
                        " and then why, and press Enter to override · esc cancels"
                    } else {
                        " and press Enter to approve · esc cancels"
                    },
                    theme.base,
                ),
            ]));
            if let Some(e) = error {
                lines.push(Line::from(Span::styled(e.clone(), theme.error)));
            }
            let h = lines.len() as u16 + 5;
            let r = centered(area, 78, h);
            f.render_widget(Clear, r);
            let block = frame("confirm gated step", theme, theme.gated);
            let inner = block.inner(r);
            f.render_widget(block, r);
            let [text_area, input_area] =
                Layout::vertical([Constraint::Min(1), Constraint::Length(3)]).areas(inner);
            f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
            typed.set_block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.gated),
            );
            f.render_widget(&*typed, input_area);
        }
        Modal::Edit {
            step,
            editor,
            error,
        } => {
            let r = centered(area, 80, 20);
            f.render_widget(Clear, r);
            let block = frame(
                &format!("edit arguments of `{step}` · ctrl-s saves · esc cancels"),
                theme,
                theme.border_focused,
            );
            let inner = block.inner(r);
            f.render_widget(block, r);
            let [edit_area, msg_area] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(inner);
            f.render_widget(&*editor, edit_area);
            let msg = match error {
                Some(e) => Line::from(Span::styled(e.clone(), theme.error)),
                None => Line::from(Span::styled(
                    "Saving withdraws any approval: the step must be approved again.",
                    theme.muted,
                )),
            };
            f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: false }), msg_area);
        }
    }
}
