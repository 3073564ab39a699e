//! Command-line front ends. Business rules live in the library; these only
//! parse, print and map outcomes to exit codes.
//!
//! Everything printed goes through `out!`, `err!` or `json_out`: what
//! opsbot prints is full of text from servers, models and the log, and
//! those pass the one sanitiser (`opsbot::sanitize`) on the way.

/// A line on stdout, cleaned for the terminal. A closed stdout (`| head`)
/// ends nothing: the line is dropped.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::emit(false, &format!($($arg)*), true) };
}

/// A line on stderr, cleaned for the terminal.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::emit(true, &format!($($arg)*), true) };
}

pub mod answer;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod call;
pub mod config;
pub mod eval;
pub mod history;
pub mod insights;
pub mod policy;
pub mod print;
pub mod run;
pub mod serve;
pub mod servers;
pub mod store;
pub mod telemetry;
pub mod tools;

use std::path::Path;
use std::process::ExitCode;

use opsbot::paths::Paths;
use opsbot::session::Outcome;

/// Write cleaned text to stdout or stderr, ignoring a closed stream.
pub fn emit(to_stderr: bool, text: &str, newline: bool) {
    use std::io::Write;
    let clean = opsbot::sanitize::clean(text);
    let end = if newline { "\n" } else { "" };
    if to_stderr {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "{clean}{end}").and_then(|()| e.flush());
    } else {
        let _ = write!(std::io::stdout().lock(), "{clean}{end}");
    }
}

/// JSON on stdout: the same data, with every control a terminal could act
/// on written as a `\uXXXX` escape.
pub fn json_out(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    emit_raw(&opsbot::sanitize::json_text(&text));
    Ok(())
}

fn emit_raw(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The log a command works on: the shared store `[store] url` names, or
/// the data directory's file; None when that file does not exist yet.
pub fn open_log(
    paths: &opsbot::paths::Paths,
    config: Option<&std::path::Path>,
    read_only: bool,
) -> anyhow::Result<Option<opsbot::session::Store>> {
    let loaded = opsbot::config::load(paths, config)?;
    open_log_with(paths, &loaded.config.store, read_only)
}

/// `open_log` with the config already loaded.
pub fn open_log_with(
    paths: &opsbot::paths::Paths,
    cfg: &opsbot::config::StoreConfig,
    read_only: bool,
) -> anyhow::Result<Option<opsbot::session::Store>> {
    let db = paths.database();
    if cfg.url.is_none() && !db.exists() {
        return Ok(None);
    }
    Ok(Some(if read_only {
        opsbot::session::open_store_read(&db, cfg)?
    } else {
        opsbot::session::open_store(&db, cfg)?
    }))
}

/// Bad input, config or environment: distinct from a run that failed (1).
pub fn exit_error() -> ExitCode {
    ExitCode::from(2)
}

/// The audit log could not be written (disk full, file deleted, damaged,
/// read-only): nothing more ran. Distinct from bad input (2).
pub const EXIT_STORE: u8 = 7;

/// The exit code for an error that ended a command: a store fault has its
/// own, everything else is bad input or environment.
pub fn exit_for(e: &anyhow::Error) -> ExitCode {
    use opsbot::runtime::RuntimeError;
    use opsbot::session::StoreError;
    let store_fault = e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_store_failure)
            || matches!(
                c.downcast_ref::<RuntimeError>(),
                Some(RuntimeError::Store(s)) if s.is_store_failure()
            )
    });
    if store_fault {
        ExitCode::from(EXIT_STORE)
    } else {
        exit_error()
    }
}

/// Exit codes scripts can tell apart.
pub fn exit_code(outcome: Outcome) -> ExitCode {
    ExitCode::from(match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed => 1,
        Outcome::Denied | Outcome::Rejected => 3,
        Outcome::AwaitingApproval => 4,
        Outcome::NeedsClarification => 5,
        Outcome::InvalidPlan => 6,
        Outcome::Cancelled => 130,
    })
}

pub fn paths(data_dir: Option<&Path>) -> anyhow::Result<Paths> {
    Ok(match data_dir {
        Some(dir) => Paths::rooted(dir),
        None => Paths::discover()?,
    })
}

/// A `--since` value as a stored time (or its prefix): a date, an RFC 3339
/// time, or an age such as 90m, 24h or 7d.
pub fn since(text: &str) -> anyhow::Result<String> {
    let t = text.trim();
    let unit = t.chars().last().unwrap_or(' ');
    if let (Some(n), true) = (
        t.get(..t.len().saturating_sub(1))
            .and_then(|n| n.parse::<i64>().ok()),
        matches!(unit, 'm' | 'h' | 'd' | 'w'),
    ) {
        let ago = match unit {
            'm' => time::Duration::minutes(n),
            'h' => time::Duration::hours(n),
            'd' => time::Duration::days(n),
            _ => time::Duration::weeks(n),
        };
        return Ok((time::OffsetDateTime::now_utc() - ago)
            .format(&time::format_description::well_known::Rfc3339)?);
    }
    let date = t.len() >= 10
        && t.as_bytes()[4] == b'-'
        && t.as_bytes()[7] == b'-'
        && t[..4].bytes().all(|b| b.is_ascii_digit());
    if date {
        return Ok(t.to_string());
    }
    anyhow::bail!(
        "--since `{text}` is not a time: give a date (2026-11-20), an RFC 3339 time, or an age (90m, 24h, 7d, 2w)"
    )
}

/// Logs go to rolling files, never to the terminal. Where the log
/// directory cannot be written (a read-only data directory) they go to the
/// system's temporary directory instead, and stderr says so once; with no
/// writable place at all, there are no logs and every command still works.
pub fn init_logging(paths: &Paths) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let appender = |dir: &Path| {
        std::fs::create_dir_all(dir).ok()?;
        tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("opsbot.log")
            .build(dir)
            .ok()
    };
    let appender = match appender(&paths.log_dir) {
        Some(a) => a,
        None => {
            let fallback =
                std::env::temp_dir().join(format!("opsbot-logs-{}", opsbot::session::os_user()));
            let found = appender(&fallback);
            match &found {
                Some(_) => err!(
                    "opsbot: cannot write logs to {}; logging to {} instead",
                    paths.log_dir.display(),
                    fallback.display()
                ),
                None => err!(
                    "opsbot: cannot write logs to {} or {}; running without logs",
                    paths.log_dir.display(),
                    fallback.display()
                ),
            }
            found?
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSBOT_LOG")
        // rmcp logs every message it receives at info, servers' data and
        // all: opsbot logs what it needs of them itself, redacted.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || opsbot::session::RedactingWriter {
            inner: writer.clone(),
        })
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some(guard)
}

/// `opsbot sandbox NAME`: stdout is the protocol, so logs go to stderr.
pub fn sandbox(name: &str) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err!("sandbox {name}: cannot start the async runtime: {e}");
            return exit_error();
        }
    };
    match rt.block_on(opsbot::sandbox::serve(name)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err!("sandbox {name}: {e}");
            exit_error()
        }
    }
}

/// `opsbot` with no command: the full-screen app on a new session.
pub async fn app(
    paths: Paths,
    config: Option<&Path>,
    theme: Option<String>,
    resume: Option<String>,
    as_user: Option<&str>,
    history: bool,
) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;

    use opsbot::driver::Driver;
    use opsbot::runtime::Runtime;

    let mut rt = Runtime::start(paths, config)?;
    rt.driver = "app".into();
    rt.servers.launch_eager();
    let rt = Arc::new(rt);
    let cfg = &rt.config.config;
    let theme = theme.unwrap_or_else(|| cfg.tui.theme.clone());
    if !opsbot::config::THEMES.contains(&theme.as_str()) {
        anyhow::bail!("unknown theme `{theme}`; the themes are dark, light and high-contrast");
    }
    let options = opsbot::tui::Options {
        theme,
        mouse: cfg.tui.mouse,
        notify: cfg.tui.notify,
        notify_osc: cfg.tui.notify_osc,
        keys: cfg.keys.clone(),
        mode: serde_json::to_value(cfg.approval.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        history,
    };
    let actor = rt.actor(as_user)?;
    let (session, unfinished) = match &resume {
        Some(id) => rt.resume_session(id, &actor)?,
        None => (rt.new_session(&actor)?, None),
    };
    rt.watch_servers(&session);
    let driver = Driver::new(Arc::clone(&rt), session, cfg.approval.mode);
    if let Some(resumed) = unfinished {
        driver.continue_plan(resumed);
    }
    let result = opsbot::tui::run(driver, options).await;
    rt.servers.shutdown().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
