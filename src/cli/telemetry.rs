//! `opsbot telemetry status|flush`: the OpenTelemetry export, by hand.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use opsbot::paths::Paths;
use opsbot::telemetry::{Lag, Pump};

#[derive(Subcommand)]
pub enum TelemetryCommand {
    /// Where the export stands: the collector, whether it answers, and how
    /// many records and runs it has not had yet.
    Status,
    /// Send everything not yet sent, now (exit 1 if the collector does not
    /// take it; nothing is lost, the next export resumes).
    Flush,
}

pub async fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: TelemetryCommand,
) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    let cfg = &loaded.config.telemetry;
    let Some(endpoint) = cfg.otlp_endpoint.as_deref() else {
        out!(
            "no export is configured: set [telemetry] otlp_endpoint (e.g. \"http://localhost:4318\")"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let store = Arc::new(opsbot::session::open_store(
        &paths.database(),
        &loaded.config.store,
    )?);
    if let Some(fault) = store.fault() {
        anyhow::bail!("{fault}");
    }
    let mut pump = Pump::new(Arc::clone(&store), cfg)?;
    match command {
        TelemetryCommand::Status => {
            out!("collector: {endpoint}");
            match pump.probe().await {
                Ok(took) => out!("  answers ({} ms)", took.as_millis()),
                Err(e) => out!("  {e}"),
            }
            print_lag(&pump.lag()?, cfg.logs, cfg.traces);
            Ok(ExitCode::SUCCESS)
        }
        TelemetryCommand::Flush => {
            let sent = match pump.export_pending().await {
                Ok(sent) => sent,
                Err(e) => {
                    err!("opsbot: {e}");
                    print_lag(&pump.lag()?, cfg.logs, cfg.traces);
                    return Ok(ExitCode::from(1));
                }
            };
            out!(
                "sent {} records and {} runs ({} spans) to {endpoint}",
                sent.logs,
                sent.runs,
                sent.spans
            );
            if sent.refused > 0 {
                out!(
                    "the collector refused {} as malformed; they stay in the audit log (see opsbot's log)",
                    sent.refused
                );
            }
            print_lag(&pump.lag()?, cfg.logs, cfg.traces);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_lag(lag: &Lag, logs: bool, traces: bool) {
    const NOT_STARTED: &str = "not started (the first export starts from here)";
    if logs {
        let line = match lag.logs_upto {
            None => NOT_STARTED.to_string(),
            Some(at) if at >= lag.head => format!("up to date (#{at})"),
            Some(at) => format!(
                "{} records behind (sent up to #{at} of #{})",
                lag.head - at,
                lag.head
            ),
        };
        out!("  logs:   {line}");
    }
    if traces {
        let line = match (lag.traces_upto, lag.runs_behind) {
            (None, _) => NOT_STARTED.to_string(),
            (Some(_), 0) => "up to date (every finished run)".to_string(),
            (Some(_), n) => format!("{n} finished runs not sent yet"),
        };
        out!("  traces: {line}");
    }
}
