//! The receiving side: per-peer jitter buffers and decoders, pulled by the output clock and
//! mixed into one stereo signal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use squadlink_protocol::PeerId;

use super::jitter::{Adapt, JitterBuffer, JitterConfig, Next};
use super::mixer::{limit, mix_into, spatial_gains};
use super::opus::{VoiceDecoder, codes_above_wideband};
use super::resample::Upsampler;
use super::{Controls, FRAME, SAMPLE_RATE, VoiceEvent, VoiceStats};
use crate::transport::media::MediaIn;

/// How long after its last packet a peer still counts as speaking.
const SPEAKING_HOLD: Duration = Duration::from_millis(250);
/// Decoded audio above this level counts as speech.
const SPEAKING_LEVEL_DBFS: f32 = -50.0;
/// How often loss is measured and reported to each sender.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often per-peer statistics are published.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Intervals the loss figure is taken over (5 s).
const LOSS_INTERVALS: usize = 5;
/// Where wideband voices are decoded and mixed; the mix is then interpolated to 48 kHz.
const WIDEBAND_RATE: u32 = 16_000;
/// 48 kHz samples per wideband sample.
const UP: usize = (SAMPLE_RATE / WIDEBAND_RATE) as usize;

/// Loss measured from RTP sequence numbers, over the last few report intervals.
#[derive(Debug, Default)]
struct LossMeter {
    highest: Option<(u16, i64)>,
    base: Option<i64>,
    received: u64,
    /// (expected, lost) of recent intervals.
    window: std::collections::VecDeque<(i64, i64)>,
    /// Loss fraction over the window.
    smoothed: f64,
}

impl LossMeter {
    fn on_packet(&mut self, seq: u16) {
        let ext = match self.highest {
            None => i64::from(seq),
            Some((last, ext)) => ext + i64::from(seq.wrapping_sub(last) as i16),
        };
        if self.highest.is_none_or(|(_, e)| ext > e) {
            self.highest = Some((seq, ext));
        }
        if self.base.is_none() {
            self.base = Some(ext - 1);
        }
        self.received += 1;
    }

    /// Closes an interval: the percentage lost in it, if packets were expected.
    fn close_interval(&mut self) -> Option<u8> {
        let (_, highest) = self.highest?;
        let base = self.base?;
        let expected = highest - base;
        if expected <= 0 {
            return None;
        }
        let lost = (expected - i64::try_from(self.received).unwrap_or(i64::MAX)).max(0);
        self.window.push_back((expected, lost));
        while self.window.len() > LOSS_INTERVALS {
            self.window.pop_front();
        }
        let (e, l) = self
            .window
            .iter()
            .fold((0i64, 0i64), |(e, l), (we, wl)| (e + we, l + wl));
        self.smoothed = l as f64 / e.max(1) as f64;
        self.base = Some(highest);
        self.received = 0;
        Some(
            (lost as f64 / expected as f64 * 100.0)
                .round()
                .clamp(0.0, 100.0) as u8,
        )
    }

    /// The loss to tell the sender, percent: the window's figure, at least 1 when any
    /// packet was lost.
    fn report_percent(&self) -> u8 {
        let p = (self.smoothed * 100.0).round().clamp(0.0, 100.0) as u8;
        if self.smoothed > 0.0 { p.max(1) } else { p }
    }
}

/// Decoded samples waiting to be mixed: a vector read from the front, compacted now and
/// then (cheaper than a deque sample by sample).
#[derive(Debug, Default)]
struct SampleQueue {
    data: Vec<f32>,
    start: usize,
}

impl SampleQueue {
    fn len(&self) -> usize {
        self.data.len() - self.start
    }

    fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }

    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    fn push(&mut self, samples: &[f32]) {
        self.compact();
        self.data.extend_from_slice(samples);
    }

    fn push_zeros(&mut self, n: usize) {
        self.compact();
        self.data.resize(self.data.len() + n, 0.0);
    }

    /// Moves up to `n` samples to `out`.
    fn take_into(&mut self, n: usize, out: &mut Vec<f32>) {
        let end = (self.start + n).min(self.data.len());
        out.extend_from_slice(self.data.get(self.start..end).unwrap_or(&[]));
        self.start = end;
        if self.start == self.data.len() {
            self.clear();
        }
    }
}

struct PeerVoice {
    jb: JitterBuffer,
    decoder: Option<VoiceDecoder>,
    /// The peer sends audio above 8 kHz: decode at 48 kHz (else at 16 kHz, see
    /// [`WIDEBAND_RATE`]).
    above_wideband: bool,
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
    fn new(config: JitterConfig) -> Self {
        Self {
            jb: JitterBuffer::new(config),
            decoder: None,
            above_wideband: false,
            pcm: SampleQueue::default(),
            gains: (1.0, 1.0),
            speaking: false,
            last_audio: None,
            loss: LossMeter::default(),
            packets: 0,
            bytes_window: 0,
            kbps: 0.0,
        }
    }
}

/// Everything the receive side owns.
pub(crate) struct Receiver {
    incoming: crossbeam_channel::Receiver<MediaIn>,
    cmd: Option<crate::transport::media::MediaLink>,
    controls: Arc<Controls>,
    events: crossbeam_channel::Sender<VoiceEvent>,
    config: JitterConfig,
    peers: HashMap<PeerId, PeerVoice>,
    reported: HashMap<PeerId, u8>,
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
    /// The controls as last copied, and the generation they were copied at.
    controls_view: (
        HashMap<PeerId, super::PeerControl>,
        super::mixer::Listener,
        super::mixer::Falloff,
    ),
    controls_seen: Option<u64>,
}

impl Receiver {
    pub(crate) fn new(
        incoming: crossbeam_channel::Receiver<MediaIn>,
        cmd: Option<crate::transport::media::MediaLink>,
        controls: Arc<Controls>,
        events: crossbeam_channel::Sender<VoiceEvent>,
        config: JitterConfig,
    ) -> Self {
        Self {
            incoming,
            cmd,
            controls,
            events,
            config,
            peers: HashMap::new(),
            reported: HashMap::new(),
            decoded: vec![0.0; FRAME],
            mono: Vec::with_capacity(FRAME * 4),
            wide_mix: Vec::with_capacity(FRAME),
            wide_out: Vec::with_capacity(FRAME * 2),
            upsampler: Upsampler::new(),
            last_report: None,
            last_stats: None,
            controls_view: Default::default(),
            controls_seen: None,
        }
    }

    fn emit(&self, event: VoiceEvent) {
        let _ = self.events.try_send(event);
    }

    /// Takes in everything the network thread has handed over.
    pub(crate) fn drain(&mut self) {
        while let Ok(item) = self.incoming.try_recv() {
            match item {
                MediaIn::Rtp {
                    peer,
                    seq,
                    timestamp,
                    marker,
                    payload,
                    arrival,
                } => {
                    let config = self.config;
                    let pv = self
                        .peers
                        .entry(peer)
                        .or_insert_with(|| PeerVoice::new(config));
                    pv.packets += 1;
                    pv.bytes_window += payload.len() as u64;
                    pv.loss.on_packet(seq);
                    pv.jb.insert(timestamp, marker, payload, arrival);
                }
                MediaIn::LossReport { peer, percent } => {
                    self.reported.insert(peer, percent);
                    self.publish_reported_loss();
                }
                MediaIn::KeyframeRequest { .. } | MediaIn::PeerConnected { .. } => {}
                MediaIn::PeerGone { peer } => {
                    if self.peers.remove(&peer).is_some_and(|pv| pv.speaking) {
                        self.emit(VoiceEvent::SpeakingStopped { peer });
                    }
                    self.reported.remove(&peer);
                    self.publish_reported_loss();
                    if let Ok(mut stats) = self.controls.stats.lock() {
                        stats.remove(&peer);
                    }
                }
            }
        }
    }

    fn publish_reported_loss(&self) {
        let max = self.reported.values().copied().max().unwrap_or(0);
        self.controls
            .reported_loss
            .store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Renders `out.len() / 2` stereo frames of the mix, as of `now`.
    ///
    /// Voices that send only up to 8 kHz (Opus wideband, our default) are decoded and mixed
    /// at 16 kHz and the mix is interpolated once; the others are decoded at 48 kHz and
    /// mixed straight into `out`.
    pub(crate) fn render(&mut self, now: Instant, out: &mut [f32]) {
        self.drain();
        out.fill(0.0);
        let frames = out.len() / 2;
        // 16 kHz frames to make: enough, with what the last render left, for `frames`.
        let carried = self.wide_out.len() / 2;
        let wide_frames = frames.saturating_sub(carried).div_ceil(UP);
        self.wide_mix.clear();
        self.wide_mix.resize(wide_frames * 2, 0.0);
        let generation = self
            .controls
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if self.controls_seen != Some(generation) {
            self.controls_view = self.controls.snapshot();
            self.controls_seen = Some(generation);
        }
        let (peer_controls, listener, falloff) = &self.controls_view;
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        let mut any_wide = false;
        for (id, pv) in &mut self.peers {
            let control = peer_controls.get(id).copied().unwrap_or_default();
            if control.muted {
                // A muted peer is not decoded at all.
                pv.jb.clear();
                pv.decoder = None;
                pv.pcm.clear();
            } else {
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
                    let (packet, fec, fade) = match &next {
                        Next::Idle => break,
                        Next::Silence(n) => {
                            pv.pcm.push_zeros(n.div_ceil(up));
                            continue;
                        }
                        Next::Decode(p) => (Some(p.as_ref()), false, None),
                        Next::Fec(p) => (Some(p.as_ref()), true, None),
                        Next::Conceal { fade_from, fade_to } => {
                            (None, false, Some((*fade_from, *fade_to)))
                        }
                    };
                    if !pv.above_wideband && packet.and_then(codes_above_wideband) == Some(true) {
                        // It now sends above 8 kHz: decode at 48 kHz from here on, keeping
                        // the queued stretch's length.
                        pv.above_wideband = true;
                        pv.decoder = None;
                        let queued = pv.pcm.len();
                        pv.pcm.clear();
                        pv.pcm.push_zeros(queued * UP);
                        break;
                    }
                    let rate = if pv.above_wideband {
                        SAMPLE_RATE
                    } else {
                        WIDEBAND_RATE
                    };
                    if pv.decoder.is_none() {
                        pv.decoder = VoiceDecoder::with_rate(rate).ok();
                    }
                    let Some(decoder) = pv.decoder.as_mut() else {
                        break;
                    };
                    // One 20 ms frame at the decoder's rate.
                    let frame_len = FRAME / up;
                    let buf = self.decoded.get_mut(..frame_len).unwrap_or(&mut []);
                    let mut n = decoder.decode(packet, fec, buf).unwrap_or(0);
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
                            started.push(*id);
                        }
                    } else {
                        // A pause between words: where the delay may change unheard.
                        pv.pcm.push(samples);
                        if let Adapt::Insert(n) = pv.jb.adapt_in_pause(frames) {
                            pv.pcm.push_zeros(n.div_ceil(up));
                        }
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
                let spatial = spatial_gains(control.position, listener, falloff);
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
                stopped.push(*id);
            }
        }
        self.add_wide_mix(out, frames, wide_frames, any_wide);
        limit(out);
        for peer in started {
            self.emit(VoiceEvent::SpeakingStarted { peer });
        }
        for peer in stopped {
            self.emit(VoiceEvent::SpeakingStopped { peer });
        }
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

    fn periodic(&mut self, now: Instant) {
        let report_due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY);
        if report_due {
            let elapsed = self
                .last_report
                .map_or(REPORT_EVERY, |t| now.saturating_duration_since(t));
            self.last_report = Some(now);
            for (id, pv) in &mut self.peers {
                pv.kbps = pv.bytes_window as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64().max(0.001);
                pv.bytes_window = 0;
                if pv.loss.close_interval().is_some() {
                    pv.jb.set_loss(pv.loss.smoothed);
                    // Over 5 s, not 1: FEC tuned for more loss than there is costs quality
                    // (libopus 1.3 at 32 kbit/s, 5 % loss: PESQ-WB 3.42 tuned for 5 %, 2.73
                    // tuned for 20 %).
                    if let Some(cmd) = &self.cmd {
                        cmd.report_loss(*id, pv.loss.report_percent());
                    }
                }
            }
        }
        let stats_due = self
            .last_stats
            .is_none_or(|t| now.saturating_duration_since(t) >= STATS_EVERY);
        if stats_due {
            self.last_stats = Some(now);
            if let Ok(mut stats) = self.controls.stats.lock() {
                for (id, pv) in &self.peers {
                    let s = &pv.jb.stats;
                    stats.insert(
                        *id,
                        VoiceStats {
                            speaking: pv.speaking,
                            jitter_buffer_delay: pv.jb.delay(),
                            target_delay: pv.jb.target(),
                            jitter: pv.jb.jitter(),
                            packets_received: pv.packets,
                            decoded: s.decoded,
                            late: s.late,
                            lost: s.lost,
                            fec_recovered: s.fec_recovered,
                            concealed: s.concealed,
                            dropped_for_delay: s.dropped_for_delay,
                            loss_percent: pv.loss.smoothed * 100.0,
                            kbps: pv.kbps,
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_queue_is_first_in_first_out() {
        let mut q = SampleQueue::default();
        q.push(&[1.0, 2.0, 3.0]);
        q.push_zeros(2);
        let mut out = Vec::new();
        q.take_into(2, &mut out);
        q.push(&[4.0]);
        q.take_into(10, &mut out);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 0.0, 0.0, 4.0]);
        assert_eq!(q.len(), 0);
    }

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
        let controls = Arc::new(Controls::new(super::super::VoiceMode::OpenMic));
        let mut receiver = Receiver::new(rx, None, controls, events, JitterConfig::default());
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
                        seq: i as u16,
                        timestamp: (i * FRAME) as u32,
                        marker: i == 0,
                        payload,
                        arrival: now,
                    })
                    .unwrap();
                }
            }
            receiver.render(now, &mut block);
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

    #[test]
    fn loss_meter_counts_gaps_across_wrap() {
        let mut m = LossMeter::default();
        for s in [65_530u16, 65_531, 65_533, 65_534, 65_535, 0, 2, 3] {
            m.on_packet(s);
        }
        // 65530..=3 is 10 packets, 8 arrived.
        assert_eq!(m.close_interval(), Some(20));
        assert_eq!(m.close_interval(), None);
        m.on_packet(4);
        assert_eq!(m.close_interval(), Some(0));
        // Over the window: 2 lost of 11 expected.
        assert_eq!(m.report_percent(), 18);
    }
}
