//! Voice in the browser: the page's microphone, Opus codec and playback (Web Audio), on the
//! audio track of each of the browser engine's connections.
//!
//! The same [`Voice`] as natively, built from the page's parts:
//!
//! ```text
//! getUserMedia ─► our audio track on every connection (the browser codes Opus, 48 kHz)
//!     └► analyser: voice-activity gate ─► track.enabled (push-to-talk, open mic likewise)
//! peer's track ─► muted <audio> (Chrome feeds Web Audio only while one plays it)
//!     └► source ─► left/right gains (volume, mute, position: the native panning law)
//!                  ─► merger ─► the mix ─► speakers      └► analyser: speaking events
//! ```
//!
//! What is the browser's, not ours: jitter buffer, loss concealment, FEC and noise
//! suppression (`VoiceConfig::noise_suppression` asks for the browser's own). Statistics
//! come from `getStats()` once a second. Browsers start audio only after the player has
//! clicked, touched or pressed a key on the page: until then the mix is silent and voice
//! activity is not measured. `Voice` starts it at the first such gesture on the page by
//! itself ([`Voice::resume`] does it from a handler of your own). The page's timers run at most once a second in a hidden tab, so the gate
//! and speaking events react more slowly there; playback itself is not throttled.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use js_sys::{Object, Reflect};
use squadlink_protocol::PeerId;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    AnalyserNode, AudioContext, AudioContextState, AudioNode, GainNode, MediaStream,
    MediaStreamConstraints, MediaStreamTrack,
};
use web_time::Instant;

use super::error::{Direction, VoiceError};
use super::events::{SendStats, VoiceEvent, VoiceStats};
use super::mixer::{Falloff, Listener, spatial_gains};
use super::mode::VoiceMode;
use super::web_audio::{Gesture, Heard, WINDOW, analyser_of, audio_graph, hear, level, resume};
use crate::Session;
use crate::media::Kind;
use crate::transport::web::media::{self as hub, Hub, RtpEntry, stop_tracks, user_media};
use crate::transport::web::{describe, sleep};

/// How often the gate, the speaking events and the peers' tracks are looked at.
const TICK: Duration = Duration::from_millis(20);
/// A peer's level (RMS, full scale 1) above which it is speaking.
const SPEAKING_LEVEL: f32 = 0.01;
/// How long a peer stays "speaking" after its level fell.
const SPEAKING_HANGOVER: Duration = Duration::from_millis(300);
/// Samples in one Opus frame of 20 ms at 48 kHz (the browser's frames).
const FRAME_SAMPLES: f64 = 960.0;

/// Where the microphone audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioInput {
    /// The page's microphone (`getUserMedia`; the browser asks the player once).
    Default,
    /// Listen only.
    None,
}

/// Where the voice mix goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioOutput {
    /// The page's speakers (Web Audio).
    Default,
    /// Play nothing (speaking events still come; [`Voice::output`] still gives the mix).
    None,
}

/// Voice settings in the browser.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// How the microphone opens.
    pub mode: VoiceMode,
    /// Where audio comes from.
    pub input: AudioInput,
    /// Where the mix goes.
    pub output: AudioOutput,
    /// The browser's noise suppression (default on).
    pub noise_suppression: bool,
    /// The browser's echo cancellation (default on: without headphones the speakers'
    /// voices come back through the microphone).
    pub echo_cancellation: bool,
    /// The browser's automatic gain control (default on).
    pub auto_gain: bool,
    /// Microphone level (RMS, full scale 1) that opens the voice-activity gate (default
    /// 0.02, about −34 dBFS).
    pub vad_level: f32,
    /// How long the gate stays open after speech (default 300 ms).
    pub hangover: Duration,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            mode: VoiceMode::default(),
            input: AudioInput::Default,
            output: AudioOutput::Default,
            noise_suppression: true,
            echo_cancellation: true,
            auto_gain: true,
            vad_level: 0.02,
            hangover: Duration::from_millis(300),
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

    /// Turns the browser's noise suppression on or off.
    pub fn noise_suppression(mut self, on: bool) -> Self {
        self.noise_suppression = on;
        self
    }

    /// Turns the browser's echo cancellation on or off.
    pub fn echo_cancellation(mut self, on: bool) -> Self {
        self.echo_cancellation = on;
        self
    }

    /// Turns the browser's automatic gain control on or off.
    pub fn auto_gain(mut self, on: bool) -> Self {
        self.auto_gain = on;
        self
    }
}

thread_local! {
    /// The page's running voices by id (their parts are the page's, not `Send`).
    static VOICES: RefCell<HashMap<u64, Rc<RefCell<Player>>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Voice chat for one session in the page. Stops when dropped.
///
/// It holds only keys (the page's audio objects stay on the page's thread), so it is
/// `Send` and `Sync` like the native one and can be a Bevy resource.
#[derive(Debug)]
pub struct Voice {
    id: u64,
}

/// A peer's volume, mute and position, kept while its track comes and goes.
#[derive(Debug, Clone, Copy)]
struct PeerControls {
    volume: f32,
    muted: bool,
    position: Option<[f32; 3]>,
}

impl Default for PeerControls {
    fn default() -> Self {
        Self {
            volume: 1.0,
            muted: false,
            position: None,
        }
    }
}

/// The microphone, once the page has it.
struct Mic {
    stream: MediaStream,
    track: MediaStreamTrack,
    analyser: Option<AnalyserNode>,
}

/// Everything one [`Voice`] owns in the page.
struct Player {
    session: u64,
    config: VoiceConfig,
    ctx: Option<AudioContext>,
    mix: Option<GainNode>,
    gesture: Option<Gesture>,
    /// Whether the output was last reported running (None: not yet reported).
    output_running: Option<bool>,
    heard: HashMap<PeerId, Heard>,
    controls: HashMap<PeerId, PeerControls>,
    listener: Listener,
    falloff: Falloff,
    mic: Option<Mic>,
    push_to_talk: bool,
    self_muted: bool,
    transmitting: bool,
    /// The voice-activity gate is open until then.
    open_until: Option<Instant>,
    events: VecDeque<VoiceEvent>,
    scratch: Vec<f32>,
    stopped: bool,
}

impl Voice {
    /// Starts voice next to `session` (which must be running in this page): asks the page
    /// for the microphone (reported as [`VoiceEvent::DeviceStarted`] or
    /// [`VoiceEvent::DeviceUnavailable`] when the player answers) and plays the peers.
    pub fn start(session: &Session, config: VoiceConfig) -> Result<Voice, VoiceError> {
        let key = session.media_key();
        if hub::hub(key).is_none() {
            return Err(VoiceError::Start(
                "the session has ended, or runs on another thread than the page's".into(),
            ));
        }
        let mut player = Player {
            session: key,
            ctx: None,
            mix: None,
            gesture: None,
            output_running: None,
            heard: HashMap::new(),
            controls: HashMap::new(),
            listener: Listener::default(),
            falloff: Falloff::default(),
            mic: None,
            push_to_talk: false,
            self_muted: false,
            transmitting: false,
            open_until: None,
            events: VecDeque::new(),
            scratch: vec![0.0; WINDOW],
            stopped: false,
            config,
        };
        match audio_graph(player.config.output == AudioOutput::Default) {
            Ok((ctx, mix)) => {
                player.gesture = Gesture::listen(&ctx);
                player.ctx = Some(ctx);
                player.mix = Some(mix);
            }
            Err(reason) => player.events.push_back(VoiceEvent::DeviceUnavailable {
                direction: Direction::Output,
                reason,
            }),
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let player = Rc::new(RefCell::new(player));
        let wants_mic = player.borrow().config.input == AudioInput::Default;
        if wants_mic {
            wasm_bindgen_futures::spawn_local(open_mic(Rc::downgrade(&player)));
        }
        wasm_bindgen_futures::spawn_local(keep_time(Rc::downgrade(&player)));
        VOICES.with(|voices| voices.borrow_mut().insert(id, player));
        Ok(Voice { id })
    }

    /// Runs `f` on this voice's parts (nothing when they are gone or busy).
    fn with<T>(&self, f: impl FnOnce(&mut Player) -> T) -> Option<T> {
        let player = VOICES.with(|voices| voices.borrow().get(&self.id).cloned())?;
        let mut player = player.try_borrow_mut().ok()?;
        Some(f(&mut player))
    }

    /// Starts the page's audio if the browser held it back (it does until the player
    /// clicks or presses a key on the page): call it from an input handler.
    pub fn resume(&self) {
        self.with(|p| {
            if let Some(ctx) = &p.ctx {
                resume(ctx);
            }
        });
    }

    /// The voice mix as a Web Audio node (stereo, 48 kHz): connect it to your own graph
    /// (effects, a recorder). `None` when the page has no audio.
    pub fn output(&self) -> Option<AudioNode> {
        self.with(|p| p.mix.clone().map(Into::into)).flatten()
    }

    /// Events since the last call.
    pub fn poll_events(&self) -> Vec<VoiceEvent> {
        self.with(|p| p.events.drain(..).collect())
            .unwrap_or_default()
    }

    /// Changes the mode.
    pub fn set_mode(&self, mode: VoiceMode) {
        self.with(|p| {
            p.config.mode = mode;
            p.gate(Instant::now());
        });
    }

    /// The mode.
    pub fn mode(&self) -> VoiceMode {
        self.with(|p| p.config.mode).unwrap_or_default()
    }

    /// Push-to-talk key held or released.
    pub fn set_push_to_talk(&self, held: bool) {
        self.with(|p| {
            p.push_to_talk = held;
            p.gate(Instant::now());
        });
    }

    /// Mutes or unmutes our microphone.
    pub fn set_self_muted(&self, muted: bool) {
        self.with(|p| {
            p.self_muted = muted;
            p.gate(Instant::now());
        });
    }

    /// Whether our microphone is muted.
    pub fn self_muted(&self) -> bool {
        self.with(|p| p.self_muted).unwrap_or(false)
    }

    /// Whether we are transmitting now.
    pub fn transmitting(&self) -> bool {
        self.with(|p| p.transmitting).unwrap_or(false)
    }

    /// A peer's volume (0.0 silent, 1.0 as sent; up to 4.0).
    pub fn set_peer_volume(&self, peer: PeerId, volume: f32) {
        self.with(|p| {
            p.controls.entry(peer).or_default().volume = volume.clamp(0.0, 4.0);
            p.place(peer);
        });
    }

    /// Mutes or unmutes a peer (here only).
    pub fn set_peer_muted(&self, peer: PeerId, muted: bool) {
        self.with(|p| {
            p.controls.entry(peer).or_default().muted = muted;
            p.place(peer);
        });
    }

    /// A peer's position for positional voice (`None`: centred, no distance falloff).
    pub fn set_peer_position(&self, peer: PeerId, position: Option<[f32; 3]>) {
        self.with(|p| {
            p.controls.entry(peer).or_default().position = position;
            p.place(peer);
        });
    }

    /// Where we listen from, and how voices fade with distance (the native panning law).
    pub fn set_listener(&self, listener: Listener, falloff: Falloff) {
        self.with(|p| {
            p.listener = listener;
            p.falloff = falloff;
            let peers: Vec<PeerId> = p.heard.keys().copied().collect();
            for peer in peers {
                p.place(peer);
            }
        });
    }

    /// What we receive from `peer`, from the browser's statistics (read once a second);
    /// `None` before its first report.
    pub fn stats(&self, peer: PeerId) -> Option<VoiceStats> {
        self.with(|p| p.stats(peer)).flatten()
    }

    /// What we send: the most any one connection sent (the browser codes each
    /// connection's track separately).
    pub fn send_stats(&self) -> SendStats {
        self.with(|p| p.send_stats()).unwrap_or_default()
    }

    /// Stops the microphone and playback.
    pub fn stop(self) {}
}

impl Drop for Voice {
    fn drop(&mut self) {
        let player = VOICES.with(|voices| voices.borrow_mut().remove(&self.id));
        if let Some(player) = player
            && let Ok(mut player) = player.try_borrow_mut()
        {
            player.shut_down();
        }
    }
}

/// Asks the page for the microphone and, once given, sends it on every connection.
async fn open_mic(player: Weak<RefCell<Player>>) {
    let Some(asked) = player.upgrade() else {
        return;
    };
    let constraints = {
        let Ok(p) = asked.try_borrow() else { return };
        let audio = Object::new();
        let set = |key: &str, on: bool| {
            let _ = Reflect::set(&audio, &JsValue::from_str(key), &JsValue::from_bool(on));
        };
        set("echoCancellation", p.config.echo_cancellation);
        set("noiseSuppression", p.config.noise_suppression);
        set("autoGainControl", p.config.auto_gain);
        let constraints = MediaStreamConstraints::new();
        constraints.set_audio(&audio);
        constraints
    };
    drop(asked);
    let result = user_media(&constraints).await;
    let Some(player) = player.upgrade() else {
        // Stopped while the player was asked: let the microphone go.
        if let Ok(stream) = result {
            stop_tracks(&stream);
        }
        return;
    };
    let Ok(mut p) = player.try_borrow_mut() else {
        return;
    };
    if p.stopped {
        if let Ok(stream) = result {
            stop_tracks(&stream);
        }
        return;
    }
    let opened = result.and_then(|stream| {
        let track = stream
            .get_audio_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
            .map_err(|_| "the page gave a stream without an audio track".to_string())?;
        Ok((stream, track))
    });
    match opened {
        Ok((stream, track)) => {
            let analyser = p
                .ctx
                .as_ref()
                .and_then(|ctx| analyser_of(ctx, &stream).ok());
            let name = track.label();
            p.mic = Some(Mic {
                stream,
                track: track.clone(),
                analyser,
            });
            p.gate(Instant::now());
            if let Some(hub) = hub::hub(p.session)
                && let Ok(mut hub) = hub.try_borrow_mut()
            {
                hub.set_local(Kind::Audio, Some(track));
            }
            p.events.push_back(VoiceEvent::DeviceStarted {
                direction: Direction::Input,
                name,
            });
        }
        Err(reason) => p.events.push_back(VoiceEvent::DeviceUnavailable {
            direction: Direction::Input,
            reason: format!(
                "{reason} (the player must allow the microphone; pages need https or localhost)"
            ),
        }),
    }
}

/// Looks at the peers, the gate and the output every [`TICK`] while the voice runs.
async fn keep_time(player: Weak<RefCell<Player>>) {
    loop {
        sleep(TICK).await;
        let Some(player) = player.upgrade() else {
            return;
        };
        let Ok(mut p) = player.try_borrow_mut() else {
            continue;
        };
        if p.stopped {
            return;
        }
        p.tick(Instant::now());
    }
}

impl Player {
    fn tick(&mut self, now: Instant) {
        self.follow_tracks();
        self.listen(now);
        self.gate(now);
        if let Some(ctx) = &self.ctx {
            let running = ctx.state() == AudioContextState::Running;
            if self.output_running != Some(running) {
                self.output_running = Some(running);
                self.events.push_back(if running {
                    VoiceEvent::DeviceStarted {
                        direction: Direction::Output,
                        name: "Web Audio".into(),
                    }
                } else {
                    VoiceEvent::DeviceUnavailable {
                        direction: Direction::Output,
                        reason: "the browser holds audio back until the player clicks, \
                                 touches or presses a key on the page (voice starts it then)"
                            .into(),
                    }
                });
            }
        }
    }

    /// Plays each peer's current audio track, and lets go of tracks that are gone.
    fn follow_tracks(&mut self) {
        let Some(hub) = hub::hub(self.session) else {
            return;
        };
        let Ok(hub) = hub.try_borrow() else { return };
        let tracks = hub.remote(Kind::Audio);
        drop(hub);
        let current: HashMap<PeerId, u64> = tracks.iter().map(|(p, a)| (*p, a.serial)).collect();
        let gone: Vec<PeerId> = self
            .heard
            .iter()
            .filter(|(peer, heard)| current.get(peer) != Some(&heard.serial))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in gone {
            if let Some(heard) = self.heard.remove(&peer) {
                heard.release();
                if heard.speaking {
                    self.events.push_back(VoiceEvent::SpeakingStopped { peer });
                }
            }
        }
        for (peer, arrived) in tracks {
            if self.heard.contains_key(&peer) {
                continue;
            }
            let (Some(ctx), Some(mix)) = (&self.ctx, &self.mix) else {
                return;
            };
            match hear(ctx, mix, (&arrived.track, arrived.serial)) {
                Ok(heard) => {
                    self.heard.insert(peer, heard);
                    self.place(peer);
                }
                Err(e) => {
                    tracing::warn!(%peer, e = %describe(&e), "could not play a peer's voice");
                }
            }
        }
    }

    /// Speaking events from each peer's level.
    fn listen(&mut self, now: Instant) {
        for (peer, heard) in &mut self.heard {
            let loud = level(&heard.analyser, &mut self.scratch) > SPEAKING_LEVEL;
            if loud {
                heard.loud_at = Some(now);
            }
            let speaking = heard
                .loud_at
                .is_some_and(|at| now.saturating_duration_since(at) < SPEAKING_HANGOVER);
            if speaking != heard.speaking {
                heard.speaking = speaking;
                self.events.push_back(if speaking {
                    VoiceEvent::SpeakingStarted { peer: *peer }
                } else {
                    VoiceEvent::SpeakingStopped { peer: *peer }
                });
            }
        }
    }

    /// Opens or closes our microphone's track (push-to-talk, voice activity, open mic,
    /// self-mute).
    fn gate(&mut self, now: Instant) {
        let Some(mic) = &self.mic else { return };
        let open = !self.self_muted
            && match self.config.mode {
                VoiceMode::OpenMic => true,
                VoiceMode::PushToTalk => self.push_to_talk,
                VoiceMode::VoiceActivity => match &mic.analyser {
                    Some(analyser) => {
                        if level(analyser, &mut self.scratch) >= self.config.vad_level {
                            self.open_until = Some(now + self.config.hangover);
                        }
                        self.open_until.is_some_and(|until| now < until)
                    }
                    // No Web Audio to measure with: the microphone stays open.
                    None => true,
                },
            };
        if mic.track.enabled() != open {
            mic.track.set_enabled(open);
        }
        if open != self.transmitting {
            self.transmitting = open;
            self.events.push_back(if open {
                VoiceEvent::TransmitStarted
            } else {
                VoiceEvent::TransmitStopped
            });
        }
    }

    /// Sets `peer`'s left and right gains from its volume, mute and position.
    fn place(&mut self, peer: PeerId) {
        let Some(heard) = self.heard.get(&peer) else {
            return;
        };
        let c = self.controls.get(&peer).copied().unwrap_or_default();
        let (left, right) = spatial_gains(c.position, &self.listener, &self.falloff);
        let scale = if c.muted { 0.0 } else { c.volume };
        heard.left.gain().set_value(left * scale);
        heard.right.gain().set_value(right * scale);
    }

    fn stats(&self, peer: PeerId) -> Option<VoiceStats> {
        let hub = hub::hub(self.session)?;
        let hub = hub.try_borrow().ok()?;
        let (now, before) = hub.report(peer)?.entry(RtpEntry::In(Kind::Audio))?;
        let emitted = now.get("jitterBufferEmittedCount").max(1.0);
        let received = now.count("packetsReceived");
        let lost = now.count("packetsLost");
        Some(VoiceStats {
            speaking: self.heard.get(&peer).is_some_and(|h| h.speaking),
            jitter_buffer_delay: seconds(now.get("jitterBufferDelay") / emitted),
            target_delay: seconds(now.get("jitterBufferTargetDelay") / emitted),
            jitter: seconds(now.get("jitter")),
            packets_received: received,
            decoded: (now.get("totalSamplesReceived") / FRAME_SAMPLES) as u64,
            late: 0,
            lost,
            fec_recovered: now.count("fecPacketsReceived"),
            concealed: (now.get("concealedSamples") / FRAME_SAMPLES) as u64,
            dropped_for_delay: now.count("packetsDiscarded"),
            loss_percent: if received + lost == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / (received + lost) as f64
            },
            kbps: now.rate(before, "bytesReceived") * 8.0 / 1000.0,
        })
    }

    fn send_stats(&self) -> SendStats {
        let Some(hub) = hub::hub(self.session) else {
            return SendStats::default();
        };
        let Ok(hub) = hub.try_borrow() else {
            return SendStats::default();
        };
        most_sent(&hub)
    }

    fn shut_down(&mut self) {
        self.stopped = true;
        for (_, heard) in self.heard.drain() {
            heard.release();
        }
        if let Some(mic) = self.mic.take() {
            stop_tracks(&mic.stream);
            if let Some(hub) = hub::hub(self.session)
                && let Ok(mut hub) = hub.try_borrow_mut()
            {
                hub.set_local(Kind::Audio, None);
            }
        }
        self.gesture = None;
        if let Some(ctx) = self.ctx.take() {
            let _ = ctx.close();
        }
    }
}

/// What the connection that sent most audio sent.
fn most_sent(hub: &Hub) -> SendStats {
    let mut best = SendStats::default();
    for report in hub.reports() {
        let Some((out, _)) = report.entry(RtpEntry::Out(Kind::Audio)) else {
            continue;
        };
        let packets = out.count("packetsSent");
        if packets < best.packets_sent {
            continue;
        }
        let captured = report
            .entry(RtpEntry::Source(Kind::Audio))
            .map_or(0.0, |(s, _)| s.get("totalSamplesDuration"));
        best = SendStats {
            frames_captured: (captured / 0.020) as u64,
            frames_sent: packets,
            packets_sent: packets,
            bytes_sent: out.count("bytesSent"),
            fec_loss_percent: 0,
        };
    }
    best
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}
