//! The messages of protocol v1.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::errors::{DecodeError, ErrorCode};

/// String properties of a lobby or metadata of a member: free-form keys and values.
pub type Properties = BTreeMap<String, String>;

/// A connection's id, assigned by the server: a random number below 2^53 (safe in
/// JavaScript), so it cannot be guessed and does not repeat across server restarts. A
/// reconnect gets a new one (the [`PlayerId`] stays), unless it resumes a lobby membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// A player's stable identity, taken from the auth token (or chosen in dev mode).
/// 1–64 characters from `A–Z a–z 0–9 _ - . @`; never contains `:` (it becomes part of a
/// TURN username).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlayerId(pub String);

impl PlayerId {
    /// The longest player id the protocol accepts.
    pub const MAX_LEN: usize = 64;

    /// Checks the id's length and alphabet; returns it wrapped when valid.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
        ok.then(|| Self(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WebRTC signaling payload, relayed verbatim (apart from the stamped sender) between two
/// members of one lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// An SDP offer.
    Offer {
        /// The session description.
        sdp: String,
    },
    /// An SDP answer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The candidate line, as in `RTCIceCandidate.candidate`.
        candidate: String,
        /// The media stream identification tag, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// The index of the m-line the candidate belongs to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
        /// The ICE username fragment the candidate belongs to (tells ICE restarts apart).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username_fragment: Option<String>,
    },
    /// The sender has no more candidates for this ICE generation.
    EndOfCandidates,
    /// The sender will not connect to the receiver, and says why: the receiver stops
    /// waiting for it and tells its user.
    Refused {
        /// Why, as a code: `channel_mismatch` (the channel lists differ) or
        /// `wire_version` (the peer wire contracts differ); see `docs/wire.md`.
        reason: String,
        /// What differs and what to do, for a person.
        message: String,
    },
    /// Anything else the two clients agree on; the server does not look inside.
    Opaque {
        /// Free-form payload.
        payload: String,
    },
}

/// One member of a lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's connection id.
    pub peer_id: PeerId,
    /// The member's stable player id.
    pub player_id: PlayerId,
    /// Metadata the member gave when it created or joined the lobby.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: Properties,
}

/// The whole state of a lobby, pushed to every member on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lobby {
    /// The join code.
    pub code: String,
    /// Increases by at least one on every change; apply a state only if its version is
    /// higher than the last one applied.
    pub version: u64,
    /// The current host (the creator, then the longest-present member).
    pub host: PeerId,
    /// The most members the lobby admits.
    pub max_members: u8,
    /// Whether the lobby appears in `list_lobbies`.
    pub public: bool,
    /// The lobby's properties, set at creation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: Properties,
    /// Members in join order (earliest first).
    pub members: Vec<Member>,
}

/// A public lobby as listed by `list_lobbies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbySummary {
    /// The join code.
    pub code: String,
    /// How many members it has now.
    pub members: u8,
    /// The most members it admits.
    pub max_members: u8,
    /// The lobby's properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: Properties,
}

/// One ICE server entry, in the shape of the browser's `RTCIceServer` dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username: `<unix expiry>:<player id>` (coturn REST format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password: base64(HMAC-SHA1(secret, username)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Unix time (seconds) after which the TURN credential is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Why a member left a lobby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member sent `leave_lobby`.
    Left,
    /// The member's connection closed or was closed by the server.
    Disconnected,
}

/// The limits a server enforces, announced in [`ServerMessage::Welcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest text frame accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Sustained messages per second per connection.
    pub messages_per_second: u32,
    /// Messages that may be sent at once before the sustained rate applies.
    pub message_burst: u32,
    /// Largest `max_members` a lobby may have.
    pub max_members_per_lobby: u8,
    /// Most entries in lobby properties or member data.
    pub max_properties: u8,
    /// Server → client messages that may wait for one client before it is disconnected
    /// as a slow consumer.
    pub outbound_queue: u32,
    /// The server closes a connection that sent nothing (no frame, no pong) for this long.
    pub idle_timeout_secs: u32,
}

/// A message from a client to the server.
///
/// Every request may carry `rid`, a client-chosen request id that the server copies into
/// its reply or error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Must be the first message. Authenticates with `token`, or (`?token=` in the URL)
    /// with the one given there; in dev mode without a token.
    Hello {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// A signed token from the game's backend.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Dev mode only: the player id to use without a token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        player_id: Option<String>,
    },
    /// Creates a lobby and joins it as host.
    CreateLobby {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// The most members, 2 up to the server's `max_members_per_lobby`.
        max_members: u8,
        /// Listed by `list_lobbies` when true.
        #[serde(default)]
        public: bool,
        /// Free-form properties (game mode, map, region…), filterable in listings.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        properties: Properties,
        /// This member's metadata, visible to the other members.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        member_data: Properties,
    },
    /// Joins a lobby by its code (case-insensitive).
    JoinLobby {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// The lobby's join code.
        code: String,
        /// This member's metadata, visible to the other members.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        member_data: Properties,
    },
    /// Leaves the current lobby.
    LeaveLobby {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
    },
    /// Lists public lobbies that are not full and whose properties contain every
    /// key/value pair of `filter`.
    ListLobbies {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// Required property values.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        filter: Properties,
        /// At most this many results (server cap 100, default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u16>,
    },
    /// Relays `data` to one member of the sender's lobby.
    Signal {
        /// The target's peer id.
        to: PeerId,
        /// The payload.
        data: Signal,
    },
    /// Asks for fresh ICE servers (new TURN credentials) while in a lobby.
    RequestIceServers {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
    },
    /// Application-level keep-alive; answered with `pong`.
    Ping {
        /// Copied into the pong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// Opt-in connection statistics, sent once per peer connection after it opened: the
    /// kind of path it got and how long it took. No addresses. The server only counts them
    /// (its metrics); there is no reply.
    Report {
        /// The path of the peer connection.
        path: ReportedPath,
        /// Milliseconds from learning of the peer to all channels open.
        connect_ms: u32,
    },
}

/// The kind of path a peer connection took, as reported by `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedPath {
    /// Directly, at an address the peer announced.
    Host,
    /// Directly, through a NAT mapping (server- or peer-reflexive address).
    Srflx,
    /// Through a TURN relay.
    Relay,
}

impl ReportedPath {
    /// The path as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Relay => "relay",
        }
    }
}

impl ClientMessage {
    /// The message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::CreateLobby { .. } => "create_lobby",
            Self::JoinLobby { .. } => "join_lobby",
            Self::LeaveLobby { .. } => "leave_lobby",
            Self::ListLobbies { .. } => "list_lobbies",
            Self::Signal { .. } => "signal",
            Self::RequestIceServers { .. } => "request_ice_servers",
            Self::Ping { .. } => "ping",
            Self::Report { .. } => "report",
        }
    }

    /// Every `type` a client may send.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "create_lobby",
        "join_lobby",
        "leave_lobby",
        "list_lobbies",
        "signal",
        "request_ice_servers",
        "ping",
        "report",
    ];

    /// Parses one text frame, classifying failures as `bad_json`, `unknown_type` or
    /// `invalid_field`.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        decode(text, Self::TYPES)
    }

    /// Serializes to one text frame.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The request id, if the message carries one.
    pub fn rid(&self) -> Option<u32> {
        match self {
            Self::Hello { rid, .. }
            | Self::CreateLobby { rid, .. }
            | Self::JoinLobby { rid, .. }
            | Self::LeaveLobby { rid }
            | Self::ListLobbies { rid, .. }
            | Self::RequestIceServers { rid } => *rid,
            Self::Signal { .. } | Self::Ping { .. } | Self::Report { .. } => None,
        }
    }
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `hello`: who this connection is and what the server enforces.
    Welcome {
        /// Request id of the hello.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// This connection's id.
        peer_id: PeerId,
        /// The authenticated (or dev-mode) player id.
        player_id: PlayerId,
        /// Always [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// Server name and version, for logs.
        server: String,
        /// Whether the server accepts players without a token.
        dev_mode: bool,
        /// The limits in force.
        limits: Limits,
        /// Which server instance (its lobby state) this connection talks to: random, and new
        /// whenever the server restarts with its lobbies lost. A client that reconnects and
        /// sees a different instance knows its lobby and peer id are gone: it must not
        /// rejoin by the old lobby code (that code may now name a stranger's lobby).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// Reply to `create_lobby` or `join_lobby`.
    LobbyJoined {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// The lobby as it is now, including this member.
        lobby: Lobby,
        /// ICE servers (STUN, and TURN with fresh credentials) for this player.
        ice_servers: Vec<IceServer>,
        /// Set when this join resumed the player's earlier membership (it reconnected within
        /// the server's rejoin grace): the peer id it has in the lobby from now on, which
        /// replaces the one `welcome` gave. The other members were not told anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_peer_id: Option<PeerId>,
    },
    /// The lobby changed (join, leave, host hand-over).
    LobbyState {
        /// The lobby as it is now.
        lobby: Lobby,
    },
    /// Someone joined the lobby. Sent before the `lobby_state` of the same change.
    PeerJoined {
        /// The lobby's code.
        code: String,
        /// The new member.
        peer: Member,
    },
    /// Someone left the lobby. Sent before the `lobby_state` of the same change.
    PeerLeft {
        /// The lobby's code.
        code: String,
        /// Who left.
        peer_id: PeerId,
        /// Why.
        reason: LeaveReason,
    },
    /// Reply to `leave_lobby`.
    LobbyLeft {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// The lobby that was left.
        code: String,
    },
    /// This matchmaker node is draining (shutting down): reconnect now, to another node of
    /// the cluster if you know one, and join your lobby again to resume your place (same
    /// peer id; nobody hears you left). The node closes the connection with
    /// `server_shutdown` after `within_ms` milliseconds.
    Moving {
        /// Milliseconds until this node closes the connection.
        within_ms: u32,
    },
    /// Reply to `list_lobbies`.
    LobbyList {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// Matching lobbies, most recently created first.
        lobbies: Vec<LobbySummary>,
    },
    /// Reply to `request_ice_servers`.
    IceServers {
        /// Request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// Fresh ICE servers.
        ice_servers: Vec<IceServer>,
    },
    /// A relayed signal; `from` is stamped by the server.
    Signal {
        /// The sender's peer id.
        from: PeerId,
        /// The payload.
        data: Signal,
    },
    /// Reply to `ping`.
    Pong {
        /// The ping's nonce.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// A request failed, or the connection is about to be closed.
    Error {
        /// Request id of the failed request, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<u32>,
        /// Stable code.
        code: ErrorCode,
        /// What happened and what to do, for a human.
        message: String,
    },
}

impl ServerMessage {
    /// Every `type` the server may send.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "lobby_joined",
        "lobby_state",
        "peer_joined",
        "peer_left",
        "lobby_left",
        "moving",
        "lobby_list",
        "ice_servers",
        "signal",
        "pong",
        "error",
    ];

    /// Parses one text frame from the server.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        decode(text, Self::TYPES)
    }

    /// Serializes to one text frame.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Shorthand for an [`ServerMessage::Error`].
    pub fn error(rid: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            rid,
            code,
            message: message.into(),
        }
    }
}

/// Decodes a tagged message; on failure, looks at the envelope alone to tell a syntax error,
/// an unknown type and a bad field apart.
fn decode<T: serde::de::DeserializeOwned>(text: &str, known: &[&str]) -> Result<T, DecodeError> {
    let err = match serde_json::from_str::<T>(text) {
        Ok(msg) => return Ok(msg),
        Err(err) => err,
    };
    if err.is_syntax() || err.is_eof() {
        return Err(DecodeError {
            code: ErrorCode::BadJson,
            detail: format!("not valid JSON: {err}"),
            rid: None,
        });
    }
    let Ok(envelope) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    else {
        return Err(DecodeError {
            code: ErrorCode::InvalidField,
            detail: "a message must be a JSON object with a string field \"type\"".into(),
            rid: None,
        });
    };
    let rid = envelope
        .get("rid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    match envelope.get("type") {
        Some(serde_json::Value::String(ty)) if !known.contains(&ty.as_str()) => Err(DecodeError {
            code: ErrorCode::UnknownType,
            detail: format!(
                "unknown message type {ty:?}; known types: {}",
                known.join(", ")
            ),
            rid,
        }),
        Some(serde_json::Value::String(ty)) => Err(DecodeError {
            code: ErrorCode::InvalidField,
            detail: format!("invalid {ty:?} message: {err}"),
            rid,
        }),
        _ => Err(DecodeError {
            code: ErrorCode::InvalidField,
            detail: "a message must have a string field \"type\"".into(),
            rid,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_decode_failures() {
        let bad = |s: &str| ClientMessage::from_json(s).err().map(|e| (e.code, e.rid));
        assert_eq!(bad("{not json"), Some((ErrorCode::BadJson, None)));
        assert_eq!(bad("[1,2]"), Some((ErrorCode::InvalidField, None)));
        assert_eq!(
            bad(r#"{"rid":3}"#),
            Some((ErrorCode::InvalidField, Some(3)))
        );
        assert_eq!(
            bad(r#"{"type":"fly","rid":4}"#),
            Some((ErrorCode::UnknownType, Some(4)))
        );
        assert_eq!(
            bad(r#"{"type":"join_lobby","rid":5,"code":7}"#),
            Some((ErrorCode::InvalidField, Some(5)))
        );
        assert_eq!(
            bad(r#"{"type":"signal","to":"x","data":{"kind":"offer","sdp":"v=0"}}"#),
            Some((ErrorCode::InvalidField, None))
        );
    }

    #[test]
    fn signal_round_trips_and_ignores_a_forged_sender() {
        let text = r#"{"type":"signal","to":9,"from":1,"data":{"kind":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdp_mid":"0"}}"#;
        let msg = ClientMessage::from_json(text);
        let expected = ClientMessage::Signal {
            to: PeerId(9),
            data: Signal::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: None,
                username_fragment: None,
            },
        };
        assert_eq!(msg, Ok(expected.clone()));
        let again = expected.to_json().map(|t| ClientMessage::from_json(&t));
        assert!(matches!(again, Ok(Ok(m)) if m == expected));
    }

    #[test]
    fn a_refusal_signal_reads_as_documented() {
        let text = r#"{"type":"signal","to":9,"data":{"kind":"refused","reason":"channel_mismatch","message":"my channels are [a], yours are [b]"}}"#;
        assert_eq!(
            ClientMessage::from_json(text),
            Ok(ClientMessage::Signal {
                to: PeerId(9),
                data: Signal::Refused {
                    reason: "channel_mismatch".into(),
                    message: "my channels are [a], yours are [b]".into(),
                },
            })
        );
    }

    #[test]
    fn unknown_error_codes_stay_readable() {
        let msg = ServerMessage::from_json(r#"{"type":"error","code":"brand_new","message":"x"}"#);
        assert!(matches!(
            msg,
            Ok(ServerMessage::Error {
                code: ErrorCode::Unknown,
                ..
            })
        ));
    }

    #[test]
    fn player_ids_reject_colons_and_oversize() {
        assert!(PlayerId::parse("alice_01@example.com").is_some());
        assert!(PlayerId::parse("a:b").is_none());
        assert!(PlayerId::parse("").is_none());
        assert!(PlayerId::parse(&"x".repeat(65)).is_none());
    }

    #[test]
    fn every_listed_type_is_a_real_variant() {
        for ty in ClientMessage::TYPES {
            let err = serde_json::from_str::<ClientMessage>(&format!(r#"{{"type":"{ty}"}}"#));
            assert!(!format!("{err:?}").contains("unknown variant"), "{ty}");
        }
        for ty in ServerMessage::TYPES {
            let err = serde_json::from_str::<ServerMessage>(&format!(r#"{{"type":"{ty}"}}"#));
            assert!(!format!("{err:?}").contains("unknown variant"), "{ty}");
        }
    }

    /// Mutated and truncated versions of valid frames (a small deterministic fuzz): the
    /// decoder returns a value or a classified error, never panics, and an error carries
    /// one of the three decode codes.
    #[test]
    fn mutated_frames_never_panic() {
        let seeds = [
            r#"{"type":"hello","rid":1,"token":"a.b.c"}"#,
            r#"{"type":"create_lobby","rid":2,"max_members":4,"public":true,"properties":{"m":"ctf"}}"#,
            r#"{"type":"signal","to":9,"data":{"kind":"candidate","candidate":"c","sdp_mid":"0","sdp_mline_index":0}}"#,
            r#"{"type":"list_lobbies","filter":{"a":"b"},"limit":3}"#,
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = br#"{}[]":,0123456789-.etruflasn\ "#;
        for round in 0..20_000u32 {
            let seed = seeds[(next() % seeds.len() as u64) as usize].as_bytes();
            let mut bytes = seed.to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
                if bytes.is_empty() {
                    bytes.push(b'{');
                }
            }
            if round % 7 == 0 {
                bytes.truncate((next() % bytes.len() as u64) as usize);
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = ClientMessage::from_json(&text) {
                assert!(
                    matches!(
                        e.code,
                        ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::InvalidField
                    ),
                    "{text}"
                );
            }
        }
    }
}
