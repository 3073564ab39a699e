//! Edges: no terminal, stop signals (SIGTERM headless, SIGHUP when the
//! app's terminal closes), a read-only data directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::*;
use opsbot::session::{ChainReport, Event, Outcome};

#[test]
fn the_app_without_a_terminal_says_what_to_do_and_creates_nothing() {
    let home = Home::new();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("opsbot's app needs a terminal; try `opsbot run"),
        "{}",
        stderr(&out)
    );
    assert!(
        !home.path().join("data/opsbot.db").exists(),
        "no session was created"
    );
}

fn stop_recorded(home: &Home, signal: &str) {
    let records = home.last_session();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::Note { text } if text.starts_with(signal))),
        "the {signal} is recorded: {:?}",
        kinds(&records)
    );
    let finished = records.iter().rev().find_map(|r| match &r.event {
        Event::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    });
    assert_eq!(finished, Some(Outcome::Cancelled), "{:?}", kinds(&records));
    assert!(matches!(
        home.store().verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

#[test]
fn sigterm_cancels_a_headless_run_like_ctrl_c_and_records_it() {
    let home = Home::new();
    let mut child = home
        .cmd(&["run", "-y", "deploy checkout to staging"])
        .env("OPSBOT_SANDBOX_FAULTS", "build=hang@checkout")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        if line.expect("read").contains("▶ build") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "printed: {rest:?}"
    );
    stop_recorded(&home, "SIGTERM");
}

#[test]
fn closing_the_apps_terminal_cancels_the_run_and_records_it() {
    let home = Home::new();
    let t = Tmux::start_with(
        &home,
        "OPSBOT_SANDBOX_FAULTS=build=hang@checkout",
        "",
        "hup",
    );
    t.wait_for("6/6 servers", None);
    t.type_text("deploy checkout to staging");
    t.keys(&["Enter"]);
    t.wait_for("approve?", None);
    t.keys(&["A"]);
    t.wait_for("running", None);
    let pid: u32 = t
        .tmux(&["display-message", "-p", "-t", "app", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("pane pid");
    // The terminal goes away: tmux hangs up on the app.
    t.tmux(&["kill-server"]);
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the app did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_sandbox_processes(&home);
    stop_recorded(&home, "SIGHUP");
}

#[test]
fn a_read_only_data_dir_still_reads_and_logs_elsewhere() {
    let home = Home::new();
    assert_exit(&home.run(&["run", "-y", "deploy checkout to dev"], &[]), 0);
    let ro = tempfile::tempdir().expect("tempdir");
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(home.path())
        .arg(ro.path())
        .status();
    if !matches!(bind, Ok(s) if s.success()) {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let remount = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(ro.path())
        .status()
        .expect("remount");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(ro.path().to_path_buf());
    assert!(remount.success());
    let on_ro = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(ro.path())
            .args(args)
            .env("OPSBOT_SANDBOX_LATENCY", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    for args in [
        vec!["history", "list"],
        vec!["audit", "verify"],
        vec!["audit", "export"],
        vec!["history", "search", "checkout"],
    ] {
        let out = on_ro(&args);
        assert_exit(&out, 0);
        let err = stderr(&out);
        assert_eq!(
            err.matches("cannot write logs").count(),
            1,
            "{args:?} says once where logs go: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(stdout(&on_ro(&["history", "list"])).contains("deploy checkout"));
    let run = on_ro(&["run", "-y", "deploy checkout to dev"]);
    assert_exit(&run, 7);
    assert!(stderr(&run).contains("read-only"), "{}", stderr(&run));
}

/// Six opsbots deploying two services each at once over one sandbox:
/// every run succeeds, every build gets its own id, every deploy its own
/// revision.
#[test]
fn concurrent_sandbox_runs_keep_every_write() {
    let home = Home::new();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            home.cmd(&["run", "-y", "deploy checkout and payments to dev"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start")
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().expect("wait");
        assert_exit(&out, 0);
        assert!(!stderr(&out).contains("cannot replace"), "{}", stderr(&out));
    }
    let ci = home.sandbox_state("ci.json");
    let builds = ci["builds"].as_object().expect("builds");
    assert_eq!(builds.len(), 12, "{ci}");
    for service in ["checkout", "payments"] {
        let revisions =
            home.sandbox_state("k8s.json")["deployments"][format!("{service}/dev")]["revisions"]
                .as_array()
                .map_or(0, Vec::len);
        assert_eq!(revisions, 6, "{service}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("data/sandbox"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
