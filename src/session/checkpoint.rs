//! WAL checkpoints off the append path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, and it syncs the database file: that commit, and so the tool
//! call waiting on it, pays for copying the whole WAL. Here the writer's
//! connection never checkpoints; every few hundred commits it nudges a
//! thread of its own, which runs a passive checkpoint on a second
//! connection while appends go on, then indexes the new events for search
//! and tallies them for insights.

use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;

/// Commits between two checkpoints: about what SQLite's default of 1000
/// WAL pages comes to for small events.
pub(super) const EVERY: u64 = 256;
/// At most this many records are tallied for insights as a process ends.
const EXIT_TALLY: i64 = 20_000;

pub(super) struct Checkpointer {
    /// Taken by the thread's writes and by the appends of this process:
    /// an append waits for the thread here, woken as it finishes, rather
    /// than in SQLite's busy handler, which sleeps a millisecond and more.
    gate: Arc<Mutex<()>>,
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Open the second connection and start the thread; None if the
    /// connection cannot be opened (the writer then checkpoints itself).
    pub(super) fn start(path: &Path) -> Option<Self> {
        let conn = Connection::open(path).ok()?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
        let (nudge, nudged) = sync_channel::<()>(1);
        let gate = Arc::new(Mutex::new(()));
        let held = Arc::clone(&gate);
        let thread = std::thread::Builder::new()
            .name("opsbot-checkpoint".into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("audit log checkpoint failed (it is retried later): {e}");
                    }
                    // Keep search and the insights tallies current while the app runs.
                    if let Err(e) = super::search::catch_up(&conn, Some(&held)) {
                        tracing::warn!("indexing the audit log for search failed: {e}");
                    }
                    if let Err(e) = super::rollup::catch_up(&conn, None, Some(&held)) {
                        tracing::warn!("tallying the audit log for insights failed: {e}");
                    }
                }
                // A short-lived process (`opsbot run`) seldom reaches a
                // nudge: tally what it wrote as it ends, a bounded amount.
                if let Err(e) = super::rollup::catch_up(&conn, Some(EXIT_TALLY), Some(&held)) {
                    tracing::warn!("tallying the audit log for insights failed: {e}");
                }
            })
            .ok()?;
        Some(Self {
            gate,
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// SQLite's quick check of a large log, off the start-up path: a
    /// problem found puts the store in its fault, which stops appends.
    pub(super) fn check_integrity(
        &self,
        fault: tokio::sync::watch::Sender<Option<super::StoreFault>>,
        path: std::path::PathBuf,
    ) {
        let spawned = std::thread::Builder::new()
            .name("opsbot-integrity".into())
            .spawn(move || {
                let Ok(conn) = Connection::open(&path) else {
                    return;
                };
                let first: Result<String, _> =
                    conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
                let detail = match first {
                    Ok(ok) if ok == "ok" => return,
                    Ok(problem) => problem,
                    Err(e) => e.to_string(),
                };
                let found = super::StoreFault::Corrupt { path, detail };
                tracing::error!("{found}");
                fault.send_if_modified(|f| f.is_none() && f.replace(found).is_none());
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot check the audit log's integrity: {e}");
        }
    }

    /// Hold off the thread's writes while an append commits.
    pub(super) fn hold(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask for a checkpoint; one already asked for and not yet run counts.
    pub(super) fn nudge(&self) {
        if let Some(n) = &self.nudge
            && let Err(TrySendError::Disconnected(())) = n.try_send(())
        {
            tracing::warn!("the audit log's checkpoint thread has stopped");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
