//! The log in a shared PostgreSQL database (`[store] url`), for teams.
//!
//! The same records, the same one hash chain and the same reads as the
//! embedded SQLite file: the chain's head is a row every append locks
//! (`SELECT … FOR UPDATE`), so appends from any number of processes and
//! hosts queue there and link one after another. The synchronous `postgres`
//! client runs on a thread of its own (it brings its own runtime, which
//! must not start inside the app's), and the store hands it one job at a
//! time, as the SQLite store takes its connection's lock.

mod leases;
mod reads;
mod schema;
mod search;
mod writes;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc::{Sender, sync_channel};
use std::time::Duration;

use postgres::{Client, Statement};

use super::fault::StoreFault;
use super::store::StoreError;

pub(crate) use leases::PgLease;
pub(crate) use reads::{Raw, col};

/// The newest schema version this build migrates to.
pub fn latest_schema() -> i32 {
    schema::latest()
}

/// A session's row as stored: id, started_at, actor, title, outcome.
pub(crate) type SessionRow = (String, String, String, Option<String>, Option<String>);
/// What a session's row says of it: id, actor, title, outcome.
pub(crate) type SessionFields = (String, String, Option<String>, Option<String>);
/// A pin as signed: tool, def_hash, pinned_by (or definition), mac.
pub(crate) type PinRow = (String, String, String, Option<String>);

/// How to reach the database: from `[store]`, with the password found.
#[derive(Clone)]
pub struct PgOptions {
    pub url: String,
    /// Never shown: not in errors, logs or the URL opsbot prints.
    pub password: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &shown_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// What is wrong with a `[store] url`, if anything: for config checks.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "url `{}` is not a PostgreSQL URL; write postgres://USER@HOST:PORT/DATABASE",
            shown_url(url)
        ));
    }
    let config = postgres::Config::from_str(url)
        .map_err(|e| format!("url `{}` cannot be read ({e})", shown_url(url)))?;
    if config.get_password().is_some() {
        return Err(format!(
            "url `{}` carries a password; keep it out of the config: `opsbot auth set store` puts it in the OS keyring, or name an environment variable with password_env",
            shown_url(url)
        ));
    }
    if config.get_user().is_none() {
        return Err(format!(
            "url `{}` names no user; write postgres://USER@HOST:PORT/DATABASE",
            shown_url(url)
        ));
    }
    Ok(())
}

/// The URL as it may be shown: any password replaced.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    // A password given as a query parameter is hidden too.
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((before, _)) => format!("{before}password=***"),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

/// One connection and its prepared statements, owned by the worker.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
    opts: PgOptions,
    /// The chain's head as this connection last wrote it: the next append
    /// links to it in one round trip, or learns it moved.
    head: Option<(i64, String)>,
}

impl Conn {
    fn open(opts: &PgOptions) -> Result<Self, StoreError> {
        let shown = shown_url(&opts.url);
        let unreachable = |detail: String| StoreError::PgConnect {
            url: shown.clone(),
            detail,
        };
        let mut config = postgres::Config::from_str(&opts.url)
            .map_err(|e| unreachable(format!("the URL cannot be read ({e})")))?;
        if let Some(pw) = &opts.password {
            config.password(pw);
        }
        config.connect_timeout(opts.connect_timeout);
        config.application_name("opsbot");
        let tls = tls(opts).map_err(unreachable)?;
        let mut client = config.connect(tls).map_err(|e| unreachable(describe(&e)))?;
        schema::migrate(&mut client).map_err(|e| match e {
            schema::MigrateError::TooNew(found) => StoreError::PgTooNew {
                url: shown.clone(),
                found,
            },
            schema::MigrateError::Pg(e) => unreachable(describe(&e)),
        })?;
        Ok(Self {
            client,
            statements: HashMap::new(),
            opts: opts.clone(),
            head: None,
        })
    }

    /// A statement prepared once per connection.
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// A database error's own words (the server's message, not the driver's
/// "db error" wrapper), for a person to read.
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// Whether an error means the connection is gone (the server went away,
/// the backend was terminated, the network broke), not that one statement
/// was wrong.
fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn tls(opts: &PgOptions) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match &opts.ca_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| format!("TLS: {e}"))?
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The handle the store holds: jobs go to the connection's thread.
pub(crate) struct Pg {
    jobs: std::sync::Mutex<Sender<Job>>,
    /// To open another connection (a reader on its own thread).
    pub(crate) opts: PgOptions,
    /// The URL as it may be shown.
    pub(crate) url: String,
    /// Sessions whose lease this process holds (the database's lock is
    /// per connection, and this process has one).
    held: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

impl Pg {
    /// Connect (and bring the schema up to date) or say why not.
    pub(crate) fn connect(opts: PgOptions) -> Result<Self, StoreError> {
        let shown = shown_url(&opts.url);
        let kept = opts.clone();
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (ready, opened) = sync_channel(1);
        std::thread::Builder::new()
            .name("opsbot-pg".into())
            .spawn(move || {
                let mut conn = match Conn::open(&opts) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    // A connection that went away is opened again for the
                    // next job; appends stay refused (the store's fault).
                    if conn.client.is_closed()
                        && let Ok(fresh) = Conn::open(&conn.opts)
                    {
                        conn = fresh;
                    }
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::PgConnect {
                url: shown.clone(),
                detail: e.to_string(),
            })?;
        opened.recv().map_err(|_| StoreError::PgConnect {
            url: shown.clone(),
            detail: "the connection thread stopped".into(),
        })??;
        Ok(Self {
            jobs: std::sync::Mutex::new(jobs),
            opts: kept,
            url: shown,
            held: Arc::default(),
        })
    }

    /// Run `f` on the connection and wait for its answer.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let url = self.url.clone();
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let result = f(conn).map_err(|e| error(&url, &e));
            let _ = tx.send(result);
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        let gone = || {
            StoreError::Fault(StoreFault::Lost {
                url: self.url.clone(),
                detail: "the connection's thread stopped".into(),
            })
        };
        sent.map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// A failed statement as the store's error: a lost connection is the
/// store's fault (nothing more is appended); anything else is the query's.
fn error(url: &str, e: &postgres::Error) -> StoreError {
    if connection_lost(e) {
        StoreError::Fault(StoreFault::Lost {
            url: url.to_string(),
            detail: describe(e),
        })
    } else {
        StoreError::Pg(describe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            shown_url("postgres://alice:s3cret@db:5432/ops"),
            "postgres://alice:***@db:5432/ops"
        );
        assert_eq!(
            shown_url("postgres://alice@db/ops?sslmode=require&password=s3cret"),
            "postgres://alice@db/ops?sslmode=require&password=***"
        );
        assert_eq!(shown_url("postgres://db"), "postgres://db");
    }

    #[test]
    fn a_url_with_a_password_or_without_a_user_is_refused() {
        assert!(check_url("postgres://alice@db:5432/ops").is_ok());
        let e = check_url("postgres://alice:s3cret@db/ops").expect_err("password");
        assert!(e.contains("opsbot auth set store"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(check_url("mysql://alice@db/ops").is_err());
        assert!(check_url("postgres://db/ops").is_err());
    }
}
