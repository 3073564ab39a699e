//! Redaction without leaks: secrets of every shape, embedded in JSON,
//! free text, headers, URLs, command lines and tool outputs, never reach
//! what is stored or shown. A property test over the shipped redaction
//! rules, then the real binary end to end: store, WAL, export, logs, search
//! and everything printed.

mod common;

use common::*;
use opsbot::session::Redactor;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// The redactor opsbot ships with (`[audit]` in the built-in defaults).
fn shipped() -> Redactor {
    let config: opsbot::config::Config =
        toml::from_str(opsbot::config::DEFAULT_TOML).expect("the defaults parse");
    Redactor::new(&config.audit.redact_keys, &config.audit.redact_patterns).expect("redactor")
}

/// A secret of one of the shapes people and services use; `core` is the
/// part that must not leak.
fn secret() -> impl Strategy<Value = String> {
    let body = |n: std::ops::RangeInclusive<usize>| {
        proptest::collection::vec(
            prop_oneof![b'a'..=b'z', b'A'..=b'Z', b'0'..=b'9'].prop_map(char::from),
            n,
        )
        .prop_map(|c| c.into_iter().collect::<String>())
    };
    let upper = |n: usize| {
        proptest::collection::vec(
            prop_oneof![b'A'..=b'Z', b'2'..=b'7'].prop_map(char::from),
            n,
        )
        .prop_map(|c| c.into_iter().collect::<String>())
    };
    prop_oneof![
        body(12..=40),
        upper(16).prop_map(|b| format!("AKIA{b}")),
        body(36..=40).prop_map(|b| format!("ghp_{b}")),
        body(20..=30).prop_map(|b| format!("glpat-{b}")),
        body(24..=32).prop_map(|b| format!("xoxb-1234-{b}")),
        body(24..=32).prop_map(|b| format!("sk_live_{b}")),
        body(35..=35).prop_map(|b| format!("AIza{b}")),
        (body(10..=20), body(10..=20), body(20..=30))
            .prop_map(|(a, b, c)| format!("eyJ{a}.eyJ{b}.{c}")),
        body(40..=40).prop_map(|b| format!("{}/{}", &b[..20], &b[20..])),
    ]
}

/// Where a secret sits: a template with `{}` for it.
fn carrier() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "Authorization: Bearer {}",
        "authorization: bearer {}",
        "Proxy-Authorization: Basic {}",
        "curl -H 'Authorization: Token {}' https://api.example.com",
        "token=Bearer {}",
        "{\"password\": \"{}\", \"user\": \"grace\"}",
        "{\"headers\": {\"X-Api-Key\": \"{}\"}}",
        "aws_secret_access_key={}",
        "AWS_SECRET_ACCESS_KEY = {}",
        "pw: {}",
        "db_password {}",
        "--password {}",
        "postgres://app:{}@db.internal:5432/orders",
        "https://deploy:{}@git.example.com/repo.git",
        "connected with client_secret={}; retrying",
        "export GITHUB_TOKEN={}",
        "{\"output\": \"config: {\\\"api_key\\\": \\\"{}\\\"}\"}",
    ])
}

/// The first fragment of `secret` (12 characters, or all of a shorter
/// one) found in `text`.
fn leaked<'a>(secret: &'a str, text: &str) -> Option<&'a str> {
    let n = secret.len().min(12);
    (0..=secret.len() - n)
        .map(|i| &secret[i..i + n])
        .find(|frag| text.contains(frag))
}

/// Shapes a reader cannot tell from a word: they are caught by where they
/// sit (a key, a header, a URL), not by how they look.
fn only_by_place(secret: &str) -> bool {
    !["AKIA", "ghp_", "glpat-", "xoxb-", "sk_live_", "AIza", "eyJ"]
        .iter()
        .any(|p| secret.starts_with(p))
}

#[test]
fn no_secret_survives_the_shipped_redaction_in_any_carrier() {
    let r = shipped();
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        ..Config::default()
    });
    runner
        .run(&(secret(), carrier()), |(secret, carrier)| {
            let text = carrier.replacen("{}", &secret, 1);
            let shown = r.text(&text);
            prop_assert!(
                leaked(&secret, &shown).is_none(),
                "{text:?} became {shown:?}"
            );
            let mut json = serde_json::json!({"text": text, "nested": [{"note": text}]});
            r.value(&mut json);
            let json = json.to_string();
            prop_assert!(leaked(&secret, &json).is_none(), "{json}");
            // As the log stores it: in a message, and in JSON carried as a
            // tool's text (events with nothing to redact take a shortcut).
            for text in [text.clone(), serde_json::json!({"log": [text]}).to_string()] {
                let (_, body) = r
                    .event(&opsbot::session::Event::Note { text })
                    .expect("event");
                prop_assert!(leaked(&secret, &body).is_none(), "{body}");
            }
            Ok(())
        })
        .expect("no leak");
    // A recognisable token is caught on its own, wherever it is.
    let mut runner = TestRunner::new(Config {
        cases: 500,
        ..Config::default()
    });
    runner
        .run(&secret(), |secret| {
            if only_by_place(&secret) {
                return Ok(());
            }
            let text = format!("see {secret} here");
            let shown = r.text(&text);
            prop_assert!(leaked(&secret, &shown).is_none(), "{shown}");
            let (_, body) = r
                .event(&opsbot::session::Event::Note { text })
                .expect("event");
            prop_assert!(leaked(&secret, &body).is_none(), "{body}");
            Ok(())
        })
        .expect("no leak");
}

/// What redaction must not eat: prose that merely names a credential.
#[test]
fn prose_about_credentials_is_left_alone() {
    let r = shipped();
    for text in [
        "rotate the token every 90 days",
        "basic authentication is disabled",
        "the password policy requires 12 characters",
        "see https://example.com/docs@v2 for details",
    ] {
        assert_eq!(r.text(text), text);
    }
}

/// The real binary: a tool echoes each carried secret back; no fragment
/// of any of them is in the store, its WAL, the export, the logs, the
/// search index or anything printed.
#[test]
fn secrets_reach_no_file_and_no_output_end_to_end() {
    let home = Home::new();
    let mut text = fixture_config("fx", "plain");
    text.push_str(&sandbox_off());
    let cfg = home.write_config("fx.toml", &text);
    let cfg = cfg.to_str().expect("utf-8");
    let mut runner = TestRunner::new(Config {
        cases: 1,
        ..Config::default()
    });
    let cases: Vec<(String, String)> = (0..12)
        .map(|_| {
            let s = secret().new_tree(&mut runner).expect("tree").current();
            let c = carrier().new_tree(&mut runner).expect("tree").current();
            (s.clone(), c.replacen("{}", &s, 1))
        })
        .collect();
    let mut printed = String::new();
    for (_, carried) in &cases {
        let out = home.run(
            &[
                "--config",
                cfg,
                "call",
                "fx.echo",
                &format!("text={carried}"),
                "-y",
                "--json",
            ],
            &[],
        );
        assert_exit(&out, 0);
        printed.push_str(&stdout(&out));
        printed.push_str(&stderr(&out));
    }
    let list = home.run(&["--config", cfg, "history", "list", "--json"], &[]);
    printed.push_str(&stdout(&list));
    let sessions: Vec<String> = json(&list)
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect();
    assert_eq!(sessions.len(), cases.len(), "{}", stdout(&list));
    for id in &sessions {
        for format in ["json", "markdown"] {
            let out = home.run(
                &["--config", cfg, "history", "export", id, "--format", format],
                &[],
            );
            printed.push_str(&stdout(&out));
        }
    }
    for (secret, carried) in &cases {
        let fragment = &secret[..secret.len().min(12)];
        let found = home.run(&["--config", cfg, "history", "search", fragment], &[]);
        assert!(
            !stdout(&found).contains(fragment),
            "search found {fragment} from {carried:?}: {}",
            stdout(&found)
        );
        assert!(
            leaked(secret, &printed).is_none(),
            "{carried:?} was printed"
        );
    }
    // Every file opsbot wrote: the store, its WAL, logs, caches.
    let mut files = vec![home.path().to_path_buf()];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        if p.extension().is_some_and(|e| e == "toml") {
            continue;
        }
        let bytes = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
        checked += 1;
        for (secret, carried) in &cases {
            assert!(
                leaked(secret, &bytes).is_none(),
                "{carried:?} reached {}",
                p.display()
            );
        }
    }
    assert!(checked >= 2, "the store was written");
}
