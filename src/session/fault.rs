//! When the audit log cannot be written.
//!
//! An event is stored before what it describes happens, so a store that
//! cannot write must stop everything that waits on it, and say so: the
//! first failed append puts the store in a fault that every later append
//! returns at once, and that views follow (the app shows it in a modal).
//! A database file deleted or replaced under a running opsbot is caught on
//! each commit by comparing the file's identity with the one opened.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why the audit log stopped taking events. Each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreFault {
    #[error(
        "the disk holding the audit log ({}) is full: the last event could not be written, so nothing more runs. Free some space, restart opsbot, and check the log with `opsbot audit verify`",
        .path.display()
    )]
    DiskFull { path: PathBuf },
    #[error(
        "the audit log {} was deleted while opsbot was using it, so nothing more runs. {saved} Restart opsbot to go on, and check the log with `opsbot audit verify`",
        .path.display()
    )]
    Deleted { path: PathBuf, saved: String },
    #[error(
        "the audit log {} was replaced by another file while opsbot was using it, so nothing more runs. {saved} Quit this opsbot before anything opens the new file (until then its write-ahead log goes by the same name), then check both with `opsbot audit verify`",
        .path.display()
    )]
    Replaced { path: PathBuf, saved: String },
    #[error(
        "the audit log {} cannot be written (read-only file or file system), so nothing can run. Read commands (history, audit verify, audit export) still work; for the rest, make the data directory writable or use --data-dir",
        .path.display()
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "the audit log {} is damaged ({detail}), so opsbot will not add to it. Move it aside and start again (opsbot starts a new log), keeping the old file: `opsbot audit verify` and `sqlite3 FILE .recover` read what is left",
        .path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "another process kept the audit log {} locked for too long ({detail}), so the event was not written and nothing more runs. Close the other opsbot, then restart this one",
        .path.display()
    )]
    Busy { path: PathBuf, detail: String },
    #[error(
        "the audit log {} could not be written ({detail}), so nothing more runs. Check the disk and the file, then restart opsbot and run `opsbot audit verify`",
        .path.display()
    )]
    Io { path: PathBuf, detail: String },
    #[error(
        "the connection to the shared store at {url} was lost ({detail}), so nothing more runs: no call is made that could not be recorded first. When the database is back, restart opsbot and check the log with `opsbot audit verify`"
    )]
    Lost { url: String, detail: String },
}

impl StoreFault {
    /// A one-line cause for a status bar.
    pub fn short(&self) -> &'static str {
        match self {
            StoreFault::DiskFull { .. } => "disk full",
            StoreFault::Deleted { .. } => "log file deleted",
            StoreFault::Replaced { .. } => "log file replaced",
            StoreFault::ReadOnly { .. } => "log is read-only",
            StoreFault::Corrupt { .. } => "log damaged",
            StoreFault::Busy { .. } => "log locked",
            StoreFault::Io { .. } => "I/O error",
            StoreFault::Lost { .. } => "store connection lost",
        }
    }

    /// What a failed statement says about the store, if it is the store's
    /// fault rather than the statement's.
    pub(super) fn classify(path: &Path, e: &rusqlite::Error) -> Option<Self> {
        use rusqlite::ErrorCode as C;
        let rusqlite::Error::SqliteFailure(err, message) = e else {
            return None;
        };
        let path = path.to_path_buf();
        let detail = message.clone().unwrap_or_else(|| err.to_string());
        Some(match err.code {
            C::DiskFull => StoreFault::DiskFull { path },
            C::ReadOnly => StoreFault::ReadOnly { path },
            C::DatabaseCorrupt | C::NotADatabase => StoreFault::Corrupt { path, detail },
            C::DatabaseBusy | C::DatabaseLocked => StoreFault::Busy { path, detail },
            C::SystemIoFailure
            | C::CannotOpen
            | C::PermissionDenied
            | C::FileLockingProtocolFailed => StoreFault::Io { path, detail },
            _ => return None,
        })
    }
}

/// Which file a path names: device and inode. A deleted file keeps being
/// written through its open handle, and a replaced one is another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(path: &Path) -> std::io::Result<Option<Self>> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(path) {
                Ok(m) => Ok(Some(Self {
                    dev: m.dev(),
                    ino: m.ino(),
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        #[cfg(not(unix))]
        {
            Ok(path.exists().then_some(Self { dev: 0, ino: 0 }))
        }
    }
}

/// A name for a copy of the log next to `path` that does not exist yet.
pub(super) fn rescue_name(path: &Path, what: &str) -> PathBuf {
    let stamp = super::store::now_rfc3339()
        .replace([':', '.'], "")
        .replace('-', "");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "opsbot.db".into());
    path.with_file_name(format!("{name}.{what}-{stamp}"))
}
