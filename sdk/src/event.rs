//! The public vocabulary of a session: what happens ([`Event`]), why a peer is gone
//! ([`DisconnectReason`]), how it is reached ([`PathKind`], [`CandidateKind`],
//! [`RelayTransport`]), the lobby as last heard
//! ([`LobbyInfo`]) and the ICE policy. A leaf: the session, the transport and the stats
//! all speak it, and it imports none of them.

use std::time::Duration;

use squadlink_protocol::{PeerId, PlayerId};

use crate::error::Error;

/// How a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// Directly, at an address the peer announced (same host or LAN, or a public address).
    Host,
    /// Directly, through a NAT mapping (server- or peer-reflexive address).
    Srflx,
    /// Through a TURN relay.
    Relay,
}

impl PathKind {
    /// `host`, `srflx` or `relay`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Relay => "relay",
        }
    }
}

/// An ICE candidate's type: where the address comes from (the `typ` field of a candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address of the peer's own network interface.
    Host,
    /// Its address as a STUN server saw it (server-reflexive: the NAT's mapping).
    Srflx,
    /// An address learned from a connectivity check (peer-reflexive).
    Prflx,
    /// An address on a TURN relay.
    Relay,
}

impl CandidateKind {
    /// The name a candidate's `typ` field uses: `host`, `srflx`, `prflx` or `relay`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// How our end of a relayed path reaches its TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTransport {
    /// TURN over UDP (`turn:` URLs).
    Udp,
    /// TURN over TCP (`turn:…?transport=tcp`), for networks that block outbound UDP.
    Tcp,
    /// TURN over TLS (`turns:` URLs), for networks that allow only TLS.
    Tls,
}

impl RelayTransport {
    /// `udp`, `tcp` or `tls`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// Why a peer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// It left the lobby (or its matchmaker connection ended).
    Left,
    /// The connection was not up within the connect timeout. While the peer stays in the
    /// lobby, the side that offered tries again (after 1 s, then 2, 4 and every 8 s), and
    /// [`Event::PeerConnected`] follows when an attempt succeeds.
    ConnectTimeout,
    /// Nothing was heard from it for the silence timeout.
    Silent,
    /// WebRTC failed for it.
    Failed(String),
    /// The channel lists differ; see [`Error::ChannelMismatch`].
    ChannelMismatch,
    /// The peers cannot talk: their wire versions differ ([`Error::WireVersion`]), or
    /// the peer refused us ([`Error::PeerRefused`]).
    Incompatible,
    /// This session closed it with [`crate::Session::disconnect`].
    ClosedHere,
    /// It reconnected under the same peer id (a restarted game within the matchmaker's
    /// rejoin grace): this connection is replaced, and [`Event::PeerConnected`] follows for
    /// the new one.
    Rejoined,
}

/// Lobby membership as the session last heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyInfo {
    /// Join code.
    pub code: String,
    /// Current host.
    pub host: PeerId,
    /// Members in join order, with their player ids.
    pub members: Vec<(PeerId, PlayerId)>,
    /// What members told the others about themselves (`SessionBuilder::member_data`; only
    /// the game's entries, and only members that gave some).
    pub member_data: Vec<(PeerId, squadlink_protocol::Properties)>,
}

impl LobbyInfo {
    /// Member `peer`'s value for `key`, if it gave one.
    pub fn member_value(&self, peer: PeerId, key: &str) -> Option<&str> {
        self.member_data
            .iter()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, data)| data.get(key))
            .map(String::as_str)
    }
}

/// Something that happened; drain them with [`crate::Session::poll_events`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A player is in the lobby (already there when we joined, or joined after).
    PeerJoined {
        /// Its connection id.
        peer: PeerId,
        /// Its stable player id.
        player: PlayerId,
    },
    /// All channels to the peer are open, on both ends (its first control frame arrived).
    /// Fires again for the same peer id when a peer that rejoined (see
    /// [`DisconnectReason::Rejoined`]), fell silent, or timed out connecting is connected
    /// anew; an ICE restart keeps the connection and does not fire it.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// How it is reached.
        path: PathKind,
        /// From the moment we learned of the peer to all channels open.
        connect_time: Duration,
    },
    /// The peer is gone; nothing more will arrive from it.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A peer sends frames that cannot be decoded (see [`crate::PeerStats::frame_errors`]): they
    /// are dropped and counted, and nothing else is affected. Reported on the first error,
    /// then at most once a second while errors go on. A game may ignore it, or report and
    /// mute the player.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// Its undecodable frames so far.
        frame_errors: u64,
    },
    /// Lobby membership or host changed.
    LobbyChanged(LobbyInfo),
    /// A problem that did not end the session (a peer-level failure, a full send buffer…).
    Error(Error),
    /// The matchmaker connection dropped. Connected peers keep working; the session
    /// reconnects with backoff and resumes its lobby under the same peer id
    /// ([`Event::MatchmakerRestored`]). Until then no new peer can connect.
    MatchmakerLost(Error),
    /// Back in the lobby after [`Event::MatchmakerLost`]. `resumed`: under the same peer id
    /// (the matchmaker kept the membership); otherwise the membership had expired, the
    /// session rejoined as a new member, and every peer reconnects.
    MatchmakerRestored {
        /// Same peer id as before.
        resumed: bool,
    },
    /// The session ended (closed, or the matchmaker could not be reached again within
    /// [`crate::SessionBuilder::reconnect_window`]). No more events follow.
    Closed(Option<Error>),
}

/// Whether ICE may use direct paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Direct paths first; a relay only where nothing direct works (decided per peer).
    #[default]
    All,
    /// Only TURN relays: hides players' addresses from each other.
    RelayOnly,
}
