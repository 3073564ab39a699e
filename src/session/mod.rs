//! The session: one source of truth for everything that happens.
//!
//! Every fact is an [`Event`] appended to the store *before* it is acted on;
//! state is a fold over events; views subscribe to the records as they land.

mod checkpoint;
mod deferred;
mod derived;
pub use derived::UNSIGNED_PIN;
mod describe;
mod event;
mod export;
mod fault;
mod feed;
mod id;
mod insights;
mod journal;
mod lease;
mod migrate;
pub use migrate::Migrated;
mod open;
pub use open::{open_store, open_store_read};
pub use pg::PgOptions;
mod pending;
pub mod pg;
mod pins;
mod redact;
pub mod report;
mod retention;
mod rollup;
mod seal;
mod search;
mod state;
mod store;
mod verify;

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

pub use deferred::Ticket;
pub use describe::{compact, describe, duration, usd};
pub use event::{Event, Outcome};
pub use fault::StoreFault;
pub use insights::{Day, Insights, ToolStats, sparkline};
pub(crate) use lease::host_name;
pub use lease::{Lease, LeaseHolder};
pub use pending::{Pending, pending_in};
pub use pins::Pin;
pub use redact::{BadPattern, REDACTED, RedactingWriter, Redactor, set_for_logs};
pub use retention::{PruneReport, Retention};
pub use seal::{Head, KEY_FILE, Proof, Seal, SealError, anchor_path, parse_anchor};
pub use search::{Found, Query};
pub use state::{
    Message, RESULTS_KEPT, Role, SeenResult, SessionState, Spend, StepState, StepStatus,
};
pub use store::{
    GENESIS, Prepared, Record, SessionId, SessionSummary, Store, StoreError, link_hash,
};
pub use verify::{ChainReport, Verification};

/// A live session: appends events durably, folds them, and tells listeners.
pub struct Session {
    pub id: SessionId,
    pub actor: String,
    store: Arc<Store>,
    state: Mutex<SessionState>,
    records: broadcast::Sender<Record>,
    /// Held while this process drives the session; none for a process that
    /// only answers into it (an approval from another app).
    lease: Option<Lease>,
    /// Held from an append until its records are told: listeners (the
    /// app's view skips what it has seen by sequence number) must hear
    /// records in the order they were written, whichever thread wrote them.
    order: Mutex<()>,
    /// The newest of this session's records folded here: what other
    /// processes wrote after it is taken in by `take_in_others`.
    seen: std::sync::atomic::AtomicI64,
    /// Events that happened but are not durable yet (see `defer`): they
    /// go first into the session's next commit.
    deferred: Mutex<deferred::Deferred>,
}

impl Session {
    /// A new session, driven by this process (`driver`: app, run, serve).
    pub fn start(
        store: Arc<Store>,
        actor: &str,
        planner: &str,
        driver: &str,
    ) -> Result<Arc<Self>, StoreError> {
        let mut id = SessionId::generate();
        let mut tries = 0;
        while let Err(e) = store.create_session(&id, actor) {
            tries += 1;
            if tries == 5 {
                return Err(e);
            }
            id = SessionId::generate();
        }
        let (lease, _) = store.take_lease(&id, driver)?;
        let holder = lease.holder.clone();
        let session = Arc::new(Self::with(
            store,
            &id,
            actor,
            SessionState::default(),
            Some(lease),
            0,
        ));
        session.record_all(&[
            Event::SessionStarted {
                actor: actor.to_string(),
                planner: planner.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            Event::SessionLeased {
                holder,
                took_over: None,
            },
        ])?;
        Ok(session)
    }

    fn with(
        store: Arc<Store>,
        id: &SessionId,
        actor: &str,
        state: SessionState,
        lease: Option<Lease>,
        seen: i64,
    ) -> Self {
        let (records, _) = broadcast::channel(1024);
        Self {
            id: id.clone(),
            actor: actor.to_string(),
            store,
            state: Mutex::new(state),
            records,
            lease,
            order: Mutex::new(()),
            seen: std::sync::atomic::AtomicI64::new(seen),
            deferred: Mutex::new(deferred::Deferred::default()),
        }
    }

    /// Fold, and tell listeners of, what other processes wrote into this
    /// session since: an approval given in another person's app or with
    /// `opsbot approvals`. Returns how many records were taken in.
    pub fn take_in_others(&self) -> Result<usize, StoreError> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.seen.load(std::sync::atomic::Ordering::Acquire);
        let newer: Vec<Record> = self
            .store
            .events(&self.id)?
            .into_iter()
            .filter(|r| r.seq > seen)
            .collect();
        for r in &newer {
            self.landed(r);
        }
        Ok(newer.len())
    }

    /// Reopen a stored session to drive it: the lease is taken first (a
    /// session another process drives is refused, naming it), then its
    /// state is replayed from the store and new events continue its record.
    pub fn resume(
        store: Arc<Store>,
        id: &SessionId,
        actor: &str,
        driver: &str,
    ) -> Result<Arc<Self>, StoreError> {
        let (lease, took_over) = store.take_lease(id, driver)?;
        let holder = lease.holder.clone();
        // A lease taken over is one whose process ended: what it journaled
        // and did not commit is in the log before the session is read, so
        // no step it started runs again.
        store.recover_journals()?;
        let session = Self::open(store, id, actor, Some(lease))?;
        session.record(Event::SessionLeased { holder, took_over })?;
        Ok(session)
    }

    /// A stored session, to answer into without driving it: an approval
    /// or a refusal for a call that waits in a session another process
    /// serves. Takes no lease.
    pub fn attach(store: Arc<Store>, id: &SessionId, actor: &str) -> Result<Arc<Self>, StoreError> {
        Self::open(store, id, actor, None)
    }

    fn open(
        store: Arc<Store>,
        id: &SessionId,
        actor: &str,
        lease: Option<Lease>,
    ) -> Result<Arc<Self>, StoreError> {
        let records = store.events(id)?;
        if records.is_empty() {
            return Err(StoreError::NoSuchSession(id.to_string()));
        }
        let state = SessionState::replay(&records);
        let seen = records.last().map_or(0, |r| r.seq);
        Ok(Arc::new(Self::with(store, id, actor, state, lease, seen)))
    }

    /// Store the event, then fold it, then tell listeners. If storing fails
    /// the event did not happen: the caller must not act on it.
    pub fn record(&self, event: Event) -> Result<Record, StoreError> {
        self.record_all(std::slice::from_ref(&event))?
            .pop()
            .ok_or_else(|| StoreError::NoSuchSession(self.id.to_string()))
    }

    /// As `record`, for several events made durable together. Events the
    /// session deferred go first, in the same commit; the records returned
    /// are those of `events`.
    pub fn record_all(&self, events: &[Event]) -> Result<Vec<Record>, StoreError> {
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        self.record_in_order(&order, events)
    }

    /// `record_all`'s work, with the order lock held.
    fn record_in_order(
        &self,
        _order: &std::sync::MutexGuard<'_, ()>,
        events: &[Event],
    ) -> Result<Vec<Record>, StoreError> {
        // Prepared before the deferred are taken: a failure here leaves
        // them waiting where they are.
        let fresh = self.store.prepare(events)?;
        let mut batch = self.take_deferred();
        if batch.is_empty() && fresh.is_empty() {
            return Ok(Vec::new());
        }
        let before = batch.len();
        batch.extend(fresh);
        let mut records = match self.store.append_prepared(&self.id, &self.actor, &batch) {
            Ok(records) => records,
            Err(e) => {
                // Only what was deferred waits for the next commit: the
                // caller has `events` back in the error.
                batch.truncate(before);
                self.put_back(batch);
                return Err(e);
            }
        };
        for r in &records {
            self.landed(r);
        }
        Ok(records.split_off(records.len().saturating_sub(events.len())))
    }

    fn landed(&self, record: &Record) {
        self.seen
            .fetch_max(record.seq, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut state) = self.state.lock() {
            state.apply(record);
        }
        // Most served sessions have no one listening: no copy for no one.
        if self.records.receiver_count() > 0 {
            let _ = self.records.send(record.clone());
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Record> {
        self.records.subscribe()
    }

    /// Look at the current state without copying it: a long session's
    /// state is large, and a caller often needs one step of it.
    pub fn with_state<R>(&self, f: impl FnOnce(&SessionState) -> R) -> R {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// A copy of the current state.
    pub fn state(&self) -> SessionState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Who drives this session, when this process does.
    pub fn lease(&self) -> Option<&LeaseHolder> {
        self.lease.as_ref().map(|l| &l.holder)
    }
}

impl Drop for Session {
    /// Letting go of a session is recorded; the lock itself goes with the
    /// lease (and with the process, however it ends).
    fn drop(&mut self) {
        // What was deferred (a served call's end) and the release, in one
        // commit.
        let mut last = self.take_deferred();
        if let Some(lease) = &self.lease {
            let released = Event::LeaseReleased {
                pid: lease.holder.pid,
            };
            match self.store.prepare(&[released]) {
                Ok(released) => last.extend(released),
                Err(e) => tracing::warn!("cannot record the release of session {}: {e}", self.id),
            }
        }
        if !last.is_empty()
            && let Err(e) = self.store.append_prepared(&self.id, &self.actor, &last)
        {
            tracing::error!(
                "cannot record the end of session {} (its last results, the release of its lease): {e}",
                self.id
            );
        }
    }
}

/// A record with placeholder chain fields, for unit tests that fold events.
#[cfg(test)]
pub(crate) fn test_record(seq: i64, event: Event) -> Record {
    Record {
        seq,
        session: SessionId::from_stored("s"),
        ts: "2026-11-21T12:00:00.000Z".into(),
        actor: "a".into(),
        event,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// The OS user, the default actor: from the environment, else (on Linux)
/// from the process's uid and /etc/passwd.
/// Who this process acts as on its store, when `[store] identity` says.
static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Act as `who` from now on (set once, from the store's config).
pub fn set_identity(who: &str) {
    let _ = IDENTITY.set(who.to_string());
}

pub fn os_user() -> String {
    if let Some(who) = IDENTITY.get() {
        return who.clone();
    }
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into())
}

fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

/// Notes as events, and read back from the store, for unit tests of how
/// events reach the log.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Event, Session, Store};

    pub(crate) fn note(text: &str) -> Event {
        Event::Note { text: text.into() }
    }

    /// The notes on record for the session, in chain order.
    pub(crate) fn stored_notes(store: &Store, session: &Session) -> Vec<String> {
        store
            .events(&session.id)
            .expect("events")
            .into_iter()
            .filter_map(|r| match r.event {
                Event::Note { text } => Some(text),
                _ => None,
            })
            .collect()
    }
}
