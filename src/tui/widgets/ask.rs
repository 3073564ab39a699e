//! A server's question: the form with each field's kind, default and what
//! was typed, the link to visit, or the sampling request to allow. Every
//! string came from a server and is cleaned before it is drawn.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::modal::{centered, frame};
use crate::ask::{Kind, Question};
use crate::sanitize::clean;
use crate::tui::app::asking::AskView;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, view: &AskView, theme: &Theme) {
    let server = clean(&view.ask.server);
    let mut lines: Vec<Line> = Vec::new();
    let (title, keys) = match &view.ask.question {
        Question::Form { message, form } => {
            lines.push(Line::styled(clean(message), theme.base));
            lines.push(Line::raw(""));
            for (i, field) in form.fields.iter().enumerate() {
                let here = i == view.selected;
                let marker = if here { "▸ " } else { "  " };
                let typed = view.inputs.get(i).map(String::as_str).unwrap_or_default();
                let mut spans = vec![
                    Span::styled(marker, theme.accent),
                    Span::styled(
                        format!(
                            "{}{}",
                            clean(field.label()),
                            if field.required { "*" } else { "" }
                        ),
                        if here { theme.accent } else { theme.base },
                    ),
                    Span::styled(format!(" ({}) ", clean(&field.hint())), theme.muted),
                    Span::styled(
                        format!("{}{}", clean(typed), if here { "▏" } else { "" }),
                        theme.base,
                    ),
                ];
                if let Kind::Choice { multi: false, .. } | Kind::Bool = field.kind
                    && here
                {
                    spans.push(Span::styled("  ←/→", theme.muted));
                }
                lines.push(Line::from(spans));
                if here && let Some(d) = &field.description {
                    lines.push(Line::styled(format!("    {}", clean(d)), theme.muted));
                }
            }
            for p in &view.problems {
                lines.push(Line::styled(format!("✗ {}", clean(p)), theme.error));
            }
            (
                format!("{server} asks"),
                "enter send · tab next field · esc decline · ctrl-x cancel the call",
            )
        }
        Question::Url { message, url } => {
            lines.push(Line::styled(clean(message), theme.base));
            lines.push(Line::raw(""));
            lines.push(Line::styled(clean(url), theme.accent));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "Check where the link goes before you open it.",
                theme.muted,
            ));
            (
                format!("{server} asks you to open a link"),
                "o open in browser · enter done · esc decline",
            )
        }
        Question::Sample(r) => {
            lines.push(Line::styled(
                format!(
                    "Run the model `{}` (profile `{}`) for this server, at most {} tokens:",
                    clean(&r.model),
                    clean(&r.profile),
                    r.max_tokens
                ),
                theme.base,
            ));
            if let Some(system) = &r.system {
                lines.push(Line::styled(
                    format!("system: {}", clean(&crate::text::truncate(system, 300))),
                    theme.muted,
                ));
            }
            for (role, text) in &r.messages {
                lines.push(Line::styled(
                    format!(
                        "{}: {}",
                        clean(role),
                        clean(&crate::text::truncate(text, 300))
                    ),
                    theme.base,
                ));
            }
            if let Some(p) = &r.preferences {
                lines.push(Line::styled(
                    format!("model preferences: {}", clean(p)),
                    theme.muted,
                ));
            }
            (
                format!("{server} asks to use the model"),
                "y allow · n/esc decline",
            )
        }
    };
    lines.push(Line::raw(""));
    lines.push(Line::styled(keys, theme.muted));
    let height = u16::try_from(lines.len() + 4).unwrap_or(u16::MAX);
    let r = centered(area, 84, height);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame(&title, theme, theme.border_focused)),
        r,
    );
}
