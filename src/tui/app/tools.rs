//! The tool list (`/tools [words]`): every tool the planner can use,
//! filtered as you type; Enter starts a `/call` for the chosen one.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, Intent, Modal};
use crate::mcp::Catalog;

/// One tool as the list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRow {
    pub name: String,
    pub kind: &'static str,
    pub description: String,
    /// The arguments, required ones first and marked.
    pub args: String,
}

impl ToolRow {
    pub fn all(catalog: &Catalog) -> Vec<ToolRow> {
        catalog
            .iter()
            .map(|t| {
                let a = t.annotations;
                let kind = if a.read_only {
                    "read-only"
                } else if a.destructive {
                    "destructive"
                } else {
                    "changes state"
                };
                let required: Vec<&str> = t
                    .input_schema
                    .get("required")
                    .and_then(|r| r.as_array())
                    .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                let mut args: Vec<String> = required.iter().map(|r| format!("{r}*")).collect();
                if let Some(props) = t.input_schema.get("properties").and_then(|p| p.as_object()) {
                    args.extend(
                        props
                            .keys()
                            .filter(|k| !required.contains(&k.as_str()))
                            .cloned(),
                    );
                }
                ToolRow {
                    name: t.qualified(),
                    kind,
                    description: t.description.lines().next().unwrap_or_default().to_string(),
                    args: args.join(" "),
                }
            })
            .collect()
    }

    fn matches(&self, words: &[String]) -> bool {
        let hay = format!("{} {} {}", self.name, self.description, self.args).to_lowercase();
        words.iter().all(|w| hay.contains(w.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolList {
    pub rows: Vec<ToolRow>,
    pub query: String,
    pub selected: usize,
}

impl ToolList {
    /// The rows the query matches, in catalog order.
    pub fn shown(&self) -> Vec<&ToolRow> {
        let words: Vec<String> = self
            .query
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        self.rows.iter().filter(|r| r.matches(&words)).collect()
    }
}

impl App {
    pub fn open_tools(&mut self, rows: Vec<ToolRow>, query: &str) {
        self.modal = Some(Modal::Tools(ToolList {
            rows,
            query: query.to_string(),
            selected: 0,
        }));
    }

    pub(super) fn on_tools_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let Some(Modal::Tools(list)) = self.modal.as_mut() else {
            return None;
        };
        let n = list.shown().len();
        match key.code {
            KeyCode::Esc => self.modal = None,
            KeyCode::Up => list.selected = list.selected.saturating_sub(1),
            KeyCode::Down => list.selected = (list.selected + 1).min(n.saturating_sub(1)),
            KeyCode::Backspace => {
                list.query.pop();
                list.selected = 0;
            }
            KeyCode::Enter => {
                let chosen = list.shown().get(list.selected).map(|r| r.name.clone());
                self.modal = None;
                if let Some(tool) = chosen {
                    self.input = super::new_input();
                    self.input.insert_str(format!("/call {tool} "));
                    self.focus = super::Pane::Input;
                }
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                list.query.push(c);
                list.selected = 0;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, description: &str) -> ToolRow {
        ToolRow {
            name: name.into(),
            kind: "read-only",
            description: description.into(),
            args: String::new(),
        }
    }

    #[test]
    fn every_word_must_match_name_or_description() {
        let list = ToolList {
            rows: vec![
                row("k8s.deploy", "Roll out an image"),
                row("k8s.status", "What runs where"),
                row("git.git_status", "Shows the working tree status"),
            ],
            query: "STATUS tree".into(),
            selected: 0,
        };
        let shown: Vec<&str> = list.shown().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(shown, vec!["git.git_status"]);
    }
}
