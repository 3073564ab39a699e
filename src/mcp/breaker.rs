//! A circuit breaker per server: after N failures in a row, calls fail fast
//! for a cool-down; then one probe call is let through, and its result
//! closes the breaker or opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    /// Failing fast; a probe is allowed after `retry_in_ms`.
    Open {
        retry_in_ms: u64,
    },
    /// One probe call is under way.
    HalfOpen,
}

impl BreakerState {
    pub fn summary(&self) -> String {
        match self {
            BreakerState::Closed => "closed".into(),
            BreakerState::Open { retry_in_ms } => {
                format!(
                    "open, probing again in {}",
                    crate::session::duration(*retry_in_ms)
                )
            }
            BreakerState::HalfOpen => "half-open, probing".into(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    consecutive: u32,
    open_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// `threshold` 0 turns the breaker off.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call go ahead? `Err` is how long until a probe is allowed.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut s = self.lock();
        let Some(until) = s.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            return Err(until - now);
        }
        if s.probing {
            return Err(Duration::ZERO);
        }
        s.probing = true;
        Ok(())
    }

    /// Count a call's result; returns the new state when it changed.
    pub fn record(&self, ok: bool) -> Option<BreakerState> {
        if self.threshold == 0 {
            return None;
        }
        let mut s = self.lock();
        let was_open = s.open_until.is_some();
        if ok {
            s.consecutive = 0;
            s.probing = false;
            s.open_until = None;
            return was_open.then_some(BreakerState::Closed);
        }
        s.consecutive += 1;
        if s.probing || s.consecutive >= self.threshold {
            s.probing = false;
            s.open_until = Some(Instant::now() + self.cooldown);
            return Some(BreakerState::Open {
                retry_in_ms: self.cooldown.as_millis() as u64,
            });
        }
        None
    }

    pub fn state(&self) -> BreakerState {
        let s = self.lock();
        match s.open_until {
            None => BreakerState::Closed,
            Some(_) if s.probing => BreakerState::HalfOpen,
            Some(until) => BreakerState::Open {
                retry_in_ms: until.saturating_duration_since(Instant::now()).as_millis() as u64,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_failures_probes_once_then_closes() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        assert!(matches!(b.record(false), Some(BreakerState::Open { .. })));
        assert!(b.admit().is_err(), "fails fast while open");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_ok(), "one probe after the cool-down");
        assert!(b.admit().is_err(), "only one");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            matches!(b.record(false), Some(BreakerState::Open { .. })),
            "a failed probe reopens"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_ok());
        assert_eq!(b.record(true), Some(BreakerState::Closed));
        assert!(b.admit().is_ok());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.record(false);
        b.record(true);
        assert_eq!(b.record(false), None);
        assert!(b.admit().is_ok());
    }
}
