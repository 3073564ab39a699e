//! An OAuth-protected MCP server for tests, with its own authorization
//! server, on one loopback port: protected resource metadata (RFC 9728),
//! authorization server metadata (RFC 8414), dynamic client registration
//! (RFC 7591), authorization code with PKCE S256 (the authorize step
//! approves at once and redirects), refresh tokens, audience-bound tokens
//! (RFC 8707) and scope step-up (`things:write` for `write_thing`). The
//! MCP side answers JSON-RPC over streamable HTTP with plain JSON replies.
//! Knobs let a test expire access tokens, revoke refresh tokens or make
//! the server issue tokens for another audience; every token issued is
//! kept so a test can look for it where it must not be.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Default)]
pub struct AsState {
    /// code → (PKCE challenge, scope, resource)
    codes: HashMap<String, (String, String, String)>,
    /// access token → (scope, audience, still valid)
    access: HashMap<String, (String, String, bool)>,
    /// refresh token → (scope, audience, revoked)
    refresh: HashMap<String, (String, String, bool)>,
    /// Every token value handed out.
    pub issued: Vec<String>,
    /// The `scope` of each authorization request.
    pub asked_scopes: Vec<String>,
    /// The `resource` of each authorization and token request.
    pub resources: Vec<String>,
    pub refreshes: usize,
    /// Issue tokens for another resource.
    pub wrong_audience: bool,
    /// A static API key (`X-Api-Key`) the MCP endpoint also takes, granting `things:read`.
    pub api_key: Option<String>,
    counter: u64,
}

pub struct AuthServer {
    pub base: String,
    pub state: Arc<Mutex<AsState>>,
}

impl AuthServer {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Every access token stops working (as if it expired).
    pub fn expire_access(&self) {
        for v in self.lock().access.values_mut() {
            v.2 = false;
        }
    }

    pub fn revoke_refresh(&self) {
        for v in self.lock().refresh.values_mut() {
            v.2 = true;
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, AsState> {
        self.state.lock().expect("auth server state")
    }
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn token(state: &mut AsState, kind: &str) -> String {
    state.counter += 1;
    let seed = format!(
        "{kind}-{}-{}-{:?}",
        state.counter,
        std::process::id(),
        std::time::SystemTime::now()
    );
    let t = format!("{kind}{}", b64url(&Sha256::digest(seed.as_bytes())));
    state.issued.push(t.clone());
    t
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pairs(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn json_reply(status: StatusCode, v: Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn challenge(base: &str, status: StatusCode, scope: &str, extra: &str) -> Response {
    let mut r = status.into_response();
    let value = format!(
        "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\", scope=\"{scope}\"{extra}"
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn handle(base: String, state: Arc<Mutex<AsState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let method = req.method().clone();
    let api_key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let resource = format!("{base}/mcp");
    match (method.as_str(), path.as_str()) {
        ("GET", p) if p.starts_with("/.well-known/oauth-protected-resource") => json_reply(
            StatusCode::OK,
            json!({"resource": resource, "authorization_servers": [base],
                   "scopes_supported": ["things:read", "things:write"], "bearer_methods_supported": ["header"]}),
        ),
        ("GET", "/.well-known/oauth-authorization-server") => json_reply(
            StatusCode::OK,
            json!({"issuer": base, "authorization_endpoint": format!("{base}/authorize"),
                   "token_endpoint": format!("{base}/token"), "registration_endpoint": format!("{base}/register"),
                   "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"],
                   "code_challenge_methods_supported": ["S256"], "token_endpoint_auth_methods_supported": ["none"],
                   "scopes_supported": ["things:read", "things:write"]}),
        ),
        ("POST", "/register") => {
            let asked: Value = serde_json::from_slice(&body).unwrap_or_default();
            json_reply(
                StatusCode::CREATED,
                json!({"client_id": "dyn-client", "redirect_uris": asked["redirect_uris"],
                       "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                       "response_types": ["code"]}),
            )
        }
        ("GET", "/authorize") => {
            let q = pairs(&query);
            if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
                return (StatusCode::BAD_REQUEST, "PKCE S256 is required").into_response();
            }
            let mut s = state.lock().expect("state");
            let code = token(&mut s, "code");
            let scope = q.get("scope").cloned().unwrap_or_default();
            let res = q.get("resource").cloned().unwrap_or_default();
            s.asked_scopes.push(scope.clone());
            s.resources.push(res.clone());
            s.codes.insert(
                code.clone(),
                (
                    q.get("code_challenge").cloned().unwrap_or_default(),
                    scope,
                    res,
                ),
            );
            let to = format!(
                "{}?code={code}&state={}",
                q.get("redirect_uri").cloned().unwrap_or_default(),
                q.get("state").cloned().unwrap_or_default()
            );
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        ("POST", "/token") => {
            let f = pairs(&String::from_utf8_lossy(&body));
            let mut s = state.lock().expect("state");
            if let Some(r) = f.get("resource") {
                s.resources.push(r.clone());
            }
            let (scope, audience) = match f.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let Some((challenge, scope, res)) =
                        f.get("code").and_then(|c| s.codes.remove(c))
                    else {
                        return json_reply(
                            StatusCode::BAD_REQUEST,
                            json!({"error": "invalid_grant"}),
                        );
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    if b64url(&Sha256::digest(verifier.as_bytes())) != challenge {
                        return json_reply(
                            StatusCode::BAD_REQUEST,
                            json!({"error": "invalid_grant", "error_description": "PKCE"}),
                        );
                    }
                    (scope, res)
                }
                Some("refresh_token") => {
                    let Some((scope, aud, false)) = f
                        .get("refresh_token")
                        .and_then(|t| s.refresh.get(t).cloned())
                    else {
                        return json_reply(
                            StatusCode::BAD_REQUEST,
                            json!({"error": "invalid_grant", "error_description": "refresh token revoked"}),
                        );
                    };
                    s.refreshes += 1;
                    (scope, aud)
                }
                _ => {
                    return json_reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "unsupported_grant_type"}),
                    );
                }
            };
            let audience = if s.wrong_audience {
                "http://elsewhere.invalid/mcp".to_string()
            } else if audience.is_empty() {
                resource.clone()
            } else {
                audience
            };
            let access = token(&mut s, "at");
            let refresh = token(&mut s, "rt");
            s.access
                .insert(access.clone(), (scope.clone(), audience.clone(), true));
            s.refresh
                .insert(refresh.clone(), (scope.clone(), audience, false));
            json_reply(
                StatusCode::OK,
                json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                       "refresh_token": refresh, "scope": scope}),
            )
        }
        ("POST", "/mcp") => {
            let granted = {
                let s = state.lock().expect("state");
                let keyed = s.api_key.is_some() && s.api_key == api_key;
                bearer
                    .as_ref()
                    .and_then(|b| s.access.get(b).cloned())
                    .filter(|(_, aud, valid)| *valid && *aud == resource)
                    .or_else(|| keyed.then(|| ("things:read".into(), resource.clone(), true)))
            };
            let Some((scope, _, _)) = granted else {
                return challenge(&base, StatusCode::UNAUTHORIZED, "things:read", "");
            };
            let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
            let Some(id) = msg.get("id").cloned() else {
                return StatusCode::ACCEPTED.into_response();
            };
            let name = msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let result = match msg["method"].as_str().unwrap_or("") {
                "initialize" => {
                    json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                                       "serverInfo": {"name": "things", "version": "1.0"}})
                }
                "tools/list" => json!({"tools": [
                    {"name": "whoami", "description": "Who the token is for",
                     "inputSchema": {"type": "object", "properties": {}},
                     "annotations": {"readOnlyHint": true}},
                    {"name": "write_thing", "description": "Write a thing (needs things:write)",
                     "inputSchema": {"type": "object", "properties": {}},
                     "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true}}]}),
                "tools/call"
                    if name == "write_thing" && !scope.split(' ').any(|s| s == "things:write") =>
                {
                    return challenge(
                        &base,
                        StatusCode::FORBIDDEN,
                        "things:read things:write",
                        ", error=\"insufficient_scope\"",
                    );
                }
                "tools/call" => {
                    json!({"content": [{"type": "text", "text": format!("{name} ok with scope {scope}")}]})
                }
                "ping" => json!({}),
                _ => {
                    return json_reply(
                        StatusCode::OK,
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}}),
                    );
                }
            };
            json_reply(
                StatusCode::OK,
                json!({"jsonrpc": "2.0", "id": id, "result": result}),
            )
        }
        ("GET", "/mcp") => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        ("DELETE", "/mcp") => StatusCode::OK.into_response(),
        _ => (StatusCode::NOT_FOUND, Body::empty()).into_response(),
    }
}

/// Start it on a loopback port, in the current tokio runtime.
pub async fn start() -> AuthServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let state = Arc::new(Mutex::new(AsState::default()));
    let (b, s) = (base.clone(), Arc::clone(&state));
    let app = axum::Router::new().fallback(move |req: Request| {
        let (b, s) = (b.clone(), Arc::clone(&s));
        async move { handle(b, s, req).await }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    AuthServer { base, state }
}
