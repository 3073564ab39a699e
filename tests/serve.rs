//! `opsbot serve` as other AI clients see it: the real binary as a child
//! (stdio) or an HTTP server, driven by an rmcp client. Calls are checked
//! by policy, approved by the client's user (elicitation) or in an opsbot
//! app on the same data directory, run on the sandbox servers, and end up
//! in the store like any session.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opsbot::session::{ChainReport, Event, Record, Session, SessionId};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, Implementation,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, ServiceExt};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[serve]
approval_timeout_secs = 20

[policy]
default_roles = ["developer"]

[policy.rules.no-scaling-for-developers]
tools = "k8s.scale"
roles = ["developer"]
verdict = "deny"
reason = "developers do not scale deployments"

[policy.rules.developers-stay-out-of-production]
tools = "k8s.deploy"
when = 'env == "production"'
roles = ["developer"]
verdict = "deny"
reason = "developers deploy to dev and staging; ask an SRE for production"
"#;

/// A client's user: answers elicitations with what the test set, and
/// remembers what it was shown.
#[derive(Clone)]
struct Person {
    elicits: bool,
    answer: Arc<Mutex<Option<Value>>>,
    shown: Arc<Mutex<Vec<String>>>,
}

impl Person {
    fn new(elicits: bool) -> Self {
        Self {
            elicits,
            answer: Arc::new(Mutex::new(None)),
            shown: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn will_answer(&self, answer: Option<Value>) {
        *self.answer.lock().expect("lock") = answer;
    }
}

impl ClientHandler for Person {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = &request {
            self.shown.lock().expect("lock").push(message.clone());
        }
        Ok(match self.answer.lock().expect("lock").clone() {
            Some(content) => ElicitResult::new(ElicitationAction::Accept).with_content(content),
            None => ElicitResult::new(ElicitationAction::Decline),
        })
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.elicits {
            ClientCapabilities::builder().enable_elicitation().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("serve-test", "9.9"))
    }
}

fn serve_command(home: &Home, config: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(home.path())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("OPSBOT_SANDBOX_LATENCY", "0")
        .stderr(Stdio::null());
    cmd
}

async fn call(
    client: &RunningService<RoleClient, Person>,
    name: &str,
    args: Value,
) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The serve session: the one whose first event after the start is the
/// client's introduction.
fn served_session(home: &Home) -> (SessionId, Vec<Record>) {
    let store = home.store();
    for s in store.list_sessions(20).expect("list") {
        let records = store.events(&s.id).expect("events");
        if records
            .iter()
            .any(|r| matches!(r.event, Event::ClientConnected { .. }))
        {
            return (s.id, records);
        }
    }
    panic!("no session of a served client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_stdio_is_governed_like_the_app() {
    let home = Home::new();
    let config = home.write_config("serve.toml", CONFIG);
    let person = Person::new(true);
    let client = person
        .clone()
        .serve(TokioChildProcess::new(serve_command(&home, &config)).expect("spawn"))
        .await
        .expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("opsbot")
    );

    // Only what this actor may use, namespaced, with the downstream schema.
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"k8s.deploy"), "{names:?}");
    assert!(names.contains(&"registry.list_tags"), "{names:?}");
    assert!(
        !names.contains(&"k8s.scale"),
        "denied outright for developers, so not offered: {names:?}"
    );
    let deploy = tools
        .iter()
        .find(|t| t.name == "k8s.deploy")
        .expect("deploy");
    assert!(deploy.input_schema.contains_key("properties"));
    assert_eq!(
        deploy.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(false)
    );

    // Allowed: read-only, runs at once.
    let tags = call(
        &client,
        "registry.list_tags",
        json!({"service": "checkout"}),
    )
    .await;
    assert_ne!(tags.is_error, Some(true), "{}", text(&tags));
    assert!(
        person.shown.lock().expect("lock").is_empty(),
        "nothing to ask"
    );

    // Denied by a rule: an error result naming the rule and its reason.
    let denied = call(
        &client,
        "k8s.deploy",
        json!({"service": "checkout", "env": "production", "image": "registry.local/checkout:1"}),
    )
    .await;
    assert_eq!(denied.is_error, Some(true));
    assert!(
        text(&denied).contains("developers-stay-out-of-production")
            && text(&denied).contains("ask an SRE for production"),
        "{}",
        text(&denied)
    );
    let hidden = call(
        &client,
        "k8s.scale",
        json!({"service": "checkout", "env": "staging", "replicas": 5}),
    )
    .await;
    assert!(
        text(&hidden).contains("no-scaling-for-developers"),
        "{}",
        text(&hidden)
    );
    let unknown = call(&client, "k8s.nope", json!({})).await;
    assert!(
        text(&unknown).contains("has no tool `k8s.nope`"),
        "{}",
        text(&unknown)
    );

    // Needs approval: the client's user sees exactly what will run.
    person.will_answer(Some(json!({"approve": true})));
    let built = call(
        &client,
        "ci.build",
        json!({"service": "checkout", "ref": "main"}),
    )
    .await;
    assert_ne!(built.is_error, Some(true), "{}", text(&built));
    let image = built.structured_content.as_ref().expect("structured")["image"]
        .as_str()
        .expect("image")
        .to_string();
    let deployed = call(
        &client,
        "k8s.deploy",
        json!({"service": "checkout", "env": "staging", "image": image}),
    )
    .await;
    assert_ne!(deployed.is_error, Some(true), "{}", text(&deployed));
    assert_eq!(
        deployed
            .structured_content
            .as_ref()
            .map(|s| s["status"].clone()),
        Some(json!("rolled out"))
    );
    {
        let shown = person.shown.lock().expect("lock");
        let asked = shown.last().expect("asked");
        assert!(
            asked.contains("k8s.deploy") && asked.contains(&image),
            "{asked}"
        );
    }
    assert_eq!(
        home.sandbox_state("k8s.json")["deployments"]["checkout/staging"]["current"],
        1
    );

    // Declined: nothing runs, and the client is told so.
    person.will_answer(None);
    let declined = call(
        &client,
        "k8s.deploy",
        json!({"service": "payments", "env": "staging", "image": "registry.local/payments:7"}),
    )
    .await;
    assert_eq!(declined.is_error, Some(true));
    assert!(text(&declined).contains("declined"), "{}", text(&declined));
    assert!(
        home.sandbox_state("k8s.json")["deployments"]["payments/staging"].is_null(),
        "a declined call never reaches the server"
    );
    client.cancel().await.expect("close");

    let (_, records) = served_session(&home);
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::ClientConnected { name, version, transport }
            if name == "serve-test" && version == "9.9" && transport == "stdio")));
    // Nothing started without an approval recorded before it.
    for (i, r) in records.iter().enumerate() {
        if let Event::StepStarted { step, .. } = &r.event {
            assert!(
                records[..i]
                    .iter()
                    .any(|a| matches!(&a.event, Event::Approved { step: s, .. } if s == step)),
                "{step} started without an approval"
            );
        }
    }
    assert!(records.iter().any(|r| matches!(&r.event,
        Event::Approved { by, .. } if by.contains("via serve-test"))));
    assert!(matches!(
        home.store().verify().expect("verify"),
        ChainReport::Whole { .. }
    ));
}

/// A client that cannot be asked waits for someone in an opsbot app on the
/// same data directory: the approval arrives through the log, bound to the
/// exact arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_elicitation_the_call_waits_for_an_approval_in_the_app() {
    let home = Home::new();
    let config = home.write_config("serve.toml", CONFIG);
    let client = Person::new(false)
        .serve(TokioChildProcess::new(serve_command(&home, &config)).expect("spawn"))
        .await
        .expect("initialize");
    let store = Arc::new(home.store());
    let approver = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            // The app's side: find the waiting step and approve it.
            for _ in 0..200 {
                for s in store.list_sessions(5).expect("list") {
                    let records = store.events(&s.id).expect("events");
                    let state = opsbot::session::SessionState::replay(&records);
                    let waiting = state.steps.iter().find(|(_, st)| {
                        st.status() == opsbot::session::StepStatus::AwaitingApproval
                    });
                    if let (Some((id, _)), Some(plan)) = (waiting, state.plan.as_ref()) {
                        let step = plan.step(id).expect("step");
                        let app =
                            Session::resume(Arc::clone(&store), &s.id, "sam").expect("resume");
                        app.record(Event::Approved {
                            step: id.clone(),
                            by: "sam".into(),
                            args_hash: opsbot::policy::args_hash(&step.tool, &step.args),
                            gated: false,
                            reason: None,
                        })
                        .expect("approve");
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        })
    };
    let built = call(
        &client,
        "ci.build",
        json!({"service": "checkout", "ref": "main"}),
    )
    .await;
    assert!(approver.await.expect("approver"), "nothing waited");
    assert_ne!(built.is_error, Some(true), "{}", text(&built));
    client.cancel().await.expect("close");
    let (_, records) = served_session(&home);
    let approved = records
        .iter()
        .position(|r| matches!(&r.event, Event::Approved { by, .. } if by == "sam"))
        .expect("sam's approval");
    let started = records
        .iter()
        .position(|r| matches!(r.event, Event::StepStarted { .. }))
        .expect("started");
    assert!(approved < started);
}
