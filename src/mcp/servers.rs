//! Every configured server: started concurrently, watched, called, stopped.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::breaker::{Breaker, BreakerState};
use super::catalog::{Catalog, ToolInfo};
use super::child::spawn_child;
use super::client::OpsbotClient;
use super::conn::{CallError, CallOptions, Connection, RawCallError, ToolOutput};
use crate::config::{Config, ServerConfig};
use crate::text::closest;

pub(super) const STDERR_LINES: usize = 20;
/// How long a server may take to exit after its stdin closes before it is killed.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What `{exe}`, `{data_dir}` and `{config_dir}` in a server's command,
/// arguments, environment and working directory stand for.
#[derive(Debug, Clone)]
pub struct SpawnContext {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl SpawnContext {
    pub(super) fn expand(&self, s: &str) -> String {
        s.replace("{exe}", &self.exe.to_string_lossy())
            .replace("{data_dir}", &self.data_dir.to_string_lossy())
            .replace("{config_dir}", &self.config_dir.to_string_lossy())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerStatus {
    Disabled,
    Starting,
    Ready {
        tools: usize,
        server_info: String,
        protocol: String,
    },
    Failed {
        error: String,
        stderr: Vec<String>,
    },
    Exited {
        how: String,
        stderr: Vec<String>,
    },
}

impl ServerStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, ServerStatus::Ready { .. })
    }
    pub fn is_settled(&self) -> bool {
        !matches!(self, ServerStatus::Starting)
    }
    /// One line for lists and status bars.
    pub fn summary(&self) -> String {
        match self {
            ServerStatus::Disabled => "disabled".into(),
            ServerStatus::Starting => "starting".into(),
            ServerStatus::Ready { tools, .. } => format!("ready, {tools} tools"),
            ServerStatus::Failed { error, .. } => format!("failed: {error}"),
            ServerStatus::Exited { how, stderr } => match stderr.last() {
                Some(line) => format!("exited ({how}): {line}"),
                None => format!("exited ({how})"),
            },
        }
    }
}

pub(super) struct Entry {
    pub(super) name: String,
    pub(super) config: ServerConfig,
    pub(super) status: watch::Sender<ServerStatus>,
    pub(super) conn: RwLock<Option<Arc<Connection>>>,
    pub(super) service: tokio::sync::Mutex<Option<RunningService<RoleClient, OpsbotClient>>>,
    pub(super) tools: RwLock<Vec<ToolInfo>>,
    pub(super) stderr: Arc<Mutex<VecDeque<String>>>,
    /// The current process's exit, reset for each (re)start.
    pub(super) life: Mutex<Arc<Life>>,
    pub(super) stopping: CancellationToken,
    pub(super) events: broadcast::Sender<ServerEvent>,
    pub(super) breaker: Breaker,
    /// For restarts.
    pub(super) ctx: SpawnContext,
    /// Restarts since the server was last ready for a while.
    pub(super) restarts: Mutex<u32>,
    /// Itself, for the restart task.
    pub(super) this: Mutex<std::sync::Weak<Entry>>,
    /// The last reply that could not be used and named no request: when.
    pub(super) bad_reply: Mutex<Option<(std::time::Instant, String)>>,
}

/// One process of a server: how it exited, and when its stderr ended.
#[derive(Default)]
pub(super) struct Life {
    pub(super) exit: Mutex<Option<String>>,
    pub(super) exited: CancellationToken,
    pub(super) stderr_eof: CancellationToken,
}

/// Restarts of a server that keeps exiting stop after this many.
const MAX_RESTARTS: u32 = 5;

impl Entry {
    pub(super) fn life(&self) -> Arc<Life> {
        Arc::clone(&self.life.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A fresh exit record for a new process.
    pub(super) fn new_life(&self) -> Arc<Life> {
        let life = Arc::new(Life::default());
        *self.life.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&life);
        life
    }

    pub(super) fn note_bad_reply(&self, problem: String) {
        if let Ok(mut b) = self.bad_reply.lock() {
            *b = Some((std::time::Instant::now(), problem));
        }
    }

    /// A bad reply that arrived after `since`, if one did.
    fn bad_reply_since(&self, since: std::time::Instant) -> Option<String> {
        let b = self.bad_reply.lock().ok()?;
        b.as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, p)| p.clone())
    }

    pub(super) fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn exit_status(&self) -> Option<String> {
        self.life().exit.lock().ok().and_then(|e| e.clone())
    }

    /// Wait a little for the child to be reaped and its stderr drained, so
    /// reports can say how it ended and include its last words.
    pub(super) async fn settle_exit(&self) {
        let life = self.life();
        let both = async {
            life.exited.cancelled().await;
            life.stderr_eof.cancelled().await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), both).await;
    }
}

/// What views that follow servers live are told.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    Status {
        server: String,
        status: ServerStatus,
    },
    /// The server wrote a line that is not JSON-RPC to stdout. It keeps
    /// working; the line is also kept with its stderr tail.
    Garbage { server: String, line: String },
    /// The server's circuit breaker opened or closed.
    Breaker { server: String, state: BreakerState },
}

#[derive(Clone)]
pub struct Servers {
    entries: Arc<BTreeMap<String, Arc<Entry>>>,
    events: broadcast::Sender<ServerEvent>,
}

impl Servers {
    /// Start every enabled server in the background and return at once;
    /// `wait_settled` waits for all of them to be ready or failed.
    pub fn start(config: &Config, ctx: &SpawnContext) -> Self {
        let (events, _) = broadcast::channel::<ServerEvent>(256);
        let entries: BTreeMap<String, Arc<Entry>> = config
            .servers
            .iter()
            .map(|(name, cfg)| {
                let status = if cfg.enabled {
                    ServerStatus::Starting
                } else {
                    ServerStatus::Disabled
                };
                let entry = Entry {
                    name: name.clone(),
                    config: cfg.clone(),
                    status: watch::Sender::new(status),
                    conn: RwLock::new(None),
                    service: tokio::sync::Mutex::new(None),
                    tools: RwLock::new(Vec::new()),
                    stderr: Arc::new(Mutex::new(VecDeque::new())),
                    life: Mutex::new(Arc::new(Life::default())),
                    stopping: CancellationToken::new(),
                    ctx: ctx.clone(),
                    restarts: Mutex::new(0),
                    this: Mutex::new(std::sync::Weak::new()),
                    bad_reply: Mutex::new(None),
                    events: events.clone(),
                    breaker: Breaker::new(
                        cfg.breaker_failures,
                        Duration::from_millis(cfg.breaker_cooldown_ms),
                    ),
                };
                let entry = Arc::new(entry);
                if let Ok(mut this) = entry.this.lock() {
                    *this = Arc::downgrade(&entry);
                }
                (name.clone(), entry)
            })
            .collect();
        let servers = Self {
            entries: Arc::new(entries),
            events,
        };
        for entry in servers.entries.values().filter(|e| e.config.enabled) {
            let entry = Arc::clone(entry);
            let events = servers.events.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
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
        servers
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// Wait until every server is ready, failed or disabled.
    pub async fn wait_settled(&self) {
        for entry in self.entries.values() {
            let mut rx = entry.status.subscribe();
            let _ = rx.wait_for(ServerStatus::is_settled).await;
        }
    }

    /// Wait until the named servers are ready, failed or disabled: planning
    /// waits for the servers its plan uses, never for the others.
    pub async fn wait_for<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            if let Some(entry) = self.entries.get(name) {
                let mut rx = entry.status.subscribe();
                let _ = rx.wait_for(ServerStatus::is_settled).await;
            }
        }
    }

    /// Whether every server is ready, failed or disabled by now.
    pub fn all_settled(&self) -> bool {
        self.entries
            .values()
            .all(|e| e.status.borrow().is_settled())
    }

    pub fn statuses(&self) -> Vec<(String, ServerStatus)> {
        self.entries
            .values()
            .map(|e| (e.name.clone(), e.status.borrow().clone()))
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The tools of every ready server.
    pub fn catalog(&self) -> Catalog {
        Catalog::new(
            self.entries
                .values()
                .filter(|e| e.status.borrow().is_ready())
                .flat_map(|e| e.tools.read().map(|t| t.clone()).unwrap_or_default()),
        )
    }

    /// A tool as its server last listed it, ready now or not (a server
    /// being restarted keeps its tools).
    pub fn tool(&self, qualified: &str) -> Option<ToolInfo> {
        self.with_tool(qualified, |t| t.cloned())
    }

    /// `f` over a tool's definition (None when unknown), without copying
    /// it: this is on every call's path. Keep `f` short, it holds a lock.
    pub fn with_tool<R>(&self, qualified: &str, f: impl FnOnce(Option<&ToolInfo>) -> R) -> R {
        let entry = qualified
            .split_once('.')
            .and_then(|(server, name)| Some((self.entries.get(server)?, name)));
        let Some((entry, name)) = entry else {
            return f(None);
        };
        match entry.tools.read() {
            Ok(tools) => f(tools.iter().find(|t| t.name == name)),
            Err(_) => f(None),
        }
    }

    /// A server's configuration.
    pub fn config_of(&self, server: &str) -> Option<&ServerConfig> {
        self.entries.get(server).map(|e| &e.config)
    }

    pub fn tools_of(&self, server: &str) -> Vec<ToolInfo> {
        self.entries
            .get(server)
            .and_then(|e| e.tools.read().ok().map(|t| t.clone()))
            .unwrap_or_default()
    }

    /// Each server's circuit breaker.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.entries
            .values()
            .map(|e| (e.name.clone(), e.breaker.state()))
            .collect()
    }

    /// Call `server.tool`, through the server's circuit breaker; while the
    /// server is down or its breaker open, its `fallback` serves the call.
    pub async fn call(
        &self,
        qualified: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let (server, tool) = qualified
            .split_once('.')
            .ok_or_else(|| CallError::BadName(qualified.to_string()))?;
        let fallback = self
            .entries
            .get(server)
            .and_then(|e| e.config.fallback.clone())
            .filter(|f| f != server && self.entries.contains_key(f));
        let first = self
            .call_guarded(server, tool, args.clone(), opts.clone())
            .await;
        match (first, fallback) {
            (Err(e @ (CallError::BreakerOpen { .. } | CallError::Unavailable { .. })), Some(f)) => {
                tracing::warn!("{qualified}: {e}; calling {f}.{tool} instead");
                self.call_guarded(&f, tool, args, opts).await
            }
            (result, _) => result,
        }
    }

    async fn call_guarded(
        &self,
        server: &str,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let Some(entry) = self.entries.get(server) else {
            return self.call_unguarded(server, tool, args, opts).await;
        };
        if let Err(wait) = entry.breaker.admit() {
            return Err(CallError::BreakerOpen {
                server: server.to_string(),
                failures: entry.config.breaker_failures,
                retry_in_ms: wait.as_millis() as u64,
            });
        }
        let result = self.call_unguarded(server, tool, args, opts).await;
        let verdict = match &result {
            Ok(out) => Some(!out.is_error),
            // Not the server failing a call: cancelled, a wrong name, or
            // known to be down (being restarted) and failing fast already.
            Err(
                CallError::Cancelled { .. }
                | CallError::UnknownTool { .. }
                | CallError::Unavailable { .. },
            ) => None,
            Err(_) => Some(false),
        };
        if let Some(ok) = verdict
            && let Some(state) = entry.breaker.record(ok)
        {
            tracing::warn!(server, "circuit breaker {}", state.summary());
            let _ = self.events.send(ServerEvent::Breaker {
                server: server.to_string(),
                state,
            });
        }
        result
    }

    async fn call_unguarded(
        &self,
        server: &str,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let qualified = &format!("{server}.{tool}");
        let entry = self
            .entries
            .get(server)
            .ok_or_else(|| CallError::UnknownServer {
                server: server.to_string(),
                suggestion: closest(server, self.names()).map(str::to_string),
            })?;
        let conn = entry.conn.read().ok().and_then(|c| c.clone());
        let Some(conn) = conn.filter(|_| entry.status.borrow().is_ready()) else {
            return Err(CallError::Unavailable {
                server: server.to_string(),
                reason: entry.status.borrow().summary(),
            });
        };
        let known = entry
            .tools
            .read()
            .is_ok_and(|t| t.iter().any(|t| t.name == tool));
        if !known {
            let known = entry
                .tools
                .read()
                .map(|t| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
                .unwrap_or_default();
            return Err(CallError::UnknownTool {
                server: server.to_string(),
                tool: tool.to_string(),
                suggestion: closest(tool, known.iter().map(String::as_str)).map(str::to_string),
            });
        }
        let began = std::time::Instant::now();
        match conn.call(tool, args, opts).await {
            Ok(out) => Ok(out),
            Err(RawCallError::Closed) => {
                entry.settle_exit().await;
                let stderr = entry.stderr_tail();
                let how = entry
                    .exit_status()
                    .unwrap_or_else(|| "connection closed".into());
                mark_exited(entry, how.clone());
                Err(CallError::ServerExited {
                    server: server.to_string(),
                    how,
                    stderr,
                })
            }
            Err(RawCallError::Timeout(after)) => match entry.bad_reply_since(began) {
                Some(problem) => Err(CallError::BadReply {
                    server: server.to_string(),
                    problem,
                }),
                None => Err(CallError::Timeout {
                    tool: qualified.to_string(),
                    after_ms: after.as_millis() as u64,
                }),
            },
            Err(RawCallError::BadReply(problem)) => Err(CallError::BadReply {
                server: server.to_string(),
                problem,
            }),
            Err(RawCallError::Cancelled) => Err(CallError::Cancelled {
                tool: qualified.to_string(),
            }),
            Err(RawCallError::Other(message)) => Err(CallError::Protocol {
                server: server.to_string(),
                message,
            }),
        }
    }

    /// Close every server's stdin, then kill what has not exited after a
    /// grace period (some servers never exit on EOF).
    pub async fn shutdown(&self) {
        let mut closing = tokio::task::JoinSet::new();
        for entry in self.entries.values() {
            let entry = Arc::clone(entry);
            closing.spawn(async move {
                if let Ok(mut conn) = entry.conn.write() {
                    conn.take();
                }
                // The watcher kills the child if it has not exited when the
                // grace period ends; closing the service closes its stdin.
                entry.stopping.cancel();
                if let Some(mut service) = entry.service.lock().await.take() {
                    let _ = service.close_with_timeout(SHUTDOWN_GRACE).await;
                }
                if entry.exit_status().is_none() && entry.config.command.is_some() {
                    let life = entry.life();
                    let reaped = life.exited.cancelled();
                    let _ =
                        tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), reaped).await;
                }
            });
        }
        while closing.join_next().await.is_some() {}
    }
}

fn set_status(entry: &Entry, events: &broadcast::Sender<ServerEvent>, status: ServerStatus) {
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

async fn connect(
    entry: &Arc<Entry>,
    ctx: &SpawnContext,
    events: &broadcast::Sender<ServerEvent>,
) -> Result<ServerStatus, String> {
    let client = OpsbotClient::default();
    let startup = Duration::from_millis(entry.config.startup_timeout_ms);
    let serving = async {
        if let Some(url) = &entry.config.url {
            let transport = StreamableHttpClientTransport::from_uri(ctx.expand(url));
            client
                .clone()
                .serve(transport)
                .await
                .map_err(|e| Startup::Init(e.to_string()))
        } else {
            let transport = spawn_child(entry, ctx).map_err(Startup::Spawn)?;
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
    let tools = tokio::time::timeout(startup, peer.list_all_tools())
        .await
        .map_err(|_| "no answer to tools/list".to_string())?
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let infos: Vec<ToolInfo> = tools
        .iter()
        .map(|t| ToolInfo::from_mcp(&entry.name, t))
        .collect();
    let count = infos.len();
    if let Ok(mut t) = entry.tools.write() {
        *t = infos;
    }
    if let Ok(mut c) = entry.conn.write() {
        *c = Some(Arc::new(Connection {
            peer: peer.clone(),
            routes: client.progress.clone(),
            timeout: Duration::from_millis(entry.config.timeout_ms),
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
                    let infos: Vec<ToolInfo> = tools
                        .iter()
                        .map(|t| ToolInfo::from_mcp(&entry.name, t))
                        .collect();
                    let count = infos.len();
                    if let Ok(mut t) = entry.tools.write() {
                        *t = infos;
                    }
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
                    return;
                }
            }
        }
    });
}
