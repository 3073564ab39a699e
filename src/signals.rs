//! The signals that ask opsbot to stop: Ctrl-C (SIGINT), SIGTERM (a
//! service manager, `kill`) and SIGHUP (the terminal went away). All three
//! mean the same: cancel what runs, record why, and end in order, never
//! leaving a session merely "interrupted" when there was time to say so.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::session::{Event, Session};

/// A listener for the stop signals.
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next stop signal's name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                r = tokio::signal::ctrl_c() => { if r.is_err() { std::future::pending::<()>().await; } "Ctrl-C" }
                _ = self.term.recv() => "SIGTERM",
                _ = self.hup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// The note a stop signal leaves in the session it cancels.
pub fn stop_note(signal: &str) -> Event {
    Event::Note {
        text: format!("{signal} received: cancelling what runs, as with Ctrl-C"),
    }
}

/// For headless commands: the first stop signal is recorded in the
/// session (once it exists, and while the command holds it: the listener
/// must not keep it alive past the runtime) and cancels `cancel`; `on_first` tells the
/// person; a second one ends the process at once (exit 130).
pub fn cancel_on_stop(
    session: std::sync::Weak<std::sync::OnceLock<Arc<Session>>>,
    cancel: CancellationToken,
    on_first: impl Fn(&str) + Send + 'static,
) {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for stop signals: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        let which = signals.next().await;
        on_first(which);
        if let Some(driven) = session.upgrade()
            && let Some(s) = driven.get()
            && let Err(e) = s.record(stop_note(which))
        {
            tracing::error!("cannot record {which}: {e}");
        }
        cancel.cancel();
        signals.next().await;
        std::process::exit(130);
    });
}
