//! `opsbot servers import|list|enable|disable|remove`, `config check` and
//! `completions`, through the real binary on a private home.

mod common;

use common::*;

const CLAUDE: &str = r#"{"mcpServers": {
  "git": {"command": "uvx", "args": ["mcp-server-git"],
          "env": {"GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "LOG_LEVEL": "debug"}},
  "k8s": {"command": "kubectl-mcp"}
}}"#;

const VSCODE: &str = "{\n  // VS Code keeps servers under `servers`, with comments\n  \"servers\": {\n    \"remote\": {\"type\": \"http\", \"url\": \"https://mcp.example.com/mcp\",\n      \"headers\": {\"Authorization\": \"Bearer sk-abcdefghijklmnopqrstuvwx\", \"X-Org\": \"acme\"}},\n    \"git\": {\"command\": \"uvx\", \"args\": [\"mcp-server-git\"]},\n  },\n}";

const CODEX: &str =
    "[mcp_servers.time]\ncommand = \"uvx\"\nargs = [\"mcp-server-time\"]\nenabled = false\n";

#[test]
fn servers_are_imported_without_their_secrets_and_managed() {
    let home = Home::new();
    let claude = home.write_config("claude_desktop_config.json", CLAUDE);
    let vscode = home.write_config("mcp.json", VSCODE);
    let codex = home.write_config("codex.toml", CODEX);
    let user = home.path().join("config/config.toml");
    std::fs::create_dir_all(user.parent().expect("dir")).expect("dir");
    std::fs::write(&user, "# my own notes\n[tui]\ntheme = \"light\" # keep\n").expect("write");
    let files = [
        claude.to_str().expect("utf-8"),
        vscode.to_str().expect("utf-8"),
        codex.to_str().expect("utf-8"),
    ];

    let mut dry = vec!["servers", "import", "--dry-run"];
    dry.extend(files);
    let out = home.run(&dry, &[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("--dry-run: nothing written"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&user).expect("read"),
        "# my own notes\n[tui]\ntheme = \"light\" # keep\n",
        "a dry run writes nothing"
    );

    let mut real = vec!["servers", "import"];
    real.extend(files);
    let out = home.run(&real, &[]);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(said.contains("+ k8s-2 (renamed: `k8s` is taken)"), "{said}");
    assert!(
        said.contains("= git: the same server was found in another file"),
        "{said}"
    );
    assert!(said.contains("GITHUB_TOKEN"), "{said}");
    let text = std::fs::read_to_string(&user).expect("read");
    assert!(
        text.starts_with("# my own notes\n[tui]\ntheme = \"light\" # keep\n"),
        "{text}"
    );
    for secret in ["ghp_abcdefghij", "sk-abcdefghij"] {
        assert!(!text.contains(secret), "a secret was written: {text}");
        assert!(!said.contains(secret), "a secret was printed: {said}");
    }
    assert!(text.contains("[servers.git]"), "{text}");
    assert!(text.contains("LOG_LEVEL = \"debug\""), "{text}");
    // This machine has no OS keyring: the secret's variable is named instead.
    assert!(
        text.contains("GITHUB_TOKEN = \"${env:GITHUB_TOKEN}\"")
            || text.contains("GITHUB_TOKEN = \"${keyring}\""),
        "{text}"
    );
    assert!(text.contains("X-Org = \"acme\""), "{text}");
    assert!(text.contains("[servers.time]"), "{text}");
    assert!(text.contains("enabled = false"), "{text}");

    // Importing again adds nothing.
    let again = home.run(&real, &[]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains("nothing new to import"),
        "{}",
        stdout(&again)
    );

    let list = home.run(&["servers", "list"], &[]);
    assert_exit(&list, 0);
    let listed = stdout(&list);
    assert!(listed.contains("off time"), "{listed}");
    assert!(listed.contains("on  k8s-2"), "{listed}");
    assert!(
        listed.contains("defined in <built-in defaults>"),
        "{listed}"
    );

    assert_exit(&home.run(&["servers", "enable", "time"], &[]), 0);
    assert_exit(&home.run(&["servers", "disable", "chat"], &[]), 0);
    assert_exit(&home.run(&["servers", "remove", "k8s-2"], &[]), 0);
    let refused = home.run(&["servers", "remove", "k8s"], &[]);
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).contains("servers disable k8s"),
        "{}",
        stderr(&refused)
    );
    let unknown = home.run(&["servers", "enable", "tme"], &[]);
    assert_exit(&unknown, 2);
    assert!(
        stderr(&unknown).contains("did you mean `time`"),
        "{}",
        stderr(&unknown)
    );
    let list = stdout(&home.run(&["servers", "list"], &[]));
    assert!(
        list.contains("on  time") && list.contains("off chat"),
        "{list}"
    );
    assert!(!list.contains("k8s-2"), "{list}");
    let text = std::fs::read_to_string(&user).expect("read");
    assert!(text.starts_with("# my own notes\n"), "{text}");

    // The effective config says where each value comes from.
    let check = home.run(&["config", "check"], &[]);
    assert_exit(&check, 0);
    let shown = stdout(&check);
    assert!(shown.starts_with("valid: 2 layers"), "{shown}");
    assert!(shown.contains("theme = \"light\"    # "), "{shown}");
    assert!(shown.contains("config.toml"), "{shown}");
    assert!(
        shown.contains("command = \"{exe}\"    # <built-in defaults>"),
        "{shown}"
    );
}

#[test]
fn a_bad_client_file_is_named_and_the_others_still_import() {
    let home = Home::new();
    let bad = home.write_config("broken.json", "{\"mcpServers\": ");
    let good = home.write_config("good.json", CLAUDE);
    let out = home.run(
        &[
            "servers",
            "import",
            bad.to_str().expect("utf-8"),
            good.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("broken.json is not valid JSON"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("+ git"), "{}", stdout(&out));
}

#[test]
fn config_check_points_at_a_bad_line_and_completions_print() {
    let home = Home::new();
    let bad = home.write_config("bad.toml", "[servers.x]\ncomand = \"y\"\n");
    let out = home.run(
        &["--config", bad.to_str().expect("utf-8"), "config", "check"],
        &[],
    );
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("bad.toml:2:1"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did you mean `command`"),
        "{}",
        stderr(&out)
    );
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = home.run(&["completions", shell], &[]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("servers"), "{shell}");
    }
}

/// A streamable-HTTP server's configured headers reach it, with their
/// `${env:VAR}` references filled in; the value is not in what is printed.
#[test]
fn configured_headers_are_sent_with_references_filled_in() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = conn.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        String::from_utf8_lossy(&got).to_lowercase()
    });
    let home = Home::new();
    let mut text = String::new();
    for s in ["ci", "quality", "registry", "k8s", "monitor", "chat"] {
        text.push_str(&format!("[servers.{s}]\nenabled = false\n"));
    }
    text.push_str(&format!(
        "[servers.remote]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Org = \"acme\", Authorization = \"Bearer ${{env:OPSBOT_TEST_REMOTE_TOKEN}}\" }}\nstartup_timeout_ms = 20000\n"
    ));
    let config = home.write_config("remote.toml", &text);
    let out = home.run(
        &["--config", config.to_str().expect("utf-8"), "tools"],
        &[("OPSBOT_TEST_REMOTE_TOKEN", "tok-4f9a8b7c6d5e")],
    );
    let request = seen.join().expect("listener");
    assert!(request.contains("x-org: acme"), "{request}");
    assert!(
        request.contains("authorization: bearer tok-4f9a8b7c6d5e"),
        "{request}"
    );
    assert!(
        !stdout(&out).contains("tok-4f9a8b7c6d5e"),
        "{}",
        stdout(&out)
    );
    // Unset, the server is not started and the message says what to export.
    let out = home.run(&["--config", config.to_str().expect("utf-8"), "tools"], &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("export OPSBOT_TEST_REMOTE_TOKEN"),
        "{}",
        stdout(&out)
    );
}
