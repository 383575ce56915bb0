//! bevy_replicon over Squadlink (`bevy_squadlink::replicon`, feature `replicon`): whole Bevy
//! Apps with replicon's plugins and ours, on real sessions through the real matchmaker and
//! real WebRTC on loopback. The lobby's host serves; the others are its clients.
//!
//! Run: `cargo test -p bevy_squadlink --features replicon --test replicon` (scripts/test.sh does).
#![cfg(feature = "replicon")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_squadlink::replicon::bevy_replicon::prelude::*;
use bevy_squadlink::replicon::bevy_replicon::shared::backend::connected_client::NetworkId;
use bevy_squadlink::replicon::{
    AuthorityChanged, NetId, NetIds, RepliconAuthority, SquadlinkRepliconPlugin,
};
use bevy_squadlink::{Lobby, Squadlink, SquadlinkPlugin, SquadlinkSession};
use serde::{Deserialize, Serialize};
use squadlink::{Channel, ChannelKind, LobbyRef, NetworkConditions, PeerId, Session};

#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Square(i32, i32);

/// Kept by whoever serves: +1 every frame.
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Counter(u64);

/// A client's input.
#[derive(Message, Serialize, Deserialize, Clone, Debug)]
struct Nudge(i32);

/// What the serving member received, by sender peer id.
#[derive(Resource, Default)]
struct Nudges(Vec<(u64, i32)>);

/// The `AuthorityChanged` events this member saw.
#[derive(Resource, Default)]
struct Changes(Vec<AuthorityChanged>);

fn session(url: &str, lobby: LobbyRef) -> Session {
    Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::ReliableOrdered)
        .channel(ChannelKind::Unreliable)
        .join(lobby)
        .start()
        .unwrap()
}

/// A member's App: replicon, our backend, and the test game.
fn app(session: Session) -> App {
    app_with(
        session,
        SquadlinkRepliconPlugin::new(Channel(0), Channel(1)),
    )
}

fn app_with(session: Session, backend: SquadlinkRepliconPlugin) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin))
        .add_plugins(SquadlinkPlugin::idle())
        .add_plugins(RepliconPlugins.set(ServerPlugin::new(PostUpdate)))
        .add_plugins(backend)
        .replicate::<Square>()
        .replicate::<Counter>()
        .add_client_message::<Nudge>(
            bevy_squadlink::replicon::bevy_replicon::prelude::Channel::Ordered,
        )
        .init_resource::<Nudges>()
        .init_resource::<Changes>()
        .add_observer(|on: On<AuthorityChanged>, mut changes: ResMut<Changes>| {
            changes.0.push(on.event().clone());
        })
        .add_systems(
            Update,
            (count, receive_nudges).run_if(in_state(ServerState::Running)),
        );
    app.world_mut()
        .resource_mut::<Squadlink>()
        .use_session(session);
    app.finish();
    app.cleanup();
    app
}

fn count(mut counters: Query<&mut Counter>) {
    for mut c in &mut counters {
        c.0 += 1;
    }
}

fn receive_nudges(
    mut inbox: MessageReader<FromClient<Nudge>>,
    clients: Query<&NetworkId>,
    lobby: Res<Lobby>,
    mut nudges: ResMut<Nudges>,
) {
    for m in inbox.read() {
        let from = match m.client_id {
            ClientId::Client(entity) => clients.get(entity).map(NetworkId::get).unwrap_or(0),
            ClientId::Server => lobby.me.0,
        };
        nudges.0.push((from, m.message.0));
    }
}

/// Steps every app until `done` holds (bounded).
fn step_until(apps: &mut [&mut App], what: &str, mut done: impl FnMut(&mut [&mut App]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(apps) {
        if Instant::now() >= deadline {
            // What each member holds, so a failure says where it stopped.
            let state: Vec<String> = apps
                .iter_mut()
                .map(|app| {
                    let (who, view) = (me(app), authority(app));
                    format!("{who}: {view:?}, {} squares", square_count(app))
                })
                .collect();
            panic!("not reached in time: {what}; the members: {state:#?}");
        }
        for a in apps.iter_mut() {
            a.update();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn me(app: &App) -> PeerId {
    app.world().resource::<Lobby>().me
}

fn authority(app: &App) -> RepliconAuthority {
    app.world().resource::<RepliconAuthority>().clone()
}

/// The squares an app holds, by identity.
fn squares(app: &mut App) -> BTreeMap<NetId, (Entity, Square)> {
    let world = app.world_mut();
    let mut q = world.query::<(Entity, &NetId, &Square)>();
    q.iter(world).map(|(e, id, s)| (*id, (e, *s))).collect()
}

fn square_count(app: &mut App) -> usize {
    let world = app.world_mut();
    world.query::<&Square>().iter(world).count()
}

fn counter(app: &mut App) -> Option<(Entity, u64)> {
    let world = app.world_mut();
    world
        .query::<(Entity, &Counter)>()
        .iter(world)
        .next()
        .map(|(e, c)| (e, c.0))
}

/// Three members (the first creates the lobby and so serves), connected.
fn three(url: &str) -> (App, App, App) {
    let host = session(url, LobbyRef::create(4));
    let code = host.lobby().unwrap().code;
    let mut a = app(host);
    let mut b = app(session(url, LobbyRef::Code(code.clone())));
    let mut c = app(session(url, LobbyRef::Code(code)));
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "all follow the host",
        |apps| {
            let Some(host) = apps[0].world().get_resource::<Lobby>().map(|l| l.me) else {
                return false;
            };
            apps.iter().all(|a| authority(a).server == Some(host))
        },
    );
    (a, b, c)
}

/// Three members, the host's world replicated to both clients, and a line of succession
/// naming both.
fn three_with_world(url: &str) -> (App, App, App) {
    let (mut a, mut b, mut c) = three(url);
    spawn_world(&mut a);
    step_until(&mut [&mut a, &mut b, &mut c], "world and line", |apps| {
        square_count(apps[1]) == 3
            && square_count(apps[2]) == 3
            && apps[1..].iter().all(|app| authority(app).line.len() == 2)
    });
    (a, b, c)
}

/// The host's world: a counter and three squares.
fn spawn_world(host: &mut App) {
    let world = host.world_mut();
    let id = world.resource_mut::<NetIds>().allocate();
    world.spawn((Replicated, id, Counter(0)));
    for i in 0..3 {
        let id = world.resource_mut::<NetIds>().allocate();
        world.spawn((Replicated, id, Square(i, 0)));
    }
}

#[test]
fn entities_components_and_despawns_reach_every_client_and_client_messages_reach_the_host() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let (mut a, mut b, mut c) = three(&url);
    assert!(authority(&a).local);
    assert!(!authority(&b).local && !authority(&c).local);
    spawn_world(&mut a);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the world reaches the clients",
        |apps| {
            square_count(apps[1]) == 3 && square_count(apps[2]) == 3 && counter(apps[2]).is_some()
        },
    );
    let host_squares = squares(&mut a);
    for client in [&mut b, &mut c] {
        let theirs: Vec<(NetId, Square)> = squares(client)
            .into_iter()
            .map(|(k, (_, s))| (k, s))
            .collect();
        let ours: Vec<(NetId, Square)> = host_squares.iter().map(|(k, (_, s))| (*k, *s)).collect();
        assert_eq!(theirs, ours, "the same squares under the same identities");
    }

    // A change and a despawn.
    let (first, last) = {
        let mut ids = host_squares.values().map(|(e, _)| *e);
        (ids.next().unwrap(), ids.next_back().unwrap())
    };
    a.world_mut().entity_mut(first).insert(Square(100, 5));
    a.world_mut().despawn(last);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the change and the despawn",
        |apps| {
            apps[1..].iter_mut().all(|app| {
                let s = squares(app);
                s.len() == 2 && s.values().any(|(_, sq)| *sq == Square(100, 5))
            })
        },
    );

    // Client messages reach the host, from the right peer.
    b.world_mut().write_message(Nudge(7));
    c.world_mut().write_message(Nudge(9));
    let (b_id, c_id) = (me(&b).0, me(&c).0);
    step_until(&mut [&mut a, &mut b, &mut c], "the nudges", |apps| {
        let n = &apps[0].world().resource::<Nudges>().0;
        n.contains(&(b_id, 7)) && n.contains(&(c_id, 9))
    });

    // The counter goes on and the clients see it move.
    let (_, before) = counter(&mut b).unwrap();
    step_until(&mut [&mut a, &mut b, &mut c], "the counter moves", |apps| {
        counter(apps[1]).is_some_and(|(_, v)| v > before + 10)
    });

    // Replicon's statistics come from the session's.
    step_until(&mut [&mut a, &mut b, &mut c], "stats", |apps| {
        apps[1].world().resource::<ClientStats>().rtt > 0.0
    });
    let world = a.world_mut();
    let rtts: Vec<f64> = world
        .query::<&ConnectedClientStats>()
        .iter(world)
        .map(|s| s.rtt)
        .collect();
    assert_eq!(rtts.len(), 2, "one replicon client per peer");
}

#[test]
fn a_member_joining_late_gets_the_whole_world() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let (mut a, mut b, mut c) = three(&url);
    spawn_world(&mut a);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the world reaches the clients",
        |apps| square_count(apps[2]) == 3,
    );
    let code = a.world().resource::<Lobby>().code.clone();
    let mut d = app(session(&url, LobbyRef::Code(code)));
    step_until(
        &mut [&mut a, &mut b, &mut c, &mut d],
        "the late member has the world",
        |apps| square_count(apps[3]) == 3 && counter(apps[3]).is_some_and(|(_, v)| v > 0),
    );
    let ours: Vec<NetId> = squares(&mut a).into_keys().collect();
    let theirs: Vec<NetId> = squares(&mut d).into_keys().collect();
    assert_eq!(ours, theirs);
    assert_eq!(authority(&d).server, Some(me(&a)));
}

#[test]
fn when_the_host_leaves_the_first_of_the_line_serves_from_the_world_it_holds() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let (mut a, mut b, mut c) = three_with_world(&mm.url());
    let line = authority(&b).line;
    assert_eq!(line, authority(&c).line, "every client holds the same line");
    let before_b = squares(&mut b);
    let before_c = squares(&mut c);
    let (counter_entity_b, count_before) = counter(&mut b).unwrap();
    let old = me(&a);
    let b_id = me(&b);

    a.world_mut().resource_mut::<Squadlink>().leave();
    a.update();
    drop(a);

    let successor = line[0];
    let (mut next, mut other) = if me(&b) == successor { (b, c) } else { (c, b) };
    let (before_next, before_other) = if me(&next) == b_id {
        (before_b, before_c)
    } else {
        (before_c, before_b)
    };
    step_until(
        &mut [&mut next, &mut other],
        "the successor serves, the other follows",
        |apps| authority(apps[0]).local && authority(apps[1]).server == Some(successor),
    );
    // The counter goes on from where it was, on the new server and its client.
    step_until(
        &mut [&mut next, &mut other],
        "the counter continues",
        |apps| counter(apps[1]).is_some_and(|(_, v)| v > count_before + 10),
    );
    // The same entities, the same identities, nothing duplicated.
    assert_eq!(squares(&mut next).len(), 3);
    let after_other = squares(&mut other);
    assert_eq!(after_other.len(), 3, "no square lost or duplicated");
    for (id, (entity, _)) in &before_other {
        assert_eq!(
            after_other.get(id).map(|(e, _)| *e),
            Some(*entity),
            "{id:?} kept its entity"
        );
    }
    for (id, (entity, _)) in &before_next {
        assert_eq!(squares(&mut next).get(id).map(|(e, _)| *e), Some(*entity));
    }
    let world = other.world_mut();
    assert_eq!(world.query::<&Counter>().iter(world).count(), 1);
    if me(&other) == b_id {
        assert_eq!(counter(&mut other).map(|(e, _)| e), Some(counter_entity_b));
    }
    // One clear event on each, naming the old and the new server.
    for app in [&next, &other] {
        let changes = &app.world().resource::<Changes>().0;
        let last = changes.last().unwrap();
        assert_eq!(last.server, successor);
        assert_eq!(last.previous, Some(old));
        assert_eq!(changes.iter().filter(|c| c.server == successor).count(), 1);
    }
    let gap = authority(&next).last_hand_over.and_then(|h| h.gap());
    assert!(gap.is_some(), "the hand-over is recorded");
}

#[test]
fn with_best_first_server_a_badly_placed_host_hands_over_to_the_best_placed_member() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    // The host's every datagram waits 40 ms: its mean round trip to the mesh is about
    // 80 ms; the others' about 40 ms (to the host) and 0 (to each other), so 40 on average.
    let host = Session::builder(&url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::ReliableOrdered)
        .channel(ChannelKind::Unreliable)
        .simulated_network(squadlink::NetworkConditions::latency(
            Duration::from_millis(40),
        ))
        .join(LobbyRef::create(4))
        .start()
        .unwrap();
    let code = host.lobby().unwrap().code;
    let backend = || SquadlinkRepliconPlugin::new(Channel(0), Channel(1)).best_first_server();
    let mut a = app_with(host, backend());
    let mut b = app_with(session(&url, LobbyRef::Code(code.clone())), backend());
    let mut c = app_with(session(&url, LobbyRef::Code(code)), backend());
    spawn_world(&mut a);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "a client takes over",
        |apps| {
            let servers: Vec<Option<PeerId>> = apps.iter().map(|a| authority(a).server).collect();
            let Some(Some(server)) = servers.first().copied() else {
                return false;
            };
            authority(apps[0]).epoch == 1
                && servers.iter().all(|s| *s == Some(server))
                && apps.iter().filter(|a| authority(a).local).count() == 1
                && square_count(apps[0]) == 3
                && square_count(apps[1]) == 3
                && square_count(apps[2]) == 3
        },
    );
    let server = authority(&a).server.unwrap();
    assert_ne!(server, me(&a), "the host handed over");
    assert!(server == me(&b) || server == me(&c));
    // The old host is a client of the new server now and its world kept its entities.
    assert!(!authority(&a).local);
    let (_, before) = counter(&mut a).unwrap();
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the counter moves on the old host",
        |apps| counter(apps[0]).is_some_and(|(_, v)| v > before + 10),
    );
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(
            square_count(app),
            3,
            "no duplicate after the planned hand-over"
        );
    }
}

/// Sets the square whose first coordinate is `x` (as spawned by `spawn_world`) on `app`.
fn set_square(app: &mut App, x: i32, to: Square) {
    let world = app.world_mut();
    let mut q = world.query::<&mut Square>();
    let mut square = q.iter_mut(world).find(|s| s.0 == x).unwrap();
    *square = to;
}

fn has_square(app: &mut App, square: Square) -> bool {
    let world = app.world_mut();
    world.query::<&Square>().iter(world).any(|s| *s == square)
}

/// A partial split over real links: the path between the host and one client is cut (the
/// sessions' simulated path from one peer, everything lost, at both ends) while both still
/// reach the third member.
/// The cut-off client serves at the next epoch and the third member follows it and tells
/// the old host (`Superseded`), which stops serving and waits for the new server instead
/// of serving alone; when the path is restored the new server's greeting reaches it, it
/// follows, and one world remains.
#[test]
fn a_host_cut_off_from_one_client_is_told_it_was_replaced_and_follows_when_the_path_heals() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let (mut a, mut b, mut c) = three_with_world(&mm.url());
    let (host, cut_off) = (me(&a), me(&c));
    let (_, count_before) = counter(&mut b).unwrap();
    let cut = |app: &App, peer: PeerId, loss: f64| {
        app.world()
            .resource::<SquadlinkSession>()
            .set_simulated_network_from(peer, NetworkConditions::default().with_loss(loss));
    };
    cut(&a, cut_off, 1.0);
    cut(&c, host, 1.0);

    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the cut-off client serves, the third follows it, the old host stops serving",
        |apps| {
            authority(apps[2]).local
                && authority(apps[1]).server == Some(cut_off)
                && !authority(apps[0]).local
                && authority(apps[0]).server.is_none()
        },
    );
    let epoch = authority(&c).epoch;
    assert!(epoch >= 1, "the new server claims a later epoch");
    assert_eq!(authority(&b).epoch, epoch);
    // The third member's counter now comes from the new server and goes on from where it
    // was (the new server held the same world): no reset.
    let (_, at_switch) = counter(&mut b).unwrap();
    assert!(
        at_switch >= count_before,
        "{at_switch} after {count_before}"
    );
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the counter continues on the third member",
        |apps| counter(apps[1]).is_some_and(|(_, v)| v > at_switch + 10),
    );

    // During the split the new server's changes reach the third member; a change made on
    // the old host (no longer serving) reaches no one.
    set_square(&mut c, 0, Square(50, 50));
    set_square(&mut a, 1, Square(-7, -7));
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the new server's change reaches the third member",
        |apps| has_square(apps[1], Square(50, 50)),
    );
    assert!(
        !has_square(&mut b, Square(-7, -7)),
        "the old host's change was taken"
    );
    assert!(
        !has_square(&mut a, Square(50, 50)),
        "a change crossed the cut"
    );

    cut(&a, cut_off, 0.0);
    cut(&c, host, 0.0);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the old host steps down and follows the new server",
        |apps| {
            !authority(apps[0]).local
                && apps
                    .iter()
                    .all(|app| authority(app).server == Some(cut_off))
        },
    );
    assert_eq!(authority(&a).epoch, epoch);
    // The old host holds the new server's world now: its own change is gone.
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the old host takes the new server's world",
        |apps| has_square(apps[0], Square(50, 50)) && !has_square(apps[0], Square(-7, -7)),
    );
    set_square(&mut c, 2, Square(60, 60));
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "a change of the new server reaches both",
        |apps| has_square(apps[0], Square(60, 60)) && has_square(apps[1], Square(60, 60)),
    );
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(
            square_count(app),
            3,
            "one world: no square lost or duplicated"
        );
        let world = app.world_mut();
        assert_eq!(world.query::<&Counter>().iter(world).count(), 1);
    }
    // Each member saw the new server named once.
    for app in [&a, &b, &c] {
        let changes = &app.world().resource::<Changes>().0;
        assert_eq!(
            changes.iter().filter(|ch| ch.server == cut_off).count(),
            1,
            "{:?} saw {changes:?}",
            me(app)
        );
    }
}

/// The client entity the serving `app` keeps for `peer`, if any.
fn client_of(app: &mut App, peer: PeerId) -> Option<Entity> {
    let world = app.world_mut();
    let mut q = world.query::<(Entity, &NetworkId)>();
    q.iter(world)
        .find(|(_, id)| id.get() == peer.0)
        .map(|(entity, _)| entity)
}

/// The host stops hearing one client for longer than the backend's silence (one direction
/// only: the client still hears the host and so keeps following it) and gives that client
/// up; when it hears the client again it makes a new client entity for it and greets it.
/// The client must then connect its replicon client afresh (so replicon's server, which
/// knows the new entity only, authorises it again and sends the whole world): until it
/// does, the host replicates nothing to it.
#[test]
fn a_client_the_server_gave_up_and_greets_again_connects_afresh_and_gets_the_world() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let (mut a, mut b, mut c) = three_with_world(&mm.url());
    let client = me(&b);
    let first = client_of(&mut a, client).expect("the host has a client entity for b");
    let hear_b = |app: &App, loss: f64| {
        app.world()
            .resource::<SquadlinkSession>()
            .set_simulated_network_from(client, NetworkConditions::default().with_loss(loss));
    };
    hear_b(&a, 1.0);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the host gives the silent client up",
        |apps| client_of(apps[0], client).is_none(),
    );
    assert_eq!(
        authority(&b).server,
        Some(me(&a)),
        "the client, which still hears the host, keeps following it"
    );
    hear_b(&a, 0.0);
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the host hears the client again and makes a new client entity for it",
        |apps| client_of(apps[0], client).is_some_and(|e| e != first),
    );
    set_square(&mut a, 1, Square(70, 70));
    step_until(
        &mut [&mut a, &mut b, &mut c],
        "the host's change reaches the client it greeted again, and the other",
        |apps| has_square(apps[1], Square(70, 70)) && has_square(apps[2], Square(70, 70)),
    );
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(
            square_count(app),
            3,
            "one world: no square lost or duplicated"
        );
    }
    // The host did not change: no one saw a hand-over.
    for app in [&a, &b, &c] {
        assert_eq!(authority(app).epoch, 0);
        assert!(app.world().resource::<Changes>().0.len() <= 1);
    }
}
