//! How a served call's end reaches its client and the log: its progress
//! relayed until the run is over, and its answer taken from the end as it
//! will be stored.

use rmcp::model::ProgressNotificationParam;
use rmcp::service::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::plan::StepId;
use crate::session::{Event, Session, StepState};

/// Pass a step's progress events to the client as they are recorded,
/// until the step ends or `run_over` is cancelled with none left to pass.
pub(super) fn relay_progress(
    session: &Session,
    peer: Peer<RoleServer>,
    token: rmcp::model::ProgressToken,
    id: StepId,
    run_over: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    // Subscribed now, before the run records anything.
    let mut records = session.subscribe();
    async move {
        loop {
            // Biased: what was recorded before the run was over is passed
            // on before its end is noticed.
            let record = tokio::select! {
                biased;
                r = records.recv() => match r {
                    Ok(r) => r,
                    Err(_) => return,
                },
                () = run_over.cancelled() => return,
            };
            match record.event {
                Event::StepProgress { step, progress } if step == id => {
                    let mut note = ProgressNotificationParam::new(token.clone(), progress.progress);
                    note.total = progress.total;
                    note.message = progress.message;
                    if peer.notify_progress(note).await.is_err() {
                        return;
                    }
                }
                Event::StepSucceeded { step, .. }
                | Event::StepFailed { step, .. }
                | Event::StepNotStarted { step, .. }
                | Event::StepSkipped { step, .. }
                    if step == id =>
                {
                    return;
                }
                _ => {}
            }
        }
    }
}

/// The step as the log holds it, with its end taken from `deferred` (the
/// run's last events, not durable yet) when it is there.
pub(super) fn step_end(session: &Session, id: &StepId, deferred: &[Event]) -> StepState {
    let mut st = session.with_state(|s| s.steps.get(id).cloned().unwrap_or_default());
    for e in deferred {
        if let Event::StepSucceeded { step, .. }
        | Event::StepFailed { step, .. }
        | Event::StepNotStarted { step, .. }
        | Event::StepSkipped { step, .. } = e
            && step == id
        {
            st.end(e);
        }
    }
    st
}
