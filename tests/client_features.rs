//! Servers asking opsbot, as their client, for input (elicitation), for
//! the model (sampling) and for roots: answered on a terminal, in the app,
//! unattended with a form's defaults, or declined with the reason
//! recorded. Against our fixture server and server-everything's trigger
//! tools, with the real binary; sampling runs against a local
//! OpenAI-compatible server.

mod common;

use common::llm::*;
use common::tmux::Tmux;
use common::*;
use opsbot::session::Event;
use serde_json::{Value, json};

/// Our fixture (FIXTURE_ASK: each call asks for sampling, then a form with
/// defaults, then roots) as server `fx`, with the sandbox servers off.
fn fixture(home: &Home, extra: &str) -> std::path::PathBuf {
    let mut text = format!(
        "{}roots = [\"/srv/app data\", \"file:///etc/opsbot\"]\n{extra}\n",
        fixture_server("fx", "FIXTURE_ASK = \"1\"")
    );
    text.push_str(&sandbox_off());
    home.write_config("asks.toml", &text)
}

/// The step's output: what the fixture got back for each of its requests.
fn replies(out: &std::process::Output) -> Value {
    let run = json(out);
    let text = run["steps"]["call"]["output"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no output: {run}"))
        .to_string();
    serde_json::from_str(&text).expect("the fixture answers with JSON")
}

fn exchanged(home: &Home) -> Vec<(String, String)> {
    home.last_session()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Exchanged {
                method, outcome, ..
            } => Some((method, outcome)),
            _ => None,
        })
        .collect()
}

#[test]
fn unattended_forms_take_their_defaults_roots_are_the_configured_ones_and_sampling_is_off() {
    let home = Home::new();
    let cfg = fixture(&home, "");
    let cfg = cfg.to_str().expect("utf-8");
    let out = home.run(
        &[
            "--config", cfg, "call", "fx.echo", "text=hi", "-y", "--json", "--elicit", "defaults",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let got = replies(&out);
    assert_eq!(
        got[1]["elicitation/create"],
        json!({"action": "accept", "content": {"name": "fixture-user", "count": 2}}),
        "{got}"
    );
    assert_eq!(
        got[2]["roots/list"]["roots"],
        json!([{"uri": "file:///srv/app%20data"}, {"uri": "file:///etc/opsbot"}])
    );
    // No [sampling] profile: declined with MCP's refusal code, never -32601.
    assert_eq!(got[0]["sampling/createMessage"]["code"], -1, "{got}");
    let asked = exchanged(&home);
    assert!(
        asked.iter().any(|(m, o)| m == "elicitation/create"
            && o.contains("accepted")
            && o.contains("fixture-user")),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|(m, o)| m == "sampling/createMessage" && o.contains("no [sampling] profile")),
        "{asked:?}"
    );

    // With no terminal and no --elicit, no one is asked: declined, and why.
    let out = home.run(
        &[
            "--config", cfg, "call", "fx.echo", "text=hi", "-y", "--json",
        ],
        &[],
    );
    assert_exit(&out, 0);
    assert_eq!(replies(&out)[1]["elicitation/create"]["action"], "decline");
    assert!(
        exchanged(&home)
            .iter()
            .any(|(m, o)| m == "elicitation/create" && o.contains("no one is at a terminal")),
        "{:?}",
        exchanged(&home)
    );
}

#[test]
fn a_form_is_filled_in_on_the_terminal_field_by_field() {
    // `script` gives the command a terminal on stdin, as an engineer has.
    let home = Home::new();
    let cfg = fixture(&home, "");
    let answers = home.path().join("answers");
    // name: "Ada"; count: "0" is refused (minimum 1), then "5".
    std::fs::write(&answers, "Ada\n0\n5\n").expect("answers");
    let cmd = format!(
        "{BIN} --data-dir {} --config {} call fx.echo text=hi -y --json",
        home.path().display(),
        cfg.display(),
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::fs::File::open(&answers).expect("answers"))
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("`fx` asks: your name?"), "{text}");
    assert!(
        text.contains("at least 1"),
        "the bad count is explained: {text}"
    );
    let asked = exchanged(&home);
    assert!(
        asked.iter().any(|(m, o)| m == "elicitation/create"
            && o.contains(r#""name":"Ada""#)
            && o.contains(r#""count":5"#)),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_runs_the_profile_model_under_policy_and_is_recorded() {
    let (port, seen) = fake_llm(vec![
        completion("a haiku about deploys"),
        completion("everything sampled"),
    ])
    .await;
    let home = Home::new();
    let profile = format!(
        "[llm.profiles.local]\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"test-model\"\n\n[llm.prices.test-model]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n\n[sampling]\nprofile = \"local\"\nmax_tokens = 5\n"
    );
    // Unattended and without a rule that allows it, no one approves it.
    let cfg = fixture(&home, &profile);
    let h = home.path().to_path_buf();
    let run = move |cfg: std::path::PathBuf| {
        let h = h.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(BIN)
                    .arg("--data-dir")
                    .arg(&h)
                    .arg("--config")
                    .arg(&cfg)
                    .args(["call", "fx.echo", "text=hi", "-y", "--json"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("run")
            })
            .await
            .expect("join")
        }
    };
    let out = run(cfg).await;
    assert_exit(&out, 0);
    assert_eq!(replies(&out)[0]["sampling/createMessage"]["code"], -1);
    assert!(
        seen.lock().expect("seen").is_empty(),
        "the model was not called"
    );

    // A rule of the user's own allows fx to sample: it runs, capped.
    let rule = "[policy.rules.fx-may-sample]\ntools = \"fx.sampling/*\"\nverdict = \"allow\"\nreason = \"fx summarises for us\"\n";
    let cfg = fixture(&home, &format!("{profile}\n{rule}"));
    let out = run(cfg).await;
    assert_exit(&out, 0);
    let got = replies(&out);
    assert_eq!(
        got[0]["sampling/createMessage"]["content"]["text"], "a haiku about deploys",
        "{got}"
    );
    assert_eq!(got[0]["sampling/createMessage"]["model"], "test-model");
    let sent = seen.lock().expect("seen").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["max_tokens"], 5, "capped by [sampling] max_tokens");
    assert_eq!(sent[0]["messages"][0]["content"], "hello");
    let records = home.last_session();
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::LlmCall { profile, prompt_tokens: 1200, cost_usd: Some(_), .. } if profile == "local"
    )));
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::Exchanged { method, rule: Some(rule), outcome, .. }
            if method == "sampling/createMessage" && rule == "rule.fx-may-sample" && outcome.starts_with("ok")
    )));

    // server-everything lists its sampling trigger only to a client that
    // samples: with the profile, opsbot is one.
    let every = peer("mcp-server-everything");
    let cfg = home.write_config(
        "every.toml",
        &format!(
            "{profile}\n[servers.every]\ncommand = {:?}\nargs = [\"stdio\"]\n[policy.rules.every-samples]\ntools = \"every.*\"\nverdict = \"allow\"\nreason = \"a test server\"\n{}",
            every.display().to_string(),
            ["chat", "ci", "k8s", "monitor", "quality", "registry"]
                .iter()
                .map(|s| format!("[servers.{s}]\nenabled = false\n"))
                .collect::<String>()
        ),
    );
    let h = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&h)
            .arg("--config")
            .arg(&cfg)
            .args([
                "call",
                "every.trigger-sampling-request",
                "prompt=write a haiku",
                "-y",
                "--json",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_exit(&out, 0);
    let run = json(&out);
    assert!(
        run["steps"]["call"]["output"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("everything sampled")),
        "{run}"
    );
    let sent = seen.lock().expect("seen").clone();
    assert!(
        sent[1]["messages"].to_string().contains("write a haiku"),
        "{}",
        sent[1]
    );
}

#[test]
fn server_everything_elicits_in_the_app_modal_and_lists_our_roots() {
    let bin = peer("mcp-server-everything");
    let home = Home::new();
    let mut text = format!(
        "[servers.every]\ncommand = {:?}\nargs = [\"stdio\"]\nstart = \"eager\"\nroots = [\"/srv/work\"]\n",
        bin.display().to_string()
    );
    text.push_str(&sandbox_off());
    text.push_str("[policy.rules.every]\ntools = \"every.*\"\nverdict = \"allow\"\nreason = \"a test server\"\n");
    let cfg = home.write_config("every.toml", &text);

    // Headless first: the form's `name` has no default, so unattended
    // defaults cannot fill it, and the reason says which field.
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "call",
            "every.trigger-elicitation-request",
            "-y",
            "--elicit",
            "defaults",
        ],
        &[],
    );
    assert_exit(&out, 0);
    assert!(
        exchanged(&home)
            .iter()
            .any(|(m, o)| m == "elicitation/create" && o.contains("String: required")),
        "{:?}",
        exchanged(&home)
    );
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "call",
            "every.get-roots-list",
            "-y",
        ],
        &[],
    );
    assert!(
        stdout(&out).contains("file:///srv/work"),
        "{}",
        stdout(&out)
    );

    let t = Tmux::start_with(&home, "", &format!("--config {}", cfg.display()), "every");
    t.wait_for("1/1 servers", None);
    t.type_text("/call every.trigger-elicitation-request");
    t.keys(&["Enter"]);
    t.wait_for("approve?", None);
    t.keys(&["A"]);
    let modal = t.wait_for("every asks", None);
    assert!(modal.contains("Please provide inputs"), "{modal}");
    assert!(
        modal.contains("It was a dark and stormy night."),
        "defaults are filled in: {modal}"
    );
    // Send with the name empty: refused in place, naming the field.
    t.keys(&["Enter"]);
    t.wait_for("String: required", None);
    t.type_text("Ada Lovelace");
    // To the email field: a bad address is named, then fixed.
    for _ in 0..3 {
        t.keys(&["Tab"]);
    }
    t.type_text("ada-at-example");
    t.keys(&["Enter"]);
    t.wait_for("not a valid email", None);
    for _ in 0.."ada-at-example".len() {
        t.keys(&["BSpace"]);
    }
    t.type_text("ada@example.org");
    t.keys(&["Enter"]);
    t.wait_for("Run succeeded", None);
    t.keys(&["q"]);
    t.wait_until_quit();
    let asked = exchanged(&home);
    assert!(
        asked.iter().any(|(m, o)| m == "elicitation/create"
            && o.contains("accepted")
            && o.contains("Ada Lovelace")
            && o.contains("ada@example.org")
            && o.contains("It was a dark and stormy night.")),
        "{asked:?}"
    );
}

/// A server that logs: told the configured level, its messages in opsbot's
/// log and in the app's server list, redacted (the fixture logs a
/// password with every call).
#[test]
fn server_log_messages_reach_the_log_and_the_server_list_redacted() {
    let home = Home::new();
    let level_file = home.path().join("level");
    let mut text = format!(
        "{}log_level = \"warning\"\nstart = \"eager\"\n",
        fixture_server(
            "fx",
            &format!("FIXTURE_LOG = {:?}", level_file.display().to_string())
        )
    );
    text.push_str(&sandbox_off());
    let cfg = home.write_config("logs.toml", &text);
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "call",
            "fx.echo",
            "text=hi",
            "-y",
        ],
        &[],
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(&level_file)
            .expect("setLevel reached the server")
            .trim(),
        "warning"
    );
    let logs: String = std::fs::read_dir(home.path().join("logs"))
        .expect("log dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        logs.contains("fx: info fixture:") && logs.contains("calling echo"),
        "{logs}"
    );
    assert!(
        !logs.contains("hunter2-secret"),
        "the password reached the log: {logs}"
    );
    assert!(!stdout(&out).contains("hunter2") && !stderr(&out).contains("hunter2"));

    let t = Tmux::start_with(&home, "", &format!("--config {}", cfg.display()), "logs");
    t.wait_for("1/1 servers", None);
    t.type_text("/call fx.echo text=again");
    t.keys(&["Enter"]);
    t.wait_for("approve?", None);
    t.keys(&["A"]);
    t.wait_for("Run succeeded", None);
    t.keys(&["S"]);
    let list = t.wait_for("log info fixture", None);
    assert!(list.contains("calling echo"), "{list}");
    assert!(!list.contains("hunter2"), "{list}");
    t.keys(&["S"]);
    t.keys(&["q"]);
    t.wait_until_quit();
}

/// A server's resources, templates and prompts are listed by `opsbot
/// tools`, and a plan step reads a resource (`SERVER.resources/read`),
/// decided by policy like any read.
#[test]
fn resources_and_prompts_are_listed_and_a_step_reads_a_resource() {
    let bin = peer("mcp-server-everything");
    let home = Home::new();
    let mut text = format!(
        "[servers.every]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        bin.display().to_string()
    );
    text.push_str(&sandbox_off());
    let cfg = home.write_config("every.toml", &text);
    let cfg = cfg.to_str().expect("utf-8");
    let out = home.run(&["--config", cfg, "tools", "--refresh"], &[]);
    assert_exit(&out, 0);
    let listed = stdout(&out);
    for expected in [
        "every.resources/read",
        "resources (read one: opsbot call every.resources/read uri=URI):",
        "demo://resource/static/document/architecture.md",
        "resource templates:",
        "demo://resource/dynamic/text/{resourceId}",
        "prompts:",
        "args-prompt (city* state)",
    ] {
        assert!(
            listed.contains(expected),
            "missing {expected:?} in:\n{listed}"
        );
    }
    // Listed only for servers that are up: --refresh starts them.
    let out = home.run(&["--config", cfg, "tools", "--json", "--refresh"], &[]);
    let every = json(&out)
        .as_array()
        .and_then(|a| a.iter().find(|s| s["server"] == "every").cloned())
        .expect("every");
    assert!(
        every["prompts"].as_array().is_some_and(|p| p.len() >= 4),
        "{every}"
    );

    let out = home.run(
        &[
            "--config",
            cfg,
            "call",
            "every.resources/read",
            "uri=demo://resource/static/document/architecture.md",
            "-y",
            "--json",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let run = json(&out);
    assert_eq!(
        run["steps"]["call"]["decision"]["rule"], "builtin.read-only",
        "{run}"
    );
    assert!(
        run["steps"]["call"]["output"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Architecture")),
        "{run}"
    );
    // A rule on `every.resources/*` governs it like a tool.
    let denied = format!(
        "{text}[policy.rules.no-reading]\ntools = \"every.resources/*\"\nverdict = \"deny\"\nreason = \"not today\"\n"
    );
    let cfg = home.write_config("deny.toml", &denied);
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "call",
            "every.resources/read",
            "uri=demo://x",
            "-y",
        ],
        &[],
    );
    assert!(
        stdout(&out).contains("not today") || stderr(&out).contains("not today"),
        "{}",
        stdout(&out)
    );
    assert_ne!(out.status.code(), Some(0));
}

/// A task-making tool is followed to its end (its status as progress); a
/// 2026-07-28 `input_required` result is answered through the same
/// elicitation path and retried with its requestState.
#[test]
fn tasks_are_followed_and_input_required_is_answered_and_retried() {
    let home = Home::new();
    let mut text = format!(
        "[servers.cf]\ncommand = {:?}\n\n{}",
        conformance_fixture().display().to_string(),
        fixture_server("fx", "FIXTURE_MRTR = \"1\"")
    );
    text.push_str(&sandbox_off());
    text.push_str("[policy.rules.fixtures]\ntools = \"cf.*\"\nverdict = \"allow\"\nreason = \"a test server\"\n");
    let cfg = home.write_config("rounds.toml", &text);
    let cfg = cfg.to_str().expect("utf-8");

    let out = home.run(
        &["--config", cfg, "call", "cf.test_task", "-y", "--json"],
        &[],
    );
    assert_exit(&out, 0);
    let run = json(&out);
    let step = &run["steps"]["call"];
    assert_eq!(step["status"], "succeeded", "{run}");
    assert!(
        step["output"]["task"].is_null(),
        "followed, not handed on: {run}"
    );
    assert!(
        step["output"]["text"]
            .as_str()
            .is_some_and(|t| !t.contains("task-1 created")),
        "{run}"
    );
    let records = home.last_session();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::StepProgress { .. })),
        "the task's status was shown as progress"
    );

    let out = home.run(
        &[
            "--config", cfg, "call", "fx.echo", "text=x", "-y", "--json", "--elicit", "defaults",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let answered = json(&out)["steps"]["call"]["output"]["text"].clone();
    assert_eq!(
        answered,
        json!(r#"input: {"action": "accept", "content": {"name": "Grace"}}"#),
        "retried with the answer and the echoed state"
    );
    assert!(
        exchanged(&home)
            .iter()
            .any(|(m, o)| m == "elicitation/create" && o.contains("Grace"))
    );
}

/// A task is cancelled with its step: Ctrl-C while opsbot follows it sends
/// `tasks/cancel` to its server, and the step ends cancelled.
#[test]
fn a_followed_task_is_cancelled_at_its_server_with_the_step() {
    let home = Home::new();
    let calls = home.path().join("calls");
    let mut text = fixture_server(
        "fx",
        &format!(
            "FIXTURE_TASK = \"1\", FIXTURE_CALLS = {:?}",
            calls.display().to_string()
        ),
    );
    text.push_str(&sandbox_off());
    let cfg = home.write_config("task.toml", &text);
    let child = home
        .cmd(&[
            "--config",
            cfg.to_str().expect("utf-8"),
            "call",
            "fx.echo",
            "text=x",
            "-y",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // Wait (on events, not time) until opsbot follows the task.
    let polled = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "tasks/get")
            .count()
    };
    let began = std::time::Instant::now();
    while polled() < 2 {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(60),
            "never polled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(log.contains("tasks/cancel t-1"), "{log}");
    assert_ne!(out.status.code(), Some(0));
    let records = home.last_session();
    assert!(
        records.iter().any(|r| matches!(&r.event, Event::StepProgress { progress, .. } if progress.message.as_deref().is_some_and(|m| m.starts_with("step")))),
        "the task's status messages are the step's progress"
    );
    assert!(
        records.iter().any(
            |r| matches!(&r.event, Event::StepFailed { error, .. } if error.contains("cancel"))
        ),
        "{:?}",
        kinds(&records)
    );
}
