//! Replicon's statistics from the session's: a link's round trip, loss and byte rates as
//! replicon's `ClientStats`, and a member's mean round trip to the mesh (what it reports
//! for the line of succession). Pure arithmetic on `squadlink::PeerStats`; the Bevy system
//! that applies it lives in `link`.

use std::time::Duration;

use bevy_replicon::prelude::ClientStats;

/// Shortest interval over which byte rates are measured, seconds (shorter would be noise).
const RATE_WINDOW_SECS: f64 = 0.5;

/// One link's byte counters at the start of the current rate window, and the last rates.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rate {
    at: Duration,
    sent: u64,
    received: u64,
    sent_bps: f64,
    received_bps: f64,
}

impl Rate {
    /// Replicon's view of the link `s` describes at `now`, the byte rates over the last
    /// window of at least half a second.
    pub(super) fn read(&mut self, s: &squadlink::PeerStats, now: Duration) -> ClientStats {
        let dt = now.saturating_sub(self.at).as_secs_f64();
        if dt >= RATE_WINDOW_SECS {
            // u64 → f64: byte counts far below 2^53.
            self.sent_bps = s.bytes_sent.saturating_sub(self.sent) as f64 / dt;
            self.received_bps = s.bytes_received.saturating_sub(self.received) as f64 / dt;
            self.at = now;
            self.sent = s.bytes_sent;
            self.received = s.bytes_received;
        }
        ClientStats {
            rtt: s.rtt.map_or(0.0, |r| r.as_secs_f64()),
            packet_loss: s.loss * 100.0,
            sent_bps: self.sent_bps,
            received_bps: self.received_bps,
        }
    }
}

/// Mean round trip to these peers, milliseconds (`u32::MAX`: none measured).
pub(super) fn mesh_rtt_ms<'a>(peers: impl Iterator<Item = &'a squadlink::PeerStats>) -> u32 {
    let rtts: Vec<u128> = peers
        .filter_map(|s| s.rtt)
        .map(|rtt| rtt.as_millis())
        .collect();
    let Some(n) = u128::try_from(rtts.len()).ok().filter(|n| *n > 0) else {
        return u32::MAX;
    };
    u32::try_from(rtts.iter().sum::<u128>() / n).unwrap_or(u32::MAX)
}
