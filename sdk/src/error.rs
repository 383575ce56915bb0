//! The SDK's error type. Every failure a network, a peer or a caller can cause is one of
//! these values (or an [`crate::Event`] carrying one); the SDK does not panic on them.

use squadlink_protocol::{ErrorCode, PeerId};

use crate::channel::Channel;

/// Everything that can go wrong in a [`crate::Session`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given settings that cannot work.
    #[error("invalid session settings: {0}")]
    Config(String),
    /// The matchmaker could not be reached or the WebSocket failed.
    #[error("cannot reach the matchmaker at {url}: {reason} (is it running? check the URL)")]
    Signaling {
        /// The matchmaker URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The matchmaker refused a request.
    #[error("the matchmaker refused: {code}: {message}")]
    Matchmaker {
        /// Its stable error code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The matchmaker restarted and lost its lobbies while the session was away from it
    /// (its `welcome` named a new server instance). The session does not rejoin the old
    /// lobby code, which may now belong to a stranger's lobby; the peers already connected
    /// stay connected, but nobody new can join this group through the matchmaker.
    #[error(
        "the matchmaker restarted and lost lobby {lobby}: the peers already connected stay connected, but new players cannot join it; start a new session (create or join a lobby) to meet through the matchmaker again"
    )]
    MatchmakerRestarted {
        /// The lobby code the session was in.
        lobby: String,
    },
    /// Something took longer than its timeout.
    #[error("{what} timed out after {secs} s")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        secs: u64,
    },
    /// A peer declared a different channel list. Both sides report this; they do not connect.
    #[error(
        "channel lists differ with {peer}: ours is [{ours}], theirs is [{theirs}]; every player must declare the same channels in the same order"
    )]
    ChannelMismatch {
        /// The other peer.
        peer: PeerId,
        /// Our channel list.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// A peer announced another version of the peer wire contract (`docs/wire.md`). Both
    /// sides report this; they do not connect.
    #[error(
        "{peer} speaks Squadlink wire version {theirs}, this session speaks {ours}; players must run releases with the same wire version (docs/wire.md)"
    )]
    WireVersion {
        /// The other peer.
        peer: PeerId,
        /// Our wire version.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// A peer refused to connect to us, saying why (a peer that checks compatibility on
    /// its own side, such as a browser peer).
    #[error("{peer} refused to connect ({reason}): {message}")]
    PeerRefused {
        /// The other peer.
        peer: PeerId,
        /// Its reason code (`channel_mismatch`, `wire_version`).
        reason: String,
        /// What it said.
        message: String,
    },
    /// No channel with that index was declared.
    #[error("{0:?} was not declared (declare channels with SessionBuilder::channel)")]
    UnknownChannel(Channel),
    /// A message is larger than the channel allows.
    #[error(
        "message of {size} bytes is too large for {channel:?} (limit {limit} bytes); split it or raise SessionBuilder::max_message_size"
    )]
    MessageTooLarge {
        /// The channel.
        channel: Channel,
        /// The message size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The peer's send buffer is full on a reliable channel; the message was not sent
    /// (counted in [`crate::PeerStats::refused_send_buffer_full`]; reported on the first
    /// refusal, then at most once a second per peer). A peer that stops reading fills it.
    #[error(
        "send buffer to {peer} is full on {channel:?}; the network cannot keep up (or the peer does not read): send less, or disconnect the peer"
    )]
    SendBufferFull {
        /// The peer.
        peer: PeerId,
        /// The channel.
        channel: Channel,
    },
    /// A channel's inbox is full because the game does not read it: a message from `peer`
    /// was dropped (counted in [`crate::PeerStats::dropped_unread`]; reported on the first
    /// drop, then at most once a second per peer).
    #[error(
        "{channel:?} holds {limit} bytes that the game has not read; messages from {peer} are dropped: call Session::receive for every channel each frame, or raise SessionBuilder::inbox_limit"
    )]
    InboxFull {
        /// The peer whose message was dropped.
        peer: PeerId,
        /// The channel.
        channel: Channel,
        /// The inbox limit in bytes.
        limit: usize,
    },
    /// A typed message could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// WebRTC failed for one peer (that peer is disconnected; others are unaffected).
    #[error("WebRTC error with {peer}: {reason}")]
    WebRtc {
        /// The peer.
        peer: PeerId,
        /// What failed.
        reason: String,
    },
    /// A STUN or TURN server could not be used (the session goes on without it).
    #[error("ICE server problem: {0}")]
    IceServer(String),
    /// Network I/O failed (binding the UDP socket, for example).
    #[error("network error: {0}")]
    Io(String),
    /// The session has stopped (it was closed, or its network thread ended).
    #[error("the session is closed")]
    Closed,
}

impl Error {
    /// Whether this says the lobby we try to rejoin no longer exists (the matchmaker
    /// restarted, or dropped the lobby): then there is nothing to go back to.
    pub(crate) fn means_lobby_gone(&self) -> bool {
        matches!(self, Error::MatchmakerRestarted { .. })
            || matches!(self, Error::Matchmaker { code, .. } if *code == ErrorCode::LobbyNotFound)
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
