//! How much of a peer's voice is lost: measured from RTP sequence numbers (across their
//! wrap) over the last few report intervals, for the stats and the report to the sender.

use std::collections::VecDeque;

/// Intervals the loss figure is taken over (5 s at one report a second).
const LOSS_INTERVALS: usize = 5;

/// Loss measured from RTP sequence numbers, over the last few report intervals.
#[derive(Debug)]
pub(crate) struct LossMeter {
    highest: Option<(u16, i64)>,
    base: Option<i64>,
    received: u64,
    /// (expected, lost) of recent intervals.
    window: VecDeque<(i64, i64)>,
    /// Loss fraction over the window.
    smoothed: f64,
}

impl Default for LossMeter {
    fn default() -> Self {
        Self {
            highest: None,
            base: None,
            received: 0,
            // Allocated once: the window never grows past its intervals.
            window: VecDeque::with_capacity(LOSS_INTERVALS + 1),
            smoothed: 0.0,
        }
    }
}

impl LossMeter {
    /// A packet with RTP sequence number `seq` arrived.
    pub(crate) fn on_packet(&mut self, seq: u16) {
        let ext = match self.highest {
            None => i64::from(seq),
            Some((last, ext)) => ext + i64::from(seq.wrapping_sub(last) as i16),
        };
        if self.highest.is_none_or(|(_, e)| ext > e) {
            self.highest = Some((seq, ext));
        }
        if self.base.is_none() {
            self.base = Some(ext - 1);
        }
        self.received += 1;
    }

    /// Closes an interval: the percentage lost in it, if packets were expected.
    pub(crate) fn close_interval(&mut self) -> Option<u8> {
        let (_, highest) = self.highest?;
        let base = self.base?;
        let expected = highest - base;
        if expected <= 0 {
            return None;
        }
        let lost = (expected - i64::try_from(self.received).unwrap_or(i64::MAX)).max(0);
        self.window.push_back((expected, lost));
        while self.window.len() > LOSS_INTERVALS {
            self.window.pop_front();
        }
        let (e, l) = self
            .window
            .iter()
            .fold((0i64, 0i64), |(e, l), (we, wl)| (e + we, l + wl));
        self.smoothed = l as f64 / e.max(1) as f64;
        self.base = Some(highest);
        self.received = 0;
        Some(
            (lost as f64 / expected as f64 * 100.0)
                .round()
                .clamp(0.0, 100.0) as u8,
        )
    }

    /// The fraction lost over the window (0 to 1).
    pub(crate) fn fraction(&self) -> f64 {
        self.smoothed
    }

    /// The loss to tell the sender, percent: the window's figure, at least 1 when any
    /// packet was lost.
    pub(crate) fn report_percent(&self) -> u8 {
        let p = (self.smoothed * 100.0).round().clamp(0.0, 100.0) as u8;
        if self.smoothed > 0.0 { p.max(1) } else { p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_meter_counts_gaps_across_wrap() {
        let mut m = LossMeter::default();
        for s in [65_530u16, 65_531, 65_533, 65_534, 65_535, 0, 2, 3] {
            m.on_packet(s);
        }
        // 65530..=3 is 10 packets, 8 arrived.
        assert_eq!(m.close_interval(), Some(20));
        assert_eq!(m.close_interval(), None);
        m.on_packet(4);
        assert_eq!(m.close_interval(), Some(0));
        // Over the window: 2 lost of 11 expected.
        assert_eq!(m.report_percent(), 18);
    }
}
