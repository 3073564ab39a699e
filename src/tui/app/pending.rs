//! The pending-approvals list: calls from `opsbot serve` clients that wait
//! for a person. Approving or refusing is the runtime's business; this
//! keeps the choice and what was typed.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;

use super::{App, Intent, Modal};

fn typed_field() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text("a gated call: type its target (and why, for a freeze)");
    t.set_cursor_line_style(ratatui::style::Style::new());
    t
}

impl App {
    pub(super) fn open_pending(&mut self) {
        self.modal = Some(Modal::Pending {
            selected: 0,
            typed: typed_field(),
            error: None,
        });
    }

    pub(super) fn on_pending_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let n = self.pending.len();
        let Some(Modal::Pending {
            selected,
            typed,
            error,
        }) = self.modal.as_mut()
        else {
            return None;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        *selected = (*selected).min(n.saturating_sub(1));
        let chosen = self.pending.get(*selected);
        match key.code {
            KeyCode::Esc => self.modal = None,
            KeyCode::Up => {
                *selected = selected.saturating_sub(1);
                *typed = typed_field();
            }
            KeyCode::Down => {
                *selected = (*selected + 1).min(n.saturating_sub(1));
                *typed = typed_field();
            }
            KeyCode::Enter => {
                let p = chosen?;
                *error = None;
                return Some(Intent::ApprovePending {
                    session: p.session.clone(),
                    step: p.step.clone(),
                    typed: typed.lines().join(" "),
                });
            }
            KeyCode::Char('x') if ctrl => {
                let p = chosen?;
                return Some(Intent::RefusePending {
                    session: p.session.clone(),
                    step: p.step.clone(),
                });
            }
            _ => {
                typed.input(key);
            }
        }
        None
    }
}
