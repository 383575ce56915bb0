//! The native video: the pipeline threads around the session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use squadlink_protocol::PeerId;

use super::config::VideoConfig;
use super::error::VideoError;
use super::events::{SendStats, VideoEvent, VideoFrame, VideoStats};
use super::frame;
use super::input::VideoInput;
use super::rx::Receiver;
use super::shared::Shared;
use super::tx::Sender;
use super::vpx::Vp8Settings;

use crate::Session;
use crate::join::{STOP_WAIT, join_within};

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
        let tx = Sender::new(
            link.clone_sender(),
            Arc::clone(&shared),
            source_rx,
            settings,
        );
        let rx = Receiver::new(link, Arc::clone(&shared));
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
