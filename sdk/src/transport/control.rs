//! The hidden control channel's protocol: pings, pongs, voice-loss reports and goodbyes,
//! and what the pings measure (round trip, loss). `Pinger` is a component with its own
//! state; time is an argument. Frames: a 1-byte tag, then for PING and PONG a `u32`
//! sequence number and a `u64` stamp (big-endian; a pong echoes its ping's), for
//! VOICE_LOSS one byte, 0–100 (%), for BYE nothing.

use std::collections::VecDeque;
use std::time::Duration;

use web_time::Instant;

use bytes::{BufMut, BytesMut};

/// Ping period on the control channel. Both ends ping, so each hears from the other
/// twice as often (its own pongs and the peer's pings): four times a second, the rate the
/// liveness rules count on (`liveness.rs`). At four pings a second each, pings were the
/// most of an idle mesh's CPU (bench_vs_matchbox: 0.55 % of a core per player against
/// 0.34–0.44 % at two).
pub(crate) const PING_EVERY: Duration = Duration::from_millis(500);
/// A ping is due this much before its period is over (the round that sends it comes
/// every 250 ms, give or take the timer).
const PING_SLACK: Duration = Duration::from_millis(20);
/// Pings remembered for the loss figure (10 s).
const LOSS_WINDOW: usize = 20;
const PING: u8 = 1;
const PONG: u8 = 2;
/// "This much of your audio is lost here".
const VOICE_LOSS: u8 = 3;
/// "I am closing: close your data channels" (see [`Control::Bye`]).
const BYE: u8 = 4;

/// A control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Answer with a pong carrying the same sequence number and stamp.
    Ping { seq: u32, stamp: u64 },
    /// The answer to our ping `seq`.
    Pong { seq: u32 },
    /// The peer loses this much (0–100 %) of our audio.
    VoiceLoss(u8),
    /// The peer's session is ending: close our data channels (a stream reset each), so
    /// that both ends see them close rather than fail when the connection goes.
    Bye,
}

/// Reads a control frame. Anything else (another tag, too short) is `None`; longer frames
/// are read up to what their tag needs.
pub(crate) fn parse(frame: &[u8]) -> Option<Control> {
    let (&tag, rest) = frame.split_first()?;
    if tag == BYE {
        return Some(Control::Bye);
    }
    if tag == VOICE_LOSS {
        return rest.first().map(|p| Control::VoiceLoss((*p).min(100)));
    }
    let (seq, rest) = rest.split_first_chunk::<4>()?;
    let stamp = rest.first_chunk::<8>()?;
    let seq = u32::from_be_bytes(*seq);
    match tag {
        PING => Some(Control::Ping {
            seq,
            stamp: u64::from_be_bytes(*stamp),
        }),
        PONG => Some(Control::Pong { seq }),
        _ => None,
    }
}

/// The answer to a ping.
pub(crate) fn pong(seq: u32, stamp: u64) -> BytesMut {
    frame(PONG, seq, stamp)
}

/// A voice-loss report: `percent` of the peer's audio is lost here.
pub(crate) fn voice_loss(percent: u8) -> BytesMut {
    let mut out = BytesMut::with_capacity(2);
    out.put_u8(VOICE_LOSS);
    out.put_u8(percent.min(100));
    out
}

/// A goodbye: our session is ending, the peer closes its data channels.
pub(crate) fn bye() -> BytesMut {
    BytesMut::from(&[BYE][..])
}

fn frame(tag: u8, seq: u32, stamp: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(13);
    out.put_u8(tag);
    out.put_u32(seq);
    out.put_u64(stamp);
    out
}

/// Our pings to one peer and what their pongs tell: the smoothed round trip and the share
/// of pings never answered.
#[derive(Debug, Default)]
pub(crate) struct Pinger {
    seq: u32,
    /// The latest pings: sequence number, when sent, answered.
    window: VecDeque<(u32, Instant, bool)>,
    srtt: Option<Duration>,
    last: Option<Duration>,
}

impl Pinger {
    /// Whether a ping is due at `now`, one `period` after the last (normally
    /// [`PING_EVERY`]; the round that sends it may come a little early).
    pub(crate) fn due(&self, now: Instant, period: Duration) -> bool {
        let slack = PING_SLACK.min(period / 4);
        self.window
            .back()
            .is_none_or(|(_, sent, _)| now.saturating_duration_since(*sent) + slack >= period)
    }

    /// A ping to send now; `epoch` is the session's start (the stamp counts from it).
    pub(crate) fn ping(&mut self, now: Instant, epoch: Instant) -> BytesMut {
        self.seq = self.seq.wrapping_add(1);
        self.window.push_back((self.seq, now, false));
        while self.window.len() > LOSS_WINDOW {
            self.window.pop_front();
        }
        let stamp =
            u64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX);
        frame(PING, self.seq, stamp)
    }

    /// The pong for ping `seq` came at `now`: the round trip it measured, unless it
    /// answers no ping of the window or one already answered.
    pub(crate) fn on_pong(&mut self, seq: u32, now: Instant) -> Option<Duration> {
        let entry = self
            .window
            .iter_mut()
            .find(|(s, _, answered)| *s == seq && !answered)?;
        entry.2 = true;
        let sample = now.saturating_duration_since(entry.1);
        self.last = Some(sample);
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        Some(sample)
    }

    /// The smoothed round trip (7/8 of the last estimate plus 1/8 of the newest sample).
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The newest round-trip sample.
    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.last
    }

    /// The share of the window's pings never answered, counting only pings old enough to
    /// have been (three round trips and 100 ms); `None` before any is.
    pub(crate) fn loss(&self, now: Instant) -> Option<f64> {
        let grace =
            self.srtt.unwrap_or(Duration::from_millis(100)) * 3 + Duration::from_millis(100);
        let settled: Vec<bool> = self
            .window
            .iter()
            .filter(|(_, sent, _)| now.saturating_duration_since(*sent) > grace)
            .map(|(_, _, answered)| *answered)
            .collect();
        if settled.is_empty() {
            return None;
        }
        let lost = settled.iter().filter(|a| !**a).count();
        Some(lost as f64 / settled.len() as f64)
    }

    /// Forgets the pings sent so far (those sent while connecting are not loss).
    pub(crate) fn forget_window(&mut self) {
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_frame_reads_back_as_itself_and_garbage_reads_as_nothing() {
        let t0 = Instant::now();
        let mut p = Pinger::default();
        let ping = p.ping(t0 + ms(5), t0);
        assert_eq!(
            parse(&ping),
            Some(Control::Ping {
                seq: 1,
                stamp: 5_000
            })
        );
        assert_eq!(parse(&pong(1, 5_000)), Some(Control::Pong { seq: 1 }));
        assert_eq!(parse(&voice_loss(12)), Some(Control::VoiceLoss(12)));
        assert_eq!(parse(&voice_loss(250)), Some(Control::VoiceLoss(100)));
        assert_eq!(parse(&bye()), Some(Control::Bye));
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[PING, 0, 0]), None);
        assert_eq!(parse(&[9; 13]), None);
    }

    #[test]
    fn the_round_trip_is_smoothed_over_pongs() {
        let t0 = Instant::now();
        let mut p = Pinger::default();
        p.ping(t0, t0);
        assert_eq!(p.on_pong(1, t0 + ms(80)), Some(ms(80)));
        assert_eq!(p.rtt(), Some(ms(80)));
        p.ping(t0 + ms(250), t0);
        assert_eq!(p.on_pong(2, t0 + ms(250) + ms(160)), Some(ms(160)));
        assert_eq!(p.rtt(), Some(ms(90)));
        assert_eq!(p.last_rtt(), Some(ms(160)));
    }

    #[test]
    fn a_pong_answering_no_ping_or_answered_twice_is_ignored() {
        let t0 = Instant::now();
        let mut p = Pinger::default();
        p.ping(t0, t0);
        assert_eq!(p.on_pong(7, t0 + ms(10)), None);
        assert!(p.on_pong(1, t0 + ms(10)).is_some());
        assert_eq!(p.on_pong(1, t0 + ms(20)), None);
        assert_eq!(p.rtt(), Some(ms(10)));
    }

    #[test]
    fn loss_counts_only_pings_old_enough_to_have_been_answered() {
        let t0 = Instant::now();
        let mut p = Pinger::default();
        // Ten pings 250 ms apart; every other one answered 20 ms later.
        for i in 0..10u64 {
            let sent = t0 + ms(250 * i);
            p.ping(sent, t0);
            if i % 2 == 0 {
                p.on_pong(i as u32 + 1, sent + ms(20));
            }
        }
        assert_eq!(p.loss(t0), None);
        // At 2.3 s the grace is 160 ms (three 20 ms round trips and 100 ms): the last ping,
        // sent at 2.25 s, is not settled yet; of the nine before it, four were not answered.
        let loss = p.loss(t0 + ms(2_300)).unwrap();
        assert!((loss - 4.0 / 9.0).abs() < 1e-9, "{loss}");
        let loss = p.loss(t0 + ms(2_500)).unwrap();
        assert!((loss - 0.5).abs() < 1e-9, "{loss}");
        p.forget_window();
        assert_eq!(p.loss(t0 + ms(10_000)), None);
    }

    #[test]
    fn the_window_keeps_the_latest_forty_pings() {
        let t0 = Instant::now();
        let mut p = Pinger::default();
        for i in 0..100u64 {
            p.ping(t0 + ms(i), t0);
        }
        // Ping 1 has left the window: its pong answers nothing.
        assert_eq!(p.on_pong(1, t0 + ms(200)), None);
        assert!(p.on_pong(100, t0 + ms(200)).is_some());
    }
}
