//! What voice tells the game: events, and the receiving and sending statistics.

use std::time::Duration;

use squadlink_protocol::PeerId;

use super::error::Direction;

/// Something that happened in voice chat.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VoiceEvent {
    /// A peer's voice started playing.
    SpeakingStarted {
        /// Who.
        peer: PeerId,
    },
    /// A peer's voice stopped (silence, mute or departure).
    SpeakingStopped {
        /// Who.
        peer: PeerId,
    },
    /// We started sending our voice (the gate opened).
    TransmitStarted,
    /// We stopped sending our voice.
    TransmitStopped,
    /// A device started.
    DeviceStarted {
        /// Microphone or speakers.
        direction: Direction,
        /// Its name.
        name: String,
    },
    /// A device is missing or failed; voice goes on without it.
    DeviceUnavailable {
        /// Microphone or speakers.
        direction: Direction,
        /// What happened and what to do.
        reason: String,
    },
}

/// One peer's voice statistics.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct VoiceStats {
    /// Their voice is playing.
    pub speaking: bool,
    /// Time packets wait in the jitter buffer, from arrival to decoding (smoothed).
    pub jitter_buffer_delay: Duration,
    /// How late a packet could come and still play, as chosen at the start of the last
    /// talk spurt (the wait is this rounded up to the next render block).
    pub target_delay: Duration,
    /// Interarrival jitter (RFC 3550).
    pub jitter: Duration,
    /// RTP packets received.
    pub packets_received: u64,
    /// Frames decoded from their own packet.
    pub decoded: u64,
    /// Packets that came too late to play.
    pub late: u64,
    /// Frames missing at playout time.
    pub lost: u64,
    /// Missing frames rebuilt from the next packet's FEC data.
    pub fec_recovered: u64,
    /// Frames concealed (PLC), including talk-spurt tails.
    pub concealed: u64,
    /// Frames dropped to bring the delay back down.
    pub dropped_for_delay: u64,
    /// Loss measured over recent seconds, percent.
    pub loss_percent: f64,
    /// Received Opus bitrate, kbit/s (payload).
    pub kbps: f64,
}

/// Voice we send ([`crate::voice::Voice::send_stats`]). The counters share their names with
/// video's [`crate::video::SendStats`]: `frames_sent`, `packets_sent`, `bytes_sent`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SendStats {
    /// Frames captured from the source (20 ms each), sent or not: the gate (push-to-talk,
    /// voice activity) decides which are sent.
    pub frames_captured: u64,
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// RTP packets sent (one per frame; each peer gets a copy, counted once).
    pub packets_sent: u64,
    /// Bytes of Opus sent (one copy).
    pub bytes_sent: u64,
    /// The loss FEC is tuned for (the worst any receiver reports), percent.
    pub fec_loss_percent: u8,
}
