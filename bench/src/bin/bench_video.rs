//! Video benchmark: VP8 encode and decode cost at 320×240 and 640×480, achieved against
//! target bitrate, PSNR, and glass-to-glass latency between two sessions on loopback, with
//! the raw UDP round trip measured in the same run. Prints JSON; `--write-docs FILE` records
//! the figures in FILE between `<!-- bench:video:begin/end -->`.
//!
//! Run: `scripts/bench.sh video` (or `cargo run --release -p squadlink-bench --bin
//! bench_video`).
//!
//! The source is the test pattern with sensor-like noise (± 6 luma levels): a clean
//! synthetic picture codes so cheaply that CBR rate control cannot reach its target, which a
//! camera's picture does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use squadlink::video::measure::{
    Vp8Decoder, Vp8Encoder, Vp8Settings, capture_log, psnr, psnr_rgba,
};
use squadlink::video::{I420Frame, TestPattern, Video, VideoConfig, VideoInput};
use squadlink_bench::{lobby_pair, run_main, udp_baseline, update_docs_section};

type Res<T> = Result<T, String>;

/// Sensor-like noise added to the pattern, luma levels.
const NOISE: u8 = 6;

#[derive(Parser, Debug)]
#[command(about = "Squadlink video benchmark (prints JSON)")]
struct Args {
    /// Seconds of video coded at each size.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Seconds of the glass-to-glass measurement.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Record the figures in this Markdown file.
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

#[derive(Serialize, Debug, Default)]
struct Report {
    udp_rtt_p50_us: f64,
    codec: Vec<Codec>,
    glass_to_glass: GlassToGlass,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Codec {
    width: u32,
    height: u32,
    fps: u32,
    target_kbps: u32,
    achieved_kbps: f64,
    encode_ms_mean: f64,
    encode_ms_p50: f64,
    encode_ms_p95: f64,
    decode_ms_mean: f64,
    psnr_db_mean: f64,
    psnr_db_min: f64,
    keyframe_bytes: usize,
    frames: usize,
}

#[derive(Serialize, Debug, Default)]
struct GlassToGlass {
    frames: usize,
    p50_ms: f64,
    p95_ms: f64,
    psnr_db_min: f64,
    received_fps: f64,
    sent_kbps: f64,
    encode_ms: f64,
}

fn main() -> std::process::ExitCode {
    run_main(run(Args::parse()))
}

/// The nearest-rank `q` quantile of `sorted`, NaN when it is empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    squadlink_bench::percentile(sorted, q).unwrap_or(f64::NAN)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Encodes and decodes `seconds` of the noisy pattern at one size, as fast as it goes (the
/// rate control still thinks in frames at `fps`).
fn codec(width: u32, height: u32, fps: u32, kbps: u32, seconds: u32) -> Res<Codec> {
    let pattern = TestPattern::new(width, height, fps)
        .map_err(|e| e.to_string())?
        .with_noise(NOISE);
    let frames: Vec<I420Frame> = (0..u64::from(fps * seconds))
        .map(|n| pattern.draw(n))
        .collect();
    let mut enc = Vp8Encoder::new(Vp8Settings {
        width,
        height,
        fps,
        bitrate_kbps: kbps,
    })
    .map_err(|e| e.to_string())?;
    let mut dec = Vp8Decoder::new().map_err(|e| e.to_string())?;
    let (mut enc_ms, mut dec_ms, mut psnrs) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0usize;
    let mut keyframe_bytes = 0usize;
    for (i, frame) in frames.iter().enumerate() {
        let t = Instant::now();
        let encoded = enc
            .encode(frame, i == 0)
            .map_err(|e| e.to_string())?
            .ok_or("the encoder dropped a frame")?;
        enc_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes += encoded.data.len();
        if i == 0 {
            keyframe_bytes = encoded.data.len();
        }
        let t = Instant::now();
        let decoded = dec
            .decode(&encoded.data)
            .map_err(|e| e.to_string())?
            .ok_or("the decoder showed nothing")?;
        dec_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        psnrs.push(psnr(frame, &decoded).ok_or("size changed")?);
    }
    // The first second is the rate control settling after the keyframe.
    let settled = usize::try_from(fps).unwrap_or(15);
    let steady_bytes: usize = bytes - keyframe_bytes;
    let steady_frames = frames.len().saturating_sub(1).max(1);
    let achieved = steady_bytes as f64 * 8.0 / 1000.0 / (steady_frames as f64 / f64::from(fps));
    let mut sorted = enc_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let result = Codec {
        width,
        height,
        fps,
        target_kbps: kbps,
        achieved_kbps: achieved,
        encode_ms_mean: mean(&enc_ms),
        encode_ms_p50: percentile(&sorted, 0.5),
        encode_ms_p95: percentile(&sorted, 0.95),
        decode_ms_mean: mean(&dec_ms),
        psnr_db_mean: mean(psnrs.get(settled..).unwrap_or(&psnrs)),
        psnr_db_min: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
        keyframe_bytes,
        frames: frames.len(),
    };
    eprintln!("  {result:?}");
    Ok(result)
}

/// Two sessions on loopback; one sends the noisy pattern at 320×240, 15 fps, 300 kbit/s;
/// the other reads the counter in each decoded frame and compares its decode time with the
/// frame's capture time.
async fn glass_to_glass(seconds: u64) -> Res<GlassToGlass> {
    let pair = lobby_pair().await?;
    let a_id = pair.a_id;
    let (w, h) = (320, 240);
    let pattern = TestPattern::new(w, h, 15)
        .map_err(|e| e.to_string())?
        .with_noise(NOISE);
    let log = capture_log(&pattern);
    let reference = TestPattern::new(w, h, 15)
        .map_err(|e| e.to_string())?
        .with_noise(NOISE);
    let sender = Video::start(
        &pair.a,
        VideoConfig::default().input(VideoInput::Source(Box::new(pattern))),
    )
    .map_err(|e| e.to_string())?;
    let receiver = Video::start(&pair.b, VideoConfig::default()).map_err(|e| e.to_string())?;
    let (mut lat, mut psnrs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Some(frame) = receiver.take_frame(a_id) {
            first.get_or_insert(frame.decoded_at);
            let n = TestPattern::read_counter(w, h, &frame.rgba)
                .ok_or("a frame's counter could not be read")?;
            if let Some(at) = log.captured_at(n) {
                lat.push(frame.decoded_at.duration_since(at).as_secs_f64() * 1000.0);
            }
            let sent = reference.draw(n).to_rgba();
            psnrs.push(psnr_rgba(&sent, &frame.rgba).unwrap_or(0.0));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = receiver.stats(a_id).unwrap_or_default();
    let sent = sender.send_stats();
    sender.stop();
    receiver.stop();
    pair.close().await;
    lat.sort_by(f64::total_cmp);
    let span = first.map_or(1.0, |f| f.elapsed().as_secs_f64().max(1e-3));
    let result = GlassToGlass {
        frames: lat.len(),
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        psnr_db_min: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
        received_fps: stats.frames_decoded as f64 / span,
        sent_kbps: sent.kbps,
        encode_ms: sent.encode_ms,
    };
    eprintln!("  {result:?}");
    Ok(result)
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Raw UDP round trip in the same run: p50 {:.1} µs.\n\n",
        r.udp_rtt_p50_us
    );
    s.push_str(
        "| size, fps | encode ms/frame (mean / p50 / p95) | decode ms/frame | kbit/s achieved / target | PSNR dB (mean / min) | keyframe bytes |\n|---|---|---|---|---|---|\n",
    );
    for c in &r.codec {
        s.push_str(&format!(
            "| {}×{}, {} | {:.2} / {:.2} / {:.2} | {:.2} | {:.0} / {} ({:+.1} %) | {:.1} / {:.1} | {} |\n",
            c.width,
            c.height,
            c.fps,
            c.encode_ms_mean,
            c.encode_ms_p50,
            c.encode_ms_p95,
            c.decode_ms_mean,
            c.achieved_kbps,
            c.target_kbps,
            (c.achieved_kbps / f64::from(c.target_kbps) - 1.0) * 100.0,
            c.psnr_db_mean,
            c.psnr_db_min,
            c.keyframe_bytes
        ));
    }
    let g = &r.glass_to_glass;
    s.push_str(&format!(
        "\nGlass to glass on loopback (capture of a frame to its decoded RGBA on the other \
         session, 320×240 at 15 fps, 300 kbit/s): p50 {:.1} ms, p95 {:.1} ms over {} frames; \
         {:.1} frames/s received, {:.0} kbit/s sent, encode {:.2} ms a frame, PSNR of every \
         received frame ≥ {:.1} dB.\n\n",
        g.p50_ms, g.p95_ms, g.frames, g.received_fps, g.sent_kbps, g.encode_ms, g.psnr_db_min
    ));
    s.push_str(
        "Targets: 320×240 at 15 fps encodes in ≤ 1 ms a frame, the bitrate is within 10 % of \
         the target, glass to glass ≤ 100 ms on loopback. The source is the test pattern with \
         ± 6 levels of sensor-like noise; the first frame (a keyframe) is left out of the \
         bitrate.\n\n",
    );
    s
}

async fn run(args: Args) -> Res<()> {
    let mut report = Report::default();
    let udp = udp_baseline().await?;
    report.udp_rtt_p50_us = udp.p50_us;
    for (w, h, kbps) in [(320, 240, 300), (640, 480, 1000)] {
        eprintln!("VP8 {w}×{h} at 15 fps, {kbps} kbit/s…");
        report.codec.push(codec(w, h, 15, kbps, args.seconds)?);
    }
    eprintln!("glass to glass ({} s)…", args.latency_seconds);
    report.glass_to_glass = glass_to_glass(args.latency_seconds).await?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    if let Some(path) = &args.write_docs {
        update_docs_section(path, "video", &markdown(&report))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    Ok(())
}
