//! What can go wrong with voice, and which way a device goes (which the errors name).

use std::path::PathBuf;

/// Which way a device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A microphone.
    Input,
    /// Speakers or headphones.
    Output,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Input => "input",
            Self::Output => "output",
        })
    }
}

/// What went wrong with voice.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceError {
    /// A sound device is missing or failed.
    #[error("audio {direction} device: {reason}")]
    Device {
        /// Microphone or speakers.
        direction: Direction,
        /// What happened and what to do.
        reason: String,
    },
    /// A WAV file could not be read or written.
    #[error("WAV file {path}: {reason}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The Opus codec failed.
    #[error("Opus: {0}")]
    Codec(String),
    /// Voice could not start its threads.
    #[error("voice could not start: {0}")]
    Start(String),
}
