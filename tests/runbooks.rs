//! The built-in runbooks run end to end against the sandbox and leave it in
//! the state they promise.

mod common;

use common::*;
use opsbot::plan::StepId;
use opsbot::session::StepStatus;

#[test]
fn promote_carries_one_build_through_every_environment() {
    let home = Home::new();
    let out = home.run(
        &["run", "promote payments", "--yes", "--approve-gated"],
        &[],
    );
    assert_exit(&out, 0);
    let k8s = home.sandbox_state("k8s.json");
    let images: Vec<_> = ["dev", "staging", "production"]
        .iter()
        .map(|env| k8s["deployments"][format!("payments/{env}")]["revisions"][0]["image"].clone())
        .collect();
    assert!(images[0].is_string());
    assert!(
        images.iter().all(|i| i == &images[0]),
        "one image everywhere: {images:?}"
    );
}

#[test]
fn promote_without_the_gate_stops_before_production_with_earlier_stages_done() {
    let home = Home::new();
    let out = home.run(&["run", "promote search", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(4));
    let st = state(&home.last_session());
    assert_eq!(
        st.steps[&StepId::new("health_staging")].status(),
        StepStatus::Succeeded
    );
    assert_eq!(
        st.steps[&StepId::new("deploy_production")].status(),
        StepStatus::Skipped
    );
    assert!(home.sandbox_state("k8s.json")["deployments"]["search/production"].is_null());
}

#[test]
fn rollback_returns_to_the_previous_revision() {
    let home = Home::new();
    for _ in 0..2 {
        let out = home.run(&["run", "deploy catalog to staging", "--yes"], &[]);
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    }
    let before = home.sandbox_state("k8s.json")["deployments"]["catalog/staging"].clone();
    assert_eq!(before["current"], 2);
    // k8s.rollback is destructive, so it is gated even outside production.
    let out = home.run(&["run", "roll back catalog in staging", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["catalog/staging"]["current"],
        2
    );
    let out = home.run(
        &[
            "run",
            "roll back catalog in staging",
            "--yes",
            "--approve-gated",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let after = &home.sandbox_state("k8s.json")["deployments"]["catalog/staging"];
    assert_eq!(after["current"], 1);
    let chat = home.sandbox_state("chat.json");
    let last = chat["channels"]["#deploys"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["text"]
            .as_str()
            .unwrap_or_default()
            .contains("back to revision 1: healthy"),
        "{last}"
    );
}

#[test]
fn triage_reports_a_bad_release_to_oncall() {
    let home = Home::new();
    let out = home.run(&["run", "deploy checkout to staging", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let out = home.run(
        &["run", "triage checkout in staging", "--yes"],
        &[("OPSBOT_SANDBOX_FAULTS", "health=unhealthy@checkout/staging")],
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let chat = home.sandbox_state("chat.json");
    let text = chat["channels"]["#oncall"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.starts_with("Triage checkout/staging: revision 1, error rate 0.34"),
        "{text}"
    );
    assert!(text.ends_with("1 alerts firing"), "{text}");
}
