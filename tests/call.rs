//! `opsbot call SERVER.TOOL KEY=VALUE…`: one tool by name, typed by its
//! schema, decided, approved, run and recorded like any plan.

mod common;

use common::*;
use opsbot::session::Event;

#[test]
fn a_named_call_is_typed_governed_and_recorded() {
    let home = Home::new();
    // Deploy first so there is something to scale.
    assert_exit(&home.run(&["run", "-y", "deploy checkout to dev"], &[]), 0);

    // Not approved: nothing runs (exit 4, as `run`).
    let unapproved = home.run(
        &[
            "call",
            "k8s.scale",
            "service=checkout",
            "env=dev",
            "replicas=4",
        ],
        &[],
    );
    assert_exit(&unapproved, 4);

    // Destructive, so gated: --yes is not enough, --approve-gated is.
    let ok = home.run(
        &[
            "call",
            "k8s.scale",
            "service=checkout",
            "env=dev",
            "replicas=4",
            "--approve-gated",
        ],
        &[],
    );
    assert_exit(&ok, 0);
    let k8s = home.sandbox_state("k8s.json");
    assert_eq!(k8s["deployments"]["checkout/dev"]["replicas"], 4, "{k8s}");
    let records = home.last_session();
    let started = records.iter().find_map(|r| match &r.event {
        Event::StepStarted { tool, args, .. } => Some((tool.clone(), args.clone())),
        _ => None,
    });
    let (tool, args) = started.expect("the call was recorded");
    assert_eq!(tool, "k8s.scale");
    assert_eq!(
        args["replicas"],
        serde_json::json!(4),
        "typed as an integer"
    );
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::UserMessage { text } if text == "/call k8s.scale service=checkout env=dev replicas=4"
    )));

    // --args JSON, with an alias canonicalised like any plan's arguments.
    let json = home.run(
        &[
            "call",
            "monitor.health",
            "--args",
            r#"{"service": "checkout", "env": "development"}"#,
            "--yes",
            "--json",
        ],
        &[],
    );
    assert_exit(&json, 0);
    let out: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(out["outcome"], "succeeded", "{out}");
}

#[test]
fn a_call_that_cannot_be_made_says_what_to_write() {
    let home = Home::new();
    let cases: [(&[&str], &str); 5] = [
        (&["call", "k8s.scal"], "did you mean `k8s.scale`?"),
        (&["call", "scale"], "write the tool as `server.tool`"),
        (
            &["call", "k8s.scale", "servce=checkout"],
            "takes no argument `servce` (did you mean `service`?)",
        ),
        (
            &[
                "call",
                "k8s.scale",
                "service=checkout",
                "env=dev",
                "replicas=many",
            ],
            "`replicas` expects integer, not `many`",
        ),
        (
            &["call", "k8s.scale", "service=checkout"],
            "k8s.scale needs `env`",
        ),
    ];
    for (args, expected) in cases {
        let out = home.run(args, &[]);
        assert_exit(&out, 6);
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Nothing was called, and each refusal is on record.
    assert!(home.sandbox_state("k8s.json").is_null());
    let invalid = home.store().list_sessions(10).expect("list");
    assert_eq!(invalid.len(), 5);
}
