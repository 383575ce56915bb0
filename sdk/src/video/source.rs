//! Where pictures come from: the [`VideoSource`] trait, a synthetic test pattern with a
//! readable frame counter, and Y4M files.

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use web_time::Instant;

use super::error::VideoError;
use super::frame::{I420Frame, check_size};

/// A source of pictures, paced by itself (a camera delivers at its rate; a synthetic or file
/// source sleeps until the next frame is due).
pub trait VideoSource: Send {
    /// The next picture, waiting at most `timeout`: `Ok(None)` when none came in time.
    /// An error ends the source (the camera was unplugged, the file ended).
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<I420Frame>, VideoError>;

    /// A name for logs and events ("test pattern", a camera's name, a file).
    fn describe(&self) -> String;
}

/// Waits until `due`, at most `timeout`; whether it is due.
fn wait_until(due: Instant, timeout: Duration) -> bool {
    let now = Instant::now();
    if due <= now {
        return true;
    }
    if due - now > timeout {
        std::thread::sleep(timeout);
        return false;
    }
    std::thread::sleep(due - now);
    true
}

/// The 3×5 glyphs of the digits 0–9, one row of 3 bits each (top row first).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Digits of the frame counter drawn on the pattern.
const COUNTER_DIGITS: usize = 6;

/// Where the counter is drawn: cell size in pixels, and the top-left corner.
fn counter_layout(width: u32, height: u32) -> (usize, usize, usize) {
    let cell = (height as usize / 40).clamp(2, 12);
    // The digits need (4 cells each) + a margin; shrink the cell if the picture is narrow.
    let cell = cell.min((width as usize / (COUNTER_DIGITS * 4 + 2)).max(1));
    (cell, cell * 2, cell * 2)
}

/// A synthetic moving picture: colour bars scrolling sideways, a bouncing square, and the
/// frame counter in large digits at the top left ([`TestPattern::read_counter`] reads it
/// back from a decoded frame, which is how glass-to-glass latency is measured).
pub struct TestPattern {
    width: u32,
    height: u32,
    fps: u32,
    frame: u64,
    start: Option<Instant>,
    captured: Arc<Mutex<VecDeque<(u64, Instant)>>>,
    blank: I420Frame,
    noise: u8,
}

/// Capture times of a test pattern's recent frames, by counter (shared with the source).
#[derive(Clone, Debug)]
pub struct CaptureLog(Arc<Mutex<VecDeque<(u64, Instant)>>>);

impl CaptureLog {
    /// When the frame with this counter was made (the last 1000 frames are kept).
    pub fn captured_at(&self, counter: u64) -> Option<Instant> {
        let log = self.0.lock().ok()?;
        log.iter().find(|(n, _)| *n == counter).map(|(_, t)| *t)
    }
}

impl TestPattern {
    /// A pattern of this size (even) at `fps` frames per second.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        let blank = I420Frame::black(width, height)?;
        let (cell, x0, _) = counter_layout(width, height);
        if x0 + COUNTER_DIGITS * cell * 4 > width as usize || height < 16 {
            return Err(VideoError::Format(format!(
                "{width}×{height} is too small for the test pattern's counter"
            )));
        }
        Ok(Self {
            width,
            height,
            fps: fps.clamp(1, 120),
            frame: 0,
            start: None,
            captured: Arc::new(Mutex::new(VecDeque::with_capacity(1000))),
            blank,
            noise: 0,
        })
    }

    /// Adds sensor-like noise of up to ± `amplitude` luma levels, different in every frame
    /// (the same for the same frame number): a clean pattern is far easier to code than a
    /// camera's picture, so rate control never reaches its target on it.
    pub fn with_noise(mut self, amplitude: u8) -> Self {
        self.noise = amplitude;
        self
    }

    /// A handle on the capture times of the frames, by counter.
    pub(crate) fn capture_log(&self) -> CaptureLog {
        CaptureLog(Arc::clone(&self.captured))
    }

    /// Draws frame `n`.
    pub fn draw(&self, n: u64) -> I420Frame {
        let (w, h) = (self.width as usize, self.height as usize);
        const BARS: [(u8, u8, u8); 7] = [
            (192, 192, 192),
            (192, 192, 0),
            (0, 192, 192),
            (0, 192, 0),
            (192, 0, 192),
            (192, 0, 0),
            (0, 0, 192),
        ];
        let bar_width = (w / BARS.len()).max(1);
        let shift = (n as usize * 4) % w.max(1);
        let side = (h / 5).max(2) & !1;
        let travel_x = w.saturating_sub(side).max(1);
        let travel_y = h.saturating_sub(side).max(1);
        let bounce = |t: usize, span: usize| {
            let p = t % (2 * span);
            if p < span { p } else { 2 * span - p }
        };
        let sq_x = bounce(n as usize * 5, travel_x);
        let sq_y = bounce(n as usize * 3, travel_y);
        let colour_at = |x: usize, y: usize| -> (u8, u8, u8) {
            if (sq_x..sq_x + side).contains(&x) && (sq_y..sq_y + side).contains(&y) {
                return (255, 255, 255);
            }
            let bar = ((x + shift) % w.max(1)) / bar_width;
            let (r, g, b) = BARS
                .get(bar.min(BARS.len() - 1))
                .copied()
                .unwrap_or((0, 0, 0));
            // Darker towards the bottom, so rows differ too.
            let shade = 255 - (y * 96 / h.max(1)) as u32;
            let s = |c: u8| (u32::from(c) * shade / 255) as u8;
            (s(r), s(g), s(b))
        };
        let mut frame = I420Frame::from_rgb_fn(self.width, self.height, colour_at)
            .unwrap_or_else(|_| self.blank.clone());
        if self.noise > 0 {
            let span = u64::from(self.noise) * 2 + 1;
            let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let (ys, _, _) = frame.planes_mut();
            for p in ys.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let delta = (state % span) as i16 - i16::from(self.noise);
                *p = (i16::from(*p) + delta).clamp(16, 235) as u8;
            }
        }
        self.draw_counter(&mut frame, n);
        frame
    }

    /// Draws the counter: black box, white digits, chroma neutral.
    fn draw_counter(&self, frame: &mut I420Frame, n: u64) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cell, x0, y0) = counter_layout(self.width, self.height);
        let text = format!(
            "{:0width$}",
            n % 10u64.pow(COUNTER_DIGITS as u32),
            width = COUNTER_DIGITS
        );
        let box_w = COUNTER_DIGITS * cell * 4 + cell;
        let box_h = 7 * cell;
        let (ys, us, vs) = frame.planes_mut();
        for y in y0.saturating_sub(cell)..(y0 + box_h - cell).min(h) {
            for x in x0.saturating_sub(cell)..(x0 + box_w - cell).min(w) {
                if let Some(p) = ys.get_mut(y * w + x) {
                    *p = 16;
                }
                let ci = (y / 2) * (w / 2) + x / 2;
                if let (Some(pu), Some(pv)) = (us.get_mut(ci), vs.get_mut(ci)) {
                    *pu = 128;
                    *pv = 128;
                }
            }
        }
        for (d, ch) in text.bytes().enumerate() {
            let glyph = DIGITS
                .get(usize::from(ch.wrapping_sub(b'0')))
                .copied()
                .unwrap_or([0; 5]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) == 0 {
                        continue;
                    }
                    let px = x0 + d * cell * 4 + col * cell;
                    let py = y0 + row * cell;
                    for y in py..(py + cell).min(h) {
                        for x in px..(px + cell).min(w) {
                            if let Some(p) = ys.get_mut(y * w + x) {
                                *p = 235;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the frame counter back from an RGBA picture of a pattern of this size (as a
    /// receiver decodes it); `None` when a digit cannot be read.
    pub fn read_counter(width: u32, height: u32, rgba: &[u8]) -> Option<u64> {
        let (w, h) = (width as usize, height as usize);
        if rgba.len() < w * h * 4 {
            return None;
        }
        let (cell, x0, y0) = counter_layout(width, height);
        let lit = |x: usize, y: usize| -> Option<bool> {
            let i = (y * w + x) * 4;
            let px = rgba.get(i..i + 3)?;
            let luma = px.iter().map(|c| u32::from(*c)).sum::<u32>() / 3;
            Some(luma > 128)
        };
        let mut value = 0u64;
        for d in 0..COUNTER_DIGITS {
            let mut glyph = [0u8; 5];
            for (row, bits) in glyph.iter_mut().enumerate() {
                for col in 0..3 {
                    let x = x0 + d * cell * 4 + col * cell + cell / 2;
                    let y = y0 + row * cell + cell / 2;
                    if lit(x, y)? {
                        *bits |= 0b100 >> col;
                    }
                }
            }
            let digit = DIGITS.iter().position(|g| *g == glyph)?;
            value = value * 10 + digit as u64;
        }
        Some(value)
    }
}

impl VideoSource for TestPattern {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<I420Frame>, VideoError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.frame as f64 / f64::from(self.fps));
        if !wait_until(due, timeout) {
            return Ok(None);
        }
        let n = self.frame;
        self.frame += 1;
        if let Ok(mut log) = self.captured.lock() {
            if log.len() >= 1000 {
                log.pop_front();
            }
            log.push_back((n, Instant::now()));
        }
        Ok(Some(self.draw(n)))
    }

    fn describe(&self) -> String {
        format!(
            "test pattern {}×{} at {} fps",
            self.width, self.height, self.fps
        )
    }
}

/// Plays a Y4M (YUV4MPEG2) file with 4:2:0 pictures at its own frame rate, looping.
pub struct Y4mSource {
    path: PathBuf,
    width: u32,
    height: u32,
    fps: f64,
    frames: Vec<I420Frame>,
    next: usize,
    start: Option<Instant>,
    shown: u64,
}

impl Y4mSource {
    /// Reads the whole file (short clips: tests, demos).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VideoError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path)
            .map_err(|e| VideoError::Source(format!("{}: {e}", path.display())))?;
        Self::from_reader(path, BufReader::new(file))
    }

    /// Reads a whole Y4M stream from `reader`; `name` appears in errors and in
    /// [`VideoSource::describe`].
    pub fn from_reader(
        name: impl Into<PathBuf>,
        mut reader: impl std::io::BufRead,
    ) -> Result<Self, VideoError> {
        let path: PathBuf = name.into();
        let bad = |why: String| VideoError::Source(format!("{}: {why}", path.display()));
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .map_err(|e| bad(e.to_string()))?;
        let mut fields = header.split_whitespace();
        if fields.next() != Some("YUV4MPEG2") {
            return Err(bad("not a YUV4MPEG2 file".into()));
        }
        let (mut width, mut height, mut fps) = (0u32, 0u32, 30.0f64);
        for field in fields {
            // The tag is one character, which need not be ASCII in a hostile file.
            let mut chars = field.chars();
            let tag = chars.next().map(String::from).unwrap_or_default();
            let value = chars.as_str();
            match tag.as_str() {
                "W" => width = value.parse().map_err(|_| bad(format!("width {value}")))?,
                "H" => height = value.parse().map_err(|_| bad(format!("height {value}")))?,
                "F" => {
                    let (num, den) = value.split_once(':').unwrap_or((value, "1"));
                    let num: f64 = num.parse().map_err(|_| bad(format!("rate {value}")))?;
                    let den: f64 = den.parse().map_err(|_| bad(format!("rate {value}")))?;
                    if num > 0.0 && den > 0.0 {
                        fps = num / den;
                    }
                }
                "C" if !value.starts_with("420") => {
                    return Err(bad(format!("colour space C{value}: only 4:2:0 is read")));
                }
                _ => {}
            }
        }
        check_size(width, height).map_err(|e| bad(e.to_string()))?;
        let size = (width as usize) * (height as usize) * 3 / 2;
        let mut frames = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| bad(e.to_string()))?;
            if n == 0 {
                break;
            }
            if !line.starts_with("FRAME") {
                return Err(bad(format!("frame {} has no FRAME header", frames.len())));
            }
            let mut data = vec![0u8; size];
            reader
                .read_exact(&mut data)
                .map_err(|e| bad(format!("frame {} is cut short: {e}", frames.len())))?;
            frames.push(I420Frame::from_bytes(width, height, data)?);
            if frames.len() > 10_000 {
                return Err(bad("over 10 000 frames: too long to hold in memory".into()));
            }
        }
        if frames.is_empty() {
            return Err(bad("no frames".into()));
        }
        Ok(Self {
            path,
            width,
            height,
            fps: fps.clamp(1.0, 120.0),
            frames,
            next: 0,
            start: None,
            shown: 0,
        })
    }

    /// Picture size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Writes pictures as a Y4M file (for tests and for saving what was received).
    pub fn write(path: impl AsRef<Path>, fps: u32, frames: &[I420Frame]) -> Result<(), VideoError> {
        use std::io::Write;
        let path = path.as_ref();
        let first = frames
            .first()
            .ok_or_else(|| VideoError::Source("no frames to write".into()))?;
        let bad = |e: std::io::Error| VideoError::Source(format!("{}: {e}", path.display()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(bad)?);
        writeln!(
            out,
            "YUV4MPEG2 W{} H{} F{fps}:1 Ip A1:1 C420jpeg",
            first.width(),
            first.height()
        )
        .map_err(bad)?;
        for f in frames {
            out.write_all(b"FRAME\n").map_err(bad)?;
            out.write_all(f.as_bytes()).map_err(bad)?;
        }
        out.flush().map_err(bad)
    }
}

impl VideoSource for Y4mSource {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<I420Frame>, VideoError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.shown as f64 / self.fps);
        if !wait_until(due, timeout) {
            return Ok(None);
        }
        let frame = self.frames.get(self.next).cloned();
        self.next = (self.next + 1) % self.frames.len().max(1);
        self.shown += 1;
        Ok(frame)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_reads_back() {
        let pattern = TestPattern::new(320, 240, 15).unwrap();
        for n in [0, 7, 42, 123_456, 999_999] {
            let rgba = pattern.draw(n).to_rgba();
            assert_eq!(TestPattern::read_counter(320, 240, &rgba), Some(n));
        }
        let small = TestPattern::new(160, 120, 15).unwrap();
        let rgba = small.draw(31_415).to_rgba();
        assert_eq!(TestPattern::read_counter(160, 120, &rgba), Some(31_415));
        assert_eq!(TestPattern::read_counter(320, 240, &[0; 10]), None);
        assert!(TestPattern::new(16, 16, 15).is_err());
    }

    #[test]
    fn noise_is_repeatable_and_keeps_the_counter_readable() {
        let pattern = TestPattern::new(320, 240, 15).unwrap().with_noise(8);
        assert_eq!(pattern.draw(5), pattern.draw(5));
        assert_ne!(
            pattern.draw(5).as_bytes(),
            TestPattern::new(320, 240, 15).unwrap().draw(5).as_bytes()
        );
        let rgba = pattern.draw(4242).to_rgba();
        assert_eq!(TestPattern::read_counter(320, 240, &rgba), Some(4242));
    }

    #[test]
    fn the_pattern_moves() {
        let pattern = TestPattern::new(64, 48, 15).unwrap();
        assert_ne!(pattern.draw(1).as_bytes(), pattern.draw(2).as_bytes());
    }

    #[test]
    fn the_pattern_is_paced_and_logged() {
        let mut pattern = TestPattern::new(64, 48, 50).unwrap();
        let log = pattern.capture_log();
        let t = Instant::now();
        for _ in 0..3 {
            while pattern
                .next_frame(Duration::from_millis(100))
                .unwrap()
                .is_none()
            {}
        }
        // Frames 0, 1, 2 at 0, 20 and 40 ms.
        assert!(t.elapsed() >= Duration::from_millis(39));
        assert!(log.captured_at(2).is_some() && log.captured_at(3).is_none());
    }

    #[test]
    fn y4m_round_trips_and_bad_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("squadlink-y4m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pattern = TestPattern::new(64, 48, 15).unwrap();
        let frames: Vec<I420Frame> = (0..3).map(|n| pattern.draw(n)).collect();
        let path = dir.join("clip.y4m");
        Y4mSource::write(&path, 30, &frames).unwrap();
        let mut source = Y4mSource::open(&path).unwrap();
        assert_eq!(source.size(), (64, 48));
        for expected in frames.iter().chain(frames.first()) {
            let got = loop {
                if let Some(f) = source.next_frame(Duration::from_millis(100)).unwrap() {
                    break f;
                }
            };
            assert_eq!(&got, expected);
        }
        std::fs::write(dir.join("bad.y4m"), b"YUV4MPEG2 W64 H48\nFRAME\nshort").unwrap();
        assert!(Y4mSource::open(dir.join("bad.y4m")).is_err());
        std::fs::write(dir.join("text.y4m"), b"hello").unwrap();
        assert!(Y4mSource::open(dir.join("text.y4m")).is_err());
        assert!(Y4mSource::open(dir.join("missing.y4m")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
