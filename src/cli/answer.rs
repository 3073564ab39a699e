//! Headless commands answering what servers ask (`--elicit`): on the
//! terminal, field by field; unattended, with the form's defaults; or not
//! at all. What is asked and answered is recorded by the core either way.

use std::io::IsTerminal;

use clap::ValueEnum;
use opsbot::ask::{Ask, Field, Kind, Question, Reply, Unattended};
use opsbot::runtime::Runtime;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How a headless command answers a server's questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Elicit {
    /// Ask on the terminal (the default when there is one).
    Ask,
    /// Accept forms with their defaults when those fill every required
    /// field; decline anything else.
    Defaults,
    /// Decline, recording that no one was asked.
    Decline,
}

/// Set up answering for this command.
pub fn attend(rt: &Runtime, how: Option<Elicit>, stop: &CancellationToken) {
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    match how.unwrap_or(if terminal {
        Elicit::Ask
    } else {
        Elicit::Decline
    }) {
        Elicit::Decline => rt.desk().set_unattended(Unattended::Decline),
        Elicit::Defaults => rt.desk().set_unattended(Unattended::Defaults),
        Elicit::Ask if !terminal => {
            err!("warning: --elicit ask needs a terminal; servers' questions will be declined");
            rt.desk().set_unattended(Unattended::Decline);
        }
        Elicit::Ask => {
            let mut asks = rt.desk().attach();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let ask = tokio::select! {
                        a = asks.recv() => a,
                        () = stop.cancelled() => None,
                    };
                    let Some(ask) = ask else { return };
                    let stopped = stop.clone();
                    let answered = tokio::task::spawn_blocking(move || on_terminal(ask));
                    tokio::select! {
                        _ = answered => {}
                        () = stopped.cancelled() => return,
                    }
                }
            });
        }
    }
}

fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

fn prompt(text: &str) -> Option<String> {
    super::emit(true, text, false);
    read_line()
}

/// One question, on the terminal; end of input declines.
fn on_terminal(ask: Ask) {
    let server = ask.server.clone();
    let reply = match &ask.question {
        Question::Form { message, form } => {
            err!("\n`{server}` asks: {message}");
            err!("(Enter keeps the [default]; `-` declines; `!` cancels the call)");
            let mut values: Vec<Option<Value>> = form.initial();
            let mut reply = None;
            'fields: for (i, field) in form.fields.iter().enumerate() {
                loop {
                    let Some(typed) = prompt(&field_prompt(field)) else {
                        reply = Some(Reply::Decline("input ended".into()));
                        break 'fields;
                    };
                    match typed.trim() {
                        "-" => {
                            reply = Some(Reply::Decline("declined on the terminal".into()));
                            break 'fields;
                        }
                        "!" => {
                            reply = Some(Reply::Cancel);
                            break 'fields;
                        }
                        _ => {}
                    }
                    match field.read(&typed) {
                        Ok(Some(v)) => {
                            values[i] = Some(v);
                            break;
                        }
                        Ok(None) if field.default.is_some() || !field.required => break,
                        Ok(None) => err!("  {} is required", field.label()),
                        Err(e) => err!("  {e}"),
                    }
                }
            }
            reply.unwrap_or_else(|| match form.answer(&values) {
                Ok(v) => Reply::Accept(v),
                Err(problems) => {
                    for p in &problems {
                        err!("  {p}");
                    }
                    Reply::Decline("the form was not filled in".into())
                }
            })
        }
        Question::Url { message, url } => {
            err!("\n`{server}` asks you to open a link: {message}");
            err!("  {url}");
            err!("  (opsbot does not open it for you: check where it goes first)");
            match prompt("Type `done` once finished there, or Enter to decline: ")
                .as_deref()
                .map(str::trim)
            {
                Some("done") => Reply::Accept(Default::default()),
                _ => Reply::Decline("declined on the terminal".into()),
            }
        }
        Question::Sample(r) => {
            err!(
                "\n`{server}` asks to use the model `{}` (profile `{}`), at most {} tokens:",
                r.model,
                r.profile,
                r.max_tokens
            );
            if let Some(system) = &r.system {
                err!("  system: {}", opsbot::text::truncate(system, 400));
            }
            for (role, text) in &r.messages {
                err!("  {role}: {}", opsbot::text::truncate(text, 400));
            }
            if let Some(p) = &r.preferences {
                err!("  model preferences: {p}");
            }
            match prompt("Allow? [y/N] ").as_deref().map(str::trim) {
                Some("y" | "Y" | "yes") => Reply::Accept(Default::default()),
                _ => Reply::Decline("declined on the terminal".into()),
            }
        }
    };
    ask.answer(reply);
}

fn field_prompt(field: &Field) -> String {
    let mut p = format!("  {}", field.label());
    if field.required {
        p.push('*');
    }
    p.push_str(&format!(" ({})", field.hint()));
    if let Some(d) = &field.description {
        p.push_str(&format!(" — {d}"));
    }
    if let Kind::Choice { options, .. } = &field.kind {
        let listed: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}={}", i + 1, c.label))
            .collect();
        p.push_str(&format!(" [{}]", listed.join(" ")));
    }
    if let Some(d) = &field.default {
        p.push_str(&format!(" [{}]", opsbot::ask::form::typed(d)));
    }
    p.push_str(": ");
    p
}
