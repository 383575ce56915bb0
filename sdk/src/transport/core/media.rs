//! What the media pipelines ask of the core: voice frames and video packets to send, the
//! sinks for what peers send, keyframe requests and loss reports. Each is done to the peers
//! (`Peers`), then the peers it touched are drained as every input's are.

use squadlink_protocol::PeerId;
use web_time::Instant;

use super::Core;
use crate::media::{Kind, MediaFrame, MediaIn};
use crate::transport::control;

impl Core {
    /// Sends a voice frame to every connected peer.
    pub(crate) fn send_voice(&mut self, now: Instant, frame: &MediaFrame) {
        let frames = std::slice::from_ref(frame);
        for id in self.peers.send_rtp(now, Kind::Audio, frames, None) {
            self.pump(id, now);
        }
    }

    /// Sends a video frame's packets to every connected peer (or to `to`).
    pub(crate) fn send_video(&mut self, now: Instant, packets: &[MediaFrame], to: Option<PeerId>) {
        for id in self.peers.send_rtp(now, Kind::Video, packets, to) {
            self.pump(id, now);
        }
    }

    /// The voice pipeline started: what peers send goes to `sink`.
    pub(crate) fn attach_voice(&mut self, sink: crossbeam_channel::Sender<MediaIn>) {
        self.out.media = Some(sink);
    }

    /// A video pipeline attached: it hears of the peers already connected (each needs a
    /// keyframe).
    pub(crate) fn attach_video(&mut self, sink: crossbeam_channel::Sender<MediaIn>) {
        for id in self.peers.connected_ids(None) {
            let _ = sink.try_send(MediaIn::PeerConnected { peer: id });
        }
        self.out.video = Some(sink);
    }

    /// Asks a peer for a keyframe (RTCP PLI).
    pub(crate) fn request_keyframe(&mut self, now: Instant, id: PeerId) {
        if let Some(p) = self.peers.get_mut(id) {
            p.send_pli(now);
            self.pump(id, now);
        }
    }

    /// Tells one peer how much of its audio we lose, on the control channel.
    pub(crate) fn report_voice_loss(&mut self, now: Instant, id: PeerId, percent: u8) {
        if let Some(p) = self.peers.get_mut(id) {
            p.send_frame(p.control(), control::voice_loss(percent), now);
        }
        self.pump(id, now);
    }
}
