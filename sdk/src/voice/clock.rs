//! The grid a sound card calls back on, shared between its callback (which notes each
//! call with atomics only) and the voice threads (which wake just before the next).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::format::samples_duration;

/// When the device side (the cpal callback, or the thread emulating one) will next run and
/// how much it moves, so the voice threads can wake just when they are needed.
///
/// A sound card calls back on a steady grid, but the thread that runs the callback wakes a
/// little late now and then. Predicting from the last wake would carry such a delay into the
/// next prediction; instead the grid follows the earliest callbacks at once and later ones
/// only slowly (clock drift).
#[derive(Debug)]
pub(crate) struct DeviceClock {
    epoch: Instant,
    /// Nanoseconds from `epoch` to when the next callback is expected, plus one (0: none
    /// yet). Written by the callback only.
    next: AtomicU64,
    /// Frames the last callback moved.
    frames: AtomicU64,
}

/// How far the grid follows a late callback (per callback).
const DRIFT_NS: u64 = 20_000;

impl DeviceClock {
    /// A clock that has seen no callback yet.
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            frames: AtomicU64::new(0),
        }
    }

    /// Notes a callback (atomics only: safe in a real-time callback).
    pub(crate) fn tick(&self, frames: usize) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX / 2);
        self.tick_at(now, frames);
    }

    /// Notes a callback `now` nanoseconds after the epoch.
    fn tick_at(&self, now: u64, frames: usize) {
        let step = u64::try_from(samples_duration(frames).as_nanos()).unwrap_or(0);
        let expected = self.next.load(Ordering::Relaxed);
        let on_grid = match expected.checked_sub(1) {
            // On time or a little late (the thread woke late): keep the grid, drifting
            // towards the callback only slowly.
            Some(at) if now >= at && now - at <= 4 * step.max(1) => at + (now - at).min(DRIFT_NS),
            // Early (the grid is earlier than thought), the first callback, or the first
            // after a gap of several periods: the grid is here.
            _ => now,
        };
        self.frames.store(frames as u64, Ordering::Relaxed);
        self.next.store(on_grid + step + 1, Ordering::Release);
    }

    /// When the next callback is expected and how many frames it moves, once the device has
    /// run.
    pub(crate) fn next(&self) -> Option<(Instant, usize)> {
        let next = self.next.load(Ordering::Acquire);
        if next == 0 {
            return None;
        }
        let frames = usize::try_from(self.frames.load(Ordering::Relaxed))
            .unwrap_or(1)
            .max(1);
        Some((self.epoch + Duration::from_nanos(next - 1), frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_keeps_to_the_earliest_callbacks() {
        let clock = DeviceClock::new();
        let ms = |n: f64| (n * 1e6) as u64;
        let next = |c: &DeviceClock| {
            c.next()
                .map(|(at, _)| at.duration_since(c.epoch).as_nanos() as u64)
                .unwrap()
        };
        clock.tick_at(ms(10.0), 240);
        assert_eq!(next(&clock), ms(15.0));
        // A callback 1.5 ms late moves the prediction by only DRIFT_NS.
        clock.tick_at(ms(16.5), 240);
        assert_eq!(next(&clock), ms(20.0) + DRIFT_NS);
        // An early one re-anchors the grid.
        clock.tick_at(ms(19.9), 240);
        assert_eq!(next(&clock), ms(24.9));
        // After a long gap the grid starts afresh.
        clock.tick_at(ms(500.0), 240);
        assert_eq!(next(&clock), ms(505.0));
    }

    #[test]
    fn the_clock_predicts_the_next_callback() {
        let clock = DeviceClock::new();
        assert!(clock.next().is_none());
        let before = Instant::now();
        clock.tick(240);
        let (due, frames) = clock.next().unwrap();
        assert_eq!(frames, 240);
        assert!(due >= before + Duration::from_millis(5));
        assert!(due <= Instant::now() + Duration::from_millis(5));
    }
}
