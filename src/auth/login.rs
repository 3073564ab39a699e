//! `opsbot auth login SERVER`: the MCP authorization flow for a
//! streamable-HTTP server. opsbot asks the server for its challenge, finds
//! its authorization server (RFC 9728, RFC 8414 / OpenID discovery),
//! identifies itself (a pre-registered client, a Client ID Metadata
//! Document, or dynamic registration), and runs the authorization code
//! flow with PKCE S256 through a loopback redirect. rmcp does the protocol
//! work; this module owns the person's side: the browser, the redirect
//! listener, the time limit, and where the tokens go.

use std::time::Duration;

use rmcp::transport::auth::{
    AuthError, AuthorizationCallback, AuthorizationManager, AuthorizationRequest, OAuthState,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tokens::TokenStore;
use crate::config::OAuthConfig;

/// How the person takes part.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// Open the authorization page in a browser (else print its URL: SSH).
    pub open_browser: bool,
    /// Unattended: fetch the authorization page and follow its redirect
    /// back, for authorization servers on this machine only (tests, the
    /// conformance suite). Never used for a remote authorization server.
    pub follow_loopback: bool,
    /// Scopes to ask for beyond the config's.
    pub scopes: Vec<String>,
    /// How long to wait for the browser to come back.
    pub timeout: Duration,
}

/// What a login got: never the tokens themselves.
#[derive(Debug, Clone)]
pub struct LoginReport {
    pub scopes: Vec<String>,
    pub expires_in: Option<Duration>,
    pub refreshable: bool,
    pub stored_in: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "server `{0}` has no `url`: only streamable-HTTP servers log in (a stdio server takes its secrets from `env`)"
    )]
    NotHttp(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Auth(String),
    #[error(
        "no answer from the browser within {0} s; run the command again (with --no-browser to copy the link by hand)"
    )]
    TimedOut(u64),
    #[error("the authorization server sent the browser back with an error: {0}")]
    Denied(String),
    #[error(
        "refusing to follow the authorization page unattended: {0} is not on this machine; log in with a browser instead"
    )]
    NotLoopback(String),
}

impl From<AuthError> for LoginError {
    fn from(e: AuthError) -> Self {
        LoginError::Auth(explain(&e))
    }
}

/// rmcp's errors, said as what to do.
fn explain(e: &AuthError) -> String {
    match e {
        AuthError::RegistrationFailed(why) => format!(
            "the authorization server would not register opsbot ({why}); ask its admin for a client id and put it in [servers.NAME.oauth] client_id"
        ),
        AuthError::NoAuthorizationSupport => {
            "the server does not say where to log in (no OAuth metadata found)".into()
        }
        other => other.to_string(),
    }
}

/// The server's answer to an unauthenticated request: its
/// `WWW-Authenticate` challenge if it asks for one, else None (it lets
/// anyone in, or only says so later).
async fn challenge(url: &str) -> Result<Option<String>, LoginError> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "opsbot", "version": env!("CARGO_PKG_VERSION")}}
    });
    let response = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .map_err(|e| LoginError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let status = response.status().as_u16();
    Ok(match status {
        401 | 403 => response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        _ => None,
    })
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Log in to `server` at `url`; its tokens go to `store`.
pub async fn login(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
    store: TokenStore,
    opts: &LoginOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<LoginReport, LoginError> {
    if oauth.grant != crate::config::OAuthGrant::AuthorizationCode {
        return super::machine::login(server, url, oauth, store).await;
    }
    let challenge = challenge(url).await?;
    let mut manager = AuthorizationManager::new(url).await?;
    manager.set_credential_store(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| {
        LoginError::Auth(format!("cannot listen on 127.0.0.1 for the redirect: {e}"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| LoginError::Auth(e.to_string()))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");

    let extra = store.extra().map_err(LoginError::Auth)?;
    let mut scopes: Vec<String> = oauth.scopes.clone();
    // Stepping up keeps what the login had and adds what the server asked for.
    let had: Vec<String> = if extra.wanted_scopes.is_empty() {
        Vec::new()
    } else {
        store
            .credentials()
            .ok()
            .flatten()
            .map(|c| c.granted_scopes)
            .unwrap_or_default()
    };
    for s in opts
        .scopes
        .iter()
        .chain(had.iter())
        .chain(extra.wanted_scopes.iter())
    {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    let mut request = AuthorizationRequest::new(&redirect).with_client_name("opsbot");
    request = if scopes.is_empty() {
        request.with_initial_scope_selection()
    } else {
        request.with_scopes(scopes)
    };
    if let Some(c) = &challenge {
        request = request.with_challenge(c.clone());
    }
    if let Some(id) = &oauth.client_id {
        request = request.with_preregistered_client(id.clone());
        if let Some(raw) = &oauth.client_secret {
            let secret =
                crate::secrets::resolve(server, "client_secret", raw).map_err(LoginError::Auth)?;
            request = request.with_client_secret(secret);
        }
    }
    if let Some(cimd) = &oauth.client_metadata_url {
        request = request.with_client_metadata_url(cimd.clone());
    }
    let mut state = OAuthState::Unauthorized(manager);
    state.start_authorization(request).await?;
    let page = state.get_authorization_url().await?;

    let callback = if opts.follow_loopback {
        follow(&page, &redirect).await?
    } else {
        say(&format!(
            "Open this page to let opsbot use `{server}` (it comes back to {redirect}):\n\n  {page}\n"
        ));
        if opts.open_browser && !crate::ask::open_link(&page) {
            say("(no browser could be opened here: copy the link into one)");
        }
        wait_for_redirect(&listener, opts.timeout).await?
    };
    state
        .handle_callback_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await?;
    // The login asked for every scope that was wanted: none is owed now.
    store
        .set_extra(super::tokens::Extra {
            wanted_scopes: Vec::new(),
            ..extra
        })
        .map_err(LoginError::Auth)?;
    report(&store)
}

/// What the store holds now, as a person may see it.
pub fn report(store: &TokenStore) -> Result<LoginReport, LoginError> {
    use oauth2::TokenResponse;
    let creds = store
        .credentials()
        .map_err(LoginError::Auth)?
        .ok_or_else(|| LoginError::Auth("the authorization server gave no token".into()))?;
    let token = creds.token_response.as_ref();
    let expires_in = super::tokens::remaining(&creds);
    let mut scopes = creds.granted_scopes.clone();
    if scopes.is_empty()
        && let Some(s) = token.and_then(|t| t.scopes())
    {
        scopes = s.iter().map(|s| s.to_string()).collect();
    }
    Ok(LoginReport {
        scopes,
        expires_in,
        refreshable: token.is_some_and(|t| t.refresh_token().is_some()),
        stored_in: store.backend().to_string(),
    })
}

/// Unattended: the authorization page of a server on this machine answers
/// with a redirect to our loopback address, which is read, not visited.
async fn follow(page: &str, redirect: &str) -> Result<AuthorizationCallback, LoginError> {
    if !is_loopback(page) {
        return Err(LoginError::NotLoopback(page.to_string()));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LoginError::Auth(e.to_string()))?;
    let response = client
        .get(page)
        .send()
        .await
        .map_err(|e| LoginError::Unreachable {
            url: page.to_string(),
            reason: e.to_string(),
        })?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            LoginError::Auth(format!(
                "the authorization page answered {} without sending the browser back",
                response.status()
            ))
        })?;
    if !location.starts_with(redirect) {
        return Err(LoginError::NotLoopback(location.to_string()));
    }
    callback_from(location)
}

fn callback_from(url: &str) -> Result<AuthorizationCallback, LoginError> {
    if let Ok(u) = reqwest::Url::parse(url)
        && let Some((_, e)) = u.query_pairs().find(|(k, _)| k == "error")
    {
        let detail = u
            .query_pairs()
            .find(|(k, _)| k == "error_description")
            .map(|(_, d)| format!(": {d}"))
            .unwrap_or_default();
        return Err(LoginError::Denied(
            crate::sanitize::clean(&format!("{e}{detail}")).into_owned(),
        ));
    }
    Ok(AuthorizationCallback::from_redirect_url(url)?)
}

/// Wait for the browser to come back to the loopback listener, answering it
/// with a page that says what happened.
async fn wait_for_redirect(
    listener: &TcpListener,
    timeout: Duration,
) -> Result<AuthorizationCallback, LoginError> {
    let accept = async {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            // "GET /callback?code=…&state=… HTTP/1.1"
            let Some(target) = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with("/callback"))
            else {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            };
            let result = callback_from(&format!("http://127.0.0.1{target}"));
            let text = match &result {
                Ok(_) => "opsbot is logged in. You can close this tab.",
                Err(_) => "opsbot could not log in; the terminal says why.",
            };
            let page = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(page.as_bytes()).await;
            return result;
        }
    };
    tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| LoginError::TimedOut(timeout.as_secs()))?
}
