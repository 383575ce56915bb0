//! One peer, as the session sees it: where its connection stands, its pings, framing,
//! candidate types, stats and throttled reports, around the engine that carries it
//! (behind the seam of `engine.rs`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use web_time::Instant;

use bytes::{Bytes, BytesMut};
use squadlink_protocol::{PeerId, Signal};

use super::control::{self, Control, Pinger};
use super::engine::{Driven, Engine, EngineEvent, PeerSettings, Sent, has_media_line};
use super::liveness::{self, Facts};
use crate::channel::{Framing, Received};
use crate::event::{CandidateKind, PathKind, RelayTransport};
use crate::media::{Kind, MediaFrame};
use crate::stats::PeerStats;

/// Where a peer connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Negotiating, or our channels open while the peer's are not known to be.
    Connecting,
    /// Both ends' channels are open, since `since`; `announced` once the game was told
    /// (when the path is known).
    Connected { since: Instant, announced: bool },
}

pub(crate) struct Peer {
    pub(crate) id: PeerId,
    /// Our current ICE username fragment (from our local description; it changes on an ICE
    /// restart). Empty until the local description is set.
    ufrag: String,
    /// We sent the first offer, so we also start ICE restarts.
    offerer: bool,
    /// When the latest ICE restart began (we sent or answered a restart offer).
    restart_at: Option<Instant>,
    /// When the first ICE restart since the peer was last heard began: the restart window
    /// counts from here, however many restarts follow.
    first_restart: Option<Instant>,
    /// The DTLS fingerprint in the peer's description: an offer with the same one is an
    /// ICE restart of this connection, a different one a new connection (it rejoined).
    remote_fingerprint: Option<String>,
    /// The WebRTC engine carrying this connection (its deadline remembered).
    engine: Driven,
    /// A control frame came from the peer: its channels are open, so what we send now
    /// reaches it. (A message that arrives before the receiver's own SCTP handshake
    /// completed is acknowledged by SCTP and then dropped by the WebRTC stack: we must
    /// not count a peer connected, nor send to it, on our channels' opening alone.)
    heard_control: bool,
    created: Instant,
    /// Connecting, or connected (and whether the game was told).
    phase: Phase,
    /// Telling the game this peer sends undecodable frames.
    told_misbehaviour: Throttle,
    /// Telling the game its messages are dropped because a channel is not read.
    told_unread: Throttle,
    /// Telling the game its send buffer to this peer is full.
    told_send_full: Throttle,
    remote_types: HashMap<SocketAddr, CandidateKind>,
    /// Ports of host candidates the peer hid behind mDNS names (browsers do).
    hidden_host_ports: HashSet<u16>,
    /// We are closing the data channels (the session ends).
    closing_channels: bool,
    /// The peer's offer lacked audio or video: we offer them once connected.
    media_offer_due: bool,
    /// Framing of every channel, both ways.
    framing: Framing,
    /// When the peer was last heard on a data channel (or in RTP).
    last_heard: Instant,
    /// When the peer's DTLS last came over the pair in use ([`Peer::handle_datagram`]):
    /// SCTP's acknowledgements and retransmissions, which keep coming while a congested
    /// path holds its data channels back, and stop when the path is cut.
    path_heard: Option<Instant>,
    /// The pair the latest DTLS, SCTP or media datagram went over: the selected pair.
    last_pair: Option<(SocketAddr, SocketAddr)>,
    /// Our pings and what their pongs measure.
    pinger: Pinger,
    stats: PeerStats,
}

/// What a data-channel message from the peer comes to ([`Peer::on_message`]).
pub(crate) enum Inbound {
    /// A whole game message on this channel.
    Message(usize, Bytes),
    /// The peer's report of how much of our voice it loses, percent.
    VoiceLoss(u8),
    /// An undecodable frame (counted); `Some(frame errors so far)` when the game is to be
    /// told (the first time, then at most once a second).
    Misbehaved(Option<u64>),
    /// Nothing for anyone: a ping answered, a fragment kept, a stale message dropped.
    Nothing,
}

/// Tells the game of a recurring problem the first time, then at most once a second.
#[derive(Debug, Default)]
pub(crate) struct Throttle(Option<Instant>);

impl Throttle {
    /// Whether to tell now (and, if so, the clock starts again).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = self
            .0
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.0 = Some(now);
        }
        due
    }
}

impl Peer {
    /// A connection to `id` carried by `engine`, not negotiated yet.
    pub(crate) fn new(
        id: PeerId,
        engine: Box<dyn Engine>,
        settings: &PeerSettings<'_>,
        now: Instant,
    ) -> Self {
        Self {
            id,
            ufrag: String::new(),
            offerer: false,
            restart_at: None,
            first_restart: None,
            remote_fingerprint: None,
            engine: Driven::new(engine),
            heard_control: false,
            created: now,
            phase: Phase::Connecting,
            told_misbehaviour: Throttle::default(),
            told_unread: Throttle::default(),
            told_send_full: Throttle::default(),
            remote_types: HashMap::new(),
            hidden_host_ports: HashSet::new(),
            closing_channels: false,
            media_offer_due: false,
            framing: Framing::new(settings.channels, settings.max_message),
            last_heard: now,
            path_heard: None,
            last_pair: None,
            pinger: Pinger::default(),
            stats: PeerStats::default(),
        }
    }

    /// What the liveness rules judge this connection by.
    pub(crate) fn facts(&self) -> Facts {
        Facts {
            connected: self.is_connected(),
            offerer: self.offerer,
            all_open: self.all_open(),
            created: self.created,
            last_heard: self.last_heard,
            path_heard: self.path_heard,
            restart_at: self.restart_at,
            first_restart: self.first_restart.filter(|t| *t >= self.last_heard),
            no_path: self.engine.ice_connected() == Some(false),
        }
    }

    /// All our channels to the peer are open.
    pub(crate) fn all_open(&self) -> bool {
        self.engine.all_open()
    }

    /// Both ends' channels are open.
    pub(crate) fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// Connected, and the game not told yet: since when.
    pub(crate) fn unannounced_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connected {
                since,
                announced: false,
            } => Some(since),
            _ => None,
        }
    }

    /// The game was told this peer is connected.
    pub(crate) fn announced(&mut self) {
        if let Phase::Connected { announced, .. } = &mut self.phase {
            *announced = true;
        }
    }

    /// Our local description is set (so our candidates can be added).
    pub(crate) fn has_local_description(&self) -> bool {
        self.engine.has_local_description()
    }

    /// Neither description is set: we are waiting to answer the peer's first offer.
    pub(crate) fn awaits_first_offer(&self) -> bool {
        self.engine.awaits_first_offer()
    }

    /// The peer's description is set.
    pub(crate) fn has_remote_description(&self) -> bool {
        self.engine.has_remote_description()
    }

    /// Not connected yet, but both ends' channels are open: connected from now on.
    pub(crate) fn ready(&self) -> bool {
        self.phase == Phase::Connecting && self.engine.all_open() && self.heard_control
    }

    /// Both ends' channels are open: connected (announced once its path is known). The
    /// pings sent while connecting told the peer we were ready; the ones it could not take
    /// yet are not loss, so the count starts here.
    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.phase = Phase::Connected {
            since: now,
            announced: false,
        };
        self.last_heard = now;
        self.pinger.forget_window();
        self.stats.pings_sent = 0;
        self.stats.pongs_received = 0;
    }

    /// Creates an offer (the first, or an ICE restart's after [`Peer::restart_ice`]) and
    /// makes it our local description; its SDP, to send to the peer (or `None`: it comes
    /// later, as `EngineEvent::Described`).
    pub(crate) fn offer(&mut self, now: Instant) -> Result<Option<String>, String> {
        self.engine.drive().offer(now)
    }

    /// When the peer's offer lacked audio or video (a browser that added only data
    /// channels) and the connection is up: our offer with both media lines, once, so that
    /// voice and video work whichever side offered first.
    pub(crate) fn offer_missing_media(&mut self, now: Instant) -> Option<Option<String>> {
        if !std::mem::take(&mut self.media_offer_due) {
            return None;
        }
        match self.engine.drive().offer(now) {
            Ok(sdp) => {
                tracing::debug!(peer = %self.id, "offering the audio and video the peer's offer lacked");
                Some(sdp)
            }
            Err(e) => {
                tracing::warn!(peer = %self.id, %e, "could not offer the media the peer's offer lacked");
                None
            }
        }
    }

    /// Takes the peer's offer (the first, an ICE restart's, or a new connection's) and
    /// answers it; the answer's SDP, to send (or `None`: it comes later, as
    /// `EngineEvent::Described`). `fingerprint` is the offer's DTLS one.
    pub(crate) fn accept_offer(
        &mut self,
        sdp: String,
        fingerprint: Option<String>,
        now: Instant,
    ) -> Result<Option<String>, String> {
        if self.engine.has_remote_description() {
            self.restart_began(now);
            tracing::debug!(peer = %self.id, "answering an ICE restart");
        }
        self.remote_fingerprint = fingerprint;
        self.media_offer_due = !has_media_line(&sdp, "audio") || !has_media_line(&sdp, "video");
        self.engine.drive().accept_offer(sdp, now)
    }

    /// Takes the peer's answer to our offer.
    pub(crate) fn accept_answer(
        &mut self,
        sdp: String,
        fingerprint: Option<String>,
        now: Instant,
    ) -> Result<(), String> {
        self.remote_fingerprint = fingerprint;
        self.engine.drive().accept_answer(sdp, now)
    }

    /// The peer's description is set: its candidates and checks that came first are used.
    pub(crate) fn remote_description_applied(&mut self, now: Instant) -> Result<(), String> {
        self.engine.drive().remote_description_applied(now)
    }

    /// One of the peer's candidates: added now, or kept until its description is set.
    pub(crate) fn add_remote_candidate(
        &mut self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
        username_fragment: Option<String>,
    ) -> Result<(), String> {
        self.engine.drive().add_remote_candidate(
            candidate,
            sdp_mid,
            sdp_mline_index,
            username_fragment,
        )
    }

    /// Adds one of our candidates; the signal that tells the peer of it.
    pub(crate) fn add_local_candidate(
        &mut self,
        kind: CandidateKind,
        addr: SocketAddr,
        base: SocketAddr,
        priority: u32,
    ) -> Option<Signal> {
        self.engine
            .drive()
            .add_local_candidate(kind, addr, base, priority)
    }

    /// A datagram from `from` that arrived on `local`; whether the engine took it (and so
    /// should be stepped).
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.stats.packets_received += 1;
        self.stats.bytes_received += data.len() as u64;
        // DTLS (first byte 20–63) from the peer's end of the pair in use: the path works
        // both ways as far as the peer's packets go (STUN also checks other pairs, and
        // a peer that moved to another address is not heard on this one).
        if data.first().is_some_and(|b| (20..=63).contains(b))
            && self.last_pair == Some((local, from))
        {
            self.path_heard = Some(now);
        }
        self.engine.drive().handle_datagram(now, local, from, data)
    }

    /// The next datagram the engine wants sent: its bytes, and from and to which address.
    pub(crate) fn poll_transmit(&mut self) -> Option<(BytesMut, SocketAddr, SocketAddr)> {
        self.engine.drive().poll_transmit()
    }

    /// When the engine next needs [`Peer::handle_timeout`].
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    /// The engine's timers up to `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.engine.drive().handle_timeout(now);
    }

    /// Starts an ICE restart (new credentials; the next offer carries them).
    pub(crate) fn restart_ice(&mut self, now: Instant) {
        self.restart_began(now);
        self.engine.drive().restart_ice();
    }

    /// An ICE restart begins now (ours, the peer's, or one we wait for after a network
    /// change).
    pub(crate) fn restart_began(&mut self, now: Instant) {
        if self.first_restart.is_none_or(|t| t < self.last_heard) {
            self.first_restart = Some(now);
        }
        self.restart_at = Some(now);
    }

    /// Whether our unreliable game data to the peer is held back now: its path has been
    /// quiet for [`liveness::HOLD_UNRELIABLE_AFTER`].
    pub(crate) fn holds_unreliable(&self, now: Instant) -> bool {
        liveness::holds_unreliable(&self.facts(), now)
    }

    /// Frames `payload` for channel `index` and queues it, unless that channel's queue
    /// already holds more than `limit` bytes.
    pub(crate) fn send_message(
        &mut self,
        index: usize,
        payload: &[u8],
        limit: usize,
        now: Instant,
    ) -> Sent {
        let Some(frames) = self.framing.frame(index, payload) else {
            return Sent::No;
        };
        self.engine.drive().send(index, frames, limit, now)
    }

    /// Bytes queued on every data channel, not yet acknowledged.
    pub(crate) fn queued_bytes(&mut self) -> usize {
        self.engine.drive().queued_bytes()
    }

    /// Closes the connection (its goodbye datagrams are then in [`Peer::poll_transmit`]).
    pub(crate) fn close(&mut self) {
        self.engine.drive().close();
    }

    /// Our session is ending: asks the peer to close the data channels ([`Control::Bye`]);
    /// the channels closing from then on are not the peer leaving.
    pub(crate) fn say_goodbye(&mut self, now: Instant) {
        self.closing_channels = true;
        self.send_frame(self.control(), control::bye(), now);
    }

    /// Whether no data channel is open any more (each closed both ways, or never open).
    pub(crate) fn channels_closed(&self) -> bool {
        self.engine.channels_closed()
    }

    /// Whether every data channel is open (the peer may not have heard us yet).
    pub(crate) fn channels_open(&self) -> bool {
        self.engine.all_open()
    }

    /// Whether we are closing the data channels ourselves.
    pub(crate) fn closing_channels(&self) -> bool {
        self.closing_channels
    }

    /// Drives the engine once; what came out is added to `out`. Whether anything did.
    pub(crate) fn step(&mut self, now: Instant, out: &mut Vec<EngineEvent>) -> bool {
        self.engine.drive().step(now, out)
    }

    /// An RTP packet of `kind` came from the peer at `now`.
    pub(crate) fn heard_rtp(&mut self, kind: Kind, now: Instant) {
        self.last_heard = now;
        match kind {
            Kind::Video => self.stats.video_packets_received += 1,
            Kind::Audio => self.stats.voice_packets_received += 1,
        }
    }

    /// Sends a ping on the control channel (while connecting, it tells the peer our
    /// channels are open).
    pub(crate) fn ping(&mut self, now: Instant, epoch: Instant) {
        let ping = self.make_ping(now, epoch);
        self.send_frame(self.control(), ping, now);
    }

    /// Sends a ping if one is due: [`control::PING_EVERY`] after the last, more often
    /// while the path is quiet ([`liveness::ping_period`]), so that both ends hear a
    /// healed path soon.
    pub(crate) fn ping_if_due(&mut self, now: Instant, epoch: Instant) {
        let period = liveness::ping_period(&self.facts(), now, control::PING_EVERY);
        if self.pinger.due(now, period) {
            self.ping(now, epoch);
        }
    }

    /// Sends one frame as it is on data channel `index` (the control channel is the last);
    /// a frame that cannot be sent is dropped (the channel closed, or the peer is gone).
    pub(crate) fn send_frame(&mut self, index: usize, frame: BytesMut, now: Instant) {
        self.engine.drive().send_frame(index, frame, now);
    }

    /// The path of the selected pair, judged by where our datagrams go. `None` while the
    /// remote address is only known as peer-reflexive (its candidate may still be on its
    /// way through the matchmaker).
    pub(crate) fn path(&self, relay_addrs: &[SocketAddr]) -> Option<PathKind> {
        if self.engine.own_ice() {
            return self.engine_path();
        }
        let Some((local, remote)) = self.last_pair else {
            return Some(PathKind::Host);
        };
        if relay_addrs.contains(&local) {
            return Some(PathKind::Relay);
        }
        match self.remote_kind(remote)? {
            CandidateKind::Host => Some(PathKind::Host),
            CandidateKind::Relay => Some(PathKind::Relay),
            CandidateKind::Srflx | CandidateKind::Prflx => Some(PathKind::Srflx),
        }
    }

    /// The path of the pair an engine with its own ICE selected: relayed if either end
    /// is, and the peer's end judged by what it announced at that address (the engine may
    /// only know it as peer-reflexive); `None` while that is all anyone knows.
    fn engine_path(&self) -> Option<PathKind> {
        let (local, remote_addr, engine_kind) = self.engine.selected_pair()?;
        let remote = match self.remote_kind(remote_addr) {
            Some(kind) => kind,
            None if engine_kind != CandidateKind::Prflx => engine_kind,
            None => return None,
        };
        Some(match (local, remote) {
            (CandidateKind::Relay, _) | (_, CandidateKind::Relay) => PathKind::Relay,
            (CandidateKind::Host, CandidateKind::Host) => PathKind::Host,
            // Our address as the peer saw it was none we gathered (a browser's host
            // addresses hide behind mDNS names, or it checks from another interface), yet
            // the peer is a host on our own network: a direct LAN path, as on native.
            (CandidateKind::Prflx, CandidateKind::Host)
                if super::net::is_local_network(remote_addr.ip()) =>
            {
                PathKind::Host
            }
            _ => PathKind::Srflx,
        })
    }

    /// The selected pair's candidate types (local, remote), as far as we know them.
    pub(crate) fn pair_types(
        &self,
        relay_addrs: &[SocketAddr],
    ) -> Option<(CandidateKind, CandidateKind)> {
        let (local, remote) = self.last_pair?;
        let local = if relay_addrs.contains(&local) {
            CandidateKind::Relay
        } else {
            CandidateKind::Host
        };
        // An address the peer never announced was learned from its checks.
        let remote = self.remote_kind(remote).unwrap_or(CandidateKind::Prflx);
        Some((local, remote))
    }

    /// Our ICE username fragment, from our current local description.
    pub(crate) fn local_ufrag(&self) -> Option<String> {
        self.engine.local_ufrag()
    }

    /// Whether the engine does its own ICE (see `Engine::own_ice`).
    pub(crate) fn own_ice(&self) -> bool {
        self.engine.own_ice()
    }

    /// The control channel's index.
    pub(crate) fn control(&self) -> usize {
        self.engine.control()
    }

    /// Sends one RTP payload on our track of `kind` (once connected).
    pub(crate) fn send_rtp(&mut self, kind: Kind, frame: &MediaFrame, now: Instant) {
        self.send_rtp_as(kind, frame, None, now);
    }

    /// [`Self::send_rtp`] with any payload type in the header (adversarial testing), or
    /// the track's own (`None`).
    pub(crate) fn send_rtp_as(
        &mut self,
        kind: Kind,
        frame: &MediaFrame,
        payload_type: Option<u8>,
        now: Instant,
    ) {
        if self
            .engine
            .drive()
            .send_rtp_as(kind, frame, payload_type, now)
        {
            match kind {
                Kind::Audio => self.stats.voice_packets_sent += 1,
                Kind::Video => self.stats.video_packets_sent += 1,
            }
        }
    }

    /// Asks the peer for a video keyframe with an RTCP picture loss indication.
    pub(crate) fn send_pli(&mut self, now: Instant) {
        self.engine.drive().send_pli(now);
    }

    /// A ping frame to send now.
    pub(crate) fn make_ping(&mut self, now: Instant, epoch: Instant) -> BytesMut {
        self.stats.pings_sent += 1;
        self.pinger.ping(now, epoch)
    }

    /// Handles a ping or pong from the peer (its channels are open, so it can take what we
    /// send); returns a reply to send, if any.
    pub(crate) fn on_control(&mut self, control: Control, now: Instant) -> Option<BytesMut> {
        self.heard_control = true;
        match control {
            Control::Ping { seq, stamp } => Some(control::pong(seq, stamp)),
            Control::Pong { seq } => {
                if self.pinger.on_pong(seq, now).is_some() {
                    self.stats.pongs_received += 1;
                    self.stats.rtt_last = self.pinger.last_rtt();
                    self.stats.rtt = self.pinger.rtt();
                }
                None
            }
            Control::VoiceLoss(_) => None,
            Control::Bye => {
                // The peer leaves: our resets close the channels on both ends; their
                // closing then ends the connection here (as the peer leaving).
                tracing::debug!(peer = %self.id, "the peer says goodbye: closing our channels");
                self.engine.drive().close_channels();
                None
            }
        }
    }

    /// Loss over the ping window, counting only pings old enough to have been answered.
    /// One data-channel message: heard from the peer, unframed, counted.
    pub(crate) fn on_message(&mut self, index: usize, data: Bytes, now: Instant) -> Inbound {
        self.last_heard = now;
        if index == self.control() {
            return match control::parse(&data) {
                Some(Control::VoiceLoss(percent)) => Inbound::VoiceLoss(percent),
                Some(other) => {
                    if let Some(reply) = self.on_control(other, now) {
                        self.send_frame(self.control(), reply, now);
                    }
                    Inbound::Nothing
                }
                None => self.misbehaved(now),
            };
        }
        let (received, evicted) = self.framing.receive(index, data);
        self.stats.partials_dropped += evicted;
        match received {
            Received::Message(message) => {
                self.stats.messages_received += 1;
                Inbound::Message(index, message)
            }
            Received::Incomplete | Received::NoChannel => Inbound::Nothing,
            Received::Stale => {
                self.stats.dropped_stale += 1;
                Inbound::Nothing
            }
            Received::Malformed(e) => {
                tracing::debug!(%e, peer = %self.id, "bad frame");
                self.misbehaved(now)
            }
        }
    }

    fn misbehaved(&mut self, now: Instant) -> Inbound {
        self.stats.frame_errors += 1;
        let tell = self.told_misbehaviour.due(now);
        Inbound::Misbehaved(tell.then_some(self.stats.frame_errors))
    }

    /// A message of this peer's was dropped because the game's inbox was full; whether to
    /// tell the game now.
    pub(crate) fn dropped_unread(&mut self, now: Instant) -> bool {
        self.stats.dropped_unread += 1;
        self.told_unread.due(now)
    }

    /// Counts what became of a message the game sent; for a reliable message the send
    /// buffer refused, whether to tell the game now.
    pub(crate) fn count_send(&mut self, sent: Sent, reliable: bool, now: Instant) -> bool {
        match sent {
            Sent::Yes => self.stats.messages_sent += 1,
            Sent::QueueFull if reliable => {
                self.stats.refused_send_buffer_full += 1;
                return self.told_send_full.due(now);
            }
            Sent::QueueFull => self.stats.dropped_congested += 1,
            Sent::Held => self.stats.dropped_silent += 1,
            Sent::No => {}
        }
        false
    }

    /// A datagram of this connection's goes out from `from` to `to`.
    pub(crate) fn transmitted(&mut self, data: &[u8], from: SocketAddr, to: SocketAddr) {
        // DTLS, SCTP and media go only over the selected pair; STUN (first byte 0–3) also
        // checks the others, so it does not tell which pair is in use.
        if data.first().is_some_and(|b| *b > 3) {
            self.last_pair = Some((from, to));
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += data.len() as u64;
    }

    /// The game is told the peer is connected over `path`: the stats say so too, with
    /// the selected pair (`relay_addrs` are our relayed addresses; `relay_transport` says
    /// how our end reaches the TURN server of one). How long it took since the connection
    /// was made.
    pub(crate) fn connected_over(
        &mut self,
        path: PathKind,
        relay_addrs: &[SocketAddr],
        relay_transport: impl FnOnce(SocketAddr) -> Option<RelayTransport>,
        opened: Instant,
    ) -> Duration {
        self.announced();
        self.stats.connected = true;
        self.stats.path = Some(path);
        self.stats.selected_pair = self.last_pair;
        self.stats.selected_pair_types = self.pair_types(relay_addrs);
        if let Some((local, remote, kind)) = self
            .engine
            .own_ice()
            .then(|| self.engine.selected_pair())
            .flatten()
        {
            self.stats.selected_pair_types =
                Some((local, self.remote_kind(remote).unwrap_or(kind)));
        }
        self.stats.relay_transport = self.last_pair.and_then(|(local, _)| relay_transport(local));
        opened.saturating_duration_since(self.created)
    }

    /// The peer announced a candidate at `addr` of `kind`.
    pub(crate) fn remote_candidate(&mut self, addr: SocketAddr, kind: CandidateKind) {
        self.remote_types.insert(addr, kind);
        if !self.stats.remote_candidate_types.contains(&kind) {
            self.stats.remote_candidate_types.push(kind);
        }
    }

    /// The peer announced a host candidate behind an mDNS name, at `port`.
    pub(crate) fn hidden_host_candidate(&mut self, port: u16) {
        self.hidden_host_ports.insert(port);
    }

    /// What kind of candidate the peer's address `addr` is: as announced, or a host one
    /// hidden behind an mDNS name (the port of one, at an address of our own network).
    fn remote_kind(&self, addr: SocketAddr) -> Option<CandidateKind> {
        match self.remote_types.get(&addr) {
            Some(kind) => Some(*kind),
            None if self.hidden_host_ports.contains(&addr.port())
                && super::net::is_local_network(addr.ip()) =>
            {
                Some(CandidateKind::Host)
            }
            None => None,
        }
    }

    /// The addresses the peer announced, with their kinds.
    pub(crate) fn remote_candidates(&self) -> &HashMap<SocketAddr, CandidateKind> {
        &self.remote_types
    }

    /// Our ICE username fragment as routes know it (empty before our first description).
    pub(crate) fn routed_ufrag(&self) -> &str {
        &self.ufrag
    }

    /// Our ICE username fragment changed to `ufrag`; the one routes knew before.
    pub(crate) fn set_routed_ufrag(&mut self, ufrag: String) -> String {
        std::mem::replace(&mut self.ufrag, ufrag)
    }

    /// We sent the first offer: we start ICE restarts too.
    pub(crate) fn is_offerer(&self) -> bool {
        self.offerer
    }

    /// We are sending the first offer.
    pub(crate) fn make_offerer(&mut self) {
        self.offerer = true;
    }

    /// Whether `fingerprint` is the DTLS identity of the peer's description: an offer with
    /// it is an ICE restart of this very connection.
    pub(crate) fn same_identity(&self, fingerprint: Option<&str>) -> bool {
        fingerprint.is_some() && self.remote_fingerprint.as_deref() == fingerprint
    }

    /// The peer's statistics as last counted.
    pub(crate) fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// We started an ICE restart.
    pub(crate) fn count_ice_restart(&mut self) {
        self.stats.ice_restarts += 1;
    }

    /// Brings the stats the periodic round keeps up to date: the loss, the bytes still
    /// queued to the peer, and, for an engine that owns the network, its wire counts.
    pub(crate) fn refresh_stats(&mut self, now: Instant) {
        if let Some(loss) = self.pinger.loss(now) {
            self.stats.loss = loss;
        }
        self.stats.send_queue_bytes = self.queued_bytes();
        self.stats.silent_for = now.saturating_duration_since(self.last_heard);
        if let Some(counts) = self.engine.wire_counts() {
            self.stats.packets_sent = counts.packets_sent;
            self.stats.packets_received = counts.packets_received;
            self.stats.bytes_sent = counts.bytes_sent;
            self.stats.bytes_received = counts.bytes_received;
        }
    }
}
