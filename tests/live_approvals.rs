//! The engine waits for approvals given while it runs (as the TUI gives
//! them): approve, skip, and an edit that withdraws an approval.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use opsbot::engine::{ApprovalDesk, Approvals};
use opsbot::policy::args_hash;
use opsbot::runtime::Planned;
use opsbot::session::{Event, Outcome, StepStatus};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_wait_at_the_desk_until_approved_skipped_or_edited() {
    let home = Home::new();
    let rt = runtime(&home);
    rt.servers.wait_settled().await;
    let session = rt.new_session("tester").expect("session");
    let Planned::Ready { plan, decisions } = rt
        .plan_request(&session, "deploy search to dev")
        .await
        .expect("plan")
    else {
        panic!("expected a plan");
    };
    let desk = Arc::new(ApprovalDesk::new());
    let approvals = Approvals::Live(Arc::clone(&desk));
    let mut records = session.subscribe();

    let runner = {
        let session = Arc::clone(&session);
        let plan = plan.clone();
        let decisions = decisions.clone();
        async move {
            rt.run(
                &session,
                &plan,
                &decisions,
                &approvals,
                CancellationToken::new(),
            )
            .await
        }
    };
    let driver = async {
        let mut edited = false;
        loop {
            let record = tokio::time::timeout(Duration::from_secs(20), records.recv())
                .await
                .expect("the engine stalled")
                .expect("records");
            match &record.event {
                Event::AwaitingApproval { step, .. } if step.as_str() == "notify" => {
                    desk.skip(step.clone(), "skipped by tester".into());
                }
                Event::AwaitingApproval { step, .. } if step.as_str() == "deploy" && !edited => {
                    // Approve, then edit: the approval no longer covers the args, so it waits again.
                    let s = plan.step(step).expect("deploy");
                    desk.approve(step.clone(), args_hash(&s.tool, &s.args));
                    let mut args = s.args.clone();
                    args.insert("env".into(), "staging".into());
                    desk.edit(step.clone(), args.clone());
                    edited = true;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert!(
                        desk.running().is_empty(),
                        "an edited step must not run on the old approval"
                    );
                    desk.approve(step.clone(), args_hash(&s.tool, &args));
                }
                Event::AwaitingApproval { step, .. } => {
                    let s = plan.step(step).expect("step");
                    desk.approve(step.clone(), args_hash(&s.tool, &s.args));
                }
                Event::RunFinished { .. } => break,
                _ => {}
            }
        }
        edited
    };
    let (outcome, edited) = tokio::join!(runner, driver);
    assert!(edited);
    assert_eq!(
        outcome.expect("run"),
        Outcome::Failed,
        "verify fails: it checks dev"
    );
    let st = session.state();
    assert_eq!(
        st.steps[&opsbot::plan::StepId::new("notify")].status(),
        StepStatus::Skipped
    );
    assert_eq!(
        st.steps[&opsbot::plan::StepId::new("verify")].status(),
        StepStatus::Failed,
        "verify checks dev, the deploy went to staging"
    );
    let k8s = home.sandbox_state("k8s.json");
    assert_eq!(
        k8s["deployments"]["search/staging"]["current"], 1,
        "the edited args ran"
    );
    assert!(k8s["deployments"]["search/dev"].is_null());
}
