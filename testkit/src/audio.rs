//! Audio rigs and measures for the voice tests and benchmark: speech fixtures made at test
//! time (espeak-ng and sox; no audio is committed), a PulseAudio daemon with null sinks, and
//! the comparisons (level envelopes, delay by cross-correlation).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sentences spoken for the fixtures: varied phonemes, with pauses between them.
pub const SENTENCES: &str = "The quick brown fox jumps over the lazy dog. \
    Squadlink carries voices between players in a lobby. \
    Seven slim swans swam silently south. \
    Every packet counts when the network is busy.";

/// A speech WAV (48 kHz, mono, 16-bit) in `dir`, made with espeak-ng and sox; about 10 s.
pub fn speech_fixture(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("fixture dir");
    let raw = dir.join("speech-22k.wav");
    let out = dir.join("speech.wav");
    if out.exists() {
        return out;
    }
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-g", "8", "-w"])
        .arg(&raw)
        .arg(SENTENCES)
        .status()
        .expect("espeak-ng is not installed: run scripts/setup.sh (apt-get install espeak-ng)");
    assert!(status.success(), "espeak-ng failed");
    // 48 kHz mono, with 0.5 s of silence before and after.
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["pad", "0.5", "0.5", "gain", "-n", "-3"])
        .status()
        .expect("sox is not installed: run scripts/setup.sh (apt-get install sox)");
    assert!(status.success(), "sox failed");
    out
}

/// Reads a WAV as mono f32 at its own rate (channels averaged); returns (samples, rate).
pub fn read_mono(path: &Path) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    let data: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            r.samples::<i32>()
                .map(|s| s.unwrap() as f32 / scale)
                .collect()
        }
    };
    let ch = usize::from(spec.channels.max(1));
    let mono = data
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    (mono, spec.sample_rate)
}

/// RMS level per 10 ms window, in dB (floor -80).
pub fn envelope(samples: &[f32], rate: u32) -> Vec<f32> {
    let win = (rate / 100).max(1) as usize;
    samples
        .chunks(win)
        .map(|c| {
            let e = c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32;
            (10.0 * e.max(1e-8).log10()).max(-80.0)
        })
        .collect()
}

fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().sum::<f32>() / n as f32;
    let mb = b.iter().sum::<f32>() / n as f32;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        num += (x - ma) * (y - mb);
        da += (x - ma) * (x - ma);
        db += (y - mb) * (y - mb);
    }
    // A flat signal (silence) correlates with nothing.
    if da <= 1e-3 || db <= 1e-3 {
        return 0.0;
    }
    num / (da.sqrt() * db.sqrt())
}

/// How well `output` reproduces `input`: the correlation of their level envelopes, and the
/// delay. Level envelopes, not waveforms: Opus keeps what is heard, not the exact wave.
///
/// The delay is found over the whole signal (up to `max_delay`); the correlation is then the
/// mean over the 1 s windows of the input that carry sound, each at its best delay within
/// ±100 ms of that, because an adaptive jitter buffer may start each talk spurt with a
/// different delay.
pub fn envelope_match(
    input: &[f32],
    output: &[f32],
    rate: u32,
    max_delay: Duration,
) -> (f32, Duration) {
    let ei = envelope(input, rate);
    let eo = envelope(output, rate);
    let max_lag = (max_delay.as_millis() / 10) as usize;
    let mut best = (f32::MIN, 0usize);
    for lag in 0..=max_lag.min(eo.len().saturating_sub(1)) {
        let c = pearson(&ei, &eo[lag..]);
        if c > best.0 {
            best = (c, lag);
        }
    }
    let coarse = best.1;
    let mut scores = Vec::new();
    for (w, window) in ei.chunks(100).enumerate() {
        let mean = window.iter().sum::<f32>() / window.len() as f32;
        let spread = (window.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>()
            / window.len() as f32)
            .sqrt();
        if window.len() < 50 || spread < 3.0 {
            continue;
        }
        let start = w * 100;
        let mut window_best = f32::MIN;
        for lag in coarse.saturating_sub(10)..=coarse + 10 {
            let Some(out) = eo.get(start + lag..) else {
                continue;
            };
            window_best = window_best.max(pearson(window, out));
        }
        // A window the output does not reach at any delay says nothing.
        if window_best > f32::MIN {
            scores.push(window_best);
        }
    }
    let score = if scores.is_empty() {
        best.0
    } else {
        scores.iter().sum::<f32>() / scores.len() as f32
    };
    (score, Duration::from_millis(coarse as u64 * 10))
}

/// The delay of `output` against `input` to the sample, by waveform cross-correlation within
/// ±15 ms of a coarse estimate.
pub fn fine_delay(input: &[f32], output: &[f32], rate: u32, coarse: Duration) -> Duration {
    let centre = (coarse.as_secs_f64() * f64::from(rate)) as i64;
    let span = i64::from(rate) * 15 / 1000;
    // Compare a 3 s stretch from the loudest part of the input.
    let len = (rate as usize * 3).min(input.len());
    let mut best = (f32::MIN, centre);
    for lag in (centre - span).max(0)..=centre + span {
        let lag_u = lag as usize;
        if lag_u + len > output.len() {
            break;
        }
        let c: f32 = input[..len]
            .iter()
            .zip(&output[lag_u..lag_u + len])
            .map(|(a, b)| a * b)
            .sum();
        if c > best.0 {
            best = (c, lag);
        }
    }
    Duration::from_secs_f64(best.1 as f64 / f64::from(rate))
}

/// A PulseAudio daemon of the test's own, with null sinks, killed on drop.
///
/// Sinks are named as asked; each sink's monitor (`NAME.monitor`) is a source recording what
/// is played into it, so a sink can serve as a virtual microphone.
pub struct PulseAudio {
    child: Child,
    dir: PathBuf,
    /// The value for `PULSE_SERVER`.
    pub server: String,
}

impl PulseAudio {
    /// Starts `pulseaudio` with one null sink per name (description = the name).
    pub fn start(sinks: &[&str]) -> PulseAudio {
        let dir = std::env::temp_dir().join(format!(
            "squadlink-pulse-{}-{}",
            std::process::id(),
            crate::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("native");
        let server = format!("unix:{}", socket.display());
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            "--system=false",
            "--log-target=stderr",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix socket={} auth-anonymous=1",
            socket.display()
        ))
        .env("HOME", &dir)
        .env("XDG_RUNTIME_DIR", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("pulse.log")).expect("log"),
        ));
        for name in sinks {
            cmd.arg(format!(
                "--load=module-null-sink sink_name={name} rate=48000 sink_properties=device.description={name}"
            ));
        }
        let child = cmd.spawn().expect(
            "pulseaudio is not installed: run scripts/setup.sh (apt-get install pulseaudio)",
        );
        let pulse = PulseAudio { child, dir, server };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pulse.pactl(&["info"]).is_some() {
                return pulse;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pulseaudio did not start: {}", pulse.log());
    }

    /// Runs pactl against this daemon; its output when it succeeded.
    pub fn pactl(&self, args: &[&str]) -> Option<String> {
        let out = self.command("pactl").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command with `PULSE_SERVER` pointing at this daemon.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PULSE_SERVER", &self.server)
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir);
        cmd
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pulse.log")).unwrap_or_default()
    }
}

impl Drop for PulseAudio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
