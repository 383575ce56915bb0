//! The matchmaker link's liveness and reconnection, as a state machine: no socket, no task,
//! no clock. The network loop tells it what happened (a message heard, the link lost, an
//! attempt's result), with the time, and asks it what is due (a ping, an attempt, giving up)
//! and when it next needs asking. The connection itself (reader, writer, the task that
//! connects again) stays with the loop.

use std::time::Duration;

use web_time::Instant;

/// How often we ping the matchmaker while the link is up.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(5);
/// Nothing heard for this long: the link is dead (the server pings every 15 s by default
/// and answers our pings at once) — once a ping of ours has gone unanswered for
/// [`ANSWER_WAIT`] as well.
pub(crate) const SILENCE: Duration = Duration::from_secs(12);
/// How long our first ping since the matchmaker was last heard may go unanswered before a
/// [`SILENCE`] counts. Polled on time, that ping went out at most [`PING_EVERY`] after the
/// last message, so the link is lost after `SILENCE` as before; polled late (a hidden
/// tab's timers, just under [`ASLEEP`] apart), nothing may have been asked since the last
/// message: then the link asks first.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The error of a link that fell silent ([`Due::Silent`]).
pub(crate) fn silence_error() -> crate::error::Error {
    crate::error::Error::Timeout {
        what: "waiting for the matchmaker (nothing heard)",
        secs: SILENCE.as_secs(),
    }
}

/// The error that ends a session whose reconnect `window` is over ([`Due::GiveUp`]).
pub(crate) fn gave_up_error(url: &str, window: Duration) -> crate::error::Error {
    crate::error::Error::Signaling {
        url: url.to_string(),
        reason: format!(
            "could not reconnect within {} s (SessionBuilder::reconnect_window)",
            window.as_secs()
        ),
    }
}

/// The error of a link whose matchmaker node is draining and asked us to move
/// (`ServerMessage::Moving`).
pub(crate) fn moving_error(within_ms: u32) -> crate::error::Error {
    crate::error::Error::Matchmaker {
        code: squadlink_protocol::ErrorCode::ServerShutdown,
        message: format!("the matchmaker node asked us to move within {within_ms} ms"),
    }
}

/// A gap this long between two polls means the loop was not run on time (a hidden tab's
/// timers, which Chromium may fire once a minute; a suspended machine): the link pings
/// and judges silence from then, rather than calling silent what it did not ask about.
const ASLEEP: Duration = Duration::from_secs(10);

/// The longest wait between two reconnection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// What the link needs done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a ping.
    Ping,
    /// Nothing was heard for [`SILENCE`]: treat the link as lost.
    Silent,
    /// Start reconnection attempt number `attempt` (1, 2, …).
    Attempt { attempt: u32 },
    /// The reconnect window is over: end the session.
    GiveUp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Up {
        last_heard: Instant,
        last_ping: Instant,
        /// Our first ping since the matchmaker was last heard.
        asked: Option<Instant>,
    },
    Down {
        since: Instant,
        attempt: u32,
        next_at: Instant,
        attempting: bool,
    },
    /// Not reconnecting: another connection of this player took our place, or the lobby
    /// is gone.
    Stopped,
}

/// The matchmaker link's state.
#[derive(Debug)]
pub(crate) struct LinkState {
    state: State,
    /// How long to keep trying after the link dropped.
    window: Duration,
    /// A fraction in 0..=0.25 added to each backoff, so that a matchmaker restart is not
    /// met by every client at the same instant.
    jitter: fn() -> f64,
    /// Which matchmaker URL the next attempt uses (an index the settings wrap around).
    url_cursor: usize,
    /// When [`LinkState::poll`] last ran (see [`ASLEEP`]).
    last_poll: Instant,
}

impl LinkState {
    /// A link that is up as of `now`.
    pub(crate) fn new(now: Instant, window: Duration) -> Self {
        Self {
            state: State::Up {
                last_heard: now,
                last_ping: now,
                asked: None,
            },
            window,
            jitter: random_jitter,
            url_cursor: 0,
            last_poll: now,
        }
    }

    /// The URL index for the next reconnection attempt: each attempt moves on to the next
    /// URL, so the node that was just lost is tried last (the settings wrap the index).
    pub(crate) fn next_url(&mut self) -> usize {
        self.url_cursor = self.url_cursor.wrapping_add(1);
        self.url_cursor
    }

    /// Whether the link is up.
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// A message came from the matchmaker.
    pub(crate) fn heard(&mut self, now: Instant) {
        if let State::Up {
            last_heard, asked, ..
        } = &mut self.state
        {
            *last_heard = now;
            *asked = None;
        }
    }

    /// The link dropped. With `reconnect`, attempts start after the first backoff;
    /// without, the link stays down.
    pub(crate) fn lost(&mut self, now: Instant, reconnect: bool) {
        self.state = if reconnect {
            State::Down {
                since: now,
                attempt: 0,
                next_at: now + self.backoff(0),
                attempting: false,
            }
        } else {
            State::Stopped
        };
    }

    /// Reconnect without waiting for the backoff (the network changed: the old link was
    /// made from an address we no longer have).
    pub(crate) fn reconnect_now(&mut self, now: Instant) {
        if let State::Down { next_at, .. } = &mut self.state {
            *next_at = now;
        }
    }

    /// The running attempt failed; the next one waits its backoff.
    pub(crate) fn attempt_failed(&mut self, now: Instant) {
        if let State::Down {
            attempt,
            next_at,
            attempting,
            ..
        } = &mut self.state
        {
            *attempting = false;
            *next_at = now + backoff(*attempt, (self.jitter)());
        }
    }

    /// An attempt succeeded: the link is up again.
    pub(crate) fn restored(&mut self, now: Instant) {
        self.state = State::Up {
            last_heard: now,
            last_ping: now,
            asked: None,
        };
        self.last_poll = now;
    }

    /// Stop reconnecting (there is nothing to go back to).
    pub(crate) fn stop(&mut self) {
        self.state = State::Stopped;
    }

    /// What is due at `now`, if anything; call again until `None`.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Due> {
        let asleep = now.saturating_duration_since(self.last_poll) > ASLEEP;
        self.last_poll = now;
        match &mut self.state {
            State::Up {
                last_heard,
                last_ping,
                asked,
            } => {
                if asleep {
                    // What we did not hear may only be what we did not ask for: ask now,
                    // and give the answer a whole SILENCE from here.
                    *last_heard = now;
                    *last_ping = now;
                    *asked = Some(now);
                    return Some(Due::Ping);
                }
                let silent = now.saturating_duration_since(*last_heard) > SILENCE;
                let unanswered =
                    asked.is_some_and(|t| now.saturating_duration_since(t) >= ANSWER_WAIT);
                if silent && unanswered {
                    return Some(Due::Silent);
                }
                // Silent without having asked (polled late): ask before judging.
                if (silent && asked.is_none())
                    || now.saturating_duration_since(*last_ping) >= PING_EVERY
                {
                    *last_ping = now;
                    asked.get_or_insert(now);
                    return Some(Due::Ping);
                }
                None
            }
            State::Down {
                since,
                attempt,
                next_at,
                attempting,
            } => {
                if *attempting || now < *next_at {
                    return None;
                }
                // After a sleep the window is not judged before one attempt: a hidden tab
                // whose link dropped would otherwise give up without ever trying.
                if now.saturating_duration_since(*since) > self.window && !asleep {
                    self.state = State::Stopped;
                    return Some(Due::GiveUp);
                }
                *attempt += 1;
                *attempting = true;
                Some(Due::Attempt { attempt: *attempt })
            }
            State::Stopped => None,
        }
    }

    /// When [`LinkState::poll`] next has something to say (`None`: not before an input).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Up {
                last_heard,
                last_ping,
                asked,
            } => {
                let silent_at = asked.map_or(last_heard + SILENCE, |t| {
                    (last_heard + SILENCE).max(t + ANSWER_WAIT)
                });
                Some((last_ping + PING_EVERY).min(silent_at + Duration::from_millis(1)))
            }
            State::Down {
                attempting: false,
                next_at,
                ..
            } => Some(next_at),
            State::Down { .. } | State::Stopped => None,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(attempt, (self.jitter)())
    }
}

/// How long to wait before reconnection attempt `attempt` (0-based): 250 ms doubling up to
/// [`MAX_BACKOFF`], plus `jitter` (a fraction, 0 to 0.25) of that.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1u32 << attempt.min(6))
        .min(MAX_BACKOFF);
    base.mul_f64(1.0 + jitter.clamp(0.0, 0.25))
}

fn random_jitter() -> f64 {
    let mut r = [0u8; 1];
    match getrandom::fill(&mut r) {
        Ok(()) => f64::from(u8::from_ne_bytes(r)) / 255.0 * 0.25,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn link(t0: Instant) -> LinkState {
        let mut l = LinkState::new(t0, WINDOW);
        l.jitter = || 0.0;
        l
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn each_reconnection_attempt_moves_on_to_the_next_matchmaker_url() {
        let mut settings = crate::settings::Settings::new("ws://a/v1".into());
        let mut l = link(Instant::now());
        let one: Vec<&str> = (0..3)
            .map(|_| settings.matchmaker_url(l.next_url()))
            .collect();
        assert_eq!(one, ["ws://a/v1"; 3], "a single URL is always the one");
        settings.fallback_urls = vec!["ws://b/v1".into(), "ws://c/v1".into()];
        let mut l = link(Instant::now());
        let tried: Vec<&str> = (0..4)
            .map(|_| settings.matchmaker_url(l.next_url()))
            .collect();
        // The first attempt after losing the first node goes to the second, and so on.
        assert_eq!(tried, ["ws://b/v1", "ws://c/v1", "ws://a/v1", "ws://b/v1"]);
        assert_eq!(settings.matchmaker_urls(), 3);
    }

    /// Steps time from `from` to `to` in 10 ms steps, collecting what falls due.
    fn run(l: &mut LinkState, from: Instant, to: Instant) -> Vec<(Duration, Due)> {
        let mut seen = Vec::new();
        let mut now = from;
        while now <= to {
            while let Some(due) = l.poll(now) {
                seen.push((now - from, due));
                if due == Due::Silent {
                    l.lost(now, true); // as the loop does
                }
            }
            now += Duration::from_millis(10);
        }
        seen
    }

    #[test]
    fn a_heard_link_is_pinged_every_five_seconds_and_never_lost() {
        let t0 = Instant::now();
        let mut l = link(t0);
        let mut now = t0;
        let mut pings = 0;
        while now < t0 + secs(60.0) {
            l.heard(now); // the server answers every ping at once
            if let Some(due) = l.poll(now) {
                assert_eq!(due, Due::Ping);
                pings += 1;
            }
            now += Duration::from_millis(100);
        }
        assert_eq!(pings, 11);
        assert!(l.is_up());
    }

    #[test]
    fn a_silent_link_is_lost_after_twelve_seconds() {
        let t0 = Instant::now();
        let mut l = link(t0);
        let seen = run(&mut l, t0, t0 + secs(12.5));
        let silent: Vec<_> = seen.iter().filter(|(_, d)| *d == Due::Silent).collect();
        let first = silent.first().map(|(at, _)| *at);
        assert!(
            first.is_some_and(|at| at > SILENCE && at <= SILENCE + secs(0.02)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_link_woken_late_pings_and_waits_before_it_calls_the_matchmaker_silent() {
        // A hidden tab's timers may fire once a minute (Chromium's intensive throttling):
        // a minute without hearing anything is then a minute without asking.
        let t0 = Instant::now();
        let mut l = link(t0);
        let late = t0 + secs(60.0);
        assert_eq!(l.poll(late), Some(Due::Ping));
        assert_eq!(l.poll(late), None);
        l.heard(late + secs(0.05)); // the answer, through the socket's own event
        let later = late + secs(60.0);
        assert_eq!(
            l.poll(later),
            Some(Due::Ping),
            "asleep again: ask, do not judge"
        );
        assert!(l.is_up());
        // Polled on time from there, a matchmaker that never answers is silent a
        // SILENCE after that ping.
        let seen = run(&mut l, later, later + secs(12.5));
        let silent = seen
            .iter()
            .find(|(_, d)| *d == Due::Silent)
            .map(|(at, _)| *at);
        assert!(
            silent.is_some_and(|at| at > SILENCE && at <= SILENCE + secs(0.02)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_link_polled_just_under_the_sleep_threshold_asks_before_it_calls_the_matchmaker_silent() {
        // A throttled tab's wakes can come just under ASLEEP apart: the last message came
        // just after our ping, the next wake was too soon for another ping, and the one
        // after finds 14.8 s without a message, none of them asked for (seen in CI).
        let t0 = Instant::now();
        let mut l = link(t0);
        l.heard(t0 + secs(0.05));
        assert_eq!(l.poll(t0 + secs(4.9)), None, "no ping due yet");
        let woken = t0 + secs(14.8);
        assert_eq!(l.poll(woken), Some(Due::Ping), "ask, do not judge");
        assert_eq!(l.poll(woken), None);
        assert!(l.is_up());
        // Unanswered, it is silent at the next wake that comes ANSWER_WAIT after the ping.
        assert_eq!(l.poll(woken + secs(4.9)), None);
        assert_eq!(l.poll(woken + secs(9.8)), Some(Due::Silent));
    }

    #[test]
    fn a_link_asked_late_is_next_due_when_its_answer_is_overdue() {
        let t0 = Instant::now();
        let mut l = link(t0);
        let woken = t0 + secs(14.8);
        assert_eq!(l.poll(t0 + secs(4.9)), None);
        assert_eq!(l.poll(woken), Some(Due::Ping));
        let due = woken + ANSWER_WAIT;
        assert_eq!(l.next_deadline(), Some(due.min(woken + PING_EVERY)));
        assert_eq!(l.poll(due), Some(Due::Silent));
    }

    #[test]
    fn a_link_that_dropped_while_asleep_is_tried_once_before_the_window_is_judged() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        // The next wake comes after the whole window (a hidden tab's timers).
        let late = t0 + WINDOW + secs(30.0);
        assert_eq!(l.poll(late), Some(Due::Attempt { attempt: 1 }));
        l.attempt_failed(late);
        // Awake again and on time: the window is over, so the session gives up.
        let next = l.next_deadline().unwrap();
        assert_eq!(l.poll(next), Some(Due::GiveUp));
    }

    #[test]
    fn reconnection_backs_off_from_a_quarter_second_to_eight_seconds() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        assert!(!l.is_up());
        let mut now = t0;
        let mut starts = Vec::new();
        while now < t0 + secs(40.0) {
            if let Some(Due::Attempt { attempt }) = l.poll(now) {
                starts.push((attempt, now - t0));
                l.attempt_failed(now); // fails at once
            }
            now += Duration::from_millis(10);
        }
        let gaps: Vec<f64> = starts
            .windows(2)
            .map(|w| (w[1].1 - w[0].1).as_secs_f64())
            .collect();
        assert!(
            (starts[0].1.as_secs_f64() - 0.25).abs() < 0.02,
            "{starts:?}"
        );
        for (gap, want) in gaps.iter().zip([0.5, 1.0, 2.0, 4.0, 8.0, 8.0]) {
            assert!((gap - want).abs() < 0.02, "{gaps:?}");
        }
        assert_eq!(
            starts.iter().map(|s| s.0).collect::<Vec<_>>()[..4],
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn one_attempt_runs_at_a_time() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        let seen = run(&mut l, t0, t0 + secs(30.0));
        // The first attempt never reports back: no second one starts.
        assert_eq!(seen, vec![(secs(0.25), Due::Attempt { attempt: 1 })]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn the_session_gives_up_when_the_window_is_over() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        let mut now = t0;
        let mut gave_up = None;
        while now < t0 + secs(90.0) && gave_up.is_none() {
            match l.poll(now) {
                Some(Due::Attempt { .. }) => l.attempt_failed(now),
                Some(Due::GiveUp) => gave_up = Some(now - t0),
                _ => {}
            }
            now += Duration::from_millis(10);
        }
        let at = gave_up.unwrap();
        assert!(
            at > WINDOW && at <= WINDOW + MAX_BACKOFF + secs(0.02),
            "{at:?}"
        );
        assert_eq!(l.poll(now), None);
    }

    #[test]
    fn a_replaced_link_is_not_reconnected() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, false);
        assert_eq!(run(&mut l, t0, t0 + secs(120.0)), vec![]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn a_network_change_reconnects_without_waiting_for_the_backoff() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        l.reconnect_now(t0);
        assert_eq!(l.poll(t0), Some(Due::Attempt { attempt: 1 }));
    }

    #[test]
    fn a_restored_link_pings_again_and_its_deadline_is_the_next_ping() {
        let t0 = Instant::now();
        let mut l = link(t0);
        l.lost(t0, true);
        assert_eq!(l.next_deadline(), Some(t0 + secs(0.25)));
        assert_eq!(l.poll(t0 + secs(0.25)), Some(Due::Attempt { attempt: 1 }));
        let back = t0 + secs(1.0);
        l.restored(back);
        assert!(l.is_up());
        assert_eq!(l.next_deadline(), Some(back + PING_EVERY));
        assert_eq!(l.poll(back + PING_EVERY), Some(Due::Ping));
    }
}
