//! RTP media in the session's peer connections: one Opus audio track per connection, sent
//! and received by the network thread on behalf of the voice pipeline.
//!
//! The transport knows nothing of codecs or devices: the voice thread hands it encoded frames
//! ([`MediaFrame`]), which go to every connected peer on that peer's audio sender; RTP packets
//! that arrive are passed on as [`MediaIn::Rtp`] with their arrival time, for the jitter buffer.

#![cfg_attr(not(feature = "voice"), allow(dead_code))]

use std::time::Instant;

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use squadlink_protocol::PeerId;

/// RTP payload type offered for Opus (the value browsers use).
pub(crate) const OPUS_PAYLOAD_TYPE: u8 = 111;
/// How many incoming media items may wait for the voice thread before new ones are dropped
/// (about 5 s of 20 ms frames from 8 peers).
pub(crate) const MEDIA_QUEUE: usize = 2048;

/// One encoded audio frame from the voice pipeline, for every connected peer.
#[derive(Debug, Clone)]
pub(crate) struct MediaFrame {
    /// RTP sequence number (one per packet sent).
    pub(crate) seq: u16,
    /// RTP timestamp, in 48 kHz samples.
    pub(crate) timestamp: u32,
    /// First packet of a talk spurt.
    pub(crate) marker: bool,
    /// The Opus packet.
    pub(crate) payload: Bytes,
}

/// What the network thread hands to the voice pipeline.
#[derive(Debug, Clone)]
pub(crate) enum MediaIn {
    /// An RTP packet of a peer's audio track.
    Rtp {
        peer: PeerId,
        seq: u16,
        timestamp: u32,
        /// First packet after a pause in the sender's speech.
        marker: bool,
        payload: Bytes,
        arrival: Instant,
    },
    /// A peer told us how much of our audio it loses (0–100 %).
    LossReport { peer: PeerId, percent: u8 },
    /// The peer left or its connection ended.
    PeerGone { peer: PeerId },
}

/// The voice pipeline's two ends of the network thread.
pub(crate) struct MediaLink {
    pub(crate) cmd: tokio::sync::mpsc::UnboundedSender<super::Command>,
    pub(crate) incoming: crossbeam_channel::Receiver<MediaIn>,
}

impl MediaLink {
    /// Queues a frame for every connected peer; false once the session is closed.
    pub(crate) fn send(&self, frame: MediaFrame) -> bool {
        self.cmd.send(super::Command::Media(frame)).is_ok()
    }

    /// A second handle on the same link (for the other voice thread).
    pub(crate) fn clone_sender(&self) -> MediaLink {
        MediaLink {
            cmd: self.cmd.clone(),
            incoming: self.incoming.clone(),
        }
    }

    /// Tells `peer` how much of its audio we lose.
    pub(crate) fn report_loss(&self, peer: PeerId, percent: u8) -> bool {
        self.cmd
            .send(super::Command::VoiceLoss { peer, percent })
            .is_ok()
    }
}

/// Opus as the one audio codec: 48 kHz, with in-band FEC.
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        // SDP always says 2 for Opus (RFC 7587); we send mono.
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A media engine that knows exactly one codec: Opus.
pub(crate) fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(engine)
}

/// Our outgoing audio track, with its own random SSRC.
pub(crate) fn audio_track(ssrc: u32) -> rtc::media_stream::MediaStreamTrack {
    rtc::media_stream::MediaStreamTrack::new(
        "squadlink".to_owned(),
        "squadlink-voice".to_owned(),
        "voice".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: opus_codec(),
            ..Default::default()
        }],
    )
}
