//! How the microphone opens: the same choice natively and in the browser.

/// How the microphone is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiceMode {
    /// Transmit while a key is held ([`super::Voice::set_push_to_talk`]).
    PushToTalk,
    /// Transmit while the player is speaking (voice activity detection).
    #[default]
    VoiceActivity,
    /// Always transmit (silence costs almost nothing: Opus DTX).
    OpenMic,
}
