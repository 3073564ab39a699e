//! A server's question in the app: the form being filled in (one text per
//! field, read and checked by the core's `ask::Form`), a link to visit, or
//! a sampling request to allow. Questions arrive while anything else is
//! on screen; they wait in a queue until no other overlay is open.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;

use super::{App, Intent, Modal};
use crate::ask::{Ask, Kind, Question, Reply};

/// The question on screen and what has been typed into it.
pub struct AskView {
    pub ask: Ask,
    /// One text per form field, starting with its default.
    pub inputs: Vec<String>,
    pub selected: usize,
    /// What is wrong with the answer, after Enter.
    pub problems: Vec<String>,
}

impl AskView {
    fn new(ask: Ask) -> Self {
        let inputs = match &ask.question {
            Question::Form { form, .. } => form
                .fields
                .iter()
                .map(|f| {
                    f.default
                        .as_ref()
                        .map(crate::ask::form::typed)
                        .unwrap_or_default()
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            ask,
            inputs,
            selected: 0,
            problems: Vec::new(),
        }
    }

    /// The form's answer from what was typed, or every problem with it.
    fn answer(&self) -> Result<serde_json::Map<String, Value>, Vec<String>> {
        let Question::Form { form, .. } = &self.ask.question else {
            return Ok(Default::default());
        };
        let mut values = Vec::with_capacity(form.fields.len());
        let mut problems = Vec::new();
        for (field, typed) in form.fields.iter().zip(&self.inputs) {
            match field.read(typed) {
                Ok(v) => values.push(v),
                Err(e) => {
                    problems.push(format!("{}: {e}", field.label()));
                    values.push(None);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        form.answer(&values)
            .map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    /// Space on a yes/no field flips it; ←/→ on a choice moves through
    /// the choices. True when the key was used.
    fn step_value(&mut self, key: &KeyEvent) -> bool {
        let Question::Form { form, .. } = &self.ask.question else {
            return false;
        };
        let Some(field) = form.fields.get(self.selected) else {
            return false;
        };
        let Some(text) = self.inputs.get_mut(self.selected) else {
            return false;
        };
        match (&field.kind, key.code) {
            (Kind::Bool, KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right) => {
                let yes = matches!(field.read(text), Ok(Some(Value::Bool(true))));
                *text = if yes { "no".into() } else { "yes".into() };
                true
            }
            (
                Kind::Choice {
                    options,
                    multi: false,
                    ..
                },
                KeyCode::Left | KeyCode::Right,
            ) if !options.is_empty() => {
                let now = options.iter().position(|c| c.value == *text);
                let n = options.len();
                let next = match (now, key.code) {
                    (None, _) => 0,
                    (Some(i), KeyCode::Right) => (i + 1) % n,
                    (Some(i), _) => (i + n - 1) % n,
                };
                *text = options[next].value.clone();
                true
            }
            _ => false,
        }
    }
}

impl App {
    /// A server asks: shown now if nothing else is open, else queued.
    pub fn on_ask(&mut self, ask: Ask) {
        self.asks.push_back(ask);
        self.show_next_ask();
    }

    /// Put the next waiting question on screen when no overlay is open;
    /// questions whose server stopped waiting are dropped with a note.
    pub fn show_next_ask(&mut self) {
        if self.modal.is_some() {
            return;
        }
        while let Some(ask) = self.asks.pop_front() {
            if ask.is_stale() {
                self.flash = Some((
                    format!("`{}` stopped waiting for an answer", ask.server),
                    false,
                ));
                continue;
            }
            self.modal = Some(Modal::Ask(Box::new(AskView::new(ask))));
            return;
        }
    }

    fn answer_ask(&mut self, reply: Reply) {
        if let Some(Modal::Ask(view)) = self.modal.take() {
            view.ask.answer(reply);
        }
        self.show_next_ask();
    }

    pub(super) fn on_ask_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let Some(Modal::Ask(view)) = self.modal.as_mut() else {
            return None;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if view.ask.is_stale() {
            self.flash = Some((
                format!("`{}` stopped waiting for an answer", view.ask.server),
                false,
            ));
            self.modal = None;
            self.show_next_ask();
            return None;
        }
        if key.code == KeyCode::Esc {
            self.answer_ask(Reply::Decline("declined in the app".into()));
            return None;
        }
        if ctrl && key.code == KeyCode::Char('x') {
            self.answer_ask(Reply::Cancel);
            return None;
        }
        match &view.ask.question {
            Question::Url { url, .. } => match key.code {
                KeyCode::Char('o') => {
                    let url = url.clone();
                    self.flash = Some(if crate::ask::open_link(&url) {
                        (
                            "opened in your browser; press Enter when done".into(),
                            false,
                        )
                    } else {
                        ("cannot open it here: copy the link".into(), true)
                    });
                }
                KeyCode::Enter => self.answer_ask(Reply::Accept(Default::default())),
                _ => {}
            },
            Question::Sample(_) => match key.code {
                KeyCode::Char('y') | KeyCode::Enter => {
                    self.answer_ask(Reply::Accept(Default::default()))
                }
                KeyCode::Char('n') => self.answer_ask(Reply::Decline("declined in the app".into())),
                _ => {}
            },
            Question::Form { form, .. } => {
                let n = form.fields.len();
                match key.code {
                    KeyCode::Enter => match view.answer() {
                        Ok(values) => self.answer_ask(Reply::Accept(values)),
                        Err(problems) => view.problems = problems,
                    },
                    KeyCode::Tab | KeyCode::Down => {
                        view.selected = (view.selected + 1) % n.max(1);
                    }
                    KeyCode::BackTab | KeyCode::Up => {
                        view.selected = (view.selected + n.max(1) - 1) % n.max(1);
                    }
                    _ if view.step_value(&key) => {}
                    KeyCode::Backspace => {
                        if let Some(t) = view.inputs.get_mut(view.selected) {
                            t.pop();
                        }
                    }
                    KeyCode::Char(c) if !ctrl => {
                        if let Some(t) = view.inputs.get_mut(view.selected) {
                            t.push(c);
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }

    pub(super) fn on_ask_paste(&mut self, text: &str) {
        if let Some(Modal::Ask(view)) = self.modal.as_mut()
            && let Some(t) = view.inputs.get_mut(view.selected)
        {
            t.push_str(&text.replace('\n', " "));
        }
    }
}
