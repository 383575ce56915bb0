//! Video in the browser: the page's camera and VP8 codec on the video track of each of the
//! browser engine's connections; each peer's track is played by a (detached, muted) video
//! element, and [`Video::take_frame`] copies its newest picture through a canvas into RGBA,
//! as the native decoder gives it.
//!
//! What is the browser's, not ours: the codec (VP8, negotiated with native peers; the
//! browser picks the bitrate by its congestion control), keyframes on loss (the browser
//! answers PLI itself). Statistics come from `getStats()` once a second.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use js_sys::{Array, Object, Reflect};
use squadlink_protocol::PeerId;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement, MediaStream,
    MediaStreamConstraints, MediaStreamTrack,
};
use web_time::Instant;

use super::config::VideoConfig;
use super::error::VideoError;
use super::events::{SendStats, VideoEvent, VideoFrame, VideoStats};
use super::input::VideoInput;
use super::source::TestPattern;
use crate::Session;
use crate::media::Kind;
use crate::transport::web::media::{self as hub, RtpEntry, stop_tracks, user_media};
use crate::transport::web::{describe, sleep};

thread_local! {
    /// The page's running videos by id (their parts are the page's, not `Send`).
    static VIDEOS: RefCell<HashMap<u64, Rc<RefCell<Viewer>>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Video for one session in the page. Stops when dropped.
///
/// It holds only a key (the page's video objects stay on the page's thread), so it is
/// `Send` and `Sync` like the native one and can be a Bevy resource.
#[derive(Debug)]
pub struct Video {
    id: u64,
}

/// A peer's track being played, and the newest picture taken from it.
struct Shown {
    serial: u64,
    element: HtmlVideoElement,
    /// The element's presented-frame count at the last picture taken.
    taken: u32,
}

/// Everything one [`Video`] owns in the page.
struct Viewer {
    session: u64,
    config: VideoConfig,
    /// What we send: the camera's stream or the test pattern's canvas capture.
    sending: Option<MediaStream>,
    /// Tells an input asked for apart from a later one (the later wins).
    asked: u64,
    shown: HashMap<PeerId, Shown>,
    canvas: Option<(HtmlCanvasElement, CanvasRenderingContext2d)>,
    events: VecDeque<VideoEvent>,
    stopped: bool,
}

impl Video {
    /// Starts video next to `session` (which must be running in this page), sending
    /// `config.input`.
    pub fn start(session: &Session, config: VideoConfig) -> Result<Self, VideoError> {
        let key = session.media_key();
        if hub::hub(key).is_none() {
            return Err(VideoError::Start(
                "the session has ended, or runs on another thread than the page's".into(),
            ));
        }
        let input = config.input.clone();
        let viewer = Rc::new(RefCell::new(Viewer {
            session: key,
            config,
            sending: None,
            asked: 0,
            shown: HashMap::new(),
            canvas: None,
            events: VecDeque::new(),
            stopped: false,
        }));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        VIDEOS.with(|videos| videos.borrow_mut().insert(id, Rc::clone(&viewer)));
        let video = Video { id };
        video.set_input(input)?;
        Ok(video)
    }

    /// Runs `f` on this video's parts.
    fn with<T>(&self, f: impl FnOnce(&mut Viewer, &Rc<RefCell<Viewer>>) -> T) -> Option<T> {
        let viewer = VIDEOS.with(|videos| videos.borrow().get(&self.id).cloned())?;
        let mut v = viewer.try_borrow_mut().ok()?;
        Some(f(&mut v, &viewer))
    }

    /// Sends another input: the camera is asked for (reported as
    /// [`VideoEvent::SourceStarted`], or [`VideoEvent::SourceEnded`] when refused).
    pub fn set_input(&self, input: VideoInput) -> Result<(), VideoError> {
        self.with(|v, rc| {
            v.asked += 1;
            v.release_input();
            match input {
                VideoInput::None => Ok(()),
                VideoInput::Camera => {
                    wasm_bindgen_futures::spawn_local(open_camera(Rc::downgrade(rc), v.asked));
                    Ok(())
                }
                VideoInput::TestPattern => v.start_pattern(rc),
            }
        })
        .unwrap_or_else(|| Err(VideoError::Start("the video has stopped".into())))
    }

    /// Stops sending (the peers keep their last picture).
    pub fn stop_input(&self) -> Result<(), VideoError> {
        self.set_input(VideoInput::None)
    }

    /// The newest picture from `peer` not taken yet.
    pub fn take_frame(&self, peer: PeerId) -> Option<VideoFrame> {
        self.with(|v, _| v.take_frame(peer)).flatten()
    }

    /// What we receive from `peer`, from the browser's statistics (read once a second).
    pub fn stats(&self, peer: PeerId) -> Option<VideoStats> {
        self.with(|v, _| v.stats(peer)).flatten()
    }

    /// What we send, summed over the connections (the browser codes each connection's
    /// track separately; frame counts are the most of any one).
    pub fn send_stats(&self) -> SendStats {
        self.with(|v, _| v.send_stats()).unwrap_or_default()
    }

    /// Events since the last call.
    pub fn poll_events(&self) -> Vec<VideoEvent> {
        self.with(|v, _| v.events.drain(..).collect())
            .unwrap_or_default()
    }

    /// Stops sending and receiving.
    pub fn stop(self) {}
}

impl Drop for Video {
    fn drop(&mut self) {
        let viewer = VIDEOS.with(|videos| videos.borrow_mut().remove(&self.id));
        if let Some(viewer) = viewer
            && let Ok(mut viewer) = viewer.try_borrow_mut()
        {
            viewer.stopped = true;
            viewer.release_input();
            for (_, shown) in viewer.shown.drain() {
                release(&shown.element);
            }
        }
    }
}

/// Asks the page for the camera (request `asked`) and, once given, sends it.
async fn open_camera(viewer: Weak<RefCell<Viewer>>, asked: u64) {
    let constraints = {
        let Some(v) = viewer.upgrade() else { return };
        let Ok(v) = v.try_borrow() else { return };
        let video = Object::new();
        let ideal = |value: u32| {
            let o = Object::new();
            let _ = Reflect::set(&o, &JsValue::from_str("ideal"), &JsValue::from(value));
            o
        };
        let _ = Reflect::set(&video, &"width".into(), &ideal(v.config.width));
        let _ = Reflect::set(&video, &"height".into(), &ideal(v.config.height));
        let _ = Reflect::set(&video, &"frameRate".into(), &ideal(v.config.fps));
        let constraints = MediaStreamConstraints::new();
        constraints.set_video(&video);
        constraints
    };
    let result = user_media(&constraints).await;
    let current = viewer
        .upgrade()
        .filter(|v| v.try_borrow().is_ok_and(|v| !v.stopped && v.asked == asked));
    let Some(viewer) = current else {
        if let Ok(stream) = result {
            stop_tracks(&stream);
        }
        return;
    };
    let Ok(mut v) = viewer.try_borrow_mut() else {
        return;
    };
    let track = result.and_then(|stream| {
        let track = stream
            .get_video_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
            .map_err(|_| "the page gave a stream without a video track".to_string())?;
        Ok((stream, track))
    });
    match track {
        Ok((stream, track)) => {
            let name = track.label();
            v.send(stream, track, name);
        }
        Err(reason) => v.events.push_back(VideoEvent::SourceEnded {
            reason: format!(
                "no camera: {reason} (the player must allow the camera; pages need https or localhost)"
            ),
        }),
    }
}

impl Viewer {
    /// Sends `track` (of `stream`, named `name`) on every connection.
    fn send(&mut self, stream: MediaStream, track: MediaStreamTrack, name: String) {
        self.sending = Some(stream);
        if let Some(hub) = hub::hub(self.session)
            && let Ok(mut hub) = hub.try_borrow_mut()
        {
            hub.set_local(Kind::Video, Some(track));
            hub.set_bitrate(Kind::Video, self.config.bitrate_kbps.saturating_mul(1000));
        }
        self.events.push_back(VideoEvent::SourceStarted { name });
    }

    /// Sends the test pattern: drawn on a canvas at the frame rate, which the browser
    /// captures as a track.
    fn start_pattern(&mut self, rc: &Rc<RefCell<Viewer>>) -> Result<(), VideoError> {
        let (width, height, fps) = (self.config.width, self.config.height, self.config.fps);
        let pattern = TestPattern::new(width, height, fps)?;
        let fail =
            |e: JsValue| VideoError::Source(format!("the test pattern's canvas: {}", describe(&e)));
        let (canvas, ctx) = canvas().map_err(fail)?;
        canvas.set_width(width);
        canvas.set_height(height);
        let stream = canvas
            .capture_stream_with_frame_request_rate(f64::from(fps))
            .map_err(fail)?;
        let track = stream
            .get_video_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
            .map_err(|_| VideoError::Source("the canvas gave no video track".into()))?;
        let name = format!("test pattern {width}×{height} at {fps} fps");
        self.send(stream, track, name);
        wasm_bindgen_futures::spawn_local(draw_pattern(
            Rc::downgrade(rc),
            self.asked,
            pattern,
            (ctx, fps),
        ));
        Ok(())
    }

    /// Stops what we send (the camera, the pattern) and sends nothing.
    fn release_input(&mut self) {
        if let Some(stream) = self.sending.take() {
            stop_tracks(&stream);
            if let Some(hub) = hub::hub(self.session)
                && let Ok(mut hub) = hub.try_borrow_mut()
            {
                hub.set_local(Kind::Video, None);
            }
            self.events.push_back(VideoEvent::SourceEnded {
                reason: "stopped".into(),
            });
        }
    }

    /// Plays `peer`'s current video track (a new element when the track is new).
    fn follow(&mut self, peer: PeerId) -> Option<&mut Shown> {
        let hub = hub::hub(self.session)?;
        let arrived = hub
            .try_borrow()
            .ok()?
            .remote(Kind::Video)
            .into_iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, a)| a);
        let Some(arrived) = arrived else {
            if let Some(shown) = self.shown.remove(&peer) {
                release(&shown.element);
            }
            return None;
        };
        if self
            .shown
            .get(&peer)
            .is_some_and(|s| s.serial != arrived.serial)
            && let Some(old) = self.shown.remove(&peer)
        {
            release(&old.element);
        }
        match self.shown.entry(peer) {
            std::collections::hash_map::Entry::Occupied(shown) => Some(shown.into_mut()),
            std::collections::hash_map::Entry::Vacant(place) => {
                let element = play(&arrived.track)
                    .map_err(|e| tracing::warn!(%peer, e = %describe(&e), "could not play a peer's video"))
                    .ok()?;
                Some(place.insert(Shown {
                    serial: arrived.serial,
                    element,
                    taken: 0,
                }))
            }
        }
    }

    fn take_frame(&mut self, peer: PeerId) -> Option<VideoFrame> {
        if self.canvas.is_none() {
            self.canvas = canvas().ok();
        }
        let (canvas, ctx) = self.canvas.clone()?;
        let shown = self.follow(peer)?;
        let element = &shown.element;
        // HAVE_CURRENT_DATA: a picture to draw.
        if element.ready_state() < 2 {
            return None;
        }
        let presented = element.get_video_playback_quality().total_video_frames();
        if presented == shown.taken {
            return None;
        }
        let (width, height) = (element.video_width(), element.video_height());
        if width == 0 || height == 0 {
            return None;
        }
        if canvas.width() != width || canvas.height() != height {
            canvas.set_width(width);
            canvas.set_height(height);
        }
        ctx.draw_image_with_html_video_element(element, 0.0, 0.0)
            .ok()?;
        let image = ctx
            .get_image_data(0.0, 0.0, f64::from(width), f64::from(height))
            .ok()?;
        shown.taken = presented;
        Some(VideoFrame {
            width,
            height,
            rgba: image.data().0,
            frame_id: u64::from(presented),
            captured: Duration::try_from_secs_f64(element.current_time()).unwrap_or_default(),
            decoded_at: Instant::now(),
        })
    }

    fn stats(&self, peer: PeerId) -> Option<VideoStats> {
        let hub = hub::hub(self.session)?;
        let hub = hub.try_borrow().ok()?;
        let (now, before) = hub.report(peer)?.entry(RtpEntry::In(Kind::Video))?;
        Some(VideoStats {
            fps: now.get("framesPerSecond"),
            kbps: now.rate(before, "bytesReceived") * 8.0 / 1000.0,
            frames_decoded: now.count("framesDecoded"),
            frames_dropped: now.count("framesDropped"),
            // Browsers do not report decode errors; they ask for a keyframe instead.
            decode_errors: 0,
            keyframes_requested: now.count("pliCount") + now.count("firCount"),
            width: now.count("frameWidth") as u32,
            height: now.count("frameHeight") as u32,
        })
    }

    fn send_stats(&self) -> SendStats {
        let mut sum = SendStats::default();
        let Some(hub) = hub::hub(self.session) else {
            return sum;
        };
        let Ok(hub) = hub.try_borrow() else {
            return sum;
        };
        let (mut encode_s, mut encoded) = (0.0, 0.0);
        for report in hub.reports() {
            let Some((out, before)) = report.entry(RtpEntry::Out(Kind::Video)) else {
                continue;
            };
            sum.frames_sent = sum.frames_sent.max(out.count("framesSent"));
            sum.keyframes_sent = sum.keyframes_sent.max(out.count("keyFramesEncoded"));
            sum.packets_sent += out.count("packetsSent");
            sum.bytes_sent += out.count("bytesSent");
            sum.kbps += out.rate(before, "bytesSent") * 8.0 / 1000.0;
            encode_s += out.get("totalEncodeTime");
            encoded += out.get("framesEncoded");
        }
        if encoded > 0.0 {
            sum.encode_ms = encode_s * 1000.0 / encoded;
        }
        sum
    }
}

/// Draws the test pattern's frames on the canvas of `ctx` at `fps` while input `asked` is
/// the one sent (frames a throttled page could not draw in time are skipped).
async fn draw_pattern(
    viewer: Weak<RefCell<Viewer>>,
    asked: u64,
    pattern: TestPattern,
    (ctx, fps): (CanvasRenderingContext2d, u32),
) {
    let start = Instant::now();
    let fps = f64::from(fps.max(1));
    loop {
        let sending = viewer
            .upgrade()
            .is_some_and(|v| v.try_borrow().is_ok_and(|v| !v.stopped && v.asked == asked));
        if !sending {
            return;
        }
        let n = (start.elapsed().as_secs_f64() * fps) as u64;
        let frame = pattern.draw(n);
        let rgba = frame.to_rgba();
        match web_sys::ImageData::new_with_u8_clamped_array_and_sh(
            wasm_bindgen::Clamped(&rgba),
            frame.width(),
            frame.height(),
        ) {
            Ok(image) => {
                let _ = ctx.put_image_data(&image, 0.0, 0.0);
            }
            Err(e) => {
                tracing::warn!(e = %describe(&e), "the test pattern stopped");
                return;
            }
        }
        let next = Duration::from_secs_f64((n + 1) as f64 / fps);
        sleep(next.saturating_sub(start.elapsed())).await;
    }
}

/// A detached, muted video element playing `track`.
fn play(track: &MediaStreamTrack) -> Result<HtmlVideoElement, JsValue> {
    let stream = MediaStream::new_with_tracks(&Array::of1(track))?;
    let element = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?
        .create_element("video")?
        .dyn_into::<HtmlVideoElement>()?;
    element.set_muted(true);
    element.set_autoplay(true);
    element.set_attribute("playsinline", "")?;
    element.set_src_object(Some(&stream));
    let promise = element.play()?;
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    });
    Ok(element)
}

fn release(element: &HtmlVideoElement) {
    let _ = element.pause();
    element.set_src_object(None);
}

/// A detached canvas to copy pictures through.
fn canvas() -> Result<(HtmlCanvasElement, CanvasRenderingContext2d), JsValue> {
    let canvas = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?
        .create_element("canvas")?
        .dyn_into::<HtmlCanvasElement>()?;
    let options = Object::new();
    // Read back every frame: tell the browser to keep it in memory.
    let _ = Reflect::set(&options, &"willReadFrequently".into(), &JsValue::TRUE);
    let ctx = canvas
        .get_context_with_context_options("2d", &options)?
        .ok_or_else(|| JsValue::from_str("no 2D canvas"))?
        .dyn_into::<CanvasRenderingContext2d>()?;
    Ok((canvas, ctx))
}
