//! The controls a game sets on voice (mode, push-to-talk, mutes, volumes, positions) and the
//! counters its threads keep, shared between the handle and the voice threads (never touched
//! by device callbacks).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use squadlink_protocol::PeerId;

use super::capture::GateInput;
use super::events::{SendStats, VoiceStats};
use super::mixer::{Falloff, Listener};
use super::mode::VoiceMode;

/// Per-peer controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PeerControl {
    pub(crate) volume: f32,
    pub(crate) muted: bool,
    pub(crate) position: Option<[f32; 3]>,
}

impl Default for PeerControl {
    fn default() -> Self {
        Self {
            volume: 1.0,
            muted: false,
            position: None,
        }
    }
}

/// State shared by the handle and the voice threads (never touched by device callbacks).
pub(crate) struct Controls {
    mode: AtomicU8,
    push_to_talk: AtomicBool,
    self_muted: AtomicBool,
    transmitting: AtomicBool,
    reported_loss: AtomicU8,
    frames_captured: AtomicU64,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    peers: Mutex<HashMap<PeerId, PeerControl>>,
    space: Mutex<(Listener, Falloff)>,
    /// Bumped whenever `peers` or `space` change, so the mixer copies them only then.
    generation: AtomicU64,
    stats: Mutex<HashMap<PeerId, VoiceStats>>,
}

fn mode_code(mode: VoiceMode) -> u8 {
    match mode {
        VoiceMode::PushToTalk => 0,
        VoiceMode::VoiceActivity => 1,
        VoiceMode::OpenMic => 2,
    }
}

fn mode_from(code: u8) -> VoiceMode {
    match code {
        0 => VoiceMode::PushToTalk,
        2 => VoiceMode::OpenMic,
        _ => VoiceMode::VoiceActivity,
    }
}

impl Controls {
    pub(crate) fn new(mode: VoiceMode) -> Self {
        Self {
            mode: AtomicU8::new(mode_code(mode)),
            push_to_talk: AtomicBool::new(false),
            self_muted: AtomicBool::new(false),
            transmitting: AtomicBool::new(false),
            reported_loss: AtomicU8::new(0),
            frames_captured: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            peers: Mutex::new(HashMap::new()),
            space: Mutex::new((Listener::default(), Falloff::default())),
            generation: AtomicU64::new(0),
            stats: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn snapshot(&self) -> (HashMap<PeerId, PeerControl>, Listener, Falloff) {
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        let (listener, falloff) = self
            .space
            .lock()
            .map(|s| *s)
            .unwrap_or((Listener::default(), Falloff::default()));
        (peers, listener, falloff)
    }

    pub(crate) fn gate_input(&self) -> GateInput {
        GateInput {
            mode: mode_from(self.mode.load(Ordering::Relaxed)),
            push_to_talk: self.push_to_talk.load(Ordering::Relaxed),
            self_muted: self.self_muted.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn update_peer(&self, peer: PeerId, f: impl FnOnce(&mut PeerControl)) {
        if let Ok(mut peers) = self.peers.lock() {
            let control = peers.entry(peer).or_default();
            let before = *control;
            f(control);
            if *control != before {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }
    pub(crate) fn set_mode(&self, mode: VoiceMode) {
        self.mode.store(mode_code(mode), Ordering::Relaxed);
    }

    pub(crate) fn mode(&self) -> VoiceMode {
        mode_from(self.mode.load(Ordering::Relaxed))
    }

    pub(crate) fn set_push_to_talk(&self, held: bool) {
        self.push_to_talk.store(held, Ordering::Relaxed);
    }

    pub(crate) fn set_self_muted(&self, muted: bool) {
        self.self_muted.store(muted, Ordering::Relaxed);
    }

    pub(crate) fn self_muted(&self) -> bool {
        self.self_muted.load(Ordering::Relaxed)
    }

    /// Whether our voice is being sent (the sending thread says so).
    pub(crate) fn transmitting(&self) -> bool {
        self.transmitting.load(Ordering::Relaxed)
    }

    pub(crate) fn set_transmitting(&self, open: bool) {
        self.transmitting.store(open, Ordering::Relaxed);
    }

    /// The loss receivers report (the worst), percent: what FEC is tuned for.
    pub(crate) fn reported_loss(&self) -> u8 {
        self.reported_loss.load(Ordering::Relaxed)
    }

    pub(crate) fn set_reported_loss(&self, percent: u8) {
        self.reported_loss.store(percent, Ordering::Relaxed);
    }

    pub(crate) fn count_captured(&self) {
        self.frames_captured.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_sent(&self, bytes: usize) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn send_stats(&self) -> SendStats {
        let packets_sent = self.packets_sent.load(Ordering::Relaxed);
        SendStats {
            frames_captured: self.frames_captured.load(Ordering::Relaxed),
            frames_sent: packets_sent,
            packets_sent,
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            fec_loss_percent: self.reported_loss(),
        }
    }

    /// Where we listen from and how voices fade; the mixer sees the change.
    pub(crate) fn set_space(&self, listener: Listener, falloff: Falloff) {
        if let Ok(mut space) = self.space.lock()
            && *space != (listener, falloff)
        {
            *space = (listener, falloff);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped whenever the peers' controls or the space change.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn peer_stats(&self, peer: PeerId) -> Option<VoiceStats> {
        self.stats.lock().ok()?.get(&peer).cloned()
    }

    pub(crate) fn set_peer_stats(&self, peer: PeerId, stats: VoiceStats) {
        if let Ok(mut map) = self.stats.lock() {
            map.insert(peer, stats);
        }
    }

    pub(crate) fn forget_peer_stats(&self, peer: PeerId) {
        if let Ok(mut map) = self.stats.lock() {
            map.remove(&peer);
        }
    }
}
