//! Every configured server: started concurrently, watched, called, stopped.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::service::RunningService;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::breaker::{Breaker, BreakerState};
use super::cache::{CatalogCache, fingerprint};
use super::catalog::{Catalog, ToolInfo};
use super::client::OpsbotClient;
use super::conn::{CallError, CallOptions, Connection, RawCallError, ToolOutput};
use super::lifecycle::{mark_exited, spawn_connect};
use crate::config::{Config, ServerConfig};
use crate::text::closest;

mod calls;

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
    /// Serving: servers' requests of their client go to upstream clients.
    pub relay: Option<super::relay::Relay>,
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
    /// Not started (lazy): its tools as listed `listed_at` (Unix seconds)
    /// serve planning until a plan or call uses it.
    Idle {
        tools: usize,
        listed_at: i64,
    },
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
    /// Whether its tools can be planned with: live, or cached and not started.
    pub fn has_tools(&self) -> bool {
        matches!(self, ServerStatus::Ready { .. } | ServerStatus::Idle { .. })
    }
    /// One line for lists and status bars.
    pub fn summary(&self) -> String {
        match self {
            ServerStatus::Disabled => "disabled".into(),
            ServerStatus::Idle { tools, listed_at } => format!(
                "not started, {tools} tools cached {}",
                super::cache::age(*listed_at)
            ),
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
    /// Bumped whenever `tools` is replaced: the catalog is rebuilt only then.
    pub(super) tools_version: std::sync::atomic::AtomicU64,
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
    /// Where its tool list is kept between runs, and under which key.
    pub(super) cache: CatalogCache,
    pub(super) fingerprint: String,
    /// When the tools in `tools` were listed, if they came from the cache
    /// and the server has not been ready since.
    pub(super) cached_at: Mutex<Option<i64>>,
    /// Whether it has been ready in this process: a call waits for a first
    /// start, but fails fast while a server that was up restarts.
    pub(super) ever_ready: std::sync::atomic::AtomicBool,
}

/// One process of a server: how it exited, and when its stderr ended.
#[derive(Default)]
pub(super) struct Life {
    pub(super) exit: Mutex<Option<String>>,
    pub(super) exited: CancellationToken,
    pub(super) stderr_eof: CancellationToken,
}

/// Restarts of a server that keeps exiting stop after this many.
pub(super) const MAX_RESTARTS: u32 = 5;

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
    /// The server asked opsbot for something it does not give servers
    /// (sampling): declined, and said so in the session.
    Declined { server: String, what: String },
    /// A log message the server sent (`notifications/message`), as sent.
    /// (Logging is deprecated from MCP 2026-07-28; earlier peers use it.)
    #[allow(deprecated)]
    Log {
        server: String,
        message: rmcp::model::LoggingMessageNotificationParam,
    },
    /// The server's resource or prompt list changed.
    ListChanged { server: String, list: Listing },
    /// A resource a client subscribed to changed.
    ResourceUpdated { server: String, uri: String },
    /// Started after planning from its cached list, the server lists some
    /// tools differently: calls planned against the old ones are refused.
    ToolsChanged {
        server: String,
        since: String,
        tools: Vec<String>,
    },
}

impl ServerEvent {
    /// A log message as one line, its data redacted by `redactor`:
    /// `warning fixture: {"msg":"…"}`.
    #[allow(deprecated)]
    pub fn log_line(
        message: &rmcp::model::LoggingMessageNotificationParam,
        redactor: &crate::session::Redactor,
    ) -> String {
        let mut data = message.data.clone();
        redactor.value(&mut data);
        let level = serde_json::to_value(message.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let text = match &data {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match &message.logger {
            Some(logger) => format!("{level} {logger}: {text}"),
            None => format!("{level}: {text}"),
        }
    }
}

/// Lists besides tools that a server can say have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Resources,
    Prompts,
}

/// A catalog and what it was built from: per server, whether its tools
/// count and their version.
type BuiltCatalog = (Vec<(bool, u64)>, Arc<Catalog>);

#[derive(Clone)]
pub struct Servers {
    pub(super) entries: Arc<BTreeMap<String, Arc<Entry>>>,
    /// The last catalog built, under what it was built from (each server's
    /// tools' version and whether they count): most calls ask for the same.
    catalog: Arc<Mutex<Option<BuiltCatalog>>>,
    events: broadcast::Sender<ServerEvent>,
    /// Serving: where servers' requests of their client go.
    pub(super) relay: Option<super::relay::Relay>,
}

impl Servers {
    /// Set up every configured server and return at once. A server whose
    /// tool list is cached waits, not started, until something uses it
    /// (`ensure`, a call) or `launch_eager` starts it; the others start
    /// now, concurrently, in the background. `wait_settled` waits for the
    /// starting ones to be ready or failed.
    pub fn start(config: &Config, ctx: &SpawnContext) -> Self {
        let (events, _) = broadcast::channel::<ServerEvent>(256);
        let cache = CatalogCache::new(&ctx.data_dir);
        let entries: BTreeMap<String, Arc<Entry>> = config
            .servers
            .iter()
            .map(|(name, cfg)| {
                let fingerprint = fingerprint(cfg);
                let cached = cfg
                    .enabled
                    .then(|| cache.load(name, &fingerprint))
                    .flatten();
                let status = match &cached {
                    _ if !cfg.enabled => ServerStatus::Disabled,
                    Some(c) => ServerStatus::Idle {
                        tools: c.tools.len(),
                        listed_at: c.listed_at,
                    },
                    None => ServerStatus::Starting,
                };
                let entry = Entry {
                    name: name.clone(),
                    config: cfg.clone(),
                    status: watch::Sender::new(status),
                    conn: RwLock::new(None),
                    service: tokio::sync::Mutex::new(None),
                    cached_at: Mutex::new(cached.as_ref().map(|c| c.listed_at)),
                    tools: RwLock::new(cached.map(|c| c.tools).unwrap_or_default()),
                    tools_version: std::sync::atomic::AtomicU64::new(0),
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
                    cache: cache.clone(),
                    fingerprint,
                    ever_ready: std::sync::atomic::AtomicBool::new(false),
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
            catalog: Arc::default(),
            relay: ctx.relay.clone(),
            events,
        };
        for entry in servers.entries.values() {
            if matches!(*entry.status.borrow(), ServerStatus::Starting) {
                spawn_connect(Arc::clone(entry));
            }
        }
        servers
    }

    /// Start the named servers that are waiting unstarted (lazy, cached);
    /// returns at once. Servers starting, ready or failed are left alone.
    pub fn ensure<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            let Some(entry) = self.entries.get(name) else {
                continue;
            };
            let woke = entry.status.send_if_modified(|s| {
                if matches!(s, ServerStatus::Idle { .. }) {
                    *s = ServerStatus::Starting;
                    true
                } else {
                    false
                }
            });
            if woke {
                let _ = self.events.send(ServerEvent::Status {
                    server: entry.name.clone(),
                    status: ServerStatus::Starting,
                });
                spawn_connect(Arc::clone(entry));
            }
        }
    }

    /// Start the servers configured `start = "eager"`: the app, `run`,
    /// `call` and `serve` do, commands that only read definitions do not.
    pub fn launch_eager(&self) {
        let eager: Vec<&str> = self
            .entries
            .values()
            .filter(|e| e.config.start == crate::config::StartMode::Eager)
            .map(|e| e.name.as_str())
            .collect();
        self.ensure(eager);
    }

    /// Start every server not started yet and wait until each is ready or
    /// failed: a fresh list from all of them (`tools --refresh`).
    pub async fn refresh(&self) {
        let all: Vec<&str> = self.names().collect();
        self.ensure(all);
        self.wait_settled().await;
    }

    /// Start `server` if it waits unstarted, then wait until it is ready or
    /// failed, unless `cancel` comes first (false then).
    pub(super) async fn started(&self, entry: &Entry, cancel: Option<&CancellationToken>) -> bool {
        self.ensure([entry.name.as_str()]);
        let mut rx = entry.status.subscribe();
        let settled = async {
            let _ = rx
                .wait_for(|s| s.is_settled() && !matches!(s, ServerStatus::Idle { .. }))
                .await;
        };
        match cancel {
            Some(cancel) => tokio::select! {
                () = settled => true,
                () = cancel.cancelled() => false,
            },
            None => {
                settled.await;
                true
            }
        }
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

    /// The tools of every ready server, and the cached tools of every
    /// server not started yet.
    pub fn catalog(&self) -> Arc<Catalog> {
        let key: Vec<(bool, u64)> = self
            .entries
            .values()
            .map(|e| {
                (
                    e.status.borrow().has_tools(),
                    e.tools_version.load(std::sync::atomic::Ordering::Acquire),
                )
            })
            .collect();
        let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, c)) = cached.as_ref()
            && *k == key
        {
            return Arc::clone(c);
        }
        let built = Arc::new(Catalog::new(
            self.entries
                .values()
                .filter(|e| e.status.borrow().has_tools())
                .flat_map(|e| e.tools.read().map(|t| t.clone()).unwrap_or_default()),
        ));
        *cached = Some((key, Arc::clone(&built)));
        built
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

    /// When `server`'s tools were listed, if they come from the cache (it
    /// has not been started in this process).
    pub fn cached_at(&self, server: &str) -> Option<i64> {
        self.entries
            .get(server)
            .and_then(|e| e.cached_at.lock().ok().and_then(|c| *c))
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

    /// Ask every started server that logs to send messages from `level` up
    /// (an upstream client's `logging/setLevel`); servers started later
    /// keep their own default. Returns how many accepted.
    #[allow(deprecated)]
    pub async fn set_log_level(&self, level: rmcp::model::LoggingLevel) -> usize {
        let mut accepted = 0;
        for entry in self.entries.values() {
            let conn = entry.conn.read().ok().and_then(|c| c.clone());
            let Some(conn) = conn else { continue };
            let logs = conn
                .peer
                .peer_info()
                .is_some_and(|i| i.capabilities.logging.is_some());
            if logs
                && conn
                    .peer
                    .set_level(rmcp::model::SetLevelRequestParams::new(level))
                    .await
                    .is_ok()
            {
                accepted += 1;
            }
        }
        accepted
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
                // A server never started (lazy, disabled) has no process to wait for.
                let never_started = matches!(
                    *entry.status.borrow(),
                    ServerStatus::Idle { .. } | ServerStatus::Disabled
                );
                if !never_started && entry.exit_status().is_none() && entry.config.command.is_some()
                {
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
