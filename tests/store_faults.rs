//! The store failing is never silent: a full disk, a deleted database and a
//! damaged one stop the run before its next call and say why, headless
//! (exit 7) and in the app (a modal, the status line marked).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::*;

/// A small tmpfs mounted for one test; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None when this process may not mount (not root): the test says so.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            _ if is_root() => panic!("root could not mount a tmpfs at {}", dir.path().display()),
            _ => None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill what is left of it.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Only the fixture server (the sandbox off): its `echo` records each call
/// in `calls` and answers once `gate` exists. "poke gate" runs two echoes,
/// the second after the first.
fn gated_fixture(dir: &Path, calls: &Path, gate: &Path) -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_fixture.py");
    let mut text = String::new();
    for s in ["ci", "quality", "registry", "k8s", "monitor", "chat"] {
        text.push_str(&format!("[servers.{s}]\nenabled = false\n"));
    }
    text.push_str(&format!(
        r#"
[servers.gate]
command = "python3"
args = ["{script}", "plain"]
env = {{ FIXTURE_CALLS = "{calls}", FIXTURE_GATE = "{gate}" }}
timeout_ms = 60000

[runbooks.poke_gate]
description = "Two echoes, one after the other"
phrases = ["poke gate"]

[[runbooks.poke_gate.steps]]
id = "first"
tool = "gate.echo"
args = {{ text = "first" }}
description = "Echo first"

[[runbooks.poke_gate.steps]]
id = "second"
tool = "gate.echo"
args = {{ text = "second" }}
depends_on = ["first"]
description = "Echo second"
"#,
        script = script.display(),
        calls = calls.display(),
        gate = gate.display()
    ));
    let path = dir.join("gate.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn calls_made(calls: &Path) -> Vec<String> {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_full_disk_stops_a_headless_run_before_its_next_call() {
    let Some(fs) = Tmpfs::mount("4m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let outside = tempfile::tempdir().expect("tempdir");
    let (calls, gate) = (outside.path().join("calls"), outside.path().join("gate"));
    let cfg = gated_fixture(outside.path(), &calls, &gate);
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(fs.path().join("home"))
        .arg("--config")
        .arg(&cfg)
        .args(["run", "-y", "poke gate"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start opsbot");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = String::new();
    loop {
        let line = lines
            .next()
            .expect("a line before the first call")
            .expect("read");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("▶ first") {
            break;
        }
    }
    // The first call is on record and waiting: take the disk away, then
    // let the call answer. Its result cannot be written.
    fs.fill();
    std::fs::write(&gate, "go").expect("gate");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
    assert_eq!(
        status.code(),
        Some(7),
        "stdout:\n{seen}{}\nstderr:\n{err}",
        rest.join("\n")
    );
    assert!(err.contains("is full"), "{err}");
    assert!(err.contains("Free some space"), "says what to do: {err}");
    // The call in flight as the disk filled ends, and what follows it is
    // journaled (in the journal file's last page, room a full disk can
    // still have) or stopped: nothing runs once the log cannot take it.
    let made = calls_made(&calls);
    assert_eq!(made.first().map(String::as_str), Some("first"), "{made:?}");
    assert!(made.len() <= 2, "no call after the failed commit: {made:?}");

    // With room again, the next opsbot on the data directory adds what the
    // run journaled: every call made is on record as started, and the log
    // is whole.
    std::fs::remove_file(fs.path().join("filler")).expect("free");
    let next = Command::new(BIN)
        .arg("--data-dir")
        .arg(fs.path().join("home"))
        .arg("--config")
        .arg(&cfg)
        .arg("tools")
        .stdin(Stdio::null())
        .output()
        .expect("tools");
    assert!(next.status.success(), "{next:?}");
    let store = opsbot::session::Store::open(&fs.path().join("home/data/opsbot.db")).expect("open");
    let run = store
        .list_sessions(10)
        .expect("list")
        .into_iter()
        .map(|s| store.events(&s.id).expect("events"))
        .find(|records| {
            records
                .iter()
                .any(|r| matches!(r.event, opsbot::session::Event::StepStarted { .. }))
        })
        .expect("the run's session");
    let started: Vec<String> = run
        .iter()
        .filter_map(|r| match &r.event {
            opsbot::session::Event::StepStarted { step, .. } => Some(step.as_str().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(started, made, "each call made is on record, once");
    drop(store);
    let verify = Command::new(BIN)
        .arg("--data-dir")
        .arg(fs.path().join("home"))
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    assert_exit(&verify, 0);
    let list = Command::new(BIN)
        .arg("--data-dir")
        .arg(fs.path().join("home"))
        .args(["history", "list"])
        .output()
        .expect("list");
    // The run shows as it is on record: finished, when its end fitted in
    // the journal too, else interrupted.
    let finished = run
        .iter()
        .any(|r| matches!(r.event, opsbot::session::Event::RunFinished { .. }));
    let shown = if finished { "succeeded" } else { "interrupted" };
    assert!(stdout(&list).contains(shown), "{}", stdout(&list));
}

/// Wait until `f` holds, at most 30 s.
fn until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_database_deleted_under_the_app_shows_a_modal_and_is_saved() {
    let home = Home::new();
    let (calls, gate) = (home.path().join("calls"), home.path().join("gate"));
    let cfg = gated_fixture(home.path(), &calls, &gate);
    let t = Tmux::start_with(&home, "", &format!("--config {}", cfg.display()), "deleted");
    t.wait_for("1/1 servers", None);
    t.type_text("poke gate");
    t.keys(&["Enter"]);
    t.wait_for("approve?", None);
    t.keys(&["A"]);
    until("the first call arrives", || calls_made(&calls).len() == 1);

    let db = home.path().join("data/opsbot.db");
    std::fs::remove_file(&db).expect("delete the database");
    std::fs::write(&gate, "go").expect("gate");
    t.wait_for("audit log stopped", None);
    // The frame may be read half drawn: wait for all of it.
    let screen = t.wait_for("NOT RECORDING", None);
    assert!(screen.contains("was deleted"), "{screen}");
    // The second step would have started in the same commit as the first
    // one's result: it never reaches the server.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls_made(&calls), vec!["first"]);

    t.keys(&["q"]);
    t.wait_until_quit();
    // What the app had recorded was written back where it was. The first
    // call's start was journaled before the call; when its commit behind
    // came after the deletion (a busy machine), it waits in the journal,
    // and the next start puts it in the log: start one.
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let in_tokio = tokio.enter();
    drop(runtime(&home));
    drop(in_tokio);
    let store = home.store();
    let sessions = store.list_sessions(5).expect("list");
    assert_eq!(sessions.len(), 1, "the session survived the deletion");
    assert!(
        matches!(
            store.verify().expect("verify"),
            opsbot::session::ChainReport::Whole { .. }
        ),
        "the saved log verifies"
    );
    let records = store.events(&sessions[0].id).expect("events");
    assert!(
        records
            .iter()
            .any(|r| matches!(r.event, opsbot::session::Event::StepStarted { .. })),
        "the first call's start is in the saved log"
    );
}

#[test]
fn a_full_disk_in_the_app_shows_a_modal() {
    let Some(fs) = Tmpfs::mount("4m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let outside = tempfile::tempdir().expect("tempdir");
    let (calls, gate) = (outside.path().join("calls"), outside.path().join("gate"));
    let cfg = gated_fixture(outside.path(), &calls, &gate);
    let home = fs.path().join("home");
    let t = Tmux::start_in(
        &home,
        "",
        &format!("--config {}", cfg.display()),
        "diskfull",
    );
    t.wait_for("1/1 servers", None);
    t.type_text("poke gate");
    t.keys(&["Enter"]);
    t.wait_for("approve?", None);
    t.keys(&["A"]);
    until("the first call arrives", || calls_made(&calls).len() == 1);
    fs.fill();
    std::fs::write(&gate, "go").expect("gate");
    t.wait_for("audit log stopped", None);
    let screen = t.wait_for("NOT RECORDING: disk full", None);
    assert!(screen.contains("Free some"), "{screen}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls_made(&calls), vec!["first"]);
    t.keys(&["q"]);
    t.wait_until_quit();
}

#[test]
fn a_damaged_database_refuses_appends_and_read_commands_say_what_is_unreadable() {
    let home = Home::new();
    for _ in 0..3 {
        assert_exit(&home.run(&["run", "-y", "deploy checkout to dev"], &[]), 0);
    }
    let db = home.path().join("data/opsbot.db");
    // Damage the pages past the schema's (where the events are), short of
    // the end of the file. The schema's pages are those of a new log.
    let fresh = tempfile::tempdir().expect("tmp");
    let fresh = fresh.path().join("new.db");
    drop(opsbot::session::Store::open(&fresh).expect("a new log"));
    let schema_pages: usize = rusqlite::Connection::open(&fresh)
        .expect("open the new log")
        .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
        .expect("its pages")
        .try_into()
        .expect("pages");
    let mut bytes = std::fs::read(&db).expect("read db");
    let pages = bytes.len() / 4096;
    assert!(
        pages > schema_pages + 4,
        "enough pages: {pages} past {schema_pages}"
    );
    for b in &mut bytes[schema_pages * 4096..(pages * 3 / 4).max(schema_pages + 2) * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("damage");
    let _ = std::fs::remove_file(home.path().join("data/opsbot.db-wal"));
    let _ = std::fs::remove_file(home.path().join("data/opsbot.db-shm"));

    let run = home.run(&["run", "-y", "deploy checkout to dev"], &[]);
    assert_exit(&run, 7);
    let err = stderr(&run);
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains(".recover"), "says how to recover: {err}");

    let verify = home.run(&["audit", "verify"], &[]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    let said = stdout(&verify);
    assert!(said.contains("DAMAGED: records from #"), "{said}");
    assert!(said.contains("cannot be read"), "{said}");
    assert!(said.contains(".recover"), "{said}");
}
