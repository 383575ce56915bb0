//! Webcams through nokhwa (cargo feature `webcam`, V4L2 on Linux): list them, open one by
//! index or name in the format closest to what was asked, and deliver I420 pictures.
//!
//! nokhwa's own "closest format" request only looks at formats of one pixel layout and
//! fails when the exact size asked for is missing, so the choice is made here
//! ([`closest_format`]) among every format the camera lists. YUYV and NV12 are converted
//! to I420 directly; MJPEG is decoded by nokhwa (mozjpeg) to RGB first.
//!
//! The camera lives on a thread of its own (`sl-camera`): nokhwa's `frame()` blocks with no
//! timeout, so [`Camera::next_frame`] waits on a channel instead, with one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::error::VideoError;
use super::frame::I420Frame;
use super::source::VideoSource;
use crate::join::{STOP_WAIT, join_within};

/// Which camera to open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CameraChoice {
    /// The first one listed.
    #[default]
    First,
    /// By its index (as listed by [`cameras`]).
    Index(u32),
    /// The first whose name contains this text (case-insensitive).
    Name(String),
}

/// A camera the system lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Its index (what [`CameraChoice::Index`] takes).
    pub index: u32,
    /// Its name.
    pub name: String,
    /// The backend's description of it (the device path on Linux).
    pub description: String,
}

/// The cameras on this machine (none is an empty list, not an error).
pub fn cameras() -> Result<Vec<CameraInfo>, VideoError> {
    let found = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| VideoError::NoCamera(format!("listing cameras failed: {e}")))?;
    Ok(found
        .iter()
        .enumerate()
        .map(|(i, c)| CameraInfo {
            index: match c.index() {
                CameraIndex::Index(n) => *n,
                CameraIndex::String(_) => u32::try_from(i).unwrap_or(u32::MAX),
            },
            name: c.human_name(),
            description: c.description().to_owned(),
        })
        .collect())
}

/// The pixel layouts we take, best first (at equal distance): no decoding, then MJPEG.
fn layout_rank(format: FrameFormat) -> Option<u32> {
    match format {
        FrameFormat::YUYV | FrameFormat::NV12 => Some(0),
        FrameFormat::MJPEG => Some(1),
        FrameFormat::RAWRGB => Some(2),
        FrameFormat::GRAY | FrameFormat::RAWBGR => None,
    }
}

/// Of a camera's formats, the one closest to `width` × `height` at `fps`: the size first
/// (by pixel distance, preferring at least as large to smaller), then the frame rate (at
/// least `fps` if there is such a one), then the layout (YUYV/NV12 before MJPEG). Sizes
/// must be even. `None` when nothing usable is listed.
pub fn closest_format(
    formats: &[CameraFormat],
    width: u32,
    height: u32,
    fps: u32,
) -> Option<CameraFormat> {
    formats
        .iter()
        .filter(|f| {
            layout_rank(f.format()).is_some()
                && f.width() > 0
                && f.height() > 0
                && f.width() % 2 == 0
                && f.height() % 2 == 0
                && f.frame_rate() > 0
        })
        .min_by_key(|f| {
            let dx = i64::from(f.width()) - i64::from(width);
            let dy = i64::from(f.height()) - i64::from(height);
            let smaller = dx < 0 || dy < 0;
            let slower = f.frame_rate() < fps;
            let fps_gap = (i64::from(f.frame_rate()) - i64::from(fps)).abs();
            (
                dx * dx + dy * dy,
                smaller,
                slower,
                fps_gap,
                layout_rank(f.format()).unwrap_or(u32::MAX),
            )
        })
        .copied()
}

/// Converts one camera buffer to I420 (nokhwa decodes MJPEG).
pub fn to_i420(
    width: u32,
    height: u32,
    format: FrameFormat,
    data: &[u8],
) -> Result<I420Frame, VideoError> {
    match format {
        FrameFormat::YUYV => I420Frame::from_yuyv(width, height, data),
        FrameFormat::NV12 => I420Frame::from_nv12(width, height, data),
        FrameFormat::RAWRGB => I420Frame::from_rgb(width, height, data),
        FrameFormat::MJPEG => {
            let buffer = nokhwa::Buffer::new(Resolution::new(width, height), data, format);
            // mozjpeg reports a corrupt JPEG by panicking; a camera does send those now and
            // then, so the panic is caught here and becomes an error for that one frame.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                buffer.decode_image::<RgbFormat>()
            }))
            .map_err(|_| VideoError::Source("a corrupt MJPEG frame from the camera".into()))?;
            let rgb =
                decoded.map_err(|e| VideoError::Source(format!("a camera's MJPEG frame: {e}")))?;
            I420Frame::from_rgb(rgb.width(), rgb.height(), rgb.as_raw())
        }
        FrameFormat::GRAY | FrameFormat::RAWBGR => Err(VideoError::Format(format!(
            "the camera's {format} frames are not taken"
        ))),
    }
}

/// An open camera, capturing on its own thread.
pub struct Camera {
    name: String,
    format: CameraFormat,
    frames: crossbeam_channel::Receiver<Result<I420Frame, VideoError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("name", &self.name)
            .field("format", &self.format.to_string())
            .finish_non_exhaustive()
    }
}

/// How long opening a camera may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

impl Camera {
    /// Opens the chosen camera in the format closest to `width` × `height` at `fps`.
    pub fn open(
        choice: &CameraChoice,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, VideoError> {
        let list = cameras()?;
        let info = match choice {
            CameraChoice::First => list.first(),
            CameraChoice::Index(i) => list.iter().find(|c| c.index == *i),
            CameraChoice::Name(name) => {
                let name = name.to_lowercase();
                list.iter().find(|c| c.name.to_lowercase().contains(&name))
            }
        }
        .cloned()
        .ok_or_else(|| {
            let names: Vec<String> = list
                .iter()
                .map(|c| format!("{}: {}", c.index, c.name))
                .collect();
            VideoError::NoCamera(if names.is_empty() {
                "this machine lists no camera".to_owned()
            } else {
                format!("{choice:?} matches none of {}", names.join(", "))
            })
        })?;
        let (opened_tx, opened_rx) = crossbeam_channel::bounded(1);
        let (frames_tx, frames_rx) = crossbeam_channel::bounded(2);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let index = info.index;
        let thread = std::thread::Builder::new()
            .name("sl-camera".into())
            .spawn(move || {
                capture(
                    index,
                    width,
                    height,
                    fps,
                    &opened_tx,
                    &frames_tx,
                    &thread_stop,
                )
            })
            .map_err(|e| VideoError::Start(format!("camera thread: {e}")))?;
        match opened_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(format)) => Ok(Self {
                name: info.name,
                format,
                frames: frames_rx,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                // It failed to open the camera and is returning.
                join_within(thread, STOP_WAIT);
                Err(e)
            }
            Err(_) => {
                // The thread is stuck in the driver; it is told to stop and left behind.
                stop.store(true, Ordering::Relaxed);
                Err(VideoError::NoCamera(format!(
                    "{} did not open within {} s",
                    info.name,
                    OPEN_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// The format in use (size, rate, pixel layout).
    pub fn format(&self) -> (u32, u32, u32, String) {
        (
            self.format.width(),
            self.format.height(),
            self.format.frame_rate(),
            self.format.format().to_string(),
        )
    }
}

/// The camera thread: opens the device, reports the format, then delivers frames until
/// told to stop or the device fails.
fn capture(
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
    opened: &crossbeam_channel::Sender<Result<CameraFormat, VideoError>>,
    frames: &crossbeam_channel::Sender<Result<I420Frame, VideoError>>,
    stop: &AtomicBool,
) {
    let request = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
    let mut camera = match nokhwa::Camera::new(CameraIndex::Index(index), request) {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(VideoError::NoCamera(format!("camera {index}: {e}"))));
            return;
        }
    };
    let setup = camera
        .compatible_camera_formats()
        .map_err(|e| VideoError::NoCamera(format!("camera {index} lists no formats: {e}")))
        .and_then(|formats| {
            closest_format(&formats, width, height, fps).ok_or_else(|| {
                VideoError::NoCamera(format!(
                    "camera {index} offers no YUYV, NV12, MJPEG or RGB format with an even size"
                ))
            })
        })
        .and_then(|chosen| {
            camera
                .set_camera_requset(RequestedFormat::new::<RgbFormat>(
                    RequestedFormatType::Exact(chosen),
                ))
                .map_err(|e| VideoError::NoCamera(format!("camera {index} refused {chosen}: {e}")))
        })
        .and_then(|format| {
            camera
                .open_stream()
                .map(|()| format)
                .map_err(|e| VideoError::NoCamera(format!("camera {index} did not stream: {e}")))
        });
    let format = match setup {
        Ok(f) => f,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let _ = opened.send(Ok(format));
    let mut bad_frames = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let buffer = match camera.frame() {
            Ok(b) => b,
            Err(e) => {
                // The device failed (unplugged, …): the source ends.
                let _ = frames.try_send(Err(VideoError::Source(format!("camera {index}: {e}"))));
                break;
            }
        };
        let res = buffer.resolution();
        match to_i420(
            res.width(),
            res.height(),
            buffer.source_frame_format(),
            buffer.buffer(),
        ) {
            Ok(picture) => {
                bad_frames = 0;
                // A full channel means the encoder is behind: this frame is dropped.
                let _ = frames.try_send(Ok(picture));
            }
            Err(e) => {
                // One corrupt frame is skipped; a camera that sends nothing else has failed.
                bad_frames += 1;
                tracing::debug!(%e, "camera frame skipped");
                if bad_frames >= 30 {
                    let _ = frames.try_send(Err(e));
                    break;
                }
            }
        }
    }
    let _ = camera.stop_stream();
}

impl VideoSource for Camera {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<I420Frame>, VideoError> {
        match self.frames.recv_timeout(timeout) {
            Ok(Ok(frame)) => Ok(Some(frame)),
            Ok(Err(e)) => Err(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(VideoError::Source(format!("{} stopped", self.name)))
            }
        }
    }

    fn describe(&self) -> String {
        format!("camera {} ({})", self.name, self.format)
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            join_within(t, STOP_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::psnr_rgba;
    use crate::video::source::TestPattern;

    fn fmt(w: u32, h: u32, fps: u32, f: FrameFormat) -> CameraFormat {
        CameraFormat::new(Resolution::new(w, h), f, fps)
    }

    #[test]
    fn the_closest_format_wins() {
        let list = [
            fmt(640, 480, 30, FrameFormat::MJPEG),
            fmt(640, 480, 30, FrameFormat::YUYV),
            fmt(320, 240, 5, FrameFormat::YUYV),
            fmt(320, 240, 30, FrameFormat::MJPEG),
            fmt(1280, 720, 10, FrameFormat::YUYV),
            fmt(352, 288, 30, FrameFormat::GRAY),
            fmt(321, 241, 30, FrameFormat::YUYV),
        ];
        // The exact size, fast enough, even though only as MJPEG.
        assert_eq!(closest_format(&list, 320, 240, 15), Some(list[3]));
        // 640×480 at 30 exists in two layouts: YUYV needs no decoding.
        assert_eq!(closest_format(&list, 640, 480, 30), Some(list[1]));
        // Nothing near 1920×1080: the largest is nearest.
        assert_eq!(closest_format(&list, 1920, 1080, 30), Some(list[4]));
        // Grey and odd sizes are never chosen.
        assert_eq!(closest_format(&list[5..], 352, 288, 30), None);
        assert_eq!(closest_format(&[], 320, 240, 15), None);
    }

    /// The pattern as a camera would send it in YUYV (4:2:2, each chroma row repeated).
    fn yuyv_of(frame: &I420Frame) -> Vec<u8> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let (y, u, v) = frame.planes();
        let mut out = Vec::with_capacity(w * h * 2);
        for row in 0..h {
            for pair in 0..w / 2 {
                let c = (row / 2) * (w / 2) + pair;
                out.extend_from_slice(&[
                    y[row * w + pair * 2],
                    u[c],
                    y[row * w + pair * 2 + 1],
                    v[c],
                ]);
            }
        }
        out
    }

    fn nv12_of(frame: &I420Frame) -> Vec<u8> {
        let (y, u, v) = frame.planes();
        let mut out = y.to_vec();
        for (a, b) in u.iter().zip(v) {
            out.extend_from_slice(&[*a, *b]);
        }
        out
    }

    /// nokhwa's own decoding of a buffer to RGBA.
    fn nokhwa_rgba(w: u32, h: u32, format: FrameFormat, data: &[u8]) -> Vec<u8> {
        let rgb = nokhwa::Buffer::new(Resolution::new(w, h), data, format)
            .decode_image::<RgbFormat>()
            .unwrap();
        rgb.pixels()
            .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
            .collect()
    }

    #[test]
    fn yuyv_and_nv12_match_nokhwas_decoding() {
        let (w, h) = (320, 240);
        let picture = TestPattern::new(w, h, 15).unwrap().draw(12);
        for (format, data) in [
            (FrameFormat::YUYV, yuyv_of(&picture)),
            (FrameFormat::NV12, nv12_of(&picture)),
        ] {
            let ours = to_i420(w, h, format, &data).unwrap();
            assert_eq!(
                ours.planes().0,
                picture.planes().0,
                "{format}: luma is copied"
            );
            let theirs = nokhwa_rgba(w, h, format, &data);
            let p = psnr_rgba(&ours.to_rgba(), &theirs).unwrap();
            assert!(p >= 35.0, "{format}: ours against nokhwa's RGB: {p:.1} dB");
        }
    }

    #[test]
    fn mjpeg_goes_through_nokhwas_decoder() {
        let (w, h) = (320, 240);
        let picture = TestPattern::new(w, h, 15).unwrap().draw(77);
        let rgb: Vec<u8> = picture
            .to_rgba()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let mut jpeg = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        jpeg.set_size(w as usize, h as usize);
        jpeg.set_quality(92.0);
        let mut started = jpeg.start_compress(Vec::new()).unwrap();
        started.write_scanlines(&rgb).unwrap();
        let data = started.finish().unwrap();
        let ours = to_i420(w, h, FrameFormat::MJPEG, &data).unwrap();
        let p = psnr_rgba(&ours.to_rgba(), &picture.to_rgba()).unwrap();
        assert!(p >= 30.0, "MJPEG through nokhwa: {p:.1} dB");
        assert_eq!(TestPattern::read_counter(w, h, &ours.to_rgba()), Some(77));
        // Broken frames (a USB glitch) are errors: mozjpeg panics on them, and that panic is
        // caught at the call.
        assert!(to_i420(w, h, FrameFormat::MJPEG, b"not a jpeg").is_err());
        // A cut-short frame must not panic either (libjpeg may still show the part it has).
        let _ = to_i420(w, h, FrameFormat::MJPEG, &data[..data.len() / 3]);
        assert!(to_i420(w, h, FrameFormat::YUYV, &data[..10]).is_err());
    }

    #[test]
    fn no_camera_is_a_clear_error() {
        // This machine (and CI) has no camera: opening one says so, and does not panic.
        if cameras().is_ok_and(|c| c.is_empty()) {
            let e = Camera::open(&CameraChoice::First, 320, 240, 15).unwrap_err();
            assert!(e.to_string().contains("no camera"), "{e}");
            let e = Camera::open(&CameraChoice::Name("nope".into()), 320, 240, 15).unwrap_err();
            assert!(matches!(e, VideoError::NoCamera(_)), "{e}");
        }
    }
}
