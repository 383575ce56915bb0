//! The receiving side: per-peer jitter buffers and decoders, pulled by the output clock and
//! mixed into one stereo signal.
//!
//! It is split in two, so that the part that renders can run where audio must not wait:
//! - [`Receiver`] renders: it takes packets in, decodes and mixes. Once set up it never
//!   allocates, frees, locks or logs. What it lets go of (played packets, a gone peer's
//!   state, old controls) and what needs the heap or a lock (a new peer's decoders,
//!   statistics, loss reports) goes through bounded queues to
//! - [`Companion`], which runs off the audio path now and then ([`COMPANION_EVERY`], or
//!   right after a render that asked for it).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use squadlink_protocol::PeerId;

use super::controls::{Controls, PeerControl};
use super::error::VoiceError;
use super::events::{VoiceEvent, VoiceStats};
use super::format::{FRAME, SAMPLE_RATE};
use super::jitter::{Adapt, JitterBuffer, JitterConfig, Next};
use super::loss::LossMeter;
use super::mixer::{Falloff, Listener, limit, mix_into, spatial_gains};
use super::opus::{VoiceDecoder, codes_above_wideband};
use super::resample::Upsampler;
use super::samples::SampleQueue;
use crate::bridge::MediaLink;
use crate::media::MediaIn;

/// How long after its last packet a peer still counts as speaking.
const SPEAKING_HOLD: Duration = Duration::from_millis(250);
/// Decoded audio above this level counts as speech.
const SPEAKING_LEVEL_DBFS: f32 = -50.0;
/// How often loss is measured and reported to each sender.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often per-peer statistics are published.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Where wideband voices are decoded and mixed; the mix is then interpolated to 48 kHz.
const WIDEBAND_RATE: u32 = 16_000;
/// 48 kHz samples per wideband sample.
const UP: usize = (SAMPLE_RATE / WIDEBAND_RATE) as usize;

/// How often the companion runs when nothing asks for it sooner.
pub(crate) const COMPANION_EVERY: Duration = Duration::from_millis(40);
/// Peers the renderer holds state for at most (its map is allocated once).
const MAX_PEERS: usize = 64;
/// Items queued from the renderer to the companion at most (the companion empties it every
/// 40 ms; eight talkers fill about 20 slots in that time).
const HANDOFF_QUEUE: usize = 8192;
/// Set-ups queued from the companion to the renderer at most.
const SETUP_QUEUE: usize = 256;
/// Stereo frames one pass of the renderer makes at most; longer requests take several.
const MAX_RENDER: usize = 4096;

/// One RTP packet of a voice, as the network thread stamped it.
pub(crate) struct Packet {
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: Bytes,
    arrival: Instant,
}

/// One remote voice: made by the companion (decoders are allocated), played by the renderer.
pub(crate) struct PeerVoice {
    jb: JitterBuffer,
    /// For wideband streams (see [`WIDEBAND_RATE`]).
    decoder16: VoiceDecoder,
    /// For streams that code audio above 8 kHz.
    decoder48: VoiceDecoder,
    /// The peer sends audio above 8 kHz: decode at 48 kHz.
    above_wideband: bool,
    /// The decoders must forget their state before the next frame (after a mute).
    stale: bool,
    /// Decoded samples, at the decoder's rate.
    pcm: SampleQueue,
    gains: (f32, f32),
    speaking: bool,
    last_audio: Option<Instant>,
    loss: LossMeter,
    packets: u64,
    bytes_window: u64,
    kbps: f64,
}

impl PeerVoice {
    fn new(config: JitterConfig) -> Result<Self, VoiceError> {
        Ok(Self {
            jb: JitterBuffer::new(config),
            decoder16: VoiceDecoder::with_rate(WIDEBAND_RATE)?,
            decoder48: VoiceDecoder::new()?,
            above_wideband: false,
            stale: false,
            pcm: SampleQueue::default(),
            gains: (1.0, 1.0),
            speaking: false,
            last_audio: None,
            loss: LossMeter::default(),
            packets: 0,
            bytes_window: 0,
            kbps: 0.0,
        })
    }

    /// Buffers a packet; the payloads the jitter buffer let go of go to `spent`.
    fn receive(&mut self, packet: Packet, mut spent: impl FnMut(Bytes)) {
        self.packets += 1;
        self.bytes_window += packet.payload.len() as u64;
        self.loss.on_packet(packet.seq);
        self.jb.insert(
            packet.timestamp,
            packet.marker,
            packet.payload,
            packet.arrival,
        );
        self.jb.take_spent().for_each(&mut spent);
    }

    fn stats(&self) -> VoiceStats {
        let s = &self.jb.stats;
        VoiceStats {
            speaking: self.speaking,
            jitter_buffer_delay: self.jb.delay(),
            target_delay: self.jb.target(),
            jitter: self.jb.jitter(),
            packets_received: self.packets,
            decoded: s.decoded,
            late: s.late,
            lost: s.lost,
            fec_recovered: s.fec_recovered,
            concealed: s.concealed,
            dropped_for_delay: s.dropped_for_delay,
            loss_percent: self.loss.fraction() * 100.0,
            kbps: self.kbps,
        }
    }
}

/// The per-peer controls and the listener, as the renderer reads them.
#[derive(Default)]
pub(crate) struct ControlsView {
    peers: HashMap<PeerId, PeerControl>,
    listener: Listener,
    falloff: Falloff,
}

/// Something the renderer lets go of: freed by the companion.
#[allow(dead_code)] // Held only to be dropped.
pub(crate) enum Spent {
    Payload(Bytes),
    Peer(Box<PeerVoice>),
    View(Box<ControlsView>),
}

/// From the renderer to the companion.
pub(crate) enum Handoff {
    Spent(Spent),
    /// A peer connected: make its state before its voice comes.
    Connected(PeerId),
    /// A packet of a peer the renderer has no state for.
    Early(PeerId, Packet),
    Gone(PeerId),
    /// A peer's report of how much of our audio it loses.
    LossReport(PeerId, u8),
    /// How much of a peer's audio we lose, for the peer.
    ReportLoss(PeerId, u8),
    Stats(PeerId, VoiceStats),
}

/// From the companion to the renderer.
pub(crate) enum Setup {
    Peer(PeerId, Box<PeerVoice>),
    /// A packet that reached the companion after its peer's state had gone to the renderer.
    Packet(PeerId, Packet),
    View(Box<ControlsView>),
}

/// The renderer's side of the queue to the companion.
struct Outbox {
    queue: crossbeam_channel::Sender<Handoff>,
    /// Items dropped on the audio path because the queue was full (the companion stopped).
    overflow: u64,
    /// The companion has work that should not wait for its next turn (a new peer).
    urgent: Arc<AtomicBool>,
}

impl Outbox {
    /// Sends `item` to the companion; when the queue is full it is dropped here and counted.
    fn send(&mut self, item: Handoff) {
        if self.queue.try_send(item).is_err() {
            self.overflow += 1;
        }
    }

    /// Sends `item` and asks the companion to run as soon as it can.
    fn send_urgent(&mut self, item: Handoff) {
        self.urgent.store(true, Ordering::Relaxed);
        self.send(item);
    }

    /// Hands a payload over to be freed off the audio path.
    fn spend(&mut self, payload: Bytes) {
        self.send(Handoff::Spent(Spent::Payload(payload)));
    }
}

/// The renderer: everything the receive side needs per block, and nothing that allocates.
pub(crate) struct Receiver {
    incoming: crossbeam_channel::Receiver<MediaIn>,
    outbox: Outbox,
    setup: crossbeam_channel::Receiver<Setup>,
    events: crossbeam_channel::Sender<VoiceEvent>,
    peers: HashMap<PeerId, Box<PeerVoice>>,
    view: Box<ControlsView>,
    decoded: Vec<f32>,
    mono: Vec<f32>,
    /// The mix of the voices decoded at 16 kHz (interleaved stereo), before interpolation.
    wide_mix: Vec<f32>,
    /// `wide_mix` at 48 kHz; what one render made beyond what it needed (up to two frames)
    /// is played first by the next.
    wide_out: Vec<f32>,
    upsampler: Upsampler,
    last_report: Option<Instant>,
    last_stats: Option<Instant>,
}

/// The receive side's housekeeping, off the audio path.
pub(crate) struct Companion {
    handoff: crossbeam_channel::Receiver<Handoff>,
    setup: crossbeam_channel::Sender<Setup>,
    controls: Arc<Controls>,
    cmd: Option<MediaLink>,
    config: JitterConfig,
    reported: HashMap<PeerId, u8>,
    /// Peers whose state is being made, with the packets that came meanwhile.
    pending: HashMap<PeerId, Box<PeerVoice>>,
    /// Peers whose state went to the renderer.
    installed: HashSet<PeerId>,
    controls_seen: Option<u64>,
    /// Set by the renderer when a new peer waits for its state ([`Companion::tick_if_due`]).
    urgent: Arc<AtomicBool>,
    last_tick: Option<Instant>,
}

/// The renderer and its companion, connected.
pub(crate) fn receiver(
    incoming: crossbeam_channel::Receiver<MediaIn>,
    cmd: Option<MediaLink>,
    controls: Arc<Controls>,
    events: crossbeam_channel::Sender<VoiceEvent>,
    config: JitterConfig,
) -> (Receiver, Companion) {
    let (handoff_tx, handoff_rx) = crossbeam_channel::bounded(HANDOFF_QUEUE);
    let (setup_tx, setup_rx) = crossbeam_channel::bounded(SETUP_QUEUE);
    let urgent = Arc::new(AtomicBool::new(false));
    let receiver = Receiver {
        incoming,
        outbox: Outbox {
            queue: handoff_tx,
            overflow: 0,
            urgent: Arc::clone(&urgent),
        },
        setup: setup_rx,
        events,
        peers: HashMap::with_capacity(MAX_PEERS),
        view: Box::default(),
        decoded: vec![0.0; FRAME],
        mono: Vec::with_capacity(MAX_RENDER + FRAME),
        wide_mix: Vec::with_capacity(2 * (MAX_RENDER / UP + 2)),
        wide_out: Vec::with_capacity(2 * (MAX_RENDER + 2 * UP)),
        upsampler: Upsampler::with_capacity(MAX_RENDER / UP + 2),
        last_report: None,
        last_stats: None,
    };
    let companion = Companion {
        handoff: handoff_rx,
        setup: setup_tx,
        controls,
        cmd,
        config,
        reported: HashMap::new(),
        pending: HashMap::new(),
        installed: HashSet::new(),
        controls_seen: None,
        urgent,
        last_tick: None,
    };
    (receiver, companion)
}

impl Receiver {
    /// Whether the companion should run now rather than at its next turn (and forgets it).
    #[cfg(test)]
    pub(crate) fn take_companion_request(&mut self) -> bool {
        self.outbox.urgent.swap(false, Ordering::Relaxed)
    }

    /// Items dropped on the audio path because the companion's queue was full.
    #[cfg(test)]
    pub(crate) fn handoff_overflow(&self) -> u64 {
        self.outbox.overflow
    }

    /// Installs what the companion prepared.
    fn take_setups(&mut self) {
        while let Ok(item) = self.setup.try_recv() {
            match item {
                Setup::Peer(id, pv) => {
                    if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&id) {
                        self.outbox.send(Handoff::Spent(Spent::Peer(pv)));
                    } else if let Some(old) = self.peers.insert(id, pv) {
                        self.outbox.send(Handoff::Spent(Spent::Peer(old)));
                    }
                }
                Setup::Packet(id, packet) => match self.peers.get_mut(&id) {
                    Some(pv) => pv.receive(packet, |p| self.outbox.spend(p)),
                    // The peer left meanwhile.
                    None => self.outbox.spend(packet.payload),
                },
                Setup::View(view) => {
                    let old = std::mem::replace(&mut self.view, view);
                    self.outbox.send(Handoff::Spent(Spent::View(old)));
                }
            }
        }
    }

    /// Takes in everything the network thread has handed over.
    fn drain(&mut self) {
        while let Ok(item) = self.incoming.try_recv() {
            match item {
                MediaIn::Rtp {
                    peer,
                    frame,
                    arrival,
                } => {
                    let packet = Packet {
                        seq: frame.seq,
                        timestamp: frame.timestamp,
                        marker: frame.marker,
                        payload: frame.payload,
                        arrival,
                    };
                    match self.peers.get_mut(&peer) {
                        Some(pv) => pv.receive(packet, |p| self.outbox.spend(p)),
                        None => self.outbox.send_urgent(Handoff::Early(peer, packet)),
                    }
                }
                MediaIn::LossReport { peer, percent } => {
                    self.outbox.send(Handoff::LossReport(peer, percent));
                }
                MediaIn::PeerConnected { peer } => {
                    if !self.peers.contains_key(&peer) {
                        self.outbox.send_urgent(Handoff::Connected(peer));
                    }
                }
                MediaIn::KeyframeRequest { .. } => {}
                MediaIn::PeerGone { peer } => {
                    if let Some(pv) = self.peers.remove(&peer) {
                        if pv.speaking {
                            let _ = self.events.try_send(VoiceEvent::SpeakingStopped { peer });
                        }
                        self.outbox.send(Handoff::Spent(Spent::Peer(pv)));
                    }
                    self.outbox.send_urgent(Handoff::Gone(peer));
                }
            }
        }
    }

    /// Renders `out.len() / 2` stereo frames of the mix, as of `now`.
    ///
    /// Voices that send only up to 8 kHz (Opus wideband, our default) are decoded and mixed
    /// at 16 kHz and the mix is interpolated once; the others are decoded at 48 kHz and
    /// mixed straight into `out`.
    pub(crate) fn render(&mut self, now: Instant, out: &mut [f32]) {
        for part in out.chunks_mut(2 * MAX_RENDER) {
            self.render_part(now, part);
        }
    }

    fn render_part(&mut self, now: Instant, out: &mut [f32]) {
        self.take_setups();
        self.drain();
        out.fill(0.0);
        let frames = out.len() / 2;
        // 16 kHz frames to make: enough, with what the last render left, for `frames`.
        let carried = self.wide_out.len() / 2;
        let wide_frames = frames.saturating_sub(carried).div_ceil(UP);
        self.wide_mix.clear();
        self.wide_mix.resize(wide_frames * 2, 0.0);
        let view = &self.view;
        let outbox = &mut self.outbox;
        let mut spend = |p: Bytes| outbox.spend(p);
        let mut any_wide = false;
        for (id, pv) in &mut self.peers {
            let control = view.peers.get(id).copied().unwrap_or_default();
            if control.muted {
                // A muted peer is not decoded at all.
                pv.jb.clear();
                pv.jb.take_spent().for_each(&mut spend);
                pv.pcm.clear();
                pv.stale = true;
            } else {
                if std::mem::take(&mut pv.stale) {
                    let _ = pv.decoder16.reset();
                    let _ = pv.decoder48.reset();
                }
                // Samples this peer owes the render, at its decoding rate.
                let (need, up) = if pv.above_wideband {
                    (frames, 1)
                } else {
                    any_wide = true;
                    (wide_frames, UP)
                };
                while pv.pcm.len() < need {
                    // The jitter buffer counts in 48 kHz samples.
                    let next = pv.jb.next(now, pv.pcm.len() * up, frames);
                    pv.jb.take_spent().for_each(&mut spend);
                    let (packet, fec, fade) = match next {
                        Next::Idle => break,
                        Next::Silence(n) => {
                            pv.pcm.push_zeros(n.div_ceil(up));
                            continue;
                        }
                        Next::Decode(p) => (Some(p), false, None),
                        Next::Fec(p) => (Some(p), true, None),
                        Next::Conceal { fade_from, fade_to } => {
                            (None, false, Some((fade_from, fade_to)))
                        }
                    };
                    if !pv.above_wideband
                        && packet.as_deref().and_then(codes_above_wideband) == Some(true)
                    {
                        // It now sends above 8 kHz: decode at 48 kHz from here on, keeping
                        // the queued stretch's length. (This frame is lost to the switch.)
                        pv.above_wideband = true;
                        let queued = pv.pcm.len();
                        pv.pcm.clear();
                        pv.pcm.push_zeros(queued * UP);
                        packet.into_iter().for_each(&mut spend);
                        break;
                    }
                    let decoder = if pv.above_wideband {
                        &mut pv.decoder48
                    } else {
                        &mut pv.decoder16
                    };
                    // One 20 ms frame at the decoder's rate.
                    let frame_len = FRAME / up;
                    let buf = self.decoded.get_mut(..frame_len).unwrap_or(&mut []);
                    let mut n = decoder.decode(packet.as_deref(), fec, buf).unwrap_or(0);
                    packet.into_iter().for_each(&mut spend);
                    if n == 0 {
                        // A packet that does not decode is concealed like a lost one.
                        n = decoder.decode(None, false, buf).unwrap_or(0);
                    }
                    let samples = buf.get_mut(..n.min(frame_len)).unwrap_or(&mut []);
                    if let Some((from, to)) = fade {
                        let len = samples.len().max(1) as f32;
                        for (i, s) in samples.iter_mut().enumerate() {
                            *s *= from + (to - from) * (i as f32 / len);
                        }
                    } else if super::capture::rms_dbfs(samples) > SPEAKING_LEVEL_DBFS {
                        // Judged by level, so comfort noise in open-mic silence is not speech.
                        pv.last_audio = Some(now);
                        if !pv.speaking {
                            pv.speaking = true;
                            let _ = self
                                .events
                                .try_send(VoiceEvent::SpeakingStarted { peer: *id });
                        }
                    } else {
                        // A pause between words: where the delay may change unheard.
                        pv.pcm.push(samples);
                        if let Adapt::Insert(n) = pv.jb.adapt_in_pause(frames) {
                            pv.pcm.push_zeros(n.div_ceil(up));
                        }
                        pv.jb.take_spent().for_each(&mut spend);
                        continue;
                    }
                    pv.pcm.push(samples);
                    if n == 0 {
                        pv.pcm.push_zeros(frame_len);
                    }
                }
                let (need, bus) = if pv.above_wideband {
                    (frames, &mut *out)
                } else {
                    (wide_frames, &mut self.wide_mix[..])
                };
                self.mono.clear();
                pv.pcm.take_into(need, &mut self.mono);
                let spatial = spatial_gains(control.position, &view.listener, &view.falloff);
                let volume = control.volume.clamp(0.0, 2.0);
                let target = (spatial.0 * volume, spatial.1 * volume);
                mix_into(bus, &self.mono, pv.gains, target);
                pv.gains = target;
            }
            let quiet = pv
                .last_audio
                .is_none_or(|t| now.saturating_duration_since(t) > SPEAKING_HOLD);
            if pv.speaking && (quiet || control.muted) {
                pv.speaking = false;
                let _ = self
                    .events
                    .try_send(VoiceEvent::SpeakingStopped { peer: *id });
            }
        }
        self.add_wide_mix(out, frames, wide_frames, any_wide);
        limit(out);
        self.periodic(now);
    }

    /// Interpolates the 16 kHz mix and adds `frames` of it to `out`: first what the last
    /// render carried over, then the new part; what is left over is carried to the next.
    fn add_wide_mix(&mut self, out: &mut [f32], frames: usize, wide_frames: usize, any: bool) {
        if !any {
            // No wideband voice: play out what was carried, start afresh next time.
            for (o, w) in out.iter_mut().zip(&self.wide_out) {
                *o += *w;
            }
            self.wide_out.clear();
            self.upsampler.reset();
            return;
        }
        let carried = self.wide_out.len();
        self.wide_out.resize(carried + wide_frames * UP * 2, 0.0);
        if let Some(fresh) = self.wide_out.get_mut(carried..) {
            self.upsampler.process(&self.wide_mix, fresh);
        }
        let used = (frames * 2).min(self.wide_out.len());
        for (o, w) in out.iter_mut().zip(self.wide_out.iter().take(used)) {
            *o += *w;
        }
        self.wide_out.drain(..used);
    }

    /// Measures loss (to report to each sender) and publishes statistics, through the
    /// companion.
    fn periodic(&mut self, now: Instant) {
        let report_due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY);
        let stats_due = self
            .last_stats
            .is_none_or(|t| now.saturating_duration_since(t) >= STATS_EVERY);
        if !report_due && !stats_due {
            return;
        }
        let elapsed = self
            .last_report
            .map_or(REPORT_EVERY, |t| now.saturating_duration_since(t));
        if report_due {
            self.last_report = Some(now);
        }
        if stats_due {
            self.last_stats = Some(now);
        }
        for (id, pv) in &mut self.peers {
            if report_due {
                pv.kbps = pv.bytes_window as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64().max(0.001);
                pv.bytes_window = 0;
                if pv.loss.close_interval().is_some() {
                    pv.jb.set_loss(pv.loss.fraction());
                    // Over 5 s, not 1: FEC tuned for more loss than there is costs quality
                    // (libopus 1.3 at 32 kbit/s, 5 % loss: PESQ-WB 3.42 tuned for 5 %, 2.73
                    // tuned for 20 %).
                    let percent = pv.loss.report_percent();
                    self.outbox.send(Handoff::ReportLoss(*id, percent));
                }
            }
            if stats_due {
                self.outbox.send(Handoff::Stats(*id, pv.stats()));
            }
        }
    }
}

impl Companion {
    /// Runs [`Companion::tick`] if the renderer asked for it or [`COMPANION_EVERY`] has
    /// passed since the last run (for a thread that wakes more often, at each render).
    pub(crate) fn tick_if_due(&mut self, now: Instant) {
        let due = self
            .last_tick
            .is_none_or(|t| now.saturating_duration_since(t) >= COMPANION_EVERY);
        if self.urgent.swap(false, Ordering::Relaxed) || due {
            self.last_tick = Some(now);
            self.tick();
        }
    }

    /// Does what the renderer handed over, and prepares what it will need.
    pub(crate) fn tick(&mut self) {
        let generation = self.controls.generation();
        if self.controls_seen != Some(generation) {
            let (peers, listener, falloff) = self.controls.snapshot();
            let view = Box::new(ControlsView {
                peers,
                listener,
                falloff,
            });
            if self.setup.try_send(Setup::View(view)).is_ok() {
                self.controls_seen = Some(generation);
            }
        }
        while let Ok(item) = self.handoff.try_recv() {
            match item {
                // Freed here, off the audio path.
                Handoff::Spent(spent) => drop(spent),
                Handoff::Connected(peer) => {
                    self.prepare(peer);
                }
                Handoff::Early(peer, packet) => {
                    if self.installed.contains(&peer) {
                        let _ = self.setup.try_send(Setup::Packet(peer, packet));
                    } else if let Some(pv) = self.prepare(peer) {
                        pv.receive(packet, drop);
                    }
                }
                Handoff::Gone(peer) => {
                    self.pending.remove(&peer);
                    self.installed.remove(&peer);
                    self.reported.remove(&peer);
                    self.publish_reported_loss();
                    self.controls.forget_peer_stats(peer);
                }
                Handoff::LossReport(peer, percent) => {
                    self.reported.insert(peer, percent);
                    self.publish_reported_loss();
                }
                Handoff::ReportLoss(peer, percent) => {
                    if let Some(cmd) = &self.cmd {
                        cmd.report_loss(peer, percent);
                    }
                }
                Handoff::Stats(peer, stats) => {
                    if self.installed.contains(&peer) {
                        self.controls.set_peer_stats(peer, stats);
                    }
                }
            }
        }
        let ready: Vec<PeerId> = self.pending.keys().copied().collect();
        for peer in ready {
            let Some(pv) = self.pending.remove(&peer) else {
                continue;
            };
            match self.setup.try_send(Setup::Peer(peer, pv)) {
                Ok(()) => {
                    self.installed.insert(peer);
                }
                Err(crossbeam_channel::TrySendError::Full(Setup::Peer(peer, pv))) => {
                    self.pending.insert(peer, pv);
                }
                // The renderer is gone (voice is stopping).
                Err(_) => {}
            }
        }
    }

    /// The state being made for `peer` (made now if need be); `None` once it went to the
    /// renderer, or when its decoders cannot be made.
    fn prepare(&mut self, peer: PeerId) -> Option<&mut Box<PeerVoice>> {
        if self.installed.contains(&peer) {
            return None;
        }
        if !self.pending.contains_key(&peer) {
            match PeerVoice::new(self.config) {
                Ok(pv) => {
                    self.pending.insert(peer, Box::new(pv));
                }
                Err(e) => {
                    tracing::warn!(%e, %peer, "cannot decode this peer's voice");
                    return None;
                }
            }
        }
        self.pending.get_mut(&peer)
    }

    fn publish_reported_loss(&self) {
        let max = self.reported.values().copied().max().unwrap_or(0);
        self.controls.set_reported_loss(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaFrame;

    /// The amplitude of `hz` in the left channel of interleaved 48 kHz stereo.
    fn level(stereo: &[f32], hz: f64) -> f64 {
        let (mut re, mut im, mut n) = (0.0, 0.0, 0.0);
        for (i, s) in stereo.iter().step_by(2).enumerate() {
            let w = 2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0;
            re += f64::from(*s) * w.cos();
            im += f64::from(*s) * w.sin();
            n += 1.0;
        }
        2.0 * (re * re + im * im).sqrt() / n
    }

    #[test]
    fn wideband_and_fullband_voices_mix_at_their_own_rates() {
        use crate::voice::opus::{VoiceBandwidth, VoiceEncoder};
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let (events, _events) = crossbeam_channel::bounded(64);
        let controls = Arc::new(Controls::new(crate::voice::VoiceMode::OpenMic));
        let (mut receiver, mut companion) =
            receiver(rx, None, controls, events, JitterConfig::default());
        // Peer 1 talks wideband at 1 kHz, peer 2 fullband at 3 kHz and 12 kHz.
        let talkers = [
            (PeerId(1), VoiceBandwidth::Wideband, [1_000.0, 0.0]),
            (PeerId(2), VoiceBandwidth::Fullband, [3_000.0, 12_000.0]),
        ];
        let t0 = Instant::now();
        let mut encoders: Vec<VoiceEncoder> = talkers
            .iter()
            .map(|(_, bw, _)| VoiceEncoder::new(64_000, *bw).unwrap())
            .collect();
        let mut out = Vec::new();
        let mut block = vec![0.0f32; 480];
        for k in 0..400usize {
            let now = t0 + Duration::from_millis(5 * k as u64);
            if k % 4 == 0 {
                let i = k / 4;
                for ((peer, _, tones), encoder) in talkers.iter().zip(&mut encoders) {
                    let frame: Vec<f32> = (0..FRAME)
                        .map(|n| {
                            let t = (i * FRAME + n) as f64 / 48_000.0;
                            tones
                                .iter()
                                .map(|hz| 0.2 * (2.0 * std::f64::consts::PI * hz * t).sin())
                                .sum::<f64>() as f32
                        })
                        .collect();
                    let payload = bytes::Bytes::copy_from_slice(encoder.encode(&frame).unwrap());
                    tx.send(MediaIn::Rtp {
                        peer: *peer,
                        frame: MediaFrame {
                            seq: i as u16,
                            timestamp: (i * FRAME) as u32,
                            marker: i == 0,
                            payload,
                        },
                        arrival: now,
                    })
                    .unwrap();
                }
            }
            receiver.render(now, &mut block);
            if receiver.take_companion_request() || k % 8 == 0 {
                companion.tick();
            }
            out.extend_from_slice(&block);
        }
        assert!(!receiver.peers[&PeerId(1)].above_wideband);
        assert!(receiver.peers[&PeerId(2)].above_wideband);
        // The last second: every tone is there, at about its level (0.2, Opus is lossy).
        let tail = &out[out.len() - 96_000..];
        for hz in [1_000.0, 3_000.0, 12_000.0] {
            let a = level(tail, hz);
            assert!(a > 0.1 && a < 0.3, "{hz} Hz at {a}");
        }
        // And nothing much where no tone is (images of 1 kHz from the interpolator at 15
        // and 17 kHz, say).
        for hz in [5_000.0, 15_000.0, 17_000.0] {
            let a = level(tail, hz);
            assert!(a < 0.01, "{hz} Hz at {a}");
        }
    }

    /// Counts this thread's allocations and frees, to check the renderer makes none.
    #[allow(unsafe_code)] // A test allocator must implement `GlobalAlloc`.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static CALLS: Cell<u64> = const { Cell::new(0) };
        }

        pub(super) struct Counting;

        fn note() {
            let _ = CALLS.try_with(|c| c.set(c.get() + 1));
        }

        /// Allocations, reallocations and frees made by this thread so far.
        pub(super) fn calls() -> u64 {
            CALLS.try_with(Cell::get).unwrap_or(0)
        }

        // SAFETY: every call goes straight to the system allocator with its own arguments.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note();
                // SAFETY: as the caller promised for `layout`.
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note();
                // SAFETY: as the caller promised for `layout`.
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                note();
                // SAFETY: `ptr` came from this allocator (the system's) with `layout`.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note();
                // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static ALLOCATOR: Counting = Counting;
    }

    /// Eight voices (wideband and fullband) through joins, speech, loss, late and
    /// duplicate packets, mute and unmute, volume changes and a departure: once the
    /// companion has set a voice up, rendering allocates and frees nothing (what it lets go
    /// of is freed by the companion), so it may run in a device callback.
    #[test]
    fn rendering_never_allocates_or_frees() {
        use crate::voice::opus::{VoiceBandwidth, VoiceEncoder};
        let (tx, rx) = crossbeam_channel::bounded(4096);
        let (events, events_rx) = crossbeam_channel::bounded(1024);
        let controls = Arc::new(Controls::new(crate::voice::VoiceMode::OpenMic));
        let (mut receiver, mut companion) = receiver(
            rx,
            None,
            Arc::clone(&controls),
            events,
            JitterConfig::default(),
        );
        let peers: Vec<PeerId> = (1..=8).map(PeerId).collect();
        let mut encoders: Vec<VoiceEncoder> = peers
            .iter()
            .map(|p| {
                let bandwidth = if p.0 % 4 == 0 {
                    VoiceBandwidth::Fullband
                } else {
                    VoiceBandwidth::Wideband
                };
                VoiceEncoder::new(32_000, bandwidth).unwrap()
            })
            .collect();
        for peer in &peers {
            tx.send(MediaIn::PeerConnected { peer: *peer }).unwrap();
        }
        let t0 = Instant::now();
        let mut block = vec![0.0f32; 480];
        let mut during_render = 0;
        let mut rendered = 0;
        for k in 0..1_200usize {
            let now = t0 + Duration::from_millis(5 * k as u64);
            if k % 4 == 0 {
                let i = k / 4;
                // 1.5 s talk, 0.5 s pause, in turns; peer 8 leaves after 4 s.
                for (n, (peer, encoder)) in peers.iter().zip(&mut encoders).enumerate() {
                    if peer.0 == 8 && i >= 200 {
                        continue;
                    }
                    let talking = (i + n * 13) % 100 < 75;
                    let frame: Vec<f32> = (0..FRAME)
                        .map(|s| {
                            let t = (i * FRAME + s) as f32 / 48_000.0;
                            let hz = 200.0 + 150.0 * n as f32;
                            if talking {
                                0.3 * (std::f32::consts::TAU * hz * t).sin()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let payload = bytes::Bytes::copy_from_slice(encoder.encode(&frame).unwrap());
                    // 3 % loss; now and then a duplicate, or a packet 80 ms late.
                    let r = (i * 7 + n * 31) % 100;
                    if r < 3 {
                        continue;
                    }
                    let arrival = if r == 50 {
                        now + Duration::from_millis(80)
                    } else {
                        now
                    };
                    let copies = if r == 60 { 2 } else { 1 };
                    for _ in 0..copies {
                        tx.send(MediaIn::Rtp {
                            peer: *peer,
                            frame: MediaFrame {
                                seq: i as u16,
                                timestamp: (i * FRAME) as u32,
                                marker: i == 0,
                                payload: payload.clone(),
                            },
                            arrival,
                        })
                        .unwrap();
                    }
                }
                if i == 200 {
                    tx.send(MediaIn::PeerGone { peer: PeerId(8) }).unwrap();
                }
                if i == 60 {
                    tx.send(MediaIn::LossReport {
                        peer: PeerId(2),
                        percent: 3,
                    })
                    .unwrap();
                }
            }
            // Controls change as a game would change them (made off the audio path).
            match k {
                300 => controls.update_peer(PeerId(3), |c| c.muted = true),
                500 => controls.update_peer(PeerId(3), |c| c.muted = false),
                600 => controls.update_peer(PeerId(5), |c| c.volume = 1.7),
                _ => {}
            }
            let before = counting::calls();
            receiver.render(now, &mut block);
            let made = counting::calls() - before;
            // The first second sets up: the renderer's buffers settle to their sizes.
            if k >= 200 {
                during_render += made;
                rendered += 1;
            }
            if receiver.take_companion_request() || k % 8 == 0 {
                companion.tick();
            }
        }
        assert_eq!(
            during_render, 0,
            "allocations or frees in {rendered} renders"
        );
        assert_eq!(receiver.handoff_overflow(), 0);
        // It did play: voices started and stopped speaking, peer 8 is gone.
        let seen: Vec<VoiceEvent> = events_rx.try_iter().collect();
        let started = seen
            .iter()
            .filter(|e| matches!(e, VoiceEvent::SpeakingStarted { .. }))
            .count();
        assert!(started >= 8, "{seen:?}");
        assert!(!receiver.peers.contains_key(&PeerId(8)));
        // Peer 1 sent 300 frames, 3 % of them lost.
        let one = controls.peer_stats(PeerId(1)).unwrap_or_default();
        assert!(one.decoded > 250 && one.lost > 0, "{one:?}");
        assert!(controls.peer_stats(PeerId(8)).is_none());
    }
}
