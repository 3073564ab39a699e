//! A server's life: connecting (spawned or over HTTP), listing its tools
//! (and keeping the list in the cache), watching the list change, and
//! starting it again after it exits on its own.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use tokio::sync::broadcast;

use super::catalog::ToolInfo;
use super::child::spawn_child;
use super::client::OpsbotClient;
use super::conn::Connection;
use super::servers::{Entry, MAX_RESTARTS, ServerEvent, ServerStatus, SpawnContext};

/// Connect in the background and publish how it went.
pub(super) fn spawn_connect(entry: Arc<Entry>) {
    tokio::spawn(async move {
        let events = entry.events.clone();
        let ctx = entry.ctx.clone();
        let status = match connect(&entry, &ctx, &events).await {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(server = %entry.name, %error, "server failed to start");
                ServerStatus::Failed {
                    error,
                    stderr: entry.stderr_tail(),
                }
            }
        };
        set_status(&entry, &events, status);
    });
}

/// Take a fresh list as the server's tools and keep it in the cache; when
/// it replaces a cached list, say which tools changed.
/// A server's tools as opsbot keeps them: as listed, and for a server
/// with resources, `resources/read`.
fn listed(
    entry: &Entry,
    peer: &rmcp::Peer<rmcp::RoleClient>,
    tools: &[rmcp::model::Tool],
) -> Vec<ToolInfo> {
    let mut infos: Vec<ToolInfo> = tools
        .iter()
        .map(|t| ToolInfo::from_mcp(&entry.name, t))
        .collect();
    if peer
        .peer_info()
        .is_some_and(|i| i.capabilities.resources.is_some())
    {
        infos.push(ToolInfo::resource_reader(&entry.name));
    }
    infos
}

fn take_tools(entry: &Entry, infos: Vec<ToolInfo>, events: &broadcast::Sender<ServerEvent>) {
    let cached_at = entry.cached_at.lock().ok().and_then(|mut c| c.take());
    let changed: Vec<String> = match (cached_at, entry.tools.read()) {
        (Some(_), Ok(old)) => {
            let hash_of = |list: &[ToolInfo], name: &str| {
                list.iter()
                    .find(|t| t.name == name)
                    .map(|t| t.def_hash.clone())
            };
            let mut names: Vec<&str> = old
                .iter()
                .chain(infos.iter())
                .map(|t| t.name.as_str())
                .collect();
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .filter(|n| hash_of(&old, n) != hash_of(&infos, n))
                .map(|n| format!("{}.{n}", entry.name))
                .collect()
        }
        _ => Vec::new(),
    };
    entry.cache.save(&entry.name, &entry.fingerprint, &infos);
    if let Ok(mut t) = entry.tools.write() {
        *t = infos;
        entry
            .tools_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    if let (Some(at), false) = (cached_at, changed.is_empty()) {
        tracing::warn!(server = %entry.name, ?changed, "tools changed since they were cached");
        let _ = events.send(ServerEvent::ToolsChanged {
            server: entry.name.clone(),
            since: format!("it was listed {}", super::cache::age(at)),
            tools: changed,
        });
    }
}

pub(super) fn set_status(
    entry: &Entry,
    events: &broadcast::Sender<ServerEvent>,
    status: ServerStatus,
) {
    if status.is_ready() {
        entry
            .ever_ready
            .store(true, std::sync::atomic::Ordering::Release);
    }
    entry.status.send_replace(status.clone());
    let _ = events.send(ServerEvent::Status {
        server: entry.name.clone(),
        status,
    });
}

enum Startup {
    Spawn(String),
    Init(String),
}

impl From<String> for Startup {
    fn from(e: String) -> Self {
        Startup::Init(e)
    }
}

/// Ready → exited, once: the call that saw the connection close and the
/// watcher that saw the process end may both get here.
pub(super) fn mark_exited(entry: &Entry, how: String) {
    let status = ServerStatus::Exited {
        how,
        stderr: entry.stderr_tail(),
    };
    let changed = entry.status.send_if_modified(|s| {
        if s.is_ready() {
            *s = status.clone();
            true
        } else {
            false
        }
    });
    if changed {
        let _ = entry.events.send(ServerEvent::Status {
            server: entry.name.clone(),
            status,
        });
        restart_later(entry);
    }
}

/// A server that exited on its own is started again, after 0.5 s, then
/// 1 s, 2 s, ... up to `MAX_RESTARTS` times in a row; a start that stays up
/// for a minute resets the count.
fn restart_later(entry: &Entry) {
    if entry.stopping.is_cancelled() || entry.config.command.is_none() {
        return;
    }
    let attempt = {
        let mut n = entry.restarts.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        *n
    };
    if attempt > MAX_RESTARTS {
        tracing::warn!(server = %entry.name, "exited {MAX_RESTARTS} times in a row; not restarting it");
        return;
    }
    let Some(entry) = entry.this.lock().ok().and_then(|w| w.upgrade()) else {
        return;
    };
    tokio::spawn(async move {
        let wait = Duration::from_millis(500) * 2u32.pow(attempt - 1);
        tracing::info!(server = %entry.name, "restarting in {wait:?} (restart {attempt})");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = entry.stopping.cancelled() => return,
        }
        set_status(&entry, &entry.events, ServerStatus::Starting);
        let status = match connect(&entry, &entry.ctx, &entry.events).await {
            Ok(status) => status,
            Err(error) => ServerStatus::Failed {
                error: format!("restart {attempt} failed: {error}"),
                stderr: entry.stderr_tail(),
            },
        };
        let ready = status.is_ready();
        set_status(&entry, &entry.events, status);
        if ready {
            let stable = Arc::clone(&entry);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if stable.status.borrow().is_ready() {
                    *stable.restarts.lock().unwrap_or_else(|p| p.into_inner()) = 0;
                }
            });
        } else {
            restart_later(&entry);
        }
    });
}

/// The server's configured headers, their `${keyring}` and `${env:VAR}`
/// references filled in.
fn http_headers(
    entry: &Entry,
) -> Result<
    std::collections::HashMap<reqwest::header::HeaderName, reqwest::header::HeaderValue>,
    String,
> {
    let mut headers = std::collections::HashMap::new();
    for (name, raw) in &entry.config.headers {
        let value = crate::secrets::resolve(&entry.name, name, raw)?;
        let name_ok = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "header `{name}` of server `{}` is not a valid header name",
                entry.name
            )
        })?;
        let value_ok = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("header `{name}` of server `{}` has a value that cannot be sent (control characters?)", entry.name))?;
        headers.insert(name_ok, value_ok);
    }
    Ok(headers)
}

/// Connect to a streamable HTTP server: with its stored login when it has
/// one (`opsbot auth login`), its headers always.
async fn serve_http(
    entry: &Arc<Entry>,
    ctx: &SpawnContext,
    client: OpsbotClient,
    url: &str,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, OpsbotClient>, Startup> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let headers = http_headers(entry).map_err(Startup::Spawn)?;
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    let store = crate::auth::TokenStore::for_server(&entry.name, &ctx.data_dir);
    let authorized = crate::auth::authorized_client(&entry.name, url, &entry.config.oauth, store)
        .await
        .map_err(Startup::Spawn)?;
    let explain = |e: rmcp::service::ClientInitializeError| {
        let refused = match &e {
            rmcp::service::ClientInitializeError::TransportError { error, .. } => {
                crate::auth::refusal(error.error.as_ref())
            }
            _ => None,
        };
        match refused {
            Some(r) => Startup::Spawn(r.advice(&entry.name)),
            None => Startup::Init(format!("{e:#}")),
        }
    };
    match authorized {
        Some(auth) => client
            .serve(StreamableHttpClientTransport::with_client(auth, config))
            .await
            .map_err(explain),
        None => client
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(explain),
    }
}

async fn connect(
    entry: &Arc<Entry>,
    ctx: &SpawnContext,
    events: &broadcast::Sender<ServerEvent>,
) -> Result<ServerStatus, String> {
    let client = OpsbotClient {
        logs: Some((entry.name.clone(), events.clone())),
        relay: ctx.relay.clone(),
        roots: Arc::new(super::client::root_uris(&entry.config.roots)),
        ..OpsbotClient::default()
    };
    let startup = Duration::from_millis(entry.config.startup_timeout_ms);
    let serving = async {
        if let Some(url) = &entry.config.url {
            serve_http(entry, ctx, client.clone(), &ctx.expand(url)).await
        } else {
            let transport = spawn_child(
                entry,
                ctx,
                Arc::clone(&client.tools_stale),
                Arc::clone(&client.progress_ledger),
            )
            .map_err(Startup::Spawn)?;
            client
                .clone()
                .serve(transport)
                .await
                .map_err(|e| Startup::Init(e.to_string()))
        }
    };
    let service = match tokio::time::timeout(startup, serving).await {
        Err(_) => {
            return Err(format!(
                "no answer to initialize within {} ms (raise startup_timeout_ms if it is just slow)",
                startup.as_millis()
            ));
        }
        Ok(Err(Startup::Spawn(e))) => return Err(e),
        Ok(Err(Startup::Init(e))) => {
            entry.settle_exit().await;
            return Err(match entry.exit_status() {
                Some(how) => format!("exited before it finished starting ({how})"),
                None => format!("initialize failed: {e}"),
            });
        }
        Ok(Ok(service)) => service,
    };
    let peer = service.peer().clone();
    let (server_info, protocol) = peer
        .peer_info()
        .map(|i| {
            (
                i.server_info
                    .as_ref()
                    .map(|s| format!("{} {}", s.name, s.version))
                    .unwrap_or_default(),
                i.protocol_version.to_string(),
            )
        })
        .unwrap_or_default();
    set_log_level(entry, &peer).await;
    let tools = tokio::time::timeout(startup, peer.list_all_tools())
        .await
        .map_err(|_| "no answer to tools/list".to_string())?
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let infos = listed(entry, &peer, &tools);
    let count = infos.len();
    take_tools(entry, infos, events);
    if let Ok(mut c) = entry.conn.write() {
        *c = Some(Arc::new(Connection {
            peer: peer.clone(),
            client: client.clone(),
            timeout: Duration::from_millis(entry.config.timeout_ms),
            follow_tasks: !ctx
                .relay
                .as_ref()
                .is_some_and(|r| r.offers().hands_on_tasks),
        }));
    }
    *entry.service.lock().await = Some(service);
    watch_tool_list(Arc::clone(entry), client, events.clone());
    Ok(ServerStatus::Ready {
        tools: count,
        server_info,
        protocol,
    })
}

/// Ask a server that logs for the configured level; a refusal is noted in
/// opsbot's log, not fatal.
#[allow(deprecated)]
async fn set_log_level(entry: &Entry, peer: &rmcp::Peer<rmcp::RoleClient>) {
    let Some(level) = &entry.config.log_level else {
        return;
    };
    let logs = peer
        .peer_info()
        .is_some_and(|i| i.capabilities.logging.is_some());
    if !logs {
        tracing::info!(
            "server `{}` does not log; log_level is not sent",
            entry.name
        );
        return;
    }
    let Ok(level) = serde_json::from_value::<rmcp::model::LoggingLevel>(serde_json::json!(level))
    else {
        return;
    };
    let set = peer.set_level(rmcp::model::SetLevelRequestParams::new(level));
    match tokio::time::timeout(Duration::from_millis(entry.config.timeout_ms), set).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("server `{}` refused logging/setLevel: {e}", entry.name),
        Err(_) => tracing::warn!("server `{}` did not answer logging/setLevel", entry.name),
    }
}

/// Re-list a server's tools whenever it announces `tools/list_changed`.
fn watch_tool_list(
    entry: Arc<Entry>,
    client: OpsbotClient,
    events: broadcast::Sender<ServerEvent>,
) {
    tokio::spawn(async move {
        loop {
            client.tools_changed.notified().await;
            let conn = entry.conn.read().ok().and_then(|c| c.clone());
            let Some(conn) = conn else { return };
            match conn.peer.list_all_tools().await {
                Ok(tools) => {
                    let infos = listed(&entry, &conn.peer, &tools);
                    let count = infos.len();
                    take_tools(&entry, infos, &events);
                    client.tools_stale.send_replace(false);
                    let status = match &*entry.status.borrow() {
                        ServerStatus::Ready {
                            server_info,
                            protocol,
                            ..
                        } => ServerStatus::Ready {
                            tools: count,
                            server_info: server_info.clone(),
                            protocol: protocol.clone(),
                        },
                        other => other.clone(),
                    };
                    tracing::info!(server = %entry.name, count, "tool list changed");
                    set_status(&entry, &events, status);
                }
                Err(e) => {
                    tracing::warn!(server = %entry.name, "re-listing tools failed: {e}");
                    client.tools_stale.send_replace(false);
                    return;
                }
            }
        }
    });
}
