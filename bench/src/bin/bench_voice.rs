//! Voice benchmark: Opus cost, bitrates, capture-to-playout latency with its breakdown, CPU
//! for one sender and eight receivers, and speech quality (PESQ-WB) at 0/5/10 % loss over
//! real WebRTC. Prints JSON; `--write-docs docs/performance.md` records the figures.
//!
//! Run: `scripts/bench.sh voice` (sets up the PESQ virtualenv), or
//! `cargo run --release -p squadlink-bench --bin bench_voice`.
//!
//! Latency is measured without a network, through `Voice::loopback`, with the SDK's own
//! device code (`DeviceSource`/`DeviceSink`) on emulated sound cards: a thread stands in for
//! each card's callback, every 5 ms period in real time. The microphone plays a vowel-like
//! burst every 500 ms; the speaker notes when each burst's onset plays. The difference is
//! the added latency. Microphone and speaker periods are offset by eight phases across the
//! run, as two real cards' clocks would be, and the figures pool all of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use squadlink::voice::measure::{
    VoiceDecoder, VoiceEncoder, emulated_microphone, emulated_speaker, read_wav_mono_48k,
};
use squadlink::voice::{
    AudioInput, AudioOutput, SyntheticSource, Voice, VoiceBandwidth, VoiceConfig, VoiceMode,
    WavSource,
};

use squadlink_bench::{lobby_pair, median, percentile, udp_baseline, update_docs_section};
use squadlink_testkit::audio::{envelope_match, fine_delay, speech_fixture};

type Res<T> = Result<T, String>;

const RATE: f64 = 48_000.0;
/// Device period emulated on both sides (what `DeviceSource`/`DeviceSink` ask cpal for).
const PERIOD: usize = 240;
/// Offsets between the microphone's and the speaker's periods in the latency runs.
const PHASES: u32 = 8;

#[derive(Parser, Debug)]
#[command(about = "Squadlink voice benchmark (prints JSON)")]
struct Args {
    /// Seconds of each latency measurement (split across the phases).
    #[arg(long, default_value_t = 32)]
    latency_seconds: u64,
    /// Only the latency measurements.
    #[arg(long)]
    latency_only: bool,
    /// Python with the `pesq` package (scripts/bench.sh makes one).
    #[arg(long, env = "SQUADLINK_PESQ_PYTHON")]
    pesq_python: Option<PathBuf>,
    /// Only the CPU measurement (for profiling).
    #[arg(long)]
    cpu_only: bool,
    /// Only the quality measurement, at this loss (percent), for tuning.
    #[arg(long)]
    quality_only: Option<u32>,
    /// Runs of each quality measurement (the median is reported: which frames a random
    /// loss hits moves PESQ by several tenths).
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Opus bitrate for the quality measurement.
    #[arg(long, default_value_t = 32_000)]
    bitrate: u32,
    /// Code fullband instead of the default wideband in the CPU and quality runs (for
    /// comparison).
    #[arg(long)]
    fullband: bool,
    /// Runs as a background load (used by the CPU measurement; not for people).
    #[arg(long, hide = true)]
    background_load: bool,
    /// Record the figures in this Markdown file.
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

impl Args {
    fn bandwidth(&self) -> VoiceBandwidth {
        if self.fullband {
            VoiceBandwidth::Fullband
        } else {
            VoiceBandwidth::default()
        }
    }

    /// Bitrate and band of the quality measurements.
    fn coding(&self) -> (u32, VoiceBandwidth) {
        (self.bitrate, self.bandwidth())
    }
}

#[derive(Serialize, Debug, Default)]
struct Report {
    udp_rtt_p50_us: f64,
    encode_us_per_frame: f64,
    decode_us_per_frame: f64,
    fullband_encode_us_per_frame: f64,
    fullband_decode_us_per_frame: f64,
    kbps_speaking_payload: f64,
    kbps_speaking_wire: f64,
    kbps_silent_open_mic_payload: f64,
    kbps_silent_open_mic_wire: f64,
    kbps_silent_voice_activity: f64,
    latency: Latency,
    latency_without_noise_suppression: Latency,
    /// Default voice-activity mode: every burst starts a talk spurt (with its pre-roll).
    latency_voice_activity_onset: Latency,
    /// On an otherwise idle machine: the median of the runs (by the voice threads' figure).
    cpu_1_sender_8_receivers_percent_of_core: Cpu,
    /// The voice threads' figure of every idle run.
    cpu_runs: Vec<f64>,
    /// With both cores kept busy by low-priority work that sweeps memory, as a game's frame
    /// loop keeps them: the median of the runs.
    cpu_busy: Cpu,
    /// The voice threads' figure of every busy run.
    cpu_busy_runs: Vec<f64>,
    cpu_without_noise_suppression: Cpu,
    pesq_wb: Vec<Quality>,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Latency {
    samples: usize,
    p50_ms: f64,
    p95_ms: f64,
    breakdown_ms: Breakdown,
}

#[derive(Serialize, Debug, Default, Clone)]
struct Breakdown {
    /// A frame is encoded when its last sample is in: 20 ms for every sample.
    framing: f64,
    opus_lookahead: f64,
    noise_suppression: f64,
    /// The rest of the p50: the encoding time, the jitter buffer's wait (its target rounded
    /// up to a 5 ms block), the time a rendered block waits for the device, wake-ups.
    jitter_buffer_and_scheduling: f64,
    /// The jitter buffer's target at the end (how late a packet may come).
    jitter_buffer_target: f64,
    /// The jitter buffer's own smoothed wait from a packet's arrival to its decoding.
    jitter_buffer_stat: f64,
}

#[derive(Serialize, Debug, Clone)]
struct Quality {
    /// Open mic, no noise suppression (the codec and the network alone).
    plain: bool,
    loss_percent: u32,
    /// The median run's score.
    pesq_wb: Option<f64>,
    /// Every run's score.
    pesq_wb_runs: Vec<f64>,
    envelope_correlation: f64,
    fec_recovered: u64,
    lost: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.background_load {
        background_load();
        return std::process::ExitCode::SUCCESS;
    }
    squadlink_bench::run_main(run(args))
}

async fn run(args: Args) -> Res<()> {
    let mut report = Report::default();
    let udp = udp_baseline().await?;
    report.udp_rtt_p50_us = udp.p50_us;

    let dir = std::env::temp_dir().join(format!("squadlink-bench-voice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let speech_path = speech_fixture(&dir);
    let speech = read_wav_mono_48k(&speech_path).map_err(|e| e.to_string())?;
    let python = args.pesq_python.clone().or_else(default_pesq_python);
    if args.cpu_only {
        let (enc, dec) = codec_cost(&speech, args.bandwidth())?;
        eprintln!("Opus: encode {enc:.1} µs, decode {dec:.1} µs per 20 ms frame");
        cpu(&speech_path, true, args.bandwidth(), false)?;
        cpu(&speech_path, true, args.bandwidth(), true)?;
        return Ok(());
    }
    if let Some(loss) = args.quality_only {
        if let Some(py) = python.as_deref() {
            for perc in [0u8, 5, 10, 20] {
                let p =
                    codec_only_pesq(&dir, &speech_path, &speech, loss, args.coding(), perc, py)?;
                println!("codec only: loss {loss} %, FEC tuned for {perc} %: PESQ-WB {p:.3}");
            }
        }
        for plain in [false, true] {
            let q = quality(
                &dir,
                &speech_path,
                loss,
                plain,
                args.coding(),
                python.as_deref(),
            )
            .await?;
            println!("{q:?}");
        }
        return Ok(());
    }

    if args.latency_only {
        for (ns, mode) in [
            (true, VoiceMode::OpenMic),
            (false, VoiceMode::OpenMic),
            (true, VoiceMode::VoiceActivity),
        ] {
            eprintln!("latency, noise suppression {ns}, {mode:?}…");
            latency(ns, mode, args.latency_seconds)?;
        }
        return Ok(());
    }

    let (enc, dec) = codec_cost(&speech, VoiceBandwidth::default())?;
    report.encode_us_per_frame = enc;
    report.decode_us_per_frame = dec;
    eprintln!("Opus: encode {enc:.1} µs, decode {dec:.1} µs per 20 ms frame");
    let (enc, dec) = codec_cost(&speech, VoiceBandwidth::Fullband)?;
    report.fullband_encode_us_per_frame = enc;
    report.fullband_decode_us_per_frame = dec;
    eprintln!("Opus fullband: encode {enc:.1} µs, decode {dec:.1} µs per 20 ms frame");

    bitrates(&mut report, &speech_path)?;

    eprintln!(
        "latency with noise suppression ({} s)…",
        args.latency_seconds
    );
    report.latency = latency(true, VoiceMode::OpenMic, args.latency_seconds)?;
    eprintln!(
        "latency without noise suppression ({} s)…",
        args.latency_seconds
    );
    report.latency_without_noise_suppression =
        latency(false, VoiceMode::OpenMic, args.latency_seconds)?;
    eprintln!(
        "latency at voice-activity onsets ({} s)…",
        args.latency_seconds
    );
    report.latency_voice_activity_onset =
        latency(true, VoiceMode::VoiceActivity, args.latency_seconds)?;

    eprintln!("CPU, 1 sender + 8 receivers…");
    for busy in [false, true] {
        let mut runs = Vec::new();
        for _ in 0..args.trials.max(1) {
            runs.push(cpu(&speech_path, true, args.bandwidth(), busy)?);
        }
        runs.sort_by(|a, b| a.voice_threads.total_cmp(&b.voice_threads));
        let all = runs.iter().map(|c| c.voice_threads).collect();
        let median = runs.get(runs.len() / 2).cloned().unwrap_or_default();
        if busy {
            (report.cpu_busy, report.cpu_busy_runs) = (median, all);
        } else {
            (
                report.cpu_1_sender_8_receivers_percent_of_core,
                report.cpu_runs,
            ) = (median, all);
        }
    }
    report.cpu_without_noise_suppression = cpu(&speech_path, false, args.bandwidth(), false)?;

    for (loss, plain) in [(0u32, false), (5, false), (10, false), (0, true), (5, true)] {
        eprintln!(
            "quality at {loss} % loss{}…",
            if plain { ", plain" } else { "" }
        );
        let mut runs = Vec::new();
        for _ in 0..args.trials.max(1) {
            let q = quality(
                &dir,
                &speech_path,
                loss,
                plain,
                args.coding(),
                python.as_deref(),
            )
            .await?;
            eprintln!("  {q:?}");
            runs.push(q);
        }
        runs.sort_by(|a, b| {
            a.pesq_wb
                .unwrap_or(0.0)
                .total_cmp(&b.pesq_wb.unwrap_or(0.0))
        });
        let all: Vec<f64> = runs.iter().filter_map(|q| q.pesq_wb).collect();
        if let Some(mut median) = runs.get(runs.len() / 2).cloned() {
            median.pesq_wb_runs = all;
            report.pesq_wb.push(median);
        }
    }

    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    if let Some(path) = &args.write_docs {
        update_docs_section(path, "voice", &markdown(&report))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn default_pesq_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/squadlink/pesq-venv/bin/python3");
    p.exists().then_some(p)
}

/// Mean microseconds per frame to encode the speech, and to decode it.
fn codec_cost(speech: &[f32], bandwidth: VoiceBandwidth) -> Res<(f64, f64)> {
    let mut encoder = VoiceEncoder::new(32_000, bandwidth).map_err(|e| e.to_string())?;
    encoder.set_expected_loss(5).map_err(|e| e.to_string())?;
    let mut decoder = VoiceDecoder::new().map_err(|e| e.to_string())?;
    let frames: Vec<&[f32]> = speech.chunks_exact(960).collect();
    let mut packets = Vec::with_capacity(frames.len());
    let mut out = vec![0.0f32; 960];
    let t = Instant::now();
    for _ in 0..5 {
        packets.clear();
        for f in &frames {
            packets.push(encoder.encode(f).map_err(|e| e.to_string())?.to_vec());
        }
    }
    let enc = t.elapsed().as_secs_f64() * 1e6 / (5 * frames.len().max(1)) as f64;
    let t = Instant::now();
    for _ in 0..5 {
        for p in &packets {
            decoder
                .decode(Some(p), false, &mut out)
                .map_err(|e| e.to_string())?;
        }
    }
    let dec = t.elapsed().as_secs_f64() * 1e6 / (5 * packets.len().max(1)) as f64;
    Ok((enc, dec))
}

/// Per-packet overhead on the wire: RTP 12, SRTP auth tag 10, UDP 8, IPv4 20 bytes.
const WIRE_OVERHEAD: f64 = 50.0;

fn bitrates(report: &mut Report, speech_path: &Path) -> Res<()> {
    // Speaking: the speech file through the voice-activity gate.
    let source = WavSource::open(speech_path).map_err(|e| e.to_string())?;
    let finished = source.finished_flag();
    let voice = Voice::loopback(
        VoiceConfig::default()
            .input(AudioInput::Source(Box::new(source)))
            .output(AudioOutput::None),
        1,
    )
    .map_err(|e| e.to_string())?;
    wait_flag(&finished, Duration::from_secs(60))?;
    let s = voice.send_stats();
    voice.stop();
    let secs = s.packets_sent as f64 * 0.02;
    report.kbps_speaking_payload = s.bytes_sent as f64 * 8.0 / secs.max(0.02) / 1000.0;
    report.kbps_speaking_wire = (s.bytes_sent as f64 + s.packets_sent as f64 * WIRE_OVERHEAD) * 8.0
        / secs.max(0.02)
        / 1000.0;
    // Silent, open mic: only DTX comfort-noise updates go out.
    let silent_secs = 10.0;
    for mode in [VoiceMode::OpenMic, VoiceMode::VoiceActivity] {
        let voice = Voice::loopback(
            VoiceConfig::default()
                .mode(mode)
                .input(AudioInput::Source(Box::new(SyntheticSource::silence())))
                .output(AudioOutput::None),
            1,
        )
        .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs_f64(silent_secs));
        let s = voice.send_stats();
        voice.stop();
        let payload = s.bytes_sent as f64 * 8.0 / silent_secs / 1000.0;
        let wire = (s.bytes_sent as f64 + s.packets_sent as f64 * WIRE_OVERHEAD) * 8.0
            / silent_secs
            / 1000.0;
        match mode {
            VoiceMode::OpenMic => {
                report.kbps_silent_open_mic_payload = payload;
                report.kbps_silent_open_mic_wire = wire;
            }
            _ => report.kbps_silent_voice_activity = wire,
        }
    }
    eprintln!(
        "kbit/s: speaking {:.1} payload / {:.1} wire; silent open mic {:.2} / {:.2}; silent VAD {:.2}",
        report.kbps_speaking_payload,
        report.kbps_speaking_wire,
        report.kbps_silent_open_mic_payload,
        report.kbps_silent_open_mic_wire,
        report.kbps_silent_voice_activity
    );
    Ok(())
}

fn wait_flag(flag: &std::sync::atomic::AtomicBool, limit: Duration) -> Res<()> {
    let deadline = Instant::now() + limit;
    while !flag.load(std::sync::atomic::Ordering::Relaxed) {
        if Instant::now() > deadline {
            return Err("the source never finished".into());
        }
        // Rarely: this thread's own wake-ups count in the process figure.
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// A burst every 500 ms: 100 ms of a vowel-like harmonic sound (140 Hz fundamental).
fn burst_signal(len: usize) -> (Vec<f32>, Vec<usize>) {
    let every = 24_000;
    let burst = 4_800;
    let mut signal = vec![0.0f32; len];
    let mut onsets = Vec::new();
    for start in (every / 2..len).step_by(every) {
        onsets.push(start);
        for i in 0..burst {
            let t = i as f32 / 48_000.0;
            let mut v = 0.0;
            for h in 1..=12 {
                let amp = if (3..=5).contains(&h) { 1.0 } else { 0.4 } / h as f32;
                v += amp * (std::f32::consts::TAU * 140.0 * h as f32 * t).sin();
            }
            let fade = (i as f32 / 96.0).min(1.0) * ((burst - i) as f32 / 480.0).min(1.0);
            if let Some(s) = signal.get_mut(start + i) {
                *s = 0.25 * v * fade;
            }
        }
    }
    (signal, onsets)
}

/// Burst onsets heard by the emulated speaker.
#[derive(Default)]
struct Heard {
    onsets: Vec<Instant>,
    last: Option<Instant>,
}

impl Heard {
    /// Notes the first loud frame of each burst in a block that plays from `at`.
    fn block(&mut self, at: Instant, stereo: &[f32]) {
        for (j, pair) in stereo.chunks_exact(2).enumerate() {
            let t = at + Duration::from_secs_f64(j as f64 / RATE);
            let level = pair.iter().map(|s| s.abs()).fold(0.0f32, f32::max);
            let quiet = self
                .last
                .is_none_or(|o| t.saturating_duration_since(o) > Duration::from_millis(250));
            if level > 0.04 && quiet {
                self.last = Some(t);
                self.onsets.push(t);
            }
        }
    }
}

/// One latency run at one phase: the delays of the bursts heard (ms) and the jitter
/// buffer's target and wait.
fn latency_run(
    noise_suppression: bool,
    mode: VoiceMode,
    seconds: f64,
    phase: Duration,
) -> Res<(Vec<f64>, f64, f64, u64)> {
    let len = (seconds * RATE) as usize;
    let (signal, onsets) = burst_signal(len);
    let mic_start = Instant::now() + Duration::from_millis(100);
    let heard = Arc::new(Mutex::new(Heard::default()));
    let (mic, _) = playing_mic(signal, mic_start)?;
    let ear = Arc::clone(&heard);
    let speaker = emulated_speaker(PERIOD, mic_start + phase, move |at, stereo| {
        if let Ok(mut h) = ear.lock() {
            h.block(at, stereo);
        }
    })
    .map_err(|e| e.to_string())?;
    let voice = Voice::loopback(
        VoiceConfig::default()
            .mode(mode)
            .noise_suppression(noise_suppression)
            .input(AudioInput::Source(Box::new(mic)))
            .output(AudioOutput::Sink(Box::new(speaker))),
        1,
    )
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs_f64(seconds) + Duration::from_millis(400));
    let stats = voice.stats(Voice::loopback_peer(0)).unwrap_or_default();
    voice.stop();
    let heard = heard.lock().map_err(|_| "lock")?;
    let captured: Vec<Instant> = onsets
        .iter()
        .map(|k| mic_start + Duration::from_secs_f64(*k as f64 / RATE))
        .collect();
    let delays = heard
        .onsets
        .iter()
        .filter_map(|played| {
            captured
                .iter()
                .rev()
                .find(|c| *c <= played)
                .map(|c| played.duration_since(*c).as_secs_f64() * 1000.0)
        })
        .filter(|ms| *ms < 250.0)
        .collect();
    Ok((
        delays,
        stats.target_delay.as_secs_f64() * 1000.0,
        stats.jitter_buffer_delay.as_secs_f64() * 1000.0,
        stats.late,
    ))
}

fn latency(noise_suppression: bool, mode: VoiceMode, seconds: u64) -> Res<Latency> {
    let per_phase = seconds as f64 / f64::from(PHASES);
    let period = Duration::from_secs_f64(PERIOD as f64 / RATE);
    let mut lat = Vec::new();
    let (mut target, mut jb) = (0.0, 0.0);
    for i in 0..PHASES {
        let phase = period * i / PHASES;
        let (delays, t, w, late) = latency_run(noise_suppression, mode, per_phase, phase)?;
        eprintln!(
            "  phase {:.3} ms: {} bursts, median {:.1} ms, target {t:.1} ms, wait {w:.1} ms, \
             {late} late",
            phase.as_secs_f64() * 1000.0,
            delays.len(),
            median(&delays).unwrap_or(0.0)
        );
        lat.extend(delays);
        target += t / f64::from(PHASES);
        jb += w / f64::from(PHASES);
    }
    lat.sort_by(f64::total_cmp);
    if lat.is_empty() {
        return Err("no burst came out of the loopback".into());
    }
    let pct = |q: f64| percentile(&lat, q).unwrap_or(0.0);
    let lookahead = VoiceEncoder::new(32_000, VoiceBandwidth::default())
        .map(|e| e.lookahead().as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    let ns = if noise_suppression { 10.0 } else { 0.0 };
    let p50 = pct(0.5);
    let known = 20.0 + lookahead + ns;
    let result = Latency {
        samples: lat.len(),
        p50_ms: p50,
        p95_ms: pct(0.95),
        breakdown_ms: Breakdown {
            framing: 20.0,
            opus_lookahead: lookahead,
            noise_suppression: ns,
            jitter_buffer_and_scheduling: p50 - known,
            jitter_buffer_target: target,
            jitter_buffer_stat: jb,
        },
    };
    eprintln!("  {result:?}");
    Ok(result)
}

/// User + system CPU time in a `/proc/.../stat` line (clock ticks of 10 ms).
fn stat_cpu(stat: &str) -> Option<Duration> {
    let (_, after) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    // Fields 14 and 15 (utime, stime) are at 11 and 12 counting from the state after ')'.
    Some(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}

/// Process CPU time (user + system), from /proc/self/stat.
fn cpu_time() -> Res<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    stat_cpu(&stat).ok_or_else(|| "bad /proc/self/stat".to_string())
}

/// CPU time of this process's threads named `name`, from /proc/self/task (the scheduler's
/// nanosecond count in `schedstat`).
fn thread_cpu(name: &str) -> Duration {
    let mut total = Duration::ZERO;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        total += Duration::from_nanos(ns);
    }
    total
}

#[derive(Serialize, Debug, Default, Clone)]
struct Cpu {
    /// Sending and receiving together, percent of one core: the pipeline's cost.
    voice_threads: f64,
    /// The sending thread (noise suppression, gate, Opus encoder).
    send_thread: f64,
    /// Receiving: rendering in the speaker's callback (8 jitter buffers, 8 decoders, the
    /// mix) plus the receiver's companion thread.
    receive_thread: f64,
    /// The whole process, the benchmark's own threads included (and the emulated sound
    /// card's thread, which stands for the sound system's).
    process: f64,
    /// The same wake-ups with no work (a thread waking 50 times a second and one waking
    /// 25 times, as the sending thread and the companion do), on this machine, in this run.
    idle_wakeups: f64,
}

/// CPU of two threads that only wake up, 50 and 25 times a second, for `time`: what the
/// voice threads' wake-ups alone cost on this machine (a virtual machine's timer wake-ups
/// cost far more than a bare machine's).
fn idle_wakeups(time: Duration) -> f64 {
    let spawn = |name: &str, hz: u32| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let start = Instant::now();
                let mut due = start;
                while start.elapsed() < time {
                    due += Duration::from_secs(1) / hz;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            })
    };
    let (Ok(a), Ok(b)) = (spawn("sl-idle-50", 50), spawn("sl-idle-25", 25)) else {
        return 0.0;
    };
    std::thread::sleep(time - Duration::from_millis(100));
    let used = thread_cpu("sl-idle-50") + thread_cpu("sl-idle-25");
    let _ = (a.join(), b.join());
    used.as_secs_f64() / (time - Duration::from_millis(100)).as_secs_f64() * 100.0
}

/// A stand-in for a game's frame loop: sweeps an 8 MB buffer (more than a core's cache)
/// for at most two minutes. Run at the lowest priority by [`BackgroundLoad`].
fn background_load() {
    let mut buf = vec![1u32; 2 << 20];
    let start = Instant::now();
    let mut x = 1u32;
    while start.elapsed() < Duration::from_secs(120) {
        for v in buf.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(*v);
            *v = x;
        }
    }
    std::hint::black_box(&buf);
}

/// One low-priority background load process per core, stopped when dropped.
struct BackgroundLoad(Vec<std::process::Child>);

impl BackgroundLoad {
    fn start() -> Res<Self> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut children = Vec::new();
        for _ in 0..cores {
            let child = Command::new("nice")
                .args(["-n", "19"])
                .arg(&exe)
                .arg("--background-load")
                .spawn()
                .map_err(|e| format!("starting the background load: {e}"))?;
            children.push(child);
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self(children))
    }
}

impl Drop for BackgroundLoad {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A microphone emulated from `start` that captures `samples`, then silence; the flag is
/// set once all of them were captured.
fn playing_mic(
    samples: Vec<f32>,
    start: Instant,
) -> Res<(
    squadlink::voice::DeviceSource,
    Arc<std::sync::atomic::AtomicBool>,
)> {
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::clone(&finished);
    let mut pos = 0usize;
    let mic = emulated_microphone(PERIOD, start, move |_, buf| {
        for s in buf.iter_mut() {
            *s = samples.get(pos).copied().unwrap_or(0.0);
            pos += 1;
        }
        if pos >= samples.len() {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .map_err(|e| e.to_string())?;
    Ok((mic, finished))
}

/// CPU of one sender encoding speech and eight receivers decoding and mixing it, on an idle
/// machine or (`busy`) beside a background load on every core.
fn cpu(
    speech_path: &Path,
    noise_suppression: bool,
    bandwidth: VoiceBandwidth,
    busy: bool,
) -> Res<Cpu> {
    let _load = if busy {
        Some(BackgroundLoad::start()?)
    } else {
        None
    };
    // Sound cards emulated at real-time pace with 5 ms periods: the microphone plays the
    // speech in, the mix is rendered in the speaker's callback. Their threads stand for the
    // sound system's, which wake every period whoever records or plays; what rendering
    // costs in the speaker's is counted.
    let speech = read_wav_mono_48k(speech_path).map_err(|e| e.to_string())?;
    let start = Instant::now() + Duration::from_millis(50);
    let (source, finished) = playing_mic(speech, start)?;
    let speaker = emulated_speaker(PERIOD, start, |_, _| {}).map_err(|e| e.to_string())?;
    let device = speaker.counters();
    let before = cpu_time()?;
    // The sending thread is kept for the next voice (voice/reuse.rs), so what it spent for
    // earlier voices of this process is taken off.
    let (tx_before, rx_before) = (thread_cpu("sl-voice-tx"), thread_cpu("sl-voice-rx"));
    let t = Instant::now();
    let voice = Voice::loopback(
        VoiceConfig::default()
            .mode(VoiceMode::OpenMic)
            .noise_suppression(noise_suppression)
            .bandwidth(bandwidth)
            .input(AudioInput::Source(Box::new(source)))
            .output(AudioOutput::Sink(Box::new(speaker))),
        8,
    )
    .map_err(|e| e.to_string())?;
    wait_flag(&finished, Duration::from_secs(60))?;
    let used = cpu_time()? - before;
    let rendering = Duration::from_nanos(
        device
            .render_nanos
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let (tx, rx) = (
        thread_cpu("sl-voice-tx").saturating_sub(tx_before),
        thread_cpu("sl-voice-rx").saturating_sub(rx_before) + rendering,
    );
    let wall = t.elapsed().as_secs_f64();
    voice.stop();
    let pct = |d: Duration| d.as_secs_f64() / wall * 100.0;
    let result = Cpu {
        voice_threads: pct(tx + rx),
        send_thread: pct(tx),
        receive_thread: pct(rx),
        process: pct(used),
        idle_wakeups: idle_wakeups(Duration::from_secs(4)),
    };
    eprintln!("  {}{result:?}", if busy { "busy: " } else { "idle: " });
    Ok(result)
}

async fn quality(
    dir: &Path,
    speech_path: &Path,
    loss: u32,
    plain: bool,
    (bitrate, bandwidth): (u32, VoiceBandwidth),
    python: Option<&Path>,
) -> Res<Quality> {
    let pair = lobby_pair().await?;
    let (a, b) = (&pair.a, &pair.b);
    // Loss from now on, at the talker's socket: what it does to voice, not to the handshake.
    a.set_simulated_loss(f64::from(loss) / 100.0);
    let out = dir.join(format!("heard-{loss}.wav"));
    let listener = Voice::start(
        b,
        VoiceConfig::default()
            .input(AudioInput::None)
            .output(AudioOutput::Wav(out.clone())),
    )
    .map_err(|e| e.to_string())?;
    let source = WavSource::open(speech_path).map_err(|e| e.to_string())?;
    let finished = source.finished_flag();
    let mut config = VoiceConfig::default()
        .bandwidth(bandwidth)
        .input(AudioInput::Source(Box::new(source)))
        .output(AudioOutput::None);
    config.bitrate = bitrate;
    if plain {
        config = config.mode(VoiceMode::OpenMic).noise_suppression(false);
    }

    let talker = Voice::start(a, config).map_err(|e| e.to_string())?;
    wait_flag(&finished, Duration::from_secs(60))?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = listener.stats(pair.a_id).unwrap_or_default();
    talker.stop();
    listener.stop();
    pair.close().await;

    let reference = read_wav_mono_48k(speech_path).map_err(|e| e.to_string())?;
    let heard = read_wav_mono_48k(&out).map_err(|e| e.to_string())?;
    let (correlation, coarse) = envelope_match(&reference, &heard, 48_000, Duration::from_secs(2));
    let delay = fine_delay(&reference, &heard, 48_000, coarse);
    let skip = (delay.as_secs_f64() * RATE) as usize;
    let aligned: Vec<f32> = heard
        .iter()
        .skip(skip)
        .take(reference.len())
        .copied()
        .collect();
    let degraded = dir.join(format!("degraded-{loss}.wav"));
    write_wav(&degraded, &aligned)?;
    let pesq = python.and_then(|py| pesq_wb(py, dir, speech_path, &degraded).ok());
    Ok(Quality {
        plain,
        loss_percent: loss,
        pesq_wb: pesq,
        pesq_wb_runs: Vec::new(),
        envelope_correlation: f64::from(correlation),
        fec_recovered: stats.fec_recovered,
        lost: stats.lost,
    })
}

/// Opus alone at `loss` % random packet loss with an ideal one-frame FEC look-ahead: the
/// codec's own ceiling, for comparison with the whole pipeline.
fn codec_only_pesq(
    dir: &Path,
    speech_path: &Path,
    speech: &[f32],
    loss: u32,
    (bitrate, bandwidth): (u32, VoiceBandwidth),
    fec_percent: u8,
    python: &Path,
) -> Res<f64> {
    let mut enc = VoiceEncoder::new(bitrate, bandwidth).map_err(|e| e.to_string())?;
    enc.set_expected_loss(fec_percent)
        .map_err(|e| e.to_string())?;
    let mut dec = VoiceDecoder::new().map_err(|e| e.to_string())?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let threshold = (f64::from(loss) / 100.0 * u64::MAX as f64) as u64;
    let packets: Vec<Option<Vec<u8>>> = speech
        .chunks_exact(960)
        .map(|f| {
            let p = enc.encode(f).map(|p| p.to_vec()).ok();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state < threshold { None } else { p }
        })
        .collect();
    let mut out = Vec::with_capacity(speech.len());
    let mut frame = vec![0.0f32; 960];
    for (i, p) in packets.iter().enumerate() {
        let r = match (p, packets.get(i + 1).and_then(|n| n.as_ref())) {
            (Some(p), _) => dec.decode(Some(p), false, &mut frame),
            (None, Some(next)) => dec.decode(Some(next), true, &mut frame),
            (None, None) => dec.decode(None, false, &mut frame),
        };
        r.map_err(|e| e.to_string())?;
        out.extend_from_slice(&frame);
    }
    // Opus delays its output by its look-ahead; line it up with the input.
    let skip = (enc.lookahead().as_secs_f64() * RATE) as usize;
    let aligned: Vec<f32> = out.iter().skip(skip).copied().collect();
    let path = dir.join(format!("codec-{loss}-{fec_percent}.wav"));
    write_wav(&path, &aligned)?;
    pesq_wb(python, dir, speech_path, &path)
}

fn write_wav(path: &Path, samples: &[f32]) -> Res<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

/// PESQ-WB through scripts/pesq_wb.py, after converting both files to 16 kHz with sox.
fn pesq_wb(python: &Path, dir: &Path, reference: &Path, degraded: &Path) -> Res<f64> {
    let to16 = |input: &Path, name: &str| -> Res<PathBuf> {
        let out = dir.join(name);
        let status = Command::new("sox")
            .arg(input)
            .args(["-r", "16000", "-c", "1", "-b", "16"])
            .arg(&out)
            .status()
            .map_err(|e| format!("sox: {e}"))?;
        if !status.success() {
            return Err("sox failed".into());
        }
        Ok(out)
    };
    let r = to16(reference, "ref16.wav")?;
    let d = to16(degraded, "deg16.wav")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pesq_wb.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&r)
        .arg(&d)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("PESQ output: {e}"))
}

/// One row of the figures table.
fn row(s: &mut String, measure: &str, value: String, target: &str) {
    s.push_str(&format!("| {measure} | {value} | {target} |\n"));
}

/// "X % of one core (send / receive; runs: …)".
fn cpu_cell(c: &Cpu, runs: &[f64]) -> String {
    format!(
        "{:.2} % of one core ({:.2} / {:.2}; runs: {})",
        c.voice_threads,
        c.send_thread,
        c.receive_thread,
        runs.iter()
            .map(|p| format!("{p:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn markdown(r: &Report) -> String {
    let l = &r.latency;
    let b = &l.breakdown_ms;
    let n = &r.latency_without_noise_suppression;
    let mut s = String::new();
    s.push_str(&format!(
        "Raw UDP round trip in the same run: p50 {:.1} µs.\n\n",
        r.udp_rtt_p50_us
    ));
    s.push_str("| measure | value | target |\n|---|---|---|\n");
    s.push_str(&format!(
        "| Opus encode / decode per 20 ms frame, wideband (default) | {:.1} / {:.1} µs | |\n",
        r.encode_us_per_frame, r.decode_us_per_frame
    ));
    s.push_str(&format!(
        "| same, fullband | {:.1} / {:.1} µs | |\n",
        r.fullband_encode_us_per_frame, r.fullband_decode_us_per_frame
    ));
    s.push_str(&format!(
        "| kbit/s while speaking (payload / on the wire) | {:.1} / {:.1} | |\n",
        r.kbps_speaking_payload, r.kbps_speaking_wire
    ));
    row(
        &mut s,
        "kbit/s while silent, voice activity (default)",
        format!("{:.2}", r.kbps_silent_voice_activity),
        "≤ 1",
    );
    row(
        &mut s,
        "kbit/s while silent, open mic (payload / on the wire)",
        format!(
            "{:.2} / {:.2}",
            r.kbps_silent_open_mic_payload, r.kbps_silent_open_mic_wire
        ),
        "≤ 1",
    );
    row(
        &mut s,
        "added latency, capture to playout, no network (p50 / p95)",
        format!("{:.1} / {:.1} ms", l.p50_ms, l.p95_ms),
        "≤ 45 ms p50",
    );
    s.push_str(&format!(
        "| same, noise suppression off | {:.1} / {:.1} ms | |\n",
        n.p50_ms, n.p95_ms
    ));
    let v = &r.latency_voice_activity_onset;
    s.push_str(&format!(
        "| same, voice-activity mode, at the onset of each talk spurt (with its 20 ms pre-roll) | {:.1} / {:.1} ms | |\n",
        v.p50_ms, v.p95_ms
    ));
    let c = &r.cpu_1_sender_8_receivers_percent_of_core;
    let c2 = &r.cpu_without_noise_suppression;
    row(
        &mut s,
        "CPU, 1 sender + 8 receivers: the voice threads (send / receive), idle machine",
        cpu_cell(c, &r.cpu_runs),
        "≤ 3 %",
    );
    let busy = &r.cpu_busy;
    row(
        &mut s,
        "same, both cores busy with low-priority work sweeping memory (as in a running game)",
        cpu_cell(busy, &r.cpu_busy_runs),
        "≤ 3 %",
    );
    s.push_str(&format!(
        "| same, the whole process (with the benchmark's own threads), idle machine | {:.2} % | |\n",
        c.process
    ));
    s.push_str(&format!(
        "| the voice threads' wake-ups alone, with no work (50 Hz + 25 Hz), idle / busy | {:.2} / {:.2} % | |\n",
        c.idle_wakeups, busy.idle_wakeups
    ));
    s.push_str(&format!(
        "| voice threads, noise suppression off | {:.2} % ({:.2} / {:.2}) | |\n",
        c2.voice_threads, c2.send_thread, c2.receive_thread
    ));
    for q in &r.pesq_wb {
        s.push_str(&format!(
            "| PESQ-WB at {} % random loss{} | {} (runs: {}; median run: {} lost, {} rebuilt by FEC) | {} |\n",
            q.loss_percent,
            if q.plain { ", open mic, no noise suppression" } else { "" },
            q.pesq_wb.map_or("n/a".to_string(), |p| format!("{p:.2}")),
            q.pesq_wb_runs
                .iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            q.lost,
            q.fec_recovered,
            if q.loss_percent == 5 && !q.plain { "≥ 3.2" } else { "" }
        ));
    }
    s.push_str(&format!(
        "\nLatency breakdown of the p50 (ms): framing {:.1}, Opus look-ahead {:.1}, noise \
         suppression (RNNoise's frame) {:.1}, and the rest, {:.1}: encoding, the jitter \
         buffer's wait (its target, {:.1} ms here, rounded up to the next 5 ms block: a \
         packet waited {:.1} ms from arrival to decoding, smoothed; the mix is rendered in \
         the speaker's callback) and the sending thread's wake-up. {} bursts (100 ms \
         vowel-like sounds, each its own talk spurt) through `Voice::loopback` and the SDK's \
         device code, on sound cards emulated at real-time pace with 5 ms periods, the \
         microphone's and the speaker's periods offset by {PHASES} phases.\n\n",
        b.framing,
        b.opus_lookahead,
        b.noise_suppression,
        b.jitter_buffer_and_scheduling,
        b.jitter_buffer_target,
        b.jitter_buffer_stat,
        l.samples
    ));
    s
}
