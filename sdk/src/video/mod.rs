//! Video: pictures from a [`VideoSource`] (a test pattern, a Y4M file, a webcam, your own),
//! coded as VP8 (libvpx) and sent on every peer connection's video track (RFC 7741); what
//! peers send is put back together, decoded and kept as the newest RGBA frame per peer.
//!
//! ```no_run
//! # async fn demo(session: &squadlink::Session) -> Result<(), Box<dyn std::error::Error>> {
//! use squadlink::video::{Video, VideoConfig, VideoInput};
//! let video = Video::start(session, VideoConfig::default().input(VideoInput::TestPattern))?;
//! // Each game frame:
//! for peer in session.connected_peers() {
//!     if let Some(frame) = video.take_frame(peer) {
//!         // frame.rgba is width × height × 4 bytes: upload it as a texture.
//!         println!("{peer}: frame {} ({}×{})", frame.frame_id, frame.width, frame.height);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Two threads: `sl-video-tx` captures and encodes, `sl-video-rx` reassembles and decodes.
//! A keyframe goes out when a peer connects and whenever a peer asks for one (RTCP PLI,
//! sent by a receiver that lost a packet: it shows nothing more until that keyframe, rather
//! than a corrupted picture).

// The browser: the page's camera, VP8 codec and video elements, through the browser
// engine's tracks. Natively: our own pipeline.
#[cfg(target_arch = "wasm32")]
#[path = "input_web.rs"]
mod input;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::Video;

// What both targets share: the vocabulary, the settings, pictures and the test pattern.
mod config;
mod defaults;
mod error;
mod events;
mod frame;
mod source;

pub use config::VideoConfig;
pub use error::VideoError;
pub use events::{SendStats, VideoEvent, VideoFrame, VideoStats};
pub use frame::I420Frame;
pub use source::TestPattern;

// The native pipeline (libvpx, V4L2 through nokhwa).
#[cfg(all(feature = "webcam", not(target_arch = "wasm32")))]
mod camera;
#[cfg(not(target_arch = "wasm32"))]
mod input;
#[cfg(not(target_arch = "wasm32"))]
pub mod measure;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod rtp;
#[cfg(not(target_arch = "wasm32"))]
mod rx;
#[cfg(not(target_arch = "wasm32"))]
mod shared;
#[cfg(not(target_arch = "wasm32"))]
mod tx;
#[cfg(not(target_arch = "wasm32"))]
mod vpx;

#[cfg(all(feature = "webcam", not(target_arch = "wasm32")))]
pub use camera::{Camera, CameraChoice, CameraInfo, cameras};
pub use input::VideoInput;
#[cfg(not(target_arch = "wasm32"))]
pub use native::Video;
#[cfg(not(target_arch = "wasm32"))]
pub use source::{VideoSource, Y4mSource};
