//! The official MCP conformance suite (`tests/conformance/suite.sh`, pinned)
//! against our conformance fixture server directly, then against `opsbot
//! serve --http` in front of it: everything the fixture passes must pass
//! through opsbot too, governed and recorded.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::Home;
use opsbot::session::Event;
use serde_json::Value;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/suite.sh");

/// A child that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` and read the first `http://…` it prints on `stdout` or
/// `stderr` (the fixture prints on stdout, opsbot on stderr).
fn serving(mut cmd: Command, on_stderr: bool) -> (Running, String) {
    if on_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
    let out: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    let mut lines = BufReader::new(out).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server ended before it said where it serves")
            .expect("read");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    // Keep draining what it writes, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Running(child), url)
}

/// Run every server scenario against `url`; the count of each check status.
fn suite(url: &str, out: &Path) -> BTreeMap<String, usize> {
    let run = Command::new("bash")
        .arg(SUITE)
        .args(["server", "--url", url, "--suite", "all", "-o"])
        .arg(out)
        .output()
        .expect("run the conformance suite");
    let mut counts = BTreeMap::new();
    let mut failed = Vec::new();
    for dir in std::fs::read_dir(out).expect("results").flatten() {
        let checks = dir.path().join("checks.json");
        let Ok(text) = std::fs::read_to_string(&checks) else {
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text).expect("checks.json");
        for c in checks {
            let status = c["status"].as_str().unwrap_or("?").to_string();
            if status == "FAILURE" {
                failed.push(format!(
                    "{}: {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["errorMessage"].as_str().unwrap_or("")
                ));
            }
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    assert!(
        counts.get("SUCCESS").copied().unwrap_or(0) > 0,
        "the suite passed nothing against {url}:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        failed.is_empty(),
        "failed against {url}:\n{}",
        failed.join("\n")
    );
    counts
}

#[test]
fn the_suite_passes_through_opsbot_serve_as_it_passes_directly() {
    let home = Home::new();
    let fixture = common::conformance_fixture();

    let mut direct_cmd = Command::new(&fixture);
    direct_cmd.args(["--http", "127.0.0.1:0"]);
    let (direct_server, direct_url) = serving(direct_cmd, false);
    let direct = suite(&direct_url, &home.path().join("direct"));
    drop(direct_server);
    let passed = direct.get("SUCCESS").copied().unwrap_or(0);
    // The suite's 32 server scenarios make 46 checks; ours must pass them all.
    assert!(passed >= 46, "the fixture passed only {passed}: {direct:?}");

    let config = home.write_config(
        "conformance.toml",
        &format!(
            r#"
[serve]
namespace = "none"
approval_timeout_secs = 5

[policy.rules.conformance-fixture]
tools = "conformance.*"
verdict = "allow"
reason = "the conformance fixture changes nothing"

[servers.conformance]
command = {:?}
"#,
            fixture.to_string_lossy()
        ),
    );
    let mut cmd = home.cmd(&["--config"]);
    cmd.arg(&config)
        .args(["serve", "--only", "conformance", "--http", "127.0.0.1:0"]);
    let (opsbot, url) = serving(cmd, true);
    let proxied = suite(&url, &home.path().join("proxied"));
    drop(opsbot);
    println!("conformance checks: direct {direct:?}, through opsbot serve {proxied:?}");
    assert_eq!(
        proxied.get("SUCCESS"),
        direct.get("SUCCESS"),
        "through opsbot: {proxied:?}; directly: {direct:?}"
    );

    // Governed and recorded: reads, prompts and the fixture's requests of
    // its client are in the log, each with its outcome.
    let store = home.store();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in store.list_sessions(200).expect("sessions") {
        for r in store.events(&s.id).expect("events") {
            if let Event::Exchanged {
                method, outcome, ..
            } = r.event
            {
                seen.entry(method).or_default().push(outcome);
            }
        }
    }
    for method in [
        "resources/read",
        "prompts/get",
        "sampling/createMessage",
        "elicitation/create",
    ] {
        let outcomes = seen.get(method).cloned().unwrap_or_default();
        assert!(
            !outcomes.is_empty() && outcomes.iter().all(|o| o.starts_with("ok")),
            "{method} recorded as {outcomes:?}; all: {seen:?}"
        );
    }
}
