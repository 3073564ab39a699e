//! One driver per session.
//!
//! Whatever drives a session (the app, a headless run, a resume, a
//! re-run, a served connection) holds its lease: an exclusive lock on a
//! small file beside the log, which the OS releases when the process ends
//! however it ends, plus a record in the log of who took it. A second
//! driver is refused with who holds it and since when; a lease whose
//! holder died without releasing it is taken over, and the takeover is
//! recorded with the holder it replaced.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::store::{SessionId, Store, StoreError, now_rfc3339};

/// Who drives a session: what kind of driver, which process, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// `app`, `run`, `serve`, ...
    pub driver: String,
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl LeaseHolder {
    pub fn me(driver: &str) -> Self {
        Self {
            driver: driver.to_string(),
            pid: std::process::id(),
            host: host_name(),
            since: now_rfc3339(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.driver, self.pid, self.host, self.since
        )
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

/// A held lease. Dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lease {
    /// Locked for as long as this lives.
    _hold: Hold,
    pub holder: LeaseHolder,
}

/// What keeps a lease: a locked file beside the SQLite log, or an advisory
/// lock on the shared store's connection.
#[derive(Debug)]
enum Hold {
    File(#[allow(dead_code)] File),
    Shared(#[allow(dead_code)] super::pg::PgLease),
}

impl Store {
    fn lease_file(&self, session: &SessionId) -> PathBuf {
        self.path()
            .with_file_name("leases")
            .join(format!("{}.lock", session.as_str()))
    }

    /// Take the lease on `session` for `driver`, or say who has it. The
    /// holder the log names as never having released it, if any, is
    /// returned: the caller records the takeover.
    pub fn take_lease(
        &self,
        session: &SessionId,
        driver: &str,
    ) -> Result<(Lease, Option<LeaseHolder>), StoreError> {
        if let Some(pg) = self.pg() {
            let holder = LeaseHolder::me(driver);
            let held = self.failed_if(pg.take_lease(session, &holder))?;
            return match held {
                Ok(lock) => Ok((
                    Lease {
                        _hold: Hold::Shared(lock),
                        holder,
                    },
                    self.unreleased_lease(session)?,
                )),
                Err(by) => Err(StoreError::Driven {
                    session: session.to_string(),
                    by,
                }),
            };
        }
        let path = self.lease_file(session);
        let io = |e: std::io::Error| StoreError::LeaseIo {
            path: path.clone(),
            detail: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes who it is just after locking: give it a
                // moment to, so the refusal can name it.
                let mut by = None;
                for _ in 0..50 {
                    let mut text = String::new();
                    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
                    by = serde_json::from_str(&text).ok();
                    if by.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                return Err(StoreError::Driven {
                    session: session.to_string(),
                    by,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = LeaseHolder::me(driver);
        let text = serde_json::to_string(&holder)?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        let previous = self.unreleased_lease(session)?;
        Ok((
            Lease {
                _hold: Hold::File(file),
                holder,
            },
            previous,
        ))
    }

    /// The live holders of `driver` kind (`app`) on any session of this
    /// data directory: a lease file another process holds locked. Files
    /// that name another kind of driver are not touched.
    pub fn live_drivers(&self, driver: &str) -> Vec<LeaseHolder> {
        if let Some(pg) = self.pg() {
            return match pg.live_holders() {
                Ok(all) => all.into_iter().filter(|h| h.driver == driver).collect(),
                Err(e) => {
                    tracing::warn!("cannot list who drives sessions on the shared store: {e}");
                    Vec::new()
                }
            };
        }
        let dir = self.path().with_file_name("leases");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let Ok(mut file) = std::fs::OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let Ok(holder) = serde_json::from_str::<LeaseHolder>(&text) else {
                continue;
            };
            if holder.driver != driver {
                continue;
            }
            // Held by a live process: our shared lock is refused.
            match file.try_lock_shared() {
                Err(TryLockError::WouldBlock) => out.push(holder),
                Ok(()) => {
                    let _ = file.unlock();
                }
                Err(TryLockError::Error(_)) => {}
            }
        }
        out
    }

    /// The last lease the log records on `session`, if it was never
    /// released: its holder ended without saying so.
    fn unreleased_lease(&self, session: &SessionId) -> Result<Option<LeaseHolder>, StoreError> {
        let last = self.last_of_kinds(session, &["session_leased", "lease_released"])?;
        Ok(match last.map(|r| r.event) {
            Some(Event::SessionLeased { holder, .. }) => Some(holder),
            _ => None,
        })
    }
}
