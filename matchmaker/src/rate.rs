//! One connection's message rate limit: a token bucket, the warnings it earns, and the
//! point where warnings end and the connection is closed. Pure: time comes in as `now`.

use std::time::{Duration, Instant};

/// How often a client over its limit is told so (the messages in between are dropped
/// silently).
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What to do with one incoming message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: handle it.
    Pass,
    /// Over the limit: drop it, and tell the client this (at most once a second).
    Drop(Option<String>),
    /// Still over the limit after `burst` dropped messages in a row: close, saying this.
    Close(String),
}

/// A token bucket of `rate` messages per second, up to `burst` at once, and the strikes of
/// a client that keeps sending past it.
#[derive(Debug)]
pub(crate) struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    strikes: u32,
    max_strikes: u32,
    last_warning: Option<Instant>,
}

impl RateLimit {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: now,
            strikes: 0,
            max_strikes: burst,
            last_warning: None,
        }
    }

    /// The limit in words (made when needed: an idle connection keeps no text).
    fn limit(&self) -> String {
        format!(
            "more than {} messages per second (burst {})",
            self.rate, self.burst
        )
    }

    /// Counts one message arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        if self.take(now) {
            self.strikes = 0;
            return Verdict::Pass;
        }
        self.strikes += 1;
        if self.strikes > self.max_strikes {
            return Verdict::Close(format!(
                "kept sending {} after being told to slow down",
                self.limit()
            ));
        }
        let quiet = self
            .last_warning
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY);
        if quiet {
            return Verdict::Drop(None);
        }
        self.last_warning = Some(now);
        Verdict::Drop(Some(format!(
            "{}: message dropped; slow down or be disconnected",
            self.limit()
        )))
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(10, 3, t0);
        assert!((0..3).all(|_| limit.check(t0) == Verdict::Pass));
        assert!(matches!(limit.check(t0), Verdict::Drop(Some(_))));
        assert_eq!(limit.check(t0 + Duration::from_millis(100)), Verdict::Pass);
        assert!(matches!(
            limit.check(t0 + Duration::from_millis(110)),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn warnings_come_once_a_second_and_a_client_that_ignores_them_is_closed() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1, 2, t0);
        assert_eq!(limit.check(t0), Verdict::Pass);
        assert_eq!(limit.check(t0), Verdict::Pass);
        let warned = limit.check(t0);
        assert!(
            matches!(&warned, Verdict::Drop(Some(m)) if m.starts_with("more than 1 messages per second (burst 2)")),
            "{warned:?}"
        );
        assert_eq!(limit.check(t0), Verdict::Drop(None));
        let closed = limit.check(t0);
        assert!(
            matches!(&closed, Verdict::Close(m) if m.contains("after being told")),
            "{closed:?}"
        );
    }

    #[test]
    fn a_message_that_passes_forgives_the_strikes() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1, 2, t0);
        limit.check(t0);
        limit.check(t0);
        assert!(matches!(limit.check(t0), Verdict::Drop(_)));
        assert!(matches!(limit.check(t0), Verdict::Drop(_)));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(limit.check(later), Verdict::Pass);
        assert!(matches!(limit.check(later), Verdict::Drop(_)));
        assert!(matches!(limit.check(later), Verdict::Drop(_)));
    }
}
