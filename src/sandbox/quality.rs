//! `quality`: the quality gate (coverage, bugs, vulnerabilities).

use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::ci::{CiState, STATE as CI_STATE};
use super::support::{Ctx, check_service, fail, fnv, ok};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScanArgs {
    pub service: String,
    /// A build id returned by ci.build.
    pub build_id: String,
}

#[derive(Clone)]
pub struct Quality {
    ctx: Arc<Ctx>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Quality {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            tool_router: Self::tool_router(),
        }
    }

    /// Scan a build against the quality gate. Fails when the gate fails.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn scan(
        &self,
        Parameters(args): Parameters<ScanArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service) {
            return Ok(r);
        }
        let builds: CiState = self.ctx.load(CI_STATE);
        if !builds.builds.contains_key(&args.build_id) {
            return Ok(fail(
                format!("no build `{}` to scan", args.build_id),
                json!({ "error": "unknown_build" }),
            ));
        }
        let injected = self.ctx.inject("scan", Some(&args.service), None).await;
        self.ctx.work(600).await;
        let h = fnv(&args.build_id);
        let coverage = 78.0 + (h % 150) as f64 / 10.0;
        if injected.is_some() {
            return Ok(fail(
                format!(
                    "quality gate failed for {} {}: 2 new critical bugs",
                    args.service, args.build_id
                ),
                json!({ "gate": "failed", "coverage": coverage, "bugs": 2, "vulnerabilities": 0 }),
            ));
        }
        Ok(ok(json!({
            "service": args.service, "build_id": args.build_id,
            "gate": "passed", "coverage": coverage, "bugs": 0, "vulnerabilities": 0,
        })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Quality {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox quality gate.")
    }
}
