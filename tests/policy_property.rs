//! A property over random plans, random policies and random approvals, run
//! for real against the sandbox: no call is made unless policy allowed it
//! (or it needed approval and was approved for exactly those arguments)
//! before the call, and was not denied when it was about to run.

mod common;

use std::collections::HashMap;

use common::*;
use opsbot::engine::Approvals;
use opsbot::plan::{Plan, Step, StepId};
use opsbot::policy::{Decision, args_hash};
use opsbot::session::{Event, Record};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
[policy]
default_roles = ["developer"]
[policy.rules.no-production]
tools = "k8s.*"
when = 'env == "production"'
verdict = "deny"
reason = "no production in this test"
[policy.rules.scan-needs-tests]
tools = "quality.scan"
requires = ["tests.passed"]
reason = "scan after tests"
[policy.rules.status-needs-approval]
tools = "k8s.status"
when = 'service == "search"'
verdict = "approve"
reason = "search is sensitive"
[policy.limits.builds]
tools = "ci.build"
max = 40
per = "1h"
"#;

/// One random step: which tool, which service and env, which earlier
/// steps it depends on, and what the approver does.
#[derive(Debug, Clone)]
struct Spec {
    tool: usize,
    service: usize,
    env: usize,
    deps: Vec<usize>,
    approve: u8,
}

const TOOLS: [&str; 6] = [
    "ci.build",
    "ci.run_tests",
    "quality.scan",
    "k8s.status",
    "k8s.deploy",
    "k8s.nope",
];
const CASES: u32 = 48;
const SERVICES: [&str; 3] = ["checkout", "payments", "search"];
const ENVS: [&str; 3] = ["dev", "staging", "production"];

fn plan_of(specs: &[Spec]) -> Plan {
    let steps = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let service = SERVICES[s.service];
            // Use a build this step depends on, when there is one, so
            // more of the random calls can succeed.
            let build = s
                .deps
                .iter()
                .find(|d| **d < i && TOOLS[specs[**d].tool] == "ci.build")
                .map(|d| format!("s{d}"));
            let build_id = build
                .as_ref()
                .map_or("b-1".to_string(), |b| format!("${{{b}.build_id}}"));
            let image = build
                .as_ref()
                .map_or("img".to_string(), |b| format!("${{{b}.image}}"));
            let args = match TOOLS[s.tool] {
                "ci.build" => json!({"service": service, "ref": "main"}),
                "ci.run_tests" | "quality.scan" => {
                    json!({"service": service, "build_id": build_id})
                }
                "k8s.deploy" => json!({"service": service, "env": ENVS[s.env], "image": image}),
                _ => json!({"service": service, "env": ENVS[s.env]}),
            };
            Step {
                depends_on: s
                    .deps
                    .iter()
                    .filter(|d| **d < i)
                    .map(|d| StepId::new(format!("s{d}")))
                    .collect(),
                ..Step::new(format!("s{i}"), TOOLS[s.tool], args_of(args))
            }
        })
        .collect();
    Plan {
        title: "random".into(),
        steps,
    }
}

fn args_of(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    args(v)
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..TOOLS.len(),
        0..SERVICES.len(),
        0..ENVS.len(),
        proptest::collection::vec(0usize..6, 0..3),
        0u8..4,
    )
        .prop_map(|(tool, service, env, deps, approve)| Spec {
            tool,
            service,
            env,
            deps,
            approve,
        })
}

/// The property, on one session's records.
fn every_call_was_allowed_first(records: &[Record], plan: &Plan) {
    let mut decided: HashMap<&str, &Decision> = HashMap::new();
    let mut approved: HashMap<&str, &str> = HashMap::new();
    let mut denied_now: Vec<&str> = Vec::new();
    for r in records {
        match &r.event {
            Event::PolicyDecision { step, decision } => {
                decided.insert(step.as_str(), decision);
            }
            Event::Approved {
                step, args_hash, ..
            } => {
                approved.insert(step.as_str(), args_hash);
            }
            Event::PolicyRecheck { step, decision } => {
                assert!(decision.is_denied());
                denied_now.push(step.as_str());
            }
            Event::StepStarted { step, tool, .. } => {
                let id = step.as_str();
                let decision = decided
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} ({tool}) ran with no decision on record"));
                assert!(
                    !decision.is_denied(),
                    "{id} ran though denied: {decision:?}"
                );
                assert!(
                    !denied_now.contains(&id),
                    "{id} ran after a run-time denial"
                );
                if let Decision::NeedsApproval { .. } = decision {
                    let s = plan.step(step).expect("step of the plan");
                    let hash = approved
                        .get(id)
                        .unwrap_or_else(|| panic!("{id} needed approval and had none"));
                    assert_eq!(
                        *hash,
                        args_hash(&s.tool, &s.args),
                        "{id}: approval for other arguments"
                    );
                }
            }
            _ => {}
        }
    }
}

#[test]
fn no_call_reaches_a_server_without_an_allow_recorded_before_it() {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let home = Home::new();
    let _entered = tokio.enter();
    let rt = runtime_with(&home, POLICY);
    tokio.block_on(rt.servers.wait_settled());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let calls = std::cell::Cell::new(0usize);
    let result = runner.run(&proptest::collection::vec(spec(), 1..6), |specs| {
        let plan = plan_of(&specs);
        tokio.block_on(async {
            let session = rt.new_session("dev").expect("session");
            // Record the plan and its decisions as the runtime does.
            session
                .record(Event::PlanProposed {
                    plan: plan.clone(),
                    defs: Default::default(),
                    influenced_by: Vec::new(),
                })
                .expect("record");
            let decisions = rt.decide_plan(&session, &plan, &rt.servers.catalog());
            for (step, decision) in &decisions {
                session
                    .record(Event::PolicyDecision {
                        step: step.clone(),
                        decision: decision.clone(),
                    })
                    .expect("record");
            }
            // Approvers: approve, approve other arguments, or do nothing.
            let mut approvals = HashMap::new();
            for (s, spec) in plan.steps.iter().zip(&specs) {
                let hash = match spec.approve {
                    0 | 1 => Some(args_hash(&s.tool, &s.args)),
                    2 => Some(args_hash(&s.tool, &args_of(json!({"tampered": true})))),
                    _ => None,
                };
                if let Some(hash) = hash {
                    if spec.approve < 2 {
                        rt.approve(&session, &plan, &s.id, false, None)
                            .expect("approve");
                    }
                    approvals.insert(s.id.clone(), hash);
                }
            }
            rt.run(
                &session,
                &plan,
                &decisions,
                &Approvals::Fixed(approvals),
                CancellationToken::new(),
            )
            .await
            .expect("run");
            session.settle().expect("settle");
            let records = rt.store.events(&session.id).expect("events");
            calls.set(
                calls.get()
                    + records
                        .iter()
                        .filter(|r| matches!(r.event, Event::StepStarted { .. }))
                        .count(),
            );
            every_call_was_allowed_first(&records, &plan);
        });
        Ok(())
    });
    tokio.block_on(rt.servers.shutdown());
    eprintln!("{} calls made across {CASES} random plans", calls.get());
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        calls.get() > 0,
        "the random plans made no calls at all: the property was never tested"
    );
}
