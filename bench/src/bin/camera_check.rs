//! Camera check: lists the webcams, opens one in the format closest to 320×240 at 15 fps,
//! captures frames through Squadlink's `Camera` source and codes them with VP8 the way a
//! call would, then prints what it saw as one JSON line. Exits non-zero if no frame came.
//!
//! Run (needs the `webcam` feature, which needs libclang to build):
//!   cargo run -p squadlink-bench --features webcam --bin camera_check
//!   cargo run -p squadlink-bench --features webcam --bin camera_check -- --camera "HD Pro" --frames 60
//!
//! `scripts/camera_vm.sh` runs it inside a small VM whose kernel has the `vivid` virtual
//! camera, which is how the capture path is tested on machines without a camera.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use squadlink::video::measure::{Vp8Decoder, Vp8Encoder, Vp8Settings, psnr};
use squadlink::video::{Camera, CameraChoice, VideoSource, cameras};

#[derive(Parser, Debug)]
#[command(about = "Open a webcam, capture and VP8-code some frames, print a JSON summary")]
struct Args {
    /// Which camera: an index, or part of its name (default: the first).
    #[arg(long)]
    camera: Option<String>,
    /// How many frames to capture.
    #[arg(long, default_value_t = 30)]
    frames: usize,
    /// Width to ask for.
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// Height to ask for.
    #[arg(long, default_value_t = 240)]
    height: u32,
    /// Frame rate to ask for.
    #[arg(long, default_value_t = 15)]
    fps: u32,
}

#[derive(Serialize, Debug, Default)]
struct Summary {
    cameras: Vec<String>,
    opened: String,
    frames: usize,
    width: u32,
    height: u32,
    distinct_frames: usize,
    capture_fps: f64,
    vp8_psnr_min_db: f64,
    vp8_kbps: f64,
    error: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let summary = run(&args);
    match serde_json::to_string(&summary) {
        Ok(line) => println!("CAMERA_CHECK {line}"),
        Err(e) => eprintln!("error: {e}"),
    }
    if summary.error.is_some() || summary.frames == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(args: &Args) -> Summary {
    let mut summary = Summary {
        vp8_psnr_min_db: f64::INFINITY,
        ..Summary::default()
    };
    match cameras() {
        Ok(list) => {
            summary.cameras = list
                .iter()
                .map(|c| format!("{}: {} ({})", c.index, c.name, c.description))
                .collect();
        }
        Err(e) => {
            summary.error = Some(e.to_string());
            return summary;
        }
    }
    let choice = match &args.camera {
        None => CameraChoice::First,
        Some(s) => s
            .parse()
            .map_or_else(|_| CameraChoice::Name(s.clone()), CameraChoice::Index),
    };
    let mut camera = match Camera::open(&choice, args.width, args.height, args.fps) {
        Ok(c) => c,
        Err(e) => {
            summary.error = Some(e.to_string());
            return summary;
        }
    };
    summary.opened = camera.describe();
    eprintln!("camera_check: {}", summary.opened);
    let mut coder: Option<(Vp8Encoder, Vp8Decoder)> = None;
    let mut last: Option<Vec<u8>> = None;
    let mut bytes = 0usize;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    while summary.frames < args.frames && Instant::now() < deadline {
        let picture = match camera.next_frame(Duration::from_millis(500)) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                summary.error = Some(e.to_string());
                break;
            }
        };
        summary.frames += 1;
        summary.width = picture.width();
        summary.height = picture.height();
        if last.as_deref() != Some(picture.as_bytes()) {
            summary.distinct_frames += 1;
        }
        last = Some(picture.as_bytes().to_vec());
        if coder.is_none() {
            let settings = Vp8Settings {
                width: picture.width(),
                height: picture.height(),
                fps: args.fps,
                ..Vp8Settings::default()
            };
            match (Vp8Encoder::new(settings), Vp8Decoder::new()) {
                (Ok(e), Ok(d)) => coder = Some((e, d)),
                (Err(e), _) | (_, Err(e)) => {
                    summary.error = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some((enc, dec)) = coder.as_mut() {
            let first = summary.frames == 1;
            match enc.encode(&picture, first) {
                Ok(Some(encoded)) => {
                    bytes += encoded.data.len();
                    if let Ok(Some(decoded)) = dec.decode(&encoded.data)
                        && let Some(p) = psnr(&picture, &decoded)
                    {
                        summary.vp8_psnr_min_db = summary.vp8_psnr_min_db.min(p);
                    }
                }
                Ok(None) => {}
                Err(e) => summary.error = Some(e.to_string()),
            }
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    summary.capture_fps = summary.frames as f64 / secs;
    summary.vp8_kbps = bytes as f64 * 8.0 / 1000.0 / secs;
    if summary.frames == 0 && summary.error.is_none() {
        summary.error = Some("no frame within 30 s".into());
    }
    // Keep the summary printable as JSON (no infinity).
    if !summary.vp8_psnr_min_db.is_finite() {
        summary.vp8_psnr_min_db = 0.0;
    }
    summary
}
