//! The panes, each drawn from the app's view state.

pub mod ask;
pub mod audit;
pub mod chat;
pub mod history;
pub mod insights;
pub mod modal;
pub mod pending;
pub mod plan;
pub mod review;
pub mod status;
pub mod tools;

use ratatui::widgets::{Block, BorderType, Borders};

use super::theme::Theme;

/// One frame of the busy spinner per tick.
pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub fn pane<'a>(title: String, focused: bool, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(if focused {
            theme.border_focused
        } else {
            theme.border
        })
        .title(title)
}
