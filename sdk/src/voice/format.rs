//! Voice's audio format: 48 kHz mono, in 20 ms frames.

use std::time::Duration;

/// Voice's sample rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame.
pub const FRAME: usize = 960;

/// How long `samples` last at [`SAMPLE_RATE`].
pub(crate) fn samples_duration(samples: usize) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(SAMPLE_RATE))
}
