//! Starting a stdio server as opsbot's own child process: a minimal
//! environment, a stdout pump (read inline by rmcp) that passes only protocol lines, the
//! stderr tail, and a watcher that records the exit and kills on shutdown.

use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::frames::{Frame, MAX_MESSAGE, next_frame};
use super::lifecycle::mark_exited;
use super::servers::{Entry, SHUTDOWN_GRACE, STDERR_LINES, ServerEvent, SpawnContext};

/// The JSON-RPC error code opsbot's pump answers a bad reply with, so the
/// call can tell it from the server's own errors.
pub(super) const BAD_REPLY: i32 = -32098;

/// An error answer to request `id`, from opsbot, saying the reply was bad.
fn bad_reply_answer(id: &serde_json::Value, problem: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": BAD_REPLY, "message": problem },
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// Only these variables of opsbot's own environment reach a server, plus
/// its configured `env`: servers never see opsbot's secrets.
const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TMPDIR", "USER"];

fn remember(entry: &Entry, line: String) {
    if let Ok(mut buf) = entry.stderr.lock() {
        if buf.len() == STDERR_LINES {
            buf.pop_front();
        }
        buf.push_back(crate::text::truncate(&line, 300));
    }
}

/// A `notifications/tools/list_changed` message (no id, that method).
fn is_tools_list_changed(line: &[u8]) -> bool {
    const METHOD: &[u8] = b"notifications/tools/list_changed";
    line.len() <= super::ledger::NOTIFICATION_MAX
        && line.windows(METHOD.len()).any(|w| w == METHOD)
        && serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| {
            v.get("id").is_none() && v["method"] == "notifications/tools/list_changed"
        })
}

/// Start a stdio server. opsbot owns the child: a pump passes protocol lines
/// from its stdout to rmcp and reports anything else as garbage; a watcher
/// records how it exited and, on shutdown, kills it after a grace period.
pub(super) fn spawn_child(
    entry: &Arc<Entry>,
    ctx: &SpawnContext,
    tools_stale: Arc<tokio::sync::watch::Sender<bool>>,
    progress: Arc<super::ledger::ProgressLedger>,
) -> Result<
    (
        impl tokio::io::AsyncRead + Send + Unpin + 'static,
        tokio::process::ChildStdin,
    ),
    String,
> {
    let cfg = &entry.config;
    let program = ctx.expand(cfg.command.as_deref().unwrap_or_default());
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(cfg.args.iter().map(|a| ctx.expand(a)));
    cmd.env_clear();
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    // The built-in sandbox follows the demo's fault and speed settings.
    if cfg.command.as_deref() == Some("{exe}") {
        for (k, v) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OPSBOT_SANDBOX_") {
                cmd.env(k, v);
            }
        }
    }
    for (k, v) in &cfg.env {
        cmd.env(k, crate::secrets::resolve(&entry.name, k, &ctx.expand(v))?);
    }
    if let Some(cwd) = &cfg.cwd {
        cmd.current_dir(ctx.expand(&cwd.to_string_lossy()));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("cannot start `{program}`: not found (is it installed and on PATH?)")
        }
        _ => format!("cannot start `{program}`: {e}"),
    })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(format!(
            "cannot start `{program}`: its stdio was not captured"
        ));
    };

    let life = entry.new_life();
    let e = Arc::clone(entry);
    let l = Arc::clone(&life);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(server = %e.name, "stderr: {line}");
            remember(&e, line);
        }
        l.stderr_eof.cancel();
    });

    // The pump is read by rmcp's own reader, in its poll: a reply reaches
    // its caller without passing through a task and a pipe of its own.
    progress.counted_by_pump();
    let pump = Pump {
        reader: BufReader::new(stdout),
        entry: Arc::clone(entry),
        tools_stale,
        progress,
    };
    let frames = futures::stream::unfold(pump, |mut pump| async move {
        let line = pump.next_message().await?;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), pump))
    });
    let to_rmcp = tokio_util::io::StreamReader::new(Box::pin(frames));

    let e = Arc::clone(entry);
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            () = e.stopping.cancelled() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!(server = %e.name, "did not exit after stdin closed; killing it");
                        let _ = child.kill().await;
                        child.wait().await
                    }
                }
            }
        };
        let how = match status {
            Ok(s) => s.to_string(),
            Err(err) => format!("unknown exit ({err})"),
        };
        tracing::info!(server = %e.name, "exited: {how}");
        if let Ok(mut exit) = life.exit.lock() {
            *exit = Some(how.clone());
        }
        life.exited.cancel();
        if !e.stopping.is_cancelled() {
            e.settle_exit().await;
            mark_exited(&e, how);
        }
    });
    Ok((to_rmcp, stdin))
}

/// What passes a stdio server's stdout to rmcp: protocol lines as they
/// came, bad replies as errors against the call they answered, and
/// anything else reported as garbage.
struct Pump {
    reader: BufReader<tokio::process::ChildStdout>,
    entry: Arc<Entry>,
    tools_stale: Arc<tokio::sync::watch::Sender<bool>>,
    progress: Arc<super::ledger::ProgressLedger>,
}

impl Pump {
    /// The next line rmcp should read; `None` once the server's stdout ends.
    async fn next_message(&mut self) -> Option<Vec<u8>> {
        let e = &self.entry;
        loop {
            let frame = next_frame(&mut self.reader, MAX_MESSAGE).await.ok()??;
            return Some(match frame {
                Frame::Message(line) => {
                    // rmcp hands a notification to the client on a task of
                    // its own, so a reply read after it could reach its
                    // caller first: the next call would not know the tools
                    // changed. Marked here, in the order the server wrote.
                    if is_tools_list_changed(&line) {
                        self.tools_stale.send_replace(true);
                    }
                    self.progress.seen_line(&line);
                    line
                }
                Frame::Noise(text) if text.is_empty() => continue,
                Frame::Noise(text) => {
                    tracing::warn!(server = %e.name, "not JSON-RPC on stdout: {text}");
                    remember(e, format!("[stdout, not JSON-RPC] {text}"));
                    let _ = e.events.send(ServerEvent::Garbage {
                        server: e.name.clone(),
                        line: crate::text::truncate(&text, 200),
                    });
                    continue;
                }
                Frame::Bad { id, problem } => {
                    tracing::warn!(server = %e.name, "bad reply: {problem}");
                    remember(e, format!("[stdout, bad reply] {problem}"));
                    match id {
                        // The call it answered ends with what happened.
                        Some(id) => bad_reply_answer(&id, &problem),
                        // No id to answer: calls that time out meanwhile
                        // say what the server sent instead.
                        None => {
                            e.note_bad_reply(problem);
                            continue;
                        }
                    }
                }
            });
        }
    }
}
