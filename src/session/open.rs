//! Which log a command opens: the data directory's SQLite file, or the
//! shared PostgreSQL store `[store] url` names, with its password found
//! (the variable `password_env` names, else the OS keyring's `store`).

use std::path::Path;
use std::time::Duration;

use super::pg::PgOptions;
use super::store::{Store, StoreError};
use crate::config::StoreConfig;

/// How to reach the shared store, if the config names one.
fn shared_options(cfg: &StoreConfig) -> Option<PgOptions> {
    let url = cfg.url.clone()?;
    let from_env = cfg
        .password_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .filter(|p| !p.is_empty());
    let password = from_env.or_else(|| match crate::secrets::read_key("store") {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!("no store password in the keyring: {e}");
            None
        }
    });
    if let Some(p) = &password {
        crate::secrets::remember(p);
    }
    Some(PgOptions {
        url,
        password,
        ca_file: cfg.ca_file.clone(),
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.unwrap_or(10).max(1)),
    })
}

/// Open the configured log for writing; `db` is the data directory's file.
/// A configured identity becomes who this process acts as.
pub fn open_store(db: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
    if let Some(who) = cfg.identity.as_deref().filter(|w| !w.trim().is_empty()) {
        super::set_identity(who.trim());
    }
    match shared_options(cfg) {
        Some(opts) => Store::open_shared(opts, db),
        None => Store::open(db),
    }
}

/// Open the configured log for reading only (the shared store is opened
/// as it is: its reads never write).
pub fn open_store_read(db: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
    match shared_options(cfg) {
        Some(opts) => Store::open_shared(opts, db),
        None => Store::open_read(db),
    }
}
