//! Logging in to remote MCP servers (the MCP authorization spec, OAuth 2.1)
//! and keeping their tokens: `opsbot auth login|logout|status`, and the
//! authorized HTTP client a server's connection uses once logged in.

pub mod login;
pub mod machine;
pub mod scope;
pub mod tokens;

pub use login::{LoginError, LoginOptions, LoginReport, login, report};
pub use tokens::{Backend, TokenStore};

use rmcp::transport::AuthClient;
use rmcp::transport::auth::AuthorizationManager;

use crate::config::OAuthConfig;

/// An HTTP client that sends the server's access token, refreshing it
/// before it expires (and once more if the server rejects it); None when
/// the server has no stored login, so its requests go out as they are.
pub async fn authorized_client(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
    store: TokenStore,
) -> Result<Option<scope::ScopeWatch<AuthClient<reqwest::Client>>>, String> {
    // A machine identity logs itself in (again) whenever it has no live
    // token: nobody is there to run a command.
    if oauth.grant != crate::config::OAuthGrant::AuthorizationCode && !live(&store) {
        // rmcp's exchange cannot move between threads: it runs on one of
        // its own, off the caller's task.
        let (name, at, cfg, into) = (
            server.to_string(),
            url.to_string(),
            oauth.clone(),
            store.clone(),
        );
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(machine::login(&name, &at, &cfg, into))
        })
        .await
        .map_err(|e| format!("the login of `{server}` stopped: {e}"))?
        .map_err(|e| format!("`{server}` could not be logged in to without a browser: {e}"))?;
    }
    let has_tokens = store
        .credentials()?
        .is_some_and(|c| c.token_response.is_some());
    if !has_tokens {
        return Ok(None);
    }
    let mut manager = AuthorizationManager::new(url)
        .await
        .map_err(|e| format!("cannot prepare the login of `{server}`: {e}"))?;
    manager.set_credential_store(store.clone());
    let ready = manager.initialize_from_store().await.map_err(|e| {
        format!("cannot use the stored login of `{server}` ({e}); run `opsbot auth login {server}`")
    })?;
    if !ready {
        return Ok(None);
    }
    if let (Some(id), Some(raw)) = (&oauth.client_id, &oauth.client_secret) {
        let secret = crate::secrets::resolve(server, "client_secret", raw)?;
        let current = manager.get_current_scopes().await;
        let config =
            rmcp::transport::auth::OAuthClientConfig::new(id.clone(), "http://127.0.0.1/callback")
                .with_client_secret(secret)
                .with_scopes(current);
        manager
            .configure_client(config)
            .map_err(|e| format!("cannot use the client secret of `{server}`: {e}"))?;
    }
    Ok(Some(scope::ScopeWatch {
        inner: AuthClient::new(reqwest::Client::new(), manager),
        store,
    }))
}

/// Whether the store holds a token that has not expired (by what the
/// authorization server said when it issued it).
fn live(store: &TokenStore) -> bool {
    match store.credentials() {
        Ok(Some(creds)) if creds.token_response.is_some() => {
            tokens::remaining(&creds).is_none_or(|left| left > std::time::Duration::from_secs(30))
        }
        _ => false,
    }
}

/// Why a server turned a request away, when it is about authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no login, or one it no longer takes.
    Login,
    /// 403 `insufficient_scope`: the login lacks a scope.
    Scope,
}

impl Refusal {
    /// What fixes it, for a person.
    pub fn advice(self, server: &str) -> String {
        match self {
            Refusal::Login => format!("`{server}` needs a login: run `opsbot auth login {server}`"),
            Refusal::Scope => format!(
                "`{server}` needs more access than the login gave: run `opsbot auth login {server}` again"
            ),
        }
    }
}

/// The refusal somewhere in a transport error's chain of causes.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
    let mut at = Some(error);
    while let Some(e) = at {
        if e.is::<AuthRequiredError>() {
            return Some(Refusal::Login);
        }
        if e.is::<InsufficientScopeError>() {
            return Some(Refusal::Scope);
        }
        at = e.source();
    }
    None
}
