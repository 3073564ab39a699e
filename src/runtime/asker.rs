//! The app's and headless commands' answer to what servers ask of their
//! client: elicitation goes to the person (through `crate::ask::Desk`),
//! sampling runs the `[sampling] profile` model once policy and the person
//! allow it and the budget has room. Every request and its outcome is
//! recorded in the session the answerer is lent for (redacted like every
//! event), so a form filled in or a model run for a server is in the log.

// Sampling and roots are deprecated from MCP 2026-07-28 (SEP-2577); servers
// on earlier versions still ask.
use rmcp::ErrorData;
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ListRootsResult};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Weak};

use super::exchange::Judge;
use crate::ask::{Desk, Form, Question, Reply, SampleRequest};
use crate::mcp::relay::{
    Answer, Upstream, refusal as declined, sampling_messages, sampling_subject,
};
use crate::planner::chat::ChatClient;
use crate::session::{Event, Session, Store};

/// The model servers may sample, when `[sampling] profile` names one.
pub(crate) struct Sampler {
    pub profile: String,
    pub model: String,
    pub chat: ChatClient,
    pub max_tokens: u32,
    pub llm: crate::config::LlmConfig,
}

pub(crate) struct LocalAsker {
    pub desk: Arc<Desk>,
    pub session: Weak<Session>,
    pub judge: Judge,
    pub store: Arc<Store>,
    pub sampler: Option<Arc<Sampler>>,
}

const SAMPLE: &str = "sampling/createMessage";
const ELICIT: &str = "elicitation/create";

#[allow(deprecated)]
impl LocalAsker {
    fn record(
        &self,
        server: &str,
        method: &str,
        subject: &str,
        rule: Option<&str>,
        outcome: String,
    ) {
        let Some(session) = self.session.upgrade() else {
            return;
        };
        let subject = crate::text::truncate(subject, 400);
        if let Err(e) = session.record(Event::Exchanged {
            server: server.to_string(),
            method: method.to_string(),
            subject,
            rule: rule.map(str::to_string),
            outcome,
        }) {
            tracing::error!("cannot record {server}'s {method}: {e}");
        }
    }

    /// Whether a sampling request may run, asking the person unless a rule
    /// of the user's own allows it outright.
    async fn allowed_to_sample(
        &self,
        server: &str,
        subject: &str,
        request: SampleRequest,
        args: &Map<String, Value>,
    ) -> Result<String, ErrorData> {
        let Some(session) = self.session.upgrade() else {
            return Err(declined(
                "opsbot declined the sampling request: no session is open".into(),
            ));
        };
        let decision = self.judge.exchange(&session, server, SAMPLE, args);
        let rule = decision.rule().to_string();
        if decision.is_denied() {
            let why = format!("denied by policy rule `{rule}`: {}", decision.reason());
            self.record(
                server,
                SAMPLE,
                subject,
                Some(&rule),
                format!("refused: {why}"),
            );
            return Err(declined(format!(
                "opsbot declined the sampling request: {why}"
            )));
        }
        let by_user_rule = matches!(decision, crate::policy::Decision::Allow { .. })
            && !rule.starts_with("builtin.");
        if by_user_rule {
            return Ok(rule);
        }
        match self.desk.ask(server, Question::Sample(request)).await {
            Reply::Accept(_) => Ok(rule),
            Reply::Decline(why) => {
                self.record(
                    server,
                    SAMPLE,
                    subject,
                    Some(&rule),
                    format!("declined: {why}"),
                );
                Err(declined(format!(
                    "opsbot declined the sampling request: {why}"
                )))
            }
            Reply::Cancel => {
                self.record(server, SAMPLE, subject, Some(&rule), "cancelled".into());
                Err(declined("opsbot cancelled the sampling request".into()))
            }
        }
    }

    /// Run the model, under the budget, recording the call like a planner's.
    async fn run_model(
        &self,
        sampler: &Sampler,
        params: &CreateMessageRequestParams,
        messages: &[(String, String)],
    ) -> Result<(String, Option<String>), String> {
        let session = self
            .session
            .upgrade()
            .ok_or("no session is open to account for it")?;
        if sampler.llm.budget != crate::config::LlmBudget::default() {
            let today = self
                .store
                .llm_spend_today()
                .map_err(|e| format!("cannot read today's model use to check the budget: {e}"))?;
            crate::usage::check(&sampler.llm.budget, &session.state().llm, &today)?;
        }
        let mut chat: Vec<Value> = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &params.system_prompt {
            chat.push(json!({"role": "system", "content": system}));
        }
        for (role, text) in messages {
            chat.push(json!({"role": role, "content": text}));
        }
        let mut body = json!({
            "model": sampler.model,
            "messages": chat,
            "max_tokens": params.max_tokens.min(sampler.max_tokens),
        });
        if let Some(t) = params.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(stop) = &params.stop_sequences {
            body["stop"] = json!(stop);
        }
        let started = std::time::Instant::now();
        let cancel = tokio_util::sync::CancellationToken::new();
        let result = sampler
            .chat
            .complete(body, false, &cancel, &mut |_, _| {})
            .await;
        let (status, prompt, completion) = match &result {
            Ok(c) => ("ok".to_string(), c.prompt_tokens, c.completion_tokens),
            Err(e) => (e.status(), 0, 0),
        };
        let cost = crate::usage::cost(&sampler.llm.prices, &sampler.model, prompt, completion);
        session
            .record(Event::LlmCall {
                profile: sampler.profile.clone(),
                model: sampler.model.clone(),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cost_usd: cost,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                status,
            })
            .map_err(|e| format!("the audit log cannot be written ({e})"))?;
        let done = result.map_err(|e| e.to_string())?;
        if let Some(refusal) = done.refusal {
            return Err(format!("the model refused: {refusal}"));
        }
        Ok((done.content, done.finish_reason))
    }
}

#[allow(deprecated)]
impl Upstream for LocalAsker {
    fn sample(
        &self,
        server: &str,
        params: CreateMessageRequestParams,
    ) -> Answer<'_, CreateMessageResult> {
        let server = server.to_string();
        Box::pin(async move {
            let messages = sampling_messages(&params);
            let (subject, args) = sampling_subject(&params, &messages);
            let Some(sampler) = self.sampler.clone() else {
                self.record(
                    &server,
                    SAMPLE,
                    &subject,
                    None,
                    "declined: no [sampling] profile is configured".into(),
                );
                return Err(declined(
                    "opsbot declined the sampling request: it lets servers use a model only with a [sampling] profile".into(),
                ));
            };
            let request = SampleRequest {
                profile: sampler.profile.clone(),
                model: sampler.model.clone(),
                system: params.system_prompt.clone(),
                messages: messages.clone(),
                max_tokens: params.max_tokens.min(sampler.max_tokens),
                preferences: params
                    .model_preferences
                    .as_ref()
                    .and_then(|p| serde_json::to_string(p).ok()),
            };
            let rule = self
                .allowed_to_sample(&server, &subject, request, &args)
                .await?;
            match self.run_model(&sampler, &params, &messages).await {
                Ok((text, finish)) => {
                    self.record(
                        &server,
                        SAMPLE,
                        &subject,
                        Some(&rule),
                        format!("ok: model {}", sampler.model),
                    );
                    let stop = match finish.as_deref() {
                        Some("length") => Some(CreateMessageResult::STOP_REASON_END_MAX_TOKEN),
                        Some("stop") | None => Some(CreateMessageResult::STOP_REASON_END_TURN),
                        Some(_) => None,
                    };
                    serde_json::from_value(json!({
                        "model": sampler.model,
                        "stopReason": stop,
                        "role": "assistant",
                        "content": {"type": "text", "text": text},
                    }))
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))
                }
                Err(why) => {
                    self.record(
                        &server,
                        SAMPLE,
                        &subject,
                        Some(&rule),
                        format!("failed: {why}"),
                    );
                    Err(ErrorData::internal_error(
                        format!("opsbot could not run the model: {why}"),
                        None,
                    ))
                }
            }
        })
    }

    fn elicit(&self, server: &str, params: ElicitRequestParams) -> Answer<'_, ElicitResult> {
        let server = server.to_string();
        Box::pin(async move {
            let (subject, question) = match params {
                ElicitRequestParams::FormElicitationParams {
                    message,
                    requested_schema,
                    ..
                } => {
                    let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
                    match Form::parse(&schema) {
                        Ok(form) => (message.clone(), Question::Form { message, form }),
                        Err(e) => {
                            self.record(
                                &server,
                                ELICIT,
                                &message,
                                None,
                                format!("declined: the form cannot be shown ({e})"),
                            );
                            return Ok(ElicitResult::new(ElicitationAction::Decline));
                        }
                    }
                }
                ElicitRequestParams::UrlElicitationParams { message, url, .. } => {
                    (format!("{message} {url}"), Question::Url { message, url })
                }
                _ => {
                    self.record(
                        &server,
                        ELICIT,
                        "",
                        None,
                        "declined: an unknown mode".into(),
                    );
                    return Ok(ElicitResult::new(ElicitationAction::Decline));
                }
            };
            let is_form = matches!(question, Question::Form { .. });
            match self.desk.ask(&server, question).await {
                Reply::Accept(values) => {
                    let content = Value::Object(values);
                    self.record(
                        &server,
                        ELICIT,
                        &subject,
                        None,
                        if is_form {
                            format!("accepted: {content}")
                        } else {
                            "accepted: the URL was visited".into()
                        },
                    );
                    let result = ElicitResult::new(ElicitationAction::Accept);
                    Ok(if is_form {
                        result.with_content(content)
                    } else {
                        result
                    })
                }
                Reply::Decline(why) => {
                    self.record(&server, ELICIT, &subject, None, format!("declined: {why}"));
                    Ok(ElicitResult::new(ElicitationAction::Decline))
                }
                Reply::Cancel => {
                    self.record(&server, ELICIT, &subject, None, "cancelled".into());
                    Ok(ElicitResult::new(ElicitationAction::Cancel))
                }
            }
        })
    }

    fn roots(&self, _server: &str) -> Answer<'_, ListRootsResult> {
        Box::pin(async { Ok(ListRootsResult::default()) })
    }
}
