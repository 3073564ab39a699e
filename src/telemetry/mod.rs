//! OpenTelemetry export of the audit log (`[telemetry]`).
//!
//! The log is the source: records are exported after they are stored,
//! from a thread of its own with its own connection to the log, so a run
//! never waits on a collector and a collector that is down loses nothing.
//! What is exported is what the log holds, redacted as it was stored.

pub mod map;
pub mod otlp;
mod pump;

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

pub use pump::{ExportError, LOGS_CURSOR, Lag, Pump, Sent, TRACES_CURSOR};

use crate::config::TelemetryConfig;
use crate::session::Store;

/// The longest wait between two attempts while the collector is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Send what is left, within the flush time, and end.
struct Stop;

/// The export thread, while it is held. Dropping it sends what is left
/// (for at most `flush_timeout_ms`) and ends the thread.
pub struct Exporter {
    stop: Option<mpsc::Sender<Stop>>,
    /// Why the export is failing now (None: it is not), for views.
    health: tokio::sync::watch::Sender<Option<String>>,
    /// (In a mutex only to be shared: the runtime that holds it is.)
    done: std::sync::Mutex<mpsc::Receiver<()>>,
    flush: Duration,
}

impl Exporter {
    /// Start exporting `store` as `cfg` says; None without an endpoint (or
    /// for a log opened read-only). A header that cannot be filled in (a
    /// keyring entry missing) is an error: the user asked for an export.
    pub fn start(store: &Arc<Store>, cfg: &TelemetryConfig) -> Result<Option<Self>, ExportError> {
        if cfg.otlp_endpoint.is_none() || store.is_read_only() || !(cfg.logs || cfg.traces) {
            return Ok(None);
        }
        let pump = Pump::new(Arc::clone(store), cfg)?;
        pump.prepare()?;
        let (stop, asked) = mpsc::channel();
        let (finished, done) = mpsc::channel();
        let interval = Duration::from_millis(cfg.interval_ms);
        let flush = Duration::from_millis(cfg.flush_timeout_ms);
        let store = Arc::clone(store);
        let health = tokio::sync::watch::Sender::new(None);
        let reports = health.clone();
        std::thread::Builder::new()
            .name("opsbot-telemetry".into())
            .spawn(move || {
                let worker = Worker {
                    pump,
                    store,
                    interval,
                    flush,
                    health: reports,
                };
                worker.run(asked);
                let _ = finished.send(());
            })
            .map_err(|e| ExportError::Unreachable {
                url: cfg.otlp_endpoint.clone().unwrap_or_default(),
                detail: format!("cannot start the export thread: {e}"),
            })?;
        Ok(Some(Self {
            health,
            stop: Some(stop),
            done: std::sync::Mutex::new(done),
            flush,
        }))
    }

    /// Follow the export's health: `Some(why)` while it is failing. A
    /// collector that is down must not go unnoticed for days.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.health.subscribe()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(a) = self.stop.take() {
            let _ = a.send(Stop);
        }
        // The thread bounds its own flush; this bounds the wait for it, in
        // case a request is stuck past its time limit.
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(self.flush + Duration::from_millis(500));
        }
    }
}

struct Worker {
    pump: Pump,
    store: Arc<Store>,
    interval: Duration,
    flush: Duration,
    health: tokio::sync::watch::Sender<Option<String>>,
}

impl Worker {
    fn run(mut self, asked: mpsc::Receiver<Stop>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("telemetry export cannot start: {e}");
                return;
            }
        };
        let pid = std::process::id();
        // How long this process's turn lasts without being renewed: another
        // opsbot on the same log takes over after that once this one ends.
        let turn = (self.interval * 3).max(Duration::from_secs(30));
        let mut failing: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        let mut next_try = Instant::now();
        loop {
            let wait = next_try.saturating_duration_since(Instant::now());
            let stop = match asked.recv_timeout(wait.max(Duration::from_millis(1))) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(Stop) | Err(RecvTimeoutError::Disconnected) => true,
            };
            if !stop && Instant::now() < next_try {
                continue;
            }
            let now_ms = unix_ms();
            let until = now_ms + i64::try_from(turn.as_millis()).unwrap_or(i64::MAX / 2);
            match self.store.claim_turn("otlp_turn", pid, now_ms, until) {
                Ok(true) => {}
                Ok(false) if stop => return,
                Ok(false) => {
                    next_try = Instant::now() + self.interval;
                    continue;
                }
                Err(e) => tracing::warn!("telemetry: cannot take the export's turn: {e}"),
            }
            let pass = if stop {
                let (flush, pump) = (self.flush, &mut self.pump);
                match rt
                    .block_on(async { tokio::time::timeout(flush, pump.export_pending()).await })
                {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(
                            "telemetry: what was not sent in {} ms goes with the next export",
                            self.flush.as_millis()
                        );
                        self.release(pid);
                        return;
                    }
                }
            } else {
                rt.block_on(self.pump.export_pending())
            };
            match pass {
                Ok(sent) => {
                    self.health.send_if_modified(|h| h.take().is_some());
                    if let Some(was) = failing.take() {
                        tracing::info!(
                            "telemetry export resumed after: {was} ({} records, {} runs sent)",
                            sent.logs,
                            sent.runs
                        );
                    }
                    backoff = Duration::from_secs(1);
                    next_try = Instant::now() + self.interval;
                }
                Err(e) => {
                    let message = e.to_string();
                    if failing.as_deref() != Some(message.as_str()) {
                        tracing::warn!("{message}");
                        self.health.send_replace(Some(message.clone()));
                    }
                    failing = Some(message);
                    next_try = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if stop {
                self.release(pid);
                return;
            }
        }
    }

    /// Give up the turn at once, so another opsbot need not wait it out.
    fn release(&self, pid: u32) {
        let _ = self.store.claim_turn("otlp_turn", pid, unix_ms(), 0);
    }
}

fn unix_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
