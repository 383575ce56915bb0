//! Opus through audiopus (Debian's libopus): the encoder and decoder settings voice uses.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};

use super::{FRAME, VoiceError};

/// The largest Opus packet (RFC 6716).
const MAX_PACKET: usize = 1275;

fn codec_error(what: &str, e: audiopus::Error) -> VoiceError {
    VoiceError::Codec(format!("{what}: {e}"))
}

/// The audio band voice is coded in.
///
/// Measured on the 2-core benchmark machine (`bench_voice --cpu-only [--fullband]`, libopus
/// 1.3.1, three runs each): encoding costs about the same (266–300 µs a frame against
/// 279–344), decoding 17–19 µs against 25–29, and one sender with eight receivers 4.4–4.6 %
/// of a core against 5.2–5.4 %. With ideal FEC at 5 % loss, PESQ-WB is 4.06 against 3.85.
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
    fn opus(self) -> audiopus::Bandwidth {
        match self {
            Self::Wideband => audiopus::Bandwidth::Wideband,
            Self::SuperWideband => audiopus::Bandwidth::Superwideband,
            Self::Fullband => audiopus::Bandwidth::Fullband,
        }
    }
}

/// A voice encoder: 48 kHz mono, 20 ms frames, VOIP, complexity 9, DTX, in-band FEC when
/// receivers report loss.
pub struct VoiceEncoder {
    encoder: Encoder,
    out: Vec<u8>,
    loss: u8,
    bitrate: u32,
}

/// The bitrate used while FEC is on, at least: the FEC copy takes its bits from the main
/// one, and below this libopus 1.3 narrows the band (at 5 % loss, PESQ-WB with ideal FEC:
/// 3.42 at 32 kbit/s, 3.89 at 48 kbit/s).
pub const FEC_BITRATE: u32 = 48_000;

impl VoiceEncoder {
    /// An encoder at `bitrate` bits per second (32 000 is the default: with libopus 1.3,
    /// FEC at lower rates narrows the band), coding at most `bandwidth`.
    pub fn new(bitrate: u32, bandwidth: VoiceBandwidth) -> Result<Self, VoiceError> {
        let mut encoder = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
            .map_err(|e| codec_error("creating the Opus encoder", e))?;
        let bits = i32::try_from(bitrate).unwrap_or(32_000);
        encoder
            .set_bitrate(Bitrate::BitsPerSecond(bits))
            .map_err(|e| codec_error("setting the bitrate", e))?;
        encoder
            .set_complexity(9)
            .map_err(|e| codec_error("setting the complexity", e))?;
        encoder
            .set_dtx(true)
            .map_err(|e| codec_error("enabling DTX", e))?;
        encoder
            .set_inband_fec(false)
            .map_err(|e| codec_error("setting FEC", e))?;
        encoder
            .set_max_bandwidth(bandwidth.opus())
            .map_err(|e| codec_error("setting the bandwidth", e))?;
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
        self.encoder
            .set_bitrate(Bitrate::BitsPerSecond(
                i32::try_from(bitrate).unwrap_or(32_000),
            ))
            .map_err(|e| codec_error("setting the bitrate", e))?;
        self.encoder
            .set_inband_fec(percent > 0)
            .map_err(|e| codec_error("setting FEC", e))?;
        self.encoder
            .set_packet_loss_perc(percent)
            .map_err(|e| codec_error("setting the expected loss", e))
    }

    /// The encoder's algorithmic delay (look-ahead).
    pub fn lookahead(&self) -> std::time::Duration {
        let samples = self.encoder.lookahead().unwrap_or(0);
        std::time::Duration::from_secs_f64(f64::from(samples) / f64::from(super::SAMPLE_RATE))
    }

    /// Whether the encoder is in DTX (discontinuous transmission): the input has been silent
    /// long enough that its packets are only comfort-noise updates.
    pub fn in_dtx(&self) -> bool {
        /// `OPUS_GET_IN_DTX_REQUEST` (libopus ≥ 1.3).
        const GET_IN_DTX: i32 = 4049;
        self.encoder.encoder_ctl_request(GET_IN_DTX).unwrap_or(0) == 1
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
        let n = self
            .encoder
            .encode_float(frame, &mut self.out)
            .map_err(|e| codec_error("encoding", e))?;
        Ok(self.out.get(..n).unwrap_or(&[]))
    }
}

/// A voice decoder: 48 kHz mono.
pub struct VoiceDecoder {
    decoder: Decoder,
}

impl VoiceDecoder {
    /// A fresh decoder.
    pub fn new() -> Result<Self, VoiceError> {
        Ok(Self {
            decoder: Decoder::new(SampleRate::Hz48000, Channels::Mono)
                .map_err(|e| codec_error("creating the Opus decoder", e))?,
        })
    }

    /// Decodes a packet into `out` (960 samples). With `fec`, rebuilds the frame *before*
    /// `packet` from its in-band FEC data. With no packet, conceals a lost frame (PLC).
    pub fn decode(
        &mut self,
        packet: Option<&[u8]>,
        fec: bool,
        out: &mut [f32],
    ) -> Result<usize, VoiceError> {
        let packet = match packet {
            Some(p) if !p.is_empty() => {
                Some(Packet::try_from(p).map_err(|e| codec_error("reading a packet", e))?)
            }
            _ => None,
        };
        let out = MutSignals::try_from(out).map_err(|e| codec_error("output buffer", e))?;
        self.decoder
            .decode_float(packet, out, fec)
            .map_err(|e| codec_error("decoding", e))
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
        // Garbage from a peer is an error, not a crash.
        let garbage = [0xffu8; 40];
        let _ = dec.decode(Some(&garbage), false, &mut out);
    }
}
