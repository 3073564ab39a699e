//! Logins without a browser. Client credentials (SEP-1046): a server used
//! by opsbot under its own identity; opsbot exchanges its `client_id` with
//! a client secret (HTTP Basic, or in the body where the server asks for
//! that) or a JWT signed with its private key (RFC 7523) for a token bound
//! to the server (RFC 8707). Cross-app access (SEP-990): the person's ID
//! token from the company's identity provider is exchanged there for an
//! ID-JAG, which the server's authorization server takes for its token.
//! Neither has a refresh token: when the token is gone, opsbot exchanges
//! again, at connect, without anyone running a command.

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

/// Get a token of `server`'s without a browser, by the configured grant,
/// kept in `store` like a person's login.
pub async fn login(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
    store: TokenStore,
) -> Result<LoginReport, LoginError> {
    if oauth.grant == crate::config::OAuthGrant::CrossAppAccess {
        return cross_app(server, url, oauth, store).await;
    }
    let config = credentials(server, url, oauth)?;
    let mut manager = AuthorizationManager::new(url).await?;
    manager.set_credential_store(store.clone());
    let mut state = OAuthState::Unauthorized(manager);
    state.authenticate_client_credentials(config).await?;
    report(&store)
}

fn needed<'a>(server: &str, key: &str, value: &'a Option<String>) -> Result<&'a str, LoginError> {
    value.as_deref().ok_or_else(|| {
        LoginError::Auth(format!(
            "[servers.{server}.oauth] grant = \"cross_app_access\" needs `{key}`"
        ))
    })
}

fn secret(server: &str, key: &str, raw: &str) -> Result<oauth2::ClientSecret, LoginError> {
    crate::secrets::resolve(server, key, raw)
        .map(oauth2::ClientSecret::new)
        .map_err(LoginError::Auth)
}

/// Cross-app access: ID token → ID-JAG at the identity provider → the
/// server's token at its authorization server (found from the server).
async fn cross_app(
    server: &str,
    url: &str,
    oauth: &OAuthConfig,
    store: TokenStore,
) -> Result<LoginReport, LoginError> {
    use rmcp::transport::auth::enterprise::{
        EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest,
    };
    let id_token = crate::secrets::resolve(
        server,
        "id_token",
        needed(server, "id_token", &oauth.id_token)?,
    )
    .map_err(LoginError::Auth)?;
    let client_id = needed(server, "client_id", &oauth.client_id)?.to_string();
    let mut idp = EmaAuthorizationServer::new(
        needed(server, "idp_issuer", &oauth.idp_issuer)?,
        needed(server, "idp_token_endpoint", &oauth.idp_token_endpoint)?,
        needed(server, "idp_client_id", &oauth.idp_client_id)?,
    );
    if let Some(raw) = &oauth.idp_client_secret {
        idp = idp.with_client_authentication(EmaClientAuthentication::ClientSecretBasic(secret(
            server,
            "idp_client_secret",
            raw,
        )?));
    }
    let manager = AuthorizationManager::new(url).await?;
    let metadata = manager.resolve_metadata().await?.metadata;
    let issuer = metadata.issuer.clone().ok_or_else(|| {
        LoginError::Auth(format!(
            "the authorization server of `{server}` names no issuer, which cross-app access needs"
        ))
    })?;
    let mut resource_as = EmaAuthorizationServer::new(
        issuer.clone(),
        metadata.token_endpoint.clone(),
        client_id.clone(),
    );
    if let Some(raw) = &oauth.client_secret {
        resource_as = resource_as.with_client_authentication(
            EmaClientAuthentication::ClientSecretBasic(secret(server, "client_secret", raw)?),
        );
    }
    let http = rmcp::transport::auth::default_oauth_http_client()?;
    let token = EmaExchangeRequest::new_with_id_token(idp, resource_as, url, &id_token)
        .with_scopes(oauth.scopes.clone())
        .exchange(&http, &http)
        .await
        .map_err(|e| LoginError::Auth(format!("cross-app access for `{server}` failed: {e}")))?;
    let mut scopes: Vec<String> = token.scopes.iter().cloned().collect();
    scopes.sort();
    let mut response = serde_json::json!({
        "access_token": token.access_token.secret(),
        "token_type": "bearer",
    });
    if let Some(lasts) = token.expires_in {
        response["expires_in"] = lasts.as_secs().into();
    }
    if !scopes.is_empty() {
        response["scope"] = scopes.join(" ").into();
    }
    let token_response: rmcp::transport::auth::OAuthTokenResponse =
        serde_json::from_value(response).map_err(|e| LoginError::Auth(e.to_string()))?;
    let now = Some(super::tokens::unix_now());
    rmcp::transport::auth::CredentialStore::save(
        &store,
        rmcp::transport::auth::StoredCredentials::new(client_id, Some(token_response), scopes, now)
            .with_issuer(Some(issuer)),
    )
    .await?;
    report(&store)
}
