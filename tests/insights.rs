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
        let end = if *ok {
            Event::StepSucceeded {
                step: step("deploy"),
                output: opsbot::mcp::ToolOutput {
                    is_error: false,
                    text: "ok".into(),
                    structured: None,
                    truncated: None,
                    content: None,
                    meta: None,
                    task: None,
                },
                duration_ms: *ms,
            }
        } else {
            Event::StepFailed {
                step: step("deploy"),
                error: "rollout stuck".into(),
                output: None,
                duration_ms: *ms,
            }
        };
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
