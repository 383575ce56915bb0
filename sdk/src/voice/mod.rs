//! Voice chat: Opus over an RTP audio track in each peer connection.
//!
//! ```text
//! source ─► voice-tx: noise suppression, gain → gate (PTT / VAD / open) → Opus 20 ms ─► RTP
//! RTP ─► per-peer jitter buffer ─► speaker callback: decode | FEC | PLC, gain, mute, pan, mix
//! ```
//!
//! Start it next to a [`Session`]:
//!
//! ```no_run
//! use squadlink::voice::{Voice, VoiceConfig, VoiceMode};
//! # let session: squadlink::Session = todo!();
//! let voice = Voice::start(&session, VoiceConfig::default().mode(VoiceMode::PushToTalk))?;
//! voice.set_push_to_talk(true); // while the key is held
//! for event in voice.poll_events() {
//!     println!("{event:?}"); // SpeakingStarted { peer }, DeviceUnavailable { .. }, ...
//! }
//! # Ok::<(), squadlink::voice::VoiceError>(())
//! ```
//!
//! Audio comes from an [`AudioSource`] and goes to an [`AudioSink`]: the sound card
//! (cpal), a WAV file, a synthetic tone, or the game itself ([`AudioInput::Manual`],
//! [`AudioOutput::Manual`]) for engines that own the audio device. A missing or broken sound
//! device is reported as [`VoiceEvent::DeviceUnavailable`]; the session and the other
//! direction keep working.
//!
//! Playout is clocked by the sink: the receive side decodes a frame only when the sink needs
//! more audio, so FEC can use the next packet and nothing waits in queues. With a sound card
//! the mix is rendered in the device's own callback (the renderer never allocates, frees,
//! locks or blocks); a companion thread does the housekeeping off the audio path.

// The browser: the page's capture, Opus codec and playback (Web Audio), through the
// browser engine's tracks. Natively: our own pipeline.
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
mod web_audio;
#[cfg(target_arch = "wasm32")]
pub use web::{AudioInput, AudioOutput, Voice, VoiceConfig};

// What both targets share: the vocabulary and the panning law.
mod error;
mod events;
mod mixer;
mod mode;

pub use error::{Direction, VoiceError};
pub use events::{SendStats, VoiceEvent, VoiceStats};
pub use mixer::{Falloff, Listener};
pub use mode::VoiceMode;

// The native pipeline (libopus, RNNoise, cpal).
#[cfg(not(target_arch = "wasm32"))]
mod capture;
#[cfg(not(target_arch = "wasm32"))]
mod clock;
#[cfg(not(target_arch = "wasm32"))]
mod controls;
#[cfg(not(target_arch = "wasm32"))]
mod device;
#[cfg(not(target_arch = "wasm32"))]
mod format;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod io;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod jitter;
#[cfg(not(target_arch = "wasm32"))]
mod loss;
#[cfg(not(target_arch = "wasm32"))]
pub mod measure;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod opus;
#[cfg(not(target_arch = "wasm32"))]
mod resample;
#[cfg(not(target_arch = "wasm32"))]
mod reuse;
#[cfg(not(target_arch = "wasm32"))]
mod rx;
#[cfg(not(target_arch = "wasm32"))]
mod samples;
#[cfg(not(target_arch = "wasm32"))]
mod tx;

#[cfg(not(target_arch = "wasm32"))]
pub use device::{DeviceCounters, DeviceSink, DeviceSource, device_names};
#[cfg(not(target_arch = "wasm32"))]
pub use format::{FRAME, SAMPLE_RATE};
#[cfg(not(target_arch = "wasm32"))]
pub use io::{
    AudioSink, AudioSource, BLOCK, NullSink, RenderFn, SyntheticSource, WavSink, WavSource,
};
#[cfg(not(target_arch = "wasm32"))]
pub use jitter::JitterConfig;
#[cfg(not(target_arch = "wasm32"))]
pub use native::{AudioInput, AudioOutput, Voice, VoiceConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use opus::VoiceBandwidth;
