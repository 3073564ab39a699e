//! Session ids: sortable by time and readable.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Sortable by time and readable: `20261121-193012-4f2a`.
    pub fn generate() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let nanos = now.unix_timestamp_nanos();
        // Distinct within a process (a counter), and very likely across
        // processes (pid and time); `Session::start` retries a collision.
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let salt = std::process::id() as i128 ^ (nanos >> 7);
        let tag = (crate::sandbox::support::fnv(&format!("{nanos}{salt}{n}")) & 0xffff) as u16;
        Self(format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}-{tag:04x}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    }

    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
