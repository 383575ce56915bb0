//! Tools for measuring video, not needed by a game: the VP8 encoder and decoder on their
//! own, picture quality (PSNR), the camera format conversions, and the capture times of a
//! [`TestPattern`]'s frames (for glass-to-glass latency). `bench_video`, `camera_check` and
//! the SDK's own tests use them; they may change between releases.
//!
//! A game gets all of this through [`super::Video`]: it never encodes or decodes itself.

use super::source::TestPattern;

#[cfg(feature = "webcam")]
pub use super::camera::{closest_format, to_i420};
pub use super::frame::{psnr, psnr_rgba};
pub use super::source::CaptureLog;
pub use super::vpx::{EncodedFrame, Vp8Decoder, Vp8Encoder, Vp8Settings};

/// A handle on the capture times of `pattern`'s frames, by the counter drawn in each.
pub fn capture_log(pattern: &TestPattern) -> CaptureLog {
    pattern.capture_log()
}
