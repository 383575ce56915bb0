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

#[cfg(feature = "webcam")]
mod camera;
mod frame;
pub(crate) mod rtp;
mod source;
mod vpx;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use squadlink_protocol::PeerId;

#[cfg(feature = "webcam")]
pub use camera::{Camera, CameraChoice, CameraInfo, cameras, closest_format, to_i420};
pub use frame::{I420Frame, psnr, psnr_rgba};
pub use source::{CaptureLog, TestPattern, VideoSource, Y4mSource};
pub use vpx::{EncodedFrame, Vp8Decoder, Vp8Encoder, Vp8Settings};

use crate::Session;
use crate::join::{STOP_WAIT, join_within};
use crate::transport::media::{MediaFrame, MediaIn, MediaLink, VIDEO_CLOCK_RATE};

/// What can go wrong with video.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// A picture or setting of the wrong shape.
    #[error("bad picture format: {0}")]
    Format(String),
    /// libvpx refused something.
    #[error("VP8 codec: {0}")]
    Codec(String),
    /// A source failed or ended.
    #[error("video source: {0}")]
    Source(String),
    /// No camera could be opened.
    #[error(
        "no camera: {0} (plug one in, pick another with `CameraChoice`, or send a test pattern)"
    )]
    NoCamera(String),
    /// A video thread could not be started.
    #[error("starting video: {0}")]
    Start(String),
}

/// Where pictures come from.
pub enum VideoInput {
    /// Send nothing (receive only).
    None,
    /// The synthetic test pattern at the configured size and rate.
    TestPattern,
    /// A webcam (cargo feature `webcam`), in the format closest to the configured one.
    #[cfg(feature = "webcam")]
    Camera(CameraChoice),
    /// Any source of your own.
    Source(Box<dyn VideoSource>),
}

impl std::fmt::Debug for VideoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::TestPattern => f.write_str("TestPattern"),
            #[cfg(feature = "webcam")]
            Self::Camera(c) => write!(f, "Camera({c:?})"),
            Self::Source(s) => write!(f, "Source({})", s.describe()),
        }
    }
}

/// Video settings.
#[derive(Debug)]
pub struct VideoConfig {
    /// What to send.
    pub input: VideoInput,
    /// Picture size asked of the source (even; default 320 × 240).
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second (default 15).
    pub fps: u32,
    /// VP8 target bitrate, kbit/s (default 300).
    pub bitrate_kbps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        let s = Vp8Settings::default();
        Self {
            input: VideoInput::None,
            width: s.width,
            height: s.height,
            fps: s.fps,
            bitrate_kbps: s.bitrate_kbps,
        }
    }
}

impl VideoConfig {
    /// Sets what to send.
    pub fn input(mut self, input: VideoInput) -> Self {
        self.input = input;
        self
    }

    /// Sets the picture size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Sets the frame rate.
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }

    /// Sets the bitrate, kbit/s.
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_kbps = kbps;
        self
    }
}

/// A decoded picture from a peer.
#[derive(Clone)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGBA, 4 bytes a pixel, rows top to bottom.
    pub rgba: Vec<u8>,
    /// The sender's frame counter (from the VP8 picture ID): increases by one per frame
    /// sent; gaps are frames lost or skipped.
    pub frame_id: u64,
    /// When the sender captured it, on the sender's clock: time since its first frame
    /// (from the RTP timestamp).
    pub captured: Duration,
    /// When it was decoded here.
    pub decoded_at: Instant,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frame_id", &self.frame_id)
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

/// Video received from one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoStats {
    /// Frames decoded per second (over the last second).
    pub fps: f64,
    /// Received bitrate, kbit/s (payload, over the last second).
    pub kbps: f64,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Frames lost or skipped (a packet was missing, or they waited for a keyframe).
    pub frames_dropped: u64,
    /// Frames libvpx could not decode.
    pub decode_errors: u64,
    /// Keyframes we asked this peer for.
    pub keyframes_requested: u64,
    /// Size of the last picture.
    pub width: u32,
    /// Height of the last picture.
    pub height: u32,
}

/// Video we send.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SendStats {
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// Of those, keyframes.
    pub keyframes_sent: u64,
    /// Bytes of VP8 sent (one copy; each peer gets one).
    pub bytes_sent: u64,
    /// Sent bitrate, kbit/s (over the last second).
    pub kbps: f64,
    /// Mean time to encode a frame over the last second, milliseconds.
    pub encode_ms: f64,
}

/// Something that happened to the video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoEvent {
    /// A source started sending.
    SourceStarted {
        /// Its description.
        name: String,
    },
    /// The source failed or ended; nothing is sent until another is set.
    SourceEnded {
        /// Why.
        reason: String,
    },
}

/// What the threads share.
struct Shared {
    frames: Mutex<HashMap<PeerId, PeerSlot>>,
    send: Mutex<SendStats>,
    keyframe_wanted: AtomicBool,
    stop: AtomicBool,
    events: crossbeam_channel::Sender<VideoEvent>,
}

#[derive(Default)]
struct PeerSlot {
    latest: Option<VideoFrame>,
    stats: VideoStats,
}

/// Video in a session: started with [`Video::start`], stopped with [`Video::stop`] or drop.
pub struct Video {
    shared: Arc<Shared>,
    sources: crossbeam_channel::Sender<VideoInput>,
    events: crossbeam_channel::Receiver<VideoEvent>,
    threads: Vec<JoinHandle<()>>,
}

impl Video {
    /// Starts video in `session`: peers' video is received at once; `config.input` is sent.
    pub fn start(session: &Session, config: VideoConfig) -> Result<Self, VideoError> {
        frame::check_size(config.width, config.height)?;
        let link = session.video_link();
        let (event_tx, event_rx) = crossbeam_channel::bounded(64);
        let shared = Arc::new(Shared {
            frames: Mutex::new(HashMap::new()),
            send: Mutex::new(SendStats::default()),
            keyframe_wanted: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            events: event_tx,
        });
        let (source_tx, source_rx) = crossbeam_channel::bounded(4);
        let settings = Vp8Settings {
            width: config.width,
            height: config.height,
            fps: config.fps.clamp(1, 120),
            bitrate_kbps: config.bitrate_kbps,
        };
        let _ = source_tx.try_send(config.input);
        let tx = Sender {
            link: link.clone_sender(),
            shared: Arc::clone(&shared),
            sources: source_rx,
            settings,
        };
        let rx = Receiver {
            link,
            shared: Arc::clone(&shared),
            peers: HashMap::new(),
        };
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| VideoError::Start(format!("{name}: {e}")))
        };
        let sending = spawn("sl-video-tx", Box::new(move || tx.run()))?;
        let receiving = match spawn("sl-video-rx", Box::new(move || rx.run())) {
            Ok(t) => t,
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                join_within(sending, STOP_WAIT);
                return Err(e);
            }
        };
        let threads = vec![sending, receiving];
        Ok(Self {
            shared,
            sources: source_tx,
            events: event_rx,
            threads,
        })
    }

    /// Sends from another source from now on (the first frame is a keyframe).
    pub fn set_input(&self, input: VideoInput) -> Result<(), VideoError> {
        self.sources
            .send_timeout(input, Duration::from_secs(1))
            .map_err(|_| VideoError::Start("the video thread has stopped".into()))
    }

    /// Stops sending (receiving goes on).
    pub fn stop_input(&self) -> Result<(), VideoError> {
        self.set_input(VideoInput::None)
    }

    /// The newest picture from `peer` not taken yet (older ones were replaced). The RGBA
    /// buffer is moved out, not copied.
    pub fn take_frame(&self, peer: PeerId) -> Option<VideoFrame> {
        self.shared
            .frames
            .lock()
            .ok()?
            .get_mut(&peer)
            .and_then(|slot| slot.latest.take())
    }

    /// Statistics of `peer`'s video, once anything came from it.
    pub fn stats(&self, peer: PeerId) -> Option<VideoStats> {
        self.shared
            .frames
            .lock()
            .ok()?
            .get(&peer)
            .map(|slot| slot.stats)
    }

    /// Statistics of what we send.
    pub fn send_stats(&self) -> SendStats {
        self.shared.send.lock().map(|s| *s).unwrap_or_default()
    }

    /// Events since the last call.
    pub fn poll_events(&self) -> Vec<VideoEvent> {
        self.events.try_iter().collect()
    }

    /// Stops both threads (waits for them, at most a few hundred milliseconds).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            join_within(t, STOP_WAIT);
        }
    }
}

impl Drop for Video {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens what `input` names (at the configured size and rate).
fn open_input(
    input: VideoInput,
    settings: &Vp8Settings,
) -> Result<Option<Box<dyn VideoSource>>, VideoError> {
    match input {
        VideoInput::None => Ok(None),
        VideoInput::TestPattern => Ok(Some(Box::new(TestPattern::new(
            settings.width,
            settings.height,
            settings.fps,
        )?))),
        #[cfg(feature = "webcam")]
        VideoInput::Camera(choice) => Ok(Some(Box::new(Camera::open(
            &choice,
            settings.width,
            settings.height,
            settings.fps,
        )?))),
        VideoInput::Source(s) => Ok(Some(s)),
    }
}

/// The capturing and encoding thread.
struct Sender {
    link: MediaLink,
    shared: Arc<Shared>,
    sources: crossbeam_channel::Receiver<VideoInput>,
    settings: Vp8Settings,
}

impl Sender {
    fn emit(&self, event: VideoEvent) {
        let _ = self.shared.events.try_send(event);
    }

    fn run(self) {
        let mut source: Option<Box<dyn VideoSource>> = None;
        let mut encoder: Option<Vp8Encoder> = None;
        let mut picture_id: u16 = (crate::transport::net::random_u32() & 0x7fff) as u16;
        let mut seq = (crate::transport::net::random_u32() & 0xffff) as u16;
        let ts_base = crate::transport::net::random_u32();
        let mut stream_start: Option<Instant> = None;
        let mut window = (Instant::now(), 0u64, Duration::ZERO, 0u32);
        while !self.shared.stop.load(Ordering::Relaxed) {
            if let Ok(input) = self.sources.try_recv() {
                match open_input(input, &self.settings) {
                    Ok(s) => {
                        if let Some(s) = &s {
                            self.emit(VideoEvent::SourceStarted { name: s.describe() });
                        }
                        source = s;
                        self.shared.keyframe_wanted.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(%e, "video source not opened");
                        self.emit(VideoEvent::SourceEnded {
                            reason: e.to_string(),
                        });
                        source = None;
                    }
                }
            }
            let Some(src) = source.as_mut() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let picture = match src.next_frame(Duration::from_millis(50)) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%e, "video source ended");
                    self.emit(VideoEvent::SourceEnded {
                        reason: e.to_string(),
                    });
                    source = None;
                    continue;
                }
            };
            let captured = Instant::now();
            let start = *stream_start.get_or_insert(captured);
            // A source may deliver another size than asked (a camera's closest format):
            // the encoder follows the pictures.
            let size = (picture.width(), picture.height());
            if encoder
                .as_ref()
                .is_none_or(|e| (e.settings().width, e.settings().height) != size)
            {
                let settings = Vp8Settings {
                    width: size.0,
                    height: size.1,
                    ..self.settings
                };
                match Vp8Encoder::new(settings) {
                    Ok(e) => encoder = Some(e),
                    Err(e) => {
                        tracing::warn!(%e, "VP8 encoder not started");
                        self.emit(VideoEvent::SourceEnded {
                            reason: e.to_string(),
                        });
                        source = None;
                        continue;
                    }
                }
                self.shared.keyframe_wanted.store(true, Ordering::Relaxed);
            }
            let Some(enc) = encoder.as_mut() else {
                continue;
            };
            let keyframe = self.shared.keyframe_wanted.swap(false, Ordering::Relaxed);
            let t = Instant::now();
            let encoded = match enc.encode(&picture, keyframe) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(%e, "frame not encoded");
                    continue;
                }
            };
            let took = t.elapsed();
            let ticks = captured.duration_since(start).as_secs_f64() * f64::from(VIDEO_CLOCK_RATE);
            let timestamp = ts_base.wrapping_add(ticks as u64 as u32);
            let packets: Vec<MediaFrame> = rtp::packetize(&encoded.data, picture_id)
                .into_iter()
                .map(|p| {
                    let frame = MediaFrame {
                        seq,
                        timestamp,
                        marker: p.marker,
                        payload: p.payload,
                    };
                    seq = seq.wrapping_add(1);
                    frame
                })
                .collect();
            picture_id = (picture_id + 1) & 0x7fff;
            if !self.link.send_video(packets, None) {
                break; // the session is closed
            }
            window.1 += encoded.data.len() as u64;
            window.2 += took;
            window.3 += 1;
            if let Ok(mut stats) = self.shared.send.lock() {
                stats.frames_sent += 1;
                stats.keyframes_sent += u64::from(encoded.keyframe);
                stats.bytes_sent += encoded.data.len() as u64;
                let elapsed = window.0.elapsed();
                if elapsed >= Duration::from_secs(1) {
                    stats.kbps = window.1 as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64();
                    stats.encode_ms = window.2.as_secs_f64() * 1000.0 / f64::from(window.3.max(1));
                    window = (Instant::now(), 0, Duration::ZERO, 0);
                }
            }
        }
    }
}

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
struct Receiver {
    link: MediaLink,
    shared: Arc<Shared>,
    peers: HashMap<PeerId, PeerRx>,
}

impl Receiver {
    fn run(mut self) {
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
            MediaIn::Rtp {
                peer,
                seq,
                timestamp,
                marker,
                payload,
                ..
            } => self.on_rtp(peer, seq, timestamp, marker, payload),
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

    fn on_rtp(
        &mut self,
        peer: PeerId,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: bytes::Bytes,
    ) {
        let now = Instant::now();
        let bytes = payload.len() as u64;
        let rx = self.peers.entry(peer).or_insert_with(|| PeerRx {
            assembler: rtp::Assembler::default(),
            decoder: None,
            first_ts: None,
            last_request: None,
            window: (now, 0, 0),
            published_dropped: None,
        });
        rx.window.1 += bytes;
        let outcome = rx.assembler.push(seq, timestamp, marker, payload);
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
