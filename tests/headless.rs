//! End-to-end runs of the real binary against the sandbox estate over MCP
//! stdio, checked through what the store and the sandbox state hold.

mod common;

use common::*;
use opsbot::plan::StepId;
use opsbot::session::{ChainReport, Event, StepStatus};

fn status(state: &opsbot::session::SessionState, step: &str) -> StepStatus {
    state.steps[&StepId::new(step)].status()
}

#[test]
fn deploy_to_staging_runs_end_to_end_through_every_server() {
    let home = Home::new();
    let out = home.run(
        &["run", "deploy checkout to staging", "--yes", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["outcome"], "succeeded");

    let records = home.last_session();
    let st = state(&records);
    for step in [
        "build",
        "test",
        "scan",
        "verify_image",
        "deploy",
        "verify",
        "notify",
    ] {
        assert_eq!(status(&st, step), StepStatus::Succeeded, "{step}");
    }
    // Every sandbox server took part.
    let tools: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepStarted { tool, .. } => Some(tool.clone()),
            _ => None,
        })
        .collect();
    for server in ["ci.", "quality.", "registry.", "k8s.", "monitor.", "chat."] {
        assert!(
            tools.iter().any(|t| t.starts_with(server)),
            "{server} not called: {tools:?}"
        );
    }
    // The image built is the image deployed, and it is live in the sandbox.
    let image = st.steps[&StepId::new("build")]
        .output
        .as_ref()
        .expect("build output")
        .value()["image"]
        .clone();
    let k8s = home.sandbox_state("k8s.json");
    let dep = &k8s["deployments"]["checkout/staging"];
    assert_eq!(dep["current"], 1);
    assert_eq!(dep["revisions"][0]["image"], image);
    let chat = home.sandbox_state("chat.json");
    let posted = chat["channels"]["#deploys"][0]["text"]
        .as_str()
        .expect("a message");
    assert!(
        posted.contains(image.as_str().expect("image")) && posted.contains("healthy"),
        "{posted}"
    );

    // Stored in order: decisions and approvals before starts, each start before its result.
    assert!(
        position(&records, |e| matches!(e, Event::PolicyDecision { .. }))
            < position(&records, |e| matches!(e, Event::Approved { .. }))
    );
    assert!(
        position(&records, |e| matches!(e, Event::Approved { .. }))
            < position(&records, |e| matches!(e, Event::StepStarted { .. }))
    );
    for r in &records {
        if let Event::StepSucceeded { step, .. } = &r.event {
            let started = position(
                &records,
                |e| matches!(e, Event::StepStarted { step: s, .. } if s == step),
            );
            assert!(
                started.is_some_and(|p| records[p].seq < r.seq),
                "{step} finished before it started"
            );
        }
    }
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(matches!(
        home.store().verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

#[test]
fn production_deploy_without_approval_does_not_run_the_gated_step_and_says_why() {
    let home = Home::new();
    let out = home.run(&["run", "deploy checkout to production", "--yes"], &[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "awaiting approval; stderr:\n{}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("k8s.deploy changes production, a gated environment"),
        "{text}"
    );
    assert!(text.contains("confirm by typing `production`"), "{text}");

    let st = state(&home.last_session());
    assert_eq!(
        status(&st, "test"),
        StepStatus::Succeeded,
        "ungated steps ran"
    );
    assert_eq!(status(&st, "deploy"), StepStatus::Skipped);
    let reason = st.steps[&StepId::new("deploy")]
        .skipped_reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("gated"), "{reason}");
    assert_eq!(
        st.steps[&StepId::new("deploy")]
            .decision
            .as_ref()
            .map(|d| d.rule().to_string())
            .as_deref(),
        Some("builtin.gated-env")
    );
    assert!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/production"].is_null(),
        "nothing deployed"
    );

    // With the gate explicitly approved it runs.
    let out = home.run(
        &[
            "run",
            "deploy checkout to production",
            "--yes",
            "--approve-gated",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/production"]["current"],
        1
    );
}

#[test]
fn a_failing_test_suite_stops_the_chain_before_deploy() {
    let home = Home::new();
    let out = home.run(
        &["run", "ship payments to staging", "--yes"],
        &[("OPSBOT_SANDBOX_FAULTS", "run_tests=fail@payments")],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let records = home.last_session();
    let st = state(&records);
    assert_eq!(status(&st, "test"), StepStatus::Failed);
    assert!(
        st.steps[&StepId::new("test")]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("tests failed in payments")
    );
    for step in ["deploy", "verify", "notify"] {
        assert_eq!(status(&st, step), StepStatus::Skipped, "{step}");
    }
    assert_eq!(
        st.steps[&StepId::new("deploy")].skipped_reason.as_deref(),
        Some("`test` failed")
    );
    assert!(home.sandbox_state("k8s.json")["deployments"]["payments/staging"].is_null());
    assert!(
        !records
            .iter()
            .any(|r| matches!(&r.event, Event::StepStarted { tool, .. } if tool == "k8s.deploy")),
        "deploy was never called"
    );
    // Every event of the session, in order, ending with the run's outcome
    // and the driver letting the session go.
    let k = kinds(&records);
    assert_eq!(k.first(), Some(&"session_started"));
    assert_eq!(k[k.len() - 2..], ["run_finished", "lease_released"]);
    assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    assert!(matches!(
        home.store().verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

#[test]
fn unclear_requests_get_a_question_and_nothing_runs() {
    let home = Home::new();
    let out = home.run(&["run", "deploy chekout to staging"], &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stdout(&out).contains("Did you mean `checkout`?"),
        "{}",
        stdout(&out)
    );
    let records = home.last_session();
    assert!(
        !records
            .iter()
            .any(|r| matches!(r.event, Event::StepStarted { .. }))
    );
    assert!(
        records
            .iter()
            .any(|r| matches!(r.event, Event::ClarificationAsked { .. }))
    );
}

#[test]
fn bad_config_names_file_line_and_the_fix() {
    let home = Home::new();
    let cfg = home.write_config("bad.toml", "[servers.ci]\ncomand = \"x\"\n");
    let out = home.run(&["--config", cfg.to_str().expect("utf8"), "tools"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.toml:2:1: unknown key `comand`; did you mean `command`?"),
        "{err}"
    );
}

#[test]
fn a_server_that_fails_to_start_is_named_with_its_stderr_and_the_others_work() {
    let home = Home::new();
    let cfg = home.write_config(
        "extra.toml",
        "[servers.grumpy]\ncommand = \"sh\"\nargs = [\"-c\", \"echo 'fatal: missing API token' >&2; exit 3\"]\n\n[servers.ghost]\ncommand = \"/nonexistent/mcp-server\"\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let out = home.run(&["--config", cfg, "tools"], &[]);
    assert_eq!(out.status.code(), Some(1), "not every server is up");
    let text = stdout(&out);
    assert!(
        text.contains("✗ grumpy: failed: exited before it finished starting (exit status: 3)"),
        "{text}"
    );
    assert!(text.contains("stderr: fatal: missing API token"), "{text}");
    assert!(
        text.contains("✗ ghost: failed: cannot start `/nonexistent/mcp-server`: not found"),
        "{text}"
    );
    assert!(text.contains("● k8s: ready, 4 tools"), "{text}");

    let out = home.run(
        &["--config", cfg, "run", "deploy search to dev", "--yes"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the healthy servers still deploy; stderr:\n{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("warning: server `grumpy` is not available"));
    let records = home.last_session();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::ServerProblem { server, .. } if server == "ghost"))
    );
}

#[test]
fn a_server_that_crashes_mid_call_is_reported_and_nothing_stored_is_lost() {
    let home = Home::new();
    let out = home.run(
        &["run", "deploy catalog to dev", "--yes"],
        &[("OPSBOT_SANDBOX_FAULTS", "deploy=crash")],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let records = home.last_session();
    let st = state(&records);
    for step in ["build", "test", "scan", "verify_image"] {
        assert_eq!(status(&st, step), StepStatus::Succeeded, "{step} kept");
    }
    let err = st.steps[&StepId::new("deploy")]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        err.contains("server `k8s` exited during the call (exit status: 70)"),
        "{err}"
    );
    assert!(err.contains("sandbox: simulated crash in deploy"), "{err}");
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::ServerProblem { server, .. } if server == "k8s"))
    );
    assert!(matches!(
        home.store().verify().expect("verify"),
        ChainReport::Whole { .. }
    ));

    // The next run starts a fresh server and history still has the crashed session.
    let out = home.run(&["run", "deploy catalog to dev", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let out = home.run(&["history", "list"], &[]);
    let list = stdout(&out);
    assert!(
        list.contains("failed") && list.contains("succeeded"),
        "{list}"
    );
}

#[test]
fn a_hung_call_times_out_and_garbage_on_stdout_is_reported() {
    let home = Home::new();
    let cfg = home.write_config("fast.toml", "[servers.k8s]\ntimeout_ms = 500\n");
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("utf8"),
            "run",
            "deploy search to dev",
            "--yes",
        ],
        &[("OPSBOT_SANDBOX_FAULTS", "deploy=hang;verify_image=garbage")],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let records = home.last_session();
    let st = state(&records);
    let err = st.steps[&StepId::new("deploy")]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        err.starts_with("`k8s.deploy` did not answer within 500 ms; the call was cancelled")
            && err.contains("not retried: k8s.deploy may not be safe to call twice"),
        "{err}"
    );
    assert_eq!(
        status(&st, "verify_image"),
        StepStatus::Succeeded,
        "garbage does not break the server"
    );
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::ServerProblem { server, message } if server == "registry" && message.contains("not JSON-RPC"))));
    // The hung server ignored EOF; shutdown killed it rather than leaving it behind.
    assert_eq!(sandbox_processes_of(&home), Vec::<u32>::new());
}

#[test]
fn history_reads_the_store_offline() {
    let home = Home::new();
    let out = home.run(&["run", "how is search doing in staging", "--yes"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "search is not deployed in staging, so health fails"
    );
    let list = stdout(&home.run(&["history", "list"], &[]));
    let id = list.split_whitespace().next().expect("a session id");
    let shown = home.run(&["history", "show", &id[..12]], &[]);
    let text = stdout(&shown);
    assert!(
        text.contains("you     how is search doing in staging"),
        "{text}"
    );
    assert!(text.contains("✗ health"), "{text}");
    assert!(text.contains("= failed"), "{text}");
}

#[test]
fn auth_stores_in_the_keyring_or_says_why_it_cannot() {
    use std::io::Write;
    let home = Home::new();
    let cfg = home.write_config("llm.toml", "[llm.profiles.ci-test]\nmodel = \"m\"\n");
    let cfg = cfg.to_str().expect("utf8");
    let mut child = home
        .cmd(&["--config", cfg, "auth", "set", "ci-test"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"sk-test-not-a-real-key\n")
        .expect("write key");
    let out = child.wait_with_output().expect("auth set");
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(
        !so.contains("sk-test") && !se.contains("sk-test"),
        "the key is never printed"
    );
    if out.status.success() {
        assert!(
            so.contains("stored the key for `ci-test` in the OS keyring"),
            "{so}"
        );
        let rm = home.run(&["--config", cfg, "auth", "rm", "ci-test"], &[]);
        assert!(
            stdout(&rm).contains("removed the key for `ci-test`"),
            "{}",
            stdout(&rm)
        );
    } else {
        assert_eq!(out.status.code(), Some(2));
        assert!(
            se.contains("no keyring service is available here") && se.contains("api_key_env"),
            "{se}"
        );
    }
    let out = home.run(&["--config", cfg, "auth", "set", "nope"], &[]);
    assert!(
        stderr(&out).contains("no LLM profile `nope`"),
        "{}",
        stderr(&out)
    );
}
