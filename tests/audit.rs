//! The audit trail through the real binary and a real SQLite file: tamper
//! detection, SIGKILL at random points, redaction, search and reports.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use opsbot::session::{ChainReport, Event, Query, Record, SessionId, report};
use rusqlite::{Connection, params};

/// A small history: three sessions appended through the library.
fn history(home: &Home) -> Vec<SessionId> {
    let store = home.store();
    let mut ids = Vec::new();
    for (request, tool, env, outcome) in [
        (
            "deploy checkout to staging",
            "k8s.deploy",
            "staging",
            opsbot::session::Outcome::Succeeded,
        ),
        (
            "deploy payments to production",
            "k8s.deploy",
            "production",
            opsbot::session::Outcome::Failed,
        ),
        (
            "status of payments in dev",
            "k8s.status",
            "dev",
            opsbot::session::Outcome::Succeeded,
        ),
    ] {
        let id = SessionId::generate();
        store.create_session(&id, "alice").expect("session");
        store
            .append_all(
                &id,
                "alice",
                &[
                    Event::UserMessage {
                        text: request.into(),
                    },
                    Event::StepStarted {
                        step: opsbot::plan::StepId::new("s1"),
                        tool: tool.into(),
                        args: args(
                            serde_json::json!({"service": request.split(' ').nth(1), "env": env}),
                        ),
                    },
                    Event::RunFinished {
                        outcome,
                        summary: "done".into(),
                    },
                ],
            )
            .expect("append");
        ids.push(id);
    }
    ids
}

fn verify(home: &Home) -> (i32, String) {
    let out = home.run(&["audit", "verify"], &[]);
    (out.status.code().unwrap_or(-1), stdout(&out))
}

fn sql(home: &Home, statements: &str) {
    let conn = Connection::open(home.path().join("data/opsbot.db")).expect("open");
    conn.execute_batch(statements).expect("tamper");
}

#[test]
fn verify_names_the_record_that_was_changed_deleted_or_moved() {
    let home = Home::new();
    history(&home);
    let (code, text) = verify(&home);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("whole: 9 events in 3 sessions"), "{text}");

    // Changed: one word in record 5's body.
    let changed = Home::new();
    history(&changed);
    sql(
        &changed,
        "UPDATE events SET body = replace(body, 'production', 'dev') WHERE seq = 5;",
    );
    let (code, text) = verify(&changed);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN at record #5"), "{text}");
    assert!(text.contains("changed after it was written"), "{text}");
    assert!(text.contains("4 records before it verified"), "{text}");

    // Deleted: record 4 is gone; 5 is the first that no longer fits.
    let deleted = Home::new();
    history(&deleted);
    sql(&deleted, "DELETE FROM events WHERE seq = 4;");
    let (code, text) = verify(&deleted);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("BROKEN at record #5: record 4 is missing"),
        "{text}"
    );

    // Moved: records 2 and 3 swap places (numbers and all).
    let swapped = Home::new();
    history(&swapped);
    sql(
        &swapped,
        "UPDATE events SET seq = 100 WHERE seq = 2;
         UPDATE events SET seq = 2 WHERE seq = 3;
         UPDATE events SET seq = 3 WHERE seq = 100;",
    );
    let (code, text) = verify(&swapped);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN at record #2"), "{text}");
    assert!(text.contains("moved, swapped or replaced"), "{text}");
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_event() {
    let home = Home::new();
    // A small linear congruential sequence: different points each round,
    // the same ones on every machine.
    let mut seed: u64 = 0x5eed;
    let rounds = 10;
    for round in 0..rounds {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(150 + (seed >> 33) % 3500);
        let mut child = home
            .cmd(&["run", "deploy checkout to dev", "--yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(after);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let printed = reader.join().expect("reader");
        kill_sandbox_processes(&home);

        let store = home.store();
        assert_eq!(
            store.verify().expect("verify"),
            match store.verify().expect("verify") {
                w @ ChainReport::Whole { .. } => w,
                broken => panic!("round {round}: chain broken after SIGKILL: {broken:?}"),
            }
        );
        // Every line the run printed was printed after its event was
        // committed: each must be in the store.
        let records = home.last_session();
        for line in &printed {
            let Some((glyph, step)) = line
                .split_whitespace()
                .nth(1)
                .zip(line.split_whitespace().nth(2))
            else {
                continue;
            };
            let found = records.iter().any(|r| match (&r.event, glyph) {
                (Event::StepStarted { step: s, .. }, "▶") => s.as_str() == step,
                (Event::StepSucceeded { step: s, .. }, "✓") => s.as_str() == step,
                _ => !matches!(glyph, "▶" | "✓"),
            });
            assert!(
                found,
                "round {round}: printed `{line}` but it is not in the store"
            );
        }
        let finished = records
            .iter()
            .any(|r| matches!(r.event, Event::RunFinished { .. }));
        let listed = home.run(&["history", "list", "--json"], &[]);
        let newest = &json(&listed)[0];
        assert_eq!(
            newest["outcome"],
            if finished { "succeeded" } else { "interrupted" },
            "round {round}"
        );
    }
}

#[test]
fn secrets_appear_nowhere_in_the_database_the_export_or_the_logs() {
    let home = Home::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire_server.py");
    let key_value = "zq-hunter2-valuable-777";
    let config = format!(
        r#"
[servers.wire]
command = "python3"
args = [{script:?}]

[llm]
profile = "down"
[llm.profiles.down]
base_url = "http://127.0.0.1:9/v1"
model = "m"
api_key_env = "OPSBOT_TEST_AUDIT_KEY"
timeout_ms = 2000

[runbooks.leak]
phrases = ["echo the secrets"]
[[runbooks.leak.steps]]
id = "echo"
tool = "wire.echo"
args = {{ text = "aws AKIAABCDEFGHIJKLMNOP, {{\"token\": \"tok-0123-very-private\"}}, key {key_value}" }}
"#
    );
    let cfg = home.write_config("leak.toml", &config);
    let out = home.run(
        &[
            "--config",
            cfg.to_str().expect("path"),
            "run",
            "echo the secrets",
            "--yes",
            "--approve-gated",
        ],
        &[
            ("OPSBOT_TEST_AUDIT_KEY", key_value),
            ("OPSBOT_LOG", "debug"),
        ],
    );
    assert_exit(&out, 0);
    let records = home.last_session();
    // The call happened and its answer is on record, redacted.
    let answer = records
        .iter()
        .find_map(|r| match &r.event {
            Event::StepSucceeded { output, .. } => Some(output.text.clone()),
            _ => None,
        })
        .expect("the echo ran");
    assert!(answer.contains("[redacted]"), "{answer}");
    assert!(answer.starts_with("aws [redacted]"), "{answer}");

    let export = home.run(&["audit", "export"], &[]);
    assert_exit(&export, 0);
    let mut haystacks = vec![
        ("stdout", out.stdout.clone()),
        ("export", export.stdout.clone()),
    ];
    for dir in ["data", "logs"] {
        for entry in std::fs::read_dir(home.path().join(dir))
            .expect("dir")
            .flatten()
        {
            if entry.path().is_file() {
                haystacks.push(("file", std::fs::read(entry.path()).expect("read")));
            }
        }
    }
    assert!(
        haystacks.len() >= 4,
        "the database and a log file were read"
    );
    for secret in ["AKIAABCDEFGHIJKLMNOP", "tok-0123-very-private", key_value] {
        for (what, bytes) in &haystacks {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "`{secret}` found in {what}"
            );
        }
    }
}

#[test]
fn search_finds_sessions_by_words_tool_status_and_time() {
    let home = Home::new();
    let ids = history(&home);
    let store = home.store();
    let search = |text: &str, tool: Option<&str>, status: Option<&str>| -> Vec<SessionId> {
        store
            .search(&Query {
                text: text.into(),
                tool: tool.map(str::to_string),
                status: status.map(str::to_string),
                since: None,
                limit: 10,
                skip_empty: false,
            })
            .expect("search")
            .into_iter()
            .map(|f| f.id)
            .collect()
    };
    assert_eq!(
        search("payments production", None, None),
        vec![ids[1].clone()]
    );
    assert_eq!(
        search("payments", None, None),
        vec![ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(
        search("deploy", Some("k8s.*"), Some("succeeded")),
        vec![ids[0].clone()]
    );
    assert_eq!(search("", Some("k8s.status"), None), vec![ids[2].clone()]);
    assert!(
        search("paym", None, Some("failed")).contains(&ids[1]),
        "the last word is a prefix"
    );
    assert!(search("nothing-like-this", None, None).is_empty());

    // Through the binary, with the environments each session touched.
    let out = home.run(&["history", "search", "deploy", "--status", "failed"], &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(ids[1].as_str()) && text.contains("production"),
        "{text}"
    );
    assert!(!text.contains(ids[0].as_str()), "{text}");
    let out = home.run(
        &["history", "search", "deploy", "--since", "2999-01-01"],
        &[],
    );
    assert!(stdout(&out).contains("no sessions match"));
    let out = home.run(&["history", "search", "x", "--since", "yesterday"], &[]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("is not a time"), "{}", stderr(&out));
}

#[test]
fn retention_prunes_whole_sessions_and_the_rest_still_verifies() {
    let home = Home::new();
    let ids = history(&home);
    let store = home.store();
    // Everything beyond ~one session's size goes, oldest first.
    let report = store
        .prune(opsbot::session::Retention {
            max_age_days: 0,
            max_bytes: 1,
        })
        .expect("prune");
    assert_eq!((report.sessions, report.events, report.upto_seq), (2, 6, 6));
    assert!(store.events(&ids[0]).expect("events").is_empty());
    assert_eq!(store.events(&ids[2]).expect("events").len(), 3);
    let v = store.verify_all().expect("verify");
    assert_eq!(v.report, ChainReport::Whole { events: 3 });
    assert_eq!((v.pruned_events, v.first_seq), (6, 7));
    // A record of the pruned range changed afterwards is still caught.
    sql(
        &home,
        "UPDATE events SET body = replace(body, 'dev', 'prod') WHERE seq = 7;",
    );
    assert!(matches!(
        store.verify().expect("verify"),
        ChainReport::Broken { seq: 7, .. }
    ));
    let (code, text) = verify(&home);
    assert_eq!(code, 1, "{text}");
    let conn = Connection::open(home.path().join("data/opsbot.db")).expect("open");
    let pruned: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pruned WHERE upto_seq = ?1",
            params![6],
            |r| r.get(0),
        )
        .expect("pruned row");
    assert_eq!(pruned, 1);
}

#[test]
fn a_session_report_reads_as_markdown() {
    let at = |seq: i64, s: &str| format!("2026-11-20T10:00:{:02}.{s}Z", seq);
    let plan: opsbot::plan::Plan = serde_json::from_value(serde_json::json!({
        "title": "deploy checkout → production",
        "steps": [
            {"id": "deploy", "tool": "k8s.deploy", "args": {"service": "checkout", "env": "production", "image": "registry.local/checkout:7"}},
            {"id": "verify", "tool": "monitor.health", "args": {"service": "checkout", "env": "production"}, "depends_on": ["deploy"]}
        ]
    }))
    .expect("plan");
    let decision = opsbot::policy::Decision::NeedsApproval {
        rule: "prod-deploys".into(),
        reason: "production changes need a typed confirmation".into(),
        gate: Some(opsbot::policy::Gate::typed("production")),
        quorum: None,
    };
    let events = vec![
        Event::SessionStarted {
            actor: "alice".into(),
            planner: "runbook".into(),
            version: "0.1.0".into(),
        },
        Event::UserMessage {
            text: "deploy checkout to production".into(),
        },
        Event::PlanProposed {
            plan,
            defs: Default::default(),
            influenced_by: Vec::new(),
        },
        Event::PolicyDecision {
            step: opsbot::plan::StepId::new("deploy"),
            decision,
        },
        Event::Approved {
            step: opsbot::plan::StepId::new("deploy"),
            by: "bob".into(),
            args_hash: "ab".into(),
            gated: true,
            reason: None,
            from: None,
        },
        Event::StepStarted {
            step: opsbot::plan::StepId::new("deploy"),
            tool: "k8s.deploy".into(),
            args: args(serde_json::json!({"service": "checkout", "env": "production"})),
        },
        Event::StepFailed {
            step: opsbot::plan::StepId::new("deploy"),
            error: "rollout stuck: 1 of 3 replicas ready".into(),
            output: None,
            duration_ms: 30500,
        },
        Event::StepSkipped {
            step: opsbot::plan::StepId::new("verify"),
            reason: "`deploy` failed".into(),
        },
        Event::RunFinished {
            outcome: opsbot::session::Outcome::Failed,
            summary: "0 of 2 steps succeeded; failed: deploy; skipped: verify".into(),
        },
    ];
    let records: Vec<Record> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: i as i64 + 1,
            session: SessionId::from_stored("20261120-100000-abcd"),
            ts: at(i as i64, "000"),
            actor: "alice".into(),
            event,
            prev_hash: format!("{:064}", i),
            hash: format!("{:064}", i + 1),
        })
        .collect();
    insta::assert_snapshot!(report::markdown(&records));
}

/// A past plan comes back whole for a re-run, with policy deciding afresh
/// and nothing approved; a session without a plan, or whose arguments the
/// log keeps only redacted, is refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_past_plan_is_re_run_only_from_real_arguments() {
    use opsbot::plan::{Plan, Step};
    use opsbot::runtime::Planned;
    let home = Home::new();
    let rt = runtime(&home);

    let empty = rt.new_session("alice").expect("session");
    let refused = rt.past_plan(empty.id.as_str()).expect_err("no plan");
    assert_eq!(
        refused.to_string(),
        format!("session {} has no plan to re-run", empty.id)
    );

    let secretive = rt.new_session("alice").expect("session");
    let with_secret = Plan {
        title: "notify with a password".into(),
        steps: vec![Step::new(
            "post",
            "chat.notify",
            args(serde_json::json!({"channel": "#ops", "text": "hi", "password": "hunter2"})),
        )],
    };
    secretive
        .record(Event::PlanProposed {
            plan: with_secret,
            defs: Default::default(),
            influenced_by: Vec::new(),
        })
        .expect("record");
    let refused = rt.past_plan(secretive.id.as_str()).expect_err("redacted");
    assert!(
        refused.to_string().contains("redacted arguments of post"),
        "{refused}"
    );

    let past = rt.new_session("alice").expect("session");
    let plan = Plan {
        title: "tell ops".into(),
        steps: vec![Step::new(
            "post",
            "chat.notify",
            args(serde_json::json!({"channel": "#ops", "text": "deploy done"})),
        )],
    };
    past.record(Event::PlanProposed {
        plan: plan.clone(),
        defs: Default::default(),
        influenced_by: Vec::new(),
    })
    .expect("record");
    // The shortest prefix no other session of this test shares (ids made
    // in the same second differ only in their last four characters).
    let id = past.id.as_str();
    let prefix = (1..=id.len())
        .map(|n| &id[..n])
        .find(|p| {
            ![&empty.id, &secretive.id]
                .iter()
                .any(|other| other.as_str().starts_with(p))
        })
        .expect("a distinct prefix");
    let (from, again) = rt.past_plan(prefix).expect("a prefix will do");
    assert_eq!(from, past.id);
    assert_eq!(again, plan);

    let fresh = rt.new_session("bob").expect("session");
    let planned = rt.rerun(&fresh, &from, again).await.expect("rerun");
    assert!(matches!(planned, Planned::Ready { .. }));
    let records = home.store().events(&fresh.id).expect("events");
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::UserMessage { text } if *text == format!("re-run the plan of session {from}: tell ops"))));
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::PolicyDecision { step, .. } if step.as_str() == "post")));
    assert!(
        !records
            .iter()
            .any(|r| matches!(r.event, Event::Approved { .. } | Event::StepStarted { .. })),
        "nothing is approved or run by proposing"
    );
    rt.servers.shutdown().await;
}

/// `opsbot audit prune` cuts old sessions by size and gives the space back:
/// the file shrinks, and what is left still verifies.
#[test]
fn prune_from_the_command_line_compacts_the_file() {
    let home = Home::new();
    {
        let store = std::sync::Arc::new(home.store());
        for i in 0..12 {
            let s = opsbot::session::Session::start(
                std::sync::Arc::clone(&store),
                "alice",
                "runbook",
                "test",
            )
            .expect("session");
            s.record(Event::UserMessage {
                text: format!("request {i}"),
            })
            .expect("record");
            // Varied text, so the file cannot compress it away; each note
            // within the 16,000 characters the log keeps of one.
            for part in 0..16 {
                let bulk: String = (0..5_000)
                    .map(|n| format!("{:x} ", (n * 7919 + i * 31 + part) % 251))
                    .collect();
                s.record(Event::Note {
                    text: bulk.chars().take(15_000).collect(),
                })
                .expect("record");
            }
        }
    }
    let db = home.path().join("data/opsbot.db");
    let before = std::fs::metadata(&db).expect("db").len();
    let config = home.write_config("small.toml", "[audit]\nretention_max_mib = 1\n");
    let out = home.run(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "audit",
            "prune",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("pruned "), "{text}");
    assert!(text.contains("compacted"), "{text}");
    let after = std::fs::metadata(&db).expect("db").len();
    assert!(after < before / 2, "{before} → {after} bytes: {text}");
    let (code, report) = verify(&home);
    assert_eq!(code, 0, "{report}");
    assert!(
        home.store().list_sessions(100).expect("list").len() < 12,
        "{text}"
    );
}

/// Copy a data directory (config, data) to a fresh home.
fn copy_home(from: &Home) -> Home {
    let to = Home::new();
    let mut dirs = vec![std::path::PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for e in std::fs::read_dir(from.path().join(&rel))
            .expect("dir")
            .flatten()
        {
            let rel = rel.join(e.file_name());
            if e.path().is_dir() {
                std::fs::create_dir_all(to.path().join(&rel)).expect("mkdir");
                dirs.push(rel);
            } else {
                std::fs::copy(e.path(), to.path().join(&rel)).expect("copy");
            }
        }
    }
    to
}

/// Recompute every hash from `from_seq` on, as someone rewriting the log
/// would (the chain stays self-consistent).
fn recompute_chain(conn: &Connection) {
    let rows: Vec<(i64, String, String, String, String, String)> = conn
        .prepare("SELECT seq, session_id, ts, actor, kind, body FROM events ORDER BY seq")
        .expect("select")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    let mut prev = opsbot::session::GENESIS.to_string();
    for (seq, session, ts, actor, kind, body) in rows {
        let hash = opsbot::session::link_hash(&prev, seq, &session, &ts, &actor, &kind, &body);
        conn.execute(
            "UPDATE events SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
            params![seq, prev, hash],
        )
        .expect("rehash");
        prev = hash;
    }
}

/// The log is signed, so what the chain alone cannot tell is caught: the
/// newest records deleted, an emptied file, a chain recomputed after a
/// rewrite, a pruned marker opsbot did not write, another installation's
/// file. Someone holding the key can re-sign a rewrite; an anchor kept
/// elsewhere (`audit anchor`, then `verify --anchor`) catches that.
#[test]
fn a_log_cut_short_emptied_rewritten_or_forged_is_not_proven() {
    let home = Home::new();
    // (checkout is not deployed in dev: the runs fail, and are logged.)
    for request in ["status of checkout in dev", "status of payments in dev"] {
        home.run(&["run", request, "-y"], &[]);
    }
    let (code, text) = verify(&home);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("signed head #"), "{text}");
    let anchor = stdout(&home.run(&["audit", "anchor"], &[]))
        .trim()
        .to_string();
    let (tip, _) = anchor.split_once(':').expect("SEQ:HASH");
    let tip: i64 = tip.parse().expect("seq");
    assert!(tip > 10, "{anchor}");
    let tampered = |statements: &str, rehash: bool| {
        let copy = copy_home(&home);
        let conn = Connection::open(copy.path().join("data/opsbot.db")).expect("open");
        conn.execute_batch(statements).expect("tamper");
        if rehash {
            recompute_chain(&conn);
        }
        drop(conn);
        copy
    };
    for (what, copy, says) in [
        (
            "the newest records deleted",
            tampered(
                &format!("DELETE FROM events WHERE seq > {};", tip - 3),
                false,
            ),
            format!("records #{} to #{tip} are missing", tip - 2),
        ),
        (
            "an emptied file",
            tampered(
                "DELETE FROM search; DELETE FROM events; DELETE FROM sessions; DELETE FROM audit_head;",
                false,
            ),
            // (the anchor file may trail the signed head by a few commits)
            "are missing (the log ends at #0)".to_string(),
        ),
        (
            "a rewrite with the chain recomputed",
            tampered(
                "UPDATE events SET body = replace(body, 'dev', 'staging') WHERE seq = 3;",
                true,
            ),
            "the chain was recomputed after a rewrite".to_string(),
        ),
        (
            "a forged pruned marker",
            tampered(
                "INSERT INTO pruned (upto_seq, last_hash, sessions, events, at)
                   SELECT seq, hash, 1, seq, '2026-01-01' FROM events WHERE seq = 5;
                 DELETE FROM events WHERE seq <= 5;",
                false,
            ),
            "the pruned marker up to #5 was not written by opsbot".to_string(),
        ),
    ] {
        let (code, text) = verify(&copy);
        assert_eq!(code, 1, "{what}: {text}");
        assert!(text.contains(&says), "{what}: {text}");
    }
    // Another installation's log in this one's place.
    let other = Home::new();
    other.run(&["run", "status of checkout in dev", "-y"], &[]);
    let swapped = copy_home(&home);
    for f in ["opsbot.db", "opsbot.anchor"] {
        std::fs::copy(
            other.path().join("data").join(f),
            swapped.path().join("data").join(f),
        )
        .expect("swap");
    }
    let (code, text) = verify(&swapped);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("was not signed with this key"), "{text}");

    // Someone holding the key rewrites and re-signs: only an anchor kept
    // elsewhere tells.
    let resigned = tampered(
        "UPDATE events SET body = replace(body, 'dev', 'staging') WHERE seq = 3;",
        true,
    );
    let seal = opsbot::session::Seal::load(&resigned.path().join("config"))
        .expect("key")
        .expect("a key");
    let conn = Connection::open(resigned.path().join("data/opsbot.db")).expect("open");
    let new_tip: String = conn
        .query_row(
            "SELECT hash FROM events WHERE seq = ?1",
            params![tip],
            |r| r.get(0),
        )
        .expect("tip");
    let mac = seal.mac("head", tip, &new_tip);
    conn.execute(
        "UPDATE audit_head SET hash = ?1, mac = ?2",
        params![new_tip, mac],
    )
    .expect("re-sign");
    drop(conn);
    std::fs::write(
        resigned.path().join("data/opsbot.anchor"),
        format!("{tip}:{new_tip}:{mac}\n"),
    )
    .expect("anchor");
    let (code, text) = verify(&resigned);
    assert_eq!(code, 0, "re-signed with the key, it passes locally: {text}");
    let out = resigned.run(&["audit", "verify", "--anchor", &anchor], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("record #{tip} has another hash")),
        "{}",
        stdout(&out)
    );
    let bad = home.run(&["audit", "verify", "--anchor", "12:abc"], &[]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(stderr(&bad).contains("SEQ:HASH"), "{}", stderr(&bad));
}

/// The session list and the pins are checked against what backs them: an
/// outcome, actor or title edited in `sessions` and a pin edited in
/// `pins` are named by `audit verify`; `--repair` rewrites the list from
/// the records, and `history` finds the failed session again.
#[test]
fn edited_sessions_and_pins_are_named_and_the_list_repaired() {
    let home = Home::new();
    let mut text = fixture_config("fx", "plain");
    text.push_str(&sandbox_off());
    let cfg = home.write_config("fx.toml", &text);
    let cfg = cfg.to_str().expect("utf-8");
    // A failed run (checkout is not deployed in dev) and a pinned tool.
    home.run(&["run", "status of checkout in dev", "-y"], &[]);
    assert_exit(&home.run(&["--config", cfg, "tools", "--refresh"], &[]), 0);
    let (code, text) = verify(&home);
    assert_eq!(code, 0, "{text}");
    let failed = |home: &Home| {
        stdout(&home.run(
            &["history", "search", "checkout", "--status", "failed"],
            &[],
        ))
    };
    assert!(
        failed(&home).contains("status checkout"),
        "{}",
        failed(&home)
    );
    let actor: String = Connection::open(home.path().join("data/opsbot.db"))
        .expect("open")
        .query_row("SELECT actor FROM sessions", [], |r| r.get(0))
        .expect("actor");
    sql(
        &home,
        "UPDATE sessions SET outcome = 'succeeded', actor = 'mallory', title = 'routine check';
         UPDATE pins SET def_hash = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' WHERE tool = 'fx.echo';",
    );
    assert!(
        !failed(&home).contains("status checkout"),
        "the edit hides it"
    );
    let (code, text) = verify(&home);
    assert_eq!(code, 1, "{text}");
    let actor_line = format!("the list says actor `mallory`, its records say `{actor}`");
    for says in [
        "the list says outcome `succeeded`, its records say `failed`",
        actor_line.as_str(),
        "the list says title `routine check`, its records say `status checkout → dev`",
        "the pin of fx.echo",
    ] {
        assert!(text.contains(says), "{says}: {text}");
    }
    let repaired = home.run(&["audit", "verify", "--repair"], &[]);
    assert!(
        stderr(&repaired).contains("repaired 1 session rows"),
        "{}",
        stderr(&repaired)
    );
    assert!(
        failed(&home).contains("status checkout"),
        "{}",
        failed(&home)
    );
    let text = stdout(&repaired);
    assert!(!text.contains("the list says"), "{text}");
    assert!(
        text.contains("the pin of fx.echo"),
        "a pin is reviewed, not repaired: {text}"
    );
    // Policy does not trust the edited pin: the tool is quarantined until
    // its live definition is reviewed and accepted, which signs a new pin.
    let call = home.run(
        &[
            "--config", cfg, "call", "fx.echo", "text=hi", "-y", "--json",
        ],
        &[],
    );
    let decision = &json(&call)["steps"]["call"]["decision"];
    assert_eq!(decision["rule"], "builtin.pin-changed", "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("was not written by opsbot"),
        "{decision}"
    );
    let diff = stdout(&home.run(&["--config", cfg, "policy", "pins", "diff", "fx.echo"], &[]));
    let hash = diff
        .split("--hash ")
        .nth(1)
        .and_then(|h| h.split_whitespace().next())
        .unwrap_or_else(|| panic!("how to accept: {diff}"))
        .to_string();
    assert_exit(
        &home.run(
            &[
                "--config", cfg, "policy", "pins", "accept", "fx.echo", "--hash", &hash,
            ],
            &[],
        ),
        0,
    );
    let call = home.run(
        &[
            "--config", cfg, "call", "fx.echo", "text=hi", "-y", "--json",
        ],
        &[],
    );
    assert_exit(&call, 0);
    let (code, text) = verify(&home);
    assert_eq!(code, 0, "the accepted pin is signed: {text}");
}
