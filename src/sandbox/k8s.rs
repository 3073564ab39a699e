//! `k8s`: deployments with remembered revisions, rollback and scaling.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, RequestMetaObject, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::ci::{CiState, STATE as CI_STATE};
use super::support::{Ctx, check_env, check_service, fail, now, ok, progress};

pub const STATE: &str = "k8s.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct K8sState {
    /// Keyed `service/env`.
    pub deployments: BTreeMap<String, Deployment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub revisions: Vec<Revision>,
    /// The live revision's number.
    pub current: u32,
    pub replicas: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u32,
    pub image: String,
    pub at: String,
}

impl Deployment {
    pub fn live(&self) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.revision == self.current)
    }
    pub fn newest(&self) -> u32 {
        self.revisions.iter().map(|r| r.revision).max().unwrap_or(0)
    }
}

pub fn key(service: &str, env: &str) -> String {
    format!("{service}/{env}")
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DeployArgs {
    pub service: String,
    /// Image reference from ci.build.
    pub image: String,
    /// dev, staging or production.
    pub env: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TargetArgs {
    pub service: String,
    pub env: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RollbackArgs {
    pub service: String,
    pub env: String,
    /// Revision to return to; the one before the live one when omitted.
    #[serde(default)]
    pub to_revision: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScaleArgs {
    pub service: String,
    pub env: String,
    /// 0 to 50.
    pub replicas: u32,
}

#[derive(Clone)]
pub struct K8s {
    ctx: Arc<Ctx>,
    lock: Arc<Mutex<()>>,
    tool_router: ToolRouter<Self>,
}

fn check(service: &str, env: &str) -> Option<CallToolResult> {
    check_service(service).or_else(|| check_env(env))
}

#[tool_router]
impl K8s {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            lock: Arc::new(Mutex::new(())),
            tool_router: Self::tool_router(),
        }
    }

    /// Roll out an image to a service in an environment, creating a new revision.
    /// Additive: earlier revisions are kept and can be rolled back to.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn deploy(
        &self,
        Parameters(args): Parameters<DeployArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check(&args.service, &args.env) {
            return Ok(r);
        }
        if let Some(r) = self
            .ctx
            .inject("deploy", Some(&args.service), Some(&args.env))
            .await
        {
            return Ok(r);
        }
        let builds: CiState = self.ctx.load(CI_STATE);
        if !builds
            .builds
            .values()
            .any(|b| b.image == args.image && b.service == args.service)
        {
            return Ok(fail(
                format!(
                    "ImagePullBackOff: image {} of {} is not in the registry",
                    args.image, args.service
                ),
                json!({ "error": "image_not_found", "image": args.image }),
            ));
        }
        let replicas = {
            let state: K8sState = self.ctx.load(STATE);
            state
                .deployments
                .get(&key(&args.service, &args.env))
                .map_or(3, |d| d.replicas.max(1))
        };
        for pod in 0..replicas {
            progress(
                &peer,
                &meta,
                f64::from(pod),
                f64::from(replicas),
                "rolling out pods",
            )
            .await;
            self.ctx.work(300).await;
        }
        let _guard = self.lock.lock().await;
        let _file = self.ctx.lock_state(STATE)?;
        let mut state: K8sState = self.ctx.load(STATE);
        let dep = state
            .deployments
            .entry(key(&args.service, &args.env))
            .or_insert(Deployment {
                revisions: Vec::new(),
                current: 0,
                replicas,
            });
        let previous = dep.current;
        let revision = dep.newest() + 1;
        dep.revisions.push(Revision {
            revision,
            image: args.image.clone(),
            at: now(),
        });
        dep.current = revision;
        self.ctx
            .save(STATE, &state)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ok(json!({
            "service": args.service, "env": args.env, "image": args.image,
            "revision": revision, "previous_revision": previous, "replicas": replicas,
            "status": "rolled out",
        })))
    }

    /// What runs where: live revision, image, replicas and revision history.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn status(
        &self,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check(&args.service, &args.env) {
            return Ok(r);
        }
        if let Some(r) = self
            .ctx
            .inject("status", Some(&args.service), Some(&args.env))
            .await
        {
            return Ok(r);
        }
        self.ctx.work(100).await;
        let state: K8sState = self.ctx.load(STATE);
        Ok(ok(
            match state.deployments.get(&key(&args.service, &args.env)) {
                None => {
                    json!({ "service": args.service, "env": args.env, "deployed": false, "revision": null })
                }
                Some(d) => json!({
                    "service": args.service, "env": args.env, "deployed": true,
                    "revision": d.current, "image": d.live().map(|r| r.image.clone()),
                    "replicas": d.replicas, "ready_replicas": d.replicas,
                    "revisions": d.revisions,
                }),
            },
        ))
    }

    /// Return a service in an environment to an earlier revision.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn rollback(
        &self,
        Parameters(args): Parameters<RollbackArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check(&args.service, &args.env) {
            return Ok(r);
        }
        if let Some(r) = self
            .ctx
            .inject("rollback", Some(&args.service), Some(&args.env))
            .await
        {
            return Ok(r);
        }
        self.ctx.work(500).await;
        let _guard = self.lock.lock().await;
        let _file = self.ctx.lock_state(STATE)?;
        let mut state: K8sState = self.ctx.load(STATE);
        let Some(dep) = state.deployments.get_mut(&key(&args.service, &args.env)) else {
            return Ok(fail(
                format!(
                    "{} is not deployed in {}: nothing to roll back",
                    args.service, args.env
                ),
                json!({ "error": "not_deployed" }),
            ));
        };
        let from = dep.current;
        let target = match args.to_revision {
            Some(t) => t,
            None => match dep
                .revisions
                .iter()
                .map(|r| r.revision)
                .filter(|r| *r < from)
                .max()
            {
                Some(t) => t,
                None => {
                    return Ok(fail(
                        format!(
                            "{} in {} has no revision before {from}",
                            args.service, args.env
                        ),
                        json!({ "error": "no_previous_revision", "revision": from }),
                    ));
                }
            },
        };
        let Some(image) = dep
            .revisions
            .iter()
            .find(|r| r.revision == target)
            .map(|r| r.image.clone())
        else {
            return Ok(fail(
                format!("{} in {} has no revision {target}", args.service, args.env),
                json!({ "error": "unknown_revision" }),
            ));
        };
        dep.current = target;
        self.ctx
            .save(STATE, &state)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ok(json!({
            "service": args.service, "env": args.env,
            "revision": target, "from_revision": from, "image": image, "status": "rolled back",
        })))
    }

    /// Change the number of replicas.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn scale(
        &self,
        Parameters(args): Parameters<ScaleArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(r) = check(&args.service, &args.env) {
            return Ok(r);
        }
        if args.replicas > 50 {
            return Ok(fail(
                format!("{} replicas is over the sandbox limit of 50", args.replicas),
                json!({ "error": "too_many_replicas" }),
            ));
        }
        if let Some(r) = self
            .ctx
            .inject("scale", Some(&args.service), Some(&args.env))
            .await
        {
            return Ok(r);
        }
        self.ctx.work(200).await;
        let _guard = self.lock.lock().await;
        let _file = self.ctx.lock_state(STATE)?;
        let mut state: K8sState = self.ctx.load(STATE);
        let Some(dep) = state.deployments.get_mut(&key(&args.service, &args.env)) else {
            return Ok(fail(
                format!("{} is not deployed in {}", args.service, args.env),
                json!({ "error": "not_deployed" }),
            ));
        };
        let from = dep.replicas;
        dep.replicas = args.replicas;
        self.ctx
            .save(STATE, &state)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ok(
            json!({ "service": args.service, "env": args.env, "replicas": args.replicas, "previous_replicas": from }),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for K8s {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Sandbox Kubernetes: deployments with revisions.")
    }
}
