//! The review of changed tool definitions: choose one, read what changed,
//! accept exactly what is shown or keep it denied. Accepting and rejecting
//! are the runtime's business; this keeps the choice.

use crossterm::event::{KeyCode, KeyEvent};

use super::{App, Intent, Modal};

impl App {
    /// Show the reviews the screen loaded from the store.
    pub fn open_reviews(&mut self, reviews: Vec<crate::runtime::PinReview>) {
        self.reviews = reviews;
        let selected = match &self.modal {
            Some(Modal::Reviews { selected }) => *selected,
            _ => 0,
        };
        self.modal = Some(Modal::Reviews {
            selected: selected.min(self.reviews.len().saturating_sub(1)),
        });
    }

    pub(super) fn on_review_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let n = self.reviews.len();
        let Some(Modal::Reviews { selected }) = self.modal.as_mut() else {
            return None;
        };
        *selected = (*selected).min(n.saturating_sub(1));
        let chosen = self.reviews.get(*selected);
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => self.modal = None,
            KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                *selected = (*selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Char('a') => {
                let r = chosen?;
                return Some(Intent::AcceptPin {
                    tool: r.tool.clone(),
                    hash: crate::runtime::short(&r.new_hash).to_string(),
                });
            }
            KeyCode::Char('r') => {
                let r = chosen?;
                return Some(Intent::RejectPin {
                    tool: r.tool.clone(),
                });
            }
            _ => {}
        }
        None
    }
}
