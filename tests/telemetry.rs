//! OpenTelemetry export against a collector started by the test
//! (tests/fixtures/otlp_collector.py), which decodes what it is sent with
//! the official OTLP protobuf bindings: every audit record arrives once as
//! a log record, every finished run as a trace with a span per step, a
//! collector that is down or busy loses nothing, and no secret is sent.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use opsbot::session::{Event, Outcome};
use serde_json::Value;

struct Collector {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Collector {
    /// Start the collector writing into `dir`, on `port` (0: any free one),
    /// answering 503 to its first `fail` requests.
    fn start(dir: &Path, port: u16, fail: usize, header: Option<(&str, &str)>) -> Self {
        std::fs::create_dir_all(dir).expect("collector dir");
        let _ = std::fs::remove_file(dir.join("port"));
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp_collector.py");
        let mut cmd = Command::new(otlp_python());
        cmd.arg(script)
            .arg(dir)
            .args(["--port", &port.to_string(), "--fail", &fail.to_string()])
            .stdin(Stdio::null());
        if let Some((name, value)) = header {
            cmd.env("OTLP_EXPECT_HEADER", format!("{name}:{value}"));
        }
        let child = cmd.spawn().expect("start the collector");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(dir.join("port")) {
                break p.trim().parse().expect("port");
            }
            assert!(Instant::now() < deadline, "the collector did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("collector line"))
            .collect()
    }

    /// Every entry under `key` (`logs`, `spans`) of every request taken.
    fn entries(&self, key: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter_map(|r| r[key].as_array().cloned())
            .flatten()
            .collect()
    }

    fn logs(&self) -> Vec<Value> {
        self.entries("logs")
    }

    fn spans(&self) -> Vec<Value> {
        self.entries("spans")
    }

    fn raw(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("raw.bin")).unwrap_or_default()
    }
}

/// The peers' Python, with the official OTLP bindings (.ci/peers.sh).
fn otlp_python() -> PathBuf {
    let python = py_peer("python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import opentelemetry.proto"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/peers.sh");
        let status = Command::new("bash")
            .arg(script)
            .status()
            .expect("run .ci/peers.sh");
        assert!(
            status.success() && ready(&python),
            ".ci/peers.sh did not install opentelemetry-proto"
        );
    }
    python
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every seq in the log, in order.
fn stored_seqs(home: &Home) -> Vec<i64> {
    let store = home.store();
    store
        .list_sessions(1000)
        .expect("sessions")
        .iter()
        .flat_map(|s| store.events(&s.id).expect("events"))
        .map(|r| r.seq)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn exported_seqs(logs: &[Value]) -> Vec<i64> {
    let mut seqs: Vec<i64> = logs
        .iter()
        .map(|l| l["attrs"]["opsbot.seq"].as_i64().expect("opsbot.seq"))
        .collect();
    seqs.sort_unstable();
    seqs
}

fn attr<'a>(v: &'a Value, key: &str) -> &'a str {
    v["attrs"][key].as_str().unwrap_or("")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_run_is_exported_as_log_records_and_a_trace_with_a_span_per_step() {
    let home = Home::new();
    // Made here, never written in a file: the collector's key, which is
    // also pasted into the request (it must be redacted before export).
    let key = format!(
        "otlp-{:016x}",
        std::process::id() as u64 * 7_919 + 123_456_789
    );
    let collector = Collector::start(
        &home.path().join("collector"),
        0,
        0,
        Some(("x-otlp-key", &key)),
    );
    let config = home.write_config(
        "telemetry.toml",
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nheaders = {{ \"x-otlp-key\" = \"${{env:OTLP_TEST_KEY}}\" }}\nservice_name = \"opsbot-ci\"\n\n\
             [policy.rules.no-chat]\ntools = \"chat.*\"\nverdict = \"deny\"\nreason = \"no chat from CI\"\n",
            collector.endpoint()
        ),
    );
    let config = config.to_str().expect("path");
    let request = format!("deploy checkout to dev password={key}");
    let out = home.run(
        &["--config", config, "run", &request, "--yes"],
        &[("OTLP_TEST_KEY", &key)],
    );
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // Every record once, nothing else.
    let logs = collector.logs();
    let seqs = exported_seqs(&logs);
    assert_eq!(
        seqs,
        stored_seqs(&home),
        "every stored record, exactly once"
    );
    let requests = collector.requests();
    assert!(
        requests.iter().all(|r| r["header_ok"] == true),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r["content_type"] == "application/x-protobuf")
    );
    let records = home.last_session();
    let by_seq: BTreeMap<i64, &opsbot::session::Record> =
        records.iter().map(|r| (r.seq, r)).collect();
    for log in &logs {
        let seq = log["attrs"]["opsbot.seq"].as_i64().expect("seq");
        let record = by_seq[&seq];
        assert_eq!(attr(log, "opsbot.event.kind"), record.event.kind());
        assert_eq!(attr(log, "opsbot.session.id"), record.session.as_str());
        assert_eq!(attr(log, "opsbot.hash"), record.hash);
        assert_eq!(
            log["event_name"],
            format!("opsbot.{}", record.event.kind()).as_str()
        );
        assert_eq!(log["resource"]["service.name"], "opsbot-ci");
        assert_eq!(log["scope"], "opsbot");
        let body: Value = serde_json::from_str(log["body"].as_str().expect("body")).expect("json");
        assert_eq!(body["kind"], record.event.kind());
    }

    // One trace: the run, and a span per planned step under it.
    let spans = collector.spans();
    let roots: Vec<&Value> = spans.iter().filter(|s| s["name"] == "opsbot.run").collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    let plan = records
        .iter()
        .find_map(|r| match &r.event {
            Event::PlanProposed { plan, .. } => Some(plan.clone()),
            _ => None,
        })
        .expect("a plan");
    let children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent"] == root["span_id"])
        .collect();
    assert_eq!(children.len(), plan.steps.len(), "{spans:#?}");
    assert!(spans.iter().all(|s| s["trace_id"] == root["trace_id"]));
    let outcome = records
        .iter()
        .find_map(|r| match &r.event {
            Event::RunFinished { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .expect("finished");
    assert_eq!(attr(root, "opsbot.outcome"), outcome.as_str());
    for step in &plan.steps {
        let span = children
            .iter()
            .find(|s| attr(s, "opsbot.step") == step.id.as_str())
            .unwrap_or_else(|| panic!("no span for step {}", step.id));
        assert_eq!(span["name"], step.tool.as_str());
        assert_eq!(attr(span, "opsbot.tool"), step.tool);
        assert_eq!(
            attr(span, "opsbot.server"),
            step.tool.split('.').next().expect("server")
        );
        assert!(!attr(span, "opsbot.actor").is_empty());
        assert!(span["end"].as_u64() >= span["start"].as_u64());
        if step.tool.starts_with("chat.") {
            assert_eq!(attr(span, "opsbot.decision"), "deny");
            assert_eq!(attr(span, "opsbot.rule"), "rule.no-chat");
            assert_eq!(attr(span, "opsbot.outcome"), "denied");
        } else {
            assert_ne!(attr(span, "opsbot.decision"), "deny");
        }
    }
    // Steps that ran succeeded, and say so with an OK status.
    let ran: Vec<&&Value> = children
        .iter()
        .filter(|s| attr(s, "opsbot.outcome") == "succeeded")
        .collect();
    assert!(!ran.is_empty(), "{children:#?}");
    assert!(ran.iter().all(|s| s["status_code"] == 1));
    // A step's log records point at its span; the run's at the root. (What
    // comes after the run, the session let go, belongs to the next run.)
    let finished = records
        .iter()
        .find(|r| matches!(r.event, Event::RunFinished { .. }))
        .expect("finished")
        .seq;
    for log in &logs {
        if log["attrs"]["opsbot.seq"].as_i64() > Some(finished) {
            assert_ne!(log["trace_id"], root["trace_id"], "{log}");
            continue;
        }
        assert_eq!(log["trace_id"], root["trace_id"], "{log}");
        if log["event_name"] == "opsbot.step_started" {
            let step = attr(log, "opsbot.step");
            let span = children
                .iter()
                .find(|s| attr(s, "opsbot.step") == step)
                .expect("span");
            assert_eq!(log["span_id"], span["span_id"]);
        }
        if log["event_name"] == "opsbot.run_finished" {
            assert_eq!(log["span_id"], root["span_id"]);
        }
    }

    // The key was in the request, the environment and a header: it never
    // reached the log, nor anything exported.
    assert!(!contains(&collector.raw(), &key), "the key was exported");
    let db = std::fs::read(home.path().join("data/opsbot.db")).expect("db");
    assert!(!contains(&db, &key), "the key was stored");

    // Nothing is left to send.
    let status = home.run(
        &["--config", config, "telemetry", "status"],
        &[("OTLP_TEST_KEY", &key)],
    );
    let text = stdout(&status);
    assert!(text.contains("logs:   up to date"), "{text}");
    assert!(text.contains("traces: up to date"), "{text}");
}

#[test]
fn a_collector_that_is_down_holds_no_run_up_and_loses_nothing() {
    let home = Home::new();
    // A port nothing listens on (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = home.write_config(
        "telemetry.toml",
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nflush_timeout_ms = 500\n"
        ),
    );
    let config = config.to_str().expect("path");
    for request in ["status of checkout in dev", "status of payments in dev"] {
        // Nothing is deployed in a fresh sandbox: a health check fails (1).
        let out = home.run(&["--config", config, "run", request, "--yes"], &[]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let status = home.run(&["--config", config, "telemetry", "status"], &[]);
    let text = stdout(&status);
    assert!(text.contains("cannot be reached"), "{text}");
    assert!(text.contains("records behind"), "{text}");
    assert!(text.contains("2 finished runs not sent yet"), "{text}");
    let flush = home.run(&["--config", config, "telemetry", "flush"], &[]);
    assert_exit(&flush, 1);
    assert!(
        stderr(&flush).contains("nothing is lost"),
        "{}",
        stderr(&flush)
    );

    // The collector comes up: one flush sends everything, once.
    let collector = Collector::start(&home.path().join("collector"), port, 0, None);
    let flush = home.run(&["--config", config, "telemetry", "flush"], &[]);
    assert_exit(&flush, 0);
    assert!(stdout(&flush).contains("and 2 runs"), "{}", stdout(&flush));
    assert_eq!(exported_seqs(&collector.logs()), stored_seqs(&home));
    let roots = collector
        .spans()
        .iter()
        .filter(|s| s["name"] == "opsbot.run")
        .count();
    assert_eq!(roots, 2);
    let again = home.run(&["--config", config, "telemetry", "flush"], &[]);
    assert!(
        stdout(&again).contains("sent 0 records and 0 runs"),
        "{}",
        stdout(&again)
    );
    assert_eq!(exported_seqs(&collector.logs()), stored_seqs(&home));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_collector_is_retried_from_the_cursor_while_opsbot_runs() {
    let home = Home::new();
    // Two 503s before it takes anything.
    let collector = Collector::start(&home.path().join("collector"), 0, 2, None);
    let rt = runtime_with(
        &home,
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\ninterval_ms = 50\n\n\
             [servers.k8s]\nidempotent = [\"deploy\"]\nenv = {{ OPSBOT_SANDBOX_FAULTS = \"deploy=flaky:1\" }}\nretry_base_ms = 10\n",
            collector.endpoint()
        ),
    );
    let s = rt.new_session("dev").expect("session");
    let plan = opsbot::plan::Plan {
        title: "deploy checkout to dev".into(),
        steps: vec![
            opsbot::plan::Step::new(
                "build",
                "ci.build",
                args(serde_json::json!({"service": "checkout", "ref": "main"})),
            ),
            opsbot::plan::Step {
                depends_on: vec![opsbot::plan::StepId::new("build")],
                ..opsbot::plan::Step::new(
                    "deploy",
                    "k8s.deploy",
                    args(
                        serde_json::json!({"service": "checkout", "env": "dev", "image": "${build.image}"}),
                    ),
                )
            },
        ],
    };
    assert_eq!(run_approved(&rt, &s, &plan).await, Outcome::Succeeded);
    // The export catches up on its own (after its backoff), while the
    // runtime is alive: no flush at exit is involved.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let spans = collector.spans();
        if spans.iter().any(|s| s["name"] == "opsbot.run")
            && exported_seqs(&collector.logs()).last() == stored_seqs(&home).last()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the export did not catch up: {:?}",
            collector.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = collector
        .requests()
        .iter()
        .filter(|r| r["refused"] == 503)
        .count();
    assert_eq!(refused, 2, "the collector was busy twice first");
    let logs = collector.logs();
    let seqs = exported_seqs(&logs);
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a record was sent twice");
    // The deploy's retry is an event on its span.
    let spans = collector.spans();
    let deploy = spans
        .iter()
        .find(|s| attr(s, "opsbot.step") == "deploy")
        .expect("deploy span");
    assert_eq!(deploy["attrs"]["opsbot.attempts"], 2);
    assert_eq!(deploy["events"][0]["name"], "retry");
    assert_eq!(attr(deploy, "opsbot.outcome"), "succeeded");
    rt.servers.shutdown().await;
    drop(s);
    drop(rt);
    assert_eq!(exported_seqs(&collector.logs()), stored_seqs(&home));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_export_is_reported_until_the_collector_takes_it_again() {
    let home = Home::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rt = runtime_with(
        &home,
        &format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\ninterval_ms = 50\n"),
    );
    let mut health = rt.telemetry_health().expect("an export is configured");
    let s = rt.new_session("dev").expect("session");
    s.record(Event::Note {
        text: "something to send".into(),
    })
    .expect("record");
    let problem = tokio::time::timeout(Duration::from_secs(60), health.wait_for(Option::is_some))
        .await
        .expect("reported in time")
        .expect("health")
        .clone();
    assert!(
        problem
            .as_deref()
            .is_some_and(|p| p.contains("cannot be reached")),
        "{problem:?}"
    );
    let collector = Collector::start(&home.path().join("collector"), port, 0, None);
    tokio::time::timeout(Duration::from_secs(120), health.wait_for(Option::is_none))
        .await
        .expect("recovered in time")
        .expect("health");
    assert!(
        exported_seqs(&collector.logs()).contains(&s.store().last_seq().expect("seq")),
        "the note reached the collector"
    );
    rt.servers.shutdown().await;
}
