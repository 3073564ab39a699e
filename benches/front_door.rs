//! The front door, measured side by side in one run
//! (`cargo bench --bench front_door`):
//!
//! 1. The offline planner over a 500-tool catalog (the sandbox's real
//!    tools, listed from its servers, plus 486 more across 27 servers) vs
//!    the sandbox's 14 tools alone: per request, p50 and p99.
//! 2. `opsbot policy explain` and `opsbot tools`, the real binary, with a
//!    configured server that takes 30 s to initialise (its tools cached) vs
//!    the same home without it.
//! 3. `opsbot run -y "deploy checkout to staging"` with that server
//!    configured vs without, interleaved.
//!
//! Under `cargo test` each part runs a couple of times, as a smoke test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opsbot::config::{ConfigSource, DEFAULT_TOML, load_layers};
use opsbot::mcp::{Catalog, Servers, SpawnContext, ToolInfo};
use opsbot::planner::runbook::RunbookPlanner;
use support::{percentile, versus};

const REQUESTS: [&str; 16] = [
    "deploy checkout to staging",
    "staging deploy of checkout",
    "roll back payments on prod",
    "is search healthy on staging",
    "scale payments to 5 replicas in staging",
    "any alerts firing?",
    "tell #oncall that checkout is fixed",
    "what runs where for checkout in dev",
    "list the open pull requests of the billing repo",
    "rotate the database password for orders in production",
    "show the error budget of the cart service",
    "create a jira ticket about the flaky checkout tests",
    "restart the payments worker in dev",
    "what changed in mail since yesterday",
    "purge the cdn cache for catalog",
    "page the on-call engineer for search",
];

fn per_request(planner: &RunbookPlanner, catalog: &Catalog, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let request = REQUESTS[i % REQUESTS.len()];
            let start = Instant::now();
            std::hint::black_box(planner.plan_with_catalog(request, Some(catalog)));
            start.elapsed()
        })
        .collect()
}

fn planner_part(full: bool) {
    let dir = tempfile::tempdir().expect("dir");
    let config = load_layers(vec![ConfigSource {
        name: "<built-in defaults>".into(),
        text: DEFAULT_TOML.into(),
    }])
    .expect("defaults");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = rt.block_on(async {
        let ctx = SpawnContext {
            exe: support::opsbot_exe(),
            data_dir: dir.path().join("data"),
            config_dir: dir.path().join("config"),
            relay: None,
        };
        let servers = Servers::start(&config.config, &ctx);
        servers.wait_settled().await;
        let catalog = servers.catalog();
        servers.shutdown().await;
        catalog
    });
    let mut all: Vec<ToolInfo> = sandbox.iter().cloned().collect();
    all.extend(support::synthetic_tools());
    let big = Catalog::new(all);
    let planner = RunbookPlanner::new(&config.config);
    let n = if full { 4_000 } else { 32 };
    let (mut t_big, mut t_small) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        t_big.extend(per_request(&planner, &big, n / 4));
        t_small.extend(per_request(&planner, &sandbox, n / 4));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "offline planner, {} tools vs {} tools, {} requests: {}",
        big.len(),
        sandbox.len(),
        t_big.len(),
        versus(&t_big, &t_small)
    );
    println!(
        "  over {} tools: p50 {:.3} ms, p99 {:.3} ms (aim: p99 under 5 ms)",
        big.len(),
        ms(percentile(t_big.clone(), 0.5)),
        ms(percentile(t_big, 0.99))
    );
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_fixture.py")
}

/// A home with the sandbox and, when `slow`, a server that takes as long to
/// initialise as `slow-seconds` says (30 s once its tools are cached).
fn home(slow: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("bench.toml");
    let text = if slow {
        format!(
            "[servers.slow]\ncommand = \"python3\"\nargs = [{:?}, \"slowinit\"]\nenv = {{ SLOW_INIT_FILE = {:?} }}\nstartup_timeout_ms = 120000\n",
            fixture().display().to_string(),
            dir.path().join("slow-seconds").display().to_string()
        )
    } else {
        String::new()
    };
    std::fs::write(&config, text).expect("config");
    std::fs::write(dir.path().join("slow-seconds"), "0").expect("seconds");
    // The first listing fills the cache (the slow server is quick this once).
    let first = opsbot(dir.path(), &config, &["tools"]);
    assert!(first.0.success(), "cold tools failed");
    std::fs::write(dir.path().join("slow-seconds"), "30").expect("seconds");
    (dir, config)
}

fn opsbot(home: &Path, config: &Path, args: &[&str]) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    let status = Command::new(support::opsbot_exe())
        .arg("--data-dir")
        .arg(home)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("OPSBOT_SANDBOX_LATENCY", "0")
        .env_remove("OPSBOT_SANDBOX_FAULTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run opsbot");
    (status, start.elapsed())
}

fn commands_part(full: bool) {
    let (slow_home, slow_cfg) = home(true);
    let (base_home, base_cfg) = home(false);
    let n = if full { 40 } else { 2 };
    let explain: &[&str] = &[
        "policy",
        "explain",
        "k8s.deploy",
        "--args",
        r#"{"service": "checkout", "env": "staging"}"#,
    ];
    for (what, args) in [("policy explain", explain), ("tools", &["tools"][..])] {
        let (mut slow, mut base) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (s, t) = opsbot(slow_home.path(), &slow_cfg, args);
            assert!(s.success(), "{what} failed with the slow server");
            slow.push(t);
            let (s, t) = opsbot(base_home.path(), &base_cfg, args);
            assert!(s.success(), "{what} failed");
            base.push(t);
        }
        println!(
            "`opsbot {what}` with a 30 s-to-initialise server (cached) vs without, {n} runs: {}",
            versus(&slow, &base)
        );
        println!(
            "  with it: p50 {:.1} ms, p99 {:.1} ms (aim: under 50 ms)",
            percentile(slow.clone(), 0.5).as_secs_f64() * 1e3,
            percentile(slow, 0.99).as_secs_f64() * 1e3
        );
    }
    let deploy: &[&str] = &["run", "-y", "deploy checkout to staging"];
    let n = if full { 20 } else { 1 };
    let (mut slow, mut base) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (s, t) = opsbot(slow_home.path(), &slow_cfg, deploy);
        assert!(s.success(), "deploy failed with the slow server");
        slow.push(t);
        let (s, t) = opsbot(base_home.path(), &base_cfg, deploy);
        assert!(s.success(), "deploy failed");
        base.push(t);
    }
    println!(
        "staging deploy (run -y) with that server configured vs without, {n} runs each: {} (aim: ratio under 1.1x)",
        versus(&slow, &base)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    planner_part(full);
    commands_part(full);
}
