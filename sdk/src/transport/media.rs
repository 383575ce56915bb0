//! RTP media in the session's peer connections: one Opus audio track and one VP8 video track
//! per connection, sent and received by the network thread on behalf of the voice and video
//! pipelines.
//!
//! The transport knows nothing of codecs or devices: the voice thread hands it encoded frames
//! and the video thread RTP payloads ([`MediaFrame`]), which go to every connected peer on that
//! peer's sender of the right kind; RTP packets that arrive are passed on as [`MediaIn::Rtp`]
//! with their arrival time, to the pipeline of their kind (told apart by payload type).

#![cfg_attr(not(any(feature = "voice", feature = "video")), allow(dead_code))]

use std::time::Instant;

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
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
        seq: u16,
        timestamp: u32,
        /// Audio: first packet after a pause in the sender's speech. Video: a frame's last.
        marker: bool,
        payload: Bytes,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Audio,
    Video,
}

/// The voice pipeline's two ends of the network thread.
pub(crate) struct MediaLink {
    pub(crate) cmd: tokio::sync::mpsc::UnboundedSender<super::Command>,
    pub(crate) incoming: crossbeam_channel::Receiver<MediaIn>,
}

impl MediaLink {
    /// Queues an audio frame for every connected peer; false once the session is closed.
    pub(crate) fn send(&self, frame: MediaFrame) -> bool {
        self.cmd.send(super::Command::Media(frame)).is_ok()
    }

    /// Queues the RTP packets of one video frame for every connected peer, or for one
    /// peer only (`to`: a keyframe for a peer that asked); false once the session is closed.
    pub(crate) fn send_video(&self, packets: Vec<MediaFrame>, to: Option<PeerId>) -> bool {
        self.cmd.send(super::Command::Video { packets, to }).is_ok()
    }

    /// Asks `peer` for a keyframe (RTCP PLI); false once the session is closed.
    pub(crate) fn request_keyframe(&self, peer: PeerId) -> bool {
        self.cmd
            .send(super::Command::KeyframeRequest { peer })
            .is_ok()
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

/// VP8 (RFC 7741) with picture-loss feedback: 90 kHz.
fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: "pli".to_owned(),
            },
            RTCPFeedback {
                typ: "ccm".to_owned(),
                parameter: "fir".to_owned(),
            },
        ],
    }
}

/// A media engine that knows exactly two codecs: Opus for audio and VP8 for video.
pub(crate) fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RtpCodecKind::Audio,
    )?;
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: VP8_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;
    Ok(engine)
}

/// Our outgoing track of `kind`, with its own random SSRC.
pub(crate) fn track(kind: Kind, ssrc: u32) -> rtc::media_stream::MediaStreamTrack {
    let (id, label, rtp_kind, codec) = match kind {
        Kind::Audio => (
            "squadlink-voice",
            "voice",
            RtpCodecKind::Audio,
            opus_codec(),
        ),
        Kind::Video => ("squadlink-video", "video", RtpCodecKind::Video, vp8_codec()),
    };
    rtc::media_stream::MediaStreamTrack::new(
        "squadlink".to_owned(),
        id.to_owned(),
        label.to_owned(),
        rtp_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec,
            ..Default::default()
        }],
    )
}

/// Whether an RTCP packet asks the media sender for a keyframe (PLI or FIR).
pub(crate) fn asks_for_keyframe(packet: &dyn rtc::rtcp::packet::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Lets keyframe requests (RTCP PLI and FIR) through to the network thread. `rtc`'s
/// interceptor chain ends with a terminus that drops inbound RTCP unless an interceptor marks
/// it for the application; this one marks keyframe requests and passes everything else as
/// it is.
#[derive(Default)]
pub(crate) struct KeyframeRequests {
    read: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
    write: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
}

impl rtc::sansio::Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()>
    for KeyframeRequests
{
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if let rtc::interceptor::Packet::Rtcp(packets) = &msg.message.packet
            && packets.iter().any(|p| asks_for_keyframe(p.as_ref()))
        {
            msg.message
                .add(rtc::interceptor::Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl rtc::interceptor::Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
}

/// The interceptor chain of every peer connection: just [`KeyframeRequests`], application-most.
pub(crate) fn interceptors() -> rtc::interceptor::Registry {
    rtc::interceptor::Registry::new().with(
        rtc::interceptor::Slot::Custom(20_000),
        KeyframeRequests::default(),
    )
}
