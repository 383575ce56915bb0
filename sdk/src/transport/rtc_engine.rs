//! The WebRTC engine behind a peer: webrtc-rs's sans-IO `rtc` peer connection, with our
//! data channels (pre-negotiated, the control channel last) and our audio and video
//! tracks. It speaks to the rest of the transport in our terms only: descriptions and
//! candidates as strings, datagrams in and out, messages by channel index, RTP as
//! [`MediaFrame`], [`EngineEvent`]s out. This is the seam a second engine (the browser's
//! `RTCPeerConnection`) will fill; see docs/architecture.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use web_time::Instant;

use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::{
    SctpMaxMessageSize, SettingEngineBuilder,
};
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, CandidateServerReflexiveConfig,
    RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use squadlink_protocol::{PeerId, Signal};

use super::codecs;
use super::dtls_repeats::Repeats;
use super::engine::{Engine, EngineEvent, PeerSettings, Sent, sdp_attribute};
use super::nominations::Nominations;
use crate::channel::ChannelKind;
use crate::event::CandidateKind;
use crate::media::{Kind, MediaFrame, VP8_PAYLOAD_TYPE};

/// Datagrams held for a peer whose description has not arrived yet.
pub(crate) const EARLY_DATAGRAMS: usize = 16;

/// One peer connection in `rtc`.
pub(crate) struct RtcEngine {
    /// For logs.
    id: PeerId,
    pc: RTCPeerConnection,
    /// Data channel ids: the user's channels in order, then the control channel.
    dcs: Vec<RTCDataChannelId>,
    dc_index: HashMap<RTCDataChannelId, usize>,
    open: Vec<bool>,
    /// Our local description is set, so local candidates can be added.
    local_set: bool,
    remote_set: bool,
    pending_remote: Vec<RTCIceCandidateInit>,
    /// Datagrams (the peer's first connectivity checks) that arrived before its description:
    /// ICE cannot answer them without its credentials, so they wait for it (at most
    /// [`EARLY_DATAGRAMS`]).
    early: Vec<TaggedBytesMut>,
    /// Our audio track's sender and SSRC.
    audio_sender: Option<rtc::rtp_transceiver::RTCRtpSenderId>,
    audio_ssrc: u32,
    /// Our video track's sender and SSRC.
    video_sender: Option<rtc::rtp_transceiver::RTCRtpSenderId>,
    video_ssrc: u32,
    /// The SSRC of the peer's video, once a packet of it came (PLI names it).
    remote_video_ssrc: Option<u32>,
    /// The DTLS handshake messages handed to `pc`, to hold back repetitions that stall it.
    repeats: Repeats,
    /// Nominating Binding requests `pc` may leave unanswered (see `nominations.rs`).
    nominations: Nominations,
    /// ICE has a working pair (its last state change was to connected or completed). An
    /// ICE restart drops every pair and goes back to checking until one works again.
    ice_connected: bool,
}

impl RtcEngine {
    /// The native engine for a new connection (a [`super::engine::MakeEngine`]).
    pub(crate) fn make(
        id: PeerId,
        settings: &PeerSettings<'_>,
        now: Instant,
    ) -> Result<Box<dyn Engine>, String> {
        Ok(Box::new(
            Self::new(id, settings, now).map_err(|e| e.to_string())?,
        ))
    }

    /// A connection to peer `id` with `settings`' channels, not negotiated yet.
    pub(crate) fn new(
        id: PeerId,
        settings: &PeerSettings<'_>,
        now: Instant,
    ) -> Result<Self, rtc::shared::error::Error> {
        let relay_wait = if settings.relay_only {
            Duration::ZERO
        } else {
            settings.relay_wait
        };
        let setting_engine = SettingEngineBuilder::new()
            // Random ICE credentials per description: an ICE restart needs new ones.
            // After a restart only the candidates of the new network are offered.
            .with_discard_local_candidates_during_ice_restart(true)
            // Browsers' mDNS host names (`….local`, also inside the SDP of a later offer or
            // answer) are not resolved: that would send multicast queries out of our
            // socket. Their address comes in the peer's own checks (see
            // `Peers::remote_candidate`); our host candidates stay plain addresses.
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            // Keep-alives (consent, RFC 7675, which asks for one every 4–6 s) every 2 s; ICE
            // reports disconnected after 5 s without. Our own pings decide when a peer is gone (silence timeout), and
            // ICE must not give up ("failed") while an ICE restart can still bring the peer
            // back. (Every 500 ms, they were a tenth of an idle mesh's CPU.)
            .with_ice_timeouts(
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(20)),
                Some(Duration::from_secs(2)),
            )
            // Connectivity checks every 5 ms while connecting (the default is 200 ms; RFC 8445
            // §14.2 puts the floor of the pacing interval Ta at 5 ms), for at most 1 s. When
            // the peer's check outruns its candidate through the matchmaker, the pair is
            // peer-reflexive and `rtc` checks it (to nominate) only at the next interval:
            // with 25 ms, a quarter of the pair connects on loopback took 31 ms instead of
            // 5 (bench_vs_matchbox); with 5 ms, about 12.
            .with_ice_connection_attempts(Some(Duration::from_millis(5)), Some(200))
            // A peer-reflexive or server-reflexive pair that works is a direct path: nominate
            // it at once. (The answerer's UDP check routinely outruns its own candidate
            // through the matchmaker, making it peer-reflexive first; waiting cost 100 ms.)
            // Only relay pairs wait, so a direct path can still win.
            .with_srflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_relay_acceptance_min_wait(Some(relay_wait))
            // The answerer is the DTLS server (`a=setup:passive`). Then the side that sends the
            // ClientHello (the offerer) always has the answer already; the default answerer
            // client races the answer through the matchmaker, and a lost race costs the 1 s
            // DTLS retransmission timer.
            .with_answering_dtls_role(RTCDtlsRole::Server)
            // `a=max-message-size`: the largest frame of the wire contract (docs/wire.md §9).
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(
                u32::try_from(crate::channel::MAX_FRAME).unwrap_or(u32::MAX),
            ))
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(codecs::media_engine()?)
            .with_interceptor_registry(codecs::interceptors())
            .build(now)?;
        // Every connection carries an audio and a video track from the start, so voice and
        // video never need a renegotiation; each costs an m-line in the SDP and nothing on
        // the wire until used.
        let audio_ssrc = crate::media::random_u32();
        let audio_sender = Some(pc.add_track(codecs::track(Kind::Audio, audio_ssrc))?);
        let video_ssrc = crate::media::random_u32();
        let video_sender = Some(pc.add_track(codecs::track(Kind::Video, video_ssrc))?);
        let n = settings.channels.len();
        let mut dcs = Vec::with_capacity(n + 1);
        let control = ChannelKind::Unreliable;
        for (i, kind) in settings
            .channels
            .iter()
            .chain(std::iter::once(&control))
            .enumerate()
        {
            let init = RTCDataChannelInit {
                ordered: kind.ordered(),
                max_packet_life_time: kind.lifetime_ms(settings.unreliable_lifetime),
                negotiated: Some(u16::try_from(i).unwrap_or(u16::MAX)),
                ..Default::default()
            };
            let label = if i == n {
                "squadlink-control".to_string()
            } else {
                format!("squadlink-{i}")
            };
            let dc = pc.create_data_channel(&label, Some(init))?;
            dcs.push(dc.id());
        }
        let dc_index = dcs.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        Ok(Self {
            id,
            pc,
            open: vec![false; dcs.len()],
            dc_index,
            dcs,
            local_set: false,
            remote_set: false,
            pending_remote: Vec::new(),
            early: Vec::new(),
            audio_sender,
            audio_ssrc,
            video_sender,
            video_ssrc,
            remote_video_ssrc: None,
            repeats: Repeats::default(),
            nominations: Nominations::default(),
            ice_connected: false,
        })
    }

    /// Marks a data channel open; whether that made all of ours open.
    fn on_open(&mut self, dc: RTCDataChannelId) -> bool {
        let was = self.all_open();
        if let Some(slot) = self.dc_index.get(&dc).and_then(|i| self.open.get_mut(*i)) {
            *slot = true;
        }
        !was && self.all_open()
    }
}

impl Engine for RtcEngine {
    fn all_open(&self) -> bool {
        self.open.iter().all(|o| *o)
    }

    fn has_local_description(&self) -> bool {
        self.local_set
    }

    fn awaits_first_offer(&self) -> bool {
        !self.local_set && !self.remote_set
    }

    fn has_remote_description(&self) -> bool {
        self.remote_set
    }

    fn offer(&mut self, now: Instant) -> Result<Option<String>, String> {
        let offer = self.pc.create_offer(None).map_err(|e| e.to_string())?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(now, offer)
            .map_err(|e| e.to_string())?;
        self.local_set = true;
        Ok(Some(sdp))
    }

    fn accept_offer(&mut self, sdp: String, now: Instant) -> Result<Option<String>, String> {
        let answer = RTCSessionDescription::offer(sdp)
            .and_then(|offer| self.pc.set_remote_description(now, offer))
            .and_then(|()| self.pc.create_answer(None))
            .map_err(|e| e.to_string())?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        self.local_set = true;
        self.remote_set = true;
        Ok(Some(sdp))
    }

    fn accept_answer(&mut self, sdp: String, now: Instant) -> Result<(), String> {
        RTCSessionDescription::answer(sdp)
            .and_then(|answer| self.pc.set_remote_description(now, answer))
            .map_err(|e| e.to_string())?;
        self.remote_set = true;
        Ok(())
    }

    fn remote_description_applied(&mut self, now: Instant) -> Result<(), String> {
        for c in std::mem::take(&mut self.pending_remote) {
            self.pc.add_remote_candidate(c).map_err(|e| e.to_string())?;
        }
        for mut input in std::mem::take(&mut self.early) {
            input.now = now;
            if let Err(e) = self.pc.handle_read(input) {
                tracing::debug!(%e, peer = %self.id, "early datagram rejected");
            }
        }
        Ok(())
    }

    fn add_remote_candidate(
        &mut self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
        username_fragment: Option<String>,
    ) -> Result<(), String> {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index,
            username_fragment,
            ..Default::default()
        };
        if self.remote_set {
            self.pc
                .add_remote_candidate(init)
                .map_err(|e| e.to_string())
        } else {
            self.pending_remote.push(init);
            Ok(())
        }
    }

    fn add_local_candidate(
        &mut self,
        kind: CandidateKind,
        addr: SocketAddr,
        base: SocketAddr,
        priority: u32,
    ) -> Option<Signal> {
        let base_config = CandidateConfig {
            network: "udp".into(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            priority,
            ..Default::default()
        };
        let made = match kind {
            CandidateKind::Host => CandidateHostConfig {
                base_config,
                ..Default::default()
            }
            .new_candidate_host(),
            CandidateKind::Srflx | CandidateKind::Prflx => CandidateServerReflexiveConfig {
                base_config,
                rel_addr: base.ip().to_string(),
                rel_port: base.port(),
                url: None,
            }
            .new_candidate_server_reflexive(),
            CandidateKind::Relay => CandidateRelayConfig {
                base_config,
                rel_addr: base.ip().to_string(),
                rel_port: base.port(),
                ..Default::default()
            }
            .new_candidate_relay(),
        }
        .and_then(|c| RTCIceCandidate::from(&c).to_json());
        let init = match made {
            Ok(init) => init,
            Err(e) => {
                tracing::warn!(%e, %addr, "could not make a local candidate");
                return None;
            }
        };
        if let Err(e) = self.pc.add_local_candidate(init.clone()) {
            tracing::warn!(%e, "could not add a local candidate");
            return None;
        }
        // `rtc` leaves the mid empty; a browser's `addIceCandidate` needs a real one. Every
        // m-line is bundled, so the candidate belongs to the first (docs/wire.md §3).
        let first_mid = self
            .pc
            .local_description()
            .and_then(|d| sdp_attribute(&d.sdp, "mid"));
        let (sdp_mid, sdp_mline_index) = match first_mid {
            Some(mid) => (Some(mid), Some(0)),
            None => (init.sdp_mid, init.sdp_mline_index),
        };
        Some(Signal::Candidate {
            candidate: init.candidate,
            sdp_mid,
            sdp_mline_index,
            username_fragment: init.username_fragment,
        })
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> bool {
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if !self.remote_set {
            if self.early.len() < EARLY_DATAGRAMS {
                self.early.push(input);
            }
            return false;
        }
        if !self.repeats.pass(data) {
            tracing::trace!(peer = %self.id, "a repeated DTLS flight held back (dtls_repeats.rs)");
            return true;
        }
        let again = self.nominations.inbound(from, data);
        let transport = input.transport;
        if let Err(e) = self.pc.handle_read(input) {
            tracing::debug!(%e, peer = %self.id, "datagram rejected");
        }
        if let Some(request) = again {
            tracing::trace!(peer = %self.id, "the peer's nomination handed to ICE again (nominations.rs)");
            let input = TaggedBytesMut {
                now,
                transport,
                message: BytesMut::from(&request[..]),
            };
            if let Err(e) = self.pc.handle_read(input) {
                tracing::debug!(%e, peer = %self.id, "nomination rejected");
            }
        }
        true
    }

    fn poll_transmit(&mut self) -> Option<(BytesMut, SocketAddr, SocketAddr)> {
        let out = self.pc.poll_write()?;
        self.nominations
            .outbound(out.transport.peer_addr, &out.message);
        Some((
            out.message,
            out.transport.local_addr,
            out.transport.peer_addr,
        ))
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!(%e, peer = %self.id, "timeout handling failed");
        }
    }

    fn restart_ice(&mut self) {
        self.pc.restart_ice();
    }

    fn send(&mut self, index: usize, frames: Vec<BytesMut>, limit: usize, now: Instant) -> Sent {
        let Some(dc_id) = self.dcs.get(index).copied() else {
            return Sent::No;
        };
        let Some(mut dc) = self.pc.data_channel(dc_id) else {
            return Sent::No;
        };
        if dc.outstanding_bytes() > limit {
            return Sent::QueueFull;
        }
        for frame in frames {
            if let Err(e) = dc.send(now, frame) {
                tracing::debug!(%e, peer = %self.id, index, "send failed");
                return Sent::No;
            }
        }
        Sent::Yes
    }

    fn send_frame(&mut self, index: usize, frame: BytesMut, now: Instant) {
        if let Some(dc_id) = self.dcs.get(index).copied()
            && let Some(mut dc) = self.pc.data_channel(dc_id)
            && let Err(e) = dc.send(now, frame)
        {
            tracing::trace!(%e, peer = %self.id, index, "frame not sent");
        }
    }

    fn queued_bytes(&mut self) -> usize {
        let dcs = self.dcs.clone();
        dcs.iter()
            .filter_map(|d| self.pc.data_channel(*d).map(|dc| dc.outstanding_bytes()))
            .sum()
    }

    fn close(&mut self) {
        if let Err(e) = self.pc.close() {
            tracing::debug!(%e, peer = %self.id, "close failed");
        }
    }

    fn channels_closed(&self) -> bool {
        self.open.iter().all(|open| !*open)
    }

    fn close_channels(&mut self) {
        for (id, open) in self.dcs.iter().zip(&self.open) {
            if !*open {
                continue;
            }
            if let Some(mut dc) = self.pc.data_channel(*id)
                && let Err(e) = dc.close()
            {
                tracing::debug!(%e, peer = %self.id, "closing a data channel failed");
            }
        }
    }

    fn step(&mut self, now: Instant, out: &mut Vec<EngineEvent>) -> bool {
        let mut progressed = false;
        let mut had_event = false;
        let mut all_open_now = false;
        while let Some(event) = self.pc.poll_event() {
            progressed = true;
            had_event = true;
            match event {
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(dc)) => {
                    all_open_now |= self.on_open(dc);
                }
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(dc)) => {
                    if let Some(slot) = self.dc_index.get(&dc).and_then(|i| self.open.get_mut(*i)) {
                        *slot = false;
                    }
                    out.push(EngineEvent::Closed);
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                    RTCPeerConnectionState::Failed,
                ) => out.push(EngineEvent::Failed("the peer connection failed".into())),
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                    self.ice_connected = matches!(
                        state,
                        RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                    );
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            progressed = true;
            match message {
                RTCMessage::DataChannelMessage(dc, msg) => {
                    if let Some(index) = self.dc_index.get(&dc).copied() {
                        out.push(EngineEvent::Message {
                            index,
                            data: msg.data.freeze(),
                        });
                    }
                }
                RTCMessage::RtpPacket(_track, packet) => {
                    let kind = if packet.header.payload_type == VP8_PAYLOAD_TYPE {
                        self.remote_video_ssrc = Some(packet.header.ssrc);
                        Kind::Video
                    } else {
                        Kind::Audio
                    };
                    out.push(EngineEvent::Rtp {
                        kind,
                        frame: MediaFrame {
                            seq: packet.header.sequence_number,
                            timestamp: packet.header.timestamp,
                            marker: packet.header.marker,
                            payload: packet.payload,
                        },
                    });
                }
                RTCMessage::RtcpPacket(_track, packets)
                    if packets
                        .iter()
                        .any(|p| codecs::asks_for_keyframe(p.as_ref())) =>
                {
                    out.push(EngineEvent::KeyframeRequest);
                }
                _ => {}
            }
        }
        if had_event && let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!(%e, "timeout handling failed");
        }
        if all_open_now {
            out.push(EngineEvent::AllOpen);
        }
        progressed
    }

    fn local_ufrag(&self) -> Option<String> {
        sdp_attribute(&self.pc.local_description()?.sdp, "ice-ufrag")
    }

    fn control(&self) -> usize {
        self.dcs.len().saturating_sub(1)
    }

    fn ice_connected(&self) -> Option<bool> {
        Some(self.ice_connected)
    }

    fn send_rtp_as(
        &mut self,
        kind: Kind,
        frame: &MediaFrame,
        payload_type: Option<u8>,
        now: Instant,
    ) -> bool {
        let (sender_id, ssrc) = match kind {
            Kind::Audio => (self.audio_sender, self.audio_ssrc),
            Kind::Video => (self.video_sender, self.video_ssrc),
        };
        let Some(sender_id) = sender_id else {
            return false;
        };
        let Some(mut sender) = self.pc.rtp_sender(sender_id) else {
            return false;
        };
        let Some(track_type) = sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
        else {
            return false;
        };
        let packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: frame.marker,
                payload_type: payload_type.unwrap_or(track_type),
                sequence_number: frame.seq,
                timestamp: frame.timestamp,
                ssrc,
                ..Default::default()
            },
            payload: frame.payload.clone(),
        };
        match sender.write_rtp(now, packet) {
            Ok(()) => true,
            Err(e) => {
                tracing::trace!(%e, peer = %self.id, ?kind, "RTP packet not sent");
                false
            }
        }
    }

    fn send_pli(&mut self, now: Instant) {
        let Some(media_ssrc) = self.remote_video_ssrc else {
            return;
        };
        let receivers: Vec<_> = self.pc.get_receivers().collect();
        for id in receivers {
            let Some(mut receiver) = self.pc.rtp_receiver(id) else {
                continue;
            };
            if receiver.track().kind() != rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
                continue;
            }
            let pli =
                rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                    sender_ssrc: self.video_ssrc,
                    media_ssrc,
                };
            if let Err(e) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
                tracing::debug!(%e, peer = %self.id, "keyframe request not sent");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_candidate_is_signaled_with_the_first_m_lines_mid() {
        let now = Instant::now();
        let channels = [ChannelKind::ReliableOrdered];
        let settings = PeerSettings {
            channels: &channels,
            ice_servers: &[],
            max_message: 1 << 20,
            relay_only: false,
            relay_wait: Duration::from_millis(500),
            unreliable_lifetime: Duration::from_millis(500),
        };
        let mut engine = RtcEngine::new(PeerId(1), &settings, now).unwrap();
        let offer = engine.offer(now).unwrap().unwrap();
        let first_mid = sdp_attribute(&offer, "mid").unwrap();
        assert!(!first_mid.is_empty());
        let addr = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let Some(Signal::Candidate {
            sdp_mid,
            sdp_mline_index,
            ..
        }) = engine.add_local_candidate(CandidateKind::Host, addr, addr, 0)
        else {
            panic!("no candidate signal");
        };
        assert_eq!(sdp_mid.as_deref(), Some(first_mid.as_str()));
        assert_eq!(sdp_mline_index, Some(0));
    }
}
