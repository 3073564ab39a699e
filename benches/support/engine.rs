//! A runtime on the sandbox's k8s server, and plans run through it: what
//! the engine and store benches both drive.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsbot::config::{ConfigSource, DEFAULT_TOML, load_layers};
use opsbot::engine::Approvals;
use opsbot::paths::Paths;
use opsbot::plan::{Plan, Step, StepId};
use opsbot::policy::args_hash;
use opsbot::runtime::Runtime;
use opsbot::session::Session;
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

/// A runtime with only the sandbox's k8s server, `extra` over the defaults.
pub fn runtime(dir: &Path, extra: &str) -> Runtime {
    let mut loaded = load_layers(vec![
        ConfigSource {
            name: "<built-in defaults>".into(),
            text: DEFAULT_TOML.into(),
        },
        ConfigSource {
            name: "bench.toml".into(),
            text: extra.into(),
        },
    ])
    .expect("config");
    loaded.config.servers.retain(|name, _| name == "k8s");
    Runtime::with_exe(Paths::rooted(dir), loaded, super::opsbot_exe()).expect("runtime")
}

pub fn status_step(id: &str, service: &str) -> Step {
    let mut args = Map::new();
    args.insert("service".into(), json!(service));
    args.insert("env".into(), json!("dev"));
    Step::new(id, "k8s.status", args)
}

/// `n` status calls, each after the one before.
pub fn status_chain(n: u32) -> Plan {
    let mut plan = Plan {
        title: "a chain of status calls".into(),
        steps: Vec::new(),
    };
    for i in 0..n {
        let mut st = status_step(&format!("s{i}"), "checkout");
        if i > 0 {
            st.depends_on = vec![StepId::new(format!("s{}", i - 1))];
        }
        plan.steps.push(st);
    }
    plan
}

/// Run `plan` with every step approved; how long the run took.
pub async fn run_plan(rt: &Runtime, session: &Arc<Session>, plan: &Plan) -> Duration {
    let decisions = rt.decide_plan(session, plan, &rt.servers.catalog());
    let approvals: HashMap<StepId, String> = plan
        .steps
        .iter()
        .map(|s| (s.id.clone(), args_hash(&s.tool, &s.args)))
        .collect();
    let start = Instant::now();
    rt.run(
        session,
        plan,
        &decisions,
        &Approvals::Fixed(approvals),
        CancellationToken::new(),
    )
    .await
    .expect("run");
    start.elapsed()
}
