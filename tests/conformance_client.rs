//! The official MCP conformance suite's client scenarios, driving the real
//! opsbot binary through `tests/conformance/client.sh`: the suite starts
//! each scenario's server (and, for the auth scenarios, a real OAuth
//! authorization server on loopback), and opsbot logs in, lists and calls
//! as an engineer would. Scenarios opsbot does not pass yet are listed,
//! each with its reason, in `tests/conformance/client-expected-failures.yml`;
//! any other failure fails this test.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");

/// Every `checks.json` under `dir` (auth scenarios nest one level deeper).
fn checks(root: &Path, dir: &Path, into: &mut Vec<(String, Value)>) {
    // `auth/metadata-default-2026-12-02T02-23-39-978Z`: the scenario, then
    // when it ran.
    let stamp = regex::Regex::new(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$").expect("regex");
    for e in std::fs::read_dir(dir).expect("results").flatten() {
        let p = e.path();
        if p.is_dir() {
            checks(root, &p, into);
        } else if p.file_name().is_some_and(|n| n == "checks.json") {
            let scenario = p
                .parent()
                .and_then(|d| d.strip_prefix(root).ok())
                .map(|d| stamp.replace(&d.to_string_lossy(), "").into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&p).expect("read checks.json");
            for c in serde_json::from_str::<Vec<Value>>(&text).expect("checks.json") {
                into.push((scenario.clone(), c));
            }
        }
    }
}

#[test]
fn the_client_suite_passes_all_but_the_listed_scenarios() {
    let out = tempfile::tempdir().expect("tmp");
    let run = Command::new("bash")
        .arg(format!("{DIR}/suite.sh"))
        .args(["client", "--command"])
        .arg(format!("bash {DIR}/client.sh"))
        .args([
            "--suite",
            "all",
            "--timeout",
            "120000",
            "--expected-failures",
        ])
        .arg(format!("{DIR}/client-expected-failures.yml"))
        .arg("-o")
        .arg(out.path())
        .env("OPSBOT_BIN", env!("CARGO_BIN_EXE_opsbot"))
        .output()
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let mut all = Vec::new();
    checks(out.path(), out.path(), &mut all);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut auth_passed = 0;
    for (scenario, c) in &all {
        let status = c["status"].as_str().unwrap_or("?");
        *counts.entry(status.to_string()).or_insert(0) += 1;
        if status == "SUCCESS" && scenario.starts_with("auth") {
            auth_passed += 1;
        }
    }
    let summary = stdout
        .lines()
        .skip_while(|l| !l.contains("SUITE SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    // Judged here rather than by the runner's exit status: the runner also
    // fails a run for `client-sse-retry-timing`, the suite's own wall-clock
    // measurement (a reconnect within 450–700 ms of the server's `retry`),
    // which a loaded machine can miss whatever the client does. That one
    // check is reported, not judged; every other failure counts.
    const TIMED: &str = "client-sse-retry-timing";
    let listed: Vec<String> =
        std::fs::read_to_string(format!("{DIR}/client-expected-failures.yml"))
            .expect("expected failures")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- ").map(str::to_string))
            .collect();
    let failed: Vec<String> = all
        .iter()
        .filter(|(s, c)| c["status"] == "FAILURE" && c["id"] != TIMED && !listed.contains(s))
        .map(|(s, c)| format!("{s}: {} {}", c["id"], c["description"]))
        .collect();
    let now_passing: Vec<&String> = listed
        .iter()
        .filter(|l| {
            let of: Vec<_> = all.iter().filter(|(s, _)| s == *l).collect();
            !of.is_empty() && of.iter().all(|(_, c)| c["status"] != "FAILURE")
        })
        .collect();
    println!("conformance client suite (opsbot): {counts:?}\n{summary}");
    assert!(
        !all.is_empty(),
        "the suite ran no scenario:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        failed.is_empty(),
        "scenarios not in client-expected-failures.yml failed:\n{summary}\n{}",
        failed.join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "listed as failing but passing now (take them off the list): {now_passing:?}"
    );
    // The auth scenarios alone make about 300 checks; a run that logged in
    // nowhere would pass a handful.
    assert!(
        auth_passed >= 250,
        "only {auth_passed} auth checks passed:\n{summary}"
    );
}
