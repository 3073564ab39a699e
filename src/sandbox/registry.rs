//! `registry`: the image registry; knows every image CI pushed.

use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::ci::{CiState, STATE as CI_STATE};
use super::support::{Ctx, check_service, fail, fnv, ok};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ImageArgs {
    /// Full image reference, e.g. registry.local/checkout:401-abc1234.
    pub image: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ServiceArgs {
    pub service: String,
}

#[derive(Clone)]
pub struct Registry {
    ctx: Arc<Ctx>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Registry {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            tool_router: Self::tool_router(),
        }
    }

    /// Check that an image exists in the registry and is signed.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn verify_image(
        &self,
        Parameters(args): Parameters<ImageArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = self.ctx.inject("verify_image", None, None).await {
            return Ok(r);
        }
        self.ctx.work(150).await;
        let state: CiState = self.ctx.load(CI_STATE);
        if !state.builds.values().any(|b| b.image == args.image) {
            return Ok(fail(
                format!("image {} is not in the registry", args.image),
                json!({ "image": args.image, "exists": false }),
            ));
        }
        Ok(ok(json!({
            "image": args.image, "exists": true, "signed": true,
            "digest": format!("sha256:{:016x}{:016x}", fnv(&args.image), fnv(&args.image.chars().rev().collect::<String>())),
        })))
    }

    /// List a service's image tags, newest first.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_tags(
        &self,
        Parameters(args): Parameters<ServiceArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service) {
            return Ok(r);
        }
        let state: CiState = self.ctx.load(CI_STATE);
        let mut tags: Vec<_> = state
            .builds
            .values()
            .filter(|b| b.service == args.service)
            .map(|b| json!({ "image": b.image, "build_id": b.build_id, "at": b.at }))
            .collect();
        tags.reverse();
        Ok(ok(
            json!({ "service": args.service, "count": tags.len(), "tags": tags }),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Registry {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox image registry.")
    }
}
