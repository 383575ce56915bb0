//! The engine's side of media: the codecs `rtc` negotiates (Opus and VP8 only), our outgoing
//! tracks, and the interceptor that lets keyframe requests through. The data that crosses to
//! the pipelines is in `crate::media`.

#![cfg_attr(not(any(feature = "voice", feature = "video")), allow(dead_code))]

use web_time::Instant;

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};

use crate::media::{Kind, OPUS_PAYLOAD_TYPE, VIDEO_CLOCK_RATE, VP8_PAYLOAD_TYPE};

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
