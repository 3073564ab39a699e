//! What every sandbox server shares: its state file, its faults, its clock,
//! and the shapes of its answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, RequestMetaObject};
use rmcp::{Peer, RoleServer};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::faults::{FaultKind, Faults, bump_counter, latency_scale};

pub const SERVICES: [&str; 4] = ["checkout", "payments", "catalog", "search"];
pub const ENVS: [&str; 3] = ["dev", "staging", "production"];

/// The context one sandbox server runs in.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub dir: PathBuf,
    pub faults: Faults,
    pub scale: f64,
}

impl Ctx {
    pub fn from_env() -> Result<Self, String> {
        let dir = std::env::var_os("OPSBOT_SANDBOX_DIR")
            .map(PathBuf::from)
            .ok_or("OPSBOT_SANDBOX_DIR is not set: the sandbox needs a directory for its state")?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create sandbox state dir {}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            faults: Faults::from_env()?,
            scale: latency_scale(),
        })
    }

    /// Simulated work, scaled.
    pub async fn work(&self, ms: u64) {
        let ms = (ms as f64 * self.scale) as u64;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Apply the faults configured for this call. Returns an error result when
    /// the call should fail; never returns for `crash`, and waits forever for
    /// `hang` (the client's timeout or cancellation ends it).
    pub async fn inject(
        &self,
        tool: &str,
        service: Option<&str>,
        env: Option<&str>,
    ) -> Option<CallToolResult> {
        let faults: Vec<_> = self.faults.matching(tool, service, env).cloned().collect();
        for fault in faults {
            match fault.kind {
                FaultKind::Fail => {
                    return Some(fail(
                        format!("{tool} failed (injected fault)"),
                        serde_json::json!({ "injected": "fail" }),
                    ));
                }
                FaultKind::Flaky(n) => {
                    let call = bump_counter(&self.dir, tool);
                    if call <= n {
                        return Some(fail(
                            format!(
                                "{tool}: transient error, try again (call {call} of {n} flaky)"
                            ),
                            serde_json::json!({ "injected": "flaky", "retryable": true }),
                        ));
                    }
                }
                FaultKind::Crash => {
                    eprintln!("sandbox: simulated crash in {tool}");
                    std::process::exit(70);
                }
                FaultKind::Hang => {
                    eprintln!("sandbox: simulated hang in {tool}");
                    std::future::pending::<()>().await;
                }
                FaultKind::Garbage => {
                    println!("this is not JSON-RPC: simulated garbage from {tool}");
                }
                FaultKind::Slow(ms) => {
                    let _busy = self.busy();
                    tokio::time::sleep(Duration::from_millis(ms)).await
                }
                FaultKind::Unhealthy => {}
            }
        }
        None
    }

    /// Count this call as in flight until the guard drops, and keep the
    /// most ever in flight at once in `max-concurrency` in the state
    /// directory: how tests see, from the server's side, what ran in parallel.
    fn busy(&self) -> InFlight {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        if now > MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst) {
            // Two new highs at once must not leave the lower one on disk:
            // write under a lock, and write the highest seen by then.
            static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _writing = WRITING.lock().unwrap_or_else(|p| p.into_inner());
            let _ = std::fs::write(
                self.dir
                    .join(format!("max-concurrency-{}", std::process::id())),
                MAX_IN_FLIGHT.load(Ordering::SeqCst).to_string(),
            );
        }
        InFlight
    }

    pub fn is_unhealthy(&self, service: &str, env: &str) -> bool {
        self.faults
            .matching("health", Some(service), Some(env))
            .any(|f| f.kind == FaultKind::Unhealthy)
    }

    pub fn load<T: DeserializeOwned + Default>(&self, file: &str) -> T {
        load_json(&self.dir.join(file))
    }

    pub fn save<T: Serialize>(&self, file: &str, value: &T) -> Result<(), String> {
        save_json(&self.dir.join(file), value)
    }

    /// Hold `file`'s lock across processes for a read-modify-write: two
    /// opsbots running the sandbox at once must not lose each other's
    /// builds or reuse an id. Held until the value drops. (No await may
    /// happen while it is held: the lock blocks its thread.)
    pub fn lock_state(&self, file: &str) -> Result<StateLock, rmcp::ErrorData> {
        let path = self.dir.join(format!("{file}.lock"));
        let locked = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| f.lock().map(|()| f));
        match locked {
            Ok(f) => Ok(StateLock { _held: f }),
            Err(e) => Err(rmcp::ErrorData::internal_error(
                format!("cannot lock {}: {e}", path.display()),
                None,
            )),
        }
    }
}

/// A held lock on one state file (see `Ctx::lock_state`).
pub struct StateLock {
    _held: std::fs::File,
}

pub fn load_json<T: DeserializeOwned + Default>(path: &Path) -> T {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            eprintln!(
                "sandbox: state file {} is unreadable ({e}); starting empty",
                path.display()
            );
            T::default()
        }),
        Err(_) => T::default(),
    }
}

/// Write through a temporary file of this writer's own and rename, so a
/// crash never leaves half a file and two writers never share a temp name.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

pub fn ok(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// A tool-level failure: a readable message for people, the details for machines.
pub fn fail(message: impl Into<String>, details: Value) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(message.into())]);
    r.structured_content = Some(details);
    r
}

pub fn check_service(service: &str) -> Option<CallToolResult> {
    (!SERVICES.contains(&service)).then(|| {
        fail(
            format!(
                "unknown service `{service}`; known services: {}",
                SERVICES.join(", ")
            ),
            serde_json::json!({ "error": "unknown_service" }),
        )
    })
}

pub fn check_env(env: &str) -> Option<CallToolResult> {
    (!ENVS.contains(&env)).then(|| {
        fail(
            format!("unknown environment `{env}`; known: {}", ENVS.join(", ")),
            serde_json::json!({ "error": "unknown_env" }),
        )
    })
}

/// Report progress when the caller asked for it (sent a progress token).
pub async fn progress(
    peer: &Peer<RoleServer>,
    meta: &RequestMetaObject,
    done: f64,
    total: f64,
    message: &str,
) {
    if let Some(token) = meta.get_progress_token() {
        let _ = peer
            .notify_progress(
                ProgressNotificationParam::new(token, done)
                    .with_total(total)
                    .with_message(message),
            )
            .await;
    }
}

/// A small deterministic hash for simulated digests and numbers.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}
