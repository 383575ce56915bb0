//! Opus through libopus 1.6 (built from source by `opusic-sys`): the encoder and decoder
//! settings voice uses. The FFI calls are in this file only, each with its safety argument.
//!
//! Why not Debian's libopus 1.3.1: its SILK noise-shaping quantizer, half of the encoder's
//! time, has its SIMD versions switched off ("FIXME: SSE disabled until the NSQ code gets
//! updated"). libopus 1.6.1 has them back (SSE4.1, AVX2, chosen at run time) and encodes a
//! 20 ms wideband frame at complexity 9 in 166–186 µs on the benchmark machine, against
//! 260–266 µs (`bench_voice --cpu-only`, the same binary run against each library).

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uchar};
use std::ptr::NonNull;

use opusic_sys as sys;

use super::error::VoiceError;
use super::format::{FRAME, SAMPLE_RATE};

/// The largest Opus packet (RFC 6716).
const MAX_PACKET: usize = 1275;

/// libopus's message for an error code.
fn describe(code: c_int) -> String {
    // SAFETY: `opus_strerror` returns a pointer to a static, NUL-terminated string for any
    // code (unknown codes get "unknown error").
    let text = unsafe { std::ffi::CStr::from_ptr(sys::opus_strerror(code)) };
    text.to_string_lossy().into_owned()
}

fn codec_error(what: &str, code: c_int) -> VoiceError {
    VoiceError::Codec(format!("{what}: {} ({code})", describe(code)))
}

/// A libopus return value: the count it carries, or an error.
fn check(what: &str, code: c_int) -> Result<usize, VoiceError> {
    usize::try_from(code).map_err(|_| codec_error(what, code))
}

/// The audio band voice is coded in.
///
/// Measured on the 2-core benchmark machine with libopus 1.3.1 (`bench_voice --cpu-only
/// [--fullband]`, three runs each): encoding costs about the same (266–300 µs a frame
/// against 279–344), decoding 17–19 µs against 25–29, and one sender with eight receivers
/// 4.4–4.6 % of a core against 5.2–5.4 %. With ideal FEC at 5 % loss, PESQ-WB is 4.06
/// against 3.85.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiceBandwidth {
    /// Audio up to 8 kHz, coded by Opus's SILK layer alone (the default). Speech keeps its
    /// intelligibility; decoding costs two thirds of fullband's, and in-band FEC covers the
    /// whole band (in hybrid modes it covers only the part below 8 kHz).
    #[default]
    Wideband,
    /// Audio up to 12 kHz.
    SuperWideband,
    /// Audio up to 20 kHz (Opus chooses SILK + CELT hybrid at voice bitrates): more air
    /// in the voice, for more CPU.
    Fullband,
}

impl VoiceBandwidth {
    fn opus(self) -> c_int {
        match self {
            Self::Wideband => sys::OPUS_BANDWIDTH_WIDEBAND,
            Self::SuperWideband => sys::OPUS_BANDWIDTH_SUPERWIDEBAND,
            Self::Fullband => sys::OPUS_BANDWIDTH_FULLBAND,
        }
    }
}

/// An owned libopus encoder state.
struct RawEncoder(NonNull<sys::OpusEncoder>);

// SAFETY: a libopus encoder has no thread affinity; `RawEncoder` owns it and every use goes
// through `&mut self`, so one thread at a time touches it.
unsafe impl Send for RawEncoder {}

impl RawEncoder {
    fn new() -> Result<Self, VoiceError> {
        let mut error: c_int = 0;
        // SAFETY: valid rate, channel count and application constants; `error` is a valid
        // place for libopus to write its result code.
        let state = unsafe {
            sys::opus_encoder_create(
                SAMPLE_RATE as i32,
                1,
                sys::OPUS_APPLICATION_VOIP,
                &raw mut error,
            )
        };
        match NonNull::new(state) {
            Some(state) if error == sys::OPUS_OK => Ok(Self(state)),
            Some(state) => {
                // SAFETY: `state` came from `opus_encoder_create` and is freed once, here.
                unsafe { sys::opus_encoder_destroy(state.as_ptr()) };
                Err(codec_error("creating the Opus encoder", error))
            }
            None => Err(codec_error("creating the Opus encoder", error)),
        }
    }

    /// A `OPUS_SET_*` request with an integer argument.
    fn set(&mut self, what: &str, request: c_int, value: i32) -> Result<(), VoiceError> {
        // SAFETY: the state is live; every SET request used here takes one opus_int32.
        let code = unsafe { sys::opus_encoder_ctl(self.0.as_ptr(), request, value) };
        check(what, code).map(|_| ())
    }

    /// A `OPUS_GET_*` request that writes one opus_int32.
    fn get(&self, request: c_int) -> Option<i32> {
        let mut value: i32 = 0;
        // SAFETY: the state is live; every GET request used here writes one opus_int32 to
        // the pointer it is given, which points at `value`.
        let code = unsafe { sys::opus_encoder_ctl(self.0.as_ptr(), request, &raw mut value) };
        (code == sys::OPUS_OK).then_some(value)
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: the state came from `opus_encoder_create` and is freed once, here.
        unsafe { sys::opus_encoder_destroy(self.0.as_ptr()) };
    }
}

/// A voice encoder: 48 kHz mono, 20 ms frames, VOIP, complexity 9, DTX, in-band FEC when
/// receivers report loss.
pub struct VoiceEncoder {
    encoder: RawEncoder,
    out: Vec<u8>,
    loss: u8,
    bitrate: u32,
}

/// The bitrate used while FEC is on, at least: the FEC copy takes its bits from the main
/// one, and below this libopus 1.3 narrowed the band (at 5 % loss, PESQ-WB with ideal FEC:
/// 3.42 at 32 kbit/s, 3.89 at 48 kbit/s).
pub const FEC_BITRATE: u32 = 48_000;

fn bits(bitrate: u32) -> i32 {
    i32::try_from(bitrate).unwrap_or(32_000)
}

impl VoiceEncoder {
    /// An encoder at `bitrate` bits per second (32 000 is the default), coding at most
    /// `bandwidth`.
    pub fn new(bitrate: u32, bandwidth: VoiceBandwidth) -> Result<Self, VoiceError> {
        let mut encoder = RawEncoder::new()?;
        encoder.set(
            "setting the bitrate",
            sys::OPUS_SET_BITRATE_REQUEST,
            bits(bitrate),
        )?;
        encoder.set(
            "setting the complexity",
            sys::OPUS_SET_COMPLEXITY_REQUEST,
            9,
        )?;
        encoder.set("enabling DTX", sys::OPUS_SET_DTX_REQUEST, 1)?;
        encoder.set("setting FEC", sys::OPUS_SET_INBAND_FEC_REQUEST, 0)?;
        encoder.set(
            "setting the bandwidth",
            sys::OPUS_SET_MAX_BANDWIDTH_REQUEST,
            bandwidth.opus(),
        )?;
        Ok(Self {
            encoder,
            out: vec![0; MAX_PACKET],
            loss: 0,
            bitrate,
        })
    }

    /// The loss receivers report (percent): FEC is on whenever it is above 0, tuned to it,
    /// and the bitrate is raised to at least [`FEC_BITRATE`] while it is.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), VoiceError> {
        let percent = percent.min(50);
        if percent == self.loss {
            return Ok(());
        }
        self.loss = percent;
        let bitrate = if percent > 0 {
            self.bitrate.max(FEC_BITRATE)
        } else {
            self.bitrate
        };
        self.encoder.set(
            "setting the bitrate",
            sys::OPUS_SET_BITRATE_REQUEST,
            bits(bitrate),
        )?;
        self.encoder.set(
            "setting FEC",
            sys::OPUS_SET_INBAND_FEC_REQUEST,
            i32::from(percent > 0),
        )?;
        self.encoder.set(
            "setting the expected loss",
            sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            i32::from(percent),
        )
    }

    /// Starts afresh (after frames were skipped), keeping the settings.
    pub fn reset(&mut self) -> Result<(), VoiceError> {
        // SAFETY: the state is live; OPUS_RESET_STATE takes no argument.
        let code = unsafe { sys::opus_encoder_ctl(self.encoder.0.as_ptr(), sys::OPUS_RESET_STATE) };
        check("resetting the encoder", code).map(|_| ())
    }

    /// The encoder's algorithmic delay (look-ahead).
    pub fn lookahead(&self) -> std::time::Duration {
        let samples = self
            .encoder
            .get(sys::OPUS_GET_LOOKAHEAD_REQUEST)
            .unwrap_or(0)
            .max(0);
        std::time::Duration::from_secs_f64(f64::from(samples) / f64::from(SAMPLE_RATE))
    }

    /// Whether the encoder is in DTX (discontinuous transmission): the input has been silent
    /// long enough that its packets are only comfort-noise updates.
    pub fn in_dtx(&self) -> bool {
        self.encoder.get(sys::OPUS_GET_IN_DTX_REQUEST) == Some(1)
    }

    /// The loss the encoder is tuned for.
    pub fn expected_loss(&self) -> u8 {
        self.loss
    }

    /// Encodes one 20 ms frame (960 samples). A packet of 2 bytes or less is a DTX frame
    /// (silence) that need not be sent.
    pub fn encode(&mut self, frame: &[f32]) -> Result<&[u8], VoiceError> {
        if frame.len() != FRAME {
            return Err(VoiceError::Codec(format!(
                "a frame has {FRAME} samples, not {}",
                frame.len()
            )));
        }
        // SAFETY: the state is live; `frame` holds FRAME mono samples (checked above) and
        // `out` has room for MAX_PACKET bytes, the limit passed.
        let n = unsafe {
            sys::opus_encode_float(
                self.encoder.0.as_ptr(),
                frame.as_ptr(),
                FRAME as c_int,
                self.out.as_mut_ptr().cast::<c_uchar>(),
                MAX_PACKET as i32,
            )
        };
        let n = check("encoding", n)?;
        Ok(self.out.get(..n).unwrap_or(&[]))
    }
}

/// Whether a packet codes audio above 8 kHz (super-wideband or fullband), which a 16 kHz
/// decoder would cut off. `None` for an empty or malformed packet.
pub(crate) fn codes_above_wideband(packet: &[u8]) -> Option<bool> {
    if packet.is_empty() {
        return None;
    }
    // SAFETY: the packet holds at least its first byte (the TOC), all this reads.
    let bandwidth = unsafe { sys::opus_packet_get_bandwidth(packet.as_ptr()) };
    match bandwidth {
        sys::OPUS_BANDWIDTH_SUPERWIDEBAND | sys::OPUS_BANDWIDTH_FULLBAND => Some(true),
        sys::OPUS_BANDWIDTH_NARROWBAND
        | sys::OPUS_BANDWIDTH_MEDIUMBAND
        | sys::OPUS_BANDWIDTH_WIDEBAND => Some(false),
        _ => None,
    }
}

/// An owned libopus decoder state.
struct RawDecoder(NonNull<sys::OpusDecoder>);

// SAFETY: as for `RawEncoder`: no thread affinity, one owner, used through `&mut self`.
unsafe impl Send for RawDecoder {}

impl Drop for RawDecoder {
    fn drop(&mut self) {
        // SAFETY: the state came from `opus_decoder_create` and is freed once, here.
        unsafe { sys::opus_decoder_destroy(self.0.as_ptr()) };
    }
}

/// A voice decoder: mono, at 48 kHz or at a lower rate Opus supports.
pub struct VoiceDecoder {
    decoder: RawDecoder,
    rate: u32,
}

impl VoiceDecoder {
    /// A fresh decoder at 48 kHz.
    pub fn new() -> Result<Self, VoiceError> {
        Self::with_rate(SAMPLE_RATE)
    }

    /// A fresh decoder whose output is at `rate` Hz: 8, 12, 16, 24 or 48 kHz. A wideband
    /// stream decoded at 16 kHz loses nothing, and skips the decoder's own resampling to
    /// 48 kHz (about a third of its time).
    pub fn with_rate(rate: u32) -> Result<Self, VoiceError> {
        if ![8_000, 12_000, 16_000, 24_000, 48_000].contains(&rate) {
            return Err(VoiceError::Codec(format!(
                "a decoder runs at 8, 12, 16, 24 or 48 kHz, not {rate} Hz"
            )));
        }
        let mut error: c_int = 0;
        // SAFETY: a rate checked above, one channel; `error` is a valid place to write to.
        let state = unsafe { sys::opus_decoder_create(rate as i32, 1, &raw mut error) };
        match NonNull::new(state) {
            Some(state) => {
                let decoder = RawDecoder(state);
                if error == sys::OPUS_OK {
                    Ok(Self { decoder, rate })
                } else {
                    Err(codec_error("creating the Opus decoder", error))
                }
            }
            None => Err(codec_error("creating the Opus decoder", error)),
        }
    }

    /// The output rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Forgets the stream decoded so far (the next packet starts afresh, as after a pause).
    pub fn reset(&mut self) -> Result<(), VoiceError> {
        // SAFETY: the state is live; OPUS_RESET_STATE takes no argument.
        let code = unsafe { sys::opus_decoder_ctl(self.decoder.0.as_ptr(), sys::OPUS_RESET_STATE) };
        check("resetting the decoder", code).map(|_| ())
    }

    /// Decodes a packet into `out` (a 20 ms frame: 960 samples at 48 kHz, 320 at 16 kHz).
    /// With `fec`, rebuilds the frame *before* `packet` from its in-band FEC data. With no
    /// packet, conceals a lost frame (PLC).
    pub fn decode(
        &mut self,
        packet: Option<&[u8]>,
        fec: bool,
        out: &mut [f32],
    ) -> Result<usize, VoiceError> {
        // Opus decodes in multiples of 2.5 ms; a lost frame is concealed for `out`'s length.
        let unit = (self.rate / 400) as usize;
        let samples = out.len() / unit * unit;
        if samples == 0 {
            return Err(VoiceError::Codec(format!(
                "output buffer: room for at least 2.5 ms ({unit} samples) is needed"
            )));
        }
        let (data, len) = match packet {
            Some(p) if !p.is_empty() => {
                let len = i32::try_from(p.len()).map_err(|_| {
                    VoiceError::Codec(format!("reading a packet: {} bytes is too long", p.len()))
                })?;
                (p.as_ptr(), len)
            }
            _ => (std::ptr::null(), 0),
        };
        let samples = c_int::try_from(samples.min(5760)).unwrap_or(960);
        // SAFETY: the state is live; `data` is null (loss) or points at `len` readable
        // bytes; `out` has room for `samples` floats (at most its length).
        let n = unsafe {
            sys::opus_decode_float(
                self.decoder.0.as_ptr(),
                data,
                len,
                out.as_mut_ptr(),
                samples,
                c_int::from(fec),
            )
        };
        check("decoding", n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn encodes_and_decodes_a_tone() {
        let mut enc = VoiceEncoder::new(32_000, VoiceBandwidth::Wideband).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        let signal = tone(FRAME * 10);
        let mut out = vec![0.0; FRAME];
        let mut energy = 0.0;
        for frame in signal.chunks(FRAME) {
            let packet = enc.encode(frame).unwrap().to_vec();
            assert!(packet.len() > 10 && packet.len() < 200, "{}", packet.len());
            assert_eq!(dec.decode(Some(&packet), false, &mut out).unwrap(), FRAME);
            energy = out.iter().map(|s| s * s).sum::<f32>();
        }
        assert!(energy > 10.0, "decoded energy {energy}");
    }

    #[test]
    fn silence_becomes_dtx_frames() {
        let mut enc = VoiceEncoder::new(32_000, VoiceBandwidth::Wideband).unwrap();
        let silent = vec![0.0; FRAME];
        let sizes: Vec<usize> = (0..50)
            .map(|_| enc.encode(&silent).unwrap().len())
            .collect();
        // After 200 ms of silence only one comfort-noise update per 400 ms is a real packet,
        // and the encoder says it is in DTX for all of them.
        let dtx = sizes.iter().skip(10).filter(|n| **n <= 2).count();
        assert!(dtx >= 38, "sizes {sizes:?}");
        for _ in 0..30 {
            enc.encode(&silent).unwrap();
            assert!(enc.in_dtx());
        }
        let tone = tone(FRAME);
        enc.encode(&tone).unwrap();
        assert!(!enc.in_dtx());
    }

    #[test]
    fn fec_and_plc_give_full_frames_and_bad_input_is_an_error() {
        let mut enc = VoiceEncoder::new(32_000, VoiceBandwidth::Wideband).unwrap();
        enc.set_expected_loss(10).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        let mut out = vec![0.0; FRAME];
        let signal = tone(FRAME * 3);
        let packets: Vec<Vec<u8>> = signal
            .chunks(FRAME)
            .map(|f| enc.encode(f).unwrap().to_vec())
            .collect();
        dec.decode(Some(&packets[0]), false, &mut out).unwrap();
        assert_eq!(
            dec.decode(Some(&packets[2]), true, &mut out).unwrap(),
            FRAME
        );
        assert_eq!(dec.decode(None, false, &mut out).unwrap(), FRAME);
        assert!(enc.encode(&[0.0; 100]).is_err());
        // A reset keeps the settings and the next frame encodes.
        enc.reset().unwrap();
        assert_eq!(enc.expected_loss(), 10);
        assert!(enc.encode(&signal[..FRAME]).unwrap().len() > 10);
        // Garbage from a peer is an error, not a crash.
        let garbage = [0xffu8; 40];
        let _ = dec.decode(Some(&garbage), false, &mut out);
    }
}
