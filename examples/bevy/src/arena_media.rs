//! The arena's voice and video, shown in the game (native `arena` and the browser's
//! `web_arena` alike): our square is where we listen from, a light-yellow frame shows who is
//! speaking (ours while we transmit), V is push-to-talk, a peer's video plays in a tile
//! above its square, and device problems go to the overlay. Add `VoiceChatPlugin` and
//! `VideoChatPlugin` beside it.

use bevy::prelude::*;
use bevy_squadlink::prelude::*;

use crate::arena::{LocalPlayer, OverlayNotes, SIZE};

/// Shows the arena's voice and video (see the module).
pub struct ArenaMediaPlugin;

impl Plugin for ArenaMediaPlugin {
    fn build(&self, app: &mut App) {
        app.add_observer(ring_peer)
            .add_systems(PostStartup, ring_local)
            .add_systems(
                Update,
                (push_to_talk, show_speaking, show_video, voice_notes),
            );
    }
}

/// The frame around a square that shows its player speaking.
#[derive(Component)]
pub struct SpeakingRing;

/// The tile above a square that shows its player's video.
#[derive(Component)]
pub struct VideoTile;

/// Our square: voices are heard from where it is, and it has a speaking frame.
fn ring_local(mut commands: Commands, local: Query<Entity, With<LocalPlayer>>) {
    for entity in &local {
        commands
            .entity(entity)
            .insert(VoiceListener)
            .with_child(speaking_ring());
    }
}

/// A peer connected: its square gets a speaking frame behind it.
fn ring_peer(on: On<PeerConnected>, mut commands: Commands) {
    commands.entity(on.entity).with_child(speaking_ring());
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

/// The overlay's voice lines: problems with devices (the details are in the log), and how
/// to talk.
fn voice_notes(voice: Res<VoiceChat>, mut notes: ResMut<OverlayNotes>) {
    let mut lines: Vec<String> = voice
        .problems()
        .iter()
        .map(|problem| {
            let what = problem.split(':').next().unwrap_or("device");
            format!("voice: no {what} device (voice runs without it)")
        })
        .collect();
    lines.push(match voice.mode {
        VoiceMode::PushToTalk => "hold V to talk".into(),
        _ => "open mic: the others hear you when you speak".into(),
    });
    if notes.0 != lines {
        notes.0 = lines;
    }
}
