//! What the session core hands out: datagrams to send, messages for the matchmaker,
//! requests for slow work, and — straight to the game's side of the bridge — events,
//! messages and stats.
//!
//! The core never does I/O itself: it fills an [`Out`] and the shell (the tokio loop in
//! `transport/native.rs`) drains it after every input, writing datagrams to the socket or a
//! TURN stream, signaling messages to the matchmaker link, and starting the work a
//! [`Request`] asks for.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use squadlink_protocol::{
    ClientMessage, IceServer, PeerId, PlayerId, Properties, ReportedPath, Signal,
};

use crate::bridge::Shared;
use crate::error::Error;
use crate::event::{DisconnectReason, Event, LobbyInfo, PathKind};
use crate::media::MediaIn;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Out of the UDP socket to this address.
    Udp(SocketAddr),
    /// Down the TCP or TLS stream of the TURN client with this id.
    Stream(u64),
}

/// One datagram to send.
#[derive(Debug)]
pub(crate) struct Transmit {
    pub(crate) data: BytesMut,
    pub(crate) via: Via,
}

/// Slow work the core cannot do itself; its result comes back as an input.
#[derive(Debug)]
pub(crate) enum Request {
    /// Look up the ICE servers' addresses and start a STUN/TURN client for each; the clients
    /// come back through `Core::gatherers_ready`.
    Resolve {
        servers: Vec<IceServer>,
        relay_only: bool,
        ipv4: bool,
    },
    /// Connect to the matchmaker again and rejoin the lobby by `code`; the outcome comes
    /// back through `Core::rejoined` or `Core::rejoin_failed`.
    Reconnect {
        /// The matchmaker URL to try (the next one after the link dropped, when the session
        /// has fallbacks).
        url: String,
        /// Named in dev mode (no token); with a token the server takes it from there.
        player: Option<PlayerId>,
        code: String,
        data: Properties,
        /// The instance we joined through (a restarted server is not rejoined by code).
        instance: Option<String>,
    },
    /// Drop the matchmaker connection (it fell silent, or was made from an old address).
    AbandonLink,
}

/// The core's outputs, drained by the shell after every input.
pub(crate) struct Out {
    /// The game's side: events, inboxes, stats, the lobby snapshot.
    pub(crate) shared: Arc<Shared>,
    /// The voice pipeline's inbox, once voice is started.
    pub(crate) media: Option<crossbeam_channel::Sender<MediaIn>>,
    /// The video pipeline's inbox, once video is started.
    pub(crate) video: Option<crossbeam_channel::Sender<MediaIn>>,
    /// Tells the game's side our identity when it changes.
    ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
    signals: Vec<ClientMessage>,
    transmits: VecDeque<Transmit>,
    requests: VecDeque<Request>,
}

impl Out {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
    ) -> Self {
        Self {
            shared,
            media: None,
            video: None,
            ident,
            signals: Vec::new(),
            transmits: VecDeque::new(),
            requests: VecDeque::new(),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.shared.emit(event);
    }

    /// Tells the game's side who we are now.
    pub(crate) fn identity(&self, me: PeerId, player: PlayerId) {
        let _ = self.ident.send((me, player));
    }

    /// A signal for peer `to`, relayed by the matchmaker.
    pub(crate) fn signal(&mut self, to: PeerId, data: Signal) {
        self.signals.push(ClientMessage::Signal { to, data });
    }

    /// Any other message for the matchmaker.
    pub(crate) fn tell_matchmaker(&mut self, msg: ClientMessage) {
        self.signals.push(msg);
    }

    /// Forgets the signals not sent yet (our lobby membership is new).
    pub(crate) fn clear_signals(&mut self) {
        self.signals.clear();
    }

    pub(crate) fn transmit(&mut self, via: Via, data: BytesMut) {
        self.transmits.push_back(Transmit { data, via });
    }

    pub(crate) fn request(&mut self, request: Request) {
        self.requests.push_back(request);
    }

    /// Hands the media pipeline `msg` (never waits: a full inbox drops it).
    pub(crate) fn give_voice(&self, msg: MediaIn) {
        if let Some(media) = &self.media {
            let _ = media.try_send(msg);
        }
    }

    /// Hands the video pipeline `msg` (never waits: a full inbox drops it).
    pub(crate) fn give_video(&self, msg: MediaIn) {
        if let Some(video) = &self.video {
            let _ = video.try_send(msg);
        }
    }

    /// Tells the matchmaker the path and connect time of a connection just announced
    /// (the game opted in: `SessionBuilder::report_connections`; no addresses).
    pub(crate) fn report_connection(&mut self, path: PathKind, took: Duration) {
        let path = match path {
            PathKind::Host => ReportedPath::Host,
            PathKind::Srflx => ReportedPath::Srflx,
            PathKind::Relay => ReportedPath::Relay,
        };
        let connect_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        self.tell_matchmaker(ClientMessage::Report { path, connect_ms });
    }

    /// The lobby as it stands now: for `Session::lobby` and as an event.
    pub(crate) fn publish_lobby(&self, info: LobbyInfo) {
        if let Ok(mut slot) = self.shared.lobby.write() {
            *slot = Some(info.clone());
        }
        self.emit(Event::LobbyChanged(info));
    }

    /// A member we cannot connect to: its channel list or wire version differs from ours
    /// (`err` says how). The game is told, and so is the member (a `refused` signal), so
    /// that it does not wait for us.
    pub(crate) fn incompatible(&mut self, peer: PeerId, err: Error) {
        let (code, message, reason) = match &err {
            Error::ChannelMismatch { ours, theirs, .. } => (
                "channel_mismatch",
                format!(
                    "my channels are [{ours}], yours are [{theirs}]; every player must declare the same channels in the same order (docs/wire.md §1)"
                ),
                DisconnectReason::ChannelMismatch,
            ),
            Error::WireVersion { ours, theirs, .. } => (
                "wire_version",
                format!(
                    "I speak wire version {ours}, you announced {theirs}; players must run releases with the same wire version (docs/wire.md §1)"
                ),
                DisconnectReason::Incompatible,
            ),
            other => (
                "incompatible",
                other.to_string(),
                DisconnectReason::Incompatible,
            ),
        };
        self.signal(
            peer,
            Signal::Refused {
                reason: code.to_string(),
                message,
            },
        );
        self.emit(Event::Error(err));
        self.emit(Event::PeerDisconnected { peer, reason });
    }

    /// `peer` refused to connect to us for `reason` (it said `message`); its connection,
    /// if any, is gone (`was_connected`: one the game knew).
    pub(crate) fn refused(
        &self,
        peer: PeerId,
        reason: String,
        message: String,
        was_connected: bool,
    ) {
        tracing::warn!(%peer, %reason, %message, "the peer refused to connect");
        self.emit(Event::Error(Error::PeerRefused {
            peer,
            reason,
            message,
        }));
        if was_connected {
            self.peer_gone(peer, DisconnectReason::Incompatible);
        } else {
            self.emit(Event::PeerDisconnected {
                peer,
                reason: DisconnectReason::Incompatible,
            });
        }
    }

    /// A peer connection is gone for `reason`: its stats go, the media pipelines forget
    /// it, and the game is told.
    pub(crate) fn peer_gone(&self, peer: PeerId, reason: DisconnectReason) {
        if let Ok(mut stats) = self.shared.stats.write() {
            stats.remove(&peer);
        }
        self.give_voice(MediaIn::PeerGone { peer });
        self.give_video(MediaIn::PeerGone { peer });
        self.emit(Event::PeerDisconnected { peer, reason });
    }

    /// The next datagram to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next datagram if it goes out of the UDP socket; one for a TURN stream, and
    /// everything behind it, stays for the shell's loop.
    pub(crate) fn poll_udp_transmit(&mut self) -> Option<(BytesMut, SocketAddr)> {
        match self.transmits.front() {
            Some(Transmit {
                via: Via::Udp(to), ..
            }) => {
                let to = *to;
                self.transmits.pop_front().map(|t| (t.data, to))
            }
            _ => None,
        }
    }

    /// Whether anything waits that only the shell's loop carries out: datagrams for a
    /// TURN stream, matchmaker messages, requests.
    pub(crate) fn wants_shell(&self) -> bool {
        !(self.transmits.is_empty() && self.signals.is_empty() && self.requests.is_empty())
    }

    /// The matchmaker messages queued since the last call.
    pub(crate) fn drain_signals(&mut self) -> std::vec::Drain<'_, ClientMessage> {
        self.signals.drain(..)
    }

    /// Keeps at most `limit` queued matchmaker messages (the newest): the link is down.
    pub(crate) fn trim_signals(&mut self, limit: usize) {
        let excess = self.signals.len().saturating_sub(limit);
        self.signals.drain(..excess);
    }

    /// The next request.
    pub(crate) fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }
}
