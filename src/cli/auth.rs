//! `opsbot auth set|rm PROFILE`: an LLM profile's API key in the OS keyring.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
use opsbot::paths::Paths;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Read a key (without echo on a terminal, else from stdin) and store it.
    Set { profile: String },
    /// Remove a profile's key from the keyring.
    Rm { profile: String },
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
        AuthCommand::Set { profile } => {
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
        AuthCommand::Rm { profile } => {
            if opsbot::secrets::remove_key(&profile)? {
                out!("removed the key for `{profile}` from the OS keyring");
            } else {
                out!("the OS keyring had no key for `{profile}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
