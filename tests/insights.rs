//! `opsbot insights` over a log with known contents: counts, rates,
//! percentiles, approval waits, denials and model use are what the records
//! say, offline.

mod common;

use common::*;
use opsbot::plan::StepId;
use opsbot::policy::Decision;
use opsbot::session::{Event, Outcome, SessionId};

fn step(id: &str) -> StepId {
    StepId::new(id)
}

/// How step `id` ended after `ms`: succeeded, or failed with `error`.
fn step_end(id: &str, ms: u64, ok: bool, error: &str) -> Event {
    if ok {
        Event::StepSucceeded {
            step: step(id),
            output: opsbot::mcp::ToolOutput {
                is_error: false,
                text: "ok".into(),
                structured: None,
                truncated: None,
                content: None,
                meta: None,
                task: None,
            },
            duration_ms: ms,
        }
    } else {
        Event::StepFailed {
            step: step(id),
            error: error.into(),
            output: None,
            duration_ms: ms,
        }
    }
}

#[test]
fn insights_are_what_the_records_say() {
    let home = Home::new();
    let store = home.store();
    // Four runs: three deploys (one fails), one denied.
    for (i, (ms, ok)) in [(100u64, true), (200, true), (900, false)]
        .iter()
        .enumerate()
    {
        let id = SessionId::from_stored(format!("20261201-12000{i}-abcd"));
        store.create_session(&id, "alice").expect("session");
        let end = step_end("deploy", *ms, *ok, "rollout stuck");
        store
            .append_all(
                &id,
                "alice",
                &[
                    Event::UserMessage {
                        text: "deploy checkout to staging".into(),
                    },
                    Event::AwaitingApproval {
                        step: step("deploy"),
                        gated: false,
                    },
                    Event::Approved {
                        step: step("deploy"),
                        by: "alice".into(),
                        args_hash: "h".into(),
                        gated: false,
                        reason: None,
                        from: None,
                    },
                    Event::StepStarted {
                        step: step("deploy"),
                        tool: "k8s.deploy".into(),
                        args: Default::default(),
                    },
                    end,
                    Event::LlmCall {
                        profile: "p".into(),
                        model: "m".into(),
                        prompt_tokens: 100,
                        completion_tokens: 20,
                        cost_usd: Some(0.01),
                        duration_ms: 5,
                        status: "ok".into(),
                    },
                    Event::RunFinished {
                        outcome: if *ok {
                            Outcome::Succeeded
                        } else {
                            Outcome::Failed
                        },
                        summary: "done".into(),
                    },
                ],
            )
            .expect("append");
    }
    let id = SessionId::from_stored("20261201-130000-abcd".to_string());
    store.create_session(&id, "bob").expect("session");
    store
        .append_all(
            &id,
            "bob",
            &[
                Event::UserMessage {
                    text: "deploy payments to production".into(),
                },
                Event::PolicyDecision {
                    step: step("deploy"),
                    decision: Decision::Deny {
                        rule: "rule.no-prod".into(),
                        reason: "not you".into(),
                    },
                },
                Event::RunFinished {
                    outcome: Outcome::Denied,
                    summary: "denied".into(),
                },
            ],
        )
        .expect("append");
    drop(store);

    let out = home.run(&["insights", "--json"], &[]);
    assert_exit(&out, 0);
    let i = json(&out);
    assert_eq!(i["runs"], 4);
    assert_eq!(i["succeeded"], 2);
    assert_eq!(i["success_rate"], 0.5);
    let deploy = &i["tools"][0];
    assert_eq!(deploy["tool"], "k8s.deploy");
    assert_eq!(
        (deploy["calls"].as_u64(), deploy["failures"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        (deploy["p50_ms"].as_u64(), deploy["p95_ms"].as_u64()),
        (Some(200), Some(900))
    );
    assert_eq!(i["failures_by_server"][0], serde_json::json!(["k8s", 1]));
    assert_eq!(i["approvals"], 3);
    assert_eq!(i["denials"][0], serde_json::json!(["rule.no-prod", 1]));
    assert_eq!(i["llm_tokens"], 360);
    assert!((i["llm_cost_usd"].as_f64().unwrap_or(0.0) - 0.03).abs() < 1e-9);
    let days = i["days"].as_array().expect("days");
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!(days[0]["outcomes"]["failed"], 1);

    let table = stdout(&home.run(&["insights"], &[]));
    for says in [
        "4 runs, 50% of those that ended succeeded",
        "k8s.deploy",
        "failed steps by server: k8s 1",
        "denied by rule: rule.no-prod 1",
        "model use: 360 tokens, $0.03",
    ] {
        assert!(table.contains(says), "{says}: {table}");
    }
    // Nothing since tomorrow.
    let later = json(&home.run(&["insights", "--since", "2099-01-01", "--json"], &[]));
    assert_eq!(later["runs"], 0);
}

/// A run of one step of `tool` taking `ms`, ending as `ok` says.
fn one_step_run(store: &opsbot::session::Store, id: &str, tool: &str, ms: u64, ok: bool) {
    let id = SessionId::from_stored(id.to_string());
    store.create_session(&id, "alice").expect("session");
    let end = step_end("s", ms, ok, "no");
    store
        .append_all(
            &id,
            "alice",
            &[
                Event::UserMessage {
                    text: format!("run {tool}"),
                },
                Event::StepStarted {
                    step: step("s"),
                    tool: tool.into(),
                    args: Default::default(),
                },
                end,
                Event::RunFinished {
                    outcome: if ok {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    },
                    summary: "done".into(),
                },
            ],
        )
        .expect("append");
}

#[test]
fn stored_tallies_and_the_untallied_tail_add_up_and_repair_rebuilds_them() {
    let home = Home::new();
    let store = home.store();
    for i in 0..10u64 {
        one_step_run(
            &store,
            &format!("20261201-1000{i:02}-abcd"),
            "k8s.status",
            10 + i,
            true,
        );
    }
    // A writer's insights tally what it has not yet: everything, here.
    let tallied = store.insights(None).expect("insights");
    assert_eq!(tallied.tools[0].calls, 10);
    assert_eq!(tallied.tools[0].p50_ms, 15);
    // Written after the tallies, read by the read-only CLI from the log.
    for i in 0..5u64 {
        one_step_run(
            &store,
            &format!("20261201-1100{i:02}-abcd"),
            "k8s.deploy",
            2_000 + i,
            i != 0,
        );
    }
    drop(store);
    let cli = json(&home.run(&["insights", "--json"], &[]));
    assert_eq!(cli["runs"], 15);
    let tool = |name: &str| {
        cli["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .find(|t| t["tool"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {cli}"))
    };
    assert_eq!(tool("k8s.status")["calls"], 10);
    assert_eq!(tool("k8s.deploy")["calls"], 5);
    assert_eq!(tool("k8s.deploy")["failures"], 1);
    // Three significant digits above 1,000 ms: 2,002 is reported as 2,000.
    assert_eq!(tool("k8s.deploy")["p50_ms"], 2_000);
    // The same, once the writer has tallied the rest.
    let store = home.store();
    let all = store.insights(None).expect("insights");
    // (Through text both ways: the CLI's numbers were printed and parsed.)
    let as_printed = |i: &opsbot::session::Insights| -> serde_json::Value {
        serde_json::from_str(&serde_json::to_string(i).expect("json")).expect("parse")
    };
    assert_eq!(as_printed(&all), cli);

    // Tallies edited behind opsbot's back are rebuilt from the chain.
    let conn = rusqlite::Connection::open(home.path().join("data/opsbot.db")).expect("db");
    conn.execute(
        "UPDATE rollup_steps SET calls = calls + 100, failures = 0",
        [],
    )
    .expect("edit");
    drop(conn);
    let edited = store.insights(None).expect("insights");
    assert_ne!(as_printed(&edited), cli);
    drop(store);
    let repaired = home.run(&["audit", "verify", "--repair"], &[]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert_eq!(json(&home.run(&["insights", "--json"], &[])), cli);
}
