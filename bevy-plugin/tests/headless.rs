//! Three headless Bevy apps (MinimalPlugins) in one process, through a real embedded
//! matchmaker and real WebRTC on loopback, stepped with `app.update()`: peer entities appear
//! on connect, typed messages arrive on the right entity, entities go on disconnect.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_squadlink::PeerId;
use bevy_squadlink::prelude::*;

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Chat(String);

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Pos(f32, f32);

#[derive(Resource, Default)]
struct Seen {
    connected: Vec<PeerId>,
    disconnected: Vec<PeerId>,
    chats: Vec<(Entity, PeerId, Chat)>,
}

fn app(url: &str, lobby: LobbyRef) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(
            SquadlinkPlugin::new(url)
                .bind("127.0.0.1:0".parse().unwrap())
                .channel(ChannelKind::UnreliableSequenced)
                .channel(ChannelKind::ReliableOrdered)
                .join(lobby),
        )
        .add_squadlink_message::<Pos>(Channel(0))
        .add_squadlink_message::<Chat>(Channel(1))
        .init_resource::<Seen>()
        .add_observer(|on: On<PeerConnected>, mut seen: ResMut<Seen>| seen.connected.push(on.peer))
        .add_observer(|on: On<PeerDisconnected>, mut seen: ResMut<Seen>| {
            seen.disconnected.push(on.peer)
        })
        .add_systems(
            Update,
            |mut inbox: MessageReader<Received<Chat>>, mut seen: ResMut<Seen>| {
                for m in inbox.read() {
                    seen.chats.push((m.from, m.peer, m.message.clone()));
                }
            },
        );
    app
}

/// Steps every app until `done` holds (bounded).
fn step_until(apps: &mut [&mut App], mut done: impl FnMut(&mut [&mut App]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(apps) {
        assert!(Instant::now() < deadline, "condition not reached in time");
        for a in apps.iter_mut() {
            a.update();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn peers(app: &mut App) -> Vec<Peer> {
    let world = app.world_mut();
    let mut q = world.query::<&Peer>();
    let mut v: Vec<Peer> = q.iter(world).cloned().collect();
    v.sort_by_key(|p| p.id);
    v
}

fn me(app: &App) -> PeerId {
    app.world().resource::<Lobby>().me
}

#[test]
fn peers_are_entities_and_typed_messages_arrive_on_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mm = rt
        .block_on(squadlink_matchmaker::Server::bind(
            squadlink_matchmaker::Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
        ))
        .unwrap();
    let url = mm.url();

    let mut a = app(&url, LobbyRef::create(3));
    step_until(&mut [&mut a], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    assert_eq!(
        *a.world().resource::<SquadlinkStatus>(),
        SquadlinkStatus::InLobby
    );
    let code = a.world().resource::<Lobby>().code.clone();
    let mut b = app(&url, LobbyRef::Code(code.clone()));
    let mut c = app(&url, LobbyRef::Code(code));
    step_until(&mut [&mut a, &mut b, &mut c], |apps| {
        apps.iter_mut().all(|app| peers(app).len() == 2)
    });
    for app in [&a, &b, &c] {
        assert_eq!(
            app.world().resource::<Seen>().connected.len(),
            2,
            "one PeerConnected per peer"
        );
    }
    let (aid, cid) = (me(&a), me(&c));

    // A chats to everyone; B's and C's readers get it on A's entity.
    a.world_mut()
        .write_message(Outgoing::to_all(Chat("hello from a".into())));
    step_until(&mut [&mut a, &mut b, &mut c], |apps| {
        apps[1..]
            .iter()
            .all(|app| !app.world().resource::<Seen>().chats.is_empty())
    });
    for app in [&mut b, &mut c] {
        let (from, peer, chat) = app.world().resource::<Seen>().chats[0].clone();
        assert_eq!((peer, chat), (aid, Chat("hello from a".into())));
        assert_eq!(
            app.world().get::<Peer>(from).map(|p| p.id),
            Some(aid),
            "arrives on A's entity"
        );
    }

    // C leaves: its entity goes from A and B, with a PeerDisconnected observer event.
    drop(c);
    step_until(&mut [&mut a, &mut b], |apps| {
        apps.iter_mut().all(|app| peers(app).len() == 1)
    });
    for app in [&a, &b] {
        assert_eq!(app.world().resource::<Seen>().disconnected, [cid]);
    }
    assert_eq!(peers(&mut a)[0].id, me(&b));
    // Stats and path are mirrored onto the entity.
    let world = a.world_mut();
    let mut q = world.query::<(&PeerPath, &PeerStats)>();
    let (path, stats) = q.single(world).unwrap();
    assert_eq!(path.0, PathKind::Host);
    assert!(stats.connected);
}
