//! Arena: a small playable Bevy game over Squadlink. Each player moves a coloured square
//! with the arrow keys or WASD. Positions travel on an unreliable sequenced channel. Space
//! sends a "ping" event on the reliable channel, and every other square flashes. Hold V to
//! talk (voice chat, positional: a square on your left sounds from the left); a yellow frame
//! around a square shows who is speaking. An overlay lists the peers with their path
//! (direct or relayed), round-trip time and loss. With `--test-pattern` a player sends a
//! synthetic video feed (VP8), which the others see in a tile above that player's square;
//! built with `--features webcam`, `--camera [NAME]` sends a webcam's picture instead.
//!
//! Run two of them:
//!   cargo run -p squadlink-bevy-examples --bin arena                 # creates a lobby, shows its code
//!   cargo run -p squadlink-bevy-examples --bin arena -- --lobby CODE # joins it
//! The first instance on a machine also runs the matchmaker (127.0.0.1:7878); later ones use
//! it. `--autopilot` moves the square by itself; `--screenshot FILE --exit-after S` saves a
//! screenshot and quits (used by scripts/arena_screenshot.sh under Xvfb).

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy_squadlink::PeerId;
use bevy_squadlink::prelude::*;
use clap::Parser;
use squadlink_bevy_examples::{Ping, Position, add_arena_networking};

#[derive(Parser, Debug, Clone, Resource)]
#[command(about = "Arena: move a square, see your friends' squares (Squadlink + Bevy)")]
struct Args {
    /// Join this lobby instead of creating one.
    #[arg(long)]
    lobby: Option<String>,
    /// Matchmaker URL (default: the one on 127.0.0.1:7878, started here if none runs).
    #[arg(long)]
    matchmaker: Option<String>,
    /// Move by itself in a circle (for demos and unattended runs).
    #[arg(long)]
    autopilot: bool,
    /// Save a screenshot to this PNG file (at --exit-after, then quit).
    #[arg(long)]
    screenshot: Option<std::path::PathBuf>,
    /// Quit this many seconds after the first peer connected.
    #[arg(long)]
    exit_after: Option<f64>,
    /// Microphone from this WAV file (then silence) instead of the default device.
    #[arg(long)]
    voice_input: Option<std::path::PathBuf>,
    /// Transmit without holding V (open mic).
    #[arg(long)]
    open_mic: bool,
    /// Send the synthetic test pattern as this player's video (others see it above the
    /// square).
    #[arg(long)]
    test_pattern: bool,
    /// Send a webcam's picture: the first camera, or one whose name contains this text
    /// (build with `--features webcam`).
    #[cfg(feature = "webcam")]
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    camera: Option<String>,
}

/// Player colours, by position in the lobby's member list (join order).
const PALETTE: [Color; 4] = [
    Color::srgb(0.95, 0.20, 0.20),
    Color::srgb(0.20, 0.45, 0.95),
    Color::srgb(0.20, 0.85, 0.30),
    Color::srgb(0.95, 0.80, 0.15),
];
const SIZE: f32 = 64.0;
const SPEED: f32 = 260.0;

#[derive(Component)]
struct LocalPlayer;

#[derive(Component, Default)]
struct Flash(f32);

#[derive(Component)]
struct Overlay;

/// The frame around a square that shows its player speaking.
#[derive(Component)]
struct SpeakingRing;

/// The tile above a square that shows its player's video.
#[derive(Component)]
struct VideoTile;

fn main() -> AppExit {
    let args = Args::parse();
    let url = match args.matchmaker.clone() {
        Some(url) => url,
        None => match local_matchmaker() {
            Ok(url) => url,
            Err(e) => {
                eprintln!("error: {e}");
                return AppExit::error();
            }
        },
    };
    let lobby = args
        .lobby
        .clone()
        .map_or_else(|| LobbyRef::create(4), LobbyRef::Code);
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "Squadlink arena".into(),
                    resolution: (800, 600).into(),
                    ..default()
                }),
                ..default()
            })
            .set(bevy::log::LogPlugin {
                filter: format!("{},{}", bevy::log::DEFAULT_FILTER, squadlink::LOG_FILTER),
                ..default()
            }),
    );
    add_arena_networking(&mut app, url, lobby);
    let input = match &args.voice_input {
        Some(path) => AudioInput::Wav(path.clone()),
        None => AudioInput::Default,
    };
    let mode = if args.open_mic {
        VoiceMode::OpenMic
    } else {
        VoiceMode::PushToTalk
    };
    app.add_plugins(VoiceChatPlugin::new(
        squadlink::voice::VoiceConfig::default()
            .mode(mode)
            .input(input),
    ));
    let video = video_input(&args);
    app.add_plugins(VideoChatPlugin::new(VideoConfig::default().input(video)));
    app.insert_resource(args)
        .add_observer(dress_peer)
        .add_systems(Startup, setup)
        .add_systems(
            Update,
            (
                move_local,
                colour_local,
                (send_position, send_ping).run_if(in_lobby),
                receive_positions,
                receive_pings,
                fade_flash,
                update_overlay,
                announce_lobby,
                unattended_exit,
                push_to_talk,
                show_speaking,
                show_video,
            ),
        )
        .run()
}

/// What this player sends as video: a webcam (`--camera`), the test pattern, or nothing.
fn video_input(args: &Args) -> VideoInput {
    #[cfg(feature = "webcam")]
    if let Some(name) = &args.camera {
        use squadlink::video::CameraChoice;
        return VideoInput::Camera(if name.is_empty() {
            CameraChoice::First
        } else {
            CameraChoice::Name(name.clone())
        });
    }
    if args.test_pattern {
        VideoInput::TestPattern
    } else {
        VideoInput::None
    }
}

/// The matchmaker to use without `--matchmaker`: start one on 127.0.0.1:7878 in a
/// background thread, or use the one already there.
fn local_matchmaker() -> Result<String, String> {
    let (url, started) = squadlink_matchmaker::ensure_local(7878)?;
    if started {
        eprintln!("arena: started a matchmaker at {url}");
    } else {
        eprintln!("arena: using the matchmaker already at {url}");
    }
    Ok(url)
}

fn setup(mut commands: Commands) {
    commands.spawn(Camera2d);
    commands.spawn((
        LocalPlayer,
        // Voices are heard from where our square is.
        VoiceListener,
        Sprite::from_color(Color::WHITE, Vec2::splat(SIZE)),
        Transform::from_xyz(-150.0, 0.0, 1.0),
        children![speaking_ring()],
    ));
    commands.spawn((
        Overlay,
        Text::new("connecting…"),
        TextFont {
            font_size: FontSize::Px(18.0),
            ..default()
        },
        Node {
            position_type: PositionType::Absolute,
            top: Val::Px(10.0),
            left: Val::Px(10.0),
            ..default()
        },
    ));
}

fn colour_of(lobby: Option<&Lobby>, peer: PeerId) -> Color {
    let index = lobby
        .and_then(|l| l.members.iter().position(|(p, _)| *p == peer))
        .unwrap_or(0);
    PALETTE
        .get(index % PALETTE.len())
        .copied()
        .unwrap_or(Color::WHITE)
}

/// A peer connected: give its entity a square (with a speaking frame behind it).
fn dress_peer(on: On<PeerConnected>, mut commands: Commands, lobby: Option<Res<Lobby>>) {
    let colour = colour_of(lobby.as_deref(), on.peer);
    commands
        .entity(on.entity)
        .insert((
            Sprite::from_color(colour, Vec2::splat(SIZE)),
            Transform::from_xyz(150.0, 0.0, 0.5),
            Flash::default(),
        ))
        .with_child(speaking_ring());
}

/// The speaking frame's colour (light yellow; the screenshot check looks for it).
const SPEAKING: Color = Color::srgb(1.0, 1.0, 0.6);

/// A frame just larger than a square, behind it, hidden until its player speaks.
fn speaking_ring() -> impl Bundle {
    (
        SpeakingRing,
        Sprite::from_color(SPEAKING, Vec2::splat(SIZE + 14.0)),
        Transform::from_xyz(0.0, 0.0, -0.1),
        Visibility::Hidden,
    )
}

/// A peer's video started: a tile above its square shows it (the image updates in place).
fn show_video(mut commands: Commands, feeds: Query<(Entity, &PeerVideo), Added<PeerVideo>>) {
    for (entity, video) in &feeds {
        commands.entity(entity).with_child((
            VideoTile,
            Sprite {
                image: video.image.clone(),
                custom_size: Some(Vec2::new(160.0, 120.0)),
                ..default()
            },
            Transform::from_xyz(0.0, SIZE / 2.0 + 72.0, 0.3),
        ));
    }
}

/// Hold V to talk.
fn push_to_talk(keys: Res<ButtonInput<KeyCode>>, mut voice: ResMut<VoiceChat>) {
    let held = keys.pressed(KeyCode::KeyV);
    if voice.push_to_talk != held {
        voice.push_to_talk = held;
    }
}

/// Shows the frame of every square whose player is speaking (ours while we transmit).
fn show_speaking(
    voice: Res<VoiceChat>,
    speaking: Query<&Speaking>,
    local: Query<(), With<LocalPlayer>>,
    mut rings: Query<(&ChildOf, &mut Visibility), With<SpeakingRing>>,
) {
    for (parent, mut visibility) in &mut rings {
        let on = if local.contains(parent.parent()) {
            voice.transmitting()
        } else {
            speaking.get(parent.parent()).is_ok_and(|s| s.0)
        };
        let wanted = if on {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        };
        if *visibility != wanted {
            *visibility = wanted;
        }
    }
}

fn colour_local(lobby: Option<Res<Lobby>>, mut q: Query<&mut Sprite, With<LocalPlayer>>) {
    let Some(lobby) = lobby else { return };
    let colour = colour_of(Some(&lobby), lobby.me);
    for mut sprite in &mut q {
        sprite.color = colour;
    }
}

fn move_local(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    args: Res<Args>,
    lobby: Option<Res<Lobby>>,
    mut q: Query<&mut Transform, With<LocalPlayer>>,
) {
    let Ok(mut t) = q.single_mut() else { return };
    if args.autopilot {
        // Circle around a spot that depends on our place in the lobby, so squares of
        // several autopiloted players do not overlap.
        let index = lobby
            .as_deref()
            .and_then(|l| l.members.iter().position(|(p, _)| *p == l.me))
            .unwrap_or(0) as f32;
        let a = time.elapsed_secs() * 1.5;
        t.translation.x = -240.0 + 240.0 * (index % 3.0) + 60.0 * a.cos();
        t.translation.y = 60.0 * a.sin();
        return;
    }
    let mut dir = Vec2::ZERO;
    for (keys_for, d) in [
        ([KeyCode::ArrowLeft, KeyCode::KeyA], Vec2::NEG_X),
        ([KeyCode::ArrowRight, KeyCode::KeyD], Vec2::X),
        ([KeyCode::ArrowUp, KeyCode::KeyW], Vec2::Y),
        ([KeyCode::ArrowDown, KeyCode::KeyS], Vec2::NEG_Y),
    ] {
        if keys.any_pressed(keys_for) {
            dir += d;
        }
    }
    let step = dir.normalize_or_zero() * SPEED * time.delta_secs();
    t.translation.x = (t.translation.x + step.x).clamp(-370.0, 370.0);
    t.translation.y = (t.translation.y + step.y).clamp(-270.0, 270.0);
}

fn send_position(
    q: Query<&Transform, With<LocalPlayer>>,
    mut out: MessageWriter<Outgoing<Position>>,
) {
    if let Ok(t) = q.single() {
        out.write(Outgoing::to_all(Position {
            x: t.translation.x,
            y: t.translation.y,
        }));
    }
}

fn send_ping(keys: Res<ButtonInput<KeyCode>>, mut out: MessageWriter<Outgoing<Ping>>) {
    if keys.just_pressed(KeyCode::Space) {
        out.write(Outgoing::to_all(Ping));
    }
}

fn receive_positions(
    mut inbox: MessageReader<Received<Position>>,
    mut q: Query<&mut Transform, With<Peer>>,
) {
    for msg in inbox.read() {
        if let Ok(mut t) = q.get_mut(msg.from) {
            t.translation.x = msg.message.x;
            t.translation.y = msg.message.y;
        }
    }
}

fn receive_pings(mut inbox: MessageReader<Received<Ping>>, mut q: Query<&mut Flash>) {
    for msg in inbox.read() {
        if let Ok(mut flash) = q.get_mut(msg.from) {
            flash.0 = 1.0;
        }
    }
}

fn fade_flash(
    time: Res<Time>,
    lobby: Option<Res<Lobby>>,
    mut q: Query<(&Peer, &mut Flash, &mut Sprite)>,
) {
    for (peer, mut flash, mut sprite) in &mut q {
        flash.0 = (flash.0 - time.delta_secs() * 2.0).max(0.0);
        let base = colour_of(lobby.as_deref(), peer.id).to_srgba();
        let f = flash.0;
        sprite.color = Color::srgb(
            base.red + (1.0 - base.red) * f,
            base.green + (1.0 - base.green) * f,
            base.blue + (1.0 - base.blue) * f,
        );
    }
}

/// Prints `LOBBY <code>` once on stdout, for scripts that start a second player.
fn announce_lobby(lobby: Option<Res<Lobby>>, mut done: Local<bool>) {
    if let (false, Some(lobby)) = (*done, lobby) {
        println!("LOBBY {}", lobby.code);
        *done = true;
    }
}

fn update_overlay(
    status: Res<SquadlinkStatus>,
    lobby: Option<Res<Lobby>>,
    peers: Query<(&Peer, &PeerPath, &PeerStats, Option<&Speaking>)>,
    voice: Res<VoiceChat>,
    mut text: Query<&mut Text, With<Overlay>>,
) {
    let Ok(mut text) = text.single_mut() else {
        return;
    };
    let mut s = match (&*status, lobby.as_deref()) {
        (SquadlinkStatus::InLobby, Some(l)) => {
            format!("lobby {}  (join with --lobby {})\n", l.code, l.code)
        }
        (SquadlinkStatus::Failed(why), _) => format!("offline: {why}\n"),
        _ => "connecting…\n".to_string(),
    };
    for (peer, path, stats, speaking) in &peers {
        let route = if path.0 == PathKind::Relay {
            "relayed"
        } else {
            "direct"
        };
        let rtt = stats.rtt.map_or("-".to_string(), |r| {
            format!("{:.1} ms", r.as_secs_f64() * 1e3)
        });
        let talking = if speaking.is_some_and(|s| s.0) {
            "  speaking"
        } else {
            ""
        };
        s.push_str(&format!(
            "{}  {route}  rtt {rtt}  loss {:.0}%{talking}\n",
            peer.player,
            stats.loss * 100.0
        ));
    }
    // The details are in the log; one short line each here.
    for problem in voice.problems() {
        let what = problem.split(':').next().unwrap_or("device");
        s.push_str(&format!(
            "voice: no {what} device (voice runs without it)\n"
        ));
    }
    s.push_str("arrows/WASD move, space pings, hold V to talk");
    text.0 = s;
}

/// `--screenshot` / `--exit-after S`: S seconds after the first peer connected (or after
/// 30 s alone, so a run that never connects still ends), capture the window, then quit.
fn unattended_exit(
    mut commands: Commands,
    time: Res<Time>,
    args: Res<Args>,
    peers: Query<(), With<Peer>>,
    mut clock: Local<(Option<f32>, Option<f32>)>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(after) = args.exit_after else { return };
    let now = time.elapsed_secs();
    let (first_peer, taken) = &mut *clock;
    if first_peer.is_none() && !peers.is_empty() {
        *first_peer = Some(now);
    }
    let due = match *first_peer {
        Some(t) => f64::from(now - t) >= after,
        None => now >= 30.0,
    };
    match *taken {
        None if due => {
            if let Some(path) = args.screenshot.clone() {
                commands
                    .spawn(Screenshot::primary_window())
                    .observe(save_to_disk(path));
            }
            *taken = Some(now);
        }
        // Give the screenshot time to be read back and written.
        Some(at) if now - at > 2.0 => {
            exit.write(AppExit::Success);
        }
        _ => {}
    }
}
