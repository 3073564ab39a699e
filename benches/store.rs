//! The shared PostgreSQL store against the embedded SQLite file, side by
//! side in one run (`cargo bench --bench store`), on the throwaway cluster
//! `.ci/pg.sh` starts:
//! - governed-call overhead: a 20-call chain through the engine, its
//!   records going to SQLite or to PostgreSQL, interleaved, median and p99;
//! - one durable append (one event, one transaction), interleaved;
//! - append throughput with 8 concurrent writers (8 connections);
//! - session-sized appends and search latency over 100,000 sessions.
//!
//! Under `cargo test` it runs a few iterations on 100 sessions, as a
//! smoke test.

mod support;
// The tests' own throwaway cluster and a database of its own per use.
#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::time::{Duration, Instant};

use opsbot::session::{Event, Query, SessionId, Store};
use pg::{PASSWORD_ENV, PgDb};
use support::engine::{run_plan, runtime, status_chain};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Events per second when `writers` handles append `batches` two-event
/// transactions each, all at once.
fn concurrent(open: &dyn Fn() -> Store, writers: usize, batches: usize) -> f64 {
    let handles: Vec<Store> = (0..writers).map(|_| open()).collect();
    let start = Instant::now();
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            std::thread::spawn(move || {
                let id = SessionId::from_stored(format!("2026w{w:02}-{}", std::process::id()));
                let _ = store.create_session(&id, "bench");
                for i in 0..batches {
                    store
                        .append_all(
                            &id,
                            "bench",
                            &[
                                Event::Note {
                                    text: format!("w{w} result {i}"),
                                },
                                Event::Note {
                                    text: format!("w{w} start {i}"),
                                },
                            ],
                        )
                        .expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    (writers * batches * 2) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // The runtime reads the password from the environment; this process
    // cannot set its own (that is unsafe), so it runs itself with it.
    if std::env::var_os(PASSWORD_ENV).is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(std::env::args().skip(1))
            .env(PASSWORD_ENV, pg::password())
            .status()
            .expect("bench");
        std::process::exit(status.code().unwrap_or(1));
    }
    let full = std::env::args().any(|a| a == "--bench");
    let db = PgDb::new();
    let settings =
        db.sql("SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')");
    println!(
        "PostgreSQL on loopback over TLS (fsync/synchronous_commit: {}); SQLite in WAL with synchronous=NORMAL",
        settings[0][0].as_deref().unwrap_or("?")
    );
    let options = db.options();
    let dir = tempfile::tempdir().expect("tmp");
    let shared_config = db.store_config(None);

    // Governed calls, their records in one store or the other.
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    {
        let _in = tokio.enter();
        let lite_dir = dir.path().join("lite");
        let pg_dir = dir.path().join("pg");
        let sandbox = "[servers.k8s]\nenv = { OPSBOT_SANDBOX_LATENCY = \"0\" }\n";
        let lite = runtime(&lite_dir, sandbox);
        let shared = runtime(&pg_dir, &format!("{sandbox}{shared_config}"));
        tokio.block_on(lite.servers.wait_settled());
        tokio.block_on(shared.servers.wait_settled());
        const CHAIN: u32 = 20;
        let plan = status_chain(CHAIN);
        let (ls, ps) = (
            lite.new_session("bench").expect("session"),
            shared.new_session("bench").expect("session"),
        );
        let (mut on_lite, mut on_pg) = (Vec::new(), Vec::new());
        for _ in 0..if full { 100 } else { 2 } {
            on_lite.push(tokio.block_on(run_plan(&lite, &ls, &plan)) / CHAIN);
            on_pg.push(tokio.block_on(run_plan(&shared, &ps, &plan)) / CHAIN);
        }
        tokio.block_on(lite.servers.shutdown());
        tokio.block_on(shared.servers.shutdown());
        println!(
            "governed call in a 20-call chain, records to PostgreSQL vs SQLite: {}",
            support::versus(&on_pg, &on_lite)
        );
    }

    // One event, one transaction, durable and chained.
    let lite = Store::open(&dir.path().join("appends.db")).expect("sqlite");
    let shared = Store::open_shared(options.clone(), &dir.path().join("unused.db")).expect("pg");
    let id = SessionId::from_stored("20260000-appends".to_string());
    for s in [&lite, &shared] {
        s.create_session(&id, "bench").expect("session");
    }
    let (mut a_lite, mut a_pg) = (Vec::new(), Vec::new());
    for i in 0..if full { 3_000 } else { 50 } {
        let e = [Event::Note {
            text: format!("note {i}"),
        }];
        let start = Instant::now();
        lite.append_all(&id, "bench", &e).expect("append");
        a_lite.push(start.elapsed());
        let start = Instant::now();
        shared.append_all(&id, "bench", &e).expect("append");
        a_pg.push(start.elapsed());
    }
    println!(
        "one durable append (one event, one transaction), PostgreSQL vs SQLite: {}",
        support::versus(&a_pg, &a_lite)
    );

    // Eight writers at once, each with its own connection.
    let batches = if full { 500 } else { 10 };
    let lite_path = dir.path().join("writers.db");
    let lite8 = concurrent(&|| Store::open(&lite_path).expect("sqlite"), 8, batches);
    let pg8 = concurrent(
        &|| Store::open_shared(options.clone(), &lite_path).expect("pg"),
        8,
        batches,
    );
    let lite1 = concurrent(
        &|| Store::open(&dir.path().join("one.db")).expect("sqlite"),
        1,
        batches,
    );
    let pg1 = concurrent(
        &|| Store::open_shared(options.clone(), &lite_path).expect("pg"),
        1,
        batches,
    );
    println!(
        "append throughput, two-event transactions: 1 writer PostgreSQL {pg1:.0} vs SQLite {lite1:.0} events/s; 8 writers PostgreSQL {pg8:.0} vs SQLite {lite8:.0} events/s (ratio {:.2}x)",
        pg8 / lite8
    );
    drop(shared);

    // Search over many sessions, each store filled through its append path.
    let sessions = if full { 100_000 } else { 100 };
    let search_db = PgDb::new();
    let search_opts = search_db.options();
    let lite = Store::open(&dir.path().join("history.db")).expect("sqlite");
    let shared = Store::open_shared(search_opts, &dir.path().join("unused.db")).expect("pg");
    for (name, store) in [("SQLite", &lite), ("PostgreSQL", &shared)] {
        let start = Instant::now();
        for i in 0..sessions {
            let id = SessionId::from_stored(format!("2026{i:06}-bench"));
            store.create_session(&id, "alice").expect("session");
            store
                .append_all(&id, "alice", &support::session_events(i))
                .expect("append");
        }
        let took = start.elapsed();
        println!(
            "{name}: {sessions} sessions / {} events in session-sized transactions: {:.0} events/s",
            sessions * 10,
            (sessions * 10) as f64 / took.as_secs_f64()
        );
    }
    let start = Instant::now();
    lite.index_for_search().expect("index");
    println!(
        "SQLite: indexing for search behind the appends: {:.1} s (PostgreSQL indexes each event as it is inserted)",
        start.elapsed().as_secs_f64()
    );
    let ticket = format!("OPS-{}", 1000 + sessions / 2);
    let queries: [(&str, Option<&str>, Option<&str>); 5] = [
        ("payments production", None, None),
        ("checkout", None, None),
        ("rollout stuck", None, Some("failed")),
        ("ledger staging", Some("k8s.deploy"), None),
        (ticket.as_str(), None, None),
    ];
    let rounds = if full { 30 } else { 2 };
    let (mut t_lite, mut t_pg) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (text, tool, status) in queries {
            let q = Query {
                text: text.into(),
                tool: tool.map(str::to_string),
                status: status.map(str::to_string),
                limit: 20,
                ..Query::default()
            };
            let start = Instant::now();
            let a = lite.search(&q).expect("search");
            t_lite.push(start.elapsed());
            let start = Instant::now();
            let b = shared.search(&q).expect("search");
            t_pg.push(start.elapsed());
            let ids =
                |f: &[opsbot::session::Found]| f.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
            assert_eq!(
                ids(&a),
                ids(&b),
                "both stores find the same sessions for `{text}`"
            );
        }
    }
    println!(
        "search over {sessions} sessions, 20 newest matching: PostgreSQL p50 {:.2} ms, p99 {:.2} ms; SQLite p50 {:.2} ms, p99 {:.2} ms",
        ms(support::percentile(t_pg.clone(), 0.5)),
        ms(support::percentile(t_pg, 0.99)),
        ms(support::percentile(t_lite.clone(), 0.5)),
        ms(support::percentile(t_lite, 0.99)),
    );
    // The databases go when `db` and `search_db` are dropped.
    drop(shared);
}
