//! Headless Bevy apps (MinimalPlugins) in one process, through a real embedded matchmaker
//! and real WebRTC on loopback, stepped with `app.update()`: peer entities appear on
//! connect, typed messages arrive on the right entity, entities go on disconnect, a game
//! leaves and joins another lobby at run time; and apps whose sessions are on
//! `squadlink::testing::TestNet`, stepped in simulated time.

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

/// The session settings every test app uses, in `lobby` of the matchmaker at `url`.
fn builder(url: &str, lobby: LobbyRef) -> SessionBuilder {
    SessionBuilder::new(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::UnreliableSequenced)
        .channel(ChannelKind::ReliableOrdered)
        .join(lobby)
}

fn app(url: &str, lobby: LobbyRef) -> App {
    app_with(SquadlinkPlugin::new(builder(url, lobby)))
}

fn app_with(plugin: SquadlinkPlugin) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(plugin)
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
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
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

#[cfg(feature = "voice")]
#[derive(Resource, Default)]
struct Heard(Vec<SpeakingChanged>);

/// Voice in Bevy over real WebRTC: A sends a tone in bursts (open mic); on B, A's peer
/// entity gets `Speaking(true)` and a `SpeakingChanged` message; muting A on B (the `Muted`
/// component) stops it being heard.
#[cfg(feature = "voice")]
#[test]
fn voice_speaking_shows_on_the_peer_entity_and_mute_silences_it() {
    use bevy_squadlink::voice::{AudioInput, AudioOutput};
    use squadlink::voice::{SyntheticSource, VoiceConfig};

    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let tone = SyntheticSource::tone(220.0, 0.3)
        .bursts(Duration::from_millis(600), Duration::from_millis(600));
    let mut a = app(&url, LobbyRef::create(2));
    a.add_plugins(VoiceChatPlugin::new(
        VoiceConfig::default()
            .mode(VoiceMode::OpenMic)
            .input(AudioInput::Source(Box::new(tone)))
            .output(AudioOutput::None),
    ));
    step_until(&mut [&mut a], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    let code = a.world().resource::<Lobby>().code.clone();
    let mut b = app(&url, LobbyRef::Code(code));
    b.add_plugins(VoiceChatPlugin::new(
        VoiceConfig::default()
            .input(AudioInput::None)
            .output(AudioOutput::None),
    ))
    .init_resource::<Heard>()
    .add_systems(
        Update,
        |mut msgs: MessageReader<SpeakingChanged>, mut heard: ResMut<Heard>| {
            heard.0.extend(msgs.read().cloned());
        },
    );
    let speaking_on_b = |app: &mut App| {
        let world = app.world_mut();
        let mut q = world.query::<(Entity, &Speaking)>();
        q.iter(world).find(|(_, s)| s.0).map(|(e, _)| e)
    };
    step_until(&mut [&mut a, &mut b], |apps| {
        speaking_on_b(apps[1]).is_some()
    });
    let entity = speaking_on_b(&mut b).unwrap();
    assert_eq!(b.world().get::<Peer>(entity).map(|p| p.id), Some(me(&a)));
    assert!(
        b.world()
            .resource::<Heard>()
            .0
            .iter()
            .any(|m| m.entity == entity && m.speaking)
    );
    assert!(a.world().resource::<VoiceChat>().running());
    step_until(&mut [&mut a, &mut b], |apps| {
        apps[0].world().resource::<VoiceChat>().transmitting()
    });
    // Voice statistics reach the entity (refreshed four times a second).
    step_until(&mut [&mut a, &mut b], |apps| {
        apps[1]
            .world()
            .get::<PeerVoiceStats>(entity)
            .is_some_and(|s| s.packets_received > 0 && s.decoded > 0)
    });

    // Mute A on B: not decoded, so not speaking, for a whole burst cycle and more.
    b.world_mut().get_mut::<Muted>(entity).unwrap().0 = true;
    step_until(&mut [&mut a, &mut b], |apps| {
        apps[1]
            .world()
            .get::<Speaking>(entity)
            .is_some_and(|s| !s.0)
    });
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        a.update();
        b.update();
        assert!(
            !b.world().get::<Speaking>(entity).unwrap().0,
            "a muted peer spoke"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Video: A sends the test pattern; on B, A's entity gets a `PeerVideo` whose image holds
/// A's decoded frames (the drawn counter reads back from the image's pixels and advances).
#[cfg(feature = "video")]
#[test]
fn a_peers_video_is_an_image_on_its_entity() {
    use bevy::image::{Image, ImagePlugin};
    use bevy_squadlink::video::TestPattern;

    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let with_images = |app: &mut App| {
        app.add_plugins((AssetPlugin::default(), ImagePlugin::default()));
    };
    let mut a = app(&url, LobbyRef::create(2));
    with_images(&mut a);
    a.add_plugins(VideoChatPlugin::test_pattern());
    step_until(&mut [&mut a], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    let code = a.world().resource::<Lobby>().code.clone();
    let mut b = app(&url, LobbyRef::Code(code));
    with_images(&mut b);
    b.add_plugins(VideoChatPlugin::default());

    let counter_on_b = |app: &mut App| -> Option<(Entity, u64, u64)> {
        let world = app.world_mut();
        let mut q = world.query::<(Entity, &PeerVideo)>();
        let (entity, video) = q.iter(world).next().map(|(e, v)| (e, v.clone()))?;
        let image = world.resource::<Assets<Image>>().get(&video.image)?;
        let data = image.data.as_ref()?;
        assert_eq!(video.size, UVec2::new(320, 240));
        assert_eq!(data.len(), 320 * 240 * 4);
        let counter = TestPattern::read_counter(320, 240, data)?;
        Some((entity, counter, video.frame_id))
    };
    step_until(&mut [&mut a, &mut b], |apps| {
        counter_on_b(apps[1]).is_some()
    });
    let (entity, first, first_id) = counter_on_b(&mut b).unwrap();
    assert_eq!(b.world().get::<Peer>(entity).map(|p| p.id), Some(me(&a)));
    // The same image changes as frames arrive, and the frame id moves with the counter.
    step_until(&mut [&mut a, &mut b], |apps| {
        counter_on_b(apps[1]).is_some_and(|(_, c, _)| c >= first + 5)
    });
    let (same, later, later_id) = counter_on_b(&mut b).unwrap();
    assert_eq!(same, entity);
    assert_eq!(later_id - first_id, later - first);
    step_until(&mut [&mut a, &mut b], |apps| {
        apps[1]
            .world()
            .get::<PeerVideoStats>(entity)
            .is_some_and(|s| s.frames_decoded > 5 && s.decode_errors == 0)
    });
    // B sends nothing: A's view of B has no video.
    assert!(a.world().resource::<VideoChat>().running());
    let world = a.world_mut();
    assert_eq!(world.query::<&PeerVideo>().iter(world).count(), 0);
}

/// Runs as a separate player process for the test below (ignored in normal runs): a plain
/// session, as dev-mode player SQUADLINK_CHILD_PLAYER, in lobby SQUADLINK_CHILD_CODE.
#[test]
#[ignore = "helper: run by other tests as a separate process"]
fn child_player_process() {
    let (Ok(url), Ok(code), Ok(player)) = (
        std::env::var("SQUADLINK_CHILD_URL"),
        std::env::var("SQUADLINK_CHILD_CODE"),
        std::env::var("SQUADLINK_CHILD_PLAYER"),
    ) else {
        return;
    };
    let s = squadlink::Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::UnreliableSequenced)
        .channel(ChannelKind::ReliableOrdered)
        .player_id(player)
        .join(LobbyRef::Code(code))
        .start()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        for _ in s.poll_events() {}
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_player(url: &str, code: &str, player: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_player_process",
            "--nocapture",
        ])
        .env("SQUADLINK_CHILD_URL", url)
        .env("SQUADLINK_CHILD_CODE", code)
        .env("SQUADLINK_CHILD_PLAYER", player)
        .spawn()
        .unwrap()
}

/// A player whose game crashes and is started again within the matchmaker's rejoin grace
/// comes back as the same peer id, on the same entity.
#[test]
fn a_rejoining_player_gets_its_entity_back() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let mut a = app(&url, LobbyRef::create(3));
    step_until(&mut [&mut a], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    let code = a.world().resource::<Lobby>().code.clone();
    let mut first = spawn_player(&url, &code, "phoenix");
    step_until(&mut [&mut a], |apps| peers(apps[0]).len() == 1);
    let entity_of = |app: &mut App| {
        let world = app.world_mut();
        let mut q = world.query::<(Entity, &Peer)>();
        q.single(world).map(|(e, p)| (e, p.id)).unwrap()
    };
    let (entity, id) = entity_of(&mut a);

    first.kill().unwrap();
    let _ = first.wait();
    let mut second = spawn_player(&url, &code, "phoenix");
    // The connection is replaced (or times out and comes back): PeerConnected fires again.
    let connects = a.world().resource::<Seen>().connected.len();
    step_until(&mut [&mut a], |apps| {
        apps[0].world().resource::<Seen>().connected.len() > connects
    });
    assert_eq!(entity_of(&mut a), (entity, id), "same entity, same peer id");
    assert!(a.world().get::<Reconnecting>(entity).is_none());
    assert!(
        a.world().resource::<Seen>().disconnected.is_empty(),
        "never despawned"
    );
    second.kill().unwrap();
    let _ = second.wait();
}

/// A game leaves its lobby and joins another at run time (`Squadlink::leave`, `join`): its
/// peer entities go with `ClosedHere`, the other side sees it leave, and in the new lobby it
/// connects to the member there.
#[test]
fn a_game_leaves_its_lobby_and_joins_another_at_run_time() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let mut a = app(&url, LobbyRef::create(2));
    step_until(&mut [&mut a], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    let first = a.world().resource::<Lobby>().code.clone();
    let mut b = app(&url, LobbyRef::Code(first.clone()));
    step_until(&mut [&mut a, &mut b], |apps| {
        apps.iter_mut().all(|app| peers(app).len() == 1)
    });
    let aid = me(&a);

    a.world_mut().resource_mut::<Squadlink>().leave();
    step_until(&mut [&mut a, &mut b], |apps| {
        peers(apps[0]).is_empty() && peers(apps[1]).is_empty()
    });
    assert_eq!(
        *a.world().resource::<SquadlinkStatus>(),
        SquadlinkStatus::NotStarted
    );
    assert!(a.world().get_resource::<Lobby>().is_none());
    assert!(a.world().get_resource::<SquadlinkSession>().is_none());
    assert_eq!(b.world().resource::<Seen>().disconnected, [aid]);

    // Another lobby, with C in it.
    let mut c = app(&url, LobbyRef::create(2));
    step_until(&mut [&mut c], |apps| {
        apps[0].world().get_resource::<Lobby>().is_some()
    });
    let second = c.world().resource::<Lobby>().code.clone();
    assert_ne!(first, second);
    a.world_mut()
        .resource_mut::<Squadlink>()
        .join(builder(&url, LobbyRef::Code(second.clone())));
    step_until(&mut [&mut a, &mut b, &mut c], |apps| {
        peers(apps[0]).len() == 1 && peers(apps[2]).len() == 1
    });
    assert_eq!(a.world().resource::<Lobby>().code, second);
    assert_eq!(peers(&mut a)[0].id, me(&c));
    assert!(peers(&mut b).is_empty(), "B stays alone in the first lobby");
}

/// Whole apps in memory: sessions on a `TestNet` (100 ms round trip, 5 % loss) handed to
/// idle plugins, the network advanced one 16 ms frame before each round of updates. Peer
/// entities appear and a typed reliable message arrives, in simulated time.
#[test]
fn apps_with_sessions_on_a_test_net_connect_and_exchange_typed_messages() {
    use squadlink::NetworkConditions;
    use squadlink::testing::TestNet;

    let net = TestNet::new(NetworkConditions::latency(Duration::from_millis(50)).with_loss(0.05));
    let mut apps: Vec<App> = (0..2)
        .map(|_| {
            let mut app = app_with(SquadlinkPlugin::idle());
            let session = net
                .join(builder("ws://unused", LobbyRef::create(2)))
                .unwrap();
            app.world_mut()
                .resource_mut::<Squadlink>()
                .use_session(session);
            app
        })
        .collect();
    let frame = Duration::from_millis(16);
    let step = |apps: &mut [App], done: &dyn Fn(&mut [App]) -> bool| {
        for _ in 0..2000 {
            if done(apps) {
                return;
            }
            net.advance(frame);
            for app in apps.iter_mut() {
                app.update();
            }
        }
        panic!("not reached in {:?} of simulated time", net.elapsed());
    };
    step(&mut apps, &|apps| {
        apps.iter_mut().all(|app| peers(app).len() == 1)
    });
    let aid = me(&apps[0]);
    apps[0]
        .world_mut()
        .write_message(Outgoing::to_all(Chat("in memory".into())));
    step(&mut apps, &|apps| {
        !apps[1].world().resource::<Seen>().chats.is_empty()
    });
    let (_, peer, chat) = apps[1].world().resource::<Seen>().chats[0].clone();
    assert_eq!((peer, chat), (aid, Chat("in memory".into())));
    assert!(net.elapsed() < Duration::from_secs(10));
}
