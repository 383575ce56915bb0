//! What the video handle and its two threads share: the newest picture and the statistics
//! per peer, the sending statistics, and the stop and keyframe flags.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use squadlink_protocol::PeerId;

use super::events::{SendStats, VideoEvent, VideoFrame, VideoStats};

/// What the threads share.
pub(super) struct Shared {
    pub(super) frames: Mutex<HashMap<PeerId, PeerSlot>>,
    pub(super) send: Mutex<SendStats>,
    pub(super) keyframe_wanted: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) events: crossbeam_channel::Sender<VideoEvent>,
}

#[derive(Default)]
pub(super) struct PeerSlot {
    pub(super) latest: Option<VideoFrame>,
    pub(super) stats: VideoStats,
}
