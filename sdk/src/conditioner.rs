//! A simulated network path: latency, jitter, loss, duplication, reordering and a bandwidth
//! cap, applied to datagrams as a pure state machine. Time is an argument and the random
//! numbers come from a seeded generator, so a run is the same for the same seed. A session
//! puts what it receives through one ([`crate::SessionBuilder::simulated_network`]) so a
//! game can try its netcode under a bad network on one machine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use web_time::Instant;

/// How a simulated network path treats each datagram. The default is a perfect path.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct NetworkConditions {
    /// Added to every datagram's trip.
    pub latency: Duration,
    /// Each datagram's trip varies by up to this much either way (uniformly), so datagrams
    /// sent close together can arrive out of order.
    pub jitter: Duration,
    /// The fraction (0.0–1.0) of datagrams lost.
    pub loss: f64,
    /// The fraction (0.0–1.0) of datagrams that arrive twice.
    pub duplicate: f64,
    /// The fraction (0.0–1.0) of datagrams held back by one more `latency` (at least 1 ms),
    /// so that later ones overtake them.
    pub reorder: f64,
    /// The path's capacity in bytes a second (`None`: unlimited). Datagrams queue behind
    /// each other; what would wait more than a second is dropped, as a router's full
    /// buffer would.
    pub bandwidth: Option<u64>,
}

impl Default for NetworkConditions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            bandwidth: None,
        }
    }
}

impl NetworkConditions {
    /// A path with this latency and nothing else wrong with it.
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// Sets the jitter.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the loss fraction.
    pub fn with_loss(mut self, fraction: f64) -> Self {
        self.loss = fraction;
        self
    }

    /// Sets the duplication fraction.
    pub fn with_duplicate(mut self, fraction: f64) -> Self {
        self.duplicate = fraction;
        self
    }

    /// Sets the reordering fraction.
    pub fn with_reorder(mut self, fraction: f64) -> Self {
        self.reorder = fraction;
        self
    }

    /// Sets the bandwidth cap, bytes a second.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = Some(bytes_per_second);
        self
    }

    /// Whether every fraction is within 0.0–1.0 (and a bandwidth, if any, is not zero).
    pub fn is_valid(&self) -> bool {
        let fraction = |f: f64| (0.0..=1.0).contains(&f);
        fraction(self.loss)
            && fraction(self.duplicate)
            && fraction(self.reorder)
            && self.bandwidth != Some(0)
    }

    /// Whether the path changes anything.
    pub(crate) fn is_perfect(&self) -> bool {
        *self == Self::default()
    }
}

/// The longest a datagram waits behind others for the bandwidth cap before it is dropped.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(1);

/// Datagrams on their way through a simulated path.
#[derive(Debug)]
pub(crate) struct Conditioner<T> {
    conditions: NetworkConditions,
    /// The conditions change nothing (kept, as it is asked for every datagram).
    perfect: bool,
    rng: SplitMix64,
    /// Datagrams in flight, by release time (then arrival order).
    in_flight: BinaryHeap<Reverse<(Instant, u64, Slot<T>)>>,
    next_serial: u64,
    /// When the path is free again (bandwidth cap).
    busy_until: Option<Instant>,
}

/// An item in the heap: ordered by time and serial only.
#[derive(Debug)]
struct Slot<T>(T);

impl<T> PartialEq for Slot<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Slot<T> {}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Slot<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T: Clone> Conditioner<T> {
    /// A path with `conditions`, its randomness from `seed`.
    pub(crate) fn new(conditions: NetworkConditions, seed: u64) -> Self {
        Self {
            conditions,
            perfect: conditions.is_perfect(),
            rng: SplitMix64(seed),
            in_flight: BinaryHeap::new(),
            next_serial: 0,
            busy_until: None,
        }
    }

    /// The conditions in force.
    pub(crate) fn conditions(&self) -> NetworkConditions {
        self.conditions
    }

    /// Changes the conditions for datagrams from now on (those in flight keep theirs).
    pub(crate) fn set_conditions(&mut self, conditions: NetworkConditions) {
        self.conditions = conditions;
        self.perfect = conditions.is_perfect();
    }

    /// Whether the path changes anything (and nothing is in flight).
    pub(crate) fn is_idle_and_perfect(&self) -> bool {
        self.perfect && self.in_flight.is_empty()
    }

    /// A datagram of `size` bytes enters the path at `now`.
    pub(crate) fn push(&mut self, now: Instant, size: usize, item: T) {
        let c = self.conditions;
        if self.rng.chance(c.loss) {
            return;
        }
        let mut leave = now;
        if let Some(rate) = c.bandwidth {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            if start.saturating_duration_since(now) > MAX_QUEUE_DELAY {
                return;
            }
            let transmit = Duration::from_secs_f64(size as f64 / rate.max(1) as f64);
            self.busy_until = Some(start + transmit);
            leave = start + transmit;
        }
        let copies = if self.rng.chance(c.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut trip = c.latency;
            if !c.jitter.is_zero() {
                let spread = c.jitter.as_secs_f64() * (2.0 * self.rng.unit() - 1.0);
                trip = Duration::from_secs_f64((trip.as_secs_f64() + spread).max(0.0));
            }
            if self.rng.chance(c.reorder) {
                trip += c.latency.max(Duration::from_millis(1));
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            self.in_flight
                .push(Reverse((leave + trip, serial, Slot(item.clone()))));
        }
    }

    /// The next datagram whose trip is over at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        let Reverse((at, _, _)) = self.in_flight.peek()?;
        if *at > now {
            return None;
        }
        self.in_flight.pop().map(|Reverse((_, _, Slot(item)))| item)
    }

    /// When the next datagram arrives, if any is in flight.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }
}

/// A small seeded generator (SplitMix64): enough for simulated loss and delays, and the
/// same sequence for the same seed.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, fraction: f64) -> bool {
        fraction > 0.0 && self.unit() < fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes `n` datagrams 1 ms apart and collects (arrival offset, index) in arrival order.
    fn run(conditions: NetworkConditions, n: u32, size: usize) -> Vec<(Duration, u32)> {
        let t0 = Instant::now();
        let mut c = Conditioner::new(conditions, 42);
        let mut out = Vec::new();
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + Duration::from_secs(30) {
            if sent < n {
                c.push(now, size, sent);
                sent += 1;
            }
            while let Some(i) = c.pop_due(now) {
                out.push((now - t0, i));
            }
            if sent == n && c.next_release().is_none() {
                break;
            }
            now += ms(1);
        }
        out
    }

    #[test]
    fn a_perfect_path_delivers_everything_at_once_in_order() {
        let out = run(NetworkConditions::default(), 100, 100);
        let order: Vec<u32> = out.iter().map(|(_, i)| *i).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
        assert!(out.iter().all(|(at, i)| *at == ms(u64::from(*i))));
    }

    #[test]
    fn latency_delays_every_datagram_by_exactly_that_much() {
        let out = run(NetworkConditions::latency(ms(75)), 50, 100);
        assert_eq!(out.len(), 50);
        assert!(
            out.iter().all(|(at, i)| *at == ms(75 + u64::from(*i))),
            "{out:?}"
        );
    }

    #[test]
    fn jitter_spreads_arrivals_within_its_bounds_and_reorders() {
        let out = run(
            NetworkConditions::latency(ms(50)).with_jitter(ms(20)),
            500,
            100,
        );
        assert_eq!(out.len(), 500);
        for (at, i) in &out {
            let trip = *at - ms(u64::from(*i));
            assert!(trip >= ms(30) && trip <= ms(71), "{trip:?}");
        }
        let overtaken = out.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(overtaken > 0, "nothing arrived out of order");
    }

    #[test]
    fn loss_and_duplication_come_at_about_their_fractions() {
        let lossy = run(NetworkConditions::default().with_loss(0.1), 10_000, 100);
        assert!((8_700..=9_300).contains(&lossy.len()), "{}", lossy.len());
        let doubled = run(
            NetworkConditions::default().with_duplicate(0.1),
            10_000,
            100,
        );
        assert!(
            (10_700..=11_300).contains(&doubled.len()),
            "{}",
            doubled.len()
        );
    }

    #[test]
    fn reordered_datagrams_are_overtaken_by_later_ones() {
        let out = run(
            NetworkConditions::latency(ms(20)).with_reorder(0.2),
            1_000,
            100,
        );
        assert_eq!(out.len(), 1_000);
        let overtaken = out.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(overtaken > 100, "{overtaken}");
    }

    #[test]
    fn a_bandwidth_cap_paces_datagrams_and_drops_what_would_wait_over_a_second() {
        // 10,000 bytes a second, 1,000-byte datagrams sent every millisecond: the path
        // carries one every 100 ms and its queue holds a second's worth.
        let out = run(
            NetworkConditions::default().with_bandwidth(10_000),
            100,
            1_000,
        );
        let gaps: Vec<Duration> = out.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(
            gaps.iter().all(|g| *g >= ms(99) && *g <= ms(101)),
            "{gaps:?}"
        );
        assert!((10..=12).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let c = NetworkConditions::latency(ms(30))
            .with_jitter(ms(10))
            .with_loss(0.05)
            .with_duplicate(0.02)
            .with_reorder(0.05);
        assert_eq!(run(c, 2_000, 200), run(c, 2_000, 200));
    }

    #[test]
    fn fractions_outside_zero_to_one_are_invalid() {
        assert!(NetworkConditions::default().is_valid());
        assert!(!NetworkConditions::default().with_loss(1.5).is_valid());
        assert!(!NetworkConditions::default().with_reorder(-0.1).is_valid());
        assert!(!NetworkConditions::default().with_bandwidth(0).is_valid());
    }
}
