//! The orchestrator against the sandbox and a raw fixture server:
//! parallelism seen from the server's side, per-server limits, retries of
//! idempotent tools only, the circuit breaker, conditions and
//! continue_on_error, capped outputs, and the undo of a failed deploy.

mod common;

use common::*;
use opsbot::plan::{Plan, Step, StepId};
use opsbot::session::{Event, Outcome, Record};
use serde_json::{Value, json};

fn step(id: &str, tool: &str, a: Value, deps: &[&str]) -> Step {
    Step {
        depends_on: deps.iter().map(|d| StepId::new(*d)).collect(),
        ..Step::new(id, tool, args(a))
    }
}

fn max_concurrency(home: &Home) -> usize {
    std::fs::read_dir(home.path().join("data/sandbox"))
        .expect("sandbox dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("max-concurrency-")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn sixteen_status_checks() -> Plan {
    let services = ["checkout", "payments", "catalog", "search"];
    let envs = ["dev", "staging", "production", "dev"];
    Plan {
        title: "sixteen checks".into(),
        steps: (0..16)
            .map(|i| {
                step(
                    &format!("s{i}"),
                    "k8s.status",
                    json!({"service": services[i % 4], "env": envs[i / 4]}),
                    &[],
                )
            })
            .collect(),
    }
}

/// Each status call takes a second on the server: long enough that, even
/// on a loaded machine, sixteen calls sent together are all in flight at
/// once if and only if the engine sends them together.
const SLOW_K8S: &str = "[servers.k8s]\nenv = { OPSBOT_SANDBOX_FAULTS = \"status=slow:1000\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_independent_steps_run_side_by_side() {
    let home = Home::new();
    let rt = runtime_with(&home, &format!("[engine]\nmax_parallel = 16\n{SLOW_K8S}"));
    let s = rt.new_session("dev").expect("session");
    assert_eq!(
        run_approved(&rt, &s, &sixteen_status_checks()).await,
        Outcome::Succeeded
    );
    rt.servers.shutdown().await;
    assert_eq!(
        max_concurrency(&home),
        16,
        "the server saw all sixteen calls at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_server_limit_holds() {
    let home = Home::new();
    let rt = runtime_with(
        &home,
        "[engine]\nmax_parallel = 16\n[servers.k8s]\nmax_concurrency = 3\nenv = { OPSBOT_SANDBOX_FAULTS = \"status=slow:1000\" }\n",
    );
    let s = rt.new_session("dev").expect("session");
    assert_eq!(
        run_approved(&rt, &s, &sixteen_status_checks()).await,
        Outcome::Succeeded
    );
    rt.servers.shutdown().await;
    assert_eq!(max_concurrency(&home), 3);
}

fn events<'a>(records: &'a [Record], f: impl Fn(&Event) -> bool + 'a) -> Vec<&'a Event> {
    records.iter().map(|r| &r.event).filter(|e| f(e)).collect()
}

fn build_and_deploy(env: &str) -> Plan {
    Plan {
        title: format!("deploy checkout to {env}"),
        steps: vec![
            step(
                "build",
                "ci.build",
                json!({"service": "checkout", "ref": "main"}),
                &[],
            ),
            step(
                "deploy",
                "k8s.deploy",
                json!({"service": "checkout", "env": env, "image": "${build.image}"}),
                &["build"],
            ),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_idempotent_deploy_succeeds_on_retry_and_a_non_idempotent_one_is_not_retried() {
    let flaky = "env = { OPSBOT_SANDBOX_FAULTS = \"deploy=flaky:2\" }\nretry_base_ms = 10\n";
    let home = Home::new();
    let rt = runtime_with(
        &home,
        &format!("[servers.k8s]\nidempotent = [\"deploy\"]\n{flaky}"),
    );
    let s = rt.new_session("dev").expect("session");
    assert_eq!(
        run_approved(&rt, &s, &build_and_deploy("dev")).await,
        Outcome::Succeeded
    );
    rt.servers.shutdown().await;
    let records = home.last_session();
    let retries = events(&records, |e| matches!(e, Event::StepRetrying { .. }));
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        matches!(retries[0], Event::StepRetrying { attempt: 1, error, .. } if error.contains("transient error"))
    );

    let home = Home::new();
    let rt = runtime_with(&home, &format!("[servers.k8s]\n{flaky}"));
    let s = rt.new_session("dev").expect("session");
    assert_eq!(
        run_approved(&rt, &s, &build_and_deploy("dev")).await,
        Outcome::Failed
    );
    rt.servers.shutdown().await;
    let records = home.last_session();
    assert!(events(&records, |e| matches!(e, Event::StepRetrying { .. })).is_empty());
    let failed = events(&records, |e| matches!(e, Event::StepFailed { .. }));
    assert!(
        matches!(failed[0], Event::StepFailed { error, .. } if error.contains("not retried: k8s.deploy may not be safe to call twice")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_opens_its_breaker_and_calls_fail_fast() {
    let home = Home::new();
    let rt = runtime_with(
        &home,
        "[servers.k8s]\nbreaker_failures = 3\nbreaker_cooldown_ms = 60000\nretries = 0\nenv = { OPSBOT_SANDBOX_FAULTS = \"status=fail\" }\n",
    );
    let s = rt.new_session("dev").expect("session");
    rt.watch_servers(&s);
    let mut plan = Plan {
        title: "five checks in a row".into(),
        steps: Vec::new(),
    };
    for i in 0..5 {
        let prev = format!("s{}", i.max(1) - 1);
        let deps: Vec<&str> = if i == 0 { vec![] } else { vec![prev.as_str()] };
        let mut st = step(
            &format!("s{i}"),
            "k8s.status",
            json!({"service": "checkout", "env": "dev"}),
            &deps,
        );
        st.continue_on_error = true;
        plan.steps.push(st);
    }
    run_approved(&rt, &s, &plan).await;
    let breakers = rt.servers.breakers();
    rt.servers.shutdown().await;
    let records = home.last_session();
    let errors: Vec<String> = events(&records, |e| matches!(e, Event::StepFailed { .. }))
        .into_iter()
        .filter_map(|e| match e {
            Event::StepFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(
        errors.iter().all(|e| e.contains("injected fault")),
        "{errors:?}"
    );
    // With the breaker open the calls never left opsbot: not started.
    let never: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepNotStarted { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(never.len(), 2);
    assert!(
        never.iter().all(|e| e.contains("circuit breaker is open")),
        "{never:?}"
    );
    assert!(
        breakers
            .iter()
            .any(|(name, b)| name == "k8s" && matches!(b, opsbot::mcp::BreakerState::Open { .. }))
    );
    assert!(records.iter().any(|r| matches!(&r.event, Event::ServerProblem { server, message } if server == "k8s" && message.contains("circuit breaker open"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_continue_on_error_choose_the_branch() {
    let home = Home::new();
    let rt = runtime_with(&home, "");
    let s = rt.new_session("dev").expect("session");
    // checkout is not deployed in dev: the health check fails, and is allowed to.
    let mut health = step(
        "health",
        "monitor.health",
        json!({"service": "checkout", "env": "dev"}),
        &[],
    );
    health.continue_on_error = true;
    let mut on_fail = step(
        "tell",
        "chat.notify",
        json!({"channel": "#oncall", "text": "checkout/dev is down"}),
        &["health"],
    );
    on_fail.when = Some(r#"health.status == "failed" and health.status != "skipped""#.into());
    let mut on_ok = step(
        "celebrate",
        "chat.notify",
        json!({"channel": "#deploys", "text": "all good"}),
        &["health"],
    );
    on_ok.when = Some(r#"health.status == "succeeded""#.into());
    let plan = Plan {
        title: "check and tell".into(),
        steps: vec![health, on_fail, on_ok],
    };
    rt.servers.wait_settled().await;
    opsbot::plan::validate(&plan, &rt.servers.catalog()).expect("valid");
    assert_eq!(
        run_approved(&rt, &s, &plan).await,
        Outcome::Succeeded,
        "a tolerated failure does not fail the run"
    );
    rt.servers.shutdown().await;
    let st = s.state();
    assert_eq!(
        st.steps[&StepId::new("tell")].status(),
        opsbot::session::StepStatus::Succeeded
    );
    assert_eq!(
        st.steps[&StepId::new("celebrate")].status(),
        opsbot::session::StepStatus::Skipped
    );
    assert!(
        st.steps[&StepId::new("celebrate")]
            .skipped_reason
            .as_deref()
            .is_some_and(|r| r.contains("condition"))
    );

    // A condition on a step that is not a dependency is refused before running.
    let mut bad = plan.clone();
    bad.steps[2].depends_on.clear();
    let errors = opsbot::plan::validate(&bad, &rt.servers.catalog()).expect_err("invalid");
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("not a step this one depends on")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_output_is_stored_capped_with_its_size_and_hash() {
    let home = Home::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire_server.py");
    let rt = runtime_with(
        &home,
        &format!(
            "[engine]\noutput_cap_bytes = 65536\n[servers.wire]\ncommand = \"python3\"\nargs = [{script:?}]\nenv = {{ WIRE_BIG = \"1\" }}\n"
        ),
    );
    let s = rt.new_session("dev").expect("session");
    let plan = Plan {
        title: "big".into(),
        steps: vec![step("big", "wire.big", json!({"bytes": 10_000_000}), &[])],
    };
    assert_eq!(run_approved(&rt, &s, &plan).await, Outcome::Succeeded);
    rt.servers.shutdown().await;
    let records = home.last_session();
    let out = records
        .iter()
        .find_map(|r| match &r.event {
            Event::StepSucceeded { output, .. } => Some(output.clone()),
            _ => None,
        })
        .expect("output");
    assert_eq!(out.text.len(), 65536);
    let t = out.truncated.expect("marked as cut");
    assert_eq!(t.original_bytes, 10_000_000);
    assert_eq!(t.sha256.len(), 64);
    // The view takes it without trouble.
    let mut app = opsbot::tui::app::App::new(
        opsbot::tui::keymap::KeyMap::new(&Default::default()),
        "s".into(),
        "runbook".into(),
        "step".into(),
    );
    for r in &records {
        app.apply(r);
    }
    let chat: usize = app.chat.iter().map(|c| c.text.len()).sum();
    assert!(
        chat < 20_000,
        "the chat keeps a short view of it: {chat} bytes"
    );
}

#[test]
fn a_failed_production_health_check_is_undone_after_approval() {
    let home = Home::new();
    let env = [(
        "OPSBOT_SANDBOX_FAULTS",
        "health=unhealthy@checkout/production",
    )];
    // A first, healthy release to go back to.
    let out = home.run(
        &[
            "run",
            "deploy checkout to production",
            "--yes",
            "--approve-gated",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let before = home.sandbox_state("k8s.json");
    let first = before["deployments"]["checkout/production"]["current"].clone();
    // The next one fails its health check; the undo is proposed and run.
    let out = home.run(
        &[
            "run",
            "deploy checkout to production",
            "--yes",
            "--approve-gated",
            "--undo",
        ],
        &env,
    );
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("proposed undo"), "{text}");
    assert!(text.contains("undo succeeded"), "{text}");
    let after = home.sandbox_state("k8s.json");
    assert_eq!(
        after["deployments"]["checkout/production"]["current"], first,
        "the previous revision is live"
    );
    let records = home.last_session();
    assert!(records.iter().any(
        |r| matches!(&r.event, Event::StepSucceeded { step, .. } if step.as_str() == "undo_deploy")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_crashes_mid_call_is_restarted_and_the_run_goes_on() {
    let home = Home::new();
    let rt = runtime_with(
        &home,
        "[servers.k8s]\nretries = 4\nretry_base_ms = 300\nenv = { OPSBOT_SANDBOX_FAULTS = \"status=crash@checkout\" }\n",
    );
    let s = rt.new_session("dev").expect("session");
    rt.watch_servers(&s);
    let mut first = step(
        "first",
        "k8s.status",
        json!({"service": "checkout", "env": "dev"}),
        &[],
    );
    first.continue_on_error = true;
    let then = step(
        "then",
        "k8s.status",
        json!({"service": "payments", "env": "dev"}),
        &["first"],
    );
    let plan = Plan {
        title: "crash, then carry on".into(),
        steps: vec![first, then],
    };
    assert_eq!(run_approved(&rt, &s, &plan).await, Outcome::Succeeded);
    let k8s_ready = rt
        .servers
        .statuses()
        .into_iter()
        .any(|(name, st)| name == "k8s" && st.is_ready());
    rt.servers.shutdown().await;
    let st = s.state();
    let first = &st.steps[&StepId::new("first")];
    assert_eq!(first.status(), opsbot::session::StepStatus::Failed);
    assert!(
        first.retries >= 1,
        "a read-only call is retried after a crash"
    );
    assert!(
        first
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exited during the call") || e.contains("not available")),
        "{:?}",
        first.error
    );
    assert_eq!(
        st.steps[&StepId::new("then")].status(),
        opsbot::session::StepStatus::Succeeded
    );
    assert!(k8s_ready, "the server was restarted");
    let records = home.last_session();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::ServerProblem { server, .. } if server == "k8s"))
    );
}

#[test]
fn two_services_deploy_side_by_side_from_one_request() {
    let home = Home::new();
    let out = home.run(
        &["run", "deploy checkout and payments to staging", "--yes"],
        &[],
    );
    assert_exit(&out, 0);
    let k8s = home.sandbox_state("k8s.json");
    for service in ["checkout", "payments"] {
        assert!(
            k8s["deployments"][format!("{service}/staging")]["current"]
                .as_u64()
                .is_some(),
            "{service} deployed: {k8s}"
        );
    }
    let records = home.last_session();
    let started: Vec<&str> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepStarted { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    // Both chains started before either finished its build: side by side.
    let first_two: Vec<&str> = started.iter().take(2).copied().collect();
    assert!(
        first_two.contains(&"checkout_build") && first_two.contains(&"payments_build"),
        "{started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_sends_calls_to_the_fallback_server() {
    let home = Home::new();
    let rt = runtime_with(
        &home,
        "[servers.k8s]\nbreaker_failures = 1\nretries = 0\nfallback = \"k8s-standby\"\nenv = { OPSBOT_SANDBOX_FAULTS = \"status=fail\" }\n[servers.k8s-standby]\ncommand = \"{exe}\"\nargs = [\"sandbox\", \"k8s\"]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0\", OPSBOT_SANDBOX_DIR = \"{data_dir}/sandbox\" }\n",
    );
    let s = rt.new_session("dev").expect("session");
    let mut first = step(
        "first",
        "k8s.status",
        json!({"service": "checkout", "env": "dev"}),
        &[],
    );
    first.continue_on_error = true;
    let second = step(
        "second",
        "k8s.status",
        json!({"service": "checkout", "env": "dev"}),
        &["first"],
    );
    let plan = Plan {
        title: "fail over".into(),
        steps: vec![first, second],
    };
    assert_eq!(run_approved(&rt, &s, &plan).await, Outcome::Succeeded);
    rt.servers.shutdown().await;
    let st = s.state();
    assert_eq!(
        st.steps[&StepId::new("first")].status(),
        opsbot::session::StepStatus::Failed
    );
    assert_eq!(
        st.steps[&StepId::new("second")].status(),
        opsbot::session::StepStatus::Succeeded,
        "served by the standby while the breaker is open"
    );
}

/// A deploy that never reached its server (the breaker was open) is `not
/// started` and leaves no `deploy.failed` effect: later deploys of that
/// service are not blocked by a failure that never happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_never_sent_is_not_started_and_leaves_no_failure_effect() {
    let home = Home::new();
    let rt = runtime_with(
        &home,
        "[servers.k8s]\nbreaker_failures = 1\nbreaker_cooldown_ms = 600000\nretries = 0\nenv = { OPSBOT_SANDBOX_FAULTS = \"deploy=fail@checkout\" }\n",
    );
    let deploy = |service: &str| Plan {
        title: format!("deploy {service}"),
        steps: vec![step(
            "deploy",
            "k8s.deploy",
            json!({"service": service, "image": format!("registry.local/{service}:1"), "env": "dev"}),
            &[],
        )],
    };
    let s = rt.new_session("dev").expect("session");
    assert_eq!(
        run_approved(&rt, &s, &deploy("checkout")).await,
        Outcome::Failed
    );
    assert_eq!(
        run_approved(&rt, &s, &deploy("payments")).await,
        Outcome::Failed
    );
    rt.servers.shutdown().await;
    let records = home.last_session();
    let effects: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Effect { effect, scope, .. } => Some(format!(
                "{effect}{{{}}}",
                scope.get("service").cloned().unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        effects,
        vec!["deploy.failed{checkout}"],
        "{:?}",
        kinds(&records)
    );
    let not_started = records
        .iter()
        .filter(|r| matches!(r.event, Event::StepNotStarted { .. }))
        .count();
    assert_eq!(not_started, 1);
    let state = state(&records);
    assert_eq!(
        state.steps[&StepId::new("deploy")].status(),
        opsbot::session::StepStatus::NotStarted
    );
    assert!(home.sandbox_state("k8s.json")["deployments"]["payments/dev"].is_null());
}

/// A run's end waits on no commit: with another connection holding the
/// log's write lock, a run still ends, its last result and its finish
/// already in the journal; the commit follows once the lock is gone, and
/// the chain is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_with_its_end_journaled_and_committed_behind() {
    let home = Home::new();
    let rt = runtime_with(&home, "");
    let s = rt.new_session("dev").expect("session");
    let plan = Plan {
        title: "two checks".into(),
        steps: vec![
            step(
                "a",
                "k8s.status",
                json!({"service": "checkout", "env": "dev"}),
                &[],
            ),
            step(
                "b",
                "k8s.status",
                json!({"service": "payments", "env": "dev"}),
                &["a"],
            ),
        ],
    };
    // A first run records what a tool's first use records.
    assert_eq!(run_approved(&rt, &s, &plan).await, Outcome::Succeeded);
    let decisions = rt.decide_plan(&s, &plan, &rt.servers.catalog());
    let approvals = decisions
        .iter()
        .filter_map(|(id, d)| {
            let hash = rt.approve(&s, &plan, id, d.gate().is_some(), None);
            Some((id.clone(), hash.expect("approve")?))
        })
        .collect();

    let journaled_ends = || home.journaled().matches("run_finished").count();
    let before = journaled_ends();
    let blocker = home.lock_log();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        rt.run(
            &s,
            &plan,
            &decisions,
            &opsbot::engine::Approvals::Fixed(approvals),
            tokio_util::sync::CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ended with the log locked")
    .expect("run");
    assert_eq!(outcome, Outcome::Succeeded);
    let finished_in_log = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM events WHERE session_id = ?1 AND body LIKE '%run_finished%'",
            [s.id.as_str()],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert_eq!(finished_in_log(&blocker), 1, "only the first run's end");
    assert_eq!(
        journaled_ends(),
        before + 1,
        "the second run's end is in the journal"
    );

    drop(blocker);
    s.settle().expect("the commit behind");
    let store = home.store();
    let records = store.events(&s.id).expect("events");
    let ends = events(&records, |e| matches!(e, Event::RunFinished { .. }));
    assert_eq!(ends.len(), 2, "{:?}", kinds(&records));
    assert!(
        matches!(
            store.verify().expect("verify"),
            opsbot::session::ChainReport::Whole { .. }
        ),
        "the chain is whole"
    );
    rt.servers.shutdown().await;
}
