//! The shared PostgreSQL store, against a real PostgreSQL (the cluster
//! `.ci/pg.sh` starts): two opsbot homes ("hosts") as different people on
//! one store, history, search, export and verify there, concurrent
//! writers, a connection killed mid-run, and a migration from SQLite.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pg::{PASSWORD_ENV, PgDb};
use common::*;
use opsbot::session::{ChainReport, Event, SessionId};
use serde_json::Value;

const FOUR_EYES: &str = r##"
[policy.users]
alice = ["developer"]
bob = ["sre"]

[policy.rules.prod-four-eyes]
tools = ["k8s.deploy"]
when = 'env == "production"'
approvers = 1
approver_not_requester = true
approver_roles = ["sre"]
reason = "production deploys need an SRE who did not ask for them"
"##;

/// One person's opsbot: its own data directory (its own machine, as far
/// as opsbot can tell), the shared store, an identity on it.
struct Host {
    home: Home,
    config: String,
    password: String,
}

impl Host {
    fn new(db: &PgDb, identity: &str, extra: &str) -> Self {
        let home = Home::new();
        let config = home
            .write_config(
                "team.toml",
                &format!("{extra}{}", db.store_config(Some(identity))),
            )
            .to_string_lossy()
            .to_string();
        Self {
            home,
            config,
            password: db.password(),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut all = vec!["--config", self.config.as_str()];
        all.extend_from_slice(args);
        let mut cmd = self.home.cmd(&all);
        cmd.env(PASSWORD_ENV, &self.password);
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().expect("run opsbot")
    }
}

#[test]
fn a_production_deploy_asked_on_one_host_is_approved_from_another() {
    let db = PgDb::new();
    let alice = Host::new(&db, "alice", FOUR_EYES);
    let bob = Host::new(&db, "bob", FOUR_EYES);
    let mut run = alice
        .cmd(&[
            "run",
            "deploy checkout to production",
            "--yes",
            "--approve-gated",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alice's run");

    // Bob, on his own machine, sees it waiting for him.
    let row = first_waiting("k8s.deploy", || bob.run(&["approvals", "list", "--json"]));
    let id = row["id"].as_str().expect("id").to_string();
    assert!(
        row["client"].as_str().is_some_and(|c| c.contains("alice")),
        "{row}"
    );

    // Alice's own approval does not count, from any host.
    let own = alice.run(&["approvals", "approve", &id, "--confirm", "production"]);
    assert_exit(&own, 2);
    assert!(
        stderr(&own).contains("alice's own approval does not count"),
        "{}",
        stderr(&own)
    );
    let approved = bob.run(&["approvals", "approve", &id, "--confirm", "production"]);
    assert_exit(&approved, 0);

    let status = run.wait().expect("alice's run ends");
    let out = read_all(run.stdout.take().expect("stdout"));
    let said = read_all(run.stderr.take().expect("stderr"));
    assert_eq!(status.code(), Some(0), "{out}\n{said}");

    // One history for both: Bob's store shows Alice's session, with his
    // approval bound to the deploy's arguments, from his host.
    let store = db.store();
    let session = SessionId::from_stored(id.split(':').next().expect("session").to_string());
    let records = store.events(&session).expect("events");
    let bobs: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Approved {
                by,
                args_hash,
                from,
                ..
            } if by == "bob" => Some((args_hash.clone(), from.clone(), r.actor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(bobs.len(), 1, "{:?}", kinds(&records));
    assert!(!bobs[0].0.is_empty(), "bound to the arguments' hash");
    assert!(bobs[0].1.is_some(), "the approving host is recorded");
    assert_eq!(records[0].actor, "alice");
    assert!(
        records.iter().any(|r| matches!(
            &r.event,
            Event::StepSucceeded { step, .. } if step.as_str() == id.rsplit(':').next().unwrap_or("")
        )),
        "the deploy ran after bob's approval"
    );
    let listed = bob.run(&["history", "list"]);
    assert_exit(&listed, 0);
    assert!(stdout(&listed).contains("alice"), "{}", stdout(&listed));
    assert!(matches!(
        store.verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

#[test]
fn history_search_export_and_verify_work_on_postgres() {
    let db = PgDb::new();
    let host = Host::new(&db, "alice", "");
    for request in ["deploy checkout to staging", "deploy payments to staging"] {
        let out = host.run(&["run", "--yes", request]);
        assert_exit(&out, 0);
    }
    let listed = host.run(&["history", "list"]);
    assert_exit(&listed, 0);
    assert_eq!(stdout(&listed).lines().count(), 2, "{}", stdout(&listed));

    // PostgreSQL's own full-text search: words, prefixes, filters.
    let found = host.run(&["history", "search", "payme"]);
    assert_exit(&found, 0);
    let text = stdout(&found);
    assert!(text.contains("payments"), "{text}");
    assert!(!text.contains("deploy checkout"), "{text}");
    assert!(
        text.contains("[payments]"),
        "a snippet with the word: {text}"
    );
    let by_tool = host.run(&[
        "history",
        "search",
        "deploy",
        "--tool",
        "k8s.deploy",
        "--json",
    ]);
    assert_exit(&by_tool, 0);
    let rows = json(&by_tool);
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let none = host.run(&["history", "search", "deploy", "--tool", "db.*", "--json"]);
    assert_exit(&none, 0);
    assert_eq!(json(&none).as_array().map(Vec::len), Some(0));

    // The export carries the exact hashed bytes; the chain checks out
    // without opsbot.
    let export = host.run(&["audit", "export"]);
    assert_exit(&export, 0);
    let lines: Vec<Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.len() > 20);
    let mut prev = opsbot::session::GENESIS.to_string();
    for l in &lines {
        let s = |k: &str| l[k].as_str().expect(k).to_string();
        assert_eq!(s("prev_hash"), prev);
        let hash = opsbot::session::link_hash(
            &prev,
            l["seq"].as_i64().expect("seq"),
            &s("session"),
            &s("ts"),
            &s("actor"),
            &s("kind"),
            &s("body"),
        );
        assert_eq!(hash, s("hash"));
        prev = hash;
    }
    let verified = host.run(&["audit", "verify"]);
    assert_exit(&verified, 0);
    assert!(
        stdout(&verified).contains("the audit log is whole"),
        "{}",
        stdout(&verified)
    );
    let insights = host.run(&["insights", "--json"]);
    assert_exit(&insights, 0);
    assert_eq!(json(&insights)["runs"], 2);

    // Someone with database access edits a record: verify names it.
    db.sql("UPDATE events SET body = replace(body, 'staging', 'stagingX') WHERE seq = 3");
    let broken = host.run(&["audit", "verify"]);
    assert!(
        stdout(&broken).contains("BROKEN at record #3"),
        "{}",
        stdout(&broken)
    );
}

#[test]
fn eight_writers_and_a_verifier_keep_one_chain() {
    let db = PgDb::new();
    const WRITERS: usize = 8;
    const BATCHES: usize = 40;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let verifier = {
        let (stop, store) = (std::sync::Arc::clone(&stop), db.store());
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || checks == 0 {
                let v = store.verify_all().expect("verify");
                assert!(
                    matches!(v.report, ChainReport::Whole { .. }),
                    "the chain broke while being written: {:?}",
                    v.report
                );
                checks += 1;
            }
            checks
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            // Each writer its own connection, as each process or host has.
            let store = db.store();
            std::thread::spawn(move || {
                let id = SessionId::generate();
                store
                    .create_session(&id, &format!("w{w}"))
                    .expect("session");
                for i in 0..BATCHES {
                    let events: Vec<Event> = (0..3)
                        .map(|k| Event::Note {
                            text: format!("writer {w} batch {i} event {k}"),
                        })
                        .collect();
                    let records = store
                        .append_all(&id, &format!("w{w}"), &events)
                        .expect("append");
                    // A batch is one run of links, whoever else writes.
                    assert_eq!(records[1].prev_hash, records[0].hash);
                    assert_eq!(records[2].seq, records[0].seq + 2);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = verifier.join().expect("verifier");
    assert!(checks > 0);
    let store = db.store();
    let v = store.verify_all().expect("verify");
    assert_eq!(
        v.report,
        ChainReport::Whole {
            events: (WRITERS * BATCHES * 3) as i64
        }
    );
    assert_eq!(v.sessions, WRITERS as i64);
    assert_eq!(v.last_seq, (WRITERS * BATCHES * 3) as i64);
}

#[test]
fn a_session_is_driven_from_one_host_at_a_time() {
    let db = PgDb::new();
    let (here, there) = (db.store(), db.store());
    let id = SessionId::generate();
    here.create_session(&id, "alice").expect("session");
    let (lease, _) = here.take_lease(&id, "app").expect("lease");
    let refused = there.take_lease(&id, "run").expect_err("held elsewhere");
    let message = refused.to_string();
    assert!(message.contains("already being driven by app"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // Within one process a second driver is refused too.
    assert!(here.take_lease(&id, "run").is_err());
    assert_eq!(there.live_drivers("app").len(), 1);
    drop(lease);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match there.take_lease(&id, "run") {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never released: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A holder killed with SIGKILL releases it: its connection ends, and
    // the database lets the lock go.
    let host = Host::new(&db, "alice", FOUR_EYES);
    let mut run = host
        .cmd(&[
            "run",
            "deploy checkout to production",
            "--yes",
            "--approve-gated",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        if let Some(id) = here.sessions_waiting().expect("waiting").pop() {
            break id;
        }
        assert!(Instant::now() < deadline, "the run never waited");
        std::thread::sleep(Duration::from_millis(50));
    };
    let refused = here
        .take_lease(&waiting, "app")
        .expect_err("the run drives it");
    assert!(refused.to_string().contains("driven by run"), "{refused}");
    run.kill().expect("kill -9");
    let _ = run.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (_lease, previous) = loop {
        match here.take_lease(&waiting, "app") {
            Ok(taken) => break taken,
            Err(e) => assert!(Instant::now() < deadline, "a dead holder kept it: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The log names the holder that never let go, for the takeover record.
    assert_eq!(previous.map(|h| h.driver).as_deref(), Some("run"));
}

#[test]
fn a_lost_connection_stops_the_run_before_its_next_call() {
    let db = PgDb::new();
    let host = Host::new(&db, "alice", "");
    // Real sandbox durations: the run takes seconds, time to cut it.
    let mut run = host
        .cmd(&["run", "--yes", "deploy checkout to staging"])
        .env("OPSBOT_SANDBOX_LATENCY", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let store = db.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = store
            .events_of_kind_since("step_started", "")
            .expect("read")
            .len();
        if started > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started a step");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The database ends the run's connection (as a failover or a network
    // cut would).
    let killed = db.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND application_name = 'opsbot'",
        db.name
    ));
    assert!(!killed.is_empty());
    let status = run.wait().expect("run ends");
    let said = read_all(run.stderr.take().expect("stderr"));
    let out = read_all(run.stdout.take().expect("stdout"));
    assert_eq!(status.code(), Some(7), "a store fault: {out}\n{said}");
    assert!(
        said.contains("connection to the shared store") && said.contains("was lost"),
        "{said}"
    );
    // Nothing ran that the log does not show starting: the sandbox's
    // chat (the last step) was never posted to, and every call the
    // sandbox saw is a recorded start.
    let fresh = db.store();
    let records: Vec<_> = fresh
        .events_of_kind_since("step_started", "")
        .expect("read");
    assert!(
        records.len() < 7,
        "the run went on after losing the log: {} starts",
        records.len()
    );
    let chat = host.home.sandbox_state("chat.json");
    assert!(
        chat["channels"]["#deploys"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{chat}"
    );
    assert!(matches!(
        fresh.verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

#[test]
fn a_sqlite_history_moves_to_postgres_with_its_chain() {
    let lite = Home::new();
    for request in ["deploy checkout to staging", "deploy payments to staging"] {
        assert_exit(&lite.run(&["run", "--yes", request], &[]), 0);
    }
    let before = lite.store().verify_all().expect("verify");
    let db = PgDb::new();
    let host = Host::new(&db, "alice", "");
    let file = lite.path().join("data/opsbot.db");
    let file = file.to_str().expect("path");
    let moved = host.run(&["store", "migrate", "--from", "sqlite", file]);
    assert_exit(&moved, 0);
    assert!(
        stdout(&moved).contains(&format!("last hash {}", before.last_hash)),
        "{}",
        stdout(&moved)
    );
    let after = db.store().verify_all().expect("verify");
    assert_eq!(after.report, before.report);
    assert_eq!(after.last_hash, before.last_hash);
    // Run again: nothing more to copy.
    let again = host.run(&["store", "migrate", "--from", "sqlite", file]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains("copied 0 records"),
        "{}",
        stdout(&again)
    );
    // The history is there, and new records chain on.
    assert_eq!(stdout(&host.run(&["history", "list"])).lines().count(), 2);
    assert_exit(
        &host.run(&["run", "--yes", "deploy checkout to staging"]),
        0,
    );
    let v = db.store().verify_all().expect("verify");
    assert!(matches!(v.report, ChainReport::Whole { .. }));
    assert!(v.last_seq > before.last_seq);
    // Another log does not go into a store that holds this one.
    let other = Home::new();
    assert_exit(
        &other.run(&["run", "--yes", "deploy checkout to staging"], &[]),
        0,
    );
    let other_file = other.path().join("data/opsbot.db");
    let refused = host.run(&[
        "store",
        "migrate",
        "--from",
        "sqlite",
        other_file.to_str().expect("path"),
    ]);
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).contains("already holds another log"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn an_unreachable_or_refusing_store_exits_2_and_hides_the_password() {
    let db = PgDb::new();
    let home = Home::new();
    // Nothing listens there.
    let closed = home.write_config(
        "closed.toml",
        "[store]\nurl = \"postgres://opsbot@127.0.0.1:9/opsbot\"\nconnect_timeout_secs = 5\n",
    );
    let out = home.run(
        &[
            "--config",
            closed.to_str().expect("path"),
            "history",
            "list",
        ],
        &[],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out)
            .contains("cannot use the shared store at postgres://opsbot@127.0.0.1:9/opsbot"),
        "{}",
        stderr(&out)
    );
    // A wrong password.
    let config = home.write_config("team.toml", &db.store_config(None));
    let wrong = "not-the-password-4711";
    let out = home.run(
        &[
            "--config",
            config.to_str().expect("path"),
            "run",
            "deploy checkout to staging",
        ],
        &[(PASSWORD_ENV, wrong)],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(wrong) && !stdout(&out).contains(wrong));
    // A password written into the URL is refused, and not repeated.
    let leaky = home.write_config(
        "leaky.toml",
        "[store]\nurl = \"postgres://opsbot:hunter2-secret@127.0.0.1:9/opsbot\"\n",
    );
    let out = home.run(
        &["--config", leaky.to_str().expect("path"), "history", "list"],
        &[],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("opsbot auth set store"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("hunter2-secret"), "{}", stderr(&out));
}

#[test]
fn tls_is_required_and_checked_against_the_configured_ca() {
    let db = PgDb::new();
    let home = Home::new();
    let ca = db.ca_file();
    let tls = |extra: &str| {
        format!(
            "[store]\nurl = \"{}?sslmode=require\"\npassword_env = \"{PASSWORD_ENV}\"\n{extra}",
            db.url
        )
    };
    let trusted = home.write_config(
        "tls.toml",
        &tls(&format!("ca_file = \"{}\"\n", ca.display())),
    );
    let out = home.run(
        &[
            "--config",
            trusted.to_str().expect("path"),
            "run",
            "--yes",
            "deploy checkout to staging",
        ],
        &[(PASSWORD_ENV, &db.password())],
    );
    assert_exit(&out, 0);
    // The connection really is encrypted.
    let mut opts = db.options();
    opts.url = format!("{}?sslmode=require", db.url);
    opts.ca_file = Some(ca.clone());
    let store =
        opsbot::session::Store::open_shared(opts, std::path::Path::new("/nonexistent/x.db"))
            .expect("open over TLS");
    assert!(!store.list_sessions(5).expect("list").is_empty());
    let encrypted = db.sql(&format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = '{}' AND a.application_name = 'opsbot' AND s.ssl",
        db.name
    ));
    assert_eq!(encrypted[0][0].as_deref(), Some("1"), "{encrypted:?}");
    // Without our CA the certificate is not trusted: refused, exit 2.
    let untrusted = home.write_config("untrusted.toml", &tls(""));
    let out = home.run(
        &[
            "--config",
            untrusted.to_str().expect("path"),
            "history",
            "list",
        ],
        &[(PASSWORD_ENV, &db.password())],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn retention_prunes_whole_sessions_and_the_chain_still_verifies() {
    let db = PgDb::new();
    let store = db.store();
    for s in 0..3 {
        let id = SessionId::generate();
        store.create_session(&id, "alice").expect("session");
        for i in 0..5 {
            store
                .append(
                    &id,
                    "alice",
                    &Event::Note {
                        text: format!("session {s} note {i}"),
                    },
                )
                .expect("append");
        }
    }
    // A cap no log meets: every session but the newest goes.
    let report = store
        .prune(opsbot::session::Retention {
            max_age_days: 0,
            max_bytes: 1,
        })
        .expect("prune");
    assert_eq!(
        (report.sessions, report.events, report.upto_seq),
        (2, 10, 10)
    );
    let v = store.verify_all().expect("verify");
    assert_eq!(v.report, ChainReport::Whole { events: 5 });
    assert_eq!((v.pruned_events, v.first_seq, v.sessions), (10, 11, 1));
    // New records chain on from the newest, as before.
    let id = SessionId::generate();
    store.create_session(&id, "bob").expect("session");
    store
        .append(
            &id,
            "bob",
            &Event::Note {
                text: "after".into(),
            },
        )
        .expect("append");
    assert_eq!(
        store.verify().expect("verify"),
        ChainReport::Whole { events: 6 }
    );
}

#[test]
fn a_store_migrated_by_a_newer_opsbot_is_not_written() {
    let db = PgDb::new();
    drop(db.store());
    db.sql("INSERT INTO opsbot_migrations (version) VALUES (999)");
    let home = Home::new();
    let config = home.write_config("team.toml", &db.store_config(None));
    let out = home.run(
        &[
            "--config",
            config.to_str().expect("path"),
            "history",
            "list",
        ],
        &[(PASSWORD_ENV, &db.password())],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("migrated by a newer opsbot (schema 999"),
        "{}",
        stderr(&out)
    );
}
