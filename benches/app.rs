//! The app as people feel it: the real binary in a pseudo-terminal,
//! measured from the bytes of a key written to the last byte of the frame
//! it caused (`cargo bench --bench app`).
//!
//! - keypress to frame with 10,000 chat entries and a 500-step plan, side
//!   by side with an empty session (keys alternate between the two apps):
//!   typing into the input box, and moving through the plan;
//! - resident memory after 50 runs of a 200-step plan in one session,
//!   against after the first.
//!
//! Under `cargo test` it runs a few keys and two runs, as a smoke test.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsbot::mcp::ToolOutput;
use opsbot::plan::{Plan, Step, StepId};
use opsbot::session::{Event, Outcome, Session, Store};
use support::pty::PtyApp;
use support::{percentile, versus};

/// A finished session with 10,000 chat entries and a 500-step plan, in
/// `dir`'s store; returns its id.
fn big_session(dir: &Path) -> String {
    let store = Arc::new(Store::open(&dir.join("data/opsbot.db")).expect("store"));
    let session = Session::start(Arc::clone(&store), "bench", "runbook", "bench").expect("session");
    let mut batch = Vec::new();
    for i in 0..5_000 {
        batch.push(Event::UserMessage {
            text: format!(
                "request {i}: deploy checkout to staging and tell #deploys when it is healthy"
            ),
        });
        batch.push(Event::AssistantMessage {
            text: format!(
                "Plan {i} with 7 steps. Everything went fine and the service is healthy in staging."
            ),
        });
        if batch.len() >= 1000 {
            session.record_all(&batch).expect("record");
            batch.clear();
        }
    }
    let steps: Vec<Step> = (0..500)
        .map(|i| Step {
            depends_on: if i == 0 {
                vec![]
            } else {
                vec![StepId::new(format!("s{}", i - 1))]
            },
            description: format!("step {i}"),
            ..Step::new(
                format!("s{i}"),
                "k8s.status",
                serde_json::json!({"service": "checkout", "env": "dev"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    batch.push(Event::PlanProposed {
        plan: Plan {
            title: "bench".into(),
            steps,
        },
        defs: Default::default(),
        influenced_by: Vec::new(),
    });
    for i in 0..250 {
        batch.push(Event::StepSucceeded {
            step: StepId::new(format!("s{i}")),
            output: ToolOutput {
                is_error: false,
                text: "{}".into(),
                structured: Some(serde_json::json!({"ok": true})),
                truncated: None,
                content: None,
                meta: None,
                task: None,
            },
            duration_ms: 10,
        });
    }
    batch.push(Event::RunFinished {
        outcome: Outcome::Cancelled,
        summary: "bench".into(),
    });
    session.record_all(&batch).expect("record");
    session.id.to_string()
}

/// Alternate keys between two apps; each key's time to its frame.
fn interleaved(
    big: &mut PtyApp,
    small: &mut PtyApp,
    keys: &[&[u8]],
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let key = keys[i % keys.len()];
        a.push(big.key_to_frame(key));
        b.push(small.key_to_frame(key));
    }
    (a, b)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn keypress_to_frame(exe: &Path, n: usize) {
    let big_dir = tempfile::tempdir().expect("tmp");
    let id = big_session(big_dir.path());
    let small_dir = tempfile::tempdir().expect("tmp");
    let (cols, rows) = (160, 48);
    let mut big = PtyApp::start(exe, big_dir.path(), &format!("--resume {id}"), cols, rows);
    let mut small = PtyApp::start(exe, small_dir.path(), "", cols, rows);
    for (app, what) in [(&big, "plan: bench"), (&small, "Ask opsbot")] {
        assert!(
            app.wait_text(what, Duration::from_secs(60)),
            "the app never drew {what}"
        );
        app.settle(Duration::from_millis(300));
    }
    // The resumed session opens on its plan: move through it.
    let (plan_big, plan_small) = interleaved(&mut big, &mut small, &[b"\x1b[B", b"\x1b[A"], n);
    // Then type into the input box (a letter, then delete it).
    big.send(b"i");
    small.send(b"\x1b[B");
    big.settle(Duration::from_millis(200));
    small.settle(Duration::from_millis(200));
    let (typing_big, typing_small) = interleaved(&mut big, &mut small, &[b"a", b"\x7f"], n);
    println!(
        "keypress to frame in the real app (pty, {cols}x{rows}), 10,000 chat entries + a 500-step plan vs an empty session:"
    );
    for (what, slow, base) in [
        ("  moving through the plan", &plan_big, &plan_small),
        ("  typing in the input box", &typing_big, &typing_small),
    ] {
        println!("{what}: {}", versus(slow, base));
        println!(
            "{what}: p50 {:.2} ms, p99 {:.2} ms (aim: p99 under 16 ms)",
            ms(percentile(slow.clone(), 0.5)),
            ms(percentile(slow.clone(), 0.99))
        );
    }
}

/// A runbook of `steps` read-only status checks, auto-approved.
fn sweep_config(dir: &Path, steps: usize) -> std::path::PathBuf {
    let mut text = String::from(
        "[approval]\nmode = \"safe-auto\"\n\n[runbooks.sweep]\ndescription = \"Check every service's status, many times\"\nphrases = [\"status sweep\"]\n",
    );
    let services = ["checkout", "payments", "catalog", "search"];
    for i in 0..steps {
        text.push_str(&format!(
            "\n[[runbooks.sweep.steps]]\nid = \"s{i}\"\ntool = \"k8s.status\"\nargs = {{ service = \"{}\", env = \"dev\" }}\ndescription = \"status {i}\"\n",
            services[i % services.len()]
        ));
    }
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn runs_finished(dir: &Path) -> usize {
    let Ok(store) = Store::open_read(&dir.join("data/opsbot.db")) else {
        return 0;
    };
    store
        .events_of_kind_since("run_finished", "")
        .map_or(0, |v| v.len())
}

fn memory(exe: &Path, runs: usize, steps: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let config = sweep_config(dir.path(), steps);
    let mut app = PtyApp::start(
        exe,
        dir.path(),
        &format!("--config {}", config.display()),
        160,
        48,
    );
    assert!(app.wait_text("6/6 servers", Duration::from_secs(60)));
    let mut after_first = 0;
    for run in 1..=runs {
        // After a plan is proposed the plan pane has the keys: `i` goes
        // back to the input box.
        if run > 1 {
            app.send(b"i");
        }
        app.send(b"status sweep\r");
        let t = std::time::Instant::now();
        while runs_finished(dir.path()) < run {
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "run {run} never finished"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        app.settle(Duration::from_millis(300));
        if run == 1 {
            after_first = app.rss_kib();
        }
    }
    let after_all = app.rss_kib();
    println!(
        "memory of the app (RSS): {:.1} MiB after 1 run of {steps} steps, {:.1} MiB after {runs} in the same session: {:.2}x (aim under 1.2x)",
        after_first as f64 / 1024.0,
        after_all as f64 / 1024.0,
        after_all as f64 / after_first.max(1) as f64
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let exe = support::opsbot_exe();
    keypress_to_frame(&exe, if full { 300 } else { 4 });
    if full {
        memory(&exe, 50, 200);
    } else {
        memory(&exe, 2, 20);
    }
}
