//! Where voice audio comes from and goes to: the [`AudioSource`] / [`AudioSink`] traits and
//! their WAV, synthetic, manual (bring your own audio) and silent implementations. The
//! sound-card ones are in `device.rs`.
//!
//! Sources give mono 48 kHz frames of 20 ms; sinks take interleaved stereo 48 kHz. Both set
//! the pace: a source's `read` returns when the frame has been captured, a sink's `wait`
//! when it needs more audio. That is what lets playout be clocked by the output device.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::VoiceError;
use super::format::SAMPLE_RATE;

/// Stereo frames a paced sink asks for at a time (5 ms).
pub const BLOCK: usize = 240;

/// A source of microphone audio: mono, 48 kHz, 20 ms frames.
pub trait AudioSource: Send {
    /// Fills `frame` (960 samples) with the next 20 ms of audio, waiting at most `timeout`
    /// for it. `Ok(false)` means nothing yet; an error ends capture (and is reported).
    fn read(&mut self, frame: &mut [f32], timeout: Duration) -> Result<bool, VoiceError>;
    /// A name for logs and events.
    fn describe(&self) -> String;
}

/// A place to play the voice mix: interleaved stereo, 48 kHz.
pub trait AudioSink: Send {
    /// Waits at most `timeout` until the sink needs more audio; returns how many stereo
    /// frames to write now (0: not yet).
    fn wait(&mut self, timeout: Duration) -> Result<usize, VoiceError>;
    /// Plays interleaved stereo samples.
    fn write(&mut self, stereo: &[f32]) -> Result<(), VoiceError>;
    /// A name for logs and events.
    fn describe(&self) -> String;
    /// Offers the sink the mix's renderer, to call from its own real-time callback (a sound
    /// card's) instead of being written to: `render(now, stereo)` fills interleaved stereo
    /// and never allocates, frees, locks or blocks. A sink that takes it returns `Ok`; from
    /// then on [`AudioSink::wait`] only sleeps (or reports a failed device) and `write` is
    /// not called. The default declines and hands the renderer back.
    fn render_in_callback(&mut self, render: RenderFn) -> Result<(), RenderFn> {
        Err(render)
    }
}

/// The mix's renderer as a sink may call it: `render(now, stereo)` (see
/// [`AudioSink::render_in_callback`]).
pub type RenderFn = Box<dyn FnMut(Instant, &mut [f32]) + Send>;

/// Real-time pacing for sources and sinks that have no device clock.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    start: Option<Instant>,
    samples: u64,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        Self {
            start: None,
            samples: 0,
        }
    }

    /// When the sample count reached so far is due in real time.
    fn due(&mut self) -> Instant {
        let start = *self.start.get_or_insert_with(Instant::now);
        start + Duration::from_secs_f64(self.samples as f64 / f64::from(SAMPLE_RATE))
    }

    /// Waits until `ahead` samples past the current count are due (at most `timeout`);
    /// whether they are.
    fn wait(&mut self, ahead: u64, timeout: Duration) -> bool {
        let due = self.due() + Duration::from_secs_f64(ahead as f64 / f64::from(SAMPLE_RATE));
        let now = Instant::now();
        if due <= now {
            return true;
        }
        let sleep = due - now;
        if sleep > timeout {
            std::thread::sleep(timeout);
            return false;
        }
        std::thread::sleep(sleep);
        true
    }

    /// For paced sinks: [`BLOCK`] once the audio written so far is due, 0 at the timeout.
    fn block_due(&mut self, timeout: Duration) -> usize {
        if self.wait(0, timeout) { BLOCK } else { 0 }
    }

    fn advance(&mut self, samples: usize) {
        self.samples += samples as u64;
    }
}

/// Plays a WAV file as the microphone, in real time, then silence.
///
/// Any sample rate and channel count is accepted: channels are averaged and the rate is
/// converted to 48 kHz (linear interpolation, fine for speech tests).
pub struct WavSource {
    path: PathBuf,
    samples: Vec<f32>,
    pos: usize,
    pacer: Pacer,
    finished: Arc<AtomicBool>,
}

impl WavSource {
    /// Reads the whole file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VoiceError> {
        let path = path.as_ref().to_path_buf();
        let samples = read_wav_mono_48k(&path)?;
        Ok(Self::from_samples(path, samples))
    }

    /// A source from samples already in memory (mono, 48 kHz).
    pub fn from_samples(name: impl Into<PathBuf>, samples: Vec<f32>) -> Self {
        Self {
            path: name.into(),
            samples,
            pos: 0,
            pacer: Pacer::new(),
            finished: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Becomes true once the whole file has been read.
    pub fn finished_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.finished)
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, frame: &mut [f32], timeout: Duration) -> Result<bool, VoiceError> {
        if !self.pacer.wait(frame.len() as u64, timeout) {
            return Ok(false);
        }
        self.pacer.advance(frame.len());
        for s in frame.iter_mut() {
            *s = self.samples.get(self.pos).copied().unwrap_or(0.0);
            self.pos += 1;
        }
        if self.pos >= self.samples.len() {
            self.finished.store(true, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("WAV file {}", self.path.display())
    }
}

/// Reads a WAV file as mono 48 kHz samples in [-1, 1].
pub fn read_wav_mono_48k(path: &Path) -> Result<Vec<f32>, VoiceError> {
    let file = std::fs::File::open(path).map_err(|e| VoiceError::Wav {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    read_wav_mono_48k_from(path, std::io::BufReader::new(file))
}

/// Most samples a WAV file may hold (10 minutes of 48 kHz stereo): a header that claims more
/// is refused before anything is allocated for it.
const MAX_WAV_SAMPLES: u32 = 48_000 * 2 * 600;

/// Reads WAV data from `reader` as mono 48 kHz samples; `path` names it in errors.
pub(crate) fn read_wav_mono_48k_from(
    path: &Path,
    reader: impl std::io::Read,
) -> Result<Vec<f32>, VoiceError> {
    let wav_error = |e: hound::Error| VoiceError::Wav {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut reader = hound::WavReader::new(reader).map_err(wav_error)?;
    if reader.len() > MAX_WAV_SAMPLES {
        return Err(VoiceError::Wav {
            path: path.to_path_buf(),
            reason: format!(
                "{} samples: more than {MAX_WAV_SAMPLES} (10 minutes of 48 kHz stereo)",
                reader.len()
            ),
        });
    }
    let spec = reader.spec();
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_error)?,
        hound::SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample.max(1)) - 1);
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(wav_error)?
        }
    };
    let channels = usize::from(spec.channels.max(1));
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    Ok(resample_linear(&mono, spec.sample_rate, SAMPLE_RATE))
}

/// Linear-interpolation resampling (speech fixtures and files; not for music).
pub(crate) fn resample_linear(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() || from == 0 {
        return input.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    let n = (input.len() as f64 / ratio).floor() as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * ratio;
            let k = x.floor() as usize;
            let t = (x - k as f64) as f32;
            let a = input.get(k).copied().unwrap_or(0.0);
            let b = input.get(k + 1).copied().unwrap_or(a);
            a + (b - a) * t
        })
        .collect()
}

/// Writes the voice mix to a WAV file (16-bit stereo, 48 kHz), paced in real time.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    pacer: Pacer,
}

impl WavSink {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, VoiceError> {
        let path = path.as_ref().to_path_buf();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|e| VoiceError::Wav {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path,
            writer: Some(writer),
            pacer: Pacer::new(),
        })
    }

    fn finish(&mut self) -> Result<(), VoiceError> {
        if let Some(writer) = self.writer.take() {
            writer.finalize().map_err(|e| VoiceError::Wav {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

impl AudioSink for WavSink {
    fn wait(&mut self, timeout: Duration) -> Result<usize, VoiceError> {
        Ok(self.pacer.block_due(timeout))
    }

    fn write(&mut self, stereo: &[f32]) -> Result<(), VoiceError> {
        self.pacer.advance(stereo.len() / 2);
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for s in stereo {
            let v = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
            writer.write_sample(v).map_err(|e| VoiceError::Wav {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("WAV file {}", self.path.display())
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(%e, "voice output file not finished");
        }
    }
}

/// A test signal: a tone switched on and off, in real time.
pub struct SyntheticSource {
    frequency: f32,
    amplitude: f32,
    on: usize,
    off: usize,
    n: usize,
    pacer: Pacer,
}

impl SyntheticSource {
    /// A steady sine tone.
    pub fn tone(frequency: f32, amplitude: f32) -> Self {
        Self {
            frequency,
            amplitude,
            on: usize::MAX,
            off: 0,
            n: 0,
            pacer: Pacer::new(),
        }
    }

    /// The tone in bursts: `on` of tone, then `off` of silence, repeated.
    pub fn bursts(mut self, on: Duration, off: Duration) -> Self {
        self.on = (on.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
        self.off = (off.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
        self
    }

    /// Silence.
    pub fn silence() -> Self {
        Self::tone(0.0, 0.0)
    }
}

impl AudioSource for SyntheticSource {
    fn read(&mut self, frame: &mut [f32], timeout: Duration) -> Result<bool, VoiceError> {
        if !self.pacer.wait(frame.len() as u64, timeout) {
            return Ok(false);
        }
        self.pacer.advance(frame.len());
        let period = self.on.saturating_add(self.off).max(1);
        for s in frame.iter_mut() {
            let on = self.off == 0 || self.n % period < self.on;
            let t = self.n as f32 / SAMPLE_RATE as f32;
            *s = if on {
                self.amplitude * (std::f32::consts::TAU * self.frequency * t).sin()
            } else {
                0.0
            };
            self.n = self.n.wrapping_add(1);
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("synthetic {} Hz tone", self.frequency)
    }
}

/// Microphone audio the game pushes itself ([`super::Voice::push_capture`]).
pub(crate) struct ManualSource {
    pub(crate) consumer: rtrb::Consumer<f32>,
}

impl AudioSource for ManualSource {
    fn read(&mut self, frame: &mut [f32], timeout: Duration) -> Result<bool, VoiceError> {
        let deadline = Instant::now() + timeout;
        while self.consumer.slots() < frame.len() {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let Ok(chunk) = self.consumer.read_chunk(frame.len()) else {
            return Ok(false);
        };
        let (a, b) = chunk.as_slices();
        let (fa, fb) = frame.split_at_mut(a.len().min(frame.len()));
        fa.copy_from_slice(a.get(..fa.len()).unwrap_or(&[]));
        for (dst, src) in fb.iter_mut().zip(b) {
            *dst = *src;
        }
        chunk.commit_all();
        Ok(true)
    }

    fn describe(&self) -> String {
        "audio pushed by the game".into()
    }
}

/// Discards the mix, in real time (no output device: speaking indicators still work).
pub struct NullSink {
    pacer: Pacer,
}

impl NullSink {
    /// A sink that plays nothing.
    pub fn new() -> Self {
        Self {
            pacer: Pacer::new(),
        }
    }
}

impl Default for NullSink {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioSink for NullSink {
    fn wait(&mut self, timeout: Duration) -> Result<usize, VoiceError> {
        Ok(self.pacer.block_due(timeout))
    }

    fn write(&mut self, stereo: &[f32]) -> Result<(), VoiceError> {
        self.pacer.advance(stereo.len() / 2);
        Ok(())
    }

    fn describe(&self) -> String {
        "no output".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::FRAME;

    #[test]
    fn resampling_keeps_duration_and_shape() {
        let input: Vec<f32> = (0..22_050).map(|i| (i as f32 * 0.01).sin()).collect();
        let out = resample_linear(&input, 22_050, 48_000);
        assert!((out.len() as i64 - 48_000).abs() <= 1, "{}", out.len());
        // Same value at the same time.
        assert!((out[24_000] - input[11_025]).abs() < 0.01);
    }

    #[test]
    fn wav_round_trip_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("squadlink-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wav");
        {
            let mut sink = WavSink::create(&path).unwrap();
            let stereo: Vec<f32> = (0..960).flat_map(|i| [i as f32 / 1000.0, 0.0]).collect();
            sink.write(&stereo).unwrap();
        }
        let mono = read_wav_mono_48k(&path).unwrap();
        assert_eq!(mono.len(), 960);
        assert!((mono[500] - 0.25).abs() < 0.001, "{}", mono[500]);
        let err = WavSource::open(dir.join("missing.wav")).err().unwrap();
        assert!(err.to_string().contains("missing.wav"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn synthetic_bursts_switch_on_and_off() {
        let mut s = SyntheticSource::tone(440.0, 0.5)
            .bursts(Duration::from_millis(20), Duration::from_millis(20));
        let mut a = vec![0.0; FRAME];
        let mut b = vec![0.0; FRAME];
        assert!(s.read(&mut a, Duration::from_secs(1)).unwrap());
        assert!(s.read(&mut b, Duration::from_secs(1)).unwrap());
        assert!(a.iter().any(|x| x.abs() > 0.4));
        assert!(b.iter().all(|x| *x == 0.0));
    }
}
