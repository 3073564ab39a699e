//! Checks on the `[llm]` table that types alone cannot express: the
//! selected profile exists, URLs and headers can be sent, prices and
//! budgets make sense.

use super::Config;
use super::load::{ConfigError, ConfigSource, invalid_at};
use crate::text::closest;

pub(super) fn check(config: &Config, layers: &[ConfigSource]) -> Result<(), ConfigError> {
    for (table, profile) in [
        ("llm", &config.llm.profile),
        ("sampling", &config.sampling.profile),
    ] {
        if let Some(profile) = profile
            && !config.llm.profiles.contains_key(profile)
        {
            let hint = closest(profile, config.llm.profiles.keys().map(String::as_str))
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            return Err(invalid_at(
                layers,
                table,
                format!("[{table}] profile `{profile}` is not defined under [llm.profiles]{hint}"),
            ));
        }
    }
    for (name, p) in &config.llm.profiles {
        let header = format!("llm.profiles.{name}");
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            return Err(invalid_at(
                layers,
                &header,
                format!(
                    "LLM profile `{name}`: base_url `{}` must start with http:// or https:// (and usually end in /v1)",
                    p.base_url
                ),
            ));
        }
        if p.model.trim().is_empty() {
            return Err(invalid_at(
                layers,
                &header,
                format!("LLM profile `{name}` needs a `model`"),
            ));
        }
        if p.timeout_ms == 0 {
            return Err(invalid_at(
                layers,
                &header,
                format!("LLM profile `{name}`: timeout_ms must be greater than 0"),
            ));
        }
        if let Err(problem) = check_http_fields(p) {
            return Err(invalid_at(
                layers,
                &header,
                format!("LLM profile `{name}`: {problem}"),
            ));
        }
    }
    for (model, price) in &config.llm.prices {
        if !(price.input_per_mtok >= 0.0 && price.output_per_mtok >= 0.0) {
            return Err(invalid_at(
                layers,
                &format!("llm.prices.{model}"),
                format!(
                    "price of `{model}`: input_per_mtok and output_per_mtok must be 0 or more (US dollars per million tokens)"
                ),
            ));
        }
    }
    let b = &config.llm.budget;
    if [b.session_usd, b.day_usd]
        .iter()
        .flatten()
        .any(|v| v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        || [b.session_tokens, b.day_tokens]
            .iter()
            .flatten()
            .any(|v| *v == 0)
    {
        return Err(invalid_at(
            layers,
            "llm.budget",
            "[llm.budget] limits must be greater than 0; leave one out for no limit".to_string(),
        ));
    }
    Ok(())
}

/// Header names and values must be sendable, or every request would fail
/// later with a less helpful message.
fn check_http_fields(p: &super::LlmProfile) -> Result<(), String> {
    use reqwest::header::{HeaderName, HeaderValue};
    let value = |what: &str, v: &str| {
        HeaderValue::from_str(v)
            .map(|_| ())
            .map_err(|_| format!("{what} `{v}` cannot be sent in an HTTP header (no control characters or line breaks)"))
    };
    for (name, v) in &p.headers {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
        value(&format!("header {name}:"), v)?;
    }
    if let Some(name) = &p.api_key_header {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("api_key_header `{name}` is not a valid HTTP header name"))?;
    }
    for (what, v) in [("organization", &p.organization), ("project", &p.project)] {
        if let Some(v) = v {
            value(what, v)?;
        }
    }
    Ok(())
}
