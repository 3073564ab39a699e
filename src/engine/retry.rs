//! Retrying transient failures: timeouts, a server that exited or is not
//! available (it may be restarting), and errors the tool itself marks
//! retryable. Only idempotent tools are retried: a retried deploy that had
//! half-happened must not happen twice.

use std::time::Duration;

use crate::mcp::{CallError, Servers, ToolOutput};
use crate::plan::Step;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Whether the tool may be called again safely.
    pub idempotent: bool,
}

impl RetryPolicy {
    /// From the step, its server's config and the tool's annotations.
    pub fn for_step(servers: &Servers, step: &Step) -> Self {
        let (server, name) = step.tool.split_once('.').unwrap_or((&step.tool, ""));
        let fallback = crate::config::ServerConfig::default();
        let config = servers.config_of(server).unwrap_or(&fallback);
        let annotated = servers.with_tool(&step.tool, |t| {
            t.is_some_and(|t| t.annotations.idempotent || t.annotations.read_only)
        });
        let idempotent = !config.non_idempotent.iter().any(|t| t == name)
            && (annotated || config.idempotent.iter().any(|t| t == name));
        Self {
            max: step.retries.unwrap_or(config.retries),
            base: Duration::from_millis(config.retry_base_ms.max(1)),
            cap: Duration::from_millis(config.retry_max_ms.max(config.retry_base_ms)),
            idempotent,
        }
    }

    /// The wait before retry number `attempt` (1-based): exponential, with
    /// up to half of it as jitter so retries of many steps spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.cap);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(u64::from(nanos) % half.as_nanos().max(1) as u64)
        };
        half + jitter
    }
}

/// Why a result is worth another try, if it is.
pub fn transient(result: &Result<ToolOutput, CallError>) -> Option<String> {
    match result {
        Err(e) if e.is_transient() => Some(e.to_string()),
        Ok(out)
            if out.is_error
                && out.value().get("retryable") == Some(&serde_json::Value::Bool(true)) =>
        {
            Some(if out.text.is_empty() {
                "the tool reported a retryable error".into()
            } else {
                out.text.clone()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let p = RetryPolicy {
            max: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            idempotent: true,
        };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let d = p.delay(attempt).as_millis() as u64;
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d} ms");
        }
    }

    #[test]
    fn what_counts_as_transient() {
        let out = |is_error, structured: serde_json::Value| ToolOutput {
            is_error,
            text: "x".into(),
            structured: Some(structured),
            truncated: None,
            content: None,
            meta: None,
            task: None,
        };
        assert!(transient(&Ok(out(true, serde_json::json!({"retryable": true})))).is_some());
        assert!(transient(&Ok(out(true, serde_json::json!({"error": "bad"})))).is_none());
        assert!(transient(&Ok(out(false, serde_json::json!({"retryable": true})))).is_none());
        let timeout = CallError::Timeout {
            tool: "a.b".into(),
            after_ms: 5,
        };
        assert!(transient(&Err(timeout)).is_some());
        let cancelled = CallError::Cancelled { tool: "a.b".into() };
        assert!(transient(&Err(cancelled)).is_none());
    }
}
