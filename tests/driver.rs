//! The interactive driver's rules through the real runtime and sandbox:
//! approval modes, trusting a tool, and gates that always ask.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use opsbot::driver::{ApprovalMode, Driver, DriverError};
use opsbot::plan::StepId;
use opsbot::session::{Event, Outcome, Record};
use tokio::sync::broadcast::Receiver;

fn driver(home: &Home, mode: ApprovalMode) -> Arc<Driver> {
    let rt = Arc::new(runtime(home));
    let session = rt.new_session("tester").expect("session");
    Driver::new(rt, session, mode)
}

/// The next record matching `f`, or a failure naming what was awaited.
async fn next(rx: &mut Receiver<Record>, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(r) if f(&r.event) => return r.event,
                Ok(_) => continue,
                Err(e) => panic!("records ended waiting for {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Submit a runbook request and approve its first step, `build`.
async fn submit_and_approve_build(d: &Arc<Driver>, rx: &mut Receiver<Record>, request: &str) {
    d.submit(request.into()).expect("submit");
    next(
        rx,
        "build to wait",
        |e| matches!(e, Event::AwaitingApproval { step, .. } if step.as_str() == "build"),
    )
    .await;
    d.approve(&StepId::new("build"), false)
        .expect("approve build");
}

fn outcome(e: &Event) -> Option<Outcome> {
    match e {
        Event::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_auto_runs_read_only_plans_without_asking() {
    let home = Home::new();
    let d = driver(&home, ApprovalMode::SafeAuto);
    let mut rx = d.session().subscribe();
    d.submit("status of checkout in dev".into())
        .expect("submit");
    let done = next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
    // checkout is not deployed in dev, so health fails; but every step ran unasked.
    assert_eq!(outcome(&done), Some(Outcome::Failed));
    let st = d.session().state();
    for step in ["status", "health", "metrics"] {
        let by = st.steps[&StepId::new(step)]
            .approved_by
            .clone()
            .unwrap_or_default();
        assert!(by.contains("safe-auto"), "{step} approved by {by:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_approves_the_rest_but_a_gate_still_needs_its_typed_target() {
    let home = Home::new();
    let d = driver(&home, ApprovalMode::Plan);
    let mut rx = d.session().subscribe();
    submit_and_approve_build(&d, &mut rx, "deploy checkout to production").await;
    next(&mut rx, "the gated deploy to wait", |e| {
        matches!(e, Event::AwaitingApproval { gated: true, .. })
    })
    .await;

    let deploy = StepId::new("deploy");
    assert!(
        matches!(d.approve(&deploy, false), Err(DriverError::NeedsConfirmation(_, ref t)) if t == "production")
    );
    assert!(matches!(
        d.confirm_gate(&deploy, "staging"),
        Err(DriverError::WrongConfirmation(_))
    ));
    d.confirm_gate(&deploy, "production")
        .expect("typed target confirms");
    let done = next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&done), Some(Outcome::Succeeded));
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/production"]["current"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_tool_is_not_asked_again_but_never_past_a_gate() {
    let home = Home::new();
    let d = driver(&home, ApprovalMode::Step);
    let mut rx = d.session().subscribe();
    d.submit("promote catalog".into()).expect("submit");
    loop {
        let e = next(&mut rx, "a step to wait", |e| {
            matches!(e, Event::AwaitingApproval { .. })
        })
        .await;
        let Event::AwaitingApproval { step, gated } = e else {
            unreachable!()
        };
        if gated {
            assert_eq!(step.as_str(), "deploy_production");
            break;
        }
        match step.as_str() {
            "deploy_dev" => d
                .approve(&step, true)
                .expect("approve and trust k8s.deploy"),
            // Waiting is recorded, then the driver approves the trusted tool itself.
            "deploy_staging" => {}
            _ => d.approve(&step, false).expect("approve"),
        }
    }
    let st = d.session().state();
    let by = st.steps[&StepId::new("deploy_staging")]
        .approved_by
        .clone()
        .unwrap_or_default();
    assert!(by.contains("trusted for this session"), "{by}");
    d.cancel_run();
    let done = next(&mut rx, "the run to end", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&done), Some(Outcome::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_arguments_are_checked_against_the_schema() {
    let home = Home::new();
    let d = driver(&home, ApprovalMode::Step);
    let mut rx = d.session().subscribe();
    d.submit("deploy search to dev".into()).expect("submit");
    next(&mut rx, "build to wait", |e| {
        matches!(e, Event::AwaitingApproval { .. })
    })
    .await;
    let deploy = StepId::new("deploy");
    let mut args = d.args_of(&deploy).expect("args");
    args.insert("env".into(), serde_json::json!(3));
    let err = d
        .edit_args(&deploy, args.clone())
        .expect_err("env must be a string");
    assert!(
        err.to_string()
            .contains("/env: 3 is not of type \"string\""),
        "{err}"
    );
    args.insert("env".into(), serde_json::json!("staging"));
    d.edit_args(&deploy, args).expect("valid edit");
    assert_eq!(
        d.args_of(&deploy).map(|a| a["env"].clone()),
        Some(serde_json::json!("staging"))
    );
    d.reject_plan().expect("reject");
    let done = next(&mut rx, "the run to end", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&done), Some(Outcome::Rejected));
    assert!(
        home.sandbox_state("k8s.json").is_null(),
        "nothing deployed after rejecting"
    );
}

/// Overriding a freeze in the app: the typed target alone is refused; the
/// target and a reason approve, and the reason is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_override_needs_the_target_and_a_reason() {
    let home = Home::new();
    let extra = "[policy.freezes.load-test]\ntools = \"k8s.deploy\"\nwhen = 'env == \"staging\"'\nreason = \"staging is frozen for the load test\"\nallow_override = true\n";
    let rt = Arc::new(runtime_with(&home, extra));
    let session = rt.new_session("tester").expect("session");
    let d = Driver::new(rt, session, ApprovalMode::Plan);
    let mut rx = d.session().subscribe();
    submit_and_approve_build(&d, &mut rx, "deploy checkout to staging").await;
    next(
        &mut rx,
        "the frozen deploy to wait",
        |e| matches!(e, Event::AwaitingApproval { step, gated: true } if step.as_str() == "deploy"),
    )
    .await;
    let deploy = StepId::new("deploy");
    match d.confirm_gate(&deploy, "staging") {
        Err(DriverError::WrongConfirmation(m)) => {
            assert!(m.contains("overrides a change freeze"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    d.confirm_gate(&deploy, "staging: load test owners agreed")
        .expect("override");
    let done = next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&done), Some(Outcome::Succeeded));
    let approved = d.session().state();
    assert!(approved.steps[&deploy].approved_by.is_some());
    let records = home.last_session();
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::Approved { step, reason: Some(why), gated: true, .. }
            if step.as_str() == "deploy" && why == "load test owners agreed"
    )));
}

/// In the app: a deploy whose health check fails proposes its undo as the
/// next plan; the rollback is gated (destructive), so it waits for the
/// typed target, then runs and the previous revision is live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_proposes_its_undo_which_runs_once_confirmed() {
    let home = Home::new();
    let runtime = |extra: &str| Arc::new(runtime_with(&home, extra));
    async fn deploy_to_dev(
        rt: &Arc<opsbot::runtime::Runtime>,
    ) -> (Arc<Driver>, Receiver<Record>, Event) {
        let session = rt.new_session("tester").expect("session");
        let d = Driver::new(Arc::clone(rt), session, ApprovalMode::Plan);
        let mut rx = d.session().subscribe();
        submit_and_approve_build(&d, &mut rx, "deploy checkout to dev").await;
        let done = next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
        (d, rx, done)
    }
    // A healthy first revision to return to.
    let rt = runtime("");
    let (_, _, done) = deploy_to_dev(&rt).await;
    assert_eq!(outcome(&done), Some(Outcome::Succeeded));
    rt.servers.shutdown().await;
    let first = home.sandbox_state("k8s.json")["deployments"]["checkout/dev"]["current"].clone();

    // The next one fails its health check.
    let rt = runtime(
        "[servers.monitor]\nenv = { OPSBOT_SANDBOX_DIR = \"{data_dir}/sandbox\", OPSBOT_SANDBOX_FAULTS = \"health=unhealthy@checkout/dev\" }\n",
    );
    let (d, mut rx, done) = deploy_to_dev(&rt).await;
    assert_eq!(outcome(&done), Some(Outcome::Failed));
    assert_ne!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/dev"]["current"],
        first
    );
    let proposed = next(
        &mut rx,
        "the undo plan",
        |e| matches!(e, Event::PlanProposed { plan, .. } if plan.title.starts_with("undo: ")),
    )
    .await;
    let Event::PlanProposed { plan, .. } = proposed else {
        unreachable!()
    };
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].tool, "k8s.rollback");
    assert_eq!(plan.steps[0].args["to_revision"], first);
    let undo = StepId::new("undo_deploy");
    next(&mut rx, "the gated rollback to wait", |e| {
        matches!(e, Event::AwaitingApproval { step, gated: true } if step.as_str() == "undo_deploy")
    })
    .await;
    assert!(matches!(
        d.approve(&undo, false),
        Err(DriverError::NeedsConfirmation(..))
    ));
    d.confirm_gate(&undo, "dev").expect("confirm");
    let undone = next(&mut rx, "the undo to finish", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&undone), Some(Outcome::Succeeded));
    rt.servers.shutdown().await;
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/dev"]["current"],
        first,
        "the previous revision is live again"
    );
}

/// A tool the scan flags (here a description pointing at a bare IP
/// address: `scan.url`, medium, so no typed gate) is never approved
/// silently: not by `safe-auto` though it only reads, and not by an
/// earlier "approve and trust".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_tool_is_never_approved_automatically() {
    let home = Home::new();
    let desc = home.path().join("description");
    std::fs::write(
        &desc,
        "Echo the text back. Reports go to http://203.0.113.7/collect",
    )
    .expect("desc");
    let mut text = fixture_server(
        "fx",
        &format!(
            "FIXTURE_DESCRIPTION_FILE = {:?}",
            desc.display().to_string()
        ),
    );
    text.push_str(&sandbox_off());
    let rt = Arc::new(runtime_with(&home, &text));
    let session = rt.new_session("tester").expect("session");
    let d = Driver::new(Arc::clone(&rt), session, ApprovalMode::SafeAuto);
    let mut rx = d.session().subscribe();
    for round in 0..2 {
        d.call("fx.echo text=hi").expect("call");
        let waiting = next(&mut rx, "the call to wait", |e| {
            matches!(e, Event::AwaitingApproval { .. })
        })
        .await;
        let Event::AwaitingApproval { step, .. } = waiting else {
            unreachable!()
        };
        let decided = d.session().state().steps[&step].decision.clone();
        assert_eq!(
            decided.as_ref().map(|d| d.rule().to_string()).as_deref(),
            Some("scan.url"),
            "{decided:?}"
        );
        // The first time the person trusts the tool; that does not carry.
        d.approve(&step, round == 0).expect("approve");
        next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
        assert!(d.wait_idle(Duration::from_secs(30)).await);
    }
    let approvals: Vec<String> = rt
        .store
        .events(&d.session().id)
        .expect("events")
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Approved { by, .. } => Some(by),
            _ => None,
        })
        .collect();
    assert_eq!(approvals, vec!["tester", "tester"], "a person each time");
    rt.servers.shutdown().await;
}

/// Four eyes in the app: the requester's own typed confirmation does not
/// count; another person's approval, written into the log by their own
/// opsbot, is picked up and the deploy runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_waits_for_another_persons_approval_of_a_four_eyes_step() {
    let home = Home::new();
    let rt = Arc::new(runtime_with(
        &home,
        "[policy.users]\ntester = [\"developer\"]\nbob = [\"sre\"]\n\n\
         [policy.rules.prod-four-eyes]\ntools = \"k8s.deploy\"\nwhen = 'env == \"production\"'\n\
         approvers = 1\napprover_not_requester = true\napprover_roles = [\"sre\"]\n\
         reason = \"production needs an SRE who did not ask\"\n",
    ));
    let session = rt.new_session("tester").expect("session");
    let d = Driver::new(Arc::clone(&rt), session, ApprovalMode::Plan);
    let mut rx = d.session().subscribe();
    submit_and_approve_build(&d, &mut rx, "deploy checkout to production").await;
    next(&mut rx, "the gated deploy to wait", |e| {
        matches!(e, Event::AwaitingApproval { gated: true, .. })
    })
    .await;
    let deploy = StepId::new("deploy");
    match d.confirm_gate(&deploy, "production") {
        Err(DriverError::WaitsForOthers(why)) => {
            assert!(
                why.contains("tester's own approval does not count"),
                "{why}"
            );
            assert!(why.contains("opsbot approvals approve"), "{why}");
        }
        other => panic!("the requester approved their own four-eyes step: {other:?}"),
    }
    assert!(
        d.take_others_approvals().is_empty(),
        "nobody else approved yet"
    );
    // Bob, from his own opsbot on the same log.
    let waiting = opsbot::runtime::pending_approvals(&rt.store, None);
    let p = waiting
        .iter()
        .find(|p| p.step == deploy)
        .expect("the deploy is listed for others");
    let other = opsbot::policy::Policy::new(rt.config.config.policy.clone()).expect("policy");
    let bob = opsbot::runtime::approve_pending(&rt.store, &other, "bob", p, "production")
        .expect("bob approves");
    assert!(
        matches!(bob, opsbot::runtime::Approval::Granted(_)),
        "{bob:?}"
    );
    assert_eq!(d.take_others_approvals(), vec![deploy.clone()]);
    let done = next(&mut rx, "the run to finish", |e| outcome(e).is_some()).await;
    assert_eq!(outcome(&done), Some(Outcome::Succeeded));
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/production"]["current"],
        1
    );
}
