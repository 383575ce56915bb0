//! Whether a peer is still there: the connect timeout, the silence timeout and when the
//! offerer restarts ICE, as a pure judgement of what is known about the peer at a time.

use std::time::Duration;

use web_time::Instant;

/// The session's periodic round: these verdicts, pings when due, loss and stats.
pub(crate) const ROUND: Duration = Duration::from_millis(250);
/// A connected peer silent this long gets an ICE restart (from the side that offered).
pub(crate) const RESTART_AFTER: Duration = Duration::from_millis(1200);
/// Restart again at most this often while the peer stays silent.
pub(crate) const RESTART_EVERY: Duration = Duration::from_secs(4);
/// Restart again this soon when the last restart's checks found no working pair: the
/// path is still cut, and a path that heals is only found while checks run (about a
/// second after each restart). Only then: a restart drops the pair in use, and on a path
/// that works but is congested (where the browser's engine, which shows no packets, can
/// find its peer silent for a second) restarting every 2 s stalled the link
/// (docs/performance.md, heal section).
pub(crate) const RESTART_AGAIN: Duration = Duration::from_secs(2);
/// While a restart is under way the silence timeout waits this long instead.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(15);
/// A connected peer whose path has been quiet this long gets none of our unreliable game
/// data (it is dropped and counted) until it is heard again, and is pinged every round
/// instead of every other. Each end hears the other four times a second (its pings and our
/// pongs), so this is three hearings missed: the path looks cut. What goes into SCTP
/// while the path is cut stays outstanding until the retransmission timer's next expiry
/// (1, 3, 7, 15 s into the cut), and after the first one SCTP sends nothing new while a
/// packet's worth is outstanding: a game's unreliable state sent into a cut would hold the
/// healed path back until the timer fired again, seconds later (docs/performance.md,
/// `bench_heal`). Below the timer's first expiry (1 s at the least), so what was sent
/// before the hold is given up by SCTP at that expiry.
pub(crate) const HOLD_UNRELIABLE_AFTER: Duration = Duration::from_millis(750);
/// A held peer is pinged every tenth of its quiet time, at least this often apart...
pub(crate) const PROBE_MIN: Duration = Duration::from_millis(100);
/// ... and at most this far apart (the normal ping period).
pub(crate) const PROBE_MAX: Duration = Duration::from_millis(500);

/// The session's timeouts (`SessionBuilder::connect_timeout`, `silence_timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) silence: Duration,
}

/// What is known about one peer connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// Both ends' channels are open.
    pub(crate) connected: bool,
    /// We sent the first offer (so we restart ICE, and offer again after a timeout).
    pub(crate) offerer: bool,
    /// Our channels are open.
    pub(crate) all_open: bool,
    pub(crate) created: Instant,
    /// When the peer was last heard on a data channel or in RTP.
    pub(crate) last_heard: Instant,
    /// When the peer's DTLS last came over the pair in use (native engines only): the path
    /// carries its packets, so a quiet data channel is congestion (or a peer whose game
    /// stopped answering), not a cut that an ICE restart could mend.
    pub(crate) path_heard: Option<Instant>,
    /// When the latest ICE restart began.
    pub(crate) restart_at: Option<Instant>,
    /// When the first ICE restart since the peer was last heard began (the restart
    /// window counts from it, so restarts every few seconds cannot hold off the verdict).
    pub(crate) first_restart: Option<Instant>,
    /// ICE has no working pair (a restart's checks run, or found none); false when it
    /// has one or the engine cannot tell.
    pub(crate) no_path: bool,
}

/// What to do about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still connecting: wait.
    Wait,
    /// Still connecting, our channels open but the peer's not known to be: tell it (ping).
    TellReady,
    /// It did not connect in time. `offer_again`: we offered, so we try again later.
    ConnectTimeout { offer_again: bool },
    /// Connected, but silent past the silence timeout with no restart under way.
    Silent,
    /// Connected; `restart`: silent long enough for the offerer to restart ICE.
    Alive { restart: bool },
}

/// How long the path to `peer` has been quiet at `now`: since its last data-channel
/// message, or since its DTLS last came over the pair in use when that came later (a
/// congested path keeps carrying the peer's packets while its messages wait).
pub(crate) fn quiet(peer: &Facts, now: Instant) -> Duration {
    let silent = now.saturating_duration_since(peer.last_heard);
    peer.path_heard
        .map_or(silent, |t| silent.min(now.saturating_duration_since(t)))
}

/// Whether unreliable game data for `peer` is held back at `now` (dropped instead of
/// handed to SCTP; see [`HOLD_UNRELIABLE_AFTER`]). Only once connected: a connecting peer
/// has not been heard yet.
pub(crate) fn holds_unreliable(peer: &Facts, now: Instant) -> bool {
    peer.connected && quiet(peer, now) >= HOLD_UNRELIABLE_AFTER
}

/// How often `peer` is pinged at `now`: every tenth of its quiet time (within
/// [`PROBE_MIN`]–[`PROBE_MAX`]) while it is held back, every `normal` otherwise.
pub(crate) fn ping_period(peer: &Facts, now: Instant, normal: Duration) -> Duration {
    if holds_unreliable(peer, now) {
        (quiet(peer, now) / 10).clamp(PROBE_MIN, PROBE_MAX)
    } else {
        normal
    }
}

/// Judges `peer` at `now`.
pub(crate) fn judge(peer: &Facts, now: Instant, timeouts: Timeouts) -> Verdict {
    if !peer.connected {
        return if now.saturating_duration_since(peer.created) > timeouts.connect {
            Verdict::ConnectTimeout {
                offer_again: peer.offerer,
            }
        } else if peer.all_open {
            Verdict::TellReady
        } else {
            Verdict::Wait
        };
    }
    let silent = now.saturating_duration_since(peer.last_heard);
    let since = |t: Instant| now.saturating_duration_since(t);
    let quiet = quiet(peer, now);
    // The silence verdict waits out the restart window, from the first restart since the
    // peer was heard; when its packets kept coming instead, for as long as a restart waits
    // for (so none began), from when the restart would have begun: a congested path gets
    // the time a cut one gets, and a peer heard only in its transport's packets is given
    // up as late as a silent one. A peer whose last packets came just after its last
    // message (a frozen process) is judged as before.
    let window_from = peer.first_restart.or_else(|| {
        peer.path_heard
            .filter(|t| t.saturating_duration_since(peer.last_heard) >= RESTART_AFTER)
            .and_then(|_| peer.last_heard.checked_add(RESTART_AFTER))
    });
    if silent > timeouts.silence && window_from.map(since).is_none_or(|t| t >= RESTART_WINDOW) {
        return Verdict::Silent;
    }
    let since_restart = peer.restart_at.map(since);
    let spacing = if peer.no_path {
        RESTART_AGAIN
    } else {
        RESTART_EVERY
    };
    Verdict::Alive {
        restart: peer.offerer
            && quiet >= RESTART_AFTER
            && since_restart.is_none_or(|t| t >= spacing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        silence: Duration::from_secs(4),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn connected(t0: Instant, offerer: bool) -> Facts {
        Facts {
            connected: true,
            offerer,
            all_open: true,
            created: t0,
            last_heard: t0,
            restart_at: None,
            first_restart: None,
            no_path: false,
            path_heard: None,
        }
    }

    fn connecting(t0: Instant, offerer: bool, all_open: bool) -> Facts {
        Facts {
            connected: false,
            all_open,
            ..connected(t0, offerer)
        }
    }

    #[test]
    fn a_connection_that_does_not_come_up_in_time_is_offered_again_only_by_the_offerer() {
        let t0 = Instant::now();
        let late = t0 + TIMEOUTS.connect + ms(1);
        assert_eq!(
            judge(&connecting(t0, true, false), late, TIMEOUTS),
            Verdict::ConnectTimeout { offer_again: true }
        );
        assert_eq!(
            judge(&connecting(t0, false, true), late, TIMEOUTS),
            Verdict::ConnectTimeout { offer_again: false }
        );
        assert_eq!(
            judge(
                &connecting(t0, true, false),
                t0 + TIMEOUTS.connect,
                TIMEOUTS
            ),
            Verdict::Wait
        );
    }

    #[test]
    fn unreliable_data_is_held_back_once_the_path_is_quiet_for_three_hearings() {
        let t0 = Instant::now();
        let peer = connected(t0, false);
        assert!(!holds_unreliable(&peer, t0 + HOLD_UNRELIABLE_AFTER - ms(1)));
        assert!(holds_unreliable(&peer, t0 + HOLD_UNRELIABLE_AFTER));
        // Below SCTP's first retransmission timeout (1 s at the least).
        assert!(HOLD_UNRELIABLE_AFTER < Duration::from_secs(1));
    }

    #[test]
    fn unreliable_data_flows_again_as_soon_as_the_peer_is_heard() {
        let t0 = Instant::now();
        let heard = Facts {
            last_heard: t0 + ms(2000),
            ..connected(t0, true)
        };
        assert!(holds_unreliable(&connected(t0, true), t0 + ms(2000)));
        assert!(!holds_unreliable(&heard, t0 + ms(2000)));
    }

    #[test]
    fn a_path_still_carrying_the_peers_packets_is_not_held_back() {
        let t0 = Instant::now();
        let congested = Facts {
            path_heard: Some(t0 + ms(1900)),
            ..connected(t0, false)
        };
        assert!(!holds_unreliable(&congested, t0 + ms(2000)));
        assert!(holds_unreliable(
            &congested,
            t0 + ms(1900) + HOLD_UNRELIABLE_AFTER
        ));
    }

    #[test]
    fn a_held_peer_is_probed_often_at_first_and_less_as_its_silence_goes_on() {
        let t0 = Instant::now();
        let peer = connected(t0, false);
        let period = |at| ping_period(&peer, t0 + at, ms(500));
        assert_eq!(period(ms(500)), ms(500));
        assert_eq!(period(HOLD_UNRELIABLE_AFTER), PROBE_MIN);
        assert_eq!(period(ms(2000)), ms(200));
        assert_eq!(period(ms(9000)), PROBE_MAX);
    }

    #[test]
    fn a_connecting_peer_is_not_held_back() {
        let t0 = Instant::now();
        assert!(!holds_unreliable(
            &connecting(t0, true, true),
            t0 + ms(5000)
        ));
    }

    #[test]
    fn while_connecting_with_our_channels_open_the_peer_is_told() {
        let t0 = Instant::now();
        assert_eq!(
            judge(&connecting(t0, false, true), t0 + ms(100), TIMEOUTS),
            Verdict::TellReady
        );
    }

    #[test]
    fn the_offerer_restarts_ice_after_a_short_silence_and_the_answerer_waits() {
        let t0 = Instant::now();
        let quiet = t0 + RESTART_AFTER;
        assert_eq!(
            judge(&connected(t0, true), quiet - ms(1), TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        assert_eq!(
            judge(&connected(t0, true), quiet, TIMEOUTS),
            Verdict::Alive { restart: true }
        );
        assert_eq!(
            judge(&connected(t0, false), quiet, TIMEOUTS),
            Verdict::Alive { restart: false }
        );
    }

    #[test]
    fn restarts_are_spaced_while_the_peer_stays_silent() {
        let t0 = Instant::now();
        let restarted = t0 + RESTART_AFTER;
        let peer = Facts {
            restart_at: Some(restarted),
            first_restart: Some(restarted),
            ..connected(t0, true)
        };
        assert_eq!(
            judge(&peer, restarted + RESTART_EVERY - ms(1), TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        assert_eq!(
            judge(&peer, restarted + RESTART_EVERY, TIMEOUTS),
            Verdict::Alive { restart: true }
        );
    }

    #[test]
    fn while_a_restart_found_no_path_the_offerer_restarts_sooner() {
        let t0 = Instant::now();
        let restarted = t0 + RESTART_AFTER;
        let cut = Facts {
            restart_at: Some(restarted),
            first_restart: Some(restarted),
            no_path: true,
            ..connected(t0, true)
        };
        let restarts =
            |peer: &Facts, at| judge(peer, at, TIMEOUTS) == Verdict::Alive { restart: true };
        assert!(!restarts(&cut, restarted + RESTART_AGAIN - ms(1)));
        assert!(restarts(&cut, restarted + RESTART_AGAIN));
        // A restart that found a working pair (a congested path, not a cut) keeps the
        // usual spacing, and the answerer never restarts.
        let found = Facts {
            no_path: false,
            ..cut
        };
        assert!(!restarts(&found, restarted + RESTART_AGAIN));
        assert!(restarts(&found, restarted + RESTART_EVERY));
        let answerer = Facts {
            offerer: false,
            ..cut
        };
        assert!(!restarts(&answerer, restarted + RESTART_AGAIN));
    }

    #[test]
    fn a_quiet_channel_over_a_path_that_carries_the_peers_packets_is_not_restarted() {
        let t0 = Instant::now();
        let congested = Facts {
            path_heard: Some(t0 + RESTART_AFTER),
            ..connected(t0, true)
        };
        assert_eq!(
            judge(&congested, t0 + RESTART_AFTER + ms(100), TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        // Once the packets stop too, the path is silent.
        assert_eq!(
            judge(&congested, t0 + RESTART_AFTER * 2, TIMEOUTS),
            Verdict::Alive { restart: true }
        );
    }

    #[test]
    fn a_peer_heard_only_in_its_transports_packets_goes_after_the_restart_window() {
        // Its data channels fell quiet at t0 (a page whose script hangs, while the
        // browser's SCTP still acknowledges): no restart, and the silence verdict waits
        // as long as it would behind restarts.
        let t0 = Instant::now();
        let given_up = t0 + RESTART_AFTER + RESTART_WINDOW;
        let hung = |now: Instant| Facts {
            path_heard: Some(now),
            ..connected(t0, true)
        };
        let late = t0 + TIMEOUTS.silence + ms(1);
        assert_eq!(
            judge(&hung(late), late, TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        assert_eq!(
            judge(&hung(given_up - ms(1)), given_up - ms(1), TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        assert_eq!(judge(&hung(given_up), given_up, TIMEOUTS), Verdict::Silent);
    }

    #[test]
    fn a_peer_whose_packets_stopped_with_its_messages_goes_after_the_silence_timeout() {
        // A frozen process: its last acknowledgements came just after its last ping.
        let t0 = Instant::now();
        let frozen = Facts {
            path_heard: Some(t0 + ms(300)),
            ..connected(t0, false)
        };
        assert_eq!(
            judge(&frozen, t0 + TIMEOUTS.silence + ms(1), TIMEOUTS),
            Verdict::Silent
        );
    }

    #[test]
    fn a_silent_peer_goes_after_the_silence_timeout() {
        let t0 = Instant::now();
        assert_eq!(
            judge(
                &connected(t0, false),
                t0 + TIMEOUTS.silence + ms(1),
                TIMEOUTS
            ),
            Verdict::Silent
        );
    }

    #[test]
    fn a_restart_under_way_holds_off_the_silence_timeout_for_its_window() {
        let t0 = Instant::now();
        let restarted = t0 + RESTART_AFTER;
        let peer = Facts {
            restart_at: Some(restarted),
            first_restart: Some(restarted),
            ..connected(t0, false)
        };
        assert_eq!(
            judge(&peer, t0 + TIMEOUTS.silence + ms(1), TIMEOUTS),
            Verdict::Alive { restart: false }
        );
        assert_eq!(
            judge(&peer, restarted + RESTART_WINDOW, TIMEOUTS),
            Verdict::Silent
        );
    }

    #[test]
    fn restarts_every_few_seconds_do_not_hold_off_the_silence_verdict_past_the_window() {
        let t0 = Instant::now();
        let first = t0 + RESTART_AFTER;
        // The offerer restarts again every RESTART_EVERY; the window counts from the first.
        let peer = Facts {
            restart_at: Some(first + RESTART_EVERY * 3),
            first_restart: Some(first),
            ..connected(t0, true)
        };
        assert_eq!(
            judge(&peer, first + RESTART_WINDOW, TIMEOUTS),
            Verdict::Silent
        );
    }
}
