//! The engine seam: what the session needs of a WebRTC engine, in our terms only
//! (descriptions and candidates as strings, datagrams in and out, messages by channel
//! index, RTP as [`MediaFrame`], [`EngineEvent`]s out). `RtcEngine` (webrtc-rs's `rtc`) is
//! the native one; the browser's `RTCPeerConnection` is the next (issue 16). A `Peer`
//! holds its engine behind this trait and never sees the engine's own types; the shell
//! chooses the engine and hands the core a [`MakeEngine`], so the core never names one.

use std::net::SocketAddr;
use std::time::Duration;

use web_time::Instant;

use bytes::{Bytes, BytesMut};
use squadlink_protocol::{IceServer, PeerId, Signal};

use crate::channel::ChannelKind;
use crate::event::{CandidateKind, IcePolicy};
use crate::media::{Kind, MediaFrame};
use crate::settings::Settings;

/// What the engine has for the session after a step, in our terms.
pub(crate) enum EngineEvent {
    /// A data-channel message on channel `index` (the control channel is the last).
    Message { index: usize, data: Bytes },
    /// An RTP packet on the peer's audio or video track.
    Rtp { kind: Kind, frame: MediaFrame },
    /// The peer asked for a video keyframe (RTCP PLI or FIR).
    KeyframeRequest,
    /// All our data channels are open (this step opened the last).
    AllOpen,
    /// The connection failed.
    Failed(String),
    /// A data channel closed.
    Closed,
    /// A local description the engine made after the call that asked for it (an engine
    /// whose offers and answers are promises, as the browser's): the SDP to send, as an
    /// offer or an answer.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Described { offer: bool, sdp: String },
    /// One of our candidates, found by the engine itself ([`Engine::own_ice`]): the signal
    /// that tells the peer of it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Candidate(Signal),
}

/// Packets and bytes on the wire, both ways (see [`Engine::wire_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WireCounts {
    pub(crate) packets_sent: u64,
    pub(crate) packets_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
}

/// What became of frames handed to [`Engine::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued for the peer.
    Yes,
    /// Not sent: the channel's queue already holds more than the limit.
    QueueFull,
    /// Not sent: no such channel, or it is closed.
    No,
    /// Not sent: unreliable data while the peer's path is quiet
    /// ([`super::liveness::HOLD_UNRELIABLE_AFTER`]).
    Held,
}

/// Makes the engine for a new connection to a peer: the shell's choice, given to the core
/// (`Core::new`); the native shell and the in-memory network give `RtcEngine::make`, the
/// browser's a maker that holds the page's wake-up for its engines' callbacks. An error
/// says why the engine could not be set up (the connection then fails).
pub(crate) trait MakeEngine: MaybeSend {
    fn make(
        &self,
        peer: PeerId,
        settings: &PeerSettings<'_>,
        now: Instant,
    ) -> Result<Box<dyn Engine>, String>;
}

impl<F> MakeEngine for F
where
    F: Fn(PeerId, &PeerSettings<'_>, Instant) -> Result<Box<dyn Engine>, String> + MaybeSend,
{
    fn make(
        &self,
        peer: PeerId,
        settings: &PeerSettings<'_>,
        now: Instant,
    ) -> Result<Box<dyn Engine>, String> {
        self(peer, settings, now)
    }
}

/// How to set up a peer connection.
pub(crate) struct PeerSettings<'a> {
    pub(crate) channels: &'a [ChannelKind],
    /// The ICE servers, for an engine that gathers its own candidates ([`Engine::own_ice`]).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) ice_servers: &'a [IceServer],
    pub(crate) max_message: usize,
    pub(crate) relay_only: bool,
    /// How long a working relay pair waits for a direct one before it is nominated.
    pub(crate) relay_wait: Duration,
    /// How long an unreliable message may wait or be retransmitted before it is dropped.
    pub(crate) unreliable_lifetime: Duration,
}

impl<'a> PeerSettings<'a> {
    /// What the session's settings ask of each peer connection.
    pub(crate) fn of(cfg: &'a Settings, ice_servers: &'a [IceServer]) -> Self {
        Self {
            channels: &cfg.channels,
            ice_servers,
            max_message: cfg.max_message_size,
            relay_only: cfg.ice_policy == IcePolicy::RelayOnly,
            relay_wait: cfg.relay_wait,
            unreliable_lifetime: cfg.unreliable_lifetime,
        }
    }
}

/// A WebRTC engine carrying one peer connection: pre-negotiated data channels (the
/// session's channels in order, then the control channel) and an audio and a video track.
/// Time is always an argument.
pub(crate) trait Engine: MaybeSend {
    /// All our channels to the peer are open.
    fn all_open(&self) -> bool;

    /// Our local description is set (so our candidates can be added).
    fn has_local_description(&self) -> bool;

    /// Neither description is set: we are waiting to answer the peer's first offer.
    fn awaits_first_offer(&self) -> bool;

    /// The peer's description is set.
    fn has_remote_description(&self) -> bool;

    /// Creates an offer (the first, or an ICE restart's after `restart_ice`) and makes it
    /// our local description; its SDP, to send to the peer, or `None` when it comes later
    /// as [`EngineEvent::Described`].
    fn offer(&mut self, now: Instant) -> Result<Option<String>, String>;

    /// Takes the peer's offer (the first, an ICE restart's, or a new connection's) and
    /// answers it; the answer's SDP, to send, or `None` when it comes later as
    /// [`EngineEvent::Described`].
    fn accept_offer(&mut self, sdp: String, now: Instant) -> Result<Option<String>, String>;

    /// Takes the peer's answer to our offer.
    fn accept_answer(&mut self, sdp: String, now: Instant) -> Result<(), String>;

    /// The peer's description is set: its candidates that came first are added, and its
    /// connectivity checks that came first are handed to ICE.
    fn remote_description_applied(&mut self, now: Instant) -> Result<(), String>;

    /// One of the peer's candidates: added now, or kept until its description is set.
    fn add_remote_candidate(
        &mut self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
        username_fragment: Option<String>,
    ) -> Result<(), String>;

    /// Adds one of our candidates (`kind` at `addr`, found from `base`; `priority` 0 for
    /// the engine's usual formula) to the connection; the signal that tells the peer of it.
    fn add_local_candidate(
        &mut self,
        kind: CandidateKind,
        addr: SocketAddr,
        base: SocketAddr,
        priority: u32,
    ) -> Option<Signal>;

    /// A datagram from `from` that arrived on `local`. Whether the engine took it (and so
    /// should be stepped): the peer's first checks can overtake its description, which
    /// comes through the matchmaker, and wait for it (at most [`EARLY_DATAGRAMS`]) rather
    /// than have ICE fail them for want of a password.
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> bool;

    /// The next datagram the engine wants sent: its bytes, and from and to which address.
    fn poll_transmit(&mut self) -> Option<(BytesMut, SocketAddr, SocketAddr)>;

    /// When the engine next needs [`Peer::handle_timeout`].
    fn poll_timeout(&mut self) -> Option<Instant>;

    /// The engine's timers up to `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// Starts an ICE restart (new credentials; the next offer carries them).
    fn restart_ice(&mut self);

    /// Queues `frames` on data channel `index`, unless its queue already holds more than
    /// `limit` bytes.
    fn send(&mut self, index: usize, frames: Vec<BytesMut>, limit: usize, now: Instant) -> Sent;

    /// Sends one frame as it is on data channel `index` (the control channel is the last);
    /// a frame that cannot be sent is dropped (the channel closed, or the peer is gone).
    fn send_frame(&mut self, index: usize, frame: BytesMut, now: Instant);

    /// Bytes queued on every data channel, not yet acknowledged.
    fn queued_bytes(&mut self) -> usize;

    /// Closes the connection (its goodbye datagrams are then in [`Peer::poll_transmit`]).
    /// An open SCTP association is aborted: close the channels first
    /// ([`Engine::close_channels`]) for the peer to see them close rather than fail.
    fn close(&mut self);

    /// Starts closing every open data channel the polite way (an SCTP stream reset each),
    /// so that the peer sees each channel close, not fail. (The engine stops reading a
    /// channel it closes, so the peer's own reset may wait on data it sent meanwhile: the
    /// side that leaves asks the other to close instead, see [`super::control::Control::Bye`].)
    fn close_channels(&mut self);

    /// Whether no data channel is open: each was closed both ways (or never opened).
    fn channels_closed(&self) -> bool;

    /// Drives the engine once: its events, then what it has read (with `handle_timeout`
    /// after events, which is where it queues handshake packets). Whether anything came
    /// out; what did is added to `out`. The caller sends the engine's datagrams and calls
    /// again until nothing comes out.
    fn step(&mut self, now: Instant, out: &mut Vec<EngineEvent>) -> bool;

    /// Our ICE username fragment, from our current local description.
    fn local_ufrag(&self) -> Option<String>;

    /// The control channel's index in `dcs`.
    fn control(&self) -> usize;

    /// Sends one RTP payload on our track of `kind`, with `payload_type` in the header
    /// (adversarial testing) or the track's own (`None`); whether it went out.
    fn send_rtp_as(
        &mut self,
        kind: Kind,
        frame: &MediaFrame,
        payload_type: Option<u8>,
        now: Instant,
    ) -> bool;

    /// Asks the peer for a video keyframe with an RTCP picture loss indication.
    fn send_pli(&mut self, now: Instant);

    /// Whether the engine does its own ICE: gathers its candidates (reported as
    /// [`EngineEvent::Candidate`]), resolves the peer's mDNS names and owns the network, as
    /// the browser's does. Then the core hands it every candidate line the peer sends and
    /// takes the path from [`Engine::selected_pair`].
    fn own_ice(&self) -> bool {
        false
    }

    /// Whether ICE has a working pair: `Some(false)` while it has none (an ICE restart's
    /// checks are running, or they found none: the path is still cut), `None` when the
    /// engine cannot tell. The offerer restarts sooner while a restart found no path
    /// (`liveness::RESTART_AGAIN`). The browser's engine says `None`: its ICE keeps the old
    /// pair through a restart.
    fn ice_connected(&self) -> Option<bool> {
        None
    }

    /// The selected candidate pair, for an engine that does its own ICE: our candidate's
    /// type, the peer's address and the type the engine gives it (peer-reflexive when it
    /// learned the address from the peer's checks before the candidate came); `None` while
    /// no pair is selected (or the engine cannot tell).
    fn selected_pair(&self) -> Option<(CandidateKind, SocketAddr, CandidateKind)> {
        None
    }

    /// What crossed the wire, for an engine that owns the network (the shell counts the
    /// native engine's datagrams itself): packets sent and received, bytes sent and
    /// received, as of the engine's last look.
    fn wire_counts(&self) -> Option<WireCounts> {
        None
    }
}

/// `Send` where engines run on a network thread (native); nothing in the browser, whose
/// engine holds the page's objects and runs on the page's one thread.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}
/// `Send` where engines run on a network thread (native); nothing in the browser, whose
/// engine holds the page's objects and runs on the page's one thread.
#[cfg(target_arch = "wasm32")]
pub(crate) trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// An engine with its next deadline remembered. Asking an `rtc` connection when it next
/// needs time walks every handler of its pipeline and every SCTP association, and the
/// session asks for every peer on every turn of its loop: in an idle 8-peer mesh that
/// was about a tenth of the network thread's CPU samples (perf, 2026-12-06). The answer only
/// changes when the engine is driven, so reads ([`Deref`](std::ops::Deref)) keep it and
/// [`Driven::drive`], the only way to the engine's `&mut self` methods, forgets it.
pub(crate) struct Driven {
    engine: Box<dyn Engine>,
    /// The engine's last answer to `poll_timeout`; `None` when it must be asked again.
    due: Option<Option<Instant>>,
}

impl Driven {
    pub(crate) fn new(engine: Box<dyn Engine>) -> Self {
        Self { engine, due: None }
    }

    /// The engine, to be driven (its deadline is asked again afterwards).
    pub(crate) fn drive(&mut self) -> &mut dyn Engine {
        self.due = None;
        self.engine.as_mut()
    }

    /// When the engine next needs `handle_timeout` (asked only after it was driven).
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        *self.due.get_or_insert_with(|| self.engine.poll_timeout())
    }
}

impl std::ops::Deref for Driven {
    type Target = dyn Engine;

    fn deref(&self) -> &Self::Target {
        self.engine.as_ref()
    }
}

/// Whether `sdp` has an m-line of media `kind` (`audio`, `video`, `application`) that is
/// not rejected (port 0).
pub(crate) fn has_media_line(sdp: &str, kind: &str) -> bool {
    sdp.lines().any(|line| {
        line.strip_prefix("m=")
            .and_then(|rest| rest.strip_prefix(kind))
            .and_then(|rest| rest.split_ascii_whitespace().next())
            .is_some_and(|port| port != "0")
    })
}

/// The value of the first `a=NAME:` line of an SDP (session or media level).
pub(crate) fn sdp_attribute(sdp: &str, name: &str) -> Option<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_lines_are_found_by_kind_and_a_rejected_one_does_not_count() {
        let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n";
        assert!(has_media_line(sdp, "application"));
        assert!(!has_media_line(sdp, "audio"), "port 0: rejected");
        assert!(!has_media_line(sdp, "video"));
        assert!(has_media_line("m=video 9 UDP/TLS/RTP/SAVPF 96\n", "video"));
        assert!(!has_media_line("a=m=audio 9\r\n", "audio"));
    }
}
