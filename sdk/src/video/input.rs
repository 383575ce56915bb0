//! Where the pictures video sends come from, and opening it.

#[cfg(feature = "webcam")]
use super::camera::{Camera, CameraChoice};
use super::error::VideoError;
use super::source::{TestPattern, VideoSource};
use super::vpx::Vp8Settings;

/// Where pictures come from.
pub enum VideoInput {
    /// Send nothing (receive only).
    None,
    /// The synthetic test pattern at the configured size and rate.
    TestPattern,
    /// A webcam (cargo feature `webcam`), in the format closest to the configured one.
    #[cfg(feature = "webcam")]
    Camera(CameraChoice),
    /// Any source of your own.
    Source(Box<dyn VideoSource>),
}

impl std::fmt::Debug for VideoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::TestPattern => f.write_str("TestPattern"),
            #[cfg(feature = "webcam")]
            Self::Camera(c) => write!(f, "Camera({c:?})"),
            Self::Source(s) => write!(f, "Source({})", s.describe()),
        }
    }
}

/// Opens what `input` names (at the configured size and rate).
pub(super) fn open_input(
    input: VideoInput,
    settings: &Vp8Settings,
) -> Result<Option<Box<dyn VideoSource>>, VideoError> {
    match input {
        VideoInput::None => Ok(None),
        VideoInput::TestPattern => Ok(Some(Box::new(TestPattern::new(
            settings.width,
            settings.height,
            settings.fps,
        )?))),
        #[cfg(feature = "webcam")]
        VideoInput::Camera(choice) => Ok(Some(Box::new(Camera::open(
            &choice,
            settings.width,
            settings.height,
            settings.fps,
        )?))),
        VideoInput::Source(s) => Ok(Some(s)),
    }
}
