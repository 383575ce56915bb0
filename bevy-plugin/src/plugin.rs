//! The plugin: starts, switches and ends sessions, keeps one entity per connected peer,
//! mirrors lobby and stats into the world, and turns session events into observer events.

use std::collections::HashMap;

use bevy::prelude::*;
use squadlink::{
    DisconnectReason, Event as NetEvent, PathKind, PeerId, PendingSession, PlayerId, Session,
    SessionBuilder,
};

/// Adds Squadlink to an app: peers as entities, lobby and stats in the world, typed
/// messages, and the [`Squadlink`] resource to join, leave and switch lobbies at run time.
///
/// Give it the [`SessionBuilder`] of the session to start (it starts in the first frame,
/// without blocking, and [`SquadlinkStatus`] tells how far it got), or start with none
/// ([`SquadlinkPlugin::idle`]) and join from a menu with [`Squadlink::join`].
#[derive(Clone, Default)]
pub struct SquadlinkPlugin {
    builder: Option<SessionBuilder>,
}

impl SquadlinkPlugin {
    /// A plugin that starts this session: channels, lobby, token and every other setting
    /// are the builder's.
    ///
    /// ```no_run
    /// use bevy_squadlink::prelude::*;
    ///
    /// let plugin = SquadlinkPlugin::new(
    ///     SessionBuilder::new("ws://127.0.0.1:7878/v1")
    ///         .channel(ChannelKind::UnreliableSequenced)
    ///         .join(LobbyRef::create(4)),
    /// );
    /// ```
    pub fn new(builder: SessionBuilder) -> Self {
        Self {
            builder: Some(builder),
        }
    }

    /// A plugin with no session yet: join one later with [`Squadlink::join`] (or hand it
    /// one with [`Squadlink::use_session`]).
    pub fn idle() -> Self {
        Self::default()
    }
}

/// Joins, leaves and switches lobbies at run time. The request takes effect at the start of
/// the next frame's [`SquadlinkSet::Receive`].
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_squadlink::prelude::*;
///
/// /// What the game's lobby menu chose this frame.
/// #[derive(Resource, Default)]
/// struct MenuChoice {
///     join: Option<String>,
///     quit: bool,
/// }
///
/// fn follow_the_menu(mut squadlink: ResMut<Squadlink>, mut menu: ResMut<MenuChoice>) {
///     if let Some(code) = menu.join.take() {
///         squadlink.join(
///             SessionBuilder::new("ws://127.0.0.1:7878/v1")
///                 .channel(ChannelKind::UnreliableSequenced)
///                 .join(LobbyRef::Code(code)),
///         );
///     }
///     if std::mem::take(&mut menu.quit) {
///         squadlink.leave();
///     }
/// }
/// ```
#[derive(Resource, Default)]
pub struct Squadlink {
    requests: Vec<Request>,
    pending: Option<PendingSession>,
}

enum Request {
    Join(Box<SessionBuilder>),
    Use(Session),
    Leave,
}

impl Squadlink {
    /// Starts a session with `builder`, leaving the current one first (switching lobbies).
    pub fn join(&mut self, builder: SessionBuilder) {
        self.requests.push(Request::Join(Box::new(builder)));
    }

    /// Uses a session started elsewhere (such as one on `squadlink::testing::TestNet`),
    /// leaving the current one first.
    pub fn use_session(&mut self, session: Session) {
        self.requests.push(Request::Use(session));
    }

    /// Leaves the lobby: the session closes, every peer entity is despawned (after
    /// [`PeerDisconnected`] with [`DisconnectReason::ClosedHere`]), [`Lobby`] and
    /// [`SquadlinkSession`] are removed, and [`SquadlinkStatus`] becomes `NotStarted`.
    pub fn leave(&mut self) {
        self.requests.push(Request::Leave);
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
    /// No session: none started yet, or the game left ([`Squadlink::leave`]).
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

impl Plugin for SquadlinkPlugin {
    fn build(&self, app: &mut App) {
        let mut squadlink = Squadlink::default();
        if let Some(builder) = &self.builder {
            squadlink.join(builder.clone());
        }
        app.insert_resource(squadlink)
            .init_resource::<SquadlinkStatus>()
            .init_resource::<PeerEntities>()
            .configure_sets(PreUpdate, SquadlinkSet::Receive)
            .configure_sets(PostUpdate, SquadlinkSet::Send)
            .add_systems(
                PreUpdate,
                (apply_requests, poll_start, pump_events, refresh_stats)
                    .chain()
                    .in_set(SquadlinkSet::Receive)
                    .in_set(Pump),
            );
    }
}

fn apply_requests(
    mut commands: Commands,
    mut squadlink: ResMut<Squadlink>,
    mut status: ResMut<SquadlinkStatus>,
    mut peers: ResMut<PeerEntities>,
    session: Option<Res<SquadlinkSession>>,
) {
    if squadlink.requests.is_empty() {
        return;
    }
    // Each request ends what came before it; the last one stands.
    let mut current = session.is_some();
    for request in std::mem::take(&mut squadlink.requests) {
        if current || squadlink.pending.is_some() {
            end_session(&mut commands, &mut squadlink, &mut peers);
            *status = SquadlinkStatus::NotStarted;
            current = false;
        }
        match request {
            Request::Leave => {}
            Request::Use(session) => {
                commands.insert_resource(SquadlinkSession(session));
                *status = SquadlinkStatus::InLobby;
                current = true;
            }
            Request::Join(builder) => match builder.start_background() {
                Ok(pending) => {
                    squadlink.pending = Some(pending);
                    *status = SquadlinkStatus::Connecting;
                }
                Err(e) => {
                    error!("squadlink: {e}");
                    *status = SquadlinkStatus::Failed(e.to_string());
                    commands.trigger(SquadlinkError(e));
                }
            },
        }
    }
}

/// Ends the session (or the one still starting): its peers' entities go, and so do the
/// resources that described it. The session closes on a thread of its own, so the frame
/// does not wait for its goodbyes (in the browser closing never waits: the session's task
/// on the page's event loop says them).
fn end_session(commands: &mut Commands, squadlink: &mut Squadlink, peers: &mut PeerEntities) {
    if let Some(pending) = squadlink.pending.take() {
        close_aside(move || drop(pending));
    }
    commands.queue(|world: &mut World| {
        if let Some(SquadlinkSession(session)) = world.remove_resource::<SquadlinkSession>() {
            close_aside(move || session.close());
        }
        world.remove_resource::<Lobby>();
    });
    for (peer, entity) in peers.0.drain() {
        commands.trigger(PeerDisconnected {
            entity,
            peer,
            reason: DisconnectReason::ClosedHere,
        });
        commands.entity(entity).despawn();
    }
}

fn poll_start(
    mut commands: Commands,
    mut squadlink: ResMut<Squadlink>,
    mut status: ResMut<SquadlinkStatus>,
) {
    let Some(pending) = squadlink.pending.as_mut() else {
        return;
    };
    let Some(result) = pending.poll() else { return };
    squadlink.pending = None;
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
                        | DisconnectReason::Incompatible
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

/// Runs `close` where it cannot hold up the frame: on a thread of its own natively; at once
/// in the browser, where closing only tells the session's task and returns.
pub(crate) fn close_aside(close: impl FnOnce() + Send + 'static) {
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::spawn(close);
    #[cfg(target_arch = "wasm32")]
    close();
}
