//! What video uses unless told otherwise (the settings' defaults and the encoder's).

/// The picture size, frame rate and bitrate video uses unless told otherwise.
pub(crate) const DEFAULT_WIDTH: u32 = 320;
/// See [`DEFAULT_WIDTH`].
pub(crate) const DEFAULT_HEIGHT: u32 = 240;
/// See [`DEFAULT_WIDTH`].
pub(crate) const DEFAULT_FPS: u32 = 15;
/// See [`DEFAULT_WIDTH`].
pub(crate) const DEFAULT_KBPS: u32 = 300;
