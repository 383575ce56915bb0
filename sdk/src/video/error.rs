//! What can go wrong with video.

/// What can go wrong with video.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// A picture or setting of the wrong shape.
    #[error("bad picture format: {0}")]
    Format(String),
    /// libvpx refused something.
    #[error("VP8 codec: {0}")]
    Codec(String),
    /// A source failed or ended.
    #[error("video source: {0}")]
    Source(String),
    /// No camera could be opened.
    #[error(
        "no camera: {0} (plug one in, pick another with `CameraChoice`, or send a test pattern)"
    )]
    NoCamera(String),
    /// A video thread could not be started.
    #[error("starting video: {0}")]
    Start(String),
}
