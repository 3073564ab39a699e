//! The LLM planner: one request, one chat completion that returns a whole
//! plan as structured output. What the model proposes is only a proposal:
//! it is validated against the live catalog, and the errors go back to the
//! model at most `max_repairs` times. An unreachable endpoint falls back to
//! the runbook planner.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::CreateChatCompletionRequest;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::prompt::{Budget, tool_section};
use super::runbook::RunbookPlanner;
use super::{Planner, PlannerError, Proposal};
use crate::config::{LlmProfile, Runbook};
use crate::mcp::Servers;
use crate::plan::{Plan, Step, StepId, validate};

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

/// Tokens used, per call and in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub struct LlmPlanner {
    name: String,
    profile: LlmProfile,
    client: Client<OpenAIConfig>,
    servers: Servers,
    runbooks: Vec<(String, Runbook)>,
    fallback: RunbookPlanner,
    usage: std::sync::Mutex<Usage>,
    /// Cleared when the server rejects `json_schema`: from then on the
    /// schema goes in the prompt with `json_object`.
    structured: std::sync::atomic::AtomicBool,
}

impl LlmPlanner {
    pub fn new(
        name: &str,
        profile: LlmProfile,
        api_key: Option<String>,
        servers: Servers,
        config: &crate::config::Config,
    ) -> Result<Self, PlannerError> {
        let profile_structured = profile.structured;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(profile.timeout_ms))
            .build()
            .map_err(|e| PlannerError::Failed(format!("cannot build the HTTP client: {e}")))?;
        let config_ai = OpenAIConfig::new()
            .with_api_base(profile.base_url.trim_end_matches('/'))
            .with_api_key(api_key.unwrap_or_default());
        Ok(Self {
            name: format!("llm:{name}"),
            client: Client::with_config(config_ai).with_http_client(http),
            profile,
            servers,
            runbooks: config
                .runbooks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            fallback: RunbookPlanner::new(config),
            usage: std::sync::Mutex::new(Usage::default()),
            structured: std::sync::atomic::AtomicBool::new(profile_structured),
        })
    }

    fn is_structured(&self) -> bool {
        self.structured.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn usage(&self) -> Usage {
        self.usage.lock().map(|u| *u).unwrap_or_default()
    }

    fn system_prompt(&self, request: &str) -> String {
        let catalog: Vec<_> = self.servers.catalog().iter().cloned().collect();
        let budget = Budget {
            max_tools: self.profile.max_tools,
            ..Budget::default()
        };
        let (tools, _) = tool_section(request, &catalog, budget);
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
        if !self.is_structured() {
            prompt.push_str(&format!(
                "\nAnswer with one JSON object matching this schema, and nothing else:\n{}\n",
                plan_schema()
            ));
        }
        prompt
    }

    async fn complete(&self, messages: &[Value]) -> Result<String, OpenAIError> {
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
        .map_err(|e| OpenAIError::InvalidArgument(e.to_string()))?;
        let mut wait = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            match self.client.chat().create(request.clone()).await {
                Ok(response) => {
                    if let (Some(u), Ok(mut total)) = (&response.usage, self.usage.lock()) {
                        total.prompt_tokens += u64::from(u.prompt_tokens);
                        total.completion_tokens += u64::from(u.completion_tokens);
                    }
                    return Ok(response
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.message.content)
                        .unwrap_or_default());
                }
                // Rate limited: back off and try again, twice at most.
                Err(OpenAIError::ApiError(e)) if e.status_code.as_u16() == 429 && attempt < 2 => {
                    attempt += 1;
                    tracing::warn!("LLM rate limited; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn plan_with_repairs(&self, request: &str) -> Result<Proposal, PlannerError> {
        let mut messages = vec![
            json!({"role": "system", "content": self.system_prompt(request)}),
            json!({"role": "user", "content": request}),
        ];
        let mut last_problem = String::new();
        let mut round = 0;
        while round <= self.profile.max_repairs {
            let content = match self.complete(&messages).await {
                Ok(c) => c,
                // A server without structured output says so with a 400: ask
                // again with json_object and the schema in the prompt.
                Err(OpenAIError::ApiError(e))
                    if e.status_code.as_u16() == 400 && self.is_structured() =>
                {
                    tracing::warn!("the LLM server rejected json_schema ({e}); using json_object");
                    self.structured
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    messages[0] = json!({"role": "system", "content": self.system_prompt(request)});
                    continue;
                }
                Err(OpenAIError::Reqwest(e)) if e.is_connect() => {
                    tracing::warn!("LLM endpoint unreachable ({e}); using the runbook planner");
                    return Ok(self.fallback.propose(request));
                }
                Err(OpenAIError::Reqwest(e)) if e.is_timeout() => {
                    return Err(PlannerError::Failed(format!(
                        "the model did not answer within {} ms; nothing will run (raise timeout_ms for a slow model)",
                        self.profile.timeout_ms
                    )));
                }
                Err(e) => {
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
                    let plan = to_plan(reply, request);
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
                id: StepId::new(s.id),
                tool: s.tool,
                args: s.args,
                depends_on: s.depends_on.into_iter().map(StepId::new).collect(),
                description: s.rationale,
                gate: false,
                timeout_ms: None,
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

    fn plan(
        &self,
        request: &str,
    ) -> futures::future::BoxFuture<'_, Result<Proposal, PlannerError>> {
        let request = request.to_string();
        Box::pin(async move { self.plan_with_repairs(&request).await })
    }
}
