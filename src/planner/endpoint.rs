//! How requests reach an OpenAI-compatible endpoint: base URL, key,
//! organisation and project, extra headers and query parameters. One shape
//! covers OpenAI, Azure OpenAI (key in `api-key`, `api-version` in the
//! query), Ollama, vLLM, LM Studio and llama.cpp's server.
//!
//! Built from a profile that config loading has already checked, so nothing
//! here can fail when a request is made.

use async_openai::config::Config;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::config::LlmProfile;

#[derive(Clone)]
pub struct Endpoint {
    base: String,
    key: SecretString,
    headers: HeaderMap,
    query: Vec<(String, String)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(profile: &LlmProfile, key: Option<String>) -> Self {
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str| match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(mut v)) => {
                if n == AUTHORIZATION || Some(name) == profile.api_key_header.as_deref() {
                    v.set_sensitive(true);
                }
                headers.insert(n, v);
            }
            _ => tracing::warn!("LLM header `{name}` cannot be sent; left out"),
        };
        if let Some(org) = &profile.organization {
            put("OpenAI-Organization", org);
        }
        if let Some(project) = &profile.project {
            put("OpenAI-Project", project);
        }
        for (name, value) in &profile.headers {
            put(name, value);
        }
        // A key with characters a header cannot carry is left out rather
        // than sent mangled; the endpoint's 401 then says what is wrong.
        let key = key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        if let Some(k) = &key {
            match &profile.api_key_header {
                Some(name) => put(name, k),
                None => put(AUTHORIZATION.as_str(), &format!("Bearer {k}")),
            }
        }
        Self {
            base: profile.base_url.trim_end_matches('/').to_string(),
            key: SecretString::from(key.unwrap_or_default()),
            headers,
            query: profile
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl Config for Endpoint {
    fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        self.query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn api_base(&self) -> &str {
        &self.base
    }

    fn api_key(&self) -> &SecretString {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_style_profile_sends_the_key_in_its_header_and_the_version_in_the_query() {
        let mut profile = LlmProfile {
            base_url: "https://example.openai.azure.com/openai/deployments/gpt4o/".into(),
            api_key_header: Some("api-key".into()),
            organization: Some("org-1".into()),
            ..LlmProfile::default()
        };
        profile
            .query
            .insert("api-version".into(), "2024-10-21".into());
        let e = Endpoint::new(&profile, Some(" k-123 \n".into()));
        let h = e.headers();
        assert_eq!(h.get("api-key").map(|v| v.as_bytes()), Some(&b"k-123"[..]));
        assert!(h.get(AUTHORIZATION).is_none());
        assert_eq!(
            h.get("OpenAI-Organization").map(|v| v.as_bytes()),
            Some(&b"org-1"[..])
        );
        assert_eq!(e.query(), vec![("api-version", "2024-10-21")]);
        assert_eq!(
            e.url("/chat/completions"),
            "https://example.openai.azure.com/openai/deployments/gpt4o/chat/completions"
        );
        assert!(!format!("{e:?}").contains("k-123"), "the key never prints");
    }

    #[test]
    fn no_key_means_no_authorization_header() {
        let e = Endpoint::new(&LlmProfile::default(), None);
        assert!(e.headers().get(AUTHORIZATION).is_none());
        let e = Endpoint::new(&LlmProfile::default(), Some("sk-x".into()));
        assert_eq!(
            e.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer sk-x"[..])
        );
    }
}
