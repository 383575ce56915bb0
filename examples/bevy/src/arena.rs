//! The arena's game, shared by the native `arena` and the browser's `web_arena`: squares
//! that move (arrows/WASD, or an autopilot), positions on the unreliable sequenced channel,
//! pings on the reliable one (the other squares flash), and an overlay with each peer's
//! path, round trip and loss. Voice, video and screenshots are the native binary's.

use bevy::prelude::*;
use bevy_squadlink::PeerId;
use bevy_squadlink::prelude::*;

use crate::{Ping, Position};

/// Player colours, by position in the lobby's member list (join order).
pub const PALETTE: [Color; 4] = [
    Color::srgb(0.95, 0.20, 0.20),
    Color::srgb(0.20, 0.45, 0.95),
    Color::srgb(0.20, 0.85, 0.30),
    Color::srgb(0.95, 0.80, 0.15),
];
/// A square's side, in world units.
pub const SIZE: f32 = 64.0;
const SPEED: f32 = 260.0;

/// Our own square.
#[derive(Component)]
pub struct LocalPlayer;

/// How bright a peer's square flashes after its ping (fades to 0).
#[derive(Component, Default)]
pub struct Flash(f32);

/// The status text.
#[derive(Component)]
pub struct Overlay;

/// How the arena is played here.
#[derive(Resource, Clone, Debug, Default)]
pub struct ArenaSettings {
    /// Move by itself in a circle (demos, unattended runs).
    pub autopilot: bool,
    /// How another player joins this lobby, before its code (`--lobby ` natively,
    /// `?lobby=` in the browser).
    pub join_hint: String,
}

/// Lines the overlay shows under the peers (the native arena's voice problems, say).
#[derive(Resource, Default)]
pub struct OverlayNotes(pub Vec<String>);

/// Bevy's default plugins for the arena: its 800×600 window (drawn into the page's
/// `canvas`, a CSS selector, in the browser), and logs without the WebRTC engine's noise.
pub fn arena_plugins(canvas: Option<String>) -> bevy::app::PluginGroupBuilder {
    DefaultPlugins
        .set(WindowPlugin {
            primary_window: Some(Window {
                title: "Squadlink arena".into(),
                resolution: (800, 600).into(),
                canvas,
                ..default()
            }),
            ..default()
        })
        .set(bevy::log::LogPlugin {
            filter: format!("{},{}", bevy::log::DEFAULT_FILTER, squadlink::LOG_FILTER),
            ..default()
        })
}

/// The arena's game: its systems, with `settings`. The app adds the Squadlink plugin
/// (`crate::add_arena_networking`) and a window.
pub struct ArenaPlugin {
    /// How the arena is played here.
    pub settings: ArenaSettings,
}

impl Plugin for ArenaPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.settings.clone())
            .init_resource::<OverlayNotes>()
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
                ),
            );
    }
}

fn setup(mut commands: Commands) {
    commands.spawn(Camera2d);
    commands.spawn((
        LocalPlayer,
        Sprite::from_color(Color::WHITE, Vec2::splat(SIZE)),
        Transform::from_xyz(-150.0, 0.0, 1.0),
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

/// The colour of `peer`: by its place in the lobby.
pub fn colour_of(lobby: Option<&Lobby>, peer: PeerId) -> Color {
    let index = lobby
        .and_then(|l| l.members.iter().position(|(p, _)| *p == peer))
        .unwrap_or(0);
    PALETTE
        .get(index % PALETTE.len())
        .copied()
        .unwrap_or(Color::WHITE)
}

/// A peer connected: give its entity a square.
fn dress_peer(on: On<PeerConnected>, mut commands: Commands, lobby: Option<Res<Lobby>>) {
    let colour = colour_of(lobby.as_deref(), on.peer);
    commands.entity(on.entity).insert((
        Sprite::from_color(colour, Vec2::splat(SIZE)),
        Transform::from_xyz(150.0, 0.0, 0.5),
        Flash::default(),
    ));
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
    settings: Res<ArenaSettings>,
    lobby: Option<Res<Lobby>>,
    mut q: Query<&mut Transform, With<LocalPlayer>>,
) {
    let Ok(mut t) = q.single_mut() else { return };
    if settings.autopilot {
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

fn update_overlay(
    status: Res<SquadlinkStatus>,
    settings: Res<ArenaSettings>,
    notes: Res<OverlayNotes>,
    lobby: Option<Res<Lobby>>,
    peers: Query<(&Peer, &PeerPath, &PeerStats)>,
    mut text: Query<&mut Text, With<Overlay>>,
) {
    let Ok(mut text) = text.single_mut() else {
        return;
    };
    let mut s = match (&*status, lobby.as_deref()) {
        (SquadlinkStatus::InLobby, Some(l)) => {
            format!(
                "lobby {}  (join with {}{})\n",
                l.code, settings.join_hint, l.code
            )
        }
        (SquadlinkStatus::Failed(why), _) => format!("offline: {why}\n"),
        _ => "connecting…\n".to_string(),
    };
    for (peer, path, stats) in &peers {
        let route = if path.0 == PathKind::Relay {
            "relayed"
        } else {
            "direct"
        };
        let rtt = stats.rtt.map_or("-".to_string(), |r| {
            format!("{:.1} ms", r.as_secs_f64() * 1e3)
        });
        s.push_str(&format!(
            "{}  {route}  rtt {rtt}  loss {:.0}%\n",
            peer.player,
            stats.loss * 100.0
        ));
    }
    for note in &notes.0 {
        s.push_str(note);
        s.push('\n');
    }
    s.push_str("arrows/WASD move, space pings");
    text.0 = s;
}
