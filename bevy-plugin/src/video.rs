//! Video in Bevy: every peer entity that sends video gets a [`PeerVideo`] whose `Image`
//! shows its newest frame, ready for a `Sprite` or a material.
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
//!     .add_plugins(VideoChatPlugin::test_pattern())
//!     .add_systems(Update, new_feeds)
//!     .run();
//!
//! fn new_feeds(feeds: Query<(&Peer, &PeerVideo), Added<PeerVideo>>) {
//!     for (peer, video) in &feeds {
//!         // With Bevy's sprite feature: commands.entity(e).insert(Sprite::from_image(..)).
//!         info!("{} sends video: {:?}", peer.player, video.image);
//!     }
//! }
//! ```
//!
//! The `arena` example (`examples/bevy`) shows the feeds as sprites in a window.
//!
//! Each decoded frame's RGBA buffer is moved into the `Image` (no copy on the way; the
//! decoder thread already converted it from I420), and Bevy uploads it once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy::image::{Image, ToExtents};
use bevy::prelude::*;
#[cfg(not(target_arch = "wasm32"))]
pub use squadlink::video::VideoSource;
pub use squadlink::video::{TestPattern, VideoConfig, VideoInput, VideoStats};
use squadlink::video::{Video, VideoEvent};

use crate::plugin::{Peer, PeerConnected, Pump, SquadlinkSession, SquadlinkSet};

/// Makes the video settings of each new session.
type ConfigFn = Arc<dyn Fn() -> VideoConfig + Send + Sync>;

/// Adds video to a [`crate::SquadlinkPlugin`] app. Video starts once a session is in its
/// lobby, stops when the game leaves it, and starts again with the next session (see
/// [`VideoChatPlugin::each_session`]); peers' video is received whatever this one sends.
pub struct VideoChatPlugin {
    config: Mutex<Option<VideoConfig>>,
    each: Option<ConfigFn>,
}

impl Default for VideoChatPlugin {
    /// Receives peers' video and sends none, in every session.
    fn default() -> Self {
        Self::each_session(VideoConfig::default)
    }
}

impl VideoChatPlugin {
    /// Video with these settings (what to send, size, frame rate, bitrate) for the first
    /// session. A config can hold a source of the game's own, which cannot be copied: for
    /// video in later sessions too, use [`VideoChatPlugin::each_session`].
    pub fn new(config: VideoConfig) -> Self {
        Self {
            config: Mutex::new(Some(config)),
            each: None,
        }
    }

    /// Video in every session, with the settings `make` returns when one starts.
    pub fn each_session(make: impl Fn() -> VideoConfig + Send + Sync + 'static) -> Self {
        Self {
            config: Mutex::new(None),
            each: Some(Arc::new(make)),
        }
    }

    /// Sends the synthetic test pattern (320 × 240, 15 fps), in every session.
    pub fn test_pattern() -> Self {
        Self::each_session(|| VideoConfig::default().input(VideoInput::TestPattern))
    }
}

/// Video controls and state.
#[derive(Resource)]
pub struct VideoChat {
    problems: Vec<String>,
    video: Option<Video>,
    pending: Mutex<Option<VideoConfig>>,
    each: Option<ConfigFn>,
}

impl VideoChat {
    /// Whether video is running (the session is in its lobby).
    pub fn running(&self) -> bool {
        self.video.is_some()
    }

    /// Problems so far (a source that failed, …); receiving goes on regardless.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Sends from another source from now on ([`VideoInput::None`] stops sending).
    pub fn set_input(&self, input: VideoInput) -> Result<(), squadlink::video::VideoError> {
        match &self.video {
            Some(v) => v.set_input(input),
            None => Err(squadlink::video::VideoError::Start(
                "video has not started yet (the session is not in its lobby)".into(),
            )),
        }
    }

    /// The SDK's video handle, for anything not mirrored here.
    pub fn video(&self) -> Option<&Video> {
        self.video.as_ref()
    }
}

/// On a peer entity that sends video: the image showing its newest frame.
#[derive(Component, Debug, Clone)]
pub struct PeerVideo {
    /// The picture (RGBA, sRGB). Its contents change in place as frames arrive.
    pub image: Handle<Image>,
    /// The sender's frame counter of the frame shown.
    pub frame_id: u64,
    /// Its size in pixels.
    pub size: UVec2,
    /// When the sender captured it, on the sender's clock.
    pub captured: Duration,
}

/// On a peer entity: its video statistics, refreshed every frame.
#[derive(Component, Debug, Clone, Copy, Default, Deref)]
pub struct PeerVideoStats(pub VideoStats);

impl Plugin for VideoChatPlugin {
    fn build(&self, app: &mut App) {
        let pending = self.config.lock().ok().and_then(|mut c| c.take());
        app.insert_resource(VideoChat {
            problems: Vec::new(),
            video: None,
            pending: Mutex::new(pending),
            each: self.each.clone(),
        })
        .add_observer(add_video_components)
        .add_systems(
            PreUpdate,
            (start_video, video_events, show_frames)
                .chain()
                .in_set(SquadlinkSet::Receive)
                .after(Pump),
        );
    }
}

fn add_video_components(on: On<PeerConnected>, mut commands: Commands) {
    commands.entity(on.entity).insert(PeerVideoStats::default());
}

fn start_video(mut chat: ResMut<VideoChat>, session: Option<Res<SquadlinkSession>>) {
    // The session it ran on is gone, or replaced: video stops with it.
    let renewed = session.as_ref().is_none_or(|s| s.is_added());
    if renewed && let Some(video) = chat.video.take() {
        info!("squadlink: video stopped with its session");
        crate::plugin::close_aside(move || video.stop());
    }
    if chat.video.is_some() {
        return;
    }
    let Some(session) = session else { return };
    let pending = chat.pending.lock().ok().and_then(|mut p| p.take());
    let Some(config) = pending.or_else(|| chat.each.as_ref().map(|make| make())) else {
        return;
    };
    match Video::start(&session, config) {
        Ok(video) => {
            info!("squadlink: video started");
            chat.video = Some(video);
        }
        Err(e) => {
            error!("squadlink: video could not start: {e}");
            chat.problems.push(e.to_string());
        }
    }
}

fn video_events(mut chat: ResMut<VideoChat>) {
    let Some(video) = chat.video.as_ref() else {
        return;
    };
    for event in video.poll_events() {
        match event {
            VideoEvent::SourceStarted { name } => info!("squadlink: sending video from {name}"),
            VideoEvent::SourceEnded { reason } => {
                warn!("squadlink: video source ended: {reason}");
                chat.problems.push(reason);
            }
            // Events added in later versions of the SDK.
            _ => {}
        }
    }
}

/// Moves each peer's newest frame into its image (a new image when the size changes).
fn show_frames(
    mut commands: Commands,
    chat: Res<VideoChat>,
    images: Option<ResMut<Assets<Image>>>,
    mut peers: Query<(
        Entity,
        &Peer,
        Option<&mut PeerVideo>,
        Option<&mut PeerVideoStats>,
    )>,
) {
    let Some(video) = chat.video.as_ref() else {
        return;
    };
    let Some(mut images) = images else {
        // No asset storage (an app without AssetPlugin/ImagePlugin): frames stay in the SDK.
        return;
    };
    for (entity, peer, shown, stats) in &mut peers {
        if let (Some(mut stats), Some(s)) = (stats, video.stats(peer.id)) {
            stats.0 = s;
        }
        let Some(frame) = video.take_frame(peer.id) else {
            continue;
        };
        let size = UVec2::new(frame.width, frame.height);
        if (size.x as usize) * (size.y as usize) * 4 != frame.rgba.len() {
            continue;
        }
        match shown {
            Some(mut shown) if shown.size == size => {
                if let Some(mut image) = images.get_mut(&shown.image) {
                    image.data = Some(frame.rgba);
                }
                shown.frame_id = frame.frame_id;
                shown.captured = frame.captured;
            }
            _ => {
                // A 2D RGBA8 sRGB image kept in both worlds, of the frame's size.
                let mut image = Image::default_uninit();
                image.texture_descriptor.size = size.to_extents();
                image.data = Some(frame.rgba);
                commands.entity(entity).insert(PeerVideo {
                    image: images.add(image),
                    frame_id: frame.frame_id,
                    size,
                    captured: frame.captured,
                });
            }
        }
    }
}
