//! The history browser: a search box over past sessions, and the keys of a
//! read-only replay. Searching and loading are the event loop's job; this
//! only keeps what the user typed and chose.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;

use super::{App, Intent, Modal, Pane};
use crate::session::Found;

/// How many sessions the browser lists for one query.
pub const LIST_LIMIT: usize = 100;

pub struct HistoryBrowser {
    pub query: TextArea<'static>,
    pub found: Vec<Found>,
    pub selected: usize,
    /// Why the last search failed, shown in place of the list.
    pub error: Option<String>,
    /// Whether the list answers the query as typed (false while a search
    /// for newer text is on its way).
    pub current: bool,
    /// The live session, marked in the list.
    pub here: String,
}

impl HistoryBrowser {
    fn new(here: String) -> Self {
        let mut query = TextArea::default();
        query.set_placeholder_text("type to search requests, tools, arguments, results");
        query.set_cursor_line_style(ratatui::style::Style::new());
        Self {
            query,
            found: Vec::new(),
            selected: 0,
            error: None,
            current: false,
            here,
        }
    }

    pub fn text(&self) -> String {
        self.query.lines().join(" ")
    }

    pub fn chosen(&self) -> Option<&Found> {
        self.found.get(self.selected)
    }
}

impl App {
    /// Open the browser; the loop answers the returned search.
    pub fn open_history(&mut self) -> Intent {
        let browser = HistoryBrowser::new(self.session_id.clone());
        let search = Intent::SearchHistory(browser.text());
        self.modal = Some(Modal::History(browser));
        search
    }

    /// The loop's answer to `Intent::SearchHistory(query)`. An answer to
    /// text the user has since changed is dropped: a newer search follows.
    pub fn show_found(&mut self, query: &str, result: Result<Vec<Found>, String>) {
        let Some(Modal::History(b)) = self.modal.as_mut() else {
            return;
        };
        if b.text() != query {
            return;
        }
        b.current = true;
        match result {
            Ok(found) => {
                let keep = b.chosen().map(|f| f.id.clone());
                b.selected = keep
                    .and_then(|id| found.iter().position(|f| f.id == id))
                    .unwrap_or(0);
                b.found = found;
                b.error = None;
            }
            Err(e) => {
                b.found.clear();
                b.error = Some(e);
            }
        }
    }

    pub(super) fn on_history_key(&mut self, key: KeyEvent) -> Option<Intent> {
        let Some(Modal::History(b)) = self.modal.as_mut() else {
            return None;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let last = b.found.len().saturating_sub(1);
        match key.code {
            KeyCode::Esc => {
                self.modal = None;
                None
            }
            KeyCode::Up => {
                b.selected = b.selected.saturating_sub(1);
                None
            }
            KeyCode::Char('p') if ctrl => {
                b.selected = b.selected.saturating_sub(1);
                None
            }
            KeyCode::Down => {
                b.selected = (b.selected + 1).min(last);
                None
            }
            // Ctrl-R steps to older matches, as in a shell's history search.
            KeyCode::Char('n') | KeyCode::Char('r') if ctrl => {
                b.selected = (b.selected + 1).min(last);
                None
            }
            KeyCode::PageUp => {
                b.selected = b.selected.saturating_sub(10);
                None
            }
            KeyCode::PageDown => {
                b.selected = (b.selected + 10).min(last);
                None
            }
            // Re-running starts from the replay, where the plan is in view.
            KeyCode::Enter => b.chosen().map(|f| Intent::OpenSession(f.id.to_string())),
            _ => {
                let before = b.text();
                b.query.input(key);
                let after = b.text();
                if after == before {
                    return None;
                }
                b.current = false;
                Some(Intent::SearchHistory(after))
            }
        }
    }

    /// Keys of a read-only replay: go back, re-run, or (`None`) look
    /// around with the usual pane keys.
    pub(super) fn on_replay_key(&mut self, key: KeyEvent) -> Option<Option<Intent>> {
        let k = &self.keys;
        if key.code == KeyCode::Esc || k.is("quit", &key) || k.is("history", &key) {
            return Some(Some(Intent::CloseReplay));
        }
        if k.is("rerun", &key) {
            return Some(Some(Intent::Rerun(self.session_id.clone())));
        }
        let acts = [
            "input",
            "approve",
            "approve_remember",
            "approve_ready",
            "skip",
            "reject",
            "edit",
            "cancel",
            "cancel_run",
            "planner",
        ];
        if acts.iter().any(|a| k.is(a, &key)) {
            self.flash = Some((
                format!(
                    "a replay is read-only: {} re-runs its plan as a new session, esc goes back",
                    k.label("rerun")
                ),
                true,
            ));
            return Some(None);
        }
        None
    }

    /// A past session shown through the same panes, with nothing to act on.
    /// A session that never finished shows its running steps as
    /// interrupted, as `--resume` would find them.
    pub fn replay(
        keys: super::super::keymap::KeyMap,
        id: String,
        records: &[crate::session::Record],
    ) -> Self {
        let mut app = App::new(keys, id, String::new(), "replay".into());
        app.read_only = true;
        for r in records {
            app.apply(r);
        }
        if app.state.outcome.is_none() {
            let running: Vec<crate::plan::StepId> = app
                .state
                .steps
                .iter()
                .filter(|(_, s)| s.status() == crate::session::StepStatus::Running)
                .map(|(id, _)| id.clone())
                .collect();
            if let Some(last) = records.last() {
                for step in running {
                    let mut shown = last.clone();
                    shown.event = crate::session::Event::StepInterrupted { step };
                    app.state.apply(&shown);
                }
            }
            app.chat.push(
                super::ChatEntry {
                    seq: records.last().map_or(0, |r| r.seq),
                    ts: records
                        .last()
                        .and_then(|r| r.ts.get(11..19))
                        .unwrap_or_default()
                        .to_string(),
                    who: super::Who::Warn,
                    text: "This session never finished: it was interrupted.".into(),
                },
                false,
            );
        }
        app.input.set_placeholder_text(format!(
            "read-only replay: {} re-runs its plan as a new session, esc goes back",
            app.keys.label("rerun")
        ));
        app.focus = Pane::Plan;
        app.narrow_pane = Pane::Plan;
        app
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use serde_json::Map;

    use super::super::{App, Intent, Modal};
    use crate::plan::{Plan, Step, StepId};
    use crate::session::{Event, Found, SessionId, test_record as record};
    use crate::tui::keymap::KeyMap;

    fn app() -> App {
        App::new(
            KeyMap::new(&BTreeMap::new()),
            "live".into(),
            "runbook".into(),
            "step".into(),
        )
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn found(id: &str) -> Found {
        Found {
            id: SessionId::from_stored(id),
            started_at: "2026-11-20T09:00:00.000Z".into(),
            actor: "alice".into(),
            title: Some(format!("request {id}")),
            outcome: "succeeded".into(),
            envs: vec!["staging".into()],
            snippet: None,
        }
    }

    fn browser(app: &App) -> &super::HistoryBrowser {
        match &app.modal {
            Some(Modal::History(b)) => b,
            _ => panic!("the browser is not open"),
        }
    }

    #[test]
    fn typing_searches_and_only_the_answer_to_what_is_typed_now_is_shown() {
        let mut app = app();
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL)),
            Some(Intent::SearchHistory(String::new())),
            "ctrl-r in the input box opens the browser, as in a shell"
        );
        app.modal = None;
        app.focus = super::Pane::Plan;
        assert_eq!(
            app.on_key(key(KeyCode::Char('H'))),
            Some(Intent::SearchHistory(String::new()))
        );
        assert_eq!(
            app.on_key(key(KeyCode::Char('p'))),
            Some(Intent::SearchHistory("p".into()))
        );
        assert_eq!(
            app.on_key(key(KeyCode::Char('a'))),
            Some(Intent::SearchHistory("pa".into()))
        );
        // The answer for "p" arrives late: dropped, the list waits for "pa".
        app.show_found("p", Ok(vec![found("old")]));
        assert!(browser(&app).found.is_empty());
        assert!(!browser(&app).current);
        app.show_found("pa", Ok(vec![found("a"), found("b")]));
        assert_eq!(browser(&app).found.len(), 2);
        assert!(browser(&app).current);
        // The selection follows the chosen session when the list changes.
        app.on_key(key(KeyCode::Down));
        assert_eq!(
            app.on_key(key(KeyCode::Char('y'))),
            Some(Intent::SearchHistory("pay".into()))
        );
        app.show_found("pay", Ok(vec![found("c"), found("b")]));
        assert_eq!(browser(&app).chosen().map(|f| f.id.as_str()), Some("b"));
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Intent::OpenSession("b".into()))
        );
        app.on_key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL));
        assert_eq!(
            browser(&app).selected,
            1,
            "ctrl-r again moves to an older session"
        );
        // A failed search says why instead of listing.
        app.on_key(key(KeyCode::Backspace));
        app.show_found("pa", Err("event store: disk I/O error".into()));
        assert!(browser(&app).found.is_empty());
        assert_eq!(
            browser(&app).error.as_deref(),
            Some("event store: disk I/O error")
        );
        assert_eq!(app.on_key(key(KeyCode::Esc)), None);
        assert!(app.modal.is_none());
    }

    #[test]
    fn a_replay_acts_on_nothing_and_shows_unfinished_steps_as_interrupted() {
        let plan = Plan {
            title: "deploy checkout → staging".into(),
            steps: vec![
                Step::new("build", "ci.build", Map::new()),
                Step::new("deploy", "k8s.deploy", Map::new()),
            ],
        };
        let records = vec![
            record(
                1,
                Event::UserMessage {
                    text: "deploy checkout to staging".into(),
                },
            ),
            record(
                2,
                Event::PlanProposed {
                    plan,
                    defs: Default::default(),
                    influenced_by: Vec::new(),
                },
            ),
            record(
                3,
                Event::StepStarted {
                    step: StepId::new("build"),
                    tool: "ci.build".into(),
                    args: Map::new(),
                },
            ),
        ];
        let mut replay = App::replay(KeyMap::new(&BTreeMap::new()), "past".into(), &records);
        assert!(replay.read_only);
        assert!(
            !replay.running(),
            "a step that was running when the session died is not running now"
        );
        assert!(
            replay.state.steps[&StepId::new("build")].interrupted,
            "and it is shown as interrupted"
        );
        assert!(replay.chat.iter().any(|c| c.text.contains("interrupted")));
        for k in ['a', 'A', 'T', 's', 'e', 'x', 'X', 'r', 'P', 'i'] {
            assert_eq!(replay.on_key(key(KeyCode::Char(k))), None, "key {k}");
            assert!(replay.modal.is_none(), "key {k} opened something");
            assert!(
                replay
                    .flash
                    .as_ref()
                    .is_some_and(|(m, _)| m.contains("read-only")),
                "key {k} says why nothing happens"
            );
        }
        assert_eq!(
            replay.on_key(key(KeyCode::Char('R'))),
            Some(Intent::Rerun("past".into()))
        );
        assert_eq!(replay.on_key(key(KeyCode::Esc)), Some(Intent::CloseReplay));
        assert_eq!(
            replay.on_key(key(KeyCode::Char('q'))),
            Some(Intent::CloseReplay),
            "q leaves the replay, not the app"
        );
        // Looking around still works.
        replay.on_key(key(KeyCode::Down));
        assert_eq!(replay.selected, 1);
        replay.on_key(key(KeyCode::Tab));
        assert_ne!(replay.focus, super::Pane::Input);
    }

    #[test]
    fn the_live_feed_and_the_log_overlap_without_showing_a_record_twice() {
        let mut app = app();
        let r = record(
            7,
            Event::UserMessage {
                text: "hello".into(),
            },
        );
        app.apply(&r);
        app.apply(&r);
        assert_eq!(app.chat.len(), 1);
        assert_eq!(app.audit.len(), 1);
    }
}
