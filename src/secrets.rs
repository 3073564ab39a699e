//! API keys: the OS keyring first (service `opsbot`, one entry per LLM
//! profile), an environment variable named in the profile as the fallback
//! where no keyring service exists (containers, CI). Callers are told which
//! source was used, never the key.

use std::fmt;

const SERVICE: &str = "opsbot";

/// Where a key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Keyring,
    Env(String),
    /// No key anywhere: fine for local servers that need none.
    None,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Keyring => write!(f, "the OS keyring"),
            KeySource::Env(var) => write!(f, "the environment variable {var}"),
            KeySource::None => write!(f, "no key"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no keyring service is available here ({0}); put the key in the environment variable named by the profile's api_key_env instead"
    )]
    NoKeyring(String),
    #[error("the keyring refused: {0}")]
    Keyring(String),
}

/// Make the platform's keyring the default store, if this machine has one.
/// Tests set an in-memory store instead and skip this.
pub fn use_platform_store() {
    // Creating any entry through `keyring` installs the platform store.
    if let Err(e) = keyring::Entry::new(SERVICE, "probe") {
        tracing::info!("no platform keyring: {e}");
    }
}

fn entry(profile: &str) -> Result<keyring_core::Entry, SecretError> {
    keyring_core::Entry::new(SERVICE, profile).map_err(classify)
}

fn classify(e: keyring_core::Error) -> SecretError {
    match e {
        keyring_core::Error::NoDefaultStore
        | keyring_core::Error::NoStorageAccess(_)
        | keyring_core::Error::PlatformFailure(_) => SecretError::NoKeyring(e.to_string()),
        other => SecretError::Keyring(other.to_string()),
    }
}

pub fn store_key(profile: &str, key: &str) -> Result<(), SecretError> {
    entry(profile)?.set_password(key).map_err(classify)
}

/// A keyring entry's value, if it has one.
pub fn read_key(account: &str) -> Result<Option<String>, SecretError> {
    match entry(account)?.get_password() {
        Ok(v) => Ok(Some(v)),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// Remove a profile's key; true if there was one.
pub fn remove_key(profile: &str) -> Result<bool, SecretError> {
    match entry(profile)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

/// The key for a profile: the keyring's, else the environment variable's.
/// Whatever is found is remembered, so the audit log can redact it.
pub fn api_key(profile: &str, env_var: Option<&str>) -> (Option<String>, KeySource) {
    let found = match entry(profile).and_then(|e| e.get_password().map_err(classify)) {
        Ok(key) => (Some(key), KeySource::Keyring),
        Err(e) => {
            tracing::debug!("no key in the keyring for {profile}: {e}");
            match env_var.and_then(|v| std::env::var(v).ok().map(|k| (v, k))) {
                Some((var, key)) if !key.is_empty() => (Some(key), KeySource::Env(var.to_string())),
                _ => (None, KeySource::None),
            }
        }
    };
    if let Some(key) = &found.0 {
        remember(key);
    }
    found
}

/// The bearer token `opsbot serve --http` requires beyond loopback: the
/// keyring's entry `serve`, else `OPSBOT_SERVE_TOKEN`.
pub fn serve_token() -> Option<String> {
    api_key("serve", Some("OPSBOT_SERVE_TOKEN")).0
}

/// Whether secrets can be kept in an OS keyring on this machine.
pub fn keyring_available() -> bool {
    match entry("probe").and_then(|e| e.get_password().map_err(classify)) {
        Ok(_) => true,
        Err(SecretError::NoKeyring(_)) => false,
        Err(SecretError::Keyring(_)) => true,
    }
}

/// The keyring account of a server's secret (`opsbot auth set server:NAME KEY`).
fn server_account(server: &str, key: &str) -> String {
    format!("server:{server}/{key}")
}

/// Keep a server's secret (an environment variable's or a header's value).
pub fn store_server_secret(server: &str, key: &str, value: &str) -> Result<(), SecretError> {
    store_key(&server_account(server, key), value)
}

/// Remove a server's secret; true if there was one.
pub fn remove_server_secret(server: &str, key: &str) -> Result<bool, SecretError> {
    remove_key(&server_account(server, key))
}

/// A server's `env` or `headers` value with its references filled in:
/// `${keyring}` is the keyring's secret for this server and key,
/// `${env:VAR}` opsbot's own environment variable `VAR`. Whatever is
/// filled in is remembered for redaction. The error says how to provide
/// what is missing.
pub fn resolve(server: &str, key: &str, raw: &str) -> Result<String, String> {
    fill(
        raw,
        &server_account(server, key),
        &format!("`{key}` of server `{server}`"),
        &format!("opsbot auth set server:{server} {key}"),
    )
}

/// The keyring account of a header sent to the telemetry collector.
fn telemetry_account(header: &str) -> String {
    format!("telemetry/{header}")
}

/// A `[telemetry] headers` value with its references filled in, as
/// `resolve` does for a server's (`opsbot auth set telemetry HEADER`).
pub fn resolve_telemetry(header: &str, raw: &str) -> Result<String, String> {
    fill(
        raw,
        &telemetry_account(header),
        &format!("[telemetry] header `{header}`"),
        &format!("opsbot auth set telemetry {header}"),
    )
}

/// Keep a telemetry header's secret value.
pub fn store_telemetry_secret(header: &str, value: &str) -> Result<(), SecretError> {
    store_key(&telemetry_account(header), value)
}

/// Remove a telemetry header's secret; true if there was one.
pub fn remove_telemetry_secret(header: &str) -> Result<bool, SecretError> {
    remove_key(&telemetry_account(header))
}

/// `raw` with `${keyring}` (the keyring's `account`) and `${env:VAR}`
/// filled in; `what` names the setting in errors, `set_it` the command
/// that stores it.
fn fill(raw: &str, account: &str, what: &str, set_it: &str) -> Result<String, String> {
    if !raw.contains("${") {
        return Ok(raw.to_string());
    }
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "{what} has an unclosed `${{`; write ${{keyring}} or ${{env:VAR}}"
            ));
        };
        let reference = &after[..end];
        let value = if reference == "keyring" {
            match entry(account).and_then(|e| e.get_password().map_err(classify)) {
                Ok(v) => v,
                Err(e) => {
                    return Err(format!(
                        "{what} comes from the keyring, which has none ({e}): run `{set_it}`, or write ${{env:VAR}} to take it from an environment variable"
                    ));
                }
            }
        } else if let Some(var) = reference.strip_prefix("env:") {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => v,
                _ => {
                    return Err(format!(
                        "{what} comes from the environment variable {var}, which is not set: export {var} before starting opsbot"
                    ));
                }
            }
        } else {
            return Err(format!(
                "{what}: unknown reference `${{{reference}}}`; write ${{keyring}} or ${{env:VAR}}"
            ));
        };
        remember(&value);
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Secret values this process has read: redacted wherever they would be
/// stored or shown.
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Values shorter than this are not treated as secrets: replacing every
/// "abc" in the log would say more than it hides.
const MIN_SECRET_LEN: usize = 6;

pub fn remember(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    if let Ok(mut known) = KNOWN.write()
        && !known.iter().any(|k| k == secret)
    {
        known.push(secret.to_string());
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run), any case.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_uppercase(), name.to_ascii_uppercase());
    let parts: Vec<&str> = p.split('*').collect();
    let mut rest = n.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

/// Remember the values of this process's environment variables whose
/// names match `patterns` as secrets; returns how many. Region names and
/// other short values (under 6 bytes) are left alone.
pub fn remember_environment(patterns: &[String]) -> usize {
    let mut n = 0;
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if value.len() >= MIN_SECRET_LEN && patterns.iter().any(|p| glob(p, name)) {
            remember(value);
            n += 1;
        }
    }
    n
}

/// `f` over the secrets read so far.
pub fn with_known<R>(f: impl FnOnce(&[String]) -> R) -> R {
    match KNOWN.read() {
        Ok(known) => f(&known),
        Err(_) => f(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_values_fill_keyring_and_environment_references() {
        keyring_core::set_default_store(keyring_core::mock::Store::new().expect("mock store"));
        assert_eq!(resolve("gh", "X-Org", "acme").as_deref(), Ok("acme"));
        let missing = resolve("gh", "GITHUB_TOKEN", "${keyring}").expect_err("none yet");
        assert!(
            missing.contains("opsbot auth set server:gh GITHUB_TOKEN"),
            "{missing}"
        );
        store_server_secret("gh", "GITHUB_TOKEN", "ghp_secret_value_1").expect("store");
        assert_eq!(
            resolve("gh", "GITHUB_TOKEN", "${keyring}").as_deref(),
            Ok("ghp_secret_value_1")
        );
        assert!(with_known(|k| k.iter().any(|s| s == "ghp_secret_value_1")));
        let var = "OPSBOT_TEST_RESOLVE_9c1d";
        let unset =
            resolve("gh", "Authorization", &format!("Bearer ${{env:{var}}}")).expect_err("unset");
        assert!(unset.contains(&format!("export {var}")), "{unset}");
        assert!(resolve("gh", "k", "${vault:x}").is_err());
        assert!(remove_server_secret("gh", "GITHUB_TOKEN").expect("remove"));
    }

    #[test]
    fn keyring_first_then_environment_and_never_the_key_in_messages() {
        keyring_core::set_default_store(keyring_core::mock::Store::new().expect("mock store"));
        let var = "OPSBOT_TEST_SECRETS_KEY_7f3a";
        assert_eq!(api_key("p1", Some(var)), (None, KeySource::None));
        store_key("p1", "sk-from-keyring").expect("store");
        let (key, source) = api_key("p1", Some(var));
        assert_eq!(key.as_deref(), Some("sk-from-keyring"));
        assert_eq!(source.to_string(), "the OS keyring");
        assert!(remove_key("p1").expect("remove"));
        assert!(!remove_key("p1").expect("remove again"));
        assert_eq!(api_key("p1", None), (None, KeySource::None));
    }

    #[test]
    fn secret_names_are_matched_by_glob() {
        for (pattern, name, hit) in [
            ("*_KEY", "OPENAI_API_KEY", true),
            ("*_KEY", "KEYRING", false),
            ("AWS_*", "aws_secret_access_key", true),
            ("*PASSWORD*", "DB_PASSWORD_FILE", true),
            ("*_TOKEN", "TOKENS", false),
            ("A*B*C", "AxxBxxC", true),
            ("A*B*C", "AxxCxxB", false),
        ] {
            assert_eq!(super::glob(pattern, name), hit, "{pattern} vs {name}");
        }
    }
}
