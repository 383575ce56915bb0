//! The sending side: the thread that reads the source, encodes VP8 and hands the RTP
//! payloads on (a keyframe when asked, or when a peer connects).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::events::VideoEvent;
use super::input::{VideoInput, open_input};
use super::rtp;
use super::shared::Shared;
use super::source::VideoSource;
use super::vpx::{Vp8Encoder, Vp8Settings};
use crate::bridge::MediaLink;
use crate::media::{MediaFrame, VIDEO_CLOCK_RATE};

/// The capturing and encoding thread.
pub(super) struct Sender {
    link: MediaLink,
    shared: Arc<Shared>,
    sources: crossbeam_channel::Receiver<VideoInput>,
    settings: Vp8Settings,
}

impl Sender {
    pub(super) fn new(
        link: MediaLink,
        shared: Arc<Shared>,
        sources: crossbeam_channel::Receiver<VideoInput>,
        settings: Vp8Settings,
    ) -> Self {
        Self {
            link,
            shared,
            sources,
            settings,
        }
    }

    fn emit(&self, event: VideoEvent) {
        let _ = self.shared.events.try_send(event);
    }

    pub(super) fn run(self) {
        let mut source: Option<Box<dyn VideoSource>> = None;
        let mut encoder: Option<Vp8Encoder> = None;
        let mut picture_id: u16 = (crate::media::random_u32() & 0x7fff) as u16;
        let mut seq = (crate::media::random_u32() & 0xffff) as u16;
        let ts_base = crate::media::random_u32();
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
            let packet_count = packets.len() as u64;
            if !self.link.send_video(packets, None) {
                break; // the session is closed
            }
            window.1 += encoded.data.len() as u64;
            window.2 += took;
            window.3 += 1;
            if let Ok(mut stats) = self.shared.send.lock() {
                stats.frames_sent += 1;
                stats.packets_sent += packet_count;
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
