//! Voice chat in Bevy: the [`VoiceChat`] resource, voice components on peer entities, and
//! positional voice from entities' transforms.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_squadlink::prelude::*;
//!
//! App::new()
//!     .add_plugins(MinimalPlugins)
//!     .add_plugins(SquadlinkPlugin::new(
//!         SessionBuilder::new("ws://127.0.0.1:7878/v1").join(LobbyRef::create(4)),
//!     ))
//!     .add_plugins(VoiceChatPlugin::default().mode(VoiceMode::PushToTalk))
//!     .add_systems(Update, |mut voice: ResMut<VoiceChat>| voice.push_to_talk = true)
//!     .run();
//! ```
//!
//! Positional voice goes through the SDK's own mixer, fed with positions: a peer entity's
//! `GlobalTransform` relative to the entity marked [`VoiceListener`] sets its pan and
//! distance falloff. Not bevy_audio's spatial audio, because voice playout must be clocked
//! by one output device and decoded just in time (FEC needs the next packet, and every
//! buffer in between is latency); handing decoded voice to a second audio engine would add
//! that engine's buffering to the 40-odd ms the pipeline takes, and tie voice to Bevy's
//! audio feature and device. In the browser the same law sets the left and right gains of
//! each peer's voice in Web Audio, where the browser's own jitter buffer clocks playout.

use std::sync::{Arc, Mutex};

use bevy::prelude::*;
pub use squadlink::voice::{AudioInput, AudioOutput, VoiceMode};
use squadlink::voice::{Falloff, Listener, Voice, VoiceConfig, VoiceEvent, VoiceStats};

use crate::plugin::{Peer, PeerConnected, PeerEntities, Pump, SquadlinkSession, SquadlinkSet};

/// Makes the voice settings of each new session.
type ConfigFn = Arc<dyn Fn() -> VoiceConfig + Send + Sync>;

/// Adds voice chat to a [`crate::SquadlinkPlugin`] app. Voice starts once a session is in
/// its lobby, stops when the game leaves it, and starts again with the next session (see
/// [`VoiceChatPlugin::each_session`]). A missing microphone or speaker is reported in
/// [`VoiceChat::problems`] and voice runs without it.
pub struct VoiceChatPlugin {
    config: Mutex<Option<VoiceConfig>>,
    each: Option<ConfigFn>,
}

impl Default for VoiceChatPlugin {
    /// The default devices, for every session.
    fn default() -> Self {
        Self::each_session(VoiceConfig::default)
    }
}

impl VoiceChatPlugin {
    /// Voice with these settings (devices, bitrate, noise suppression, …) for the first
    /// session. A config can hold a source of the game's own, which cannot be copied: for
    /// voice in later sessions too (after [`crate::Squadlink::join`]), use
    /// [`VoiceChatPlugin::each_session`].
    pub fn new(config: VoiceConfig) -> Self {
        Self {
            config: Mutex::new(Some(config)),
            each: None,
        }
    }

    /// Voice in every session, with the settings `make` returns when one starts.
    pub fn each_session(make: impl Fn() -> VoiceConfig + Send + Sync + 'static) -> Self {
        Self {
            config: Mutex::new(None),
            each: Some(Arc::new(make)),
        }
    }

    /// How the microphone opens (default: voice activity).
    pub fn mode(mut self, mode: VoiceMode) -> Self {
        if let Ok(mut c) = self.config.lock()
            && let Some(config) = c.take()
        {
            *c = Some(config.mode(mode));
        }
        if let Some(make) = self.each.take() {
            self.each = Some(Arc::new(move || make().mode(mode)));
        }
        self
    }
}

/// Voice chat controls and state.
#[derive(Resource)]
pub struct VoiceChat {
    /// How the microphone opens.
    pub mode: VoiceMode,
    /// Hold-to-talk state: set it from your input system (in [`VoiceMode::PushToTalk`]).
    pub push_to_talk: bool,
    /// Our microphone is muted.
    pub self_muted: bool,
    /// How voices fade with distance (positional voice).
    pub falloff: Falloff,
    problems: Vec<String>,
    voice: Option<Voice>,
    pending: Mutex<Option<VoiceConfig>>,
    each: Option<ConfigFn>,
}

impl VoiceChat {
    /// Whether our voice is being sent right now.
    pub fn transmitting(&self) -> bool {
        self.voice.as_ref().is_some_and(Voice::transmitting)
    }

    /// Device problems so far (a missing microphone, …); voice runs without the device.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether voice is running (a session is in its lobby).
    pub fn running(&self) -> bool {
        self.voice.is_some()
    }

    /// The SDK's voice handle, for anything not mirrored here (manual audio, stats).
    pub fn voice(&self) -> Option<&Voice> {
        self.voice.as_ref()
    }
}

/// On a peer entity: its voice is playing.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq, Deref)]
pub struct Speaking(pub bool);

/// On a peer entity: its volume, 0.0 to 2.0 (default 1.0). Change it to change the volume.
#[derive(Component, Debug, Clone, Copy, PartialEq, Deref, DerefMut)]
pub struct VoiceVolume(pub f32);

impl Default for VoiceVolume {
    fn default() -> Self {
        Self(1.0)
    }
}

/// On a peer entity: muted for us (not even decoded). Change it to mute or unmute.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq, Deref, DerefMut)]
pub struct Muted(pub bool);

/// On a peer entity: its voice statistics, refreshed every frame.
#[derive(Component, Debug, Clone, Default, Deref)]
pub struct PeerVoiceStats(pub VoiceStats);

/// Marks the entity voices are heard from (a camera, the local player). Without one,
/// voices are centred and not attenuated.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct VoiceListener;

/// Message: a peer started or stopped speaking.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct SpeakingChanged {
    /// The peer's entity.
    pub entity: Entity,
    /// Whether it is speaking now.
    pub speaking: bool,
}

impl Plugin for VoiceChatPlugin {
    fn build(&self, app: &mut App) {
        let pending = self.config.lock().ok().and_then(|mut c| c.take());
        let mode = pending
            .as_ref()
            .map(|c| c.mode)
            .or_else(|| self.each.as_ref().map(|make| make().mode))
            .unwrap_or_default();
        app.insert_resource(VoiceChat {
            mode,
            push_to_talk: false,
            self_muted: false,
            falloff: Falloff::default(),
            problems: Vec::new(),
            voice: None,
            pending: Mutex::new(pending),
            each: self.each.clone(),
        })
        .add_message::<SpeakingChanged>()
        .add_observer(add_voice_components)
        .add_systems(
            PreUpdate,
            (
                start_voice,
                voice_events,
                apply_controls,
                refresh_voice_stats,
            )
                .chain()
                .in_set(SquadlinkSet::Receive)
                .after(Pump),
        );
    }
}

fn add_voice_components(on: On<PeerConnected>, mut commands: Commands) {
    commands.entity(on.entity).insert((
        Speaking(false),
        VoiceVolume::default(),
        Muted::default(),
        PeerVoiceStats::default(),
    ));
}

fn start_voice(mut chat: ResMut<VoiceChat>, session: Option<Res<SquadlinkSession>>) {
    // The session it ran on is gone, or replaced: voice stops with it.
    let renewed = session.as_ref().is_none_or(|s| s.is_added());
    if renewed && let Some(voice) = chat.voice.take() {
        info!("squadlink: voice chat stopped with its session");
        crate::plugin::close_aside(move || voice.stop());
    }
    if chat.voice.is_some() {
        return;
    }
    let Some(session) = session else { return };
    let pending = chat.pending.lock().ok().and_then(|mut p| p.take());
    let Some(config) = pending.or_else(|| chat.each.as_ref().map(|make| make())) else {
        return;
    };
    match Voice::start(&session, config) {
        Ok(voice) => {
            info!("squadlink: voice chat started");
            chat.voice = Some(voice);
        }
        Err(e) => {
            error!("squadlink: voice chat could not start: {e}");
            chat.problems.push(e.to_string());
        }
    }
}

fn voice_events(
    mut chat: ResMut<VoiceChat>,
    peers: Res<PeerEntities>,
    mut speaking: Query<&mut Speaking>,
    mut changes: MessageWriter<SpeakingChanged>,
) {
    let Some(voice) = chat.voice.as_ref() else {
        return;
    };
    let events = voice.poll_events();
    for event in events {
        match event {
            VoiceEvent::SpeakingStarted { peer } | VoiceEvent::SpeakingStopped { peer } => {
                let now = matches!(event, VoiceEvent::SpeakingStarted { .. });
                let Some(&entity) = peers.0.get(&peer) else {
                    continue;
                };
                if let Ok(mut s) = speaking.get_mut(entity)
                    && s.0 != now
                {
                    s.0 = now;
                    changes.write(SpeakingChanged {
                        entity,
                        speaking: now,
                    });
                }
            }
            VoiceEvent::TransmitStarted | VoiceEvent::TransmitStopped => {}
            VoiceEvent::DeviceStarted { direction, name } => {
                info!("squadlink: voice {direction} device: {name}");
            }
            VoiceEvent::DeviceUnavailable { direction, reason } => {
                warn!("squadlink: no voice {direction} device: {reason}");
                chat.problems.push(format!("{direction}: {reason}"));
            }
            // Events added in later versions of the SDK.
            _ => {}
        }
    }
}

fn apply_controls(
    chat: Res<VoiceChat>,
    peers: Query<(&Peer, &VoiceVolume, &Muted, Option<&GlobalTransform>)>,
    listener: Query<&GlobalTransform, With<VoiceListener>>,
) {
    let Some(voice) = chat.voice.as_ref() else {
        return;
    };
    voice.set_mode(chat.mode);
    voice.set_push_to_talk(chat.push_to_talk);
    voice.set_self_muted(chat.self_muted);
    let listener = listener.iter().next();
    if let Some(l) = listener {
        let right = l.right();
        voice.set_listener(
            Listener {
                position: l.translation().to_array(),
                right: right.to_array(),
            },
            chat.falloff,
        );
    }
    for (entity_peer, volume, muted, transform) in &peers {
        voice.set_peer_volume(entity_peer.id, volume.0);
        voice.set_peer_muted(entity_peer.id, muted.0);
        let position = listener.and(transform).map(|t| t.translation().to_array());
        voice.set_peer_position(entity_peer.id, position);
    }
}

fn refresh_voice_stats(chat: Res<VoiceChat>, mut q: Query<(&Peer, &mut PeerVoiceStats)>) {
    let Some(voice) = chat.voice.as_ref() else {
        return;
    };
    for (peer, mut stats) in &mut q {
        if let Some(s) = voice.stats(peer.id) {
            stats.0 = s;
        }
    }
}
