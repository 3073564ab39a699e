//! The offline history at scale (`cargo bench --bench history`): a log of
//! 100,000 sessions / 1,000,000 events, generated through the store's own
//! append path (hash chain and all), then:
//! - append throughput with the chain, one event per transaction and a
//!   session's events per transaction;
//! - indexing the whole log for search;
//! - search latency, p50 and p99, over a mix of queries;
//! - the time to open a session (read its events and fold them).
//!
//! Under `cargo test` it runs on 200 sessions, as a smoke test.

mod support;

use std::time::{Duration, Instant};

use opsbot::session::{Event, Query, Seal, SessionId, SessionState, Store};
use support::session_events;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sessions = if full { 100_000 } else { 200 };
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("history.db")).expect("store");

    let start = Instant::now();
    let mut ids = Vec::with_capacity(sessions);
    for i in 0..sessions {
        // Generated ids are time-based; thousands a second would collide.
        let id = SessionId::from_stored(format!("2026{:06}-bench", i));
        store.create_session(&id, "alice").expect("session");
        store
            .append_all(&id, "alice", &session_events(i))
            .expect("append");
        ids.push(id);
    }
    let generated = start.elapsed();
    let events = sessions * 10;
    println!(
        "generated {sessions} sessions / {events} events through the chained append path in {:.1} s: {:.0} events/s in session-sized transactions",
        generated.as_secs_f64(),
        events as f64 / generated.as_secs_f64()
    );

    let singles = if full { 5_000 } else { 200 };
    let start = Instant::now();
    for i in 0..singles {
        store
            .append(
                &ids[0],
                "alice",
                &Event::Note {
                    text: format!("n {i}"),
                },
            )
            .expect("append");
    }
    let single = start.elapsed();
    println!(
        "one event per transaction (durable, chained): {:.0} events/s ({:.0} µs each)",
        singles as f64 / single.as_secs_f64(),
        single.as_secs_f64() * 1e6 / singles as f64
    );

    signing_side_by_side(dir.path(), if full { 5_000 } else { 200 });

    let start = Instant::now();
    let indexed = store.index_for_search().expect("index");
    println!(
        "indexing {indexed} events for search: {:.1} s (done behind the appends while the app runs)",
        start.elapsed().as_secs_f64()
    );

    let ticket = format!("OPS-{}", 1000 + sessions / 2);
    let queries: [(&str, Option<&str>, Option<&str>); 6] = [
        ("payments production", None, None),
        ("checkout", None, None),
        ("rollout stuck", None, Some("failed")),
        ("ledger staging", Some("k8s.deploy"), None),
        (ticket.as_str(), None, None),
        ("no-such-word-anywhere", None, None),
    ];
    let rounds = if full { 50 } else { 3 };
    let mut times = Vec::new();
    let mut per_query = Vec::new();
    for (text, tool, status) in queries {
        let mut mine = Vec::new();
        for _ in 0..rounds {
            let q = Query {
                text: text.into(),
                since: None,
                tool: tool.map(str::to_string),
                status: status.map(str::to_string),
                limit: 20,
                skip_empty: false,
            };
            let start = Instant::now();
            let found = store.search(&q).expect("search");
            let took = start.elapsed();
            assert!(text.starts_with("no-such") || !found.is_empty(), "{text}");
            mine.push(took);
            times.push(took);
        }
        per_query.push(format!(
            "`{text}` {:.2} ms",
            ms(support::percentile(mine, 0.5))
        ));
    }
    println!(
        "search, 20 newest matching sessions: p50 {:.2} ms, p99 {:.2} ms over {} searches ({})",
        ms(support::percentile(times.clone(), 0.5)),
        ms(support::percentile(times, 0.99)),
        queries.len() * rounds,
        per_query.join(", ")
    );

    // The TUI browser: a list of up to 200 sessions, searched again at
    // every keystroke of "payments production".
    let typed = "payments production";
    let mut keystrokes = Vec::new();
    for _ in 0..(rounds / 3).max(1) {
        for end in 0..=typed.len() {
            let q = Query {
                text: typed[..end].into(),
                limit: opsbot::tui::app::LIST_LIMIT,
                skip_empty: true,
                ..Query::default()
            };
            let start = Instant::now();
            let found = store.search(&q).expect("search");
            keystrokes.push(start.elapsed());
            assert!(!found.is_empty(), "{}", &typed[..end]);
        }
    }
    println!(
        "history browser, {} sessions listed per keystroke: p50 {:.2} ms, p99 {:.2} ms over {} keystrokes",
        opsbot::tui::app::LIST_LIMIT,
        ms(support::percentile(keystrokes.clone(), 0.5)),
        ms(support::percentile(keystrokes.clone(), 0.99)),
        keystrokes.len()
    );

    let mut opens = Vec::new();
    let step = (sessions / 200).max(1);
    for id in ids.iter().step_by(step) {
        let start = Instant::now();
        let records = store.events(id).expect("events");
        let state = SessionState::replay(&records);
        opens.push(start.elapsed());
        assert!(state.outcome.is_some());
    }
    println!(
        "open a session (read its events, fold them): p50 {:.2} ms, p99 {:.2} ms",
        ms(support::percentile(opens.clone(), 0.5)),
        ms(support::percentile(opens, 0.99))
    );

    // `opsbot insights` over every session (aim: under 200 ms at 100,000).
    // The first call tallies whatever the checkpoint thread had not yet;
    // then it reads the day-by-day tallies. The CLI opens the log
    // read-only, as `opsbot insights` does, and tallies nothing.
    let start = Instant::now();
    let first = store.insights(None).expect("insights");
    let first_took = start.elapsed();
    assert_eq!(first.runs as usize, sessions);
    let mut runs = Vec::new();
    for _ in 0..if full { 20 } else { 3 } {
        let start = Instant::now();
        let i = store.insights(None).expect("insights");
        runs.push(start.elapsed());
        assert_eq!(i, first);
    }
    let mut cli = Vec::new();
    for _ in 0..if full { 20 } else { 3 } {
        let start = Instant::now();
        let reader = Store::open_read(&dir.path().join("history.db")).expect("open");
        let i = reader.insights(None).expect("insights");
        cli.push(start.elapsed());
        assert_eq!(i.runs as usize, sessions);
    }
    println!(
        "insights over {sessions} sessions: p50 {:.0} ms, p99 {:.0} ms (the first call, tallying what was left: {:.0} ms); opened read-only as the CLI does: p50 {:.0} ms",
        ms(support::percentile(runs.clone(), 0.5)),
        ms(support::percentile(runs, 0.99)),
        ms(first_took),
        ms(support::percentile(cli, 0.5)),
    );

    // `audit verify` over the whole log: the chain walk, then the proof
    // (signed head, anchor file, pruned markers) under a key of its own.
    let (seal, _) = Seal::load_or_create(&dir.path().join("config")).expect("key");
    store.adopt_seal(seal.clone(), true).expect("adopt");
    let start = Instant::now();
    let v = store.verify_all().expect("verify");
    let walked = start.elapsed();
    let proof = store
        .prove(Some(&seal), v.last_seq, &v.last_hash, None)
        .expect("prove");
    assert!(proof.problems.is_empty(), "{:?}", proof.problems);
    println!(
        "audit verify over {} events: chain walk {:.1} s, proof {:.1} ms",
        v.last_seq,
        walked.as_secs_f64(),
        ms(start.elapsed() - walked)
    );
}

/// Per-event latency of a durable append, the plain chain against the
/// signed one (HMAC of the head in the same transaction, anchor file
/// written after), interleaved in one run so machine speed cancels out.
fn signing_side_by_side(dir: &std::path::Path, rounds: usize) {
    let plain = Store::open(&dir.join("plain.db")).expect("plain");
    let signed = Store::open(&dir.join("signed.db")).expect("signed");
    let (seal, _) = Seal::load_or_create(&dir.join("signing-key")).expect("key");
    signed.set_seal(seal);
    let id = SessionId::from_stored("20260000-signing".to_string());
    for s in [&plain, &signed] {
        s.create_session(&id, "alice").expect("session");
    }
    let (mut p, mut q) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds + 50 {
        for (store, times) in [(&plain, &mut p), (&signed, &mut q)] {
            let event = Event::Note {
                text: format!("n {i}"),
            };
            let start = Instant::now();
            store.append(&id, "alice", &event).expect("append");
            if i >= 50 {
                times.push(start.elapsed());
            }
        }
    }
    println!(
        "one durable append, signed vs plain chain: {}",
        support::versus(&q, &p)
    );
}
