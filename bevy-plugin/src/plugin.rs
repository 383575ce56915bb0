//! The plugin: starts the session, keeps one entity per connected peer, mirrors lobby and
//! stats into the world, and turns session events into observer events.

use std::collections::HashMap;
use std::net::SocketAddr;

use bevy::prelude::*;
use squadlink::{
    ChannelKind, DisconnectReason, Event as NetEvent, IcePolicy, LobbyRef, PathKind, PeerId,
    PendingSession, PlayerId, Session, SessionBuilder,
};

/// Adds Squadlink to an app. Configure it like a [`SessionBuilder`]; the session starts in
/// `Startup` without blocking, and [`SquadlinkStatus`] tells how far it got.
#[derive(Clone)]
pub struct SquadlinkPlugin {
    builder: SessionBuilder,
}

impl SquadlinkPlugin {
    /// A plugin for the matchmaker at `url` (e.g. `ws://127.0.0.1:7878/v1`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            builder: SessionBuilder::new(url),
        }
    }

    /// Declares the next channel (0, 1, …); every player must declare the same list.
    pub fn channel(mut self, kind: ChannelKind) -> Self {
        self.builder = self.builder.channel(kind);
        self
    }

    /// Which lobby to enter (default: create a private lobby for 8).
    pub fn join(mut self, lobby: LobbyRef) -> Self {
        self.builder = self.builder.join(lobby);
        self
    }

    /// The local UDP address (default: every interface, a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.builder = self.builder.bind(addr);
        self
    }

    /// The player token from your backend.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.builder = self.builder.token(token);
        self
    }

    /// Dev-mode matchmakers only: the player id to use without a token.
    pub fn player_id(mut self, id: impl Into<String>) -> Self {
        self.builder = self.builder.player_id(id);
        self
    }

    /// Direct paths allowed (default), or relay only.
    pub fn ice_policy(mut self, policy: IcePolicy) -> Self {
        self.builder = self.builder.ice_policy(policy);
        self
    }

    /// Any other session setting, applied to the underlying builder.
    pub fn configure(mut self, f: impl FnOnce(SessionBuilder) -> SessionBuilder) -> Self {
        self.builder = f(self.builder);
        self
    }
}

/// The plugin's systems: [`SquadlinkSet::Receive`] in `PreUpdate` (events, peers, received
/// messages), [`SquadlinkSet::Send`] in `PostUpdate` (outgoing messages). Order your
/// systems against them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SquadlinkSet {
    /// Polls the session: peer entities, lobby, stats, received messages.
    Receive,
    /// Sends what systems wrote as [`crate::Outgoing`] messages this frame.
    Send,
}

/// The plugin's own receive-side systems (peer entities before typed messages).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Pump;

/// How far the session got.
#[derive(Resource, Debug, Clone, PartialEq, Eq, Default)]
pub enum SquadlinkStatus {
    /// Not started yet (before `Startup`).
    #[default]
    NotStarted,
    /// Connecting to the matchmaker and entering the lobby.
    Connecting,
    /// In the lobby; peers connect as they can.
    InLobby,
    /// Could not start, or ended; the text says why.
    Failed(String),
}

/// Run condition: the session is in its lobby.
pub fn in_lobby(status: Res<SquadlinkStatus>) -> bool {
    *status == SquadlinkStatus::InLobby
}

/// The running session, once in the lobby: raw bytes, stats and anything else
/// [`Session`] offers.
#[derive(Resource, Deref)]
pub struct SquadlinkSession(pub Session);

/// The lobby as last heard from the matchmaker.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct Lobby {
    /// Join code to share with friends.
    pub code: String,
    /// This player's peer id.
    pub me: PeerId,
    /// The host's peer id.
    pub host: PeerId,
    /// Members in join order, this player included.
    pub members: Vec<(PeerId, PlayerId)>,
}

/// A connected peer. Spawned when its channels open, despawned when it leaves the lobby.
/// If only its connection drops (it crashed, its network changed) the entity stays, marked
/// [`Reconnecting`], and is the same entity when the peer comes back under its peer id.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its connection id.
    pub id: PeerId,
    /// Its stable player id.
    pub player: PlayerId,
}

/// On a peer entity whose connection dropped while the peer is still in the lobby (the
/// matchmaker keeps a dropped player's place for its rejoin grace). Removed when the peer is
/// connected again; the entity is despawned if the peer leaves instead.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Reconnecting {
    /// Why the connection dropped.
    pub reason: DisconnectReason,
}

/// How the peer is reached.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Deref)]
pub struct PeerPath(pub PathKind);

/// The peer's network statistics, refreshed every frame.
#[derive(Component, Debug, Clone, Default, Deref)]
pub struct PeerStats(pub squadlink::PeerStats);

/// Observer event: a peer's entity was spawned and its channels are open.
#[derive(EntityEvent, Debug, Clone)]
pub struct PeerConnected {
    /// The peer's entity.
    pub entity: Entity,
    /// Its id.
    pub peer: PeerId,
    /// How it is reached.
    pub path: PathKind,
}

/// Observer event: a peer is gone; its entity is despawned right after observers ran.
#[derive(EntityEvent, Debug, Clone)]
pub struct PeerDisconnected {
    /// The peer's entity (still alive while observers run).
    pub entity: Entity,
    /// Its id.
    pub peer: PeerId,
    /// Why.
    pub reason: DisconnectReason,
}

/// Observer event: a peer's connection dropped but it is still in the lobby; its entity
/// stays (marked [`Reconnecting`]) for it to come back.
#[derive(EntityEvent, Debug, Clone)]
pub struct PeerInterrupted {
    /// The peer's entity (kept).
    pub entity: Entity,
    /// Its id.
    pub peer: PeerId,
    /// Why the connection dropped.
    pub reason: DisconnectReason,
}

/// Observer event: a connected peer sends frames that cannot be decoded (reported on the
/// first, then at most once a second). To drop it:
/// `session.0.disconnect(event.peer)` with [`SquadlinkSession`].
#[derive(EntityEvent, Debug, Clone)]
pub struct PeerMisbehaved {
    /// The peer's entity.
    pub entity: Entity,
    /// Its id.
    pub peer: PeerId,
    /// Its undecodable frames so far.
    pub frame_errors: u64,
}

/// Observer event: lobby membership or host changed.
#[derive(Event, Debug, Clone)]
pub struct SquadlinkLobbyChanged(pub Lobby);

/// Observer event: a problem that did not end the session (or the reason it ended).
#[derive(Event, Debug, Clone)]
pub struct SquadlinkError(pub squadlink::Error);

/// Peer id → entity, for the plugin's own systems.
#[derive(Resource, Default)]
pub(crate) struct PeerEntities(pub(crate) HashMap<PeerId, Entity>);

#[derive(Resource)]
struct Starter {
    builder: Option<SessionBuilder>,
    pending: Option<PendingSession>,
}

impl Plugin for SquadlinkPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Starter {
            builder: Some(self.builder.clone()),
            pending: None,
        })
        .init_resource::<SquadlinkStatus>()
        .init_resource::<PeerEntities>()
        .configure_sets(PreUpdate, SquadlinkSet::Receive)
        .configure_sets(PostUpdate, SquadlinkSet::Send)
        .add_systems(Startup, start_session)
        .add_systems(
            PreUpdate,
            (poll_start, pump_events, refresh_stats)
                .chain()
                .in_set(SquadlinkSet::Receive)
                .in_set(Pump),
        );
    }
}

fn start_session(mut starter: ResMut<Starter>, mut status: ResMut<SquadlinkStatus>) {
    let Some(builder) = starter.builder.take() else {
        return;
    };
    match builder.start_background() {
        Ok(pending) => {
            starter.pending = Some(pending);
            *status = SquadlinkStatus::Connecting;
        }
        Err(e) => {
            error!("squadlink: {e}");
            *status = SquadlinkStatus::Failed(e.to_string());
        }
    }
}

fn poll_start(
    mut commands: Commands,
    mut starter: ResMut<Starter>,
    mut status: ResMut<SquadlinkStatus>,
) {
    let Some(pending) = starter.pending.as_mut() else {
        return;
    };
    let Some(result) = pending.poll() else { return };
    starter.pending = None;
    match result {
        Ok(session) => {
            info!("squadlink: in lobby {:?}", session.lobby().map(|l| l.code));
            commands.insert_resource(SquadlinkSession(session));
            *status = SquadlinkStatus::InLobby;
        }
        Err(e) => {
            error!("squadlink: could not enter the lobby: {e}");
            *status = SquadlinkStatus::Failed(e.to_string());
            commands.trigger(SquadlinkError(e));
        }
    }
}

fn lobby_of(session: &Session, info: &squadlink::LobbyInfo) -> Option<Lobby> {
    Some(Lobby {
        code: info.code.clone(),
        me: session.id()?,
        host: info.host,
        members: info.members.clone(),
    })
}

fn pump_events(
    mut commands: Commands,
    session: Option<Res<SquadlinkSession>>,
    mut peers: ResMut<PeerEntities>,
    mut status: ResMut<SquadlinkStatus>,
) {
    let Some(session) = session else { return };
    for event in session.poll_events() {
        match event {
            NetEvent::PeerConnected { peer, path, .. } => {
                let entity = if let Some(&entity) = peers.0.get(&peer) {
                    // Back after a drop: the same entity.
                    commands
                        .entity(entity)
                        .remove::<Reconnecting>()
                        .insert(PeerPath(path));
                    entity
                } else {
                    let player = session
                        .lobby()
                        .and_then(|l| l.members.into_iter().find(|(p, _)| *p == peer))
                        .map_or_else(|| PlayerId(String::new()), |(_, player)| player);
                    let entity = commands
                        .spawn((
                            Name::new(format!("peer {player}")),
                            Peer { id: peer, player },
                            PeerPath(path),
                            PeerStats::default(),
                        ))
                        .id();
                    peers.0.insert(peer, entity);
                    entity
                };
                commands.trigger(PeerConnected { entity, peer, path });
            }
            NetEvent::PeerDisconnected { peer, reason } => {
                let in_lobby = session
                    .lobby()
                    .is_some_and(|l| l.members.iter().any(|(p, _)| *p == peer));
                let gone = matches!(
                    reason,
                    DisconnectReason::Left
                        | DisconnectReason::ChannelMismatch
                        | DisconnectReason::ClosedHere
                ) || !in_lobby;
                if gone {
                    if let Some(entity) = peers.0.remove(&peer) {
                        commands.trigger(PeerDisconnected {
                            entity,
                            peer,
                            reason,
                        });
                        commands.entity(entity).despawn();
                    }
                } else if let Some(&entity) = peers.0.get(&peer) {
                    commands.entity(entity).insert(Reconnecting {
                        reason: reason.clone(),
                    });
                    commands.trigger(PeerInterrupted {
                        entity,
                        peer,
                        reason,
                    });
                }
            }
            NetEvent::LobbyChanged(info) => {
                // Peers that were waiting to come back but left the lobby instead.
                let left: Vec<PeerId> = peers
                    .0
                    .keys()
                    .filter(|p| !info.members.iter().any(|(m, _)| m == *p))
                    .copied()
                    .collect();
                for peer in left {
                    if let Some(entity) = peers.0.remove(&peer) {
                        commands.trigger(PeerDisconnected {
                            entity,
                            peer,
                            reason: DisconnectReason::Left,
                        });
                        commands.entity(entity).despawn();
                    }
                }
                if let Some(lobby) = lobby_of(&session, &info) {
                    commands.insert_resource(lobby.clone());
                    commands.trigger(SquadlinkLobbyChanged(lobby));
                }
            }
            NetEvent::PeerMisbehaved { peer, frame_errors } => {
                if let Some(&entity) = peers.0.get(&peer) {
                    commands.trigger(PeerMisbehaved {
                        entity,
                        peer,
                        frame_errors,
                    });
                }
            }
            NetEvent::Error(e) => {
                warn!("squadlink: {e}");
                commands.trigger(SquadlinkError(e));
            }
            NetEvent::Closed(reason) => {
                let why = reason
                    .as_ref()
                    .map_or_else(|| "closed".to_string(), ToString::to_string);
                *status = SquadlinkStatus::Failed(why);
                for (peer, entity) in peers.0.drain() {
                    commands.trigger(PeerDisconnected {
                        entity,
                        peer,
                        reason: DisconnectReason::Left,
                    });
                    commands.entity(entity).despawn();
                }
                if let Some(e) = reason {
                    commands.trigger(SquadlinkError(e));
                }
            }
            _ => {}
        }
    }
}

fn refresh_stats(session: Option<Res<SquadlinkSession>>, mut q: Query<(&Peer, &mut PeerStats)>) {
    let Some(session) = session else { return };
    for (peer, mut stats) in &mut q {
        if let Some(s) = session.stats(peer.id) {
            stats.0 = s;
        }
    }
}
