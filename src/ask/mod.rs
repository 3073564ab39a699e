//! What servers ask of the person at the keyboard: a form or a URL to
//! visit (elicitation), or leave to run a model on their behalf
//! (sampling). The core turns each request into an [`Ask`] and hands it to
//! whichever front end is attached (the app's modal, a terminal prompt);
//! with none attached, the [`Unattended`] rule answers. Front ends only
//! collect an answer; recording and policy stay in the core.

pub mod form;

use std::sync::Mutex;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use form::{Field, Form, Kind, Problem};

/// What is being asked.
#[derive(Debug, Clone)]
pub enum Question {
    Form {
        message: String,
        form: Form,
    },
    /// Visit a URL (a login, a payment) and say when done.
    Url {
        message: String,
        url: String,
    },
    /// Let a server use the configured model for this request.
    Sample(SampleRequest),
}

/// A sampling request as it is shown for approval.
#[derive(Debug, Clone, Default)]
pub struct SampleRequest {
    pub profile: String,
    pub model: String,
    pub system: Option<String>,
    /// `role: text`, in order.
    pub messages: Vec<(String, String)>,
    pub max_tokens: u32,
    /// The server's model preferences, as it worded them.
    pub preferences: Option<String>,
}

/// The person's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A form's values (checked against the form), or `{}` for a URL
    /// visited or a sampling request allowed.
    Accept(Map<String, Value>),
    /// No, with why when known.
    Decline(String),
    /// Stop the whole operation.
    Cancel,
}

/// One request waiting for an answer. Dropping it unanswered declines it.
#[derive(Debug)]
pub struct Ask {
    pub server: String,
    pub question: Question,
    reply: oneshot::Sender<Reply>,
}

impl Ask {
    pub fn answer(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }

    /// The server stopped waiting (its call ended or was cancelled).
    pub fn is_stale(&self) -> bool {
        self.reply.is_closed()
    }
}

/// What answers when no front end is attached (`--elicit` for headless
/// commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unattended {
    /// Decline, recording that no one was there to ask.
    #[default]
    Decline,
    /// Accept a form with its defaults when they fill every required
    /// field; decline anything else (URLs, sampling, forms missing values).
    Defaults,
}

/// Where asks go: the attached front end, or the unattended rule.
#[derive(Default)]
pub struct Desk {
    front: Mutex<Option<mpsc::UnboundedSender<Ask>>>,
    unattended: Mutex<Unattended>,
}

impl Desk {
    /// Attach a front end: asks arrive on the returned receiver until it is
    /// dropped (then the unattended rule answers again).
    pub fn attach(&self) -> mpsc::UnboundedReceiver<Ask> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.front.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    pub fn set_unattended(&self, rule: Unattended) {
        *self.unattended.lock().unwrap_or_else(|p| p.into_inner()) = rule;
    }

    pub fn unattended(&self) -> Unattended {
        *self.unattended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask, and wait for the answer. With no front end, or one that went
    /// away, the unattended rule answers, saying why.
    pub async fn ask(&self, server: &str, question: Question) -> Reply {
        let front = self
            .front
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|tx| !tx.is_closed());
        let question = match front {
            Some(tx) => {
                let (reply, answer) = oneshot::channel();
                let ask = Ask {
                    server: server.to_string(),
                    question,
                    reply,
                };
                match tx.send(ask) {
                    Ok(()) => {
                        return answer.await.unwrap_or_else(|_| {
                            Reply::Decline("the request was closed without an answer".into())
                        });
                    }
                    Err(mpsc::error::SendError(ask)) => ask.question,
                }
            }
            None => question,
        };
        unattended_reply(self.unattended(), &question)
    }
}

/// Open an `http(s)` link in the desktop's browser; anything else (a
/// `file:` or custom scheme a server sent) is refused. False when it
/// could not be opened, so the caller shows the URL instead.
pub fn open_link(url: &str) -> bool {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return false;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// How the unattended rule answers `question`.
pub fn unattended_reply(rule: Unattended, question: &Question) -> Reply {
    const NO_ONE: &str = "no one is at a terminal to answer it";
    match (rule, question) {
        (Unattended::Defaults, Question::Form { form, .. }) => {
            match form.answer(&vec![None; form.fields.len()]) {
                Ok(values) => Reply::Accept(values),
                Err(problems) => {
                    let missing: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    Reply::Decline(format!(
                        "{NO_ONE}, and the defaults do not fill the form ({})",
                        missing.join("; ")
                    ))
                }
            }
        }
        _ => Reply::Decline(format!("{NO_ONE} (answer with the app, or a terminal)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(schema: Value) -> Question {
        Question::Form {
            message: "m".into(),
            form: Form::parse(&schema).expect("form"),
        }
    }

    #[tokio::test]
    async fn unattended_declines_or_applies_defaults_and_says_why() {
        let desk = Desk::default();
        let q = form(json!({"properties": {"n": {"type": "integer", "default": 3}}}));
        assert!(
            matches!(desk.ask("s", q.clone()).await, Reply::Decline(w) if w.contains("no one"))
        );
        desk.set_unattended(Unattended::Defaults);
        assert_eq!(
            desk.ask("s", q).await,
            Reply::Accept(json!({"n": 3}).as_object().cloned().unwrap_or_default())
        );
        let missing = form(json!({"properties": {"who": {"type": "string"}}, "required": ["who"]}));
        assert!(
            matches!(desk.ask("s", missing).await, Reply::Decline(w) if w.contains("who: required"))
        );
    }

    #[tokio::test]
    async fn an_attached_front_end_answers_and_a_dropped_one_hands_back() {
        let desk = std::sync::Arc::new(Desk::default());
        let mut rx = desk.attach();
        let d = std::sync::Arc::clone(&desk);
        let asked = tokio::spawn(async move {
            d.ask(
                "s",
                Question::Url {
                    message: "log in".into(),
                    url: "https://x".into(),
                },
            )
            .await
        });
        let ask = rx.recv().await.expect("asked");
        assert_eq!(ask.server, "s");
        ask.answer(Reply::Cancel);
        assert_eq!(asked.await.expect("join"), Reply::Cancel);
        drop(rx);
        let q = form(json!({}));
        assert!(matches!(desk.ask("s", q).await, Reply::Decline(_)));
    }
}
