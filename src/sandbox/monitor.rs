//! `monitor`: health, metrics and alerts, derived from what k8s runs.

use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::k8s::{Deployment, K8sState, STATE as K8S_STATE, key};
use super::support::{Ctx, check_env, check_service, fail, fnv, ok};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TargetArgs {
    pub service: String,
    pub env: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NoArgs {}

#[derive(Clone)]
pub struct Monitor {
    ctx: Arc<Ctx>,
    tool_router: ToolRouter<Self>,
}

impl Monitor {
    /// A bad release is the newest revision while an `unhealthy` fault is
    /// set; rolling back to an older revision makes the service healthy again.
    fn unhealthy(&self, service: &str, env: &str, dep: &Deployment) -> bool {
        dep.current == dep.newest() && self.ctx.is_unhealthy(service, env)
    }

    fn metrics_of(&self, service: &str, env: &str, dep: &Deployment) -> Value {
        let h = fnv(&format!("{service}{env}{}", dep.current));
        let bad = self.unhealthy(service, env, dep);
        let error_rate = if bad {
            0.34
        } else {
            (h % 50) as f64 / 10_000.0
        };
        let p99 = if bad { 2400 + h % 500 } else { 80 + h % 120 };
        json!({
            "service": service, "env": env, "revision": dep.current,
            "rps": 50 + h % 400, "error_rate": error_rate, "p50_ms": p99 / 4, "p99_ms": p99,
            "cpu": ((h >> 8) % 70) as f64 / 100.0 + 0.1,
        })
    }
}

#[tool_router]
impl Monitor {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            tool_router: Self::tool_router(),
        }
    }

    /// Health of a service in an environment. Fails when it is not healthy.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn health(
        &self,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service).or_else(|| check_env(&args.env)) {
            return Ok(r);
        }
        if let Some(r) = self
            .ctx
            .inject("health", Some(&args.service), Some(&args.env))
            .await
        {
            return Ok(r);
        }
        self.ctx.work(300).await;
        let state: K8sState = self.ctx.load(K8S_STATE);
        let Some(dep) = state.deployments.get(&key(&args.service, &args.env)) else {
            return Ok(fail(
                format!("{} is not deployed in {}", args.service, args.env),
                json!({ "service": args.service, "env": args.env, "status": "down" }),
            ));
        };
        let metrics = self.metrics_of(&args.service, &args.env, dep);
        if self.unhealthy(&args.service, &args.env, dep) {
            return Ok(fail(
                format!(
                    "{} in {} is unhealthy: error rate 34%, 2 of {} pods crash-looping (revision {})",
                    args.service, args.env, dep.replicas, dep.current
                ),
                json!({ "service": args.service, "env": args.env, "status": "down", "revision": dep.current, "metrics": metrics }),
            ));
        }
        Ok(ok(json!({
            "service": args.service, "env": args.env, "status": "healthy",
            "revision": dep.current, "error_rate": metrics["error_rate"], "p99_ms": metrics["p99_ms"],
        })))
    }

    /// Request rate, error rate, latency and CPU of a service in an environment.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn metrics(
        &self,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check_service(&args.service).or_else(|| check_env(&args.env)) {
            return Ok(r);
        }
        self.ctx.work(150).await;
        let state: K8sState = self.ctx.load(K8S_STATE);
        Ok(ok(
            match state.deployments.get(&key(&args.service, &args.env)) {
                Some(dep) => self.metrics_of(&args.service, &args.env, dep),
                None => {
                    json!({ "service": args.service, "env": args.env, "revision": null, "rps": 0, "error_rate": 0.0, "p99_ms": 0 })
                }
            },
        ))
    }

    /// Alerts firing anywhere in the estate.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn alerts(&self, Parameters(_): Parameters<NoArgs>) -> Result<CallToolResult, ErrorData> {
        self.ctx.work(100).await;
        let state: K8sState = self.ctx.load(K8S_STATE);
        let alerts: Vec<Value> = state
            .deployments
            .iter()
            .filter_map(|(k, dep)| {
                let (service, env) = k.split_once('/')?;
                self.unhealthy(service, env, dep).then(|| {
                    json!({
                        "name": "HighErrorRate", "severity": if env == "production" { "page" } else { "ticket" },
                        "service": service, "env": env, "revision": dep.current,
                        "summary": format!("{service} in {env}: error rate above 5% since revision {}", dep.current),
                    })
                })
            })
            .collect();
        Ok(ok(json!({ "count": alerts.len(), "alerts": alerts })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Monitor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox monitoring: health, metrics, alerts.")
    }
}
