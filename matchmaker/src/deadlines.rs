//! A connection's three deadlines — the next keep-alive ping, the idle timeout and the
//! hello timeout — served by one timer.
//!
//! Pure logic with time as an argument: the connection asks [`Deadlines::next_wake`] when
//! to wake and, once woken, [`Deadlines::due`] what is due. One timer per connection
//! instead of three keeps an idle connection small (each timer costs a timer-wheel entry
//! and, in an `Interval`, a heap allocation).

use std::time::{Duration, Instant};

/// What a wake-up found due, in the order it is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing has arrived for the idle timeout: close with `idle_timeout`.
    Idle,
    /// No hello arrived in time: close with `hello_timeout`.
    Hello,
    /// Time to send a keep-alive ping (the next one is then one interval later).
    Ping,
}

/// The deadlines of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    ping_every: Duration,
    idle_timeout: Duration,
    next_ping: Instant,
    hello_by: Instant,
}

impl Deadlines {
    /// Deadlines for a connection opened at `now`.
    pub(crate) fn new(
        now: Instant,
        ping_every: Duration,
        idle_timeout: Duration,
        hello_timeout: Duration,
    ) -> Self {
        Self {
            ping_every,
            idle_timeout,
            next_ping: now + ping_every,
            hello_by: now + hello_timeout,
        }
    }

    /// When to wake next: the earliest of the next ping, the idle deadline (from the last
    /// inbound frame) and, until the client said hello, the hello deadline.
    pub(crate) fn next_wake(&self, last_inbound: Instant, said_hello: bool) -> Instant {
        let idle_at = last_inbound + self.idle_timeout;
        let mut wake = self.next_ping.min(idle_at);
        if !said_hello {
            wake = wake.min(self.hello_by);
        }
        wake
    }

    /// What is due at `now`. A ping that is due moves the next one to `now` plus the
    /// interval (a late wake-up delays the pings rather than bunching them).
    pub(crate) fn due(
        &mut self,
        now: Instant,
        last_inbound: Instant,
        said_hello: bool,
    ) -> Option<Due> {
        if now >= last_inbound + self.idle_timeout {
            return Some(Due::Idle);
        }
        if !said_hello && now >= self.hello_by {
            return Some(Due::Hello);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.ping_every;
            return Some(Due::Ping);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: Duration = Duration::from_secs(15);
    const IDLE: Duration = Duration::from_secs(45);
    const HELLO: Duration = Duration::from_secs(10);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_client_that_never_says_hello_is_due_for_the_hello_timeout_first() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, PING, IDLE, HELLO);
        assert_eq!(d.next_wake(t0, false), at(t0, 10));
        assert_eq!(d.due(at(t0, 9), t0, false), None);
        assert_eq!(d.due(at(t0, 10), t0, false), Some(Due::Hello));
    }

    #[test]
    fn after_hello_the_hello_deadline_no_longer_wakes_the_connection() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, PING, IDLE, HELLO);
        assert_eq!(d.next_wake(at(t0, 1), true), at(t0, 15));
        assert_eq!(d.due(at(t0, 11), at(t0, 1), true), None);
    }

    #[test]
    fn pings_are_due_every_interval_and_a_late_wake_up_delays_the_next() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, PING, IDLE, HELLO);
        assert_eq!(d.due(at(t0, 15), at(t0, 14), true), Some(Due::Ping));
        assert_eq!(d.next_wake(at(t0, 14), true), at(t0, 30));
        // Woken 5 s late: one ping, and the next a full interval after it.
        assert_eq!(d.due(at(t0, 35), at(t0, 34), true), Some(Due::Ping));
        assert_eq!(d.due(at(t0, 36), at(t0, 34), true), None);
        assert_eq!(d.next_wake(at(t0, 34), true), at(t0, 50));
    }

    #[test]
    fn the_idle_deadline_moves_with_each_inbound_frame() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, Duration::from_secs(100), IDLE, HELLO);
        assert_eq!(d.next_wake(at(t0, 20), true), at(t0, 65));
        assert_eq!(d.due(at(t0, 64), at(t0, 20), true), None);
        assert_eq!(d.due(at(t0, 65), at(t0, 20), true), Some(Due::Idle));
    }

    #[test]
    fn an_idle_client_is_closed_even_when_a_ping_is_also_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, PING, IDLE, HELLO);
        assert_eq!(d.due(at(t0, 60), t0, true), Some(Due::Idle));
    }
}
