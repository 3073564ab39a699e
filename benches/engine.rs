//! The orchestrator's cost, measured side by side in one run
//! (`cargo bench --bench engine`):
//! - governed call overhead: the same sandbox tool called straight through
//!   the MCP connection, against a chain of calls through the engine
//!   (policy re-check, each call journaled before it is made and committed
//!   to SQLite behind, the call), median and p99;
//! - what a call's durable record costs: a journal line against a commit;
//! - parallel efficiency: one 200 ms step against sixteen independent ones.
//!
//! Under `cargo test` it runs a few iterations, as a smoke test.

mod support;

use std::time::{Duration, Instant};

use opsbot::mcp::CallOptions;
use opsbot::plan::Plan;
use serde_json::{Map, Value};
use support::engine::{run_plan, runtime, status_chain, status_step};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 400 } else { 5 };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let _in_tokio = tokio.enter();
    let dir = tempfile::tempdir().expect("tmp");
    let us = |d: Duration| d.as_secs_f64() * 1e6;

    // Governed call overhead, interleaved so both see the same machine.
    let rt = runtime(
        dir.path(),
        "[servers.k8s]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0\" }\n",
    );
    tokio.block_on(rt.servers.wait_settled());
    // Per call: a chain of CHAIN calls, one after another, each governed
    // (run-time policy check, its start and the previous step's result made
    // durable in the audit log, the call), against the same CHAIN calls made
    // directly. The run's end is journaled like each start; its commit
    // behind is made between rounds, timed in neither, so that it does not
    // land on the direct calls that follow.
    const CHAIN: u32 = 20;
    let plan = status_chain(CHAIN);
    let args: Map<String, Value> = plan.steps[0].args.clone();
    let session = rt.new_session("bench").expect("session");
    let (mut direct, mut governed) = (Vec::new(), Vec::new());
    for _ in 0..(n as u32).div_ceil(4) {
        let start = Instant::now();
        for _ in 0..CHAIN {
            let out = tokio.block_on(rt.servers.call(
                "k8s.status",
                args.clone(),
                CallOptions::default(),
            ));
            assert!(out.is_ok());
        }
        direct.push(start.elapsed() / CHAIN);
        governed.push(tokio.block_on(run_plan(&rt, &session, &plan)) / CHAIN);
        session.settle().expect("commit");
    }
    // What making a call durable before it is made costs: the journal
    // line a governed call waits on (its start and the previous step's
    // result, committed behind), against committing the same two events
    // to SQLite, as calls did before the journal.
    let step_pair = |i: usize| {
        [
            opsbot::session::Event::Note {
                text: format!("bench {i}: a step's result"),
            },
            opsbot::session::Event::Note {
                text: format!("bench {i}: the next step's start"),
            },
        ]
    };
    let timed = |record: &dyn Fn(&[opsbot::session::Event])| -> Vec<Duration> {
        (0..n)
            .map(|i| {
                let start = Instant::now();
                record(&step_pair(i));
                start.elapsed()
            })
            .collect()
    };
    let ahead = timed(&|events| session.record_ahead(events.to_vec()).expect("journal"));
    let commits = timed(&|events| drop(session.record_all(events).expect("append")));
    tokio.block_on(rt.servers.shutdown());
    println!(
        "per call in a 20-call chain, governed (policy + audit + call) vs direct MCP call: {}",
        support::versus(&governed, &direct)
    );

    println!(
        "making a call durable before it is made: journaled (one write, the commit behind) median {:.0} µs, p99 {:.0} µs; a SQLite commit of the same two events median {:.0} µs, p99 {:.0} µs",
        us(support::percentile(ahead.clone(), 0.5)),
        us(support::percentile(ahead, 0.99)),
        us(support::percentile(commits.clone(), 0.5)),
        us(support::percentile(commits, 0.99))
    );

    // Parallel efficiency: one 200 ms step against sixteen side by side.
    let rt = runtime(
        dir.path(),
        "[engine]\nmax_parallel = 16\n[servers.k8s]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0\", OPSBOT_SANDBOX_FAULTS = \"status=slow:200\" }\n",
    );
    tokio.block_on(rt.servers.wait_settled());
    let one = Plan {
        title: "one".into(),
        steps: vec![status_step("s0", "checkout")],
    };
    let services = ["checkout", "payments", "catalog", "search"];
    let sixteen = Plan {
        title: "sixteen".into(),
        steps: (0..16)
            .map(|i| status_step(&format!("s{i}"), services[i % 4]))
            .collect(),
    };
    let runs = if full { 7 } else { 1 };
    let t1 = support::percentile(
        (0..runs)
            .map(|_| tokio.block_on(run_plan(&rt, &session, &one)))
            .collect(),
        0.5,
    );
    let t16 = support::percentile(
        (0..runs)
            .map(|_| tokio.block_on(run_plan(&rt, &session, &sixteen)))
            .collect(),
        0.5,
    );
    tokio.block_on(rt.servers.shutdown());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "16 independent 200 ms steps: {:.0} ms, one step {:.0} ms: parallel efficiency {:.2} (16 × one / (16 × sixteen) = one / sixteen)",
        ms(t16),
        ms(t1),
        ms(t1) / ms(t16).max(1e-9)
    );
}
