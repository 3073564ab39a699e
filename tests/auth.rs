//! `opsbot auth` and what a server that wants a login looks like, with the
//! real binary: against a local HTTP server that answers 401 with an OAuth
//! challenge, and through whole flows against our own OAuth-protected
//! server and authorization server (`common::oauth`): login, refresh,
//! a revoked refresh token, a token for another audience, scope step-up,
//! and no token anywhere it must not be. (The official suite's auth
//! scenarios run in `conformance_client.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::Home;

/// An MCP endpoint that refuses every request as an OAuth-protected server
/// does: 401 with a `WWW-Authenticate` challenge.
fn refusing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer resource_metadata=\"http://127.0.0.1:{port}/.well-known/oauth-protected-resource\", scope=\"read\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/mcp")
}

fn config(home: &Home, url: &str) -> std::path::PathBuf {
    let mut text = format!(
        "[servers.remote]\nurl = \"{url}\"\n[servers.local]\ncommand = \"true\"\nenabled = false\n"
    );
    text.push_str(&common::sandbox_off());
    home.write_config("auth.toml", &text)
}

fn run(home: &Home, config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = home
        .cmd(&["--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run opsbot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_server_that_wants_a_login_says_which_command_gives_it_one() {
    let home = Home::new();
    let config = config(&home, &refusing_server());
    let (_, text) = run(&home, &config, &["tools", "--refresh"]);
    assert!(
        text.contains("`remote` needs a login: run `opsbot auth login remote`"),
        "{text}"
    );
    let (ok, text) = run(&home, &config, &["auth", "status"]);
    assert!(ok, "{text}");
    assert!(text.contains("remote: not logged in"), "{text}");
    // The app's server list (S) says the same.
    let t = common::tmux::Tmux::start_with(
        &home,
        "",
        &format!("--config {}", config.display()),
        "login",
    );
    t.wait_for("servers", None);
    t.keys(&["S"]);
    let list = t.wait_for("needs a login", None);
    assert!(list.contains("run `opsbot auth login remote`"), "{list}");
    t.keys(&["S"]);
    t.keys(&["C-c"]);
    t.keys(&["C-c"]);
    t.wait_until_quit();
}

#[test]
fn login_explains_what_it_cannot_do() {
    let home = Home::new();
    let config = config(&home, &refusing_server());
    let (ok, text) = run(&home, &config, &["auth", "login", "local"]);
    assert!(!ok);
    assert!(text.contains("server `local` has no `url`"), "{text}");
    let (ok, text) = run(&home, &config, &["auth", "login", "nosuch"]);
    assert!(!ok);
    assert!(text.contains("no server `nosuch` is configured"), "{text}");
    // The challenge names metadata that is not there: the login says so
    // instead of waiting for a browser.
    let (ok, text) = run(
        &home,
        &config,
        &["auth", "login", "remote", "--no-browser", "--timeout", "5"],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("opsbot:"), "{text}");
    let (_, text) = run(&home, &config, &["auth", "logout", "remote"]);
    assert!(text.contains("`remote` had no login"), "{text}");
}

/// Every file under `dir` (recursively), except the credential store.
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "credentials") {
            continue;
        }
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn login_refresh_step_up_revocation_and_audience_against_a_real_flow() {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let server = tokio.block_on(common::oauth::start());
    let home = Home::new();
    let config = config(&home, &server.mcp_url());
    let mut seen = String::new();
    let mut go = |args: &[&str]| {
        let (ok, text) = run(&home, &config, args);
        seen.push_str(&text);
        (ok, text)
    };

    let (ok, text) = go(&[
        "auth",
        "login",
        "remote",
        "--follow-loopback",
        "--no-browser",
    ]);
    assert!(ok, "{text}");
    {
        let s = server.lock();
        assert!(
            s.resources.iter().all(|r| *r == server.mcp_url()) && !s.resources.is_empty(),
            "every authorization and token request names the server (RFC 8707): {:?}",
            s.resources
        );
        assert!(
            s.asked_scopes[0].contains("things:read"),
            "{:?}",
            s.asked_scopes
        );
    }
    let (ok, text) = go(&["auth", "status"]);
    assert!(
        ok && text.contains("remote") && text.contains("things:read"),
        "{text}"
    );
    let (ok, text) = go(&["call", "remote.whoami", "-y"]);
    assert!(ok, "{text}");
    assert!(text.contains("whoami ok"), "{text}");

    // The access token stops working: refreshed once, and the call goes on.
    server.expire_access();
    let (ok, text) = go(&["call", "remote.whoami", "-y"]);
    assert!(ok, "{text}");
    assert_eq!(server.lock().refreshes, 1, "one refresh");

    // A tool that needs more scope: the failure says to log in again, and
    // that login asks for the scope the server named.
    let (ok, text) = go(&["call", "remote.write_thing", "-y"]);
    assert!(!ok, "{text}");
    assert!(text.contains("opsbot auth login remote"), "{text}");
    let (ok, text) = go(&[
        "auth",
        "login",
        "remote",
        "--follow-loopback",
        "--no-browser",
    ]);
    assert!(ok, "{text}");
    assert!(
        server
            .lock()
            .asked_scopes
            .last()
            .is_some_and(|s| s.contains("things:write")),
        "{:?}",
        server.lock().asked_scopes
    );
    let (ok, text) = go(&["call", "remote.write_thing", "-y"]);
    assert!(ok, "{text}");
    assert!(text.contains("write_thing ok"), "{text}");

    // Access expired and the refresh token revoked: a login is needed, and
    // opsbot says which command gives it.
    server.expire_access();
    server.revoke_refresh();
    let (ok, text) = go(&["call", "remote.whoami", "-y"]);
    assert!(!ok, "{text}");
    assert!(text.contains("opsbot auth login remote"), "{text}");

    // Tokens issued for another resource are refused by the server: the
    // login that got them does not make calls work.
    server.lock().wrong_audience = true;
    let (ok, text) = go(&[
        "auth",
        "login",
        "remote",
        "--follow-loopback",
        "--no-browser",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = go(&["call", "remote.whoami", "-y"]);
    assert!(!ok, "{text}");
    assert!(text.contains("opsbot auth login remote"), "{text}");

    // No token in anything opsbot printed, logged or recorded (the audit
    // log, its WAL, the search index, the caches, the log files).
    let (ok, export) = go(&["audit", "export"]);
    assert!(ok, "{export}");
    let issued = server.lock().issued.clone();
    assert!(issued.len() >= 8, "{issued:?}");
    let mut files = Vec::new();
    files_under(home.path(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("opsbot.db"))
            && files
                .iter()
                .any(|f| f.starts_with(home.path().join("logs"))),
        "the audit log and the log files are among those searched: {files:?}"
    );
    // The store file must hold the calls themselves (so the search means something).
    let db = std::fs::read(home.path().join("data/opsbot.db")).unwrap_or_default();
    assert!(!db.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for t in &issued {
            assert!(!text.contains(t.as_str()), "a token is in {}", f.display());
        }
    }
    for t in &issued {
        assert!(!seen.contains(t.as_str()), "a token was printed");
    }
}

/// A server that takes an API key: `headers` take it from a named
/// environment variable, and it is redacted wherever opsbot writes.
#[test]
fn a_static_api_key_comes_from_the_environment_and_is_never_written() {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let server = tokio.block_on(common::oauth::start());
    let key = "thk_live_8f3a1c9e5b7d2f40a6c8e1b3";
    server.lock().api_key = Some(key.to_string());
    let home = Home::new();
    let mut text = format!(
        "[servers.remote]\nurl = \"{}\"\nheaders = {{ X-Api-Key = \"${{env:THINGS_KEY}}\" }}\n",
        server.mcp_url()
    );
    text.push_str(&common::sandbox_off());
    let config = home.write_config("key.toml", &text);
    let out = home
        .cmd(&["--config"])
        .arg(&config)
        .args(["call", "remote.whoami", "-y"])
        .env("THINGS_KEY", key)
        .output()
        .expect("run");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("whoami ok"), "{printed}");
    // Without the variable, the call fails and says which variable is missing.
    let out = home
        .cmd(&["--config"])
        .arg(&config)
        .args(["call", "remote.whoami", "-y"])
        .output()
        .expect("run");
    let missing = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{missing}");
    assert!(missing.contains("THINGS_KEY"), "{missing}");
    let mut files = Vec::new();
    files_under(home.path(), &mut files);
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        assert!(!text.contains(key), "the key is in {}", f.display());
    }
    assert!(!printed.contains(key) && !missing.contains(key));
}
