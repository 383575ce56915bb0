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

use super::clock::DeviceClock;
use super::error::{Direction, VoiceError};
use super::format::{SAMPLE_RATE, samples_duration};
use super::io::{AudioSink, AudioSource, BLOCK, RenderFn};
use crate::join::{STOP_WAIT, join_within};

/// The device period we ask for (5 ms): small, so little audio waits in device buffers.
const PERIOD_FRAMES: u32 = 240;
/// Ring capacity: 200 ms.
const RING: usize = 9600 * 2;

/// Counters shared with a device callback.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    /// Samples the ring had no room for (input) or did not have (output).
    pub xruns: AtomicU64,
    /// Callbacks that found the ring full (input) or short (output).
    pub short_callbacks: AtomicU64,
    /// Callbacks run.
    pub callbacks: AtomicU64,
    /// Set when the stream reported an error.
    pub failed: AtomicBool,
    /// Output rendering in the callback: nanoseconds spent rendering (the mix's own cost on
    /// the device's thread, which wakes anyway).
    pub render_nanos: AtomicU64,
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
            // It failed to open the device and is returning.
            join_within(handle, STOP_WAIT);
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

/// A device that stopped calling back for this long is paused (by the sound server): the
/// voice threads then check on it now and then instead of keeping its ring full.
const STALLED: Duration = Duration::from_millis(20);

/// The input callback's work: mono samples into the ring.
fn capture_into(
    producer: &mut rtrb::Producer<f32>,
    data: &[f32],
    channels: usize,
    counters: &DeviceCounters,
    clock: &DeviceClock,
) {
    counters.callbacks.fetch_add(1, Ordering::Relaxed);
    let channels = channels.max(1);
    let mut lost = 0u64;
    for frame in data.chunks(channels) {
        let mono = frame.iter().sum::<f32>() / frame.len() as f32;
        if producer.push(mono).is_err() {
            lost += 1;
        }
    }
    if lost > 0 {
        counters.xruns.fetch_add(lost, Ordering::Relaxed);
        counters.short_callbacks.fetch_add(1, Ordering::Relaxed);
    }
    clock.tick(data.len() / channels);
}

/// Writes one stereo frame to a device frame of any channel count (mono: the average;
/// more than two: the rest silent).
fn put_stereo(frame: &mut [f32], l: f32, r: f32) {
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

/// The output callback's work: stereo samples from the ring to the device's channels.
fn play_from(
    consumer: &mut rtrb::Consumer<f32>,
    data: &mut [f32],
    channels: usize,
    counters: &DeviceCounters,
    clock: &DeviceClock,
) {
    let channels = channels.max(1);
    clock.tick(data.len() / channels);
    counters.callbacks.fetch_add(1, Ordering::Relaxed);
    let mut missing = 0u64;
    for frame in data.chunks_mut(channels) {
        let (l, r) = match (consumer.pop(), consumer.pop()) {
            (Ok(l), Ok(r)) => (l, r),
            _ => {
                missing += 1;
                (0.0, 0.0)
            }
        };
        put_stereo(frame, l, r);
    }
    if missing > 0 {
        counters.xruns.fetch_add(missing, Ordering::Relaxed);
        counters.short_callbacks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Stereo frames rendered in one go in a callback; a longer period takes several.
const CALLBACK_SCRATCH: usize = 4096;

/// The output callback's state: it plays from the ring until a renderer is installed
/// ([`AudioSink::render_in_callback`]), then renders each period itself.
struct Output {
    consumer: rtrb::Consumer<f32>,
    install: crossbeam_channel::Receiver<RenderFn>,
    render: Option<RenderFn>,
    /// Interleaved stereo, allocated once.
    scratch: Vec<f32>,
    counters: Arc<DeviceCounters>,
    clock: Arc<DeviceClock>,
}

/// What a [`DeviceSink`] keeps of its callback's state: the ring's writing end, the
/// renderer's way in, and what the callback shares.
struct SinkSide {
    producer: rtrb::Producer<f32>,
    install: crossbeam_channel::Sender<RenderFn>,
    counters: Arc<DeviceCounters>,
    clock: Arc<DeviceClock>,
}

impl Output {
    /// A callback's state and the sink's side of it, connected.
    fn with_sink() -> (Self, SinkSide) {
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(RING);
        let (install, installed) = crossbeam_channel::bounded(1);
        let counters = Arc::new(DeviceCounters::default());
        let clock = Arc::new(DeviceClock::new());
        let output = Self {
            consumer,
            install: installed,
            render: None,
            scratch: vec![0.0; 2 * CALLBACK_SCRATCH],
            counters: Arc::clone(&counters),
            clock: Arc::clone(&clock),
        };
        let sink = SinkSide {
            producer,
            install,
            counters,
            clock,
        };
        (output, sink)
    }

    /// One callback: fills `data` (`channels` interleaved). Lock-free, allocation-free.
    fn run(&mut self, data: &mut [f32], channels: usize) {
        if self.render.is_none()
            && let Ok(render) = self.install.try_recv()
        {
            self.render = Some(render);
        }
        let Some(render) = self.render.as_mut() else {
            play_from(
                &mut self.consumer,
                data,
                channels,
                &self.counters,
                &self.clock,
            );
            return;
        };
        let channels = channels.max(1);
        let started = Instant::now();
        self.clock.tick(data.len() / channels);
        self.counters.callbacks.fetch_add(1, Ordering::Relaxed);
        for part in data.chunks_mut(CALLBACK_SCRATCH * channels) {
            let frames = part.len() / channels;
            let Some(stereo) = self.scratch.get_mut(..frames * 2) else {
                continue;
            };
            render(started, stereo);
            for (frame, lr) in part.chunks_mut(channels).zip(stereo.chunks_exact(2)) {
                if let [l, r] = lr {
                    put_stereo(frame, *l, *r);
                }
            }
        }
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .render_nanos
            .fetch_add(spent, Ordering::Relaxed);
    }
}

/// Calls `callback(due)` every `period` frames from `start`, on time, on its own thread:
/// what a sound card's callback thread does, for emulated devices.
fn emulate(
    name: &str,
    period: usize,
    start: Instant,
    mut callback: impl FnMut(Instant) + Send + 'static,
) -> Result<StreamThread, VoiceError> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let step = samples_duration(period.max(1));
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut due = start;
            while !stopped.load(Ordering::Relaxed) {
                let now = Instant::now();
                if due > now {
                    // At most 50 ms at a time, so a stop is noticed.
                    std::thread::sleep((due - now).min(Duration::from_millis(50)));
                    continue;
                }
                callback(due);
                due += step;
            }
        })
        .map_err(|e| VoiceError::Start(format!("emulated device thread: {e}")))?;
    Ok(StreamThread {
        stop,
        thread: Some(thread),
    })
}

/// A stream's thread: the cpal stream's keeper, or an emulated device.
struct StreamThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            join_within(t, STOP_WAIT);
        }
    }
}

/// A microphone: cpal's input stream feeding a ring the voice thread reads.
pub struct DeviceSource {
    consumer: rtrb::Consumer<f32>,
    name: String,
    counters: Arc<DeviceCounters>,
    clock: Arc<DeviceClock>,
    _stream: StreamThread,
}

impl DeviceSource {
    /// Opens the default microphone, or the one named.
    pub fn open(name: Option<&str>) -> Result<Self, VoiceError> {
        let (mut producer, consumer) = rtrb::RingBuffer::<f32>::new(RING);
        let counters = Arc::new(DeviceCounters::default());
        let clock = Arc::new(DeviceClock::new());
        let (cb, cb_clock) = (Arc::clone(&counters), Arc::clone(&clock));
        let on_error = on_stream_error(&counters);
        let (stream, name) =
            open_stream(Direction::Input, name, move |device, config, channels| {
                device.build_input_stream::<f32, _, _>(
                    config,
                    move |data: &[f32], _| {
                        capture_into(&mut producer, data, channels, &cb, &cb_clock);
                    },
                    on_error,
                    Some(Duration::from_secs(3)),
                )
            })?;
        Ok(Self {
            consumer,
            name,
            counters,
            clock,
            _stream: stream,
        })
    }

    /// A microphone emulated in software, for measurements and tests without a sound card:
    /// a thread delivers `period` mono frames every period, in real time from `start`, as a
    /// sound card's callback would. `capture` fills each period just captured, given the
    /// time of its first sample. Everything past the callback is the real device code.
    pub(crate) fn emulated(
        period: usize,
        start: Instant,
        mut capture: impl FnMut(Instant, &mut [f32]) + Send + 'static,
    ) -> Result<Self, VoiceError> {
        let (mut producer, consumer) = rtrb::RingBuffer::<f32>::new(RING);
        let counters = Arc::new(DeviceCounters::default());
        let clock = Arc::new(DeviceClock::new());
        let (cb, cb_clock) = (Arc::clone(&counters), Arc::clone(&clock));
        let period = period.max(1);
        let mut buf = vec![0.0f32; period];
        let step = samples_duration(period);
        // A period is delivered when it has been captured, one period after it began.
        let stream = emulate("sl-emulated-mic", period, start + step, move |due| {
            capture(due.checked_sub(step).unwrap_or(due), &mut buf);
            capture_into(&mut producer, &buf, 1, &cb, &cb_clock);
        })?;
        Ok(Self {
            consumer,
            name: "emulated microphone".into(),
            counters,
            clock,
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
            // Wake just after the callback that completes the frame (one wake a frame). The
            // callback may have delivered since the loop's check: `missing` can be 0.
            let missing = frame.len().saturating_sub(self.consumer.slots());
            let wake = match self.clock.next() {
                Some((due, _)) if now > due + STALLED => now + Duration::from_millis(5),
                Some((due, per)) => {
                    let more = missing.div_ceil(per).saturating_sub(1);
                    due + samples_duration(more * per) + Duration::from_micros(60)
                }
                None => now + samples_duration(missing),
            };
            let sleep = wake.min(deadline).saturating_duration_since(now);
            std::thread::sleep(sleep.max(Duration::from_micros(50)));
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

/// How long before the device's next callback a block is rendered, at first, at least and
/// at most. It grows when the device finds the ring short and shrinks slowly while it does
/// not: the least that works on this machine.
const LEAD_START: Duration = Duration::from_micros(1500);
const LEAD_MIN: Duration = Duration::from_micros(1000);
const LEAD_MAX: Duration = Duration::from_millis(12);
const LEAD_UP: Duration = Duration::from_millis(1);
const LEAD_DOWN: Duration = Duration::from_micros(250);
/// Callbacks without a shortfall before the lead shrinks (1 s at 5 ms periods).
const LEAD_CALM: u64 = 200;
/// Callbacks at start whose shortfalls do not count (the stream settling).
const WARM_UP: u64 = 4;

/// Speakers or headphones.
///
/// Rendering is just in time: a block is asked for [`DeviceSink::lead`] before the callback
/// that will play it, so it waits in the ring about that long instead of a whole period.
pub struct DeviceSink {
    producer: rtrb::Producer<f32>,
    name: String,
    counters: Arc<DeviceCounters>,
    clock: Arc<DeviceClock>,
    _stream: StreamThread,
    lead: Duration,
    shortfalls_seen: u64,
    calm_since: u64,
    /// Hands the callback its renderer (see [`AudioSink::render_in_callback`]).
    install: crossbeam_channel::Sender<RenderFn>,
    /// The callback renders: `wait` only watches the device.
    rendering: bool,
}

impl DeviceSink {
    /// Opens the default output device, or the one named.
    pub fn open(name: Option<&str>) -> Result<Self, VoiceError> {
        let (mut output, sink) = Output::with_sink();
        let on_error = on_stream_error(&sink.counters);
        let (stream, name) =
            open_stream(Direction::Output, name, move |device, config, channels| {
                device.build_output_stream::<f32, _, _>(
                    config,
                    move |data: &mut [f32], _| output.run(data, channels),
                    on_error,
                    Some(Duration::from_secs(3)),
                )
            })?;
        Ok(Self::new(sink, name, stream))
    }

    /// A speaker emulated in software, for measurements and tests without a sound card: a
    /// thread takes `period` stereo frames from the ring every period, in real time from
    /// `start`, as a sound card's callback would, and hands each block to `played` with the
    /// time its first frame plays. Everything before the callback is the real device code.
    pub(crate) fn emulated(
        period: usize,
        start: Instant,
        mut played: impl FnMut(Instant, &[f32]) + Send + 'static,
    ) -> Result<Self, VoiceError> {
        let (mut output, sink) = Output::with_sink();
        let mut buf = vec![0.0f32; period.max(1) * 2];
        let stream = emulate("sl-emulated-speaker", period, start, move |due| {
            output.run(&mut buf, 2);
            played(due, &buf);
        })?;
        Ok(Self::new(sink, "emulated speaker".into(), stream))
    }

    fn new(sink: SinkSide, name: String, stream: StreamThread) -> Self {
        Self {
            producer: sink.producer,
            name,
            counters: sink.counters,
            clock: sink.clock,
            _stream: stream,
            lead: LEAD_START,
            shortfalls_seen: 0,
            calm_since: 0,
            install: sink.install,
            rendering: false,
        }
    }

    /// Underrun and callback counters.
    pub fn counters(&self) -> Arc<DeviceCounters> {
        Arc::clone(&self.counters)
    }

    /// How long before the device needs it a block is rendered now.
    pub fn lead(&self) -> Duration {
        self.lead
    }

    fn adapt_lead(&mut self) {
        let callbacks = self.counters.callbacks.load(Ordering::Relaxed);
        let shortfalls = self.counters.short_callbacks.load(Ordering::Relaxed);
        if callbacks <= WARM_UP {
            self.shortfalls_seen = shortfalls;
            self.calm_since = callbacks;
            return;
        }
        let shortfall = shortfalls > self.shortfalls_seen;
        let calm = callbacks.saturating_sub(self.calm_since);
        let lead = next_lead(self.lead, shortfall, calm);
        if lead != self.lead {
            tracing::debug!(
                ?lead,
                shortfalls,
                "output: rendering ahead of the device by"
            );
            self.lead = lead;
        }
        if shortfall || calm >= LEAD_CALM {
            self.calm_since = callbacks;
        }
        self.shortfalls_seen = shortfalls;
    }
}

/// The lead after a check: longer after a shortfall, a little shorter after a calm spell.
fn next_lead(lead: Duration, shortfall: bool, calm_callbacks: u64) -> Duration {
    if shortfall {
        (lead + LEAD_UP).min(LEAD_MAX)
    } else if calm_callbacks >= LEAD_CALM {
        lead.saturating_sub(LEAD_DOWN).max(LEAD_MIN)
    } else {
        lead
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
            if self.rendering {
                // The callback renders; this only watches for a failure.
                let now = Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
                continue;
            }
            self.adapt_lead();
            let queued = (RING - self.producer.slots()) / 2;
            let now = Instant::now();
            let wake = match self.clock.next() {
                // Not started: one block ready for the first callback.
                None if queued < BLOCK => return Ok(BLOCK),
                None => now + Duration::from_millis(1),
                Some((due, need)) => {
                    if now > due + STALLED && queued >= need {
                        now + Duration::from_millis(5)
                    } else {
                        // The first callback the ring cannot serve, less the lead.
                        let short_at = due + samples_duration(queued / need * need);
                        let render_at = short_at.checked_sub(self.lead).unwrap_or(short_at);
                        if now >= render_at {
                            return Ok(BLOCK);
                        }
                        render_at
                    }
                }
            };
            if now >= deadline {
                return Ok(0);
            }
            std::thread::sleep(wake.min(deadline) - now);
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

    /// Takes the renderer: the device's callback calls it every period, so the mix is made
    /// when the device needs it (no lead, no thread of ours waking each period).
    fn render_in_callback(&mut self, render: RenderFn) -> Result<(), RenderFn> {
        match self.install.try_send(render) {
            Ok(()) => {
                self.rendering = true;
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_grows_after_a_shortfall_and_shrinks_when_calm() {
        let mut lead = LEAD_START;
        lead = next_lead(lead, true, 0);
        assert_eq!(lead, LEAD_START + LEAD_UP);
        assert_eq!(next_lead(lead, false, LEAD_CALM - 1), lead);
        assert_eq!(next_lead(lead, false, LEAD_CALM), lead - LEAD_DOWN);
        let mut low = LEAD_MIN;
        for _ in 0..10 {
            low = next_lead(low, false, LEAD_CALM);
        }
        assert_eq!(low, LEAD_MIN);
        let mut high = LEAD_START;
        for _ in 0..100 {
            high = next_lead(high, true, 0);
        }
        assert_eq!(high, LEAD_MAX);
    }
}
