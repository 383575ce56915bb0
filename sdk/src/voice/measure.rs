//! Tools for measuring voice, not needed by a game: the Opus encoder and decoder on their
//! own, sound cards emulated in software at real-time pace, and WAV reading at 48 kHz.
//! `bench_voice` and the SDK's own tests use them; they may change between releases.
//!
//! A game gets all of this through [`super::Voice`]: it never encodes or decodes itself.

use std::time::Instant;

use super::device::{DeviceSink, DeviceSource};
use super::error::VoiceError;

pub use super::io::read_wav_mono_48k;
pub use super::opus::{FEC_BITRATE, VoiceDecoder, VoiceEncoder};

/// A microphone emulated in software, for measurements and tests without a sound card: a
/// thread delivers `period` mono frames every period, in real time from `start`, as a sound
/// card's callback would. `capture` fills each period just captured, given the time of its
/// first sample. Everything past the callback is the real device code.
pub fn emulated_microphone(
    period: usize,
    start: Instant,
    capture: impl FnMut(Instant, &mut [f32]) + Send + 'static,
) -> Result<DeviceSource, VoiceError> {
    DeviceSource::emulated(period, start, capture)
}

/// A speaker emulated in software, for measurements and tests without a sound card: a thread
/// takes `period` stereo frames from the ring every period, in real time from `start`, as a
/// sound card's callback would, and hands each block to `played` with the time its first
/// frame plays. Everything before the callback is the real device code.
pub fn emulated_speaker(
    period: usize,
    start: Instant,
    played: impl FnMut(Instant, &[f32]) + Send + 'static,
) -> Result<DeviceSink, VoiceError> {
    DeviceSink::emulated(period, start, played)
}
