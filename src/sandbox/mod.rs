//! The built-in demo estate: MCP servers that simulate a small company's CI,
//! quality gate, registry, Kubernetes, monitoring and chat.
//!
//! They run as child processes of opsbot's own binary (`opsbot sandbox NAME`)
//! and speak real MCP over stdio, so opsbot talks to them exactly as it talks
//! to any third-party server. State lives in `OPSBOT_SANDBOX_DIR`.

pub mod chat;
pub mod ci;
pub mod faults;
pub mod k8s;
pub mod monitor;
pub mod quality;
pub mod registry;
pub mod support;

use rmcp::ServiceExt;

pub const NAMES: [&str; 6] = ["ci", "quality", "registry", "k8s", "monitor", "chat"];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "unknown sandbox server `{0}`; the sandbox has: ci, quality, registry, k8s, monitor, chat"
    )]
    Unknown(String),
    #[error("sandbox setup: {0}")]
    Setup(String),
    #[error("sandbox server stopped: {0}")]
    Serve(String),
}

/// Serve one sandbox server on stdin/stdout until the client goes away.
pub async fn serve(name: &str) -> Result<(), SandboxError> {
    let ctx = support::Ctx::from_env().map_err(SandboxError::Setup)?;
    let transport = rmcp::transport::stdio_pipes();
    let err = |e: &dyn std::fmt::Display| SandboxError::Serve(e.to_string());
    macro_rules! run {
        ($server:expr) => {{
            let service = $server.serve(transport).await.map_err(|e| err(&e))?;
            service.waiting().await.map_err(|e| err(&e))?;
        }};
    }
    match name {
        "ci" => run!(ci::Ci::new(ctx)),
        "quality" => run!(quality::Quality::new(ctx)),
        "registry" => run!(registry::Registry::new(ctx)),
        "k8s" => run!(k8s::K8s::new(ctx)),
        "monitor" => run!(monitor::Monitor::new(ctx)),
        "chat" => run!(chat::Chat::new(ctx)),
        other => return Err(SandboxError::Unknown(other.to_string())),
    }
    Ok(())
}
