//! `ci`: builds images and runs test suites.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, RequestMetaObject, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::support::{Ctx, check_service, fail, fnv, now, ok, progress};

pub const STATE: &str = "ci.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CiState {
    pub next_build: u64,
    pub builds: BTreeMap<String, Build>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub build_id: String,
    pub service: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    pub image: String,
    pub at: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BuildArgs {
    /// Service to build: checkout, payments, catalog or search.
    pub service: String,
    /// Git ref to build (branch, tag or commit).
    #[serde(rename = "ref")]
    pub git_ref: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TestArgs {
    pub service: String,
    /// A build id returned by `build`.
    pub build_id: String,
}

#[derive(Clone)]
pub struct Ci {
    ctx: Arc<Ctx>,
    lock: Arc<Mutex<()>>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Ci {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            lock: Arc::new(Mutex::new(())),
            tool_router: Self::tool_router(),
        }
    }

    /// Build a service from a git ref and push its image. Returns the build id and image tag.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn build(
        &self,
        Parameters(args): Parameters<BuildArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service) {
            return Ok(r);
        }
        if let Some(r) = self.ctx.inject("build", Some(&args.service), None).await {
            return Ok(r);
        }
        for (i, phase) in ["resolving dependencies", "compiling", "pushing image"]
            .iter()
            .enumerate()
        {
            progress(&peer, &meta, i as f64, 3.0, phase).await;
            self.ctx.work(400).await;
        }
        let _guard = self.lock.lock().await;
        let _file = self.ctx.lock_state(STATE)?;
        let mut state: CiState = self.ctx.load(STATE);
        state.next_build += 1;
        let number = 400 + state.next_build;
        let commit = format!(
            "{:07x}",
            fnv(&format!("{}{}{number}", args.service, args.git_ref)) & 0xfff_ffff
        );
        let build = Build {
            build_id: format!("b-{number}"),
            service: args.service.clone(),
            git_ref: args.git_ref.clone(),
            image: format!("registry.local/{}:{}-{commit}", args.service, number),
            commit,
            at: now(),
        };
        state.builds.insert(build.build_id.clone(), build.clone());
        self.ctx
            .save(STATE, &state)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        progress(&peer, &meta, 3.0, 3.0, "done").await;
        Ok(ok(json!({
            "build_id": build.build_id,
            "service": build.service,
            "ref": build.git_ref,
            "commit": build.commit,
            "image": build.image,
        })))
    }

    /// Run the service's test suite against a build. Fails when any test fails.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn run_tests(
        &self,
        Parameters(args): Parameters<TestArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service) {
            return Ok(r);
        }
        let state: CiState = self.ctx.load(STATE);
        let Some(build) = state.builds.get(&args.build_id) else {
            return Ok(fail(
                format!("no build `{}`; run ci.build first", args.build_id),
                json!({ "error": "unknown_build" }),
            ));
        };
        if build.service != args.service {
            return Ok(fail(
                format!(
                    "build `{}` is of {}, not {}",
                    args.build_id, build.service, args.service
                ),
                json!({ "error": "wrong_service" }),
            ));
        }
        let injected = self
            .ctx
            .inject("run_tests", Some(&args.service), None)
            .await;
        let total = 120 + fnv(&args.service) % 200;
        for i in 0..4 {
            progress(&peer, &meta, f64::from(i), 4.0, "running tests").await;
            self.ctx.work(250).await;
        }
        if injected.is_some() {
            let failed = 3;
            return Ok(fail(
                format!(
                    "{failed} of {total} tests failed in {} ({}): test_refund_rounding, test_currency_eur, test_idempotency_key",
                    args.service, args.build_id
                ),
                json!({
                    "service": args.service, "build_id": args.build_id,
                    "passed": total - failed, "failed": failed, "skipped": 0,
                }),
            ));
        }
        Ok(ok(json!({
            "service": args.service, "build_id": args.build_id,
            "passed": total, "failed": 0, "skipped": 0,
        })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Ci {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox CI: builds images and runs test suites.")
    }
}
