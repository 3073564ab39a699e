//! One driver per session: two resumes of the same interrupted session,
//! headless and headless, then app and headless in a pseudo-terminal.
//! Exactly one drives it; each remaining step starts once; the sandbox shows
//! one new revision; the refused one names who drives the session.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::tmux::Tmux;
use common::*;
use opsbot::session::Event;

/// A staging deploy of checkout killed (SIGKILL) while its build hangs:
/// an interrupted session with the build running and nothing deployed.
fn interrupted_deploy(home: &Home) -> String {
    let mut child: Child = home
        .cmd(&["run", "-y", "deploy checkout to staging"])
        .env("OPSBOT_SANDBOX_FAULTS", "build=hang@checkout")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start opsbot");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines {
        if line.expect("read").contains("▶ build") {
            break;
        }
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    kill_sandbox_processes(home);
    let store = home.store();
    let id = store.list_sessions(1).expect("list")[0].id.to_string();
    assert!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/staging"].is_null(),
        "nothing was deployed before the kill"
    );
    id
}

fn revisions(home: &Home) -> usize {
    home.sandbox_state("k8s.json")["deployments"]["checkout/staging"]["revisions"]
        .as_array()
        .map_or(0, Vec::len)
}

/// How many times each step started in the session, after the kill.
fn starts(home: &Home, id: &str) -> std::collections::BTreeMap<String, usize> {
    let store = home.store();
    let sid = store.find_session(id).expect("session");
    let mut out = std::collections::BTreeMap::new();
    let records = store.events(&sid).expect("events");
    let resumed = position(&records, |e| matches!(e, Event::SessionResumed { .. }))
        .expect("the session was resumed");
    for r in &records[resumed..] {
        if let Event::StepStarted { step, .. } = &r.event {
            *out.entry(step.to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn two_headless_resumes_one_drives_the_other_is_refused() {
    let home = Home::new();
    let id = interrupted_deploy(&home);
    let resume = || {
        home.cmd(&["run", "--resume", &id, "-y"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resume")
    };
    let (a, b) = (resume(), resume());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let (ran, other) = if a.status.code() == Some(0) {
        (a, b)
    } else {
        (b, a)
    };
    assert_exit(&ran, 0);
    assert!(
        stdout(&ran).contains("interrupted while running"),
        "{}",
        stdout(&ran)
    );
    // The other one either found the session driven (and named its
    // driver) or, if it came after, nothing left to run.
    assert_exit(&other, 2);
    let said = stderr(&other);
    assert!(
        said.contains("already being driven by run (pid")
            || said.contains("has nothing left to run"),
        "{said}"
    );
    assert_eq!(revisions(&home), 1, "one new revision");
    let starts = starts(&home, &id);
    assert!(
        starts.values().all(|n| *n == 1),
        "each step once: {starts:?}"
    );
    assert!(starts.contains_key("deploy"), "{starts:?}");

    // The takeover of the killed run's lease is on record, once.
    let store = home.store();
    let records = store
        .events(&store.find_session(&id).expect("id"))
        .expect("events");
    let takeovers = records
        .iter()
        .filter(|r| {
            matches!(
                &r.event,
                Event::SessionLeased {
                    took_over: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(takeovers, 1, "{:?}", kinds(&records));
}

#[test]
fn the_app_drives_a_resumed_session_and_a_headless_resume_is_refused() {
    let home = Home::new();
    let id = interrupted_deploy(&home);
    let t = Tmux::start_with(&home, "", &format!("--resume {id}"), "resume");
    t.wait_for("interrupted: approve", None);

    let refused = home.run(&["run", "--resume", &id, "-y"], &[]);
    assert_exit(&refused, 2);
    let said = stderr(&refused);
    assert!(said.contains("already being driven by app (pid"), "{said}");
    assert!(said.contains("since 20"), "says since when: {said}");

    let done = t.wait_for("Run succeeded", Some("A"));
    assert!(done.contains("7/7"), "{done}");
    t.keys(&["q"]);
    t.wait_until_quit();
    assert_eq!(revisions(&home), 1, "one new revision");
    let starts = starts(&home, &id);
    assert!(
        starts.values().all(|n| *n == 1),
        "each step once: {starts:?}"
    );
    // Once the app let go, the session can be driven again: nothing is left.
    let after = home.run(&["run", "--resume", &id, "-y"], &[]);
    assert!(
        stderr(&after).contains("has nothing left to run"),
        "{}",
        stderr(&after)
    );
}

/// The lease is the OS's: a holder that dies (SIGKILL) frees it at once.
#[test]
fn a_dead_holder_is_taken_over() {
    let home = Home::new();
    let id = interrupted_deploy(&home);
    let out = home.run(&["run", "--resume", &id, "-y"], &[]);
    assert_exit(&out, 0);
    let records = home.last_session();
    let lease = records
        .iter()
        .find_map(|r| match &r.event {
            Event::SessionLeased {
                holder,
                took_over: Some(old),
            } => Some((holder.clone(), old.clone())),
            _ => None,
        })
        .expect("a takeover");
    assert_eq!(lease.0.driver, "run");
    assert_eq!(lease.1.driver, "run");
    assert_ne!(lease.0.pid, lease.1.pid);
}
