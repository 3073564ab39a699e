//! The TUI's view state and what keys mean. It folds the session's records
//! for display and turns keys into intents; whether an intent is allowed is
//! the driver's business. What each key means is in `keys.rs`.

pub mod asking;
mod history;
mod keys;
pub mod log;
mod pending;
mod review;
mod tools;

pub use history::{HistoryBrowser, LIST_LIMIT};
pub use log::{AuditLine, ChatEntry, Tone, Who};
pub use tools::{ToolList, ToolRow};

use std::collections::BTreeMap;

use crossterm::event::{MouseEvent, MouseEventKind};
use ratatui_textarea::TextArea;
use serde_json::{Map, Value};

use super::keymap::KeyMap;
use crate::mcp::ServerStatus;
use crate::plan::StepId;
use crate::session::{Event, Record, SessionState, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Input,
    Chat,
    Plan,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFilter {
    #[default]
    All,
    Policy,
    Steps,
    Problems,
}

impl AuditFilter {
    pub fn next(self) -> Self {
        match self {
            AuditFilter::All => AuditFilter::Policy,
            AuditFilter::Policy => AuditFilter::Steps,
            AuditFilter::Steps => AuditFilter::Problems,
            AuditFilter::Problems => AuditFilter::All,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            AuditFilter::All => "all",
            AuditFilter::Policy => "policy & approvals",
            AuditFilter::Steps => "steps",
            AuditFilter::Problems => "problems",
        }
    }
    /// Whether a line of this event kind shows under the filter.
    pub fn keeps(self, kind: &str) -> bool {
        match self {
            AuditFilter::All => kind != "step_progress",
            AuditFilter::Policy => matches!(
                kind,
                "policy_decision" | "approved" | "awaiting_approval" | "args_edited"
            ),
            AuditFilter::Steps => matches!(
                kind,
                "step_started"
                    | "step_succeeded"
                    | "step_failed"
                    | "step_not_started"
                    | "step_skipped"
            ),
            AuditFilter::Problems => matches!(
                kind,
                "step_failed" | "step_not_started" | "server_problem" | "plan_invalid"
            ),
        }
    }
}

pub enum Modal {
    Help,
    Servers,
    Gate {
        step: StepId,
        confirm: String,
        typed: TextArea<'static>,
        error: Option<String>,
    },
    Edit {
        step: StepId,
        editor: TextArea<'static>,
        error: Option<String>,
    },
    QuitConfirm,
    /// Choose the planner: the runbooks or an LLM profile.
    Planner {
        selected: usize,
    },
    /// Past sessions, searched as you type.
    History(HistoryBrowser),
    /// The audit log stopped taking events: why, and what to do.
    StoreFailed,
    /// Calls from `opsbot serve` clients that wait for a person.
    Pending {
        selected: usize,
        typed: TextArea<'static>,
        error: Option<String>,
    },
    /// The tools, filtered as you type (`/tools`).
    Tools(ToolList),
    /// A server asks the person something (a form, a link, the model).
    Ask(Box<asking::AskView>),
    /// Tools whose definitions changed after they were pinned.
    Reviews {
        selected: usize,
    },
    /// The last 30 days of the log as charts.
    Insights(Box<crate::session::Insights>),
}

/// One planner the user can switch to.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerChoice {
    /// The LLM profile; none is the runbook planner.
    pub profile: Option<String>,
    pub name: String,
    pub detail: String,
}

/// The planner at work, for the "thinking" line under the chat.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanningView {
    pub planner: String,
    pub elapsed: std::time::Duration,
    pub phase: Option<crate::planner::Phase>,
    /// Tokens of the answer so far.
    pub tokens: u64,
    /// Steps written so far: (id, tool, description); none can be approved.
    pub draft: Vec<(String, String, String)>,
}

/// What the user asked for; the event loop hands these to the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Submit(String),
    /// Stop the planner (closes the model's request).
    CancelPlanning,
    /// `/call server.tool key=value …`: the text after `/call`.
    Call(String),
    /// `/tools [words]`: open the tool list, filtered by these words.
    Tools(String),
    Approve {
        step: StepId,
        remember: bool,
    },
    Confirm {
        step: StepId,
        typed: String,
    },
    ApproveReady,
    Skip(StepId),
    Reject,
    Edit {
        step: StepId,
        args: Map<String, Value>,
    },
    CancelStep(StepId),
    CancelRunning,
    CancelRun,
    SwitchPlanner(Option<String>),
    /// Search past sessions for these words (none lists the newest).
    SearchHistory(String),
    /// Replay a past session, read-only.
    OpenSession(String),
    /// Leave the replay, back to the browser.
    CloseReplay,
    /// Propose a past session's plan again, as a new session.
    Rerun(String),
    /// Approve a served call that waits (typed: a gated call's target).
    ApprovePending {
        session: crate::session::SessionId,
        step: StepId,
        typed: String,
    },
    RefusePending {
        session: crate::session::SessionId,
        step: StepId,
    },
    /// Open the review of changed tool definitions (loaded from the store).
    Reviews,
    /// Open the insights screen (computed from the store).
    Insights,
    /// Re-pin a tool as the changed definition that was shown (its hash).
    AcceptPin {
        tool: String,
        hash: String,
    },
    /// Keep a tool's changed definition denied.
    RejectPin {
        tool: String,
    },
    Quit,
}

pub struct App {
    pub keys: KeyMap,
    pub state: SessionState,
    /// Each step's depth in the plan graph, computed once per plan.
    pub depths: std::collections::HashMap<StepId, usize>,
    pub audit: log::Audit,
    pub chat: log::Chat,
    /// Someone scrolled to the top of the chat held: page older entries
    /// in from the store (the screen does, off the event loop).
    pub wants_older: bool,
    /// When the session began, for a replay's status line.
    pub started: Option<String>,
    pub servers: BTreeMap<String, ServerStatus>,
    /// Circuit breakers that are not closed.
    pub breakers: BTreeMap<String, crate::mcp::BreakerState>,
    pub session_id: String,
    pub planner: String,
    pub mode: String,
    pub focus: Pane,
    /// The main pane shown when the terminal is too narrow for all three.
    pub narrow_pane: Pane,
    pub chat_scroll: usize,
    pub audit_scroll: usize,
    pub audit_filter: AuditFilter,
    pub selected: usize,
    pub input: TextArea<'static>,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    pub modal: Option<Modal>,
    pub flash: Option<(String, bool)>,
    pub tick: u64,
    pub busy: bool,
    pub planning: Option<PlanningView>,
    pub planner_choices: Vec<PlannerChoice>,
    pub read_only: bool,
    /// Served calls (other sessions) waiting for approval.
    pub pending: Vec<crate::session::Pending>,
    /// Changed tool definitions waiting for review, cleaned for the screen.
    pub reviews: Vec<crate::runtime::PinReview>,
    /// Why the audit log takes no more events: nothing runs after this.
    pub store_fault: Option<crate::session::StoreFault>,
    /// Why the OpenTelemetry export is failing, while it is.
    pub export_problem: Option<String>,
    /// The last record folded in: the log and the live feed overlap when
    /// a view is built, and a record is shown once.
    last_seq: i64,
    ctrl_c_armed: bool,
    pub quit: bool,
    /// What the scan found in each server's tool definitions.
    pub flagged: BTreeMap<String, Vec<String>>,
    /// Each server's latest log messages (redacted), newest last.
    pub server_logs: BTreeMap<String, std::collections::VecDeque<String>>,
    /// Servers' questions waiting for the overlay on screen to close.
    pub asks: std::collections::VecDeque<crate::ask::Ask>,
}

fn new_input() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text("Ask opsbot, e.g. deploy checkout to staging");
    t.set_cursor_line_style(ratatui::style::Style::new());
    t
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl App {
    pub fn new(keys: KeyMap, session_id: String, planner: String, mode: String) -> Self {
        Self {
            keys,
            state: SessionState::default(),
            depths: std::collections::HashMap::new(),
            audit: log::Audit::default(),
            chat: log::Chat::default(),
            wants_older: false,
            started: None,
            servers: BTreeMap::new(),
            breakers: BTreeMap::new(),
            session_id,
            planner,
            mode,
            focus: Pane::Input,
            narrow_pane: Pane::Chat,
            chat_scroll: 0,
            audit_scroll: 0,
            audit_filter: AuditFilter::All,
            selected: 0,
            input: new_input(),
            history: Vec::new(),
            history_pos: None,
            modal: None,
            flash: None,
            tick: 0,
            busy: false,
            planning: None,
            planner_choices: Vec::new(),
            read_only: false,
            pending: Vec::new(),
            reviews: Vec::new(),
            store_fault: None,
            export_problem: None,
            last_seq: 0,
            ctrl_c_armed: false,
            quit: false,
            asks: std::collections::VecDeque::new(),
            server_logs: BTreeMap::new(),
            flagged: BTreeMap::new(),
        }
    }

    /// A server's log message, kept (the last few per server) for the
    /// server list. The line comes redacted; it is cleaned here.
    pub fn on_server_log(&mut self, server: &str, line: &str) {
        const KEPT: usize = 5;
        let lines = self.server_logs.entry(server.to_string()).or_default();
        if lines.len() == KEPT {
            lines.pop_front();
        }
        lines.push_back(crate::sanitize::line(line, 200));
    }

    /// Fold one record into the view. Its strings came from servers,
    /// models and people: they are cleaned here, once, so nothing the
    /// widgets draw can act on the terminal.
    pub fn apply(&mut self, record: &Record) {
        if record.seq <= self.last_seq {
            return;
        }
        let cleaned;
        let record = match crate::sanitize::cleaned(&record.event) {
            Some(event) => {
                cleaned = Record {
                    event,
                    ..record.clone()
                };
                &cleaned
            }
            None => record,
        };
        self.last_seq = record.seq;
        self.state.apply(record);
        if self.started.is_none() {
            self.started = Some(record.ts.clone());
        }
        match &record.event {
            Event::SessionStarted { planner, .. } | Event::PlannerChanged { planner } => {
                self.planner = planner.clone();
            }
            Event::PlanProposed { plan, .. } => {
                self.depths = super::widgets::plan::depths(plan);
                self.selected = 0;
                self.narrow_pane = Pane::Plan;
                if self.focus == Pane::Input && self.input.is_empty() {
                    self.focus = Pane::Plan;
                }
            }
            _ => {}
        }
        if let Some(c) = log::chat_entry(record, &|s| self.tool_of(s)) {
            self.chat.push(c, self.chat_scroll > 0);
        }
        self.audit.push(AuditLine::of(record));
    }

    /// Older chat entries, paged in from the store (oldest first).
    pub fn prepend_older(&mut self, records: &[Record], more: bool) {
        self.chat.prepend(log::older_entries(records), more);
    }

    fn tool_of(&self, step: &StepId) -> String {
        self.state
            .plan
            .as_ref()
            .and_then(|p| p.step(step))
            .map(|s| s.tool.clone())
            .unwrap_or_default()
    }

    /// A step's arguments with references to finished steps filled in, as
    /// they would be sent now; unresolved references stay as written.
    pub fn resolved_args(&self, step: &crate::plan::Step) -> Map<String, Value> {
        let outputs: std::collections::HashMap<StepId, Value> = self
            .state
            .steps
            .iter()
            .filter_map(|(id, s)| {
                s.output
                    .as_ref()
                    .filter(|o| !o.is_error)
                    .map(|o| (id.clone(), o.value()))
            })
            .collect();
        crate::plan::resolve(&step.args, &outputs).unwrap_or_else(|_| step.args.clone())
    }

    pub fn selected_step(&self) -> Option<&crate::plan::Step> {
        self.state
            .plan
            .as_ref()
            .and_then(|p| p.steps.get(self.selected))
    }

    /// The store stopped taking events: say so over everything else.
    pub fn on_store_fault(&mut self, fault: crate::session::StoreFault) {
        self.store_fault = Some(fault);
        self.modal = Some(Modal::StoreFailed);
    }

    pub fn running(&self) -> bool {
        self.state
            .steps
            .values()
            .any(|s| s.status() == StepStatus::Running)
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let delta: isize = match m.kind {
            MouseEventKind::ScrollUp => 3,
            MouseEventKind::ScrollDown => -3,
            _ => return,
        };
        match self.focus {
            Pane::Audit => self.audit_scroll = self.audit_scroll.saturating_add_signed(delta),
            Pane::Plan => self.move_selection(-delta.signum()),
            _ => self.chat_scroll = self.chat_scroll.saturating_add_signed(delta),
        }
    }

    fn move_selection(&mut self, by: isize) {
        let n = self.state.plan.as_ref().map_or(0, |p| p.steps.len());
        if n > 0 {
            self.selected = self.selected.saturating_add_signed(by).min(n - 1);
        }
    }

    fn cycle_focus(&mut self, forward: bool) {
        let order: &[Pane] = if self.read_only {
            &[Pane::Plan, Pane::Chat, Pane::Audit]
        } else {
            &[Pane::Input, Pane::Plan, Pane::Chat, Pane::Audit]
        };
        let i = order.iter().position(|p| *p == self.focus).unwrap_or(0);
        let next = if forward {
            (i + 1) % order.len()
        } else {
            (i + order.len() - 1) % order.len()
        };
        self.focus = order[next];
        if self.focus != Pane::Input {
            self.narrow_pane = self.focus;
        }
    }

    /// The driver's answer to an intent.
    pub fn on_result(&mut self, intent: &Intent, result: Result<String, String>) {
        match (&mut self.modal, result) {
            (
                Some(Modal::Gate {
                    error,
                    typed,
                    confirm,
                    ..
                }),
                Err(e),
            ) if matches!(intent, Intent::Confirm { .. }) => {
                *error = Some(e);
                *typed = TextArea::default();
                typed.set_placeholder_text(format!("type {confirm}"));
            }
            (Some(Modal::Edit { error, .. }), Err(e)) if matches!(intent, Intent::Edit { .. }) => {
                *error = Some(e)
            }
            (Some(Modal::Reviews { .. }), Err(e))
                if matches!(intent, Intent::AcceptPin { .. } | Intent::RejectPin { .. }) =>
            {
                self.flash = Some((e, true))
            }
            (Some(Modal::Pending { error, .. }), Err(e))
                if matches!(
                    intent,
                    Intent::ApprovePending { .. } | Intent::RefusePending { .. }
                ) =>
            {
                *error = Some(e)
            }
            (_, Err(e)) => self.flash = Some((e, true)),
            (_, Ok(message)) => {
                if matches!(intent, Intent::Confirm { .. } | Intent::Edit { .. }) {
                    self.modal = None;
                }
                if !message.is_empty() {
                    self.flash = Some((message, false));
                }
            }
        }
    }
}

/// Keep the first `max` lines of long text (and at most 240 characters a
/// line on average), saying how much was folded: a huge output costs the
/// view no more than a small one.
pub fn fold(text: &str, max: usize) -> String {
    let budget = max * 240;
    if text.chars().nth(budget).is_some() {
        let head: String = text.chars().take(budget).collect();
        return format!(
            "{}…\n… {} bytes in all (select the step in the plan to see more)",
            fold_lines(&head, max),
            text.len()
        );
    }
    fold_lines(text, max)
}

fn fold_lines(text: &str, max: usize) -> String {
    let total = text.lines().count();
    if total <= max {
        return text.to_string();
    }
    let mut out: Vec<&str> = text.lines().take(max).collect();
    let more = format!(
        "… {} more lines (select the step in the plan to see all)",
        total - max
    );
    out.push(&more);
    out.join("\n")
}
