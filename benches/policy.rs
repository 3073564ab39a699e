//! Policy evaluation per call, measured side by side in one run
//! (`cargo bench --bench policy`): 1,000 rules and 10,000 prior events
//! against 10 rules and no history, for calls that match few rules and for
//! one that matches an ordering rule needing effect look-ups.
//!
//! Under `cargo test` it runs a few iterations, as a smoke test.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use opsbot::config::{
    EffectConfig, FreezeConfig, LimitConfig, Patterns, PolicyConfig, RuleConfig, Verdict,
};
use opsbot::mcp::{Annotations, ToolInfo};
use opsbot::policy::{Call, Context, History, Policy};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

const SERVICES: [&str; 8] = [
    "checkout", "payments", "catalog", "search", "cart", "users", "orders", "mail",
];

fn policy(rules: usize) -> Policy {
    let mut config = PolicyConfig {
        effects: vec![
            EffectConfig {
                effect: "tests.passed".into(),
                tools: Patterns::One("ci.run_tests".into()),
                scope: vec!["service".into()],
                ..EffectConfig::default()
            },
            EffectConfig {
                effect: "scan.passed".into(),
                tools: Patterns::One("quality.scan".into()),
                scope: vec!["service".into()],
                ..EffectConfig::default()
            },
        ],
        ..PolicyConfig::default()
    };
    for i in 0..rules {
        let server = format!("srv{}", i % 50);
        let rule = match i % 4 {
            0 => RuleConfig {
                tools: Patterns::One(format!("{server}.tool_{i}")),
                when: Some(format!("env == \"production\" and replicas > {}", i % 20)),
                verdict: Some(Verdict::Deny),
                reason: format!("rule {i}"),
                ..RuleConfig::default()
            },
            1 => RuleConfig {
                tools: Patterns::Many(vec![format!("{server}.*"), format!("*.delete_{i}")]),
                when: Some(format!("service in [\"{}\", \"x\"]", SERVICES[i % 8])),
                roles: vec!["developer".into()],
                verdict: Some(Verdict::Approve),
                reason: format!("rule {i}"),
                ..RuleConfig::default()
            },
            2 => RuleConfig {
                tools: Patterns::One(format!("{server}.deploy_{i}")),
                requires: vec!["tests.passed".into()],
                reason: format!("rule {i}"),
                ..RuleConfig::default()
            },
            _ => RuleConfig {
                tools: Patterns::One(format!("*.op_{i}")),
                verdict: Some(Verdict::Allow),
                reason: format!("rule {i}"),
                ..RuleConfig::default()
            },
        };
        config.rules.insert(format!("r{i:04}"), rule);
    }
    // The rule a production deploy of the sandbox meets.
    config.rules.insert(
        "prod-needs-checks".into(),
        RuleConfig {
            tools: Patterns::One("k8s.deploy".into()),
            when: Some("env == \"production\"".into()),
            requires: vec!["tests.passed".into(), "scan.passed".into()],
            reason: "checks first".into(),
            ..RuleConfig::default()
        },
    );
    config.freezes.insert(
        "friday".into(),
        FreezeConfig {
            tools: Patterns::One("k8s.*".into()),
            days: vec!["fri".into()],
            from: Some("16:00".into()),
            reason: "weekend".into(),
            ..FreezeConfig::default()
        },
    );
    config.limits.insert(
        "deploys".into(),
        LimitConfig {
            tools: Patterns::One("k8s.deploy".into()),
            max: 1_000_000,
            per: "1h".into(),
            ..LimitConfig::default()
        },
    );
    Policy::new(config).unwrap_or_else(|e| panic!("{}: {}", e.table, e.message))
}

/// 10,000 events: effects for many services and sessions, and calls.
fn history(events: usize, now: OffsetDateTime) -> History {
    let mut h = History::default();
    for i in 0..events {
        let at = now - time::Duration::seconds((events - i) as i64);
        let session = format!("s{}", i % 200);
        match i % 3 {
            0 => h.add_effect(
                if i % 2 == 0 {
                    "tests.passed"
                } else {
                    "scan.passed"
                },
                BTreeMap::from([("service".to_string(), format!("svc{}", i % 500))]),
                at,
                &session,
            ),
            _ => h.add_call(&format!("user{}", i % 20), "k8s.deploy", at),
        }
    }
    // The session being checked has run tests and scan for checkout.
    for effect in ["tests.passed", "scan.passed"] {
        h.add_effect(
            effect,
            BTreeMap::from([("service".to_string(), "checkout".to_string())]),
            now,
            "current",
        );
    }
    h
}

fn tool(server: &str, name: &str) -> ToolInfo {
    ToolInfo {
        server: server.into(),
        name: name.into(),
        description: "Deploy an image of a service to an environment".into(),
        input_schema: json!({"type": "object"}),
        annotations: Annotations::default(),
        def_hash: "h".into(),
        sent: None,
    }
}

fn per_call(policy: &Policy, h: &History, call: &Call<'_>, info: &ToolInfo, n: u32) -> Duration {
    let roles = vec!["developer".to_string()];
    let pins = HashMap::new();
    let ctx = Context {
        actor: "user3",
        roles: &roles,
        session: "current",
        now: OffsetDateTime::now_utc(),
        history: h,
        pins: &pins,
        planned: &[],
    };
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(policy.decide(call, Some(info), &ctx, None));
    }
    start.elapsed() / n
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 20_000 } else { 10 };
    let now = OffsetDateTime::now_utc();
    let big = policy(1_000);
    let small = policy(10);
    let h_big = history(10_000, now);
    let h_none = History::default();
    let args = |v: Value| -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    };
    let deploy_args =
        args(json!({"service": "checkout", "env": "production", "image": "i", "replicas": 3}));
    let deploy = Call {
        tool: "k8s.deploy",
        args: &deploy_args,
        gated: false,
    };
    let other_args = args(json!({"service": "payments", "env": "staging", "replicas": 12}));
    let other = Call {
        tool: "srv7.tool_7",
        args: &other_args,
        gated: false,
    };
    let k8s = tool("k8s", "deploy");
    let srv = tool("srv7", "tool_7");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let deploy_big = per_call(&big, &h_big, &deploy, &k8s, n);
    let deploy_small = per_call(&small, &h_none, &deploy, &k8s, n);
    let other_big = per_call(&big, &h_big, &other, &srv, n);
    let other_small = per_call(&small, &h_none, &other, &srv, n);
    println!(
        "production deploy (ordering rule, 2 effect look-ups, freeze, limit): {:.2} µs with 1,000 rules + 10,000 events (10 rules, no history: {:.2} µs, ratio {:.1}x)",
        us(deploy_big),
        us(deploy_small),
        us(deploy_big) / us(deploy_small).max(1e-9)
    );
    println!(
        "call matching a server's rules (patterns, conditions, roles):       {:.2} µs with 1,000 rules + 10,000 events (10 rules, no history: {:.2} µs, ratio {:.1}x)",
        us(other_big),
        us(other_small),
        us(other_big) / us(other_small).max(1e-9)
    );
}
