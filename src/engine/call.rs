//! One step's call: its tries, with retries of idempotent tools, and the
//! progress reports of each, recorded as they arrive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::retry::{self, RetryPolicy};
use crate::mcp::{CallError, CallOptions, Servers, ToolOutput};
use crate::plan::StepId;
use crate::session::{Event, Session};

async fn call_with_progress(
    servers: &Servers,
    session: &Arc<Session>,
    id: &StepId,
    tool: &str,
    args: Map<String, Value>,
    mut opts: CallOptions,
) -> Result<ToolOutput, CallError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    opts.progress = Some(tx);
    let call = servers.call(tool, args, opts);
    tokio::pin!(call);
    let record = |progress| {
        if let Err(e) = session.record(Event::StepProgress {
            step: id.clone(),
            progress,
        }) {
            tracing::error!("cannot record progress: {e}");
        }
    };
    loop {
        tokio::select! {
            result = &mut call => {
                while let Ok(p) = rx.try_recv() {
                    record(p);
                }
                return result;
            }
            Some(p) = rx.recv() => record(p),
        }
    }
}

/// A step's call, done: its result, how long it took (retries included),
/// and anything the engine adds to a failure.
pub(super) struct Finished {
    pub(super) id: StepId,
    pub(super) result: Result<ToolOutput, CallError>,
    pub(super) took: Duration,
    pub(super) note: Option<String>,
    /// Whether some try reached the server: then a last try that did not
    /// (the server restarting) still leaves a step that may have acted.
    pub(super) reached: bool,
}

/// One step's call, with its retries.
pub(super) struct StepCall {
    pub(super) servers: Servers,
    pub(super) session: Arc<Session>,
    pub(super) id: StepId,
    pub(super) tool: String,
    pub(super) args: Map<String, Value>,
    pub(super) timeout: Option<Duration>,
    pub(super) cancel: CancellationToken,
    pub(super) retry: RetryPolicy,
    /// The definition the run was planned against (maybe a cached one).
    pub(super) expect_def: Option<String>,
}

impl StepCall {
    pub(super) async fn run(self) -> Finished {
        let StepCall {
            servers,
            session,
            id,
            tool,
            args,
            timeout,
            cancel,
            retry,
            expect_def,
        } = self;
        let began = Instant::now();
        let mut attempt = 0;
        let mut reached = false;
        loop {
            let result = call_with_progress(
                &servers,
                &session,
                &id,
                &tool,
                args.clone(),
                CallOptions {
                    timeout,
                    progress: None,
                    cancel: Some(cancel.clone()),
                    expect_def: expect_def.clone(),
                },
            )
            .await;
            reached |= !matches!(&result, Err(e) if e.never_sent());
            let Some(why) = retry::transient(&result) else {
                return Finished {
                    id,
                    result,
                    took: began.elapsed(),
                    note: None,
                    reached,
                };
            };
            if !retry.idempotent {
                let note = (retry.max > 0).then(|| {
                    format!(
                        "not retried: {tool} may not be safe to call twice; list it under its server's `idempotent` to allow retries"
                    )
                });
                return Finished {
                    id,
                    result,
                    took: began.elapsed(),
                    note,
                    reached,
                };
            }
            if attempt >= retry.max || cancel.is_cancelled() {
                let note = (attempt > 0).then(|| format!("after {} tries", attempt + 1));
                return Finished {
                    id,
                    result,
                    took: began.elapsed(),
                    note,
                    reached,
                };
            }
            attempt += 1;
            let wait = retry.delay(attempt);
            // A retry is a call: one that cannot be recorded is not made.
            if let Err(e) = session.record(Event::StepRetrying {
                step: id.clone(),
                attempt,
                error: why,
                wait_ms: wait.as_millis() as u64,
            }) {
                return Finished {
                    id,
                    result,
                    took: began.elapsed(),
                    note: Some(format!("not retried: the retry could not be recorded: {e}")),
                    reached,
                };
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {
                    return Finished {
                        id,
                        result,
                        took: began.elapsed(),
                        note: Some("cancelled before retrying".into()),
                        reached,
                    };
                }
            }
        }
    }
}
