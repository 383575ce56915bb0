//! What video gives the game: decoded pictures, statistics and events.

use std::time::Duration;

use web_time::Instant;

/// A decoded picture from a peer.
#[derive(Clone)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGBA, 4 bytes a pixel, rows top to bottom.
    pub rgba: Vec<u8>,
    /// The sender's frame counter (from the VP8 picture ID): increases by one per frame
    /// sent; gaps are frames lost or skipped.
    pub frame_id: u64,
    /// When the sender captured it, on the sender's clock: time since its first frame
    /// (from the RTP timestamp).
    pub captured: Duration,
    /// When it was decoded here.
    pub decoded_at: Instant,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frame_id", &self.frame_id)
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

/// Video received from one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct VideoStats {
    /// Frames decoded per second (over the last second).
    pub fps: f64,
    /// Received bitrate, kbit/s (payload, over the last second).
    pub kbps: f64,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Frames lost or skipped (a packet was missing, or they waited for a keyframe).
    pub frames_dropped: u64,
    /// Frames libvpx could not decode.
    pub decode_errors: u64,
    /// Keyframes we asked this peer for.
    pub keyframes_requested: u64,
    /// Size of the last picture.
    pub width: u32,
    /// Height of the last picture.
    pub height: u32,
}

/// Video we send ([`crate::video::Video::send_stats`]). The counters share their names with
/// voice's [`crate::voice::SendStats`]: `frames_sent`, `packets_sent`, `bytes_sent`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct SendStats {
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// RTP packets sent (a frame takes one or more; each peer gets a copy, counted once).
    pub packets_sent: u64,
    /// Of the frames, keyframes.
    pub keyframes_sent: u64,
    /// Bytes of VP8 sent (one copy; each peer gets one).
    pub bytes_sent: u64,
    /// Sent bitrate, kbit/s (over the last second).
    pub kbps: f64,
    /// Mean time to encode a frame over the last second, milliseconds.
    pub encode_ms: f64,
}

/// Something that happened to the video.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoEvent {
    /// A source started sending.
    SourceStarted {
        /// Its description.
        name: String,
    },
    /// The source failed or ended; nothing is sent until another is set.
    SourceEnded {
        /// Why.
        reason: String,
    },
}
