//! Where a server's OAuth tokens are kept: the OS keyring (account
//! `server:NAME/oauth`), or, on a machine with no keyring service
//! (containers, CI, a bare SSH box), a file under the data directory that
//! only its owner can read. Never the config, a log or the audit log.

use std::path::{Path, PathBuf};

use rmcp::transport::auth::{AuthError, CredentialStore, StoredCredentials};

/// What a store holds for one server besides rmcp's credentials: the
/// scopes a server asked for that the tokens lack (step-up), so the next
/// login requests them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Extra {
    #[serde(default)]
    pub wanted_scopes: Vec<String>,
    /// A client secret handed out by dynamic registration.
    #[serde(default)]
    pub client_secret: Option<String>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    credentials: Option<StoredCredentials>,
    #[serde(default)]
    extra: Extra,
}

/// Where tokens live on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Keyring,
    /// A 0600 file: no keyring service here.
    File(PathBuf),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Keyring => write!(f, "the OS keyring"),
            Backend::File(p) => write!(
                f,
                "{} (readable only by you; this machine has no keyring service)",
                p.display()
            ),
        }
    }
}

/// One server's tokens. Cheap to clone; every clone sees the same entry.
#[derive(Debug, Clone)]
pub struct TokenStore {
    server: String,
    backend: Backend,
}

impl TokenStore {
    /// The store for `server`: the keyring when this machine has one, else
    /// a file in `data_dir/credentials`.
    pub fn for_server(server: &str, data_dir: &Path) -> Self {
        let backend = if crate::secrets::keyring_available() {
            Backend::Keyring
        } else {
            Backend::File(data_dir.join("credentials").join(format!("{server}.json")))
        };
        Self {
            server: server.to_string(),
            backend,
        }
    }

    /// The store for `server` in this file, whether or not a keyring exists.
    pub fn in_file(server: &str, path: PathBuf) -> Self {
        Self {
            server: server.to_string(),
            backend: Backend::File(path),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    fn account(&self) -> String {
        format!("server:{}/oauth", self.server)
    }

    fn read(&self) -> Result<Option<Kept>, String> {
        let text = match &self.backend {
            Backend::Keyring => {
                crate::secrets::read_key(&self.account()).map_err(|e| e.to_string())?
            }
            Backend::File(path) => match std::fs::read_to_string(path) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            },
        };
        let Some(text) = text else { return Ok(None) };
        let kept: Kept = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the stored login of server `{}` is unreadable ({e}); run `opsbot auth logout {}` and log in again",
                self.server, self.server
            )
        })?;
        if let Some(token) = kept
            .credentials
            .as_ref()
            .and_then(|c| c.token_response.as_ref())
        {
            remember_token(token);
        }
        Ok(Some(kept))
    }

    fn write(&self, kept: &Kept) -> Result<(), String> {
        let text = serde_json::to_string(kept).map_err(|e| e.to_string())?;
        match &self.backend {
            Backend::Keyring => {
                crate::secrets::store_key(&self.account(), &text).map_err(|e| e.to_string())
            }
            Backend::File(path) => write_private(path, &text),
        }
    }

    /// The stored credentials, if any.
    pub fn credentials(&self) -> Result<Option<StoredCredentials>, String> {
        Ok(self.read()?.and_then(|k| k.credentials))
    }

    pub fn extra(&self) -> Result<Extra, String> {
        Ok(self.read()?.map(|k| k.extra).unwrap_or_default())
    }

    pub fn set_extra(&self, extra: Extra) -> Result<(), String> {
        let mut kept = self.read()?.unwrap_or(Kept {
            credentials: None,
            extra: Extra::default(),
        });
        kept.extra = extra;
        self.write(&kept)
    }

    /// Note scopes the server asked for that the login lacks: the next
    /// login asks for them. Best effort: a store that cannot be written
    /// only loses the hint.
    pub fn want_scopes<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) {
        let mut extra = self.extra().unwrap_or_default();
        for s in scopes {
            if !extra.wanted_scopes.iter().any(|w| w == s) {
                extra.wanted_scopes.push(s.to_string());
            }
        }
        if let Err(e) = self.set_extra(extra) {
            tracing::warn!(server = %self.server, "cannot note the scopes it wants: {e}");
        }
    }

    /// Forget the server's tokens; true if there were any.
    pub fn forget(&self) -> Result<bool, String> {
        match &self.backend {
            Backend::Keyring => {
                crate::secrets::remove_key(&self.account()).map_err(|e| e.to_string())
            }
            Backend::File(path) => match std::fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            },
        }
    }
}

/// Tokens are secrets like any other: whatever is read or written is kept
/// out of logs and the audit log.
/// Seconds since the Unix epoch, as token times are kept.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// How long the stored access token has left, by what the authorization
/// server said when it issued it; None when it named no lifetime (or there
/// is no token).
pub(crate) fn remaining(creds: &StoredCredentials) -> Option<std::time::Duration> {
    use oauth2::TokenResponse;
    let total = creds.token_response.as_ref()?.expires_in()?;
    let elapsed = creds
        .token_received_at
        .map(|at| unix_now().saturating_sub(at))
        .unwrap_or_default();
    Some(total.saturating_sub(std::time::Duration::from_secs(elapsed)))
}

fn remember_token(token: &rmcp::transport::auth::OAuthTokenResponse) {
    use oauth2::TokenResponse;
    crate::secrets::remember(token.access_token().secret());
    if let Some(r) = token.refresh_token() {
        crate::secrets::remember(r.secret());
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    // Written whole to a private temporary file, then renamed: a reader
    // never sees half a login, and the file is never readable by others.
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[async_trait::async_trait]
impl CredentialStore for TokenStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        self.credentials().map_err(AuthError::CredentialStoreError)
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        if let Some(t) = &credentials.token_response {
            remember_token(t);
        }
        let extra = self.extra().unwrap_or_default();
        self.write(&Kept {
            credentials: Some(credentials),
            extra,
        })
        .map_err(AuthError::CredentialStoreError)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.forget()
            .map(|_| ())
            .map_err(AuthError::CredentialStoreError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(token: &str) -> StoredCredentials {
        let response: rmcp::transport::auth::OAuthTokenResponse = serde_json::from_value(
            serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": 3600,
                               "refresh_token": "refresh-1234567890", "scope": "mcp:basic"}),
        )
        .expect("token response");
        StoredCredentials::new(
            "client-1".into(),
            Some(response),
            vec!["mcp:basic".into()],
            Some(1),
        )
    }

    #[tokio::test]
    async fn a_file_store_keeps_logins_private_and_forgets_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("credentials").join("gh.json");
        let store = TokenStore::in_file("gh", path.clone());
        assert!(store.load().await.expect("load").is_none());
        store
            .save(credentials("access-abcdefghijkl"))
            .await
            .expect("save");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by others: {mode:o}");
        let dir_mode = std::fs::metadata(path.parent().expect("dir"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let back = store.load().await.expect("load").expect("kept");
        assert_eq!(back.client_id, "client-1");
        assert_eq!(back.granted_scopes, vec!["mcp:basic".to_string()]);
        // What was read is redacted from now on, wherever it would be shown.
        assert_eq!(
            crate::session::Redactor::default().text("t=access-abcdefghijkl"),
            "t=[redacted]"
        );
        // A wanted scope survives the next save of credentials.
        store.want_scopes(["mcp:write"]);
        store
            .save(credentials("access-mnopqrstuvwx"))
            .await
            .expect("save");
        assert_eq!(
            store.extra().expect("extra").wanted_scopes,
            vec!["mcp:write"]
        );
        assert!(store.forget().expect("forget"));
        assert!(store.load().await.expect("load").is_none());
        assert!(!store.forget().expect("forget twice"));
    }

    #[test]
    fn an_unreadable_login_says_how_to_start_over() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("gh.json");
        std::fs::write(&path, "{not json").expect("write");
        let err = TokenStore::in_file("gh", path)
            .credentials()
            .expect_err("garbage");
        assert!(err.contains("opsbot auth logout gh"), "{err}");
    }
}
