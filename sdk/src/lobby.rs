//! Entering a lobby: which lobby ([`LobbyRef`]), what the matchmaker answered ([`Joined`]),
//! and the handshake that gets there ([`Handshake`]: hello, welcome, create or join,
//! joined) as pure logic. The native link (`signaling.rs`, tokio-tungstenite) and the
//! browser's (`transport/web`, the page's `WebSocket`) both drive it.

use std::time::Duration;

use squadlink_protocol::{
    ClientMessage, IceServer, Lobby, PeerId, PlayerId, Properties, ServerMessage,
};

use crate::error::{Error, Result};

/// How long connecting, hello and joining may take each.
pub(crate) const SIGNALING_TIMEOUT: Duration = Duration::from_secs(10);

/// Which lobby to enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LobbyRef {
    /// Create a new lobby.
    Create {
        /// Most members (2 up to the server's limit).
        max_members: u8,
        /// Listed publicly.
        public: bool,
        /// Free-form properties.
        properties: Properties,
    },
    /// Join an existing lobby by its code.
    Code(String),
}

impl LobbyRef {
    /// A private lobby for up to `max_members` players.
    pub fn create(max_members: u8) -> Self {
        Self::Create {
            max_members,
            public: false,
            properties: Properties::new(),
        }
    }
}

/// What the matchmaker told us when we entered the lobby.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) me: PeerId,
    /// The join took over this player's earlier membership (same peer id as before).
    pub(crate) resumed: bool,
    pub(crate) player: PlayerId,
    pub(crate) lobby: Lobby,
    pub(crate) ice_servers: Vec<IceServer>,
    /// The server instance `welcome` named (see `ServerMessage::Welcome::instance`).
    pub(crate) instance: Option<String>,
}

/// The handshake's next step.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this and wait for the next reply.
    Send(ClientMessage),
    /// Not the reply we wait for: keep waiting.
    Wait,
    /// In the lobby.
    Done(Joined),
}

/// Where the handshake is.
enum Stage {
    AwaitWelcome,
    AwaitJoined {
        me: PeerId,
        player: PlayerId,
        instance: Option<String>,
    },
    Finished,
}

/// The join handshake as a state machine: [`Handshake::start`] gives the hello to send,
/// then each server message goes to [`Handshake::handle`] until it says [`Step::Done`].
pub(crate) struct Handshake {
    lobby: LobbyRef,
    member_data: Properties,
    /// With `known_instance` (a reconnection), a server that names another instance has
    /// restarted and lost the lobby: the join is not sent (the old code may name a
    /// stranger's lobby by now) and the result is [`Error::MatchmakerRestarted`].
    known_instance: Option<String>,
    stage: Stage,
}

impl Handshake {
    /// The handshake for entering `lobby` with `member_data`, and the hello that opens it
    /// (with `token` if given, else the dev-mode `player_id`).
    pub(crate) fn start(
        (token, player_id): (Option<String>, Option<String>),
        lobby: &LobbyRef,
        member_data: Properties,
        known_instance: Option<&str>,
    ) -> (Self, ClientMessage) {
        let this = Self {
            lobby: lobby.clone(),
            member_data,
            known_instance: known_instance.map(str::to_owned),
            stage: Stage::AwaitWelcome,
        };
        let hello = ClientMessage::Hello {
            rid: None,
            token,
            player_id,
        };
        (this, hello)
    }

    /// One message from the matchmaker: what to do next, or why entering failed (its
    /// `error` message, or a restarted server on a reconnection).
    pub(crate) fn handle(&mut self, msg: ServerMessage) -> Result<Step> {
        if let ServerMessage::Error { code, message, .. } = msg {
            return Err(Error::Matchmaker { code, message });
        }
        match (&self.stage, msg) {
            (
                Stage::AwaitWelcome,
                ServerMessage::Welcome {
                    peer_id,
                    player_id,
                    instance,
                    ..
                },
            ) => {
                if let (Some(known), Some(now), LobbyRef::Code(code)) = (
                    self.known_instance.as_deref(),
                    instance.as_deref(),
                    &self.lobby,
                ) && known != now
                {
                    return Err(Error::MatchmakerRestarted {
                        lobby: code.clone(),
                    });
                }
                self.stage = Stage::AwaitJoined {
                    me: peer_id,
                    player: player_id,
                    instance,
                };
                Ok(Step::Send(self.entry_request()))
            }
            (
                Stage::AwaitJoined { .. },
                ServerMessage::LobbyJoined {
                    lobby,
                    ice_servers,
                    resumed_peer_id,
                    ..
                },
            ) => {
                let Stage::AwaitJoined {
                    me,
                    player,
                    instance,
                } = std::mem::replace(&mut self.stage, Stage::Finished)
                else {
                    return Ok(Step::Wait);
                };
                Ok(Step::Done(Joined {
                    me: resumed_peer_id.unwrap_or(me),
                    resumed: resumed_peer_id.is_some(),
                    player,
                    lobby,
                    ice_servers,
                    instance,
                }))
            }
            _ => Ok(Step::Wait),
        }
    }

    /// Creates the lobby or joins it by code.
    fn entry_request(&self) -> ClientMessage {
        let member_data = self.member_data.clone();
        match &self.lobby {
            LobbyRef::Create {
                max_members,
                public,
                properties,
            } => ClientMessage::CreateLobby {
                rid: None,
                max_members: *max_members,
                public: *public,
                properties: properties.clone(),
                member_data,
            },
            LobbyRef::Code(code) => ClientMessage::JoinLobby {
                rid: None,
                code: code.clone(),
                member_data,
            },
        }
    }
}
