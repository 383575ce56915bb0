//! The receiving side: the thread that puts each peer's RTP packets back into VP8 frames,
//! decodes them and keeps the newest picture, asking for a keyframe after a loss.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use squadlink_protocol::PeerId;

use super::events::VideoFrame;
use super::rtp;
use super::shared::Shared;
use super::vpx::Vp8Decoder;
use crate::bridge::MediaLink;
use crate::media::{MediaFrame, MediaIn, VIDEO_CLOCK_RATE};

/// How often a keyframe may be asked of one peer.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_millis(250);

struct PeerRx {
    assembler: rtp::Assembler,
    decoder: Option<Vp8Decoder>,
    first_ts: Option<u32>,
    last_request: Option<Instant>,
    window: (Instant, u64, u64),
    /// The dropped-frame count last published (`None` before anything was).
    published_dropped: Option<u64>,
}

/// The reassembling and decoding thread.
pub(super) struct Receiver {
    link: MediaLink,
    shared: Arc<Shared>,
    peers: HashMap<PeerId, PeerRx>,
}

impl Receiver {
    pub(super) fn new(link: MediaLink, shared: Arc<Shared>) -> Self {
        Self {
            link,
            shared,
            peers: HashMap::new(),
        }
    }

    pub(super) fn run(mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.link.incoming.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => self.on_item(item),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn on_item(&mut self, item: MediaIn) {
        match item {
            MediaIn::Rtp { peer, frame, .. } => self.on_rtp(peer, frame),
            // One encoder serves every peer, so the keyframe goes to all of them.
            MediaIn::KeyframeRequest { peer } => {
                tracing::debug!(%peer, "keyframe requested");
                self.shared.keyframe_wanted.store(true, Ordering::Relaxed);
            }
            MediaIn::PeerConnected { peer } => {
                tracing::debug!(%peer, "peer connected: next frame is a keyframe");
                self.shared.keyframe_wanted.store(true, Ordering::Relaxed);
            }
            MediaIn::PeerGone { peer } => {
                self.peers.remove(&peer);
                if let Ok(mut frames) = self.shared.frames.lock() {
                    frames.remove(&peer);
                }
            }
            MediaIn::LossReport { .. } => {}
        }
    }

    fn on_rtp(&mut self, peer: PeerId, packet: MediaFrame) {
        let now = Instant::now();
        let bytes = packet.payload.len() as u64;
        let rx = self.peers.entry(peer).or_insert_with(|| PeerRx {
            assembler: rtp::Assembler::default(),
            decoder: None,
            first_ts: None,
            last_request: None,
            window: (now, 0, 0),
            published_dropped: None,
        });
        rx.window.1 += bytes;
        let outcome =
            rx.assembler
                .push(packet.seq, packet.timestamp, packet.marker, packet.payload);
        let mut decoded = None;
        let mut decode_error = false;
        let mut ask = false;
        match outcome {
            rtp::Outcome::Pending => {}
            rtp::Outcome::NeedKeyframe => ask = true,
            rtp::Outcome::Frame(frame) => {
                if rx.decoder.is_none() {
                    rx.decoder = Vp8Decoder::new().ok();
                }
                match rx.decoder.as_mut().map(|d| d.decode(&frame.data)) {
                    Some(Ok(Some(picture))) => {
                        let first = *rx.first_ts.get_or_insert(frame.timestamp);
                        let ticks = frame.timestamp.wrapping_sub(first);
                        decoded = Some(VideoFrame {
                            width: picture.width(),
                            height: picture.height(),
                            rgba: picture.to_rgba(),
                            frame_id: frame.picture_id.unwrap_or(0),
                            captured: Duration::from_secs_f64(
                                f64::from(ticks) / f64::from(VIDEO_CLOCK_RATE),
                            ),
                            decoded_at: Instant::now(),
                        });
                        rx.window.2 += 1;
                    }
                    Some(Ok(None)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(%e, %peer, "VP8 frame not decoded");
                        decode_error = true;
                        ask = true;
                    }
                    None => decode_error = true,
                }
            }
        }
        let mut requested = false;
        if ask
            && rx
                .last_request
                .is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_EVERY)
        {
            rx.last_request = Some(now);
            requested = self.link.request_keyframe(peer);
        }
        let window_done = rx.window.0.elapsed() >= Duration::from_secs(1);
        let window = rx.window;
        if window_done {
            rx.window = (now, 0, 0);
        }
        let dropped = rx.assembler.frames_lost;
        // Most packets only add to a frame in progress: the shared map is touched when
        // there is something to publish (and once for a new peer, so its stats exist).
        let changed = decoded.is_some()
            || decode_error
            || requested
            || window_done
            || rx.published_dropped != Some(dropped);
        if !changed {
            return;
        }
        rx.published_dropped = Some(dropped);
        let Ok(mut frames) = self.shared.frames.lock() else {
            return;
        };
        let slot = frames.entry(peer).or_default();
        slot.stats.frames_dropped = dropped;
        slot.stats.decode_errors += u64::from(decode_error);
        slot.stats.keyframes_requested += u64::from(requested);
        if window_done {
            let secs = now.duration_since(window.0).as_secs_f64().max(1e-3);
            slot.stats.kbps = window.1 as f64 * 8.0 / 1000.0 / secs;
            slot.stats.fps = window.2 as f64 / secs;
        }
        if let Some(frame) = decoded {
            slot.stats.frames_decoded += 1;
            slot.stats.width = frame.width;
            slot.stats.height = frame.height;
            slot.latest = Some(frame);
        }
    }
}
