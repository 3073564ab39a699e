//! `opsbot serve`: opsbot as an MCP server, on stdio or streamable HTTP.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use opsbot::paths::Paths;
use opsbot::runtime::Runtime;

#[derive(Args)]
pub struct ServeArgs {
    /// Speak streamable HTTP on this address (e.g. 127.0.0.1:8765) instead
    /// of stdio. Any address but loopback needs a bearer token.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Serve only these servers' tools (comma-separated names).
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub only: Vec<String>,
}

pub async fn run(
    paths: Paths,
    config: Option<&Path>,
    args: ServeArgs,
    as_user: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut rt = Runtime::start_serving(paths, config)?;
    rt.driver = "serve".into();
    rt.servers.launch_eager();
    let rt = Arc::new(rt);
    let actor = rt.actor(as_user)?;
    let serve_cfg = &rt.config.config.serve;
    let naming = opsbot::serve::Naming {
        namespace: serve_cfg.namespace,
        separator: serve_cfg.separator.clone(),
        only: (!args.only.is_empty()).then(|| args.only.clone()),
    };
    let serving = async {
        match &args.http {
            None => opsbot::serve::stdio(Arc::clone(&rt), actor, naming).await,
            Some(addr) => {
                let token = opsbot::secrets::serve_token();
                opsbot::serve::http(Arc::clone(&rt), actor, naming, addr, token, |bound| {
                    err!("opsbot serves MCP at http://{bound}/mcp");
                })
                .await
            }
        }
    };
    let mut signals = opsbot::signals::StopSignals::new()?;
    // A stop signal cancels the calls in flight (each session records it),
    // waits a little for them to be recorded, then ends; a second one ends
    // at once.
    let result = tokio::select! {
        r = serving => r,
        which = signals.next() => {
            err!("{which}: cancelling the calls in flight, then stopping ({which} again stops at once)");
            rt.stop(which);
            tokio::select! {
                _ = rt.drained(std::time::Duration::from_secs(10)) => {}
                _ = signals.next() => std::process::exit(130),
            }
            Ok(())
        }
    };
    rt.servers.shutdown().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
