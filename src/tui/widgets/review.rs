//! The review of changed tool definitions: each changed tool with who
//! pinned it and when the change was seen; the selected one's changed
//! lines, removed words in red and added ones in green, hidden characters
//! shown as `⟨U+XXXX⟩`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::runtime::{PinReview, short};
use crate::tui::theme::Theme;

/// Which side of the diff a piece of text is on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Both,
    Old,
    New,
}

/// The diff's lines as (side, text) pieces; a change may span lines.
fn pieces(diff: &str) -> Vec<Vec<(Side, String)>> {
    let mut lines = vec![Vec::new()];
    let mut side = Side::Both;
    let mut text = String::new();
    let mut rest = diff;
    let flush = |lines: &mut Vec<Vec<(Side, String)>>, side: Side, text: &mut String| {
        if !text.is_empty()
            && let Some(line) = lines.last_mut()
        {
            line.push((side, std::mem::take(text)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let marker = [("[-", Side::Old), ("{+", Side::New)]
            .into_iter()
            .find(|(m, _)| side == Side::Both && rest.starts_with(m));
        let closing = match side {
            Side::Old => rest.starts_with("-]"),
            Side::New => rest.starts_with("+}"),
            Side::Both => false,
        };
        if let Some((_, to)) = marker {
            flush(&mut lines, side, &mut text);
            side = to;
            rest = &rest[2..];
        } else if closing {
            flush(&mut lines, side, &mut text);
            side = Side::Both;
            rest = &rest[2..];
        } else if c == '\n' {
            flush(&mut lines, side, &mut text);
            lines.push(Vec::new());
            rest = &rest[1..];
        } else {
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    flush(&mut lines, side, &mut text);
    lines
}

pub fn draw(f: &mut Frame, area: Rect, reviews: &[PinReview], selected: usize, theme: &Theme) {
    let r = super::modal::centered(area, 110, 34);
    f.render_widget(Clear, r);
    let block = super::modal::frame(
        "changed tool definitions · ↑↓ choose · a accepts what is shown · r keeps it denied · esc closes",
        theme,
        theme.gated,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let mut lines = Vec::new();
    if reviews.is_empty() {
        lines.push(Line::from(Span::styled(
            "No tool changed since it was pinned. A server that re-describes a tool shows here, quarantined until reviewed.",
            theme.muted,
        )));
    }
    for (i, review) in reviews.iter().enumerate() {
        let chosen = i == selected;
        let state = match &review.rejected_by {
            Some(by) => format!("rejected by {by}"),
            None => "quarantined until reviewed".into(),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} {} ", if chosen { "›" } else { " " }, review.tool),
                if chosen { theme.selection } else { theme.base },
            ),
            Span::styled(
                format!(
                    "{} → {} · {state}",
                    short(&review.pinned_hash),
                    short(&review.new_hash)
                ),
                theme.warn,
            ),
        ]));
        if !chosen {
            continue;
        }
        lines.push(Line::from(Span::styled(
            format!(
                "    pinned {} by {}; changed definition seen {}",
                review.pinned_at, review.pinned_by, review.seen_at
            ),
            theme.muted,
        )));
        let removed = theme.error.add_modifier(Modifier::CROSSED_OUT);
        let added = theme.ok.add_modifier(Modifier::BOLD);
        let all = pieces(&review.diff);
        let shown = all
            .iter()
            .filter(|l| l.iter().any(|(s, _)| *s != Side::Both))
            .count();
        for line in all
            .iter()
            .filter(|l| l.iter().any(|(s, _)| *s != Side::Both))
        {
            let mut spans = vec![Span::raw("    ")];
            spans.extend(line.iter().map(|(side, text)| {
                // The marks stay with the colours: a plain terminal, or a
                // reader who cannot tell red from green, still sees which.
                match side {
                    Side::Both => Span::styled(text.clone(), theme.base),
                    Side::Old => Span::styled(format!("[-{text}-]"), removed),
                    Side::New => Span::styled(format!("{{+{text}+}}"), added),
                }
            }));
            lines.push(Line::from(spans));
        }
        lines.push(Line::from(Span::styled(
            format!(
                "    {shown} changed line{} of {}",
                if shown == 1 { "" } else { "s" },
                all.len()
            ),
            theme.muted,
        )));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_split_by_side_across_lines() {
        let p = pieces("a [-old-]{+new\nmore+} b");
        assert_eq!(
            p,
            vec![
                vec![
                    (Side::Both, "a ".to_string()),
                    (Side::Old, "old".to_string()),
                    (Side::New, "new".to_string())
                ],
                vec![
                    (Side::New, "more".to_string()),
                    (Side::Both, " b".to_string())
                ],
            ]
        );
    }
}
