//! What keys mean, pane by pane and in each overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;
use serde_json::Value;

use super::{App, Intent, Modal, Pane, new_input, pretty};

impl App {
    /// Handle a key; returns what the user asked for.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return self.on_ctrl_c();
        }
        self.ctrl_c_armed = false;
        if self.modal.is_some() {
            return self.on_modal_key(key);
        }
        if self.read_only
            && let Some(handled) = self.on_replay_key(key)
        {
            return handled;
        }
        if self.focus == Pane::Input {
            return self.on_input_key(key);
        }
        let k = &self.keys;
        if self.planning.is_some() && k.is("cancel_run", &key) {
            self.flash = Some(("cancelling planning".into(), false));
            return Some(Intent::CancelPlanning);
        }
        if k.is("help", &key) {
            self.modal = Some(Modal::Help);
        } else if k.is("servers", &key) {
            self.modal = Some(Modal::Servers);
        } else if k.is("history", &key) {
            return Some(self.open_history());
        } else if k.is("pending", &key) {
            self.open_pending();
        } else if k.is("review", &key) {
            return Some(Intent::Reviews);
        } else if k.is("insights", &key) {
            return Some(Intent::Insights);
        } else if k.is("planner", &key) {
            if self.read_only {
                self.flash = Some(("a replay cannot change the planner".into(), true));
            } else {
                let selected = self
                    .planner_choices
                    .iter()
                    .position(|c| c.name == self.planner)
                    .unwrap_or(0);
                self.modal = Some(Modal::Planner { selected });
            }
        } else if k.is("next_pane", &key) {
            self.cycle_focus(true);
        } else if k.is("prev_pane", &key) {
            self.cycle_focus(false);
        } else if k.is("input", &key) || key.code == KeyCode::Esc {
            self.focus = Pane::Input;
        } else if k.is("quit", &key) {
            return self.ask_quit();
        } else {
            return match self.focus {
                Pane::Plan => self.on_plan_key(key),
                Pane::Chat => {
                    self.chat_scroll = scroll(self.chat_scroll, key.code);
                    None
                }
                Pane::Audit => {
                    if self.keys.is("filter", &key) {
                        self.audit_filter = self.audit_filter.next();
                        self.audit_scroll = 0;
                    } else {
                        self.audit_scroll = scroll(self.audit_scroll, key.code);
                    }
                    None
                }
                Pane::Input => None,
            };
        }
        None
    }

    /// Whether plain characters typed now go into the input box.
    pub fn takes_typing(&self) -> bool {
        self.modal.is_none() && !self.read_only && self.focus == Pane::Input
    }

    /// Characters typed into the input box, in one insertion.
    pub fn type_str(&mut self, text: &str) {
        self.flash = None;
        self.ctrl_c_armed = false;
        self.history_pos = None;
        self.input.insert_str(text);
    }

    /// A bracketed paste: the whole text at once, into the field that has
    /// the focus (the input box when a pane does). One insertion, so a
    /// megabyte costs what its length costs.
    pub fn on_paste(&mut self, text: &str) -> Option<Intent> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let one_line = || text.replace('\n', " ");
        match self.modal.as_mut() {
            Some(Modal::Edit { editor, .. }) => {
                editor.insert_str(&text);
                None
            }
            Some(Modal::Gate { typed, .. }) | Some(Modal::Pending { typed, .. }) => {
                typed.insert_str(one_line());
                None
            }
            Some(Modal::Tools(list)) => {
                list.query.push_str(&one_line());
                list.selected = 0;
                None
            }
            Some(Modal::History(browser)) => {
                browser.query.insert_str(one_line());
                Some(Intent::SearchHistory(browser.text()))
            }
            Some(Modal::Ask(_)) => {
                self.on_ask_paste(&text);
                None
            }
            Some(_) => None,
            None if self.read_only => None,
            None => {
                self.focus = Pane::Input;
                self.input.insert_str(&text);
                None
            }
        }
    }

    fn ask_quit(&mut self) -> Option<Intent> {
        // After a store fault nothing runs, whatever the plan shows.
        if self.running() && self.store_fault.is_none() {
            self.modal = Some(Modal::QuitConfirm);
            None
        } else {
            self.quit = true;
            Some(Intent::Quit)
        }
    }

    /// Ctrl-C: cancel the running step first; again, quit (confirming if
    /// steps still run). With nothing running it clears the input, then quits.
    fn on_ctrl_c(&mut self) -> Option<Intent> {
        if self.ctrl_c_armed {
            self.ctrl_c_armed = false;
            return self.ask_quit();
        }
        self.ctrl_c_armed = true;
        if self.modal.take().is_some() {
            return None;
        }
        if self.planning.is_some() {
            self.flash = Some(("cancelling planning · Ctrl-C again to quit".into(), false));
            return Some(Intent::CancelPlanning);
        }
        if self.running() {
            self.flash = Some((
                "cancelling the running step · Ctrl-C again to quit".into(),
                false,
            ));
            return Some(Intent::CancelRunning);
        }
        if !self.input.is_empty() {
            self.input = new_input();
            return None;
        }
        self.flash = Some(("Ctrl-C again to quit".into(), false));
        None
    }

    fn on_input_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('r') if ctrl => return Some(self.open_history()),
            KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.input.insert_newline();
            }
            KeyCode::Enter => {
                let text = self.input.lines().join("\n").trim().to_string();
                if text.is_empty() {
                    return None;
                }
                if let Some(intent) = slash_command(&text) {
                    self.history.push(text.clone());
                    self.history_pos = None;
                    self.input = new_input();
                    return Some(intent);
                }
                // Refused before it leaves the box, so nothing typed is lost.
                if let Err(e) = crate::runtime::check_request(&text) {
                    self.flash = Some((e.to_string(), true));
                    return None;
                }
                if self.history.last() != Some(&text) {
                    self.history.push(text.clone());
                }
                self.history_pos = None;
                self.input = new_input();
                self.chat_scroll = 0;
                return Some(Intent::Submit(text));
            }
            KeyCode::Up if self.input.lines().len() <= 1 && !self.history.is_empty() => {
                let pos = self
                    .history_pos
                    .map_or(self.history.len() - 1, |p| p.saturating_sub(1));
                self.recall(Some(pos));
            }
            KeyCode::Down if self.input.lines().len() <= 1 && self.history_pos.is_some() => {
                let next = self
                    .history_pos
                    .map(|p| p + 1)
                    .filter(|p| *p < self.history.len());
                self.recall(next);
            }
            KeyCode::Tab | KeyCode::BackTab => self.cycle_focus(key.code == KeyCode::Tab),
            KeyCode::Esc => self.focus = Pane::Plan,
            KeyCode::PageUp | KeyCode::PageDown => {
                self.chat_scroll = scroll(self.chat_scroll, key.code)
            }
            _ => {
                self.input.input(key);
            }
        }
        None
    }

    fn recall(&mut self, pos: Option<usize>) {
        self.history_pos = pos;
        let text = pos
            .and_then(|p| self.history.get(p))
            .cloned()
            .unwrap_or_default();
        self.input = new_input();
        self.input.insert_str(text);
    }

    fn on_plan_key(&mut self, key: KeyEvent) -> Option<Intent> {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_selection(-1);
                return None;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_selection(1);
                return None;
            }
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.move_selection(isize::MAX / 2),
            _ => {}
        }
        if self.read_only {
            return None;
        }
        let step = self.selected_step()?.clone();
        let st = self.state.steps.get(&step.id);
        let gate = st
            .and_then(|s| s.decision.as_ref())
            .and_then(|d| d.gate())
            .cloned();
        let k = &self.keys;
        if k.is("approve", &key) || k.is("approve_remember", &key) {
            let remember = k.is("approve_remember", &key);
            if let Some(gate) = gate {
                if remember {
                    self.flash = Some(("gated steps are never trusted automatically".into(), true));
                }
                let mut typed = TextArea::default();
                typed.set_placeholder_text(if gate.reason_required {
                    format!("type {} and then why", gate.confirm)
                } else {
                    format!("type {}", gate.confirm)
                });
                self.modal = Some(Modal::Gate {
                    step: step.id,
                    confirm: gate.confirm,
                    typed,
                    error: None,
                });
                return None;
            }
            return Some(Intent::Approve {
                step: step.id,
                remember,
            });
        }
        if k.is("approve_ready", &key) {
            return Some(Intent::ApproveReady);
        }
        if k.is("skip", &key) {
            return Some(Intent::Skip(step.id));
        }
        if k.is("reject", &key) {
            return Some(Intent::Reject);
        }
        if k.is("cancel_run", &key) {
            return Some(Intent::CancelRun);
        }
        if k.is("cancel", &key) {
            return Some(Intent::CancelStep(step.id));
        }
        if k.is("edit", &key) {
            let mut editor = TextArea::from(
                pretty(&step.args)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
            editor.set_cursor_line_style(ratatui::style::Style::new());
            self.modal = Some(Modal::Edit {
                step: step.id,
                editor,
                error: None,
            });
        }
        None
    }

    fn on_modal_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let modal = self.modal.as_mut()?;
        match modal {
            Modal::StoreFailed => {
                if matches!(key.code, KeyCode::Char('q')) {
                    self.quit = true;
                    return Some(Intent::Quit);
                }
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
                    self.modal = None;
                }
                None
            }
            Modal::Help | Modal::Servers => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q'))
                    || self.keys.is("help", &key)
                    || self.keys.is("servers", &key)
                {
                    self.modal = None;
                }
                None
            }
            Modal::Planner { selected } => {
                let n = self.planner_choices.len();
                match key.code {
                    KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        *selected = (*selected + 1).min(n.saturating_sub(1))
                    }
                    KeyCode::Enter => {
                        let choice = self.planner_choices.get(*selected).cloned();
                        self.modal = None;
                        return choice
                            .filter(|c| c.name != self.planner)
                            .map(|c| Intent::SwitchPlanner(c.profile));
                    }
                    _ if key.code == KeyCode::Esc || self.keys.is("planner", &key) => {
                        self.modal = None
                    }
                    _ => {}
                }
                None
            }
            Modal::History(_) => self.on_history_key(key),
            Modal::Tools(_) => self.on_tools_key(key),
            Modal::Pending { .. } => self.on_pending_key(key),
            Modal::Reviews { .. } => self.on_review_key(key),
            Modal::Insights(_) => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter) {
                    self.modal = None;
                }
                None
            }
            Modal::Ask(_) => self.on_ask_key(key),
            Modal::QuitConfirm => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.quit = true;
                    Some(Intent::Quit)
                }
                _ => {
                    self.modal = None;
                    None
                }
            },
            Modal::Gate { step, typed, .. } => match key.code {
                KeyCode::Esc => {
                    self.modal = None;
                    None
                }
                KeyCode::Enter => Some(Intent::Confirm {
                    step: step.clone(),
                    typed: typed.lines().join(""),
                }),
                _ => {
                    typed.input(key);
                    None
                }
            },
            Modal::Edit {
                step,
                editor,
                error,
            } => {
                let save =
                    key.code == KeyCode::Char('s') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.code == KeyCode::Esc {
                    self.modal = None;
                    return None;
                }
                if save {
                    let text = editor.lines().join("\n");
                    return match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Object(args)) => Some(Intent::Edit {
                            step: step.clone(),
                            args,
                        }),
                        Ok(_) => {
                            *error = Some("the arguments must be a JSON object".into());
                            None
                        }
                        Err(e) => {
                            *error = Some(format!("not valid JSON: {e}"));
                            None
                        }
                    };
                }
                editor.input(key);
                None
            }
        }
    }
}

fn scroll(current: usize, code: KeyCode) -> usize {
    match code {
        KeyCode::Up | KeyCode::Char('k') => current + 1,
        KeyCode::Down | KeyCode::Char('j') => current.saturating_sub(1),
        KeyCode::PageUp => current + 10,
        KeyCode::PageDown => current.saturating_sub(10),
        KeyCode::Home => usize::MAX / 2,
        KeyCode::End => 0,
        _ => current,
    }
}

/// `/call …` and `/tools …` typed in the input box; anything else is a
/// request.
fn slash_command(text: &str) -> Option<Intent> {
    let text = text.trim();
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    match word {
        "/call" => Some(Intent::Call(rest.trim().to_string())),
        "/tools" => Some(Intent::Tools(rest.trim().to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::plan::{Plan, Step};
    use crate::tui::keymap::KeyMap;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use std::collections::BTreeMap;

    use crate::session::test_record as record;

    fn app_with_running_step() -> App {
        let mut app = App::new(
            KeyMap::new(&BTreeMap::new()),
            "s".into(),
            "runbook".into(),
            "step".into(),
        );
        let step = Step::new("build", "ci.build", Map::new());
        app.apply(&record(
            1,
            Event::PlanProposed {
                plan: Plan {
                    title: "t".into(),
                    steps: vec![step],
                },
                defs: Default::default(),
                influenced_by: Vec::new(),
            },
        ));
        app.apply(&record(
            2,
            Event::StepStarted {
                step: StepId::new("build"),
                tool: "ci.build".into(),
                args: Map::new(),
            },
        ));
        app
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    #[test]
    fn ctrl_c_cancels_the_running_step_first_then_asks_before_quitting() {
        let mut app = app_with_running_step();
        assert_eq!(app.on_key(ctrl('c')), Some(Intent::CancelRunning));
        assert_eq!(app.on_key(ctrl('c')), None);
        assert!(
            matches!(app.modal, Some(Modal::QuitConfirm)),
            "steps still run: confirm"
        );
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), Some(Intent::Quit));
        assert!(app.quit);
    }

    #[test]
    fn x_cancels_the_selected_step_and_shift_x_the_run() {
        let mut app = app_with_running_step();
        app.focus = Pane::Plan;
        assert_eq!(
            app.on_key(key(KeyCode::Char('x'))),
            Some(Intent::CancelStep(StepId::new("build")))
        );
        assert_eq!(app.on_key(key(KeyCode::Char('X'))), Some(Intent::CancelRun));
    }

    #[test]
    fn ctrl_c_when_idle_clears_the_input_then_quits() {
        let mut app = App::new(
            KeyMap::new(&BTreeMap::new()),
            "s".into(),
            "r".into(),
            "step".into(),
        );
        app.input.insert_str("half a request");
        assert_eq!(app.on_key(ctrl('c')), None);
        assert!(app.input.is_empty());
        assert_eq!(app.on_key(ctrl('c')), Some(Intent::Quit));
    }

    #[test]
    fn enter_sends_alt_enter_adds_a_line_and_up_recalls() {
        let mut app = App::new(
            KeyMap::new(&BTreeMap::new()),
            "s".into(),
            "r".into(),
            "step".into(),
        );
        for c in "deploy".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        for c in "now".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Intent::Submit("deploy\nnow".into()))
        );
        assert!(app.input.is_empty());
        app.on_key(key(KeyCode::Char('x')));
        app.input = new_input();
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.input.lines().join("\n"), "deploy\nnow");
    }

    #[test]
    fn the_editor_refuses_what_is_not_a_json_object() {
        let mut app = app_with_running_step();
        app.focus = Pane::Plan;
        app.on_key(key(KeyCode::Char('e')));
        let Some(Modal::Edit { editor, .. }) = app.modal.as_mut() else {
            panic!("editor expected")
        };
        editor.select_all();
        editor.cut();
        editor.insert_str("[1, 2]");
        assert_eq!(app.on_key(ctrl('s')), None);
        let Some(Modal::Edit { error, editor, .. }) = app.modal.as_mut() else {
            panic!("still open")
        };
        assert_eq!(
            error.as_deref(),
            Some("the arguments must be a JSON object")
        );
        editor.select_all();
        editor.cut();
        editor.insert_str("{\"service\": \"search\"}");
        let intent = app.on_key(ctrl('s'));
        assert!(
            matches!(intent, Some(Intent::Edit { ref args, .. }) if args["service"] == "search"),
            "{intent:?}"
        );
    }
}
