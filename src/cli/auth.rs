//! `opsbot auth set|rm PROFILE`: an LLM profile's API key in the OS keyring;
//! `opsbot auth set|rm server:NAME KEY`: a server's secret (an environment
//! variable or header its config takes from `${keyring}`);
//! `opsbot auth set|rm telemetry HEADER`: a header for the OTLP collector;
//! `opsbot auth login|logout SERVER` and `opsbot auth status`: OAuth logins
//! to remote MCP servers.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
use opsbot::paths::Paths;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Read a key (without echo on a terminal, else from stdin) and store it.
    Set {
        /// An LLM profile, `serve`, `server:NAME` or `telemetry` with the
        /// KEY it is for.
        profile: String,
        /// For `server:NAME`: the environment variable or header name; for
        /// `telemetry`: the header name.
        key: Option<String>,
    },
    /// Remove a profile's (or a server's) key from the keyring.
    Rm {
        profile: String,
        key: Option<String>,
    },
    /// Log in to a remote (streamable HTTP) server that asks for OAuth.
    Login {
        server: String,
        /// Print the link instead of opening a browser (over SSH).
        #[arg(long)]
        no_browser: bool,
        /// Ask for this scope too (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Seconds to wait for the browser to come back.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Unattended, for authorization servers on this machine only:
        /// follow the authorization page's redirect instead of a browser.
        #[arg(long, hide = true)]
        follow_loopback: bool,
    },
    /// Forget a server's login.
    Logout { server: String },
    /// Which servers are logged in, with which scopes, until when (never a token).
    Status,
}

/// Read a line without showing it.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut key = String::new();
        std::io::stdin().read_to_string(&mut key)?;
        return Ok(key.trim().to_string());
    }
    super::emit(true, prompt, false);
    crossterm::terminal::enable_raw_mode()?;
    let mut key = String::new();
    let result = loop {
        match crossterm::event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(anyhow::anyhow!("cancelled"));
                }
                KeyCode::Char(c) => key.push(c),
                KeyCode::Backspace => {
                    key.pop();
                }
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    crossterm::terminal::disable_raw_mode()?;
    err!("");
    result.map(|()| key.trim().to_string())
}

pub async fn run(
    paths: &Paths,
    config: Option<&Path>,
    command: AuthCommand,
) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    let http_server = |name: &str| -> anyhow::Result<(String, opsbot::config::ServerConfig)> {
        let Some(cfg) = loaded.config.servers.get(name) else {
            anyhow::bail!("no server `{name}` is configured (`opsbot servers list`)");
        };
        let Some(url) = &cfg.url else {
            anyhow::bail!("{}", opsbot::auth::LoginError::NotHttp(name.to_string()));
        };
        Ok((url.clone(), cfg.clone()))
    };
    // `serve` is the bearer token `opsbot serve --http` asks for beyond
    // loopback; every other name is an LLM profile.
    let known =
        |p: &str| p == "serve" || p == "store" || loaded.config.llm.profiles.contains_key(p);
    match command {
        AuthCommand::Set { profile, key: name } if profile.starts_with("server:") => {
            let server = profile.trim_start_matches("server:");
            let Some(name) = name else {
                anyhow::bail!("say which value: `opsbot auth set server:{server} GITHUB_TOKEN`");
            };
            if !loaded.config.servers.contains_key(server) {
                anyhow::bail!("no server `{server}` is configured (`opsbot servers list`)");
            }
            let value = read_hidden(&format!("{name} for server `{server}` (not shown): "))?;
            if value.is_empty() {
                anyhow::bail!("no value given; nothing stored");
            }
            opsbot::secrets::store_server_secret(server, &name, &value)?;
            out!(
                "stored {name} for server `{server}` in the OS keyring; its config takes it with \"${{keyring}}\""
            );
        }
        AuthCommand::Set {
            profile,
            key: header,
        } if profile == "telemetry" => {
            let Some(header) = header else {
                anyhow::bail!(
                    "say which header: `opsbot auth set telemetry x-honeycomb-team` (its [telemetry] headers value is then \"${{keyring}}\")"
                );
            };
            let value = read_hidden(&format!(
                "{header} for the telemetry collector (not shown): "
            ))?;
            if value.is_empty() {
                anyhow::bail!("no value given; nothing stored");
            }
            opsbot::secrets::store_telemetry_secret(&header, &value)?;
            out!(
                "stored {header} for the telemetry collector in the OS keyring; [telemetry] headers takes it with \"${{keyring}}\""
            );
        }
        AuthCommand::Rm {
            profile,
            key: Some(header),
        } if profile == "telemetry" => {
            if opsbot::secrets::remove_telemetry_secret(&header)? {
                out!("removed {header} of the telemetry collector from the OS keyring");
            } else {
                out!("the OS keyring had no {header} for the telemetry collector");
            }
        }
        AuthCommand::Rm {
            profile,
            key: Some(name),
        } if profile.starts_with("server:") => {
            let server = profile.trim_start_matches("server:");
            if opsbot::secrets::remove_server_secret(server, &name)? {
                out!("removed {name} of server `{server}` from the OS keyring");
            } else {
                out!("the OS keyring had no {name} for server `{server}`");
            }
        }
        AuthCommand::Login {
            server,
            no_browser,
            scopes,
            timeout,
            follow_loopback,
        } => {
            let (url, cfg) = http_server(&server)?;
            let store = opsbot::auth::TokenStore::for_server(&server, &paths.data_dir);
            let opts = opsbot::auth::LoginOptions {
                open_browser: !no_browser,
                follow_loopback,
                scopes,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let say = |text: &str| err!("{text}");
            let report = opsbot::auth::login(&server, &url, &cfg.oauth, store, &opts, &say).await?;
            out!("logged in to `{server}`: {}", describe(&report));
        }
        AuthCommand::Logout { server } => {
            http_server(&server)?;
            let store = opsbot::auth::TokenStore::for_server(&server, &paths.data_dir);
            if store.forget().map_err(anyhow::Error::msg)? {
                out!("forgot the login of `{server}` ({})", store.backend());
            } else {
                out!("`{server}` had no login");
            }
        }
        AuthCommand::Status => {
            let mut any = false;
            for (name, cfg) in &loaded.config.servers {
                if cfg.url.is_none() {
                    continue;
                }
                any = true;
                let store = opsbot::auth::TokenStore::for_server(name, &paths.data_dir);
                let line = match store.credentials() {
                    Err(e) => format!("cannot read its login: {e}"),
                    Ok(None) => "not logged in".to_string(),
                    Ok(Some(_)) => match opsbot::auth::report(&store) {
                        Ok(r) => describe(&r),
                        Err(e) => e.to_string(),
                    },
                };
                out!("{name}: {line}");
            }
            if !any {
                out!("no remote (url) servers are configured");
            }
        }
        AuthCommand::Set { profile, .. } => {
            if !known(&profile) {
                anyhow::bail!(
                    "no LLM profile `{profile}`: add [llm.profiles.{profile}] to your config first (or use `serve` for the token of opsbot serve --http)"
                );
            }
            let prompt = if profile == "store" {
                "password for the shared store, [store] url (not shown): ".to_string()
            } else {
                format!("API key for `{profile}` (not shown): ")
            };
            let key = read_hidden(&prompt)?;
            if key.is_empty() {
                anyhow::bail!("no key given; nothing stored");
            }
            opsbot::secrets::store_key(&profile, &key)?;
            out!("stored the key for `{profile}` in the OS keyring");
        }
        AuthCommand::Rm { profile, .. } => {
            if opsbot::secrets::remove_key(&profile)? {
                out!("removed the key for `{profile}` from the OS keyring");
            } else {
                out!("the OS keyring had no key for `{profile}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A login as a person may see it: scopes, expiry, where it is kept.
fn describe(r: &opsbot::auth::LoginReport) -> String {
    let scopes = if r.scopes.is_empty() {
        "no scopes named".to_string()
    } else {
        format!("scopes {}", r.scopes.join(" "))
    };
    let expiry = match r.expires_in {
        Some(d) if d.is_zero() => "access token expired".to_string(),
        Some(d) => format!(
            "access token valid for {}",
            opsbot::session::duration(d.as_millis() as u64)
        ),
        None => "no expiry given".to_string(),
    };
    let refresh = if r.refreshable {
        "refreshed automatically"
    } else {
        "no refresh token: log in again when it expires"
    };
    format!("{scopes}; {expiry}, {refresh}; kept in {}", r.stored_in)
}
