//! The LLM planner: one request, one chat completion that returns a whole
//! plan as structured output. What the model proposes is only a proposal:
//! it is validated against the live catalog, and the errors go back to the
//! model at most `max_repairs` times. An unreachable endpoint falls back to
//! the runbook planner.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::error::OpenAIError;
use async_openai::types::chat::CreateChatCompletionRequest;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::endpoint::{Endpoint, Transport};
use super::prompt::{Budget, tool_section};
use super::runbook::RunbookPlanner;
use super::{ModelCall, Phase, PlanInput, PlanSink, Planner, PlannerError, Proposal};
use crate::config::{LlmProfile, Runbook};
use crate::mcp::Servers;
use crate::plan::{Plan, Step, StepId, validate};
use crate::session::Role;

/// What the model must answer: a whole plan, or a question.
fn plan_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["needs_clarification", "question", "title", "steps"],
        "properties": {
            "needs_clarification": {"type": "boolean"},
            "question": {"type": "string"},
            "title": {"type": "string"},
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "tool", "args", "depends_on", "rationale"],
                    "properties": {
                        "id": {"type": "string"},
                        "tool": {"type": "string"},
                        "args": {"type": "object"},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                        "rationale": {"type": "string"}
                    }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(default)]
    needs_clarification: bool,
    #[serde(default)]
    question: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    steps: Vec<ReplyStep>,
}

#[derive(Debug, Deserialize)]
struct ReplyStep {
    id: String,
    tool: String,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    rationale: String,
}

pub struct LlmPlanner {
    name: String,
    profile_name: String,
    profile: LlmProfile,
    client: Client<Endpoint>,
    transport: Transport,
    servers: Servers,
    runbooks: Vec<(String, Runbook)>,
    fallback: RunbookPlanner,
    /// Cleared when the server rejects `json_schema`: from then on the
    /// schema goes in the prompt with `json_object`.
    structured: AtomicBool,
}

/// Why a model call produced no reply.
enum CallError {
    /// The sink refused the call (a budget); the message says why.
    Refused(String),
    Api(OpenAIError),
}

/// A rate limit asking for a longer wait than this is reported, not waited out.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Each message of the recent conversation is cut to this many characters.
const HISTORY_MESSAGE_CHARS: usize = 600;

impl LlmPlanner {
    pub fn new(
        name: &str,
        profile: LlmProfile,
        api_key: Option<String>,
        servers: Servers,
        config: &crate::config::Config,
    ) -> Result<Self, PlannerError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(profile.timeout_ms))
            .build()
            .map_err(|e| PlannerError::Failed(format!("cannot build the HTTP client: {e}")))?;
        let transport = Transport::new(http);
        let fallback_servers = servers.clone();
        Ok(Self {
            name: format!("llm:{name}"),
            profile_name: name.to_string(),
            client: Client::with_config(Endpoint::new(&profile, api_key))
                .with_http_service(transport.clone()),
            transport,
            structured: AtomicBool::new(profile.structured),
            profile,
            servers: servers.clone(),
            runbooks: config
                .runbooks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            fallback: RunbookPlanner::new(config).with_servers(fallback_servers),
        })
    }

    fn is_structured(&self) -> bool {
        self.structured.load(Ordering::Relaxed)
    }

    fn system_prompt(&self, input: &PlanInput) -> String {
        let catalog: Vec<_> = self.servers.catalog().iter().cloned().collect();
        let budget = Budget {
            max_tools: self.profile.max_tools,
            ..Budget::default()
        };
        let (tools, _) = tool_section(&input.request(), &catalog, budget);
        let runbooks: Vec<Value> = self
            .runbooks
            .iter()
            .map(|(name, rb)| {
                json!({
                    "name": name,
                    "description": rb.description,
                    "phrases": rb.phrases,
                    "steps": rb.steps.iter().map(|s| json!({"id": s.id, "tool": s.tool, "args": s.args, "depends_on": s.depends_on})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut prompt = format!(
            "You plan infrastructure operations as a graph of MCP tool calls. Use only the tools listed below, \
             addressed as server.tool, with arguments that match each tool's input_schema. A step may use an \
             earlier step's output as \"${{step_id.field}}\" and must then list that step in depends_on. \
             If the request is ambiguous or names something unknown, set needs_clarification and ask one \
             question instead of guessing. Runbooks are known-good templates ({{service}} and {{env}} are slots).\n\n\
             TOOLS (one JSON object per line):\n{tools}\nRUNBOOKS:\n{}\n",
            serde_json::to_string(&runbooks).unwrap_or_default()
        );
        if !input.history.is_empty() {
            prompt.push_str(
                "\nRECENT CONVERSATION (context for words like \"it\" or \"again\"; plan only the latest request):\n",
            );
            for t in &input.history {
                let who = match t.role {
                    Role::User => "user",
                    Role::Assistant => "opsbot",
                };
                prompt.push_str(&format!(
                    "{who}: {}\n",
                    crate::text::truncate(&t.text, HISTORY_MESSAGE_CHARS).replace('\n', " ")
                ));
            }
        }
        if !self.is_structured() {
            prompt.push_str(&format!(
                "\nAnswer with one JSON object matching this schema, and nothing else:\n{}\n",
                plan_schema()
            ));
        }
        prompt
    }

    /// The chat so far: the system prompt, then this turn's request and any
    /// question asked and answered, the question as the model's own reply.
    fn messages(&self, input: &PlanInput) -> Vec<Value> {
        let mut messages = vec![json!({"role": "system", "content": self.system_prompt(input)})];
        for t in &input.turn {
            messages.push(match t.role {
                Role::User => json!({"role": "user", "content": t.text}),
                Role::Assistant => json!({
                    "role": "assistant",
                    "content": json!({"needs_clarification": true, "question": t.text, "title": "", "steps": []}).to_string(),
                }),
            });
        }
        messages
    }

    fn report(&self, sink: &dyn PlanSink, started: Instant, usage: (u64, u64), status: String) {
        sink.call_finished(ModelCall {
            profile: self.profile_name.clone(),
            model: self.profile.model.clone(),
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
            duration: started.elapsed(),
            status,
        });
    }

    async fn complete(
        &self,
        messages: &[Value],
        sink: &dyn PlanSink,
        repair: u32,
    ) -> Result<String, CallError> {
        let response_format = if self.is_structured() {
            json!({"type": "json_schema", "json_schema": {"name": "plan", "schema": plan_schema(), "strict": false}})
        } else {
            json!({"type": "json_object"})
        };
        let request: CreateChatCompletionRequest = serde_json::from_value(json!({
            "model": self.profile.model,
            "messages": messages,
            "response_format": response_format,
        }))
        .map_err(|e| CallError::Api(OpenAIError::InvalidArgument(e.to_string())))?;
        let mut wait = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            sink.before_call().map_err(CallError::Refused)?;
            sink.phase(Phase::Calling {
                call: attempt + 1,
                repair,
            });
            let started = Instant::now();
            match self.client.chat().create(request.clone()).await {
                Ok(response) => {
                    let usage = response.usage.as_ref().map_or((0, 0), |u| {
                        (u64::from(u.prompt_tokens), u64::from(u.completion_tokens))
                    });
                    self.report(sink, started, usage, "ok".into());
                    return Ok(response
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.message.content)
                        .unwrap_or_default());
                }
                Err(e) => {
                    self.report(sink, started, (0, 0), call_status(&e));
                    let asked = self.transport.take_retry_after();
                    match e {
                        // Out of quota is not a rate limit: waiting will not help.
                        OpenAIError::ApiError(e)
                            if e.status_code.as_u16() == 429
                                && e.api_error.code.as_deref() == Some("insufficient_quota") =>
                        {
                            return Err(CallError::Api(OpenAIError::ApiError(e)));
                        }
                        // Rate limited: wait as asked (or back off) and try
                        // again, twice at most, unless the wait is unreasonable.
                        OpenAIError::ApiError(e)
                            if e.status_code.as_u16() == 429
                                && attempt < 2
                                && asked.unwrap_or_default() <= MAX_RATE_LIMIT_WAIT =>
                        {
                            attempt += 1;
                            let pause = asked.unwrap_or(wait);
                            tracing::warn!("LLM rate limited; retrying in {pause:?}");
                            sink.phase(Phase::RateLimited { wait: pause });
                            tokio::time::sleep(pause).await;
                            wait *= 2;
                        }
                        e => return Err(CallError::Api(e)),
                    }
                }
            }
        }
    }

    async fn plan_with_repairs(
        &self,
        input: &PlanInput,
        sink: &dyn PlanSink,
    ) -> Result<Proposal, PlannerError> {
        let mut messages = self.messages(input);
        let mut last_problem = String::new();
        let mut round = 0;
        while round <= self.profile.max_repairs {
            let content = match self.complete(&messages, sink, u32::from(round)).await {
                Ok(c) => c,
                Err(CallError::Refused(why)) => {
                    sink.notice(&format!("{why}. The runbook planner answers instead."));
                    return Ok(self.fallback.plan_request(&input.request()).await);
                }
                // A server without structured output says so with a 400: ask
                // again with json_object and the schema in the prompt.
                Err(CallError::Api(OpenAIError::ApiError(e)))
                    if e.status_code.as_u16() == 400 && self.is_structured() =>
                {
                    tracing::warn!("the LLM server rejected json_schema ({e}); using json_object");
                    self.structured.store(false, Ordering::Relaxed);
                    messages[0] = json!({"role": "system", "content": self.system_prompt(input)});
                    continue;
                }
                Err(CallError::Api(OpenAIError::Reqwest(e))) if e.is_connect() => {
                    tracing::warn!("LLM endpoint unreachable ({e}); using the runbook planner");
                    sink.notice(&format!(
                        "The LLM endpoint {} cannot be reached, so the runbook planner answers instead.",
                        self.profile.base_url
                    ));
                    return Ok(self.fallback.plan_request(&input.request()).await);
                }
                Err(CallError::Api(OpenAIError::Reqwest(e))) if e.is_timeout() => {
                    return Err(PlannerError::Failed(format!(
                        "the model did not answer within {} ms; nothing will run (raise timeout_ms for a slow model)",
                        self.profile.timeout_ms
                    )));
                }
                Err(CallError::Api(e)) => {
                    return Err(PlannerError::Failed(format!(
                        "the LLM endpoint refused the request: {e}"
                    )));
                }
            };
            let problems = match serde_json::from_str::<Reply>(&content) {
                Err(e) => vec![format!("the reply is not the JSON object asked for: {e}")],
                Ok(reply) if reply.needs_clarification => {
                    return Ok(Proposal::Clarify {
                        question: if reply.question.is_empty() {
                            "Could you say more precisely what you want done?".into()
                        } else {
                            reply.question
                        },
                    });
                }
                Ok(reply) => {
                    let plan = to_plan(reply, &input.request());
                    match validate(&plan, &self.servers.catalog()) {
                        Ok(()) => return Ok(Proposal::Plan(plan)),
                        Err(errors) => errors.iter().map(ToString::to_string).collect(),
                    }
                }
            };
            round += 1;
            last_problem = problems.join("; ");
            tracing::info!(round, "LLM plan rejected: {last_problem}");
            messages.push(json!({"role": "assistant", "content": content}));
            messages.push(json!({
                "role": "user",
                "content": format!("That plan cannot be used:\n- {}\nReply with a corrected plan.", problems.join("\n- ")),
            }));
        }
        Err(PlannerError::Failed(format!(
            "the model's plan was still invalid after {} repairs, so nothing will run: {last_problem}",
            self.profile.max_repairs
        )))
    }
}

/// How a failed call is recorded: a status word, never the response body
/// (which could echo the prompt).
fn call_status(e: &OpenAIError) -> String {
    match e {
        OpenAIError::ApiError(e) => format!("http {}", e.status_code.as_u16()),
        OpenAIError::Reqwest(e) if e.is_timeout() => "timeout".into(),
        OpenAIError::Reqwest(e) if e.is_connect() => "unreachable".into(),
        OpenAIError::Reqwest(e) => match e.status() {
            Some(code) => format!("http {}", code.as_u16()),
            None => "transport error".into(),
        },
        OpenAIError::JSONDeserialize(..) => "unreadable response".into(),
        _ => "error".into(),
    }
}

fn to_plan(reply: Reply, request: &str) -> Plan {
    Plan {
        title: if reply.title.is_empty() {
            request.to_string()
        } else {
            reply.title
        },
        steps: reply
            .steps
            .into_iter()
            .map(|s| Step {
                depends_on: s.depends_on.into_iter().map(StepId::new).collect(),
                description: s.rationale,
                ..Step::new(s.id, s.tool, s.args)
            })
            .collect(),
    }
    .with_implied_dependencies()
}

impl Planner for LlmPlanner {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs_catalog(&self) -> bool {
        true
    }

    fn plan<'a>(
        &'a self,
        input: &'a PlanInput,
        sink: &'a dyn PlanSink,
    ) -> futures::future::BoxFuture<'a, Result<Proposal, PlannerError>> {
        Box::pin(self.plan_with_repairs(input, sink))
    }
}
