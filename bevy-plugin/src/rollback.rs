//! GGRS rollback over Squadlink (cargo feature `ggrs`): GGRS's socket over one unreliable
//! channel of a session, the player order every member agrees on, and the P2P session
//! built from the lobby — for `bevy_ggrs` (re-exported here with `ggrs`, at the versions
//! this crate is built with).
//!
//! ```no_run
//! # fn demo(session: &squadlink::Session) -> Result<(), bevy_squadlink::rollback::RollbackError> {
//! use bevy_squadlink::rollback::{RollbackSettings, start_p2p};
//! use bevy_squadlink::{Channel, PeerId};
//!
//! type Config = bevy_ggrs::GgrsConfig<u8, PeerId>;
//! // Channel 0 is declared `ChannelKind::Unreliable` on every member's session.
//! let (ggrs_session, players) = start_p2p::<Config>(session, Channel(0), &RollbackSettings::default())?;
//! println!("we are player {:?} of {}", players.local_handle(), players.players.len());
//! // app.insert_resource(bevy_ggrs::Session::P2P(ggrs_session));
//! # Ok(()) }
//! ```
//!
//! GGRS sends small datagrams and recovers from loss itself, so the channel must be
//! [`ChannelKind::Unreliable`] (unordered, never retransmitted): a reliable or sequenced
//! channel would only add delay or drop what GGRS still wants. Player handles follow the
//! members' peer ids, which the matchmaker hands out and every member's copy of the lobby
//! holds alike, so all members agree on who is player 0 without a message. A member that
//! drops is reported by GGRS as `Disconnected` after its disconnect timeout; GGRS cannot
//! take a player back into a running session, so a member that rejoins under the same peer
//! id (Squadlink keeps it) plays again in the next session the game starts.

use squadlink::{ChannelEndpoint, ChannelKind, LobbyInfo, PeerId, Session, SessionBuilder};

pub use bevy_ggrs;
pub use ggrs;

use ggrs::{DesyncDetection, Message, NonBlockingSocket, P2PSession, PlayerType, SpectatorSession};

/// What can stop a rollback session from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The session is not in a lobby yet (or has ended).
    #[error("the session is not in a lobby: start the rollback session once it has entered one")]
    NotInLobby,
    /// The channel cannot carry GGRS.
    #[error("{0}")]
    Channel(String),
    /// GGRS refused the players or the settings.
    #[error("GGRS: {0}")]
    Ggrs(String),
}

/// GGRS's socket over one unreliable channel of a session: messages to and from peers,
/// by peer id, encoded with the SDK's codec. A message that does not decode (a peer
/// running another game, or a hostile one) is dropped and counted, never passed on.
#[derive(Debug)]
pub struct SquadlinkGgrsSocket {
    endpoint: ChannelEndpoint,
    malformed: u64,
}

impl SquadlinkGgrsSocket {
    /// The socket over `endpoint`, which must be an [`ChannelKind::Unreliable`] channel.
    pub fn new(endpoint: ChannelEndpoint) -> Result<Self, RollbackError> {
        if endpoint.kind() != ChannelKind::Unreliable {
            return Err(RollbackError::Channel(format!(
                "GGRS needs an unreliable, unordered channel; {:?} is {:?} (declare one with \
                 SessionBuilder::channel(ChannelKind::Unreliable))",
                endpoint.channel(),
                endpoint.kind()
            )));
        }
        Ok(Self {
            endpoint,
            malformed: 0,
        })
    }

    /// Messages dropped so far because they did not decode.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl NonBlockingSocket<PeerId> for SquadlinkGgrsSocket {
    fn send_to(&mut self, msg: &Message, addr: &PeerId) {
        // GGRS resends what matters; a message that cannot go now is one lost datagram.
        match squadlink::codec::encode(msg) {
            Ok(bytes) => {
                if let Err(e) = self.endpoint.send(*addr, &bytes) {
                    bevy::log::debug!("squadlink: a GGRS message to {addr} not sent: {e}");
                }
            }
            Err(e) => bevy::log::warn!("squadlink: a GGRS message did not encode: {e}"),
        }
    }

    fn receive_all_messages(&mut self) -> Vec<(PeerId, Message)> {
        let mut out = Vec::new();
        for (peer, bytes) in self.endpoint.receive() {
            match squadlink::codec::decode::<Message>(&bytes) {
                Ok(msg) => out.push((peer, msg)),
                Err(e) => {
                    self.malformed += 1;
                    bevy::log::debug!("squadlink: a GGRS message from {peer} dropped: {e}");
                }
            }
        }
        out
    }
}

/// The member-data key (`SessionBuilder::member_data`) that marks a member as a spectator
/// (value [`SPECTATOR`]); [`spectate`] sets it.
pub const ROLE_KEY: &str = "rollback.role";
/// See [`ROLE_KEY`].
pub const SPECTATOR: &str = "spectator";

/// Marks the session's member as a spectator of rollback games: every member's
/// [`RollbackPlayers::from_lobby`] then counts it as one.
pub fn spectate(builder: SessionBuilder) -> SessionBuilder {
    builder.member_data(ROLE_KEY, SPECTATOR)
}

/// Who plays a rollback game: the players in handle order, the spectators, and us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlayers {
    /// The players; a player's GGRS handle is its index here.
    pub players: Vec<PeerId>,
    /// Members who watch (GGRS spectators: they receive inputs and send none).
    pub spectators: Vec<PeerId>,
    /// This member.
    pub local: PeerId,
}

impl RollbackPlayers {
    /// The lobby's members in the order every member agrees on (by peer id: ids the
    /// matchmaker hands out, the same in every member's copy of the lobby); those marked
    /// as spectators in the lobby ([`spectate`]) and those in `spectators` watch.
    pub fn from_lobby(lobby: &LobbyInfo, local: PeerId, spectators: &[PeerId]) -> Self {
        let watches = |peer: &PeerId| {
            spectators.contains(peer) || lobby.member_value(*peer, ROLE_KEY) == Some(SPECTATOR)
        };
        let (mut spectators, mut players): (Vec<PeerId>, Vec<PeerId>) = lobby
            .members
            .iter()
            .map(|(peer, _)| *peer)
            .partition(watches);
        players.sort();
        spectators.sort();
        Self {
            players,
            spectators,
            local,
        }
    }

    /// Our handle, unless we only watch.
    pub fn local_handle(&self) -> Option<usize> {
        self.handle_of(self.local)
    }

    /// A player's handle.
    pub fn handle_of(&self, peer: PeerId) -> Option<usize> {
        self.players.iter().position(|p| *p == peer)
    }
}

/// Rollback settings (GGRS's, with defaults for a 60 Hz game over the internet).
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackSettings {
    /// Frames of input delay (default 2: fewer rollbacks for two frames of lag).
    pub input_delay: usize,
    /// Most frames predicted ahead of the peers' confirmed inputs (default 8).
    pub max_prediction: usize,
    /// Simulation frames per second (default 60).
    pub fps: usize,
    /// Compare checksums with the peers every this many frames (default 10; `None`: off).
    pub desync_interval: Option<u32>,
    /// A peer silent this long is disconnected (default 2 s).
    pub disconnect_timeout: std::time::Duration,
    /// A peer silent this long is reported as interrupted (default 500 ms).
    pub disconnect_notify_delay: std::time::Duration,
    /// Members who only watch, besides those marked in the lobby ([`spectate`]).
    pub spectators: Vec<PeerId>,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        Self {
            input_delay: 2,
            max_prediction: 8,
            fps: 60,
            desync_interval: Some(10),
            disconnect_timeout: std::time::Duration::from_secs(2),
            disconnect_notify_delay: std::time::Duration::from_millis(500),
            spectators: Vec::new(),
        }
    }
}

/// Starts a GGRS P2P session for the lobby `session` is in, over its unreliable
/// `channel`: every member a player (or spectator, per `settings`), in the agreed order.
/// Start it on every member once all are in the lobby (GGRS then synchronises them).
pub fn start_p2p<C>(
    session: &Session,
    channel: squadlink::Channel,
    settings: &RollbackSettings,
) -> Result<(P2PSession<C>, RollbackPlayers), RollbackError>
where
    C: ggrs::Config<Address = PeerId>,
{
    let (Some(lobby), Some(local)) = (session.lobby(), session.id()) else {
        return Err(RollbackError::NotInLobby);
    };
    let socket = SquadlinkGgrsSocket::new(
        session
            .endpoint(channel)
            .map_err(|e| RollbackError::Channel(e.to_string()))?,
    )?;
    let players = RollbackPlayers::from_lobby(&lobby, local, &settings.spectators);
    if players.local_handle().is_none() {
        return Err(RollbackError::Ggrs(
            "this member is a spectator: start its session with rollback::start_spectator".into(),
        ));
    }
    let ggrs_error = |e: ggrs::GgrsError| RollbackError::Ggrs(e.to_string());
    let mut builder = ggrs::SessionBuilder::<C>::new()
        .with_num_players(players.players.len())
        .map_err(ggrs_error)?
        .with_input_delay(settings.input_delay)
        .with_max_prediction_window(settings.max_prediction)
        .with_fps(settings.fps)
        .map_err(ggrs_error)?
        .with_disconnect_timeout(settings.disconnect_timeout)
        .with_disconnect_notify_delay(settings.disconnect_notify_delay)
        .with_desync_detection_mode(match settings.desync_interval {
            Some(interval) => DesyncDetection::On { interval },
            None => DesyncDetection::Off,
        });
    for (handle, peer) in players.players.iter().enumerate() {
        let kind = if *peer == local {
            PlayerType::Local
        } else {
            PlayerType::Remote(*peer)
        };
        builder = builder.add_player(kind, handle).map_err(ggrs_error)?;
    }
    // Spectators follow the first player (lowest peer id): only it serves them. A player
    // that registered a spectator would wait for it to synchronise, and it never would.
    let serves_spectators = players.local_handle() == Some(0);
    for (i, peer) in players
        .spectators
        .iter()
        .enumerate()
        .filter(|_| serves_spectators)
    {
        builder = builder
            .add_player(PlayerType::Spectator(*peer), players.players.len() + i)
            .map_err(ggrs_error)?;
    }
    let p2p = builder.start_p2p_session(socket).map_err(ggrs_error)?;
    Ok((p2p, players))
}

/// The GGRS session of a spectator (a member marked with [`spectate`], or named in
/// `settings.spectators` on every member): it follows the player with the lowest peer id
/// (handle 0), whose [`start_p2p`] registers every spectator, and receives everyone's
/// confirmed inputs from that player. If that player leaves, the spectator's session ends
/// with it (GGRS has no hand-over for spectators). Returns the session and the players, whose
/// handles are the ones the players use.
pub fn start_spectator<C>(
    session: &Session,
    channel: squadlink::Channel,
    settings: &RollbackSettings,
) -> Result<(SpectatorSession<C>, RollbackPlayers), RollbackError>
where
    C: ggrs::Config<Address = PeerId>,
{
    let (Some(lobby), Some(local)) = (session.lobby(), session.id()) else {
        return Err(RollbackError::NotInLobby);
    };
    let players = RollbackPlayers::from_lobby(&lobby, local, &settings.spectators);
    if players.local_handle().is_some() {
        return Err(RollbackError::Ggrs(
            "this member is a player, not a spectator: use start_p2p (or mark it with \
             rollback::spectate before it joins)"
                .into(),
        ));
    }
    let Some(&host) = players.players.first() else {
        return Err(RollbackError::Ggrs(
            "no player in the lobby to follow".into(),
        ));
    };
    let socket = SquadlinkGgrsSocket::new(
        session
            .endpoint(channel)
            .map_err(|e| RollbackError::Channel(e.to_string()))?,
    )?;
    let ggrs_error = |e: ggrs::GgrsError| RollbackError::Ggrs(e.to_string());
    let spectator = ggrs::SessionBuilder::<C>::new()
        .with_num_players(players.players.len())
        .map_err(ggrs_error)?
        .with_max_prediction_window(settings.max_prediction)
        .with_fps(settings.fps)
        .map_err(ggrs_error)?
        .with_disconnect_timeout(settings.disconnect_timeout)
        .with_disconnect_notify_delay(settings.disconnect_notify_delay)
        .start_spectator_session(host, socket);
    Ok((spectator, players))
}
