//! Four eyes: a production deploy requested by one person runs only once
//! another, with the role the rule names, approves it from their own
//! opsbot on the same log; the requester's own approval does not count.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use opsbot::session::Event;
use serde_json::Value;

const CONFIG: &str = r##"
[policy]
allow_as = true

[policy.users]
alice = ["developer"]
bob = ["sre"]
carol = ["developer"]

[policy.rules.prod-four-eyes]
tools = ["k8s.deploy"]
when = 'env == "production"'
approvers = 1
approver_not_requester = true
approver_roles = ["sre"]
reason = "production deploys need an SRE who did not ask for them"

# Approvers are told in #approvals; policy allows exactly that.
[notify]
tool = "chat.notify"
args = { channel = "#approvals", text = "{summary}: {command}" }

[policy.rules.notify-approvers]
tools = "chat.notify"
when = 'channel == "#approvals"'
verdict = "allow"
reason = "telling approvers what waits for them"
"##;

/// The records of the session a waiting call's ID (`SESSION:STEP`) names.
fn session_of(home: &Home, id: &str) -> Vec<opsbot::session::Record> {
    let session = id.split(':').next().expect("session");
    home.store()
        .events(&opsbot::session::SessionId::from_stored(
            session.to_string(),
        ))
        .expect("events")
}

/// Alice asks for a production deploy, approving what she may.
fn alice_deploys(home: &Home, config: &str) -> std::process::Child {
    home.cmd(&[
        "--config",
        config,
        "--as",
        "alice",
        "run",
        "deploy checkout to production",
        "--yes",
        "--approve-gated",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("alice's run")
}

/// The deploy as `opsbot approvals list` shows it to Bob, once it waits.
fn waiting_for_bob(home: &Home, config: &str) -> Value {
    first_waiting("k8s.deploy", || {
        home.run(
            &[
                "--config",
                config,
                "--as",
                "bob",
                "approvals",
                "list",
                "--json",
            ],
            &[],
        )
    })
}

#[test]
fn a_production_deploy_waits_for_another_persons_approval() {
    let home = Home::new();
    let config = home.write_config("four-eyes.toml", CONFIG);
    let config = config.to_str().expect("path");
    let mut alice = alice_deploys(&home, config);

    // Bob sees the waiting step.
    let row = waiting_for_bob(&home, config);
    let id = row["id"].as_str().expect("id").to_string();
    assert!(
        row["client"].as_str().is_some_and(|c| c.contains("alice")),
        "{row}"
    );
    // The approvers were told, in their channel, with the command to run.
    let deadline = Instant::now() + Duration::from_secs(120);
    let told = loop {
        let chat = home.sandbox_state("chat.json");
        if let Some(m) = chat["channels"]["#approvals"]
            .as_array()
            .and_then(|m| m.first())
        {
            break m["text"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "approvers were not told: {chat}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(told.contains("alice asks to run k8s.deploy"), "{told}");
    assert!(
        told.contains(&format!("opsbot approvals approve {id}")),
        "{told}"
    );
    assert_eq!(row["decision"]["quorum"]["rule"], "rule.prod-four-eyes");

    // Alice cannot approve her own request; Carol lacks the role.
    let own = home.run(
        &[
            "--config",
            config,
            "--as",
            "alice",
            "approvals",
            "approve",
            &id,
            "--confirm",
            "production",
        ],
        &[],
    );
    assert_exit(&own, 2);
    assert!(
        stderr(&own).contains("alice's own approval does not count"),
        "{}",
        stderr(&own)
    );
    let carol = home.run(
        &[
            "--config",
            config,
            "--as",
            "carol",
            "approvals",
            "approve",
            &id,
            "--confirm",
            "production",
        ],
        &[],
    );
    assert_exit(&carol, 2);
    assert!(stderr(&carol).contains("role sre"), "{}", stderr(&carol));
    // Bob, an SRE, must still type the gate's target.
    let untyped = home.run(
        &[
            "--config",
            config,
            "--as",
            "bob",
            "approvals",
            "approve",
            &id,
        ],
        &[],
    );
    assert_exit(&untyped, 2);
    assert!(
        stderr(&untyped).contains("--confirm production"),
        "{}",
        stderr(&untyped)
    );
    let bob = home.run(
        &[
            "--config",
            config,
            "--as",
            "bob",
            "approvals",
            "approve",
            &id,
            "--confirm",
            "production",
        ],
        &[],
    );
    assert_exit(&bob, 0);
    assert!(stdout(&bob).contains("approved"), "{}", stdout(&bob));

    // Alice's run goes on and deploys.
    let status = alice.wait().expect("alice's run ends");
    let said = read_all(alice.stderr.take().expect("stderr"));
    assert!(
        said.contains("waits for 1 more approval (0 of 1 given) from someone other than alice with role sre [rule.prod-four-eyes]"),
        "{said}"
    );
    assert!(
        said.contains(&format!("opsbot approvals approve {id}")),
        "{said}"
    );
    assert!(
        said.contains("approvers were told through chat.notify"),
        "{said}"
    );
    let out = read_all(alice.stdout.take().expect("stdout"));
    assert_eq!(status.code(), Some(0), "{out}\n{said}");
    // The plan as printed says whose approval the deploy needs.
    assert!(
        out.contains("↳ four eyes: 1 more approval (0 of 1 given) from someone other than the requester with role sre [rule.prod-four-eyes]"),
        "{out}"
    );

    let records = session_of(&home, &id);
    let deploy = opsbot::plan::StepId::new(id.rsplit(':').next().expect("step"));
    let approvals: Vec<&str> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Approved { step, by, .. } if *step == deploy => Some(by.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        approvals,
        vec!["bob"],
        "only bob's approval of the deploy is recorded"
    );
    // Who, from which host, when, bound to what.
    let bobs = records
        .iter()
        .find_map(|r| match &r.event {
            Event::Approved {
                step,
                from,
                args_hash,
                ..
            } if *step == deploy => Some((r.ts.clone(), from.clone(), args_hash.clone())),
            _ => None,
        })
        .expect("bob's approval");
    assert!(bobs.1.as_deref().is_some_and(|h| !h.is_empty()), "{bobs:?}");
    assert_eq!(bobs.2.len(), 64, "bound to the arguments' hash");
    let approved_at = records
        .iter()
        .position(|r| matches!(&r.event, Event::Approved { step, .. } if *step == deploy))
        .expect("approved");
    let started_at = records
        .iter()
        .position(|r| matches!(&r.event, Event::StepStarted { step, .. } if *step == deploy))
        .expect("the deploy ran");
    assert!(approved_at < started_at);
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::StepSucceeded { step, .. } if *step == deploy))
    );
    let verify = home.run(&["audit", "verify"], &[]);
    assert_exit(&verify, 0);
}

#[test]
fn a_refusal_by_the_other_person_stops_the_run() {
    let home = Home::new();
    let config = home.write_config("four-eyes.toml", CONFIG);
    let config = config.to_str().expect("path");
    let mut alice = alice_deploys(&home, config);
    let id = waiting_for_bob(&home, config)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let refused = home.run(
        &[
            "--config",
            config,
            "--as",
            "bob",
            "approvals",
            "refuse",
            &id,
            "--reason",
            "not on a Friday",
        ],
        &[],
    );
    assert_exit(&refused, 0);
    let status = alice.wait().expect("ends");
    let said = read_all(alice.stderr.take().expect("stderr"));
    assert_eq!(status.code(), Some(3), "{said}");
    assert!(said.contains("not on a Friday"), "{said}");
    // The run ended: nothing waits any more.
    let listed = home.run(&["--config", config, "approvals", "list", "--json"], &[]);
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).expect("json"),
        serde_json::json!([])
    );
    let records = session_of(&home, &id);
    assert!(
        !records
            .iter()
            .any(|r| matches!(r.event, Event::StepStarted { .. })),
        "nothing ran"
    );
}
