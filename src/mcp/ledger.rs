//! Progress notifications counted in the order the server wrote them.
//!
//! rmcp hands each notification to the client handler on a task of its
//! own, so a call's answer can reach its caller before the progress the
//! server sent just ahead of it has been relayed. For a stdio server the
//! frame pump counts each progress notification per token as it reads it
//! (before any later line reaches rmcp), the handler counts what it has
//! relayed, and a finished call waits until the two agree before it
//! closes its progress route: no progress is dropped, however busy the
//! machine. (For HTTP servers nothing is counted and the wait is nil.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Lines longer than this are not looked into for notifications: the ones
/// the frame pump watches for (progress, tools changed) are a few hundred
/// bytes, while a reply can be megabytes, which would be scanned twice.
/// A progress line missed here only means its call does not wait for it
/// to be relayed.
pub(crate) const NOTIFICATION_MAX: usize = 64 * 1024;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct ProgressLedger {
    /// Token (as JSON text) → (read by the pump, relayed by the handler).
    counts: Mutex<HashMap<String, (u64, u64)>>,
    relayed: Notify,
    /// A frame pump counts this connection's lines: once `settle` returns,
    /// everything the server sent before its answer has been relayed.
    counting: AtomicBool,
}

/// The key a progress token is counted under: its JSON text.
pub(crate) fn key<T: serde::Serialize>(token: &T) -> String {
    serde_json::to_string(token).unwrap_or_default()
}

impl ProgressLedger {
    /// A frame pump will count every line this connection reads.
    pub(crate) fn counted_by_pump(&self) {
        self.counting.store(true, Ordering::Release);
    }

    /// Whether settling covers all progress sent before an answer (else
    /// the handler's tasks get a moment to run before a route closes).
    pub(crate) fn complete(&self) -> bool {
        self.counting.load(Ordering::Acquire)
    }

    /// The pump read a `notifications/progress` line: count it.
    pub(crate) fn seen_line(&self, line: &[u8]) {
        const METHOD: &[u8] = b"notifications/progress";
        if line.len() > NOTIFICATION_MAX || !line.windows(METHOD.len()).any(|w| w == METHOD) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        if v.get("id").is_some() || v["method"] != "notifications/progress" {
            return;
        }
        let token = v["params"]["progressToken"].to_string();
        if let Ok(mut c) = self.counts.lock() {
            c.entry(token).or_default().0 += 1;
        }
    }

    /// The handler relayed one for `token`.
    pub(crate) fn relayed(&self, token: &str) {
        if let Ok(mut c) = self.counts.lock() {
            let entry = c.entry(token.to_string()).or_default();
            entry.1 += 1;
        }
        self.relayed.notify_waiters();
    }

    /// Wait until every progress read for `token` has been relayed (at
    /// most `within`, should the handler never run), then forget it.
    pub(crate) async fn settle(&self, token: &str, within: Duration) {
        let caught_up = || {
            self.counts
                .lock()
                .map(|c| c.get(token).is_none_or(|(seen, done)| done >= seen))
                .unwrap_or(true)
        };
        let wait = async {
            loop {
                let notified = self.relayed.notified();
                if caught_up() {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
        if let Ok(mut c) = self.counts.lock() {
            c.remove(token);
        }
    }
}
