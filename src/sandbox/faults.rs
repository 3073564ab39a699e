//! Injectable faults and speed for the sandbox servers, read from the
//! environment so tests and demos can make the estate misbehave on purpose.
//!
//! `OPSBOT_SANDBOX_FAULTS` holds entries separated by `;`:
//! `TOOL=KIND[@SERVICE[/ENV]]`, where KIND is one of
//! `fail`, `flaky:N` (the first N calls fail), `crash` (the process exits
//! mid-call), `hang` (the call never answers), `garbage` (the server writes a
//! non-protocol line to stdout), `unhealthy` (health reports down) or
//! `slow:MS` (extra latency).
//!
//! `OPSBOT_SANDBOX_LATENCY` scales every simulated duration (`0` for tests).

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    Fail,
    Flaky(u32),
    Crash,
    Hang,
    Garbage,
    Unhealthy,
    Slow(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub tool: String,
    pub kind: FaultKind,
    pub service: Option<String>,
    pub env: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    faults: Vec<Fault>,
}

impl Faults {
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("OPSBOT_SANDBOX_FAULTS") {
            Ok(spec) => Self::parse(&spec),
            Err(_) => Ok(Self::default()),
        }
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut faults = Vec::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (tool, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("fault `{entry}`: expected TOOL=KIND[@SERVICE[/ENV]]"))?;
            let (kind, target) = match rest.split_once('@') {
                Some((k, t)) => (k, Some(t)),
                None => (rest, None),
            };
            let kind = match kind.split_once(':') {
                None if kind == "fail" => FaultKind::Fail,
                None if kind == "crash" => FaultKind::Crash,
                None if kind == "hang" => FaultKind::Hang,
                None if kind == "garbage" => FaultKind::Garbage,
                None if kind == "unhealthy" => FaultKind::Unhealthy,
                Some(("flaky", n)) => {
                    FaultKind::Flaky(n.parse().map_err(|_| {
                        format!("fault `{entry}`: flaky needs a count, e.g. flaky:2")
                    })?)
                }
                Some(("slow", ms)) => FaultKind::Slow(ms.parse().map_err(|_| {
                    format!("fault `{entry}`: slow needs milliseconds, e.g. slow:200")
                })?),
                _ => {
                    return Err(format!(
                        "fault `{entry}`: unknown kind `{kind}` (fail, flaky:N, crash, hang, garbage, unhealthy, slow:MS)"
                    ));
                }
            };
            let (service, env) = match target.map(|t| t.split_once('/')) {
                None => (None, None),
                Some(None) => (target.map(str::to_string), None),
                Some(Some((s, e))) => (Some(s.to_string()), Some(e.to_string())),
            };
            faults.push(Fault {
                tool: tool.trim().to_string(),
                kind,
                service,
                env,
            });
        }
        Ok(Self { faults })
    }

    /// Faults that apply to this call.
    pub fn matching<'a>(
        &'a self,
        tool: &'a str,
        service: Option<&'a str>,
        env: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Fault> + 'a {
        self.faults.iter().filter(move |f| {
            f.tool == tool
                && f.service.as_deref().is_none_or(|s| Some(s) == service)
                && f.env.as_deref().is_none_or(|e| Some(e) == env)
        })
    }
}

/// Counts calls per tool across server restarts, so `flaky:N` means the first
/// N calls of the estate's lifetime, not of one process.
pub fn bump_counter(dir: &Path, tool: &str) -> u32 {
    let path = dir.join(format!("calls-{tool}.count"));
    let n = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    if let Err(e) = std::fs::write(&path, n.to_string()) {
        tracing::warn!("cannot record call count in {}: {e}", path.display());
    }
    n
}

pub fn latency_scale() -> f64 {
    std::env::var("OPSBOT_SANDBOX_LATENCY")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_target() {
        let f = Faults::parse("run_tests=fail@payments; deploy=flaky:2; health=unhealthy@checkout/production; build=slow:50")
            .expect("parses");
        assert_eq!(f.matching("run_tests", Some("payments"), None).count(), 1);
        assert_eq!(f.matching("run_tests", Some("checkout"), None).count(), 0);
        assert_eq!(
            f.matching("health", Some("checkout"), Some("production"))
                .next()
                .map(|f| f.kind.clone()),
            Some(FaultKind::Unhealthy)
        );
        assert_eq!(
            f.matching("health", Some("checkout"), Some("staging"))
                .count(),
            0
        );
        assert_eq!(
            f.matching("deploy", Some("x"), Some("y"))
                .next()
                .map(|f| f.kind.clone()),
            Some(FaultKind::Flaky(2))
        );
    }

    #[test]
    fn rejects_unknown_kinds_clearly() {
        let e = Faults::parse("deploy=explode").expect_err("must fail");
        assert!(e.contains("unknown kind `explode`"), "{e}");
    }
}
