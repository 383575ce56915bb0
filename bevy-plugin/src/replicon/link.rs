//! The backend's systems: the session's two channels in and out of replicon's message
//! resources, replicon's states and client entities kept to what the [`Authority`] decides,
//! and the statistics.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bevy::prelude::*;
use bevy_replicon::bytes::Bytes;
use bevy_replicon::client::ServerUpdateTick;
use bevy_replicon::client::confirm_history::ConfirmHistory;
use bevy_replicon::prelude::{
    Channel as RepliconChannel, ClientMessages, ClientState, ClientStats, ClientSystems,
    ConnectedClient, ConnectedClientStats, DisconnectRequest, Remote, Replicated, RepliconChannels,
    ServerMessages, ServerState, ServerSystems, Signature,
};
use bevy_replicon::server::AuthorizedClient;
use bevy_replicon::server::server_tick::ServerTick;
use bevy_replicon::shared::backend::connected_client::NetworkId;
use bevy_replicon::shared::server_entity_map::ServerEntityMap;
use squadlink::{Channel, ChannelEndpoint, PeerId};

use super::authority::{Action, Authority, Role};
use super::stats::{Rate, mesh_rtt_ms};
use super::vocab::{
    AuthorityChanged, ChooseServer, HandOver, NetId, NetIds, RepliconAuthority,
    SquadlinkRepliconPlugin,
};
use super::wire::{self, Control, Frame};
use crate::{Lobby, Peer, PeerStats, Reconnecting, SquadlinkSession, SquadlinkSet};

/// Largest replicon message on the unreliable channel: one datagram's worth, so a lost
/// packet loses one message (replicon splits its mutations to fit).
const UNRELIABLE_MAX: usize = 1200;
/// How far past the last tick it received a new server starts counting: every client's last
/// tick (at most a few updates ahead of the new server's) is then older, so ticks keep
/// rising across a hand-over.
const TICK_MARGIN: u32 = 1024;
/// How often a client reports its mesh round trip, and a server re-ranks its line.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Where the replicon client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Disconnected (or serving).
    Off,
    /// Waiting for a server to announce itself (state `Connecting`).
    Waiting,
    /// Follows this server and waits for its `Welcome` (state `Connecting`): the replicon
    /// client connects only once the server has made it a client, so its protocol hash
    /// reaches that client.
    Welcoming(PeerId),
    /// Welcomed among this frame's messages (as the server's client numbered so): the
    /// server's messages after the welcome are held, and go in when the receive step ends
    /// and the client connects (a transition into `Connected`, even from `Connected`, so
    /// replicon's client forgets any earlier connection first).
    Switching(PeerId, u64),
    /// Connected to this server, as its client numbered so.
    Connected(PeerId, u64),
}

#[derive(Resource)]
struct Link {
    reliable: Channel,
    unreliable: Channel,
    await_timeout: Duration,
    silence: Duration,
    /// Hand over once, at the start, to the best-placed member.
    choose_first: bool,
    chose_first: bool,
    /// The game asked for a hand-over to the best-placed member ([`ChooseServer`]).
    choose_now: bool,
    endpoints: Option<(ChannelEndpoint, ChannelEndpoint)>,
    failed: bool,
    authority: Option<Authority>,
    live: BTreeSet<PeerId>,
    clients: HashMap<PeerId, Client>,
    /// The number of the last client this member made while serving (see `Welcome`).
    welcomed: u64,
    phase: Phase,
    /// Control frames, sent before replicon's messages of the frame.
    outbox: Vec<(Option<PeerId>, Vec<u8>)>,
    /// Messages from a server we are switching to, kept until we are its client.
    held: Vec<(usize, Bytes)>,
    /// Re-register every entity's signature (before meeting a new server).
    resign: bool,
    /// After a switch: prune stale entities once the new server's first update is applied.
    prune: Prune,
    last_tick: Duration,
    /// The server tick to continue from when this member starts serving after a hand-over.
    resume_tick: Option<u32>,
    rates: HashMap<PeerId, Rate>,
}

impl Link {
    /// Meeting a server afresh (a new one, or the same one after it gave this member up):
    /// its entities are mapped onto ours by signature, and the ones it no longer has are
    /// pruned after its first update.
    fn meet_afresh(&mut self) {
        self.resign = true;
        self.prune = Prune::AwaitingUpdate;
    }
}

/// A peer this member serves: replicon's client entity for it, and the number its
/// `Welcome` carries.
#[derive(Debug, Clone, Copy)]
struct Client {
    entity: Entity,
    number: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    Idle,
    AwaitingUpdate,
    Ready,
}

pub(super) fn build(app: &mut App, settings: &SquadlinkRepliconPlugin) {
    // A member that takes over serves the entities it received.
    if app
        .try_register_required_components::<Remote, Replicated>()
        .is_err()
    {
        debug!("squadlink replicon: Remote already requires Replicated");
    }
    app.insert_resource(Link {
        reliable: settings.reliable,
        unreliable: settings.unreliable,
        await_timeout: settings.await_timeout,
        silence: settings.silence,
        choose_first: settings.best_first_server,
        chose_first: false,
        choose_now: false,
        endpoints: None,
        failed: false,
        authority: None,
        live: BTreeSet::new(),
        clients: HashMap::new(),
        welcomed: 0,
        phase: Phase::Off,
        outbox: Vec::new(),
        held: Vec::new(),
        resign: false,
        prune: Prune::Idle,
        last_tick: Duration::ZERO,
        resume_tick: None,
        rates: HashMap::new(),
    })
    .init_resource::<RepliconAuthority>()
    .init_resource::<NetIds>()
    .add_message::<ChooseServer>()
    .add_observer(sign_new)
    .add_systems(
        PreUpdate,
        (receive, resign, stats)
            .chain()
            .after(SquadlinkSet::Receive)
            .in_set(ClientSystems::ReceivePackets)
            .in_set(ServerSystems::ReceivePackets),
    )
    .add_systems(Update, prune)
    .add_systems(OnEnter(ServerState::Running), resume_tick)
    .add_systems(
        PostUpdate,
        send.in_set(ClientSystems::SendPackets)
            .in_set(ServerSystems::SendPackets),
    );
    bevy_replicon::prelude::AppRuleExt::replicate::<NetId>(app);
}

pub(super) fn finish(app: &mut App) {
    if let Some(channels) = app.world().get_resource::<RepliconChannels>() {
        let (server, client) = (
            channels.server_channels().len(),
            channels.client_channels().len(),
        );
        if server > wire::MAX_CHANNELS || client > wire::MAX_CHANNELS {
            error!(
                "squadlink replicon: {server} server and {client} client channels registered; \
                 the backend carries at most {} of each (messages on the others are dropped)",
                wire::MAX_CHANNELS
            );
        }
    } else {
        error!("squadlink replicon: add RepliconPlugins before SquadlinkRepliconPlugin");
    }
}

/// Every entity with a [`NetId`] carries the replicon signature made from it.
fn sign_new(add: On<Add, NetId>, ids: Query<&NetId>, mut commands: Commands) {
    if let Ok(id) = ids.get(add.entity) {
        commands.entity(add.entity).insert(signature(*id));
    }
}

fn signature(id: NetId) -> Signature {
    Signature::from((id.origin, id.serial))
}

/// What the receive side reads.
#[derive(bevy::ecs::system::SystemParam)]
struct Inputs<'w, 's> {
    time: Res<'w, Time<Real>>,
    session: Option<Res<'w, SquadlinkSession>>,
    lobby: Option<Res<'w, Lobby>>,
    peers: Query<'w, 's, (&'static Peer, &'static PeerStats), Without<Reconnecting>>,
    channels: Res<'w, RepliconChannels>,
    update_tick: Res<'w, ServerUpdateTick>,
    choose: MessageReader<'w, 's, ChooseServer>,
    /// Clients whose protocol hash the server has accepted.
    authorized: Query<'w, 's, (), With<AuthorizedClient>>,
}

fn receive(
    mut fx: Effects,
    input: Inputs,
    mut link: ResMut<Link>,
    mut server_messages: ResMut<ServerMessages>,
    mut client_messages: ResMut<ClientMessages>,
) {
    let Inputs {
        time,
        session,
        lobby,
        peers,
        channels,
        update_tick,
        mut choose,
        authorized,
    } = input;
    if choose.read().count() > 0 {
        link.choose_now = true;
    }
    let now = time.elapsed();
    let (Some(session), Some(lobby)) = (session, lobby) else {
        if link.authority.is_some() {
            stop(&mut fx, &mut link);
        }
        return;
    };
    if link.failed {
        return;
    }
    if link.endpoints.is_none() {
        match wire::endpoints(&session.0, link.reliable, link.unreliable) {
            Ok(pair) => link.endpoints = Some(pair),
            Err(e) => {
                error!("squadlink replicon: {e}");
                link.failed = true;
                return;
            }
        }
    }
    let ctx = &mut Ctx {
        fx: &mut fx,
        now,
        last_tick: update_tick.get(),
    };
    if link.authority.is_none() {
        ctx.fx.ids.me = Some(lobby.me);
        let mut authority = Authority::new(lobby.me, link.await_timeout, now);
        let actions = authority.start(lobby.host, now);
        link.authority = Some(authority);
        if lobby.host != lobby.me {
            link.phase = Phase::Waiting;
            ctx.fx.client(ClientState::Connecting);
        }
        apply(&mut link, ctx, actions);
    }

    // Links that came and went.
    // A peer counts while its link is up and it was heard from lately: a member whose
    // process died is given up after `silence`, long before the session's own verdict.
    let live: BTreeSet<PeerId> = peers
        .iter()
        .filter(|(_, stats)| stats.0.silent_for < link.silence)
        .map(|(p, _)| p.id)
        .collect();
    let joined: Vec<PeerId> = live.difference(&link.live).copied().collect();
    let lost: Vec<PeerId> = link.live.difference(&live).copied().collect();
    link.live = live.clone();
    for peer in lost {
        act(&mut link, ctx, |a| a.on_lost(peer, &live, now));
    }
    for peer in joined {
        act(&mut link, ctx, |a| a.on_connected(peer));
    }
    sync_clients(&mut link, &mut ctx.fx.commands);

    // What arrived, in order, reliable first (a `Serving` precedes its server's messages).
    let mut frames = Vec::new();
    if let Some((reliable, unreliable)) = &link.endpoints {
        frames.extend(reliable.receive());
        frames.extend(unreliable.receive());
    }
    let (server_channels, client_channels) = (
        channels.server_channels().len(),
        channels.client_channels().len(),
    );
    for (peer, bytes) in frames {
        let frame = match wire::read(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                debug!("squadlink replicon: a frame from {peer} dropped: {e}");
                continue;
            }
        };
        match frame {
            Frame::Control(Control::Serving { epoch, line }) => {
                act(&mut link, ctx, |a| a.on_serving(peer, epoch, line));
            }
            Frame::Control(Control::Report { mesh_rtt_ms }) => {
                if let Some(a) = link.authority.as_mut() {
                    a.on_report(peer, mesh_rtt_ms);
                }
            }
            Frame::Control(Control::Beacon { epoch }) => {
                if let Some(a) = link.authority.as_mut() {
                    a.on_beacon(peer, epoch, now);
                }
            }
            Frame::Control(Control::Yield { epoch }) => {
                act(&mut link, ctx, |a| a.on_yield(peer, epoch));
            }
            Frame::Control(Control::Superseded { epoch, server }) => {
                let known = peers.iter().any(|(p, _)| p.id == server);
                act(&mut link, ctx, |a| {
                    a.on_superseded(epoch, server, known, now)
                });
            }
            Frame::Control(Control::Welcome {
                epoch,
                line,
                client,
            }) => {
                act(&mut link, ctx, |a| a.on_serving(peer, epoch, line));
                // Only from the server this member now follows, at the epoch it claimed (a
                // stale welcome was answered as a stale claim).
                let follows = link
                    .authority
                    .as_ref()
                    .is_some_and(|a| a.server() == Some(peer) && a.epoch() == epoch);
                if follows {
                    welcome(&mut link, peer, client);
                }
            }
            Frame::ToClient { channel, payload } if channel < server_channels => match link.phase {
                Phase::Connected(server, _) if server == peer => {
                    if channel == 0 && link.prune == Prune::AwaitingUpdate {
                        link.prune = Prune::Ready;
                    }
                    client_messages.insert_received(channel, payload);
                }
                Phase::Switching(server, _) if server == peer => {
                    link.held.push((channel, payload));
                }
                _ => {} // not our server (any more), or from before it welcomed us: stale
            },
            Frame::ToServer { channel, payload } if channel < client_channels => {
                if let Some(client) = link.clients.get(&peer).map(|c| c.entity) {
                    server_messages.insert_received(client, channel, payload);
                }
            }
            Frame::ToClient { .. } | Frame::ToServer { .. } => {
                debug!("squadlink replicon: a message from {peer} on an unknown channel dropped");
            }
        }
    }

    // A switch started last frame completes now: the held messages go in with it.
    if let Phase::Switching(server, client) = link.phase {
        link.phase = Phase::Connected(server, client);
        ctx.fx.client(ClientState::Connected);
        for (channel, payload) in std::mem::take(&mut link.held) {
            if channel == 0 && link.prune == Prune::AwaitingUpdate {
                link.prune = Prune::Ready;
            }
            client_messages.insert_received(channel, payload);
        }
    }

    if now.saturating_sub(link.last_tick) >= REPORT_EVERY {
        link.last_tick = now;
        act(&mut link, ctx, |a| a.tick(now, &live));
        let own_ms = mesh_rtt_ms(
            peers
                .iter()
                .filter(|(p, _)| live.contains(&p.id))
                .map(|(_, stats)| &stats.0),
        );
        // A welcome not answered yet (lost, or the member was not following yet) again.
        let unanswered: Vec<(PeerId, u64)> = link
            .clients
            .iter()
            .filter(|(_, c)| !authorized.contains(c.entity))
            .map(|(p, c)| (*p, c.number))
            .collect();
        for &(peer, number) in &unanswered {
            send_welcome(&mut link, peer, number);
        }
        // And a beacon beside it, which passes while the reliable channel still lags.
        let beacon = link.authority.as_ref().and_then(Authority::beacon);
        if let (Some(beacon), Some((_, unreliable))) = (beacon, &link.endpoints) {
            for &(peer, _) in &unanswered {
                send_logged(unreliable, peer, &wire::control(&beacon));
            }
        }
        if let (Phase::Connected(server, _), Some((reliable, _))) = (link.phase, &link.endpoints) {
            let report = Control::Report {
                mesh_rtt_ms: own_ms,
            };
            send_logged(reliable, server, &wire::control(&report));
        }
        // A hand-over on purpose: asked for, or once at the start of a game (epoch 0) when
        // every client has reported.
        let first = link.choose_first
            && !link.chose_first
            && ctx.fx.public.epoch == 0
            && link.authority.as_ref().is_some_and(|a| {
                a.role() == Role::Serving && !live.is_empty() && a.all_reported(&live)
            });
        if first || std::mem::take(&mut link.choose_now) {
            link.chose_first = true;
            act(&mut link, ctx, |a| {
                a.better_server(own_ms)
                    .map(|best| a.yield_to(best))
                    .unwrap_or_default()
            });
        }
    }
    if let Some(a) = &link.authority
        && ctx.fx.public.line != a.line()
    {
        // Only on a change: writing every frame would mark the resource changed every frame.
        ctx.fx.public.line = a.line().to_vec();
    }
}

/// What the receive side changes: replicon's two states, entities, the public view.
#[derive(bevy::ecs::system::SystemParam)]
struct Effects<'w, 's> {
    commands: Commands<'w, 's>,
    next_server: ResMut<'w, NextState<ServerState>>,
    next_client: ResMut<'w, NextState<ClientState>>,
    public: ResMut<'w, RepliconAuthority>,
    ids: ResMut<'w, NetIds>,
}

impl Effects<'_, '_> {
    fn server(&mut self, state: ServerState) {
        self.next_server.set(state);
    }
    fn client(&mut self, state: ClientState) {
        self.next_client.set(state);
    }
}

struct Ctx<'a, 'w, 's> {
    fx: &'a mut Effects<'w, 's>,
    now: Duration,
    /// The last server tick this member's replicon client received.
    last_tick: u32,
}

/// Feeds the authority one input and carries out what it answers (replicon's client
/// entities follow at once).
fn act(link: &mut Link, ctx: &mut Ctx, input: impl FnOnce(&mut Authority) -> Vec<Action>) {
    let actions = link.authority.as_mut().map(input).unwrap_or_default();
    if actions.is_empty() {
        return;
    }
    apply(link, ctx, actions);
    sync_clients(link, &mut ctx.fx.commands);
}

fn apply(link: &mut Link, ctx: &mut Ctx, actions: Vec<Action>) {
    let Some(me) = link.authority.as_ref().map(Authority::me) else {
        return;
    };
    for action in actions {
        match action {
            Action::Serve { epoch, previous } => {
                ctx.fx.client(ClientState::Disconnected);
                ctx.fx.server(ServerState::Running);
                link.phase = Phase::Off;
                link.held.clear();
                link.prune = Prune::Idle;
                if previous.is_some() {
                    link.resume_tick = Some(ctx.last_tick);
                }
                announce(link, ctx, me, previous, epoch, true);
            }
            Action::Follow {
                server,
                epoch,
                previous,
            } => {
                ctx.fx.server(ServerState::Stopped);
                // Replicon's client connects when the server welcomes it (`welcome`).
                ctx.fx.client(ClientState::Connecting);
                link.phase = Phase::Welcoming(server);
                link.held.clear();
                if previous.is_some() {
                    link.meet_afresh();
                }
                announce(link, ctx, server, previous, epoch, false);
            }
            Action::Await { successor, lost } => {
                debug!("squadlink replicon: lost server {lost}; awaiting {successor}");
                ctx.fx.server(ServerState::Stopped);
                ctx.fx.client(ClientState::Connecting);
                link.phase = Phase::Waiting;
                ctx.fx.public.server = None;
                ctx.fx.public.local = false;
                ctx.fx.public.last_hand_over = Some(HandOver {
                    lost,
                    detected_at: ctx.now,
                    served_at: None,
                });
            }
            Action::Send { to, message } => link.outbox.push((to, wire::control(&message))),
        }
    }
}

/// Queues the server's `Welcome` to `peer`, its client numbered `number`.
fn send_welcome(link: &mut Link, peer: PeerId, number: u64) {
    if let Some(welcome) = link.authority.as_ref().and_then(|a| a.welcome(number)) {
        link.outbox.push((Some(peer), wire::control(&welcome)));
    }
}

/// `server` made this member its client numbered `client`. If that is the server this
/// member follows and a client it is not connected as yet, replicon's client connects to it
/// (afresh, if it was connected as an earlier one: the server gave this member up and took
/// it back). A welcome from anyone else is stale.
fn welcome(link: &mut Link, server: PeerId, client: u64) {
    match link.phase {
        Phase::Welcoming(s) if s == server => {}
        Phase::Switching(s, c) | Phase::Connected(s, c) if s == server && c != client => {
            debug!("squadlink replicon: {server} took this member back; connecting afresh");
            link.meet_afresh();
        }
        _ => return,
    }
    link.phase = Phase::Switching(server, client);
    link.held.clear();
}

/// Records and tells the game that `server` serves.
fn announce(
    link: &Link,
    ctx: &mut Ctx,
    server: PeerId,
    previous: Option<PeerId>,
    epoch: u32,
    local: bool,
) {
    info!(
        "squadlink replicon: {server} serves (epoch {epoch}{})",
        if local { ", this member" } else { "" }
    );
    let now = ctx.now;
    let public = &mut *ctx.fx.public;
    public.server = Some(server);
    public.local = local;
    public.epoch = epoch;
    if let Some(a) = &link.authority {
        public.line = a.line().to_vec();
    }
    match (&mut public.last_hand_over, previous) {
        (Some(h), _) if h.served_at.is_none() => h.served_at = Some(now),
        (_, Some(lost)) if lost != server => {
            // Took over (or followed) before this member saw the loss itself.
            public.last_hand_over = Some(HandOver {
                lost,
                detected_at: now,
                served_at: Some(now),
            });
        }
        _ => {}
    }
    ctx.fx.commands.trigger(AuthorityChanged {
        server,
        previous,
        epoch,
        local,
    });
}

/// While serving, every live peer is a replicon client entity; otherwise none is.
fn sync_clients(link: &mut Link, commands: &mut Commands) {
    let serving = link
        .authority
        .as_ref()
        .is_some_and(|a| a.role() == Role::Serving);
    let max_size = link.endpoints.as_ref().map_or(UNRELIABLE_MAX, |(_, u)| {
        UNRELIABLE_MAX.min(u.max_message_size().saturating_sub(1))
    });
    let live = link.live.clone();
    link.clients.retain(|peer, client| {
        let keep = serving && live.contains(peer);
        if !keep {
            commands.entity(client.entity).despawn();
        }
        keep
    });
    if !serving {
        return;
    }
    for peer in live {
        if link.clients.contains_key(&peer) {
            continue;
        }
        let entity = commands
            .spawn((
                Name::new(format!("replicon client {peer}")),
                ConnectedClient { max_size },
                NetworkId::new(peer.0),
            ))
            .id();
        link.welcomed = link.welcomed.wrapping_add(1);
        let number = link.welcomed;
        link.clients.insert(peer, Client { entity, number });
        send_welcome(link, peer, number);
    }
}

fn stop(fx: &mut Effects, link: &mut Link) {
    fx.server(ServerState::Stopped);
    fx.client(ClientState::Disconnected);
    for (_, client) in link.clients.drain() {
        fx.commands.entity(client.entity).despawn();
    }
    link.authority = None;
    link.endpoints = None;
    link.live.clear();
    link.phase = Phase::Off;
    link.outbox.clear();
    link.held.clear();
    *fx.public = RepliconAuthority::default();
}

fn send_logged(endpoint: &ChannelEndpoint, peer: PeerId, frame: &[u8]) {
    if let Err(e) = endpoint.send(peer, frame) {
        debug!("squadlink replicon: a message to {peer} not sent: {e}");
    }
}

/// Before meeting a new server: re-inserts every entity's signature, so that replicon
/// (which cannot see signatures it inserted itself while receiving) maps the new server's
/// entities onto ours, and forgets the old server's confirmed ticks (the new server counts
/// its own).
fn resign(
    mut link: ResMut<Link>,
    ids: Query<(Entity, &NetId)>,
    confirmed: Query<Entity, With<ConfirmHistory>>,
    mut commands: Commands,
) {
    if !std::mem::take(&mut link.resign) {
        return;
    }
    for (entity, id) in &ids {
        commands
            .entity(entity)
            .remove::<Signature>()
            .insert(signature(*id));
    }
    for entity in &confirmed {
        commands.entity(entity).remove::<ConfirmHistory>();
    }
}

/// A member that takes over counts on from the last tick it received (plus a margin).
fn resume_tick(mut link: ResMut<Link>, mut tick: ResMut<ServerTick>) {
    if let Some(last) = link.resume_tick.take() {
        let target = last.wrapping_add(TICK_MARGIN);
        let by = target.wrapping_sub(tick.get());
        tick.increment_by(by);
    }
}

/// After the new server's first update: the replicated entities it did not map are gone
/// from its world, so they go from ours.
fn prune(
    mut link: ResMut<Link>,
    map: Option<Res<ServerEntityMap>>,
    stale: Query<Entity, (With<Remote>, With<NetId>)>,
    mut commands: Commands,
) {
    if link.prune != Prune::Ready {
        return;
    }
    link.prune = Prune::Idle;
    let Some(map) = map else { return };
    let mut pruned = 0usize;
    for entity in &stale {
        if !map.to_server().contains_key(&entity) {
            commands.entity(entity).despawn();
            pruned += 1;
        }
    }
    if pruned > 0 {
        debug!("squadlink replicon: {pruned} entities the new server no longer has despawned");
    }
}

/// Replicon's statistics from the plugin's `PeerStats` components (refreshed by the
/// plugin's own receive step each frame).
fn stats(
    time: Res<Time<Real>>,
    peers: Query<(&Peer, &PeerStats)>,
    mut link: ResMut<Link>,
    mut client_stats: ResMut<ClientStats>,
    mut per_client: Query<(&NetworkId, &mut ConnectedClientStats)>,
) {
    let now = time.elapsed();
    let read = |peer: PeerId, link: &mut Link| {
        let (_, stats) = peers.iter().find(|(p, _)| p.id == peer)?;
        Some(link.rates.entry(peer).or_default().read(&stats.0, now))
    };
    if let Phase::Connected(server, _) = link.phase
        && let Some(s) = read(server, &mut link)
    {
        *client_stats = s;
    }
    for (id, mut stats) in &mut per_client {
        if let Some(s) = read(PeerId(id.get()), &mut link) {
            stats.0 = s;
        }
    }
}

fn send(
    mut link: ResMut<Link>,
    mut server_messages: ResMut<ServerMessages>,
    mut client_messages: ResMut<ClientMessages>,
    channels: Res<RepliconChannels>,
    mut disconnects: MessageReader<DisconnectRequest>,
    session: Option<Res<SquadlinkSession>>,
    mut commands: Commands,
) {
    let Some((reliable, unreliable)) = link.endpoints.clone() else {
        server_messages.drain_sent().for_each(drop);
        client_messages.drain_sent().for_each(drop);
        return;
    };
    for (to, frame) in std::mem::take(&mut link.outbox) {
        match to {
            Some(peer) => send_logged(&reliable, peer, &frame),
            None => {
                if let Err(e) = reliable.broadcast(&frame) {
                    debug!("squadlink replicon: a control message not sent: {e}");
                }
            }
        }
    }
    let peers: HashMap<Entity, PeerId> = link.clients.iter().map(|(p, c)| (c.entity, *p)).collect();
    let pick = |kinds: &[RepliconChannel], channel: usize| {
        if kinds.get(channel) == Some(&RepliconChannel::Unreliable) {
            &unreliable
        } else {
            &reliable
        }
    };
    for (client, channel, message) in server_messages.drain_sent() {
        let (Some(peer), Some(frame)) = (peers.get(&client), wire::to_client(channel, &message))
        else {
            continue;
        };
        send_logged(pick(channels.server_channels(), channel), *peer, &frame);
    }
    let server = match link.phase {
        Phase::Connected(server, _) => Some(server),
        _ => None,
    };
    for (channel, message) in client_messages.drain_sent() {
        let (Some(server), Some(frame)) = (server, wire::to_server(channel, &message)) else {
            continue;
        };
        send_logged(pick(channels.client_channels(), channel), server, &frame);
    }
    for request in disconnects.read() {
        if let Some(peer) = peers.get(&request.client) {
            if let Some(session) = &session {
                session.0.disconnect(*peer);
            }
            link.clients.remove(peer);
            commands.entity(request.client).despawn();
        }
    }
}
