//! The media seam between the network thread and the voice and video pipelines: what they
//! hand each other, in neither's terms. The transport knows nothing of codecs or devices:
//! the voice thread hands it encoded frames and the video thread RTP payloads
//! ([`MediaFrame`]), which go to every connected peer on that peer's sender of the right
//! kind; RTP packets that arrive are passed on as [`MediaIn::Rtp`] with their arrival time,
//! to the pipeline of their kind (told apart by payload type). The handle a pipeline holds
//! is `bridge::MediaLink`.

// Voice and video each read their own variants and fields.
#![cfg_attr(not(all(feature = "voice", feature = "video")), allow(dead_code))]

use web_time::Instant;

use bytes::Bytes;
use squadlink_protocol::PeerId;

/// RTP payload type offered for Opus (the value browsers use).
pub(crate) const OPUS_PAYLOAD_TYPE: u8 = 111;
/// RTP payload type offered for VP8 (the value browsers use).
pub(crate) const VP8_PAYLOAD_TYPE: u8 = 96;
/// The RTP clock of video (RFC 7741).
pub(crate) const VIDEO_CLOCK_RATE: u32 = 90_000;
/// How many incoming media items may wait for the voice thread before new ones are dropped
/// (about 5 s of 20 ms frames from 8 peers).
pub(crate) const MEDIA_QUEUE: usize = 2048;

/// One RTP payload for every connected peer: an encoded audio frame from the voice pipeline,
/// or one packet's share of a VP8 frame from the video pipeline.
#[derive(Debug, Clone)]
pub(crate) struct MediaFrame {
    /// RTP sequence number (one per packet sent).
    pub(crate) seq: u16,
    /// RTP timestamp (48 kHz samples for audio, 90 kHz ticks for video).
    pub(crate) timestamp: u32,
    /// Audio: first packet of a talk spurt. Video: last packet of a frame.
    pub(crate) marker: bool,
    /// The Opus packet, or the VP8 payload descriptor and its part of the frame.
    pub(crate) payload: Bytes,
}

/// What the network thread hands to a media pipeline (voice or video).
#[derive(Debug, Clone)]
pub(crate) enum MediaIn {
    /// An RTP packet of a peer's track of the pipeline's kind.
    Rtp {
        peer: PeerId,
        /// Its sequence number, timestamp, marker (audio: first packet after a pause in the
        /// sender's speech; video: a frame's last) and payload.
        frame: MediaFrame,
        arrival: Instant,
    },
    /// A peer told us how much of our audio it loses (0–100 %).
    LossReport { peer: PeerId, percent: u8 },
    /// Video: a peer asked for a keyframe (RTCP PLI or FIR).
    KeyframeRequest { peer: PeerId },
    /// A peer connected (video sends it a keyframe).
    PeerConnected { peer: PeerId },
    /// The peer left or its connection ended.
    PeerGone { peer: PeerId },
}

/// Which of a connection's two tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Audio,
    Video,
}

/// A random 32-bit number: the random start of RTP sequence numbers and timestamps, and
/// SSRCs (RFC 3550 §5.1).
pub(crate) fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_ne_bytes(bytes)
}
