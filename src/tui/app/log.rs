//! The session's log as the panes show it: chat entries and audit lines,
//! each made once from its record, and kept within bounds.
//!
//! A session can run for days. The view keeps the newest entries (what is
//! on screen and a good way back); older chat is paged in from the store
//! while someone reads back, and let go again when they return to the
//! bottom. Audit lines are short text made when the record lands, so a
//! frame never formats an event, whatever the size of its output.

use std::collections::VecDeque;

use crate::plan::StepId;
use crate::session::{Event, Record};

/// Chat entries kept while nobody reads back.
pub const CHAT_KEEP: usize = 1_000;
/// Older chat entries fetched at a time while reading back.
pub const CHAT_PAGE: usize = 300;
/// Audit lines kept.
pub const AUDIT_KEEP: usize = 2_000;
/// An audit line's text is cut here (the pane is narrower still).
const AUDIT_TEXT: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    You,
    Bot,
    Ok,
    Failed,
    Warn,
}

#[derive(Debug, Clone)]
pub struct ChatEntry {
    /// The record it came from: where paging back starts.
    pub seq: i64,
    pub ts: String,
    pub who: Who,
    pub text: String,
}

/// The chat entries in memory: a window onto the session's chat.
#[derive(Debug, Default)]
pub struct Chat {
    entries: VecDeque<ChatEntry>,
    /// The position of `entries[0]` in the whole chat: it moves as old
    /// entries are let go and paged back in, so caches keyed by position
    /// stay valid.
    first: i64,
    /// Older entries exist in the store, before this record.
    more_before: Option<i64>,
}

impl Chat {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the first entry held.
    pub fn first(&self) -> i64 {
        self.first
    }

    pub fn get(&self, i: usize) -> Option<&ChatEntry> {
        self.entries.get(i)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ChatEntry> {
        self.entries.iter()
    }

    /// The record before which older entries wait in the store.
    pub fn more_before(&self) -> Option<i64> {
        self.more_before
    }

    /// A new entry at the bottom. Unless someone is reading back, the
    /// oldest go beyond `CHAT_KEEP`.
    pub fn push(&mut self, entry: ChatEntry, reading_back: bool) {
        self.entries.push_back(entry);
        if !reading_back {
            self.trim();
        }
    }

    /// Let go of what is beyond `CHAT_KEEP`, oldest first.
    pub fn trim(&mut self) {
        while self.entries.len() > CHAT_KEEP {
            self.entries.pop_front();
            self.first += 1;
            self.more_before = self.entries.front().map(|e| e.seq);
        }
    }

    /// Older entries paged in from the store, oldest first; `more` says
    /// whether the store holds older still.
    pub fn prepend(&mut self, older: Vec<ChatEntry>, more: bool) {
        for e in older.into_iter().rev() {
            self.entries.push_front(e);
            self.first -= 1;
        }
        self.more_before = if more {
            self.entries.front().map(|e| e.seq)
        } else {
            None
        };
    }
}

/// The chat entry a record makes, if any. `tool_of` names a step's tool.
pub fn chat_entry(record: &Record, tool_of: &dyn Fn(&StepId) -> String) -> Option<ChatEntry> {
    let entry = |who, text: String| {
        Some(ChatEntry {
            seq: record.seq,
            ts: record.ts.get(11..19).unwrap_or(&record.ts).to_string(),
            who,
            text,
        })
    };
    let tool = |step: &StepId| {
        let t = tool_of(step);
        if t.is_empty() {
            String::new()
        } else {
            format!(" ({t})")
        }
    };
    match &record.event {
        Event::UserMessage { text } => entry(Who::You, text.clone()),
        Event::AssistantMessage { text } => entry(Who::Bot, text.clone()),
        Event::ClarificationAsked { question } => entry(Who::Bot, question.clone()),
        Event::StepSucceeded {
            step,
            output,
            duration_ms,
        } => entry(
            Who::Ok,
            format!(
                "✓ {step}{} {}\n{}",
                tool(step),
                crate::session::duration(*duration_ms),
                super::fold(&super::pretty(&output.value()), 8)
            ),
        ),
        Event::StepFailed { step, error, .. } => {
            entry(Who::Failed, format!("✗ {step}{}: {error}", tool(step)))
        }
        Event::StepNotStarted { step, reason } => entry(
            Who::Failed,
            format!("⊘ {step}{} was never sent: {reason}", tool(step)),
        ),
        Event::RunFinished { outcome, summary } => {
            entry(Who::Bot, format!("Run {}: {summary}", outcome.as_str()))
        }
        Event::ServerProblem { server, message } => {
            entry(Who::Warn, format!("server {server}: {message}"))
        }
        Event::Note { text } => entry(Who::Warn, text.clone()),
        Event::Exchanged {
            server,
            method,
            subject,
            outcome,
            ..
        } => entry(Who::Bot, format!("{server} {method} {subject}: {outcome}")),
        Event::ClientConnected {
            name,
            version,
            transport,
        } => entry(
            Who::Bot,
            format!("MCP client {name} {version} connected over {transport} (opsbot serve)."),
        ),
        Event::PlannerChanged { planner } => {
            entry(Who::Bot, format!("Planning with {planner} from now on."))
        }
        _ => None,
    }
}

/// The kinds of record that make chat entries: what paging asks the store for.
pub const CHAT_KINDS: &[&str] = &[
    "user_message",
    "assistant_message",
    "clarification_asked",
    "step_succeeded",
    "step_failed",
    "step_not_started",
    "run_finished",
    "server_problem",
    "note",
    "client_connected",
    "planner_changed",
    "exchanged",
    // Not entries themselves, but they name the tools of later steps.
    "plan_proposed",
    "step_started",
];

/// Chat entries for a page of older records (oldest first), naming tools
/// from the plans and starts within the page.
pub fn older_entries(records: &[Record]) -> Vec<ChatEntry> {
    let mut tools = std::collections::HashMap::new();
    for r in records {
        match &r.event {
            Event::PlanProposed { plan, .. } => {
                for s in &plan.steps {
                    tools.insert(s.id.clone(), s.tool.clone());
                }
            }
            Event::StepStarted { step, tool, .. } => {
                tools.insert(step.clone(), tool.clone());
            }
            _ => {}
        }
    }
    let tool_of = |s: &StepId| tools.get(s).cloned().unwrap_or_default();
    records
        .iter()
        .filter_map(|r| chat_entry(r, &tool_of))
        .collect()
}

/// How an audit line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Base,
    Ok,
    Warn,
    Gated,
    Error,
}

/// One line of the audit pane, made once when its record lands.
#[derive(Debug, Clone)]
pub struct AuditLine {
    pub seq: i64,
    /// `HH:MM:SS`.
    pub time: String,
    /// The event's kind, for the pane's filter.
    pub kind: &'static str,
    pub text: String,
    pub tone: Tone,
}

impl AuditLine {
    pub fn of(record: &Record) -> Self {
        let (label, text) = crate::session::describe(&record.event);
        let tone = match &record.event {
            Event::StepFailed { .. }
            | Event::StepNotStarted { .. }
            | Event::ServerProblem { .. }
            | Event::PlanInvalid { .. } => Tone::Error,
            Event::StepSucceeded { .. } => Tone::Ok,
            Event::PolicyDecision { decision, .. } if decision.is_denied() => Tone::Error,
            Event::PolicyDecision { decision, .. } if decision.gate().is_some() => Tone::Gated,
            Event::AwaitingApproval { .. } | Event::Approved { .. } => Tone::Warn,
            _ => Tone::Base,
        };
        Self {
            seq: record.seq,
            time: record.ts.get(11..19).unwrap_or(&record.ts).to_string(),
            kind: record.event.kind(),
            text: crate::text::truncate(&format!("{label} {text}"), AUDIT_TEXT),
            tone,
        }
    }
}

/// The audit lines in memory: the newest `AUDIT_KEEP`.
#[derive(Debug, Default)]
pub struct Audit {
    lines: VecDeque<AuditLine>,
}

impl Audit {
    pub fn push(&mut self, line: AuditLine) {
        if self.lines.len() == AUDIT_KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &AuditLine> {
        self.lines.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> ChatEntry {
        ChatEntry {
            seq,
            ts: String::new(),
            who: Who::Bot,
            text: format!("{seq}"),
        }
    }

    #[test]
    fn the_chat_keeps_its_newest_and_pages_older_back_in() {
        let mut chat = Chat::default();
        for seq in 1..=(CHAT_KEEP as i64 + 10) {
            chat.push(entry(seq), false);
        }
        assert_eq!(chat.len(), CHAT_KEEP);
        assert_eq!(chat.first(), 10);
        assert_eq!(chat.more_before(), Some(11));
        // Reading back: older entries come in front, nothing is let go.
        chat.prepend((1..=10).map(entry).collect(), false);
        assert_eq!(chat.first(), 0);
        assert_eq!(chat.more_before(), None);
        chat.push(entry(9_999), true);
        assert_eq!(chat.len(), CHAT_KEEP + 11);
        // Back at the bottom: trimmed to the bound again.
        chat.trim();
        assert_eq!(chat.len(), CHAT_KEEP);
        assert_eq!(chat.get(0).map(|e| e.seq), Some(12));
    }
}
