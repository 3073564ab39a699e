//! Shared test harness: the real binary, a private data dir, the real store.
#![allow(dead_code)]

pub mod llm;
pub mod oauth;
pub mod pg;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use opsbot::config::{ConfigSource, DEFAULT_TOML, LoadedConfig, load_layers};
use opsbot::mcp::{Servers, SpawnContext};
use opsbot::paths::Paths;
use opsbot::runtime::Runtime;
use opsbot::session::{Event, Record, SessionState, Store};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_opsbot");

/// One isolated opsbot home: config, data and logs under a temp dir.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The binary with this home, no latency, no stdin and none of the
    /// caller's opsbot settings.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.path())
            .args(args)
            .env("OPSBOT_SANDBOX_LATENCY", "0")
            .env_remove("OPSBOT_CONFIG")
            .env_remove("OPSBOT_SANDBOX_FAULTS")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run opsbot")
    }

    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn store(&self) -> Store {
        Store::open(&self.path().join("data/opsbot.db")).expect("open store")
    }

    /// Another connection holding the log's write lock until dropped:
    /// every commit waits, what is only journaled does not.
    pub fn lock_log(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.path().join("data/opsbot.db")).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("the write lock");
        conn
    }

    /// The journals beside the log, as one text.
    pub fn journaled(&self) -> String {
        std::fs::read_dir(self.path().join("data/opsbot.db.journal"))
            .expect("a journal")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).expect("read"))
            .collect()
    }

    /// The newest session's records.
    pub fn last_session(&self) -> Vec<Record> {
        let store = self.store();
        let sessions = store.list_sessions(1).expect("list");
        let id = &sessions.first().expect("a session was stored").id;
        store.events(id).expect("events")
    }

    pub fn sandbox_state(&self, file: &str) -> Value {
        let path = self.path().join("data/sandbox").join(file);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("sandbox state is JSON"),
            Err(_) => Value::Null,
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

pub fn kinds(records: &[Record]) -> Vec<&'static str> {
    records.iter().map(|r| r.event.kind()).collect()
}

pub fn state(records: &[Record]) -> SessionState {
    SessionState::replay(records)
}

/// The position of the first event matching `f`.
pub fn position(records: &[Record], f: impl Fn(&Event) -> bool) -> Option<usize> {
    records.iter().position(|r| f(&r.event))
}

/// Processes still running with this home's sandbox directory in their environment.
pub fn sandbox_processes_of(home: &Home) -> Vec<u32> {
    let needle = format!("OPSBOT_SANDBOX_DIR={}", home.path().join("data").display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|v| v.starts_with(needle.as_bytes()))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// After a SIGKILL of opsbot nobody closes its servers: clean them up.
pub fn kill_sandbox_processes(home: &Home) {
    for pid in sandbox_processes_of(home) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// The built-in defaults with `extra` layered on top, and no simulated
/// latency in the sandbox.
pub fn config(extra: &str) -> LoadedConfig {
    let mut loaded = load_layers(vec![
        ConfigSource {
            name: "<built-in defaults>".into(),
            text: DEFAULT_TOML.into(),
        },
        ConfigSource {
            name: "test.toml".into(),
            text: extra.into(),
        },
    ])
    .unwrap_or_else(|e| panic!("test config: {e}"));
    for server in loaded.config.servers.values_mut() {
        server
            .env
            .entry("OPSBOT_SANDBOX_LATENCY".into())
            .or_insert_with(|| "0".into());
    }
    loaded
}

/// Start only the named servers of a config, with this home's directories.
pub fn start_servers(home: &Home, extra: &str, only: &[&str]) -> Servers {
    let mut cfg = config(extra).config;
    cfg.servers.retain(|name, _| only.contains(&name.as_str()));
    Servers::start(
        &cfg,
        &SpawnContext {
            exe: BIN.into(),
            data_dir: home.path().join("data"),
            config_dir: home.path().into(),
            relay: None,
        },
    )
}

/// The whole core (store, servers, planner, policy) rooted in this home.
pub fn runtime(home: &Home) -> Runtime {
    runtime_with(home, "")
}

/// The runtime over the sandbox, with `extra` layered on the defaults.
pub fn runtime_with(home: &Home, extra: &str) -> Runtime {
    Runtime::with_exe(Paths::rooted(home.path()), config(extra), BIN.into()).expect("runtime")
}

/// Record the plan, let policy decide it, approve every step for exactly
/// its arguments (a gated step as if its target were typed), run it, and
/// commit its end, which a run leaves journaled, for the test to read.
pub async fn run_approved(
    rt: &Runtime,
    session: &std::sync::Arc<opsbot::session::Session>,
    plan: &opsbot::plan::Plan,
) -> opsbot::session::Outcome {
    rt.servers.wait_settled().await;
    let decisions = rt.decide_plan(session, plan, &rt.servers.catalog());
    session
        .record(Event::PlanProposed {
            plan: plan.clone(),
            defs: Default::default(),
            influenced_by: Vec::new(),
        })
        .expect("record");
    let mut approvals = std::collections::HashMap::new();
    for (id, d) in &decisions {
        if let Some(hash) = rt
            .approve(session, plan, id, d.gate().is_some(), None)
            .expect("approve")
        {
            approvals.insert(id.clone(), hash);
        }
    }
    rt.run(
        session,
        plan,
        &decisions,
        &opsbot::engine::Approvals::Fixed(approvals),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .inspect(|_| session.settle().expect("settle"))
    .expect("run")
}

/// A JSON object literal as tool arguments.
pub fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(map) => map,
        other => panic!("tool arguments must be a JSON object, not {other}"),
    }
}

/// Assert a process's exit code, showing what it printed when it differs.
/// Everything a child's pipe has left, as text.
pub fn read_all(mut from: impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = from.read_to_string(&mut text);
    text
}

/// The first call of `tool` that `approvals list --json` (as `list` runs
/// it) shows waiting; polled for up to two minutes.
pub fn first_waiting(tool: &str, mut list: impl FnMut() -> Output) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let listed = list();
        assert_exit(&listed, 0);
        let rows: Value = serde_json::from_slice(&listed.stdout).expect("json");
        if let Some(row) = rows
            .as_array()
            .and_then(|r| r.iter().find(|r| r["tool"] == tool))
        {
            return row.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing waited: {rows}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A third-party MCP program from npm (a server, or the inspector's CLI),
/// installed on first use by .ci/peers.sh.
pub fn peer(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".ci/peers/node_modules/.bin").join(name);
    if !bin.exists() {
        let status = Command::new("bash")
            .arg(root.join(".ci/peers.sh"))
            .status()
            .expect("run .ci/peers.sh (needs node and npm)");
        assert!(status.success(), ".ci/peers.sh failed to install {name}");
    }
    bin
}

/// Our own misbehaving MCP server, tests/fixtures/mcp_fixture.py.
pub fn fixture_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_fixture.py")
}

/// `[servers.NAME]` for the hostile server (`tests/fixtures/hostile_server.py`),
/// with `extra` lines (env, trust) in its table.
pub fn hostile_server(name: &str, extra: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_server.py");
    format!(
        "\n[servers.{name}]\ncommand = \"python3\"\nargs = [{:?}]\ntimeout_ms = 20000\n{extra}\n",
        script.display().to_string()
    )
}

/// Every built-in sandbox server switched off: for tests about servers of
/// their own.
pub fn sandbox_off() -> String {
    ["chat", "ci", "k8s", "monitor", "quality", "registry"]
        .iter()
        .map(|s| format!("[servers.{s}]\nenabled = false\n"))
        .collect()
}

/// Our fixture, in plain mode, as `[servers.NAME]` with `env` (the inside
/// of a TOML inline table); more keys of the table may follow.
pub fn fixture_server(name: &str, env: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = \"python3\"\nargs = [{:?}, \"plain\"]\nenv = {{ {env} }}\n",
        fixture_script().display().to_string()
    )
}

/// Config for our own misbehaving MCP server (tests/fixtures/mcp_fixture.py)
/// as server `name`, in `mode`, with a runbook "poke NAME" that calls its
/// `echo` tool once.
pub fn fixture_config(name: &str, mode: &str) -> String {
    let script = fixture_script();
    format!(
        r#"
[servers.{name}]
command = "python3"
args = ["{script}", "{mode}"]
timeout_ms = 20000

[runbooks.poke_{name}]
description = "Call the fixture's echo tool"
phrases = ["poke {name}"]

[[runbooks.poke_{name}.steps]]
id = "echo"
tool = "{name}.echo"
args = {{ text = "hi" }}
description = "Echo hi"
"#,
        script = script.display()
    )
}

/// Bytes a terminal could act on: ESC, C1 controls (UTF-8 C2 80..9F) and
/// bidi overrides (U+202A..202E, U+2066..2069). Returns where the first is.
pub fn first_hostile_byte(bytes: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(bytes);
    text.char_indices()
        .find(|(_, c)| {
            matches!(c, '\x1b' | '\x07' | '\r' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .map(|(i, _)| i)
}

/// A Python MCP server from PyPI (git, time), installed on first use by
/// .ci/peers.sh into a venv of its own.
pub fn py_peer(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".ci/peers/venv/bin").join(name);
    if !bin.exists() {
        let status = Command::new("bash")
            .arg(root.join(".ci/peers.sh"))
            .status()
            .expect("run .ci/peers.sh (needs python3 and pip)");
        assert!(status.success(), ".ci/peers.sh failed to install {name}");
    }
    bin
}

/// The conformance fixture server (tests/conformance/server.rs), built (or
/// found up to date) by cargo once per test process: `cargo test` compiles
/// examples only as test harnesses, so the runnable binary is built here.
pub fn conformance_fixture() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test exe");
            let target = exe.parent().and_then(Path::parent).expect("target dir");
            let built = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--example", "conformance_server"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo");
            assert!(built.success(), "could not build the conformance fixture");
            target.join("examples/conformance_server")
        })
        .clone()
}
