//! Stable error codes and the decode error.

use serde::{Deserialize, Serialize};

/// Every error the matchmaker can report, as a stable snake_case code.
///
/// Codes never change meaning within protocol v1; new codes may be added, so clients must
/// treat an unknown code as a generic error (it deserializes as [`ErrorCode::Unknown`]).
/// When the server closes the connection because of an error, the WebSocket close reason is
/// the same code string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// The frame is JSON but its `type` is not a message this server knows.
    UnknownType,
    /// A field is missing, has the wrong type or an invalid value.
    InvalidField,
    /// A binary frame was sent; protocol v1 uses text frames only.
    BinaryFrame,
    /// The frame exceeds the server's frame size limit. Closes the connection.
    FrameTooLarge,
    /// Too many messages per second; the message was dropped. Persistent flooding closes
    /// the connection with this code.
    RateLimited,
    /// A message other than `hello` arrived before the `hello` exchange finished.
    NotAuthenticated,
    /// A second `hello` on a connection that is already authenticated.
    AlreadyAuthenticated,
    /// This server requires a token (dev mode is off) and none was given. Closes.
    AuthRequired,
    /// The token is malformed, or its signature does not verify. Closes.
    TokenInvalid,
    /// The token has expired: mint a new one. Closes.
    TokenExpired,
    /// No `hello` within the server's hello timeout. Closes.
    HelloTimeout,
    /// No lobby has that code.
    LobbyNotFound,
    /// The lobby has reached its `max_members`.
    LobbyFull,
    /// The connection is already in a lobby; leave it first.
    AlreadyInLobby,
    /// The request needs a lobby and the connection is not in one.
    NotInLobby,
    /// The server has reached its lobby limit.
    TooManyLobbies,
    /// The server has reached its connection limit. Closes.
    ServerFull,
    /// A signal's target is not a member of the sender's lobby. Nothing was delivered.
    PeerNotInLobby,
    /// The server stopped reading this client's messages fast enough, or the client stopped
    /// reading the server's: its outbound queue overflowed. Closes.
    SlowConsumer,
    /// No frame (not even a pong) arrived within the idle timeout. Closes.
    IdleTimeout,
    /// The server is shutting down. Closes.
    ServerShutdown,
    /// The server hit an internal problem (for example its lobby store failed).
    Internal,
    /// A newer connection of the same player took this connection's lobby membership over
    /// (it rejoined). Closes; the membership lives on in the newer connection, so a client
    /// that receives this must not reconnect on its own.
    Replaced,
    /// The client broke the WebSocket protocol (a malformed or unmasked frame, a bad
    /// control frame, a reserved opcode). Closes with 1002.
    ProtocolError,
    /// A text frame was not valid UTF-8. Closes with 1007.
    InvalidUtf8,
    /// This player already has the most live connections the server allows per player.
    /// Closes; close another connection of this player first.
    TooManyConnections,
    /// The lobby has a member with this player id that proved its identity differently (a
    /// token against none): the place cannot be taken over. Nothing changed.
    IdentityMismatch,
    /// A code this version of the crate does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire and in close reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::InvalidField => "invalid_field",
            Self::BinaryFrame => "binary_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::RateLimited => "rate_limited",
            Self::NotAuthenticated => "not_authenticated",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::AuthRequired => "auth_required",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::HelloTimeout => "hello_timeout",
            Self::LobbyNotFound => "lobby_not_found",
            Self::LobbyFull => "lobby_full",
            Self::AlreadyInLobby => "already_in_lobby",
            Self::NotInLobby => "not_in_lobby",
            Self::TooManyLobbies => "too_many_lobbies",
            Self::ServerFull => "server_full",
            Self::PeerNotInLobby => "peer_not_in_lobby",
            Self::SlowConsumer => "slow_consumer",
            Self::IdleTimeout => "idle_timeout",
            Self::ServerShutdown => "server_shutdown",
            Self::Internal => "internal",
            Self::Replaced => "replaced",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooManyConnections => "too_many_connections",
            Self::IdentityMismatch => "identity_mismatch",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct DecodeError {
    /// [`ErrorCode::BadJson`], [`ErrorCode::UnknownType`] or [`ErrorCode::InvalidField`].
    pub code: ErrorCode,
    /// What was wrong, for a human.
    pub detail: String,
    /// The request id of the offending frame, when it could still be read.
    pub rid: Option<u32>,
}
