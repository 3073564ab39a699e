//! `opsbot serve`: opsbot as one MCP server over the union of its servers'
//! tools, for other AI clients. Every call goes through the same policy,
//! approvals, engine and audit log as in the app.

mod approval;
mod ending;
mod features;
mod forward;
mod mrtr;
pub mod names;
mod proxy;
mod tasks;
mod upstream;

use std::sync::Arc;

use axum::response::IntoResponse;
use rmcp::ServiceExt;

pub use names::Naming;
pub use proxy::Proxy;

use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the MCP client could not be served: {0}")]
    Start(String),
    #[error(
        "`{0}` is not an address to listen on ({1}); give an IP and a port, e.g. 127.0.0.1:8765"
    )]
    BadAddress(String, String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} is not a loopback address: serving beyond this machine needs a bearer token; store one with `opsbot auth set serve` (or set OPSBOT_SERVE_TOKEN), and clients send it as `Authorization: Bearer …`"
    )]
    NeedsToken(String),
    #[error("{}", .0.join("\n"))]
    Names(Vec<String>),
}

/// Check what is to be served before serving it: every `--only` server
/// exists, and without a namespace no two tools share a name.
pub async fn check_names(rt: &Runtime, naming: &Naming) -> Result<(), ServeError> {
    let mut problems = Vec::new();
    for name in naming.only.iter().flatten() {
        if !rt.servers.names().any(|n| n == name) {
            let hint = crate::text::closest(name, rt.servers.names())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            problems.push(format!("--only: there is no server `{name}`{hint}"));
        }
    }
    if naming.namespace == crate::config::Namespace::None {
        rt.servers.wait_settled().await;
        problems.extend(naming.collisions(&rt.servers.catalog()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServeError::Names(problems))
    }
}

/// Serve one client on stdin/stdout until it disconnects.
pub async fn stdio(rt: Arc<Runtime>, actor: String, naming: Naming) -> Result<(), ServeError> {
    check_names(&rt, &naming).await?;
    let running = Proxy::new(rt, actor, naming, "stdio")
        .serve(rmcp::transport::stdio_pipes())
        .await
        .map_err(|e| ServeError::Start(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Start(e.to_string()))?;
    Ok(())
}

/// Serve streamable HTTP at `addr` (path `/mcp`), one session per client
/// session, until the process ends. Loopback needs nothing more; any other
/// address needs `token`, which every request must carry as a bearer token.
/// `bound` hears the address actually bound (port 0 picks one).
pub async fn http(
    rt: Arc<Runtime>,
    actor: String,
    naming: Naming,
    addr: &str,
    token: Option<String>,
    bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let listen = |source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    };
    let socket: std::net::SocketAddr = addr.parse().map_err(|e: std::net::AddrParseError| {
        ServeError::BadAddress(addr.into(), e.to_string())
    })?;
    check_names(&rt, &naming).await?;
    let loopback = socket.ip().is_loopback();
    if !loopback && token.is_none() {
        return Err(ServeError::NeedsToken(addr.to_string()));
    }
    let mut config = StreamableHttpServerConfig::default();
    if !loopback {
        // DNS rebinding is what the Host check guards against; beyond
        // loopback every request must carry the token instead.
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || {
            Ok(Proxy::new(
                Arc::clone(&rt),
                actor.clone(),
                naming.clone(),
                "streamable HTTP",
            ))
        },
        LocalSessionManager::default().into(),
        config,
    );
    let expected = token.map(|t| format!("Bearer {t}"));
    let router =
        axum::Router::new()
            .route_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let expected = expected.clone();
                    async move {
                        let given = req
                            .headers()
                            .get(axum::http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok());
                        match &expected {
                            Some(e) if given != Some(e.as_str()) => {
                                axum::http::StatusCode::UNAUTHORIZED.into_response()
                            }
                            _ => next.run(req).await,
                        }
                    }
                },
            ));
    let listener = tokio::net::TcpListener::bind(socket)
        .await
        .map_err(listen)?;
    bound(listener.local_addr().map_err(listen)?);
    axum::serve(listener, router).await.map_err(listen)
}
