//! `opsbot auth` and what a server that wants a login looks like, with the
//! real binary against a local HTTP server that answers 401 with an OAuth
//! challenge. (Whole login flows run against real authorization servers in
//! `conformance_client.rs`.)

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
    for s in ["chat", "ci", "k8s", "monitor", "quality", "registry"] {
        text.push_str(&format!("[servers.{s}]\nenabled = false\n"));
    }
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
