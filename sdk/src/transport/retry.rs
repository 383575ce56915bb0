//! Offering again to peers whose connection attempt timed out, as a component with its own
//! state: which peers, how many attempts failed, and when the next offer is due. Time is
//! an argument; the loop makes the offers.
//!
//! 10 % loss on a path can take a DTLS or SCTP handshake (whose retransmission timers start
//! at 1 s and double) past the connect timeout. The side that offered offers again after
//! 1 s, then 2, 4 and every 8 s, while the peer stays in the lobby; the answering side
//! needs nothing (a new offer makes a new connection).

use std::collections::HashMap;
use std::time::Duration;

use web_time::Instant;

use squadlink_protocol::PeerId;

/// The longest wait before offering again.
const MAX_WAIT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When to offer again; `None` while an attempt is under way.
    next_at: Option<Instant>,
    /// Attempts that failed so far.
    failed: u32,
}

/// The peers to offer to again.
#[derive(Debug, Default)]
pub(crate) struct Retries {
    entries: HashMap<PeerId, Entry>,
}

impl Retries {
    /// An attempt to connect to `peer` timed out at `now`: the next offer waits 1 s after
    /// the first failure, then 2, 4 and 8 s after each.
    pub(crate) fn failed(&mut self, peer: PeerId, now: Instant) -> Duration {
        let failed = self.entries.get(&peer).map_or(0, |e| e.failed) + 1;
        let wait = Duration::from_secs(1)
            .saturating_mul(1 << failed.saturating_sub(1).min(3))
            .min(MAX_WAIT);
        self.entries.insert(
            peer,
            Entry {
                next_at: Some(now + wait),
                failed,
            },
        );
        wait
    }

    /// The peers whose next offer is due at `now`, each once: they count as attempting
    /// until [`Retries::failed`] or [`Retries::forget`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, entry) in &mut self.entries {
            if entry.next_at.is_some_and(|t| t <= now) {
                entry.next_at = None;
                due.push(*peer);
            }
        }
        due
    }

    /// The peer connected, left or was dropped: no more offers to it.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        self.entries.remove(&peer);
    }

    /// When the next offer is due, if any is waiting.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.next_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId(7);
    const B: PeerId = PeerId(9);

    #[test]
    fn offers_again_after_one_then_two_four_and_every_eight_seconds() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = r.failed(A, now);
            waits.push(wait.as_secs());
            assert!(r.due(now + wait - Duration::from_millis(1)).is_empty());
            now += wait;
            assert_eq!(r.due(now), vec![A]);
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_due_offer_is_handed_out_once() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        r.failed(A, t0);
        assert_eq!(r.due(t0 + Duration::from_secs(5)), vec![A]);
        assert!(r.due(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_forgotten_peer_starts_again_from_one_second() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        r.failed(A, t0);
        r.failed(A, t0);
        r.forget(A);
        assert!(r.due(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(r.failed(A, t0), Duration::from_secs(1));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_waiting_offer() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        r.failed(A, t0);
        r.failed(A, t0); // A now waits 2 s
        r.failed(B, t0); // B waits 1 s
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(r.due(t0 + Duration::from_secs(1)), vec![B]);
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(2)));
    }
}
