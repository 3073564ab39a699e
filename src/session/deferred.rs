//! Events recorded with the session's next commit rather than their own.
//!
//! Where the store keeps a journal (see journal.rs), deferred events are
//! written to it at once, in one write: they are durable before the
//! caller acts on them, and the SQLite commit follows behind, with the
//! session's next commit or the flush arranged for them (`flush_soon`),
//! many calls' events at a time. So a governed call waits on no commit:
//! its start is journaled before it is made (`record_ahead`), and its end
//! (a served call's answer) is journaled before the client sees it. A
//! shared store has no journal: there a deferred end waits for the next
//! commit, and a process killed in that moment leaves the call on record
//! as started with no result, which reads as an interrupted step. The
//! events are prepared (cut and redacted) when deferred, so what is shown
//! of them is what the log will hold.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, Prepared, Session, StoreError};

/// How long deferred events wait for the session's next commit before
/// they are committed on their own: behind a journal, how far the SQLite
/// log (and the views following it) may lag; without one, the window in
/// which a killed process loses them.
const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// What waits for the session's next commit, and how many batches of it
/// were taken so far (a flush arranged for one batch leaves the next alone).
#[derive(Debug, Default)]
pub(super) struct Deferred {
    events: Prepared,
    taken: u64,
}

/// A batch of deferred events, for the one flush arranged for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl Session {
    /// Keep `events` for the session's next commit. Returns them as they
    /// will be stored, and, when none were waiting before, the batch they
    /// start: its caller arranges a `flush_deferred` of it soon.
    pub fn defer(&self, events: &[Event]) -> Result<(Vec<Event>, Option<Ticket>), StoreError> {
        let prepared = self.store.prepare(events)?;
        let shown = prepared.events().cloned().collect();
        let (ticket, _) = self.defer_prepared(prepared)?;
        Ok((shown, ticket))
    }

    /// Keep prepared events for the next commit, journaled where the store
    /// keeps a journal; the batch they start, and whether they were
    /// journaled (so durable now).
    fn defer_prepared(&self, mut prepared: Prepared) -> Result<(Option<Ticket>, bool), StoreError> {
        // Journaled under the lock that orders the batch: the journal's
        // lines of a session are in the order its commits take them.
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        let journaled = self
            .store
            .journal_events(&self.id, &self.actor, &mut prepared)?;
        let ticket = deferred.events.is_empty().then_some(Ticket(deferred.taken));
        deferred.events.extend(prepared);
        Ok((ticket, journaled))
    }

    /// Make `events` durable before returning, as cheaply as the store
    /// allows: journaled, with their commit arranged shortly behind, or,
    /// with no journal, committed now. For what a run is about to act on.
    pub fn record_ahead(self: &Arc<Self>, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if !self.store.keeps_journal() {
            return self.record_all(&events).map(drop);
        }
        let (ticket, journaled) = self.defer_prepared(self.store.prepare_owned(events)?)?;
        if !journaled {
            // The journal failed just now: commit them, and all before them.
            return self.record_all(&[]).map(drop);
        }
        if let Some(ticket) = ticket {
            self.flush_soon(ticket);
        }
        Ok(())
    }

    /// Commit the batch `ticket` names shortly (after `FLUSH_AFTER`),
    /// unless a commit takes it first; at once outside a Tokio runtime.
    /// The commit runs on a blocking thread: a log another process holds
    /// locked must not stall the runtime serving calls from the journal.
    pub fn flush_soon(self: &Arc<Self>, ticket: Ticket) {
        let session = Arc::clone(self);
        let flush = move || {
            if let Err(e) = session.flush_deferred(ticket) {
                tracing::error!(
                    "cannot commit the deferred events of session {}: {e}",
                    session.id
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(FLUSH_AFTER).await;
                    if let Err(e) = tokio::task::spawn_blocking(flush).await {
                        tracing::error!("a deferred commit did not finish: {e}");
                    }
                });
            }
            Err(_) => flush(),
        }
    }

    /// Make the batch `ticket` names durable now, unless a commit took it
    /// already: then what waits is a later batch, with a flush of its own.
    pub fn flush_deferred(&self, ticket: Ticket) -> Result<(), StoreError> {
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = {
            let d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            d.taken == ticket.0 && !d.events.is_empty()
        };
        if waiting {
            self.record_in_order(&order, &[])?;
        }
        Ok(())
    }

    /// Commit now whatever waits for the next commit: for a caller about
    /// to read the SQLite log or the session's folded state, which follow
    /// commits, not the journal.
    pub fn settle(&self) -> Result<(), StoreError> {
        self.record_all(&[]).map(drop)
    }

    /// How many events wait for the next commit.
    pub fn deferred_len(&self) -> usize {
        self.deferred
            .lock()
            .map(|d| d.events.len())
            .unwrap_or_default()
    }

    pub(super) fn take_deferred(&self) -> Prepared {
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if d.events.is_empty() {
            return Prepared::default();
        }
        d.taken += 1;
        std::mem::take(&mut d.events)
    }

    /// Events taken for a commit that failed: ahead of any deferred since,
    /// for the session's next commit to try again.
    pub(super) fn put_back(&self, mut earlier: Prepared) {
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        earlier.extend(std::mem::take(&mut d.events));
        d.events = earlier;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{note, stored_notes};
    use super::super::{Event, Redactor, Session, Store};

    fn started() -> (tempfile::TempDir, Arc<Store>, Arc<Session>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("t.db")).expect("open"));
        let session =
            Session::start(Arc::clone(&store), "alice", "offline", "test").expect("start");
        (dir, store, session)
    }

    #[test]
    fn deferred_events_go_first_into_the_next_commit() {
        let (_dir, store, session) = started();
        let (shown, ticket) = session.defer(&[note("call-1 ended")]).expect("defer");
        let ticket = ticket.expect("nothing was waiting before: a new batch");
        assert_eq!(shown, vec![note("call-1 ended")]);
        let (_, again) = session.defer(&[note("run finished")]).expect("defer");
        assert_eq!(again, None, "the same batch, with its flush arranged");
        assert!(stored_notes(&store, &session).is_empty(), "not durable yet");
        assert_eq!(session.deferred_len(), 2);
        let folded = session.with_state(|s| s.events);

        let record = session.record(note("call-2 started")).expect("record");
        assert_eq!(
            record.event,
            note("call-2 started"),
            "the caller's own record"
        );
        assert_eq!(
            stored_notes(&store, &session),
            ["call-1 ended", "run finished", "call-2 started"]
        );
        assert_eq!(session.deferred_len(), 0);
        assert_eq!(
            session.with_state(|s| s.events),
            folded + 3,
            "all three folded"
        );

        // The flush arranged for that batch leaves a later one alone.
        let (_, later) = session.defer(&[note("call-2 ended")]).expect("defer");
        session.flush_deferred(ticket).expect("flush");
        assert_eq!(session.deferred_len(), 1, "not the flush of this batch");
        session
            .flush_deferred(later.expect("a new batch"))
            .expect("flush");
        assert_eq!(session.deferred_len(), 0);
        assert_eq!(stored_notes(&store, &session).len(), 4);
        assert!(
            matches!(
                store.verify().expect("verify"),
                super::super::ChainReport::Whole { .. }
            ),
            "the chain is whole"
        );
    }

    #[test]
    fn a_flush_or_the_end_of_the_session_makes_them_durable() {
        let (_dir, store, session) = started();
        let (_, ticket) = session.defer(&[note("flushed")]).expect("defer");
        session
            .flush_deferred(ticket.expect("batch"))
            .expect("flush");
        session
            .flush_deferred(ticket.expect("batch"))
            .expect("a second flush of a batch does nothing");
        assert_eq!(stored_notes(&store, &session), ["flushed"]);

        session.defer(&[note("left at the end")]).expect("defer");
        let id = session.id.clone();
        drop(session);
        let kinds: Vec<&str> = store
            .events(&id)
            .expect("events")
            .iter()
            .map(|r| r.event.kind())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .take(2)
            .collect();
        assert_eq!(kinds, ["lease_released", "note"], "deferred, then released");
    }

    #[test]
    fn what_is_shown_of_a_deferred_event_is_redacted() {
        let (_dir, store, session) = started();
        store.set_redactor(Redactor::new(&["password".into()], &[]).expect("redactor"));
        let (shown, _) = session
            .defer(&[note("connect with password=hunter2")])
            .expect("defer");
        let Event::Note { text } = &shown[0] else {
            panic!("{shown:?}")
        };
        assert!(
            !text.contains("hunter2") && text.contains("[redacted]"),
            "{text}"
        );
        session.record_all(&[]).expect("commit");
        assert_eq!(stored_notes(&store, &session), std::slice::from_ref(text));
    }
}
