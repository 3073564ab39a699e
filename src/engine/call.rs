//! One tool call, with its progress reports recorded as they arrive.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::mcp::{CallError, CallOptions, Servers, ToolOutput};
use crate::plan::StepId;
use crate::session::{Event, Session};

pub(super) async fn call_with_progress(
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
