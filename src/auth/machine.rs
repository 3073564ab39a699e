//! Machine logins (OAuth client credentials, SEP-1046): a server used by
//! opsbot under its own identity, not a person's. No browser: opsbot
//! exchanges its `client_id` with a client secret (HTTP Basic, or in the
//! body where the server asks for that) or a JWT signed with its private
//! key (RFC 7523) for a token bound to the server (RFC 8707). A machine
//! login has no refresh token: when the token is gone or refused, opsbot
//! simply exchanges again, at connect, without anyone running a command.

use rmcp::transport::auth::{
    AuthorizationManager, ClientCredentialsConfig, JwtSigningAlgorithm, OAuthState,
};

use super::login::{LoginError, LoginReport, report};
use super::tokens::TokenStore;
use crate::config::OAuthConfig;

fn algorithm(name: Option<&str>) -> Result<JwtSigningAlgorithm, LoginError> {
    Ok(match name.unwrap_or("ES256") {
        "ES256" => JwtSigningAlgorithm::ES256,
        "ES384" => JwtSigningAlgorithm::ES384,
        "RS256" => JwtSigningAlgorithm::RS256,
        "RS384" => JwtSigningAlgorithm::RS384,
        "RS512" => JwtSigningAlgorithm::RS512,
        other => {
            return Err(LoginError::Auth(format!(
                "signing_algorithm `{other}` is not one opsbot signs with; use ES256, ES384, RS256, RS384 or RS512"
            )));
        }
    })
}

/// How opsbot proves who it is, from the server's `[oauth]` table.
fn credentials(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
) -> Result<ClientCredentialsConfig, LoginError> {
    let client_id = oauth.client_id.clone().ok_or_else(|| {
        LoginError::Auth(format!(
            "[servers.{server}.oauth] grant = \"client_credentials\" needs a `client_id`"
        ))
    })?;
    let resource = Some(url.to_string());
    let scopes = oauth.scopes.clone();
    if let Some(path) = &oauth.private_key_file {
        let signing_key = std::fs::read(path).map_err(|e| {
            LoginError::Auth(format!(
                "cannot read the private key {} of `{server}`: {e}",
                path.display()
            ))
        })?;
        return Ok(ClientCredentialsConfig::PrivateKeyJwt {
            client_id,
            signing_key,
            signing_algorithm: algorithm(oauth.signing_algorithm.as_deref())?,
            token_endpoint_audience: None,
            scopes,
            resource,
        });
    }
    let raw = oauth.client_secret.as_deref().ok_or_else(|| {
        LoginError::Auth(format!(
            "[servers.{server}.oauth] grant = \"client_credentials\" needs a `client_secret` (\"${{keyring}}\" or \"${{env:VAR}}\") or a `private_key_file`"
        ))
    })?;
    let client_secret =
        crate::secrets::resolve(server, "client_secret", raw).map_err(LoginError::Auth)?;
    Ok(ClientCredentialsConfig::ClientSecret {
        client_id,
        client_secret,
        scopes,
        resource,
    })
}

/// Exchange opsbot's client credentials for a token of `server`'s, kept in
/// `store` like a person's login.
pub async fn login(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
    store: TokenStore,
) -> Result<LoginReport, LoginError> {
    let config = credentials(server, url, oauth)?;
    let mut manager = AuthorizationManager::new(url).await?;
    manager.set_credential_store(store.clone());
    let mut state = OAuthState::Unauthorized(manager);
    state.authenticate_client_credentials(config).await?;
    report(&store)
}
