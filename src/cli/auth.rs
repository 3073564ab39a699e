//! `opsbot auth set|rm PROFILE`: an LLM profile's API key in the OS keyring;
//! `opsbot auth set|rm server:NAME KEY`: a server's secret (an environment
//! variable or header its config takes from `${keyring}`).

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
        /// An LLM profile, `serve`, or `server:NAME` with the KEY it is for.
        profile: String,
        /// For `server:NAME`: the environment variable or header name.
        key: Option<String>,
    },
    /// Remove a profile's (or a server's) key from the keyring.
    Rm {
        profile: String,
        key: Option<String>,
    },
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

pub fn run(paths: &Paths, config: Option<&Path>, command: AuthCommand) -> anyhow::Result<ExitCode> {
    let loaded = opsbot::config::load(paths, config)?;
    // `serve` is the bearer token `opsbot serve --http` asks for beyond
    // loopback; every other name is an LLM profile.
    let known = |p: &str| p == "serve" || loaded.config.llm.profiles.contains_key(p);
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
        AuthCommand::Set { profile, .. } => {
            if !known(&profile) {
                anyhow::bail!(
                    "no LLM profile `{profile}`: add [llm.profiles.{profile}] to your config first (or use `serve` for the token of opsbot serve --http)"
                );
            }
            let key = read_hidden(&format!("API key for `{profile}` (not shown): "))?;
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
