//! A per-peer adaptive jitter buffer for 20 ms Opus frames, driven by a caller's clock.
//!
//! Packets go in with their arrival time; the playout side asks for the next frame when it
//! needs audio ([`JitterBuffer::next`]), one render block (the device period) at a time.
//!
//! The target is how late a packet may come and still play: three times the measured
//! jitter plus a margin, one more frame when packets are being lost (so FEC has a next
//! packet to recover from), more after late packets, within the configured bounds. It is
//! chosen at the start of each talk spurt (during silence). A spurt starts on a block
//! boundary: a frame is needed when the block holding its first sample is rendered, so
//! starting mid-block would add delay without adding any time to wait for late packets.
//! Late packets are dropped and counted.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{FRAME, SAMPLE_RATE, samples_duration};

/// Frames of concealment played after the last packet before the buffer goes idle.
const CONCEAL_TAIL: u32 = 3;
/// What a late packet adds to the target of the spurts after it (decaying by a quarter at
/// each spurt): one 5 ms render block.
const LATE_STEP: Duration = Duration::from_millis(5);
/// Packets held at most (a second of audio).
pub(crate) const CAPACITY: usize = 50;
/// Discarded payloads kept for the caller to free (more than one call ever discards).
const SPENT_CAPACITY: usize = CAPACITY + 8;

/// The jitter buffer's bounds.
///
/// The delay a packet waits before it plays is its target (the time it may come late)
/// rounded up to the next render block: on average half a block (2.5 ms at 5 ms device
/// periods) more than the target. Each frame then plays for 20 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// The least target a talk spurt starts with.
    pub min_delay: Duration,
    /// The most delay the buffer ever adds.
    pub max_delay: Duration,
    /// Safety margin above three times the measured jitter.
    pub margin: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(200),
            margin: Duration::from_micros(1500),
        }
    }
}

/// What the playout side does next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Decode this packet.
    Decode(Bytes),
    /// The frame is missing but the next packet is here: decode its FEC data.
    Fec(Bytes),
    /// Missing: conceal (Opus PLC), faded by this gain at the frame's start and end.
    Conceal { fade_from: f32, fade_to: f32 },
    /// Play this many samples of silence first (the start of a talk spurt).
    Silence(usize),
    /// Nothing to play.
    Idle,
}

/// A change of delay made in a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adapt {
    /// Nothing changed.
    None,
    /// Play this many samples of silence before the next frame.
    Insert(usize),
    /// The next frame was dropped.
    Skipped,
}

/// Counters kept by the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets that came after their playout time (dropped).
    pub late: u64,
    /// Frames missing at playout time that were not a pause (lost or late).
    pub lost: u64,
    /// Frames rebuilt from the next packet's FEC data (where that packet carries none,
    /// Opus conceals instead).
    pub fec_recovered: u64,
    /// Frames concealed by Opus PLC (losses and talk-spurt tails).
    pub concealed: u64,
    /// Frames dropped to bring the delay back down.
    pub dropped_for_delay: u64,
    /// Frames decoded from their own packet.
    pub decoded: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Idle,
    Playing { next: i64, misses: u32 },
}

struct Entry {
    payload: Bytes,
    arrival: Instant,
    /// The first packet after a pause: the gap before it is silence, not loss.
    marker: bool,
}

/// The buffered packets by extended timestamp, oldest first: a sorted vector allocated
/// once (at most [`CAPACITY`] + 1 entries), so buffering a packet never allocates and
/// playing one never frees; a few dozen entries shift faster than a tree's nodes are made.
struct Frames {
    entries: Vec<(i64, Entry)>,
}

impl Frames {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: i64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |(k, _)| *k)
    }

    /// Adds `entry` at `key` unless one is there (a duplicate packet: then it is returned).
    fn insert_absent(&mut self, key: i64, entry: Entry) -> Option<Entry> {
        match self.find(key) {
            Err(at) => {
                self.entries.insert(at, (key, entry));
                None
            }
            Ok(_) => Some(entry),
        }
    }

    fn pop_first(&mut self) -> Option<(i64, Entry)> {
        (!self.entries.is_empty()).then(|| self.entries.remove(0))
    }

    fn first_key_value(&self) -> Option<(&i64, &Entry)> {
        self.entries.first().map(|(k, e)| (k, e))
    }

    fn last_key_value(&self) -> Option<(&i64, &Entry)> {
        self.entries.last().map(|(k, e)| (k, e))
    }

    fn get(&self, key: &i64) -> Option<&Entry> {
        let at = self.find(*key).ok()?;
        self.entries.get(at).map(|(_, e)| e)
    }

    fn remove(&mut self, key: &i64) -> Option<Entry> {
        let at = self.find(*key).ok()?;
        Some(self.entries.remove(at).1)
    }
}

/// The jitter buffer of one remote voice.
pub(crate) struct JitterBuffer {
    config: JitterConfig,
    frames: Frames,
    /// Last RTP timestamp seen and its extended (wrap-free) value.
    last_ts: Option<(u32, i64)>,
    /// Previous packet's arrival and extended timestamp (jitter estimate).
    prev: Option<(Instant, i64)>,
    /// RFC 3550 interarrival jitter, seconds.
    jitter: f64,
    /// Extra delay learned from late packets; shrinks at each talk spurt.
    late_penalty: Duration,
    /// Recent loss fraction reported by the caller (decides the FEC look-ahead frame).
    loss: f64,
    state: State,
    target: Duration,
    /// Smoothed time packets spend in the buffer before playout, seconds.
    delay: f64,
    pub(crate) stats: JitterStats,
    /// Payloads discarded (late, duplicate, dropped, cleared), for the caller to free off
    /// the audio path ([`JitterBuffer::take_spent`]).
    spent: Vec<Bytes>,
}

impl JitterBuffer {
    pub(crate) fn new(config: JitterConfig) -> Self {
        Self {
            config,
            frames: Frames::with_capacity(CAPACITY + 1),
            last_ts: None,
            prev: None,
            jitter: 0.0,
            late_penalty: Duration::ZERO,
            loss: 0.0,
            state: State::Idle,
            target: config.min_delay,
            delay: 0.0,
            stats: JitterStats::default(),
            spent: Vec::with_capacity(SPENT_CAPACITY),
        }
    }

    /// Keeps a discarded payload for [`JitterBuffer::take_spent`] (freed here only if the
    /// caller never takes them).
    fn discard(&mut self, payload: Bytes) {
        if self.spent.len() < self.spent.capacity() {
            self.spent.push(payload);
        }
    }

    /// The payloads the buffer let go of since the last call: whoever frees them pays for
    /// it (the renderer hands them off its real-time path).
    pub(crate) fn take_spent(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.spent.drain(..)
    }

    /// Packets held now (at most [`CAPACITY`]).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn held(&self) -> usize {
        self.frames.len()
    }

    /// The measured interarrival jitter.
    pub(crate) fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter)
    }

    /// The delay the current (or last) talk spurt started with.
    pub(crate) fn target(&self) -> Duration {
        self.target
    }

    /// Smoothed time a packet waits in the buffer before it is played.
    pub(crate) fn delay(&self) -> Duration {
        Duration::from_secs_f64(self.delay.max(0.0))
    }

    /// The recent loss fraction (0–1); at more than 0.5 % talk spurts start one frame later.
    pub(crate) fn set_loss(&mut self, loss: f64) {
        self.loss = loss.clamp(0.0, 1.0);
    }

    /// Forgets all packets and goes idle (a muted peer).
    pub(crate) fn clear(&mut self) {
        while let Some((_, entry)) = self.frames.pop_first() {
            self.discard(entry.payload);
        }
        self.state = State::Idle;
    }

    fn extend(&mut self, ts: u32) -> i64 {
        match self.last_ts {
            None => {
                self.last_ts = Some((ts, i64::from(ts)));
                i64::from(ts)
            }
            Some((last, ext)) => {
                let delta = i64::from(ts.wrapping_sub(last) as i32);
                let value = ext + delta;
                if delta > 0 {
                    self.last_ts = Some((ts, value));
                }
                value
            }
        }
    }

    /// A packet arrived (`marker`: the first after a pause in speech).
    pub(crate) fn insert(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        arrival: Instant,
    ) {
        let ext = self.extend(timestamp);
        if let Some((prev_arrival, prev_ext)) = self.prev
            && ext > prev_ext
        {
            let transit = signed_secs(arrival, prev_arrival)
                - (ext - prev_ext) as f64 / f64::from(SAMPLE_RATE);
            self.jitter += (transit.abs() - self.jitter) / 16.0;
        }
        if self.prev.is_none_or(|(_, e)| ext > e) {
            self.prev = Some((arrival, ext));
        }
        if let State::Playing { next, .. } = self.state
            && ext < next
        {
            self.stats.late += 1;
            // It missed its slot: give later spurts one more render block (5 ms) to wait in.
            self.late_penalty = (self.late_penalty + LATE_STEP).min(self.config.max_delay);
            self.discard(payload);
            return;
        }
        let duplicate = self.frames.insert_absent(
            ext,
            Entry {
                payload,
                arrival,
                marker,
            },
        );
        if let Some(entry) = duplicate {
            self.discard(entry.payload);
        }
        while self.frames.len() > CAPACITY {
            if let Some((_, entry)) = self.frames.pop_first() {
                self.discard(entry.payload);
            }
        }
    }

    /// The delay the buffer would choose now.
    fn desired_target(&self) -> Duration {
        let mut target = Duration::from_secs_f64(3.0 * self.jitter) + self.config.margin;
        target += self.late_penalty;
        if self.loss > 0.005 {
            // The next packet must be here when a frame is found missing.
            target += frame_duration();
        }
        // Not `clamp`: a configuration with min > max must not panic (max wins).
        target.max(self.config.min_delay).min(self.config.max_delay)
    }

    fn choose_target(&mut self) -> Duration {
        let target = self.desired_target();
        self.late_penalty = self.late_penalty * 3 / 4;
        target
    }

    /// Called after a quiet frame (a pause between words) was decoded: the moment to change
    /// the delay mid-spurt without being heard. Returns samples of silence to insert (the
    /// delay grows, by whole render blocks of `block` samples), or skips the next frame (it
    /// shrinks by a frame).
    pub(crate) fn adapt_in_pause(&mut self, block: usize) -> Adapt {
        let State::Playing { next, misses } = self.state else {
            return Adapt::None;
        };
        let want = self.desired_target();
        if want > self.target + Duration::from_millis(5) {
            let grow = want - self.target;
            let samples = whole_blocks(grow, block);
            self.target += samples_duration(samples);
            return Adapt::Insert(samples);
        }
        // What is buffered beyond the next frame (a pre-roll burst, a late clump) is delay
        // too: shed a frame whenever that is a frame more than needed.
        let buffered = self
            .frames
            .last_key_value()
            .map_or(Duration::ZERO, |(&newest, _)| {
                Duration::from_secs_f64((newest - next).max(0) as f64 / f64::from(SAMPLE_RATE))
            });
        let excess = self.target.max(buffered);
        if want + frame_duration() <= excess
            && let Some(entry) = self.frames.remove(&next)
        {
            self.discard(entry.payload);
            self.stats.dropped_for_delay += 1;
            self.target = self.target.saturating_sub(frame_duration());
            self.state = State::Playing {
                next: next + i64::try_from(FRAME).unwrap_or(960),
                misses,
            };
            return Adapt::Skipped;
        }
        Adapt::None
    }

    /// What to play next, at `now`, for a render of `block` samples in which `queued` samples
    /// are already due to play before whatever this returns.
    pub(crate) fn next(&mut self, now: Instant, queued: usize, block: usize) -> Next {
        let frame = i64::try_from(FRAME).unwrap_or(960);
        match self.state {
            State::Idle => {
                let Some((first, arrival)) =
                    self.frames.first_key_value().map(|(k, e)| (*k, e.arrival))
                else {
                    return Next::Idle;
                };
                self.target = self.choose_target();
                self.state = State::Playing {
                    next: first,
                    misses: 0,
                };
                // Start on the first block boundary that gives the packet `target` to come
                // late in: frames are needed when the block holding their start is rendered.
                let waited = now.saturating_duration_since(arrival);
                let wait = self.target.saturating_sub(waited);
                let samples = whole_blocks(wait, block).saturating_sub(queued);
                if samples > 0 {
                    Next::Silence(samples)
                } else {
                    self.next(now, queued, block)
                }
            }
            State::Playing { mut next, misses } => {
                // Far behind the newest packet (a burst, or a clock running slow): skip ahead.
                let limit = self.target + Duration::from_millis(60);
                while let Some((&newest, _)) = self.frames.last_key_value() {
                    let ahead = Duration::from_secs_f64(
                        (newest - next).max(0) as f64 / f64::from(SAMPLE_RATE),
                    );
                    if ahead <= limit {
                        break;
                    }
                    let Some(entry) = self.frames.remove(&next) else {
                        break;
                    };
                    self.discard(entry.payload);
                    self.stats.dropped_for_delay += 1;
                    next += frame;
                }
                // Anything older than the playout point is of no use any more.
                while self
                    .frames
                    .first_key_value()
                    .is_some_and(|(&k, _)| k < next)
                {
                    if let Some((_, entry)) = self.frames.pop_first() {
                        self.discard(entry.payload);
                    }
                }
                if let Some(entry) = self.frames.remove(&next) {
                    let waited = now.saturating_duration_since(entry.arrival).as_secs_f64();
                    self.delay += (waited - self.delay) / 16.0;
                    self.stats.decoded += 1;
                    // The frames concealed just before were lost, not a pause.
                    self.stats.lost += u64::from(misses);
                    self.state = State::Playing {
                        next: next + frame,
                        misses: 0,
                    };
                    return Next::Decode(entry.payload);
                }
                if let Some(entry) = self.frames.get(&(next + frame)) {
                    self.stats.fec_recovered += 1;
                    self.stats.lost += 1 + u64::from(misses);
                    self.state = State::Playing {
                        next: next + frame,
                        misses: 0,
                    };
                    return Next::Fec(entry.payload.clone());
                }
                // A new talk spurt is waiting beyond a gap: the gap was a pause, so start the
                // spurt afresh (with a fresh target) instead of concealing the pause.
                if self.frames.first_key_value().is_some_and(|(_, e)| e.marker) {
                    self.state = State::Idle;
                    return self.next(now, queued, block);
                }
                let more_coming = !self.frames.is_empty();
                if !more_coming && misses >= CONCEAL_TAIL {
                    self.state = State::Idle;
                    return Next::Idle;
                }
                self.stats.concealed += 1;
                let misses = misses + 1;
                self.state = State::Playing {
                    next: next + frame,
                    misses,
                };
                if more_coming {
                    Next::Conceal {
                        fade_from: 1.0,
                        fade_to: 1.0,
                    }
                } else {
                    let step = 1.0 / CONCEAL_TAIL as f32;
                    Next::Conceal {
                        fade_from: 1.0 - step * (misses - 1) as f32,
                        fade_to: 1.0 - step * misses as f32,
                    }
                }
            }
        }
    }
}

fn frame_duration() -> Duration {
    Duration::from_millis(20)
}

/// The samples of `time`, rounded up to whole blocks of `block` samples (to a sample for a
/// block of 0).
fn whole_blocks(time: Duration, block: usize) -> usize {
    let n = (time.as_secs_f64() * f64::from(SAMPLE_RATE)).ceil() as usize;
    if block == 0 {
        n
    } else {
        n.div_ceil(block) * block
    }
}

fn signed_secs(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64()
    } else {
        -b.duration_since(a).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u32 = 960;
    /// A 5 ms render block.
    const BLOCK: usize = 240;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn payload(i: u32) -> Bytes {
        Bytes::from(i.to_be_bytes().to_vec())
    }

    fn decoded(n: &Next) -> Option<u32> {
        match n {
            Next::Decode(b) => Some(u32::from_be_bytes(b[..4].try_into().unwrap())),
            _ => None,
        }
    }

    /// Packets every 20 ms with the given extra delays; play every 20 ms from `start`.
    fn run(delays: &[u64], drop: &[usize]) -> (Vec<Next>, JitterBuffer) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arrivals: Vec<(Instant, u32)> = delays
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(i, d)| (t0 + ms(20 * i as u64 + d), i as u32))
            .collect();
        arrivals.sort();
        let mut out = Vec::new();
        let mut a = 0;
        let mut clock = t0;
        while clock < t0 + ms(20 * delays.len() as u64 + 200) {
            while a < arrivals.len() && arrivals[a].0 <= clock {
                let (at, i) = arrivals[a];
                jb.insert(1000 + i * F, false, payload(i), at);
                a += 1;
            }
            let n = jb.next(clock, 0, BLOCK);
            let silence = matches!(n, Next::Silence(_));
            out.push(n);
            if !silence {
                clock += ms(20);
            }
        }
        (out, jb)
    }

    #[test]
    fn steady_stream_plays_in_order_with_small_delay() {
        let (out, jb) = run(&[0; 20], &[]);
        let played: Vec<u32> = out.iter().filter_map(decoded).collect();
        assert_eq!(played, (0..20).collect::<Vec<_>>());
        assert_eq!(jb.stats.late, 0);
        assert!(jb.target() <= ms(10), "target {:?}", jb.target());
        // The tail is concealed for three frames, then the buffer is idle.
        let tail: Vec<&Next> = out
            .iter()
            .skip_while(|n| !matches!(n, Next::Conceal { .. }))
            .collect();
        assert!(matches!(tail[0], Next::Conceal { fade_from, .. } if *fade_from == 1.0));
        assert!(matches!(tail[2], Next::Conceal { fade_to, .. } if *fade_to == 0.0));
        assert_eq!(tail[3], &Next::Idle);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        // Packet 5 arrives after packet 6 (jitter of 15 ms), within the buffer's delay once
        // the jitter has been learned.
        let mut delays = vec![0u64; 30];
        for (i, d) in delays.iter_mut().enumerate() {
            *d = if i % 2 == 0 { 12 } else { 0 };
        }
        let (out, jb) = run(&delays, &[]);
        let played: Vec<u32> = out.iter().filter_map(decoded).collect();
        let mut sorted = played.clone();
        sorted.sort();
        assert_eq!(played, sorted, "played out of order");
        assert!(jb.jitter() > ms(4), "jitter {:?}", jb.jitter());
    }

    #[test]
    fn late_packets_are_dropped_and_raise_the_next_target() {
        let mut delays = vec![0u64; 20];
        delays[8] = 70; // three frames late
        let (out, mut jb) = run(&delays, &[]);
        assert_eq!(jb.stats.late, 1);
        let played: Vec<u32> = out.iter().filter_map(decoded).collect();
        assert!(!played.contains(&8));
        let before = jb.target();
        let t = Instant::now();
        jb.insert(1000 + 100 * F, true, payload(100), t);
        let _ = jb.next(t, 0, BLOCK);
        assert!(jb.target() > before, "{:?} -> {:?}", before, jb.target());
    }

    #[test]
    fn a_lost_frame_is_rebuilt_from_the_next_packets_fec() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.set_loss(0.05);
        jb.insert(0, true, payload(0), t0);
        // packet 1 lost; 2 arrives in time thanks to the FEC look-ahead frame.
        jb.insert(2 * F, false, payload(2), t0 + ms(40));
        let mut clock = t0;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let n = jb.next(clock, 0, BLOCK);
            if !matches!(n, Next::Silence(_)) {
                clock += ms(20);
            }
            seen.push(n);
        }
        assert!(matches!(seen[0], Next::Silence(s) if s >= 960), "{seen:?}");
        assert_eq!(decoded(&seen[1]), Some(0));
        assert_eq!(seen[2], Next::Fec(payload(2)));
        assert_eq!(decoded(&seen[3]), Some(2));
        assert_eq!(jb.stats.fec_recovered, 1);
    }

    #[test]
    fn loss_without_a_next_packet_is_concealed() {
        let (out, jb) = run(&[0; 10], &[4, 5]);
        // 4 and 5 are concealed (fading: nothing later had arrived yet), then 6 plays and the
        // two count as lost.
        assert!(
            out.iter()
                .any(|n| matches!(n, Next::Conceal { fade_from, .. } if *fade_from == 1.0))
        );
        assert_eq!(jb.stats.lost, 2);
        let played: Vec<u32> = out.iter().filter_map(decoded).collect();
        assert_eq!(played, vec![0, 1, 2, 3, 6, 7, 8, 9]);
    }

    #[test]
    fn target_adapts_only_at_a_talk_spurt_start() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        let _ = jb.next(t0 + ms(20), 0, BLOCK);
        let first = jb.target();
        // Jittery arrivals during the spurt raise the jitter estimate, not the target.
        for i in 1..10u32 {
            let d = if i % 2 == 0 { 25 } else { 0 };
            jb.insert(i * F, false, payload(i), t0 + ms(20 * u64::from(i) + d));
        }
        assert_eq!(jb.target(), first);
        jb.clear();
        // A new spurt after silence starts with the larger target.
        jb.insert(100 * F, true, payload(100), t0 + ms(3000));
        let _ = jb.next(t0 + ms(3000), 0, BLOCK);
        assert!(
            jb.target() > first + ms(10),
            "{:?} -> {:?}",
            first,
            jb.target()
        );
        assert!(jb.target() <= ms(200));
    }

    #[test]
    fn a_pause_before_a_marked_packet_is_not_concealed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        assert_eq!(decoded(&jb.next(t0 + ms(10), 0, BLOCK)), Some(0));
        // The sender paused for 10 frames; its next spurt is marked.
        jb.insert(11 * F, true, payload(11), t0 + ms(25));
        let n = jb.next(t0 + ms(30), 0, BLOCK);
        let n = if matches!(n, Next::Silence(_)) {
            jb.next(t0 + ms(30), 0, BLOCK)
        } else {
            n
        };
        assert_eq!(decoded(&n), Some(11));
        assert_eq!(jb.stats.lost, 0);
        assert_eq!(jb.stats.concealed, 0);
    }

    #[test]
    fn delay_grows_in_a_pause_when_loss_appears() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        let _ = jb.next(t0 + ms(10), 0, BLOCK);
        let before = jb.target();
        assert_eq!(jb.adapt_in_pause(BLOCK), Adapt::None);
        jb.set_loss(0.05);
        match jb.adapt_in_pause(BLOCK) {
            Adapt::Insert(n) => assert!(n >= 20 * 48, "{n}"),
            other => panic!("{other:?}"),
        }
        assert!(jb.target() >= before + ms(20));
        // Loss gone: the delay comes back down a frame at a time, dropping a frame.
        jb.set_loss(0.0);
        for i in 1..5u32 {
            jb.insert(i * F, false, payload(i), t0 + ms(20 * u64::from(i)));
        }
        assert_eq!(jb.adapt_in_pause(BLOCK), Adapt::Skipped);
        assert_eq!(jb.stats.dropped_for_delay, 1);
    }

    #[test]
    fn a_spurt_starts_on_a_block_boundary() {
        // No jitter measured: the target is the margin, 1.5 ms.
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        // Rendered 0.5 ms after it came: it must wait 1 ms more, and starts with the next
        // block, not 1 ms into this one (which would give no more time to later packets).
        assert_eq!(
            jb.next(t0 + Duration::from_micros(500), 0, BLOCK),
            Next::Silence(BLOCK)
        );
        assert_eq!(jb.target(), Duration::from_micros(1500));
        assert_eq!(
            decoded(&jb.next(t0 + Duration::from_micros(500), BLOCK, BLOCK)),
            Some(0)
        );
        // Samples already queued in the block count towards the boundary.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        assert_eq!(jb.next(t0, 100, BLOCK), Next::Silence(BLOCK - 100));
    }

    #[test]
    fn a_packet_that_waited_its_target_plays_at_once() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        assert_eq!(decoded(&jb.next(t0 + ms(2), 0, BLOCK)), Some(0));
    }

    #[test]
    fn growth_in_a_pause_is_whole_blocks() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        let _ = jb.next(t0 + ms(5), 0, BLOCK);
        jb.set_loss(0.05);
        match jb.adapt_in_pause(BLOCK) {
            Adapt::Insert(n) => {
                assert_eq!(n % BLOCK, 0, "{n}");
                assert!(n >= 20 * 48, "{n}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inverted_bounds_do_not_panic() {
        let config = JitterConfig {
            min_delay: ms(100),
            max_delay: ms(10),
            margin: ms(4),
        };
        let mut jb = JitterBuffer::new(config);
        let t0 = Instant::now();
        jb.insert(0, true, payload(0), t0);
        let _ = jb.next(t0, 0, BLOCK);
        assert_eq!(jb.target(), ms(10));
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let start = u32::MAX - F + 1;
        for i in 0..4u32 {
            jb.insert(
                start.wrapping_add(i * F),
                i == 0,
                payload(i),
                t0 + ms(20 * u64::from(i)),
            );
        }
        let mut played = Vec::new();
        let mut clock = t0 + ms(100);
        for _ in 0..8 {
            let n = jb.next(clock, 0, BLOCK);
            if let Some(i) = decoded(&n) {
                played.push(i);
            }
            clock += ms(20);
        }
        assert_eq!(played, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_burst_far_beyond_the_target_is_trimmed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.insert(0, true, payload(0), t0);
        assert_eq!(decoded(&jb.next(t0 + ms(10), 0, BLOCK)), Some(0));
        // 10 frames (200 ms) arrive at once.
        for i in 1..=10u32 {
            jb.insert(i * F, false, payload(i), t0 + ms(20));
        }
        let first = decoded(&jb.next(t0 + ms(30), 0, BLOCK)).unwrap();
        assert!(first > 1, "did not skip: {first}");
        assert!(jb.stats.dropped_for_delay > 0);
    }
}
