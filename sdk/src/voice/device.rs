//! Sound cards through cpal: a microphone [`DeviceSource`] and a speaker [`DeviceSink`].
//!
//! The cpal callbacks only copy samples to or from a lock-free ring (rtrb) and count
//! overruns and underruns in atomics: no locks, allocation, logging or blocking there. Each
//! stream lives on its own small thread (cpal streams are not `Send` on every platform).
//!
//! cpal hands out a "default device" even on a machine without a sound card; the stream
//! then fails to build. Both cases come back as [`VoiceError::Device`], saying what to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::io::{AudioSink, AudioSource, BLOCK};
use super::{SAMPLE_RATE, VoiceError};

/// The device period we ask for (5 ms): small, so little audio waits in device buffers.
const PERIOD_FRAMES: u32 = 240;
/// Ring capacity: 200 ms.
const RING: usize = 9600 * 2;

/// Which way a device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A microphone.
    Input,
    /// Speakers or headphones.
    Output,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Input => "input",
            Self::Output => "output",
        })
    }
}

/// Counters shared with a device callback.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    /// Samples the ring had no room for (input) or did not have (output).
    pub xruns: AtomicU64,
    /// Callbacks run.
    pub callbacks: AtomicU64,
    /// Set when the stream reported an error.
    pub failed: AtomicBool,
}

/// The audio host: PulseAudio when a server is reachable, otherwise ALSA.
fn host() -> Result<cpal::Host, VoiceError> {
    let available = cpal::available_hosts();
    let preferred = [cpal::HostId::PulseAudio, cpal::HostId::Alsa];
    for id in preferred {
        if available.contains(&id)
            && let Ok(host) = cpal::host_from_id(id)
        {
            return Ok(host);
        }
    }
    Err(VoiceError::Device {
        direction: Direction::Output,
        reason: "no audio system found (neither PulseAudio nor ALSA); install and start \
                 PulseAudio or PipeWire, or use a WAV file / manual audio instead"
            .into(),
    })
}

fn find_device(
    host: &cpal::Host,
    direction: Direction,
    name: Option<&str>,
) -> Result<cpal::Device, VoiceError> {
    let device_error = |reason: String| VoiceError::Device { direction, reason };
    match name {
        None => match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        }
        .ok_or_else(|| {
            device_error(format!(
                "no default {direction} device; plug one in, or choose one by name \
                 (Voice::device_names lists them)"
            ))
        }),
        Some(wanted) => {
            let devices = match direction {
                Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
                Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
            }
            .map_err(|e| device_error(format!("cannot list devices: {e}")))?;
            let mut names = Vec::new();
            for device in devices {
                let device_name = device_name(&device);
                if device_name == wanted {
                    return Ok(device);
                }
                names.push(device_name);
            }
            Err(device_error(format!(
                "no {direction} device named {wanted:?}; there are: {}",
                names.join(", ")
            )))
        }
    }
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "unnamed device".into())
}

/// The names of the machine's input or output devices.
pub fn device_names(direction: Direction) -> Result<Vec<String>, VoiceError> {
    let host = host()?;
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .map_err(|e| VoiceError::Device {
        direction,
        reason: format!("cannot list devices: {e}"),
    })?;
    Ok(devices.iter().map(device_name).collect())
}

/// Picks 48 kHz f32 with one channel, else two (mixed or duplicated by the callback).
fn stream_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<cpal::StreamConfig, VoiceError> {
    let configs: Vec<cpal::SupportedStreamConfigRange> = match direction {
        Direction::Input => device.supported_input_configs().map(|c| c.collect()),
        Direction::Output => device.supported_output_configs().map(|c| c.collect()),
    }
    .map_err(|e| VoiceError::Device {
        direction,
        reason: format!("{} cannot report its formats: {e}", device_name(device)),
    })?;
    let fits = |channels: u16| {
        configs.iter().any(|c| {
            c.channels() == channels
                && c.sample_format() == cpal::SampleFormat::F32
                && c.min_sample_rate() <= SAMPLE_RATE
                && c.max_sample_rate() >= SAMPLE_RATE
        })
    };
    let channels = [1u16, 2]
        .into_iter()
        .find(|c| fits(*c))
        .ok_or_else(|| VoiceError::Device {
            direction,
            reason: format!(
                "{} does not offer 48 kHz float audio with 1 or 2 channels; choose another \
                 device, or run through PulseAudio/PipeWire, which convert",
                device_name(device)
            ),
        })?;
    Ok(cpal::StreamConfig {
        channels,
        sample_rate: SAMPLE_RATE,
        buffer_size: cpal::BufferSize::Fixed(PERIOD_FRAMES),
    })
}

/// Opens the `direction` device called `wanted` (or the default one) on a thread of its own
/// that keeps the stream alive until the returned [`StreamThread`] is dropped. `build`
/// makes the stream from the device, its configuration and its channel count (with
/// [`on_stream_error`] as its error callback); the error messages are shared. Returns the thread and the device's name.
fn open_stream<F>(
    direction: Direction,
    wanted: Option<&str>,
    build: F,
) -> Result<(StreamThread, String), VoiceError>
where
    F: FnOnce(&cpal::Device, cpal::StreamConfig, usize) -> Result<cpal::Stream, cpal::Error>
        + Send
        + 'static,
{
    let wanted = wanted.map(str::to_owned);
    let open = move || -> Result<(cpal::Stream, String), VoiceError> {
        let host = host()?;
        let device = find_device(&host, direction, wanted.as_deref())?;
        let config = stream_config(&device, direction)?;
        let name = device_name(&device);
        let channels = usize::from(config.channels.max(1));
        let stream = build(&device, config, channels).map_err(|e| VoiceError::Device {
            direction,
            reason: match direction {
                Direction::Input => format!(
                    "{name} cannot be opened: {e} (no microphone? use a WAV file or manual \
                     audio instead)"
                ),
                Direction::Output => format!(
                    "{name} cannot be opened: {e} (no speakers? voice still runs without \
                     output, or use a WAV file)"
                ),
            },
        })?;
        Ok((stream, name))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let keep_running = Arc::clone(&stop);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::Builder::new()
        .name(format!("sl-audio-{direction}"))
        .spawn(move || {
            let stream = match open() {
                Ok((stream, name)) => match stream.play() {
                    Ok(()) => {
                        let _ = tx.send(Ok(name));
                        stream
                    }
                    Err(e) => {
                        let _ = tx.send(Err(VoiceError::Device {
                            direction,
                            reason: format!("{name} would not start: {e}"),
                        }));
                        return;
                    }
                },
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !keep_running.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            drop(stream);
        })
        .map_err(|e| VoiceError::Device {
            direction,
            reason: format!("cannot start the audio thread: {e}"),
        })?;
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(name)) => Ok((
            StreamThread {
                stop,
                thread: Some(handle),
            },
            name,
        )),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(VoiceError::Device {
            direction,
            reason: "the audio device did not start within 5 s".into(),
        }),
    }
}

/// The error callback of a stream: marks the device failed (read by the voice threads).
fn on_stream_error(counters: &Arc<DeviceCounters>) -> impl FnMut(cpal::Error) + Send + 'static {
    let c = Arc::clone(counters);
    move |_err| c.failed.store(true, Ordering::Relaxed)
}

/// The thread keeping a cpal stream alive; stops and joins it when dropped.
struct StreamThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A microphone.
pub struct DeviceSource {
    consumer: rtrb::Consumer<f32>,
    name: String,
    counters: Arc<DeviceCounters>,
    _stream: StreamThread,
}

impl DeviceSource {
    /// Opens the default microphone, or the one named.
    pub fn open(name: Option<&str>) -> Result<Self, VoiceError> {
        let (mut producer, consumer) = rtrb::RingBuffer::<f32>::new(RING);
        let counters = Arc::new(DeviceCounters::default());
        let cb = Arc::clone(&counters);
        let on_error = on_stream_error(&counters);
        let (stream, name) =
            open_stream(Direction::Input, name, move |device, config, channels| {
                device.build_input_stream::<f32, _, _>(
                    config,
                    move |data: &[f32], _| {
                        cb.callbacks.fetch_add(1, Ordering::Relaxed);
                        for frame in data.chunks(channels) {
                            let mono = frame.iter().sum::<f32>() / frame.len() as f32;
                            if producer.push(mono).is_err() {
                                cb.xruns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    },
                    on_error,
                    Some(Duration::from_secs(3)),
                )
            })?;
        Ok(Self {
            consumer,
            name,
            counters,
            _stream: stream,
        })
    }

    /// Overrun and callback counters.
    pub fn counters(&self) -> Arc<DeviceCounters> {
        Arc::clone(&self.counters)
    }
}

impl AudioSource for DeviceSource {
    fn read(&mut self, frame: &mut [f32], timeout: Duration) -> Result<bool, VoiceError> {
        let deadline = Instant::now() + timeout;
        while self.consumer.slots() < frame.len() {
            if self.counters.failed.load(Ordering::Relaxed) {
                return Err(VoiceError::Device {
                    direction: Direction::Input,
                    reason: format!("{} stopped working (unplugged?)", self.name),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Sleep about as long as the missing samples take to arrive.
            let missing = frame.len().saturating_sub(self.consumer.slots());
            let eta = Duration::from_secs_f64(missing as f64 / f64::from(SAMPLE_RATE));
            std::thread::sleep(eta.max(Duration::from_millis(1)).min(deadline - now));
        }
        let Ok(chunk) = self.consumer.read_chunk(frame.len()) else {
            return Ok(false);
        };
        for (dst, src) in frame.iter_mut().zip(chunk) {
            *dst = src;
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Speakers or headphones.
pub struct DeviceSink {
    producer: rtrb::Producer<f32>,
    name: String,
    counters: Arc<DeviceCounters>,
    _stream: StreamThread,
    /// Keep this many stereo frames queued for the device, at most.
    low_water: usize,
}

impl DeviceSink {
    /// Opens the default output device, or the one named.
    pub fn open(name: Option<&str>) -> Result<Self, VoiceError> {
        let (producer, mut consumer) = rtrb::RingBuffer::<f32>::new(RING);
        let counters = Arc::new(DeviceCounters::default());
        let cb = Arc::clone(&counters);
        let on_error = on_stream_error(&counters);
        let (stream, name) =
            open_stream(Direction::Output, name, move |device, config, channels| {
                device.build_output_stream::<f32, _, _>(
                    config,
                    move |data: &mut [f32], _| {
                        cb.callbacks.fetch_add(1, Ordering::Relaxed);
                        for frame in data.chunks_mut(channels) {
                            let (l, r) = match (consumer.pop(), consumer.pop()) {
                                (Ok(l), Ok(r)) => (l, r),
                                _ => {
                                    cb.xruns.fetch_add(1, Ordering::Relaxed);
                                    (0.0, 0.0)
                                }
                            };
                            match frame {
                                [mono] => *mono = 0.5 * (l + r),
                                [left, right, rest @ ..] => {
                                    *left = l;
                                    *right = r;
                                    rest.fill(0.0);
                                }
                                [] => {}
                            }
                        }
                    },
                    on_error,
                    Some(Duration::from_secs(3)),
                )
            })?;
        Ok(Self {
            producer,
            name,
            counters,
            _stream: stream,
            low_water: PERIOD_FRAMES as usize + BLOCK,
        })
    }

    /// Underrun and callback counters.
    pub fn counters(&self) -> Arc<DeviceCounters> {
        Arc::clone(&self.counters)
    }
}

impl AudioSink for DeviceSink {
    fn wait(&mut self, timeout: Duration) -> Result<usize, VoiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.counters.failed.load(Ordering::Relaxed) {
                return Err(VoiceError::Device {
                    direction: Direction::Output,
                    reason: format!("{} stopped working (unplugged?)", self.name),
                });
            }
            let queued = (RING - self.producer.slots()) / 2;
            if queued < self.low_water {
                return Ok(BLOCK);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(0);
            }
            // Sleep until the queue has drained to the low-water mark.
            let excess = queued + 1 - self.low_water;
            let eta = Duration::from_secs_f64(excess as f64 / f64::from(SAMPLE_RATE));
            std::thread::sleep(eta.max(Duration::from_micros(500)).min(deadline - now));
        }
    }

    fn write(&mut self, stereo: &[f32]) -> Result<(), VoiceError> {
        for s in stereo {
            if self.producer.push(*s).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
