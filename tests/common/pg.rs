//! A database of its own for each test, on the throwaway PostgreSQL
//! cluster `.ci/pg.sh` starts (and installs, where it is missing): the same
//! script CI runs first, so `cargo test` alone sets it up too.

use std::process::Command;
use std::sync::OnceLock;

use opsbot::session::{PgOptions, Store};

/// The environment variable tests hand the password in.
pub const PASSWORD_ENV: &str = "OPSBOT_TEST_PG_PASSWORD";

struct Cluster {
    /// `postgres://opsbot@127.0.0.1:PORT/postgres`
    url: String,
    password: String,
    /// The CA that signed the server's certificate (for 127.0.0.1).
    ca: std::path::PathBuf,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pg.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run .ci/pg.sh");
        assert!(
            out.status.success(),
            ".ci/pg.sh could not start PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let url = lines.next().expect("url").trim().to_string();
        let pwfile = lines.next().expect("password file").trim().to_string();
        let password = std::fs::read_to_string(pwfile)
            .expect("password file")
            .trim()
            .to_string();
        let ca = lines.next().expect("CA file").trim().into();
        Cluster { url, password, ca }
    })
}

/// Run SQL as the cluster's owner on `db`, off any async runtime (the
/// synchronous client brings its own).
pub fn admin_sql(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let c = cluster();
    let url = format!("{}/{db}", c.url.rsplit_once('/').expect("url").0);
    let (password, sql) = (c.password.clone(), sql.to_string());
    std::thread::spawn(move || {
        let mut config: postgres::Config = url.parse().expect("url");
        config.password(&password);
        let mut client = config.connect(postgres::NoTls).expect("connect");
        client
            .simple_query(&sql)
            .expect("sql")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("admin thread")
}

/// The cluster's password (starting the cluster if need be).
pub fn password() -> String {
    cluster().password.clone()
}

/// A fresh database; dropped (with whatever is still connected) at the end.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub fn new() -> Self {
        let c = cluster();
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            opsbot::session::SessionId::generate()
                .as_str()
                .replace('-', "_")
                .to_lowercase()
        );
        admin_sql("postgres", &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", c.url.rsplit_once('/').expect("url").0);
        Self { name, url }
    }

    /// The password, for the child's environment (`PASSWORD_ENV`).
    pub fn password(&self) -> String {
        password()
    }

    /// The CA the cluster's certificate chains to.
    pub fn ca_file(&self) -> std::path::PathBuf {
        cluster().ca.clone()
    }

    /// `[store]` for a config, acting as `identity`.
    pub fn store_config(&self, identity: Option<&str>) -> String {
        // Over TLS, checked against the cluster's own CA.
        let mut text = format!(
            "\n[store]\nurl = \"{}\"\npassword_env = \"{PASSWORD_ENV}\"\nca_file = \"{}\"\n",
            self.url,
            self.ca_file().display()
        );
        if let Some(who) = identity {
            text.push_str(&format!("identity = \"{who}\"\n"));
        }
        text
    }

    pub fn options(&self) -> PgOptions {
        PgOptions {
            url: self.url.clone(),
            password: Some(self.password()),
            ca_file: Some(self.ca_file()),
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }

    /// The store, opened from this process (its own connection).
    pub fn store(&self) -> Store {
        Store::open_shared(
            self.options(),
            std::path::Path::new("/nonexistent/opsbot.db"),
        )
        .expect("open the shared store")
    }

    pub fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        admin_sql(&self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let c = cluster();
            let mut config: postgres::Config = c.url.parse().ok()?;
            config.password(&c.password);
            let mut client = config.connect(postgres::NoTls).ok()?;
            client
                .simple_query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .ok()
        })
        .join();
    }
}
