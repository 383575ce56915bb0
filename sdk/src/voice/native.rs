//! The native voice: the pipeline threads around the session.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use squadlink_protocol::PeerId;

use super::controls::Controls;
use super::device::{DeviceSink, DeviceSource};
use super::error::{Direction, VoiceError};
use super::events::{SendStats, VoiceEvent, VoiceStats};
use super::format::SAMPLE_RATE;
use super::io::{self, AudioSink, AudioSource, BLOCK, NullSink, RenderFn, WavSink, WavSource};
use super::jitter::JitterConfig;
use super::mixer::{Falloff, Listener};
use super::mode::VoiceMode;
use super::opus::VoiceBandwidth;
use super::opus::VoiceEncoder;
use super::tx::{FrameOut, Transmitter};
use super::{capture, reuse, rx};

use crate::Session;
use crate::bridge::MediaLink;
use crate::join::{STOP_WAIT, join_within};

/// Where the microphone audio comes from.
pub enum AudioInput {
    /// The system's default microphone.
    Default,
    /// The microphone with this name (see [`device_names`]).
    Device(String),
    /// A WAV file, played in real time, then silence.
    Wav(PathBuf),
    /// Any source.
    Source(Box<dyn AudioSource>),
    /// The game pushes mono 48 kHz samples with [`Voice::push_capture`].
    Manual,
    /// Listen only.
    None,
}

/// Where the voice mix goes.
pub enum AudioOutput {
    /// The system's default output.
    Default,
    /// The output device with this name (see [`device_names`]).
    Device(String),
    /// A WAV file (16-bit stereo), written in real time.
    Wav(PathBuf),
    /// Any sink.
    Sink(Box<dyn AudioSink>),
    /// The game pulls the stereo mix with [`Voice::pull_playback`].
    Manual,
    /// Play nothing (speaking events still come).
    None,
}

/// Voice settings.
pub struct VoiceConfig {
    /// How the microphone opens.
    pub mode: VoiceMode,
    /// Where audio comes from.
    pub input: AudioInput,
    /// Where the mix goes.
    pub output: AudioOutput,
    /// Opus bitrate, bits per second (default 32 000; at least 48 000 while receivers
    /// report loss and FEC is on).
    pub bitrate: u32,
    /// The audio band coded (default wideband, up to 8 kHz: see [`VoiceBandwidth`]).
    pub bandwidth: VoiceBandwidth,
    /// RNNoise noise suppression (default on; it adds 10 ms of delay).
    pub noise_suppression: bool,
    /// Microphone gain (default 1.0).
    pub gain: f32,
    /// Voice probability that opens the voice-activity gate (default 0.15). RNNoise rates
    /// noise below 0.1; higher thresholds clip word onsets (PESQ-WB at 5 % loss, three
    /// runs each: 2.93–3.39 at 0.3, 3.39–3.50 at 0.15).
    pub vad_threshold: f32,
    /// How long the gate stays open after speech (default 300 ms).
    pub hangover: Duration,
    /// Jitter buffer bounds.
    pub jitter: JitterConfig,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            mode: VoiceMode::default(),
            input: AudioInput::Default,
            output: AudioOutput::Default,
            bitrate: 32_000,
            bandwidth: VoiceBandwidth::default(),
            noise_suppression: true,
            gain: 1.0,
            vad_threshold: 0.15,
            hangover: Duration::from_millis(300),
            jitter: JitterConfig::default(),
        }
    }
}

impl VoiceConfig {
    /// Sets the mode.
    pub fn mode(mut self, mode: VoiceMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the input.
    pub fn input(mut self, input: AudioInput) -> Self {
        self.input = input;
        self
    }

    /// Sets the output.
    pub fn output(mut self, output: AudioOutput) -> Self {
        self.output = output;
        self
    }

    /// Sets the coded audio band.
    pub fn bandwidth(mut self, bandwidth: VoiceBandwidth) -> Self {
        self.bandwidth = bandwidth;
        self
    }

    /// Turns noise suppression on or off.
    pub fn noise_suppression(mut self, on: bool) -> Self {
        self.noise_suppression = on;
        self
    }
}

/// Voice chat for one session: capture and send, receive and play.
///
/// Dropping it stops voice (the session goes on).
pub struct Voice {
    controls: Arc<Controls>,
    events: crossbeam_channel::Receiver<VoiceEvent>,
    manual_in: Option<Mutex<rtrb::Producer<f32>>>,
    /// The receive side when the game pulls the mix ([`AudioOutput::Manual`]).
    receiver: Option<Mutex<rx::Receiver>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The sending work, on a thread reused from voice to voice (see `reuse`).
    sending: Option<reuse::Running>,
}

impl Voice {
    /// Starts voice chat on `session`'s peer connections.
    ///
    /// A sound device that is missing or fails becomes a [`VoiceEvent::DeviceUnavailable`]
    /// event and voice runs without it. Errors are for what the caller asked for and cannot
    /// have: an unreadable WAV file, or no threads.
    pub fn start(session: &Session, config: VoiceConfig) -> Result<Voice, VoiceError> {
        let link = session.media_link();
        let incoming = link.incoming.clone();
        Self::start_with(
            FrameOut::Session(link.clone_sender()),
            incoming,
            Some(link),
            config,
        )
    }

    /// Voice without a network: what is captured comes straight back through the whole
    /// pipeline (gate, Opus, jitter buffer, decoder, mixer) as `listeners` remote voices with
    /// the ids [`Voice::loopback_peer`]`(0..listeners)`. A microphone test for players ("hear
    /// yourself"), and how the benchmark measures latency and CPU without a network.
    pub fn loopback(config: VoiceConfig, listeners: usize) -> Result<Voice, VoiceError> {
        let (tx, rx) = crossbeam_channel::bounded(crate::media::MEDIA_QUEUE);
        let peers: Vec<PeerId> = (0..listeners).map(Self::loopback_peer).collect();
        // As the session does when a peer connects: its state is made before its voice comes.
        for peer in &peers {
            let _ = tx.try_send(crate::media::MediaIn::PeerConnected { peer: *peer });
        }
        Self::start_with(FrameOut::Loopback { tx, peers }, rx, None, config)
    }

    /// The id of loopback listener `i` (see [`Voice::loopback`]).
    pub fn loopback_peer(i: usize) -> PeerId {
        PeerId(u64::MAX - i as u64)
    }

    fn start_with(
        out: FrameOut,
        incoming: crossbeam_channel::Receiver<crate::media::MediaIn>,
        link: Option<MediaLink>,
        config: VoiceConfig,
    ) -> Result<Voice, VoiceError> {
        let controls = Arc::new(Controls::new(config.mode));
        let (event_tx, events) = crossbeam_channel::bounded(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let emit = |e: VoiceEvent| {
            let _ = event_tx.try_send(e);
        };

        let mut manual_in = None;
        let source: Option<Box<dyn AudioSource>> = match config.input {
            AudioInput::Default => open_device_source(None, &emit),
            AudioInput::Device(name) => open_device_source(Some(&name), &emit),
            AudioInput::Wav(path) => Some(Box::new(WavSource::open(path)?)),
            AudioInput::Source(source) => Some(source),
            AudioInput::Manual => {
                let (producer, consumer) = rtrb::RingBuffer::new(SAMPLE_RATE as usize);
                manual_in = Some(Mutex::new(producer));
                Some(Box::new(io::ManualSource { consumer }))
            }
            AudioInput::None => None,
        };
        let sink: Option<Box<dyn AudioSink>> = match config.output {
            AudioOutput::Default => Some(open_device_sink(None, &emit)),
            AudioOutput::Device(name) => Some(open_device_sink(Some(&name), &emit)),
            AudioOutput::Wav(path) => Some(Box::new(WavSink::create(path)?)),
            AudioOutput::Sink(sink) => Some(sink),
            AudioOutput::Manual => None,
            AudioOutput::None => Some(Box::new(NullSink::new())),
        };

        let (receiver, companion) = rx::receiver(
            incoming,
            link,
            Arc::clone(&controls),
            event_tx.clone(),
            config.jitter,
        );
        let mut threads = Vec::new();
        let mut sending = None;
        if let Some(source) = source {
            let tx = Transmitter {
                source,
                processor: capture::Processor::new(config.noise_suppression, config.gain),
                gate: capture::Gate::new(
                    config.vad_threshold,
                    capture::frames_for(config.hangover),
                ),
                encoder: VoiceEncoder::new(config.bitrate, config.bandwidth)?,
                out,
                controls: Arc::clone(&controls),
                events: event_tx.clone(),
                stop: Arc::clone(&stop),
            };
            sending = Some(
                reuse::run("sl-voice-tx", move || tx.run())
                    .map_err(|e| VoiceError::Start(e.to_string()))?,
            );
        }
        let mut pulled = None;
        if let Some(mut sink) = sink {
            let mut receiver = receiver;
            let render: RenderFn = Box::new(move |now, stereo| receiver.render(now, stereo));
            let stop = Arc::clone(&stop);
            let events = event_tx.clone();
            match sink.render_in_callback(render) {
                // A sound card renders in its callback; this thread keeps the companion
                // and watches the device.
                Ok(()) => threads.push(spawn("sl-voice-rx", move || {
                    keep_device(sink, companion, &stop, &events);
                })?),
                Err(render) => threads.push(spawn("sl-voice-rx", move || {
                    playout(sink, render, companion, &stop, &events);
                })?),
            }
        } else {
            // The game pulls the mix: the companion runs on a thread of its own.
            pulled = Some(Mutex::new(receiver));
            let stop = Arc::clone(&stop);
            let mut companion = companion;
            threads.push(spawn("sl-voice-rx", move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(rx::COMPANION_EVERY);
                    companion.tick();
                }
            })?);
        }
        Ok(Voice {
            controls,
            events,
            manual_in,
            receiver: pulled,
            stop,
            threads,
            sending,
        })
    }

    /// Events since the last call (speaking changes, device problems).
    pub fn poll_events(&self) -> Vec<VoiceEvent> {
        self.events.try_iter().collect()
    }

    /// Changes the mode.
    pub fn set_mode(&self, mode: VoiceMode) {
        self.controls.set_mode(mode);
    }

    /// The mode.
    pub fn mode(&self) -> VoiceMode {
        self.controls.mode()
    }

    /// Whether the push-to-talk key is held (in [`VoiceMode::PushToTalk`]).
    pub fn set_push_to_talk(&self, held: bool) {
        self.controls.set_push_to_talk(held);
    }

    /// Mutes or unmutes our microphone: nothing is sent while muted.
    pub fn set_self_muted(&self, muted: bool) {
        self.controls.set_self_muted(muted);
    }

    /// Whether our microphone is muted.
    pub fn self_muted(&self) -> bool {
        self.controls.self_muted()
    }

    /// Whether our voice is being sent right now.
    pub fn transmitting(&self) -> bool {
        self.controls.transmitting()
    }

    /// A peer's volume: 0.0 to 2.0 (200 %), default 1.0.
    pub fn set_peer_volume(&self, peer: PeerId, volume: f32) {
        let volume = if volume.is_finite() {
            volume.clamp(0.0, 2.0)
        } else {
            1.0
        };
        self.controls.update_peer(peer, |c| c.volume = volume);
    }

    /// Mutes a peer for us only (their audio is not even decoded).
    pub fn set_peer_muted(&self, peer: PeerId, muted: bool) {
        self.controls.update_peer(peer, |c| c.muted = muted);
    }

    /// Where a peer's voice comes from (`None`: centred, no distance falloff).
    pub fn set_peer_position(&self, peer: PeerId, position: Option<[f32; 3]>) {
        self.controls.update_peer(peer, |c| c.position = position);
    }

    /// Where we listen from, and how voices fade with distance.
    pub fn set_listener(&self, listener: Listener, falloff: Falloff) {
        self.controls.set_space(listener, falloff);
    }

    /// A peer's voice statistics (refreshed 4 times a second while they are heard).
    pub fn stats(&self, peer: PeerId) -> Option<VoiceStats> {
        self.controls.peer_stats(peer)
    }

    /// What we have sent: frames captured and sent, packets, bytes, and the loss FEC is
    /// tuned for.
    pub fn send_stats(&self) -> SendStats {
        self.controls.send_stats()
    }

    /// With [`AudioInput::Manual`]: pushes mono 48 kHz samples; returns how many fitted
    /// (up to a second may wait).
    pub fn push_capture(&self, mono: &[f32]) -> usize {
        let Some(producer) = &self.manual_in else {
            return 0;
        };
        let Ok(mut producer) = producer.lock() else {
            return 0;
        };
        let n = mono.len().min(producer.slots());
        let Ok(mut chunk) = producer.write_chunk(n) else {
            return 0;
        };
        let (a, b) = chunk.as_mut_slices();
        let split = a.len();
        for (dst, src) in a.iter_mut().zip(mono) {
            *dst = *src;
        }
        for (dst, src) in b.iter_mut().zip(mono.iter().skip(split)) {
            *dst = *src;
        }
        chunk.commit_all();
        n
    }

    /// With [`AudioOutput::Manual`]: fills `stereo` (interleaved, 48 kHz) with the next
    /// stretch of the mix. Call it at the pace the audio is played.
    ///
    /// It never allocates or blocks on the voice threads (only on another caller of this
    /// method), so an engine's own audio callback may call it.
    pub fn pull_playback(&self, stereo: &mut [f32]) {
        let Some(receiver) = &self.receiver else {
            stereo.fill(0.0);
            return;
        };
        match receiver.lock() {
            Ok(mut receiver) => receiver.render(Instant::now(), stereo),
            Err(_) => stereo.fill(0.0),
        }
    }

    /// Stops voice and waits for its threads (files are finished).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sending) = self.sending.take()
            && !sending.join()
        {
            tracing::warn!(
                wait = ?reuse::JOIN_WAIT,
                "the voice's sending thread did not stop in time; not waiting for it"
            );
        }
        for t in self.threads.drain(..) {
            join_within(t, STOP_WAIT);
        }
    }
}

impl Drop for Voice {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, VoiceError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| VoiceError::Start(e.to_string()))
}

fn open_device_source(
    name: Option<&str>,
    emit: &impl Fn(VoiceEvent),
) -> Option<Box<dyn AudioSource>> {
    match DeviceSource::open(name) {
        Ok(source) => {
            emit(VoiceEvent::DeviceStarted {
                direction: Direction::Input,
                name: source.describe(),
            });
            Some(Box::new(source))
        }
        Err(e) => {
            tracing::warn!(%e, "no microphone: voice runs listen-only");
            emit(VoiceEvent::DeviceUnavailable {
                direction: Direction::Input,
                reason: e.to_string(),
            });
            None
        }
    }
}

fn open_device_sink(name: Option<&str>, emit: &impl Fn(VoiceEvent)) -> Box<dyn AudioSink> {
    match DeviceSink::open(name) {
        Ok(sink) => {
            emit(VoiceEvent::DeviceStarted {
                direction: Direction::Output,
                name: sink.describe(),
            });
            Box::new(sink)
        }
        Err(e) => {
            tracing::warn!(%e, "no audio output: voices are received but not played");
            emit(VoiceEvent::DeviceUnavailable {
                direction: Direction::Output,
                reason: e.to_string(),
            });
            Box::new(NullSink::new())
        }
    }
}

/// The playout thread: whenever the sink needs audio, render exactly that much; between
/// renders, the receiver's companion when it asks or its turn comes.
fn playout(
    mut sink: Box<dyn AudioSink>,
    mut render: RenderFn,
    mut companion: rx::Companion,
    stop: &AtomicBool,
    events: &crossbeam_channel::Sender<VoiceEvent>,
) {
    let mut buf = vec![0.0f32; BLOCK * 2];
    while !stop.load(Ordering::Relaxed) {
        let wanted_frames = match sink.wait(Duration::from_millis(50)) {
            Ok(n) => n,
            Err(e) => {
                let _ = events.try_send(VoiceEvent::DeviceUnavailable {
                    direction: Direction::Output,
                    reason: e.to_string(),
                });
                sink = Box::new(NullSink::new());
                continue;
            }
        };
        let now = Instant::now();
        if wanted_frames > 0 {
            buf.resize(wanted_frames * 2, 0.0);
            render(now, &mut buf);
            if let Err(e) = sink.write(&buf) {
                let _ = events.try_send(VoiceEvent::DeviceUnavailable {
                    direction: Direction::Output,
                    reason: e.to_string(),
                });
                sink = Box::new(NullSink::new());
            }
        }
        companion.tick_if_due(now);
    }
}

/// While a sound card renders in its callback: runs the receiver's companion at its pace
/// and keeps the device (and so its stream) alive, reporting when it fails.
fn keep_device(
    mut sink: Box<dyn AudioSink>,
    mut companion: rx::Companion,
    stop: &AtomicBool,
    events: &crossbeam_channel::Sender<VoiceEvent>,
) {
    let mut failed = false;
    while !stop.load(Ordering::Relaxed) {
        if failed {
            std::thread::sleep(rx::COMPANION_EVERY);
        } else if let Err(e) = sink.wait(rx::COMPANION_EVERY) {
            // The renderer went with the device; voices are no longer played.
            let _ = events.try_send(VoiceEvent::DeviceUnavailable {
                direction: Direction::Output,
                reason: e.to_string(),
            });
            failed = true;
        }
        companion.tick();
    }
}
