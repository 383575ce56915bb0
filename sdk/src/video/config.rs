//! Video settings: the same on both targets (what [`VideoInput`] offers differs: a source
//! of the game's own natively, the page's camera in the browser).

use super::defaults::{DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_KBPS, DEFAULT_WIDTH};
use super::input::VideoInput;

/// Video settings.
#[derive(Debug)]
// In the browser every input is a description (natively one may hold a game's source).
#[cfg_attr(target_arch = "wasm32", derive(Clone))]
pub struct VideoConfig {
    /// What to send.
    pub input: VideoInput,
    /// Picture size asked of the source (even; default 320 × 240; a browser's camera may
    /// give another).
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second (default 15).
    pub fps: u32,
    /// VP8 target bitrate, kbit/s (default 300; in the browser the most its encoder may
    /// use on each connection, its congestion control choosing below that).
    pub bitrate_kbps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            input: VideoInput::None,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            bitrate_kbps: DEFAULT_KBPS,
        }
    }
}

impl VideoConfig {
    /// Sets what to send.
    pub fn input(mut self, input: VideoInput) -> Self {
        self.input = input;
        self
    }

    /// Sets the picture size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Sets the frame rate.
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }

    /// Sets the bitrate, kbit/s.
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_kbps = kbps;
        self
    }
}
