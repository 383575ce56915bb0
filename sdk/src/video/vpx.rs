//! VP8 through libvpx (Debian's libvpx-dev, bound by env-libvpx-sys). Every libvpx call is
//! in this file, each block one call on a context this file owns. (The crate's other unsafe
//! code: the libopus calls in `voice/opus.rs` and glibc's `malloc_trim` in `memory.rs`.)
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_int, c_long, c_uint, c_ulong};

use vpx_sys as ffi;

use super::defaults::{DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_KBPS, DEFAULT_WIDTH};
use super::error::VideoError;
use super::frame::{I420Frame, check_size};

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vp8Settings {
    /// Picture width (even).
    pub width: u32,
    /// Picture height (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate, kbit/s (CBR).
    pub bitrate_kbps: u32,
}

impl Default for Vp8Settings {
    fn default() -> Self {
        Self {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            bitrate_kbps: DEFAULT_KBPS,
        }
    }
}

/// One encoded frame.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The VP8 frame.
    pub data: Vec<u8>,
    /// Whether it is a keyframe (decodable alone).
    pub keyframe: bool,
}

fn error_text(err: ffi::vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string returns a static NUL-terminated string for any value.
    let text = unsafe { ffi::vpx_codec_err_to_string(err) };
    if text.is_null() {
        return format!("{err:?}");
    }
    // SAFETY: non-null, static and NUL-terminated (above).
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

fn check(what: &str, err: ffi::vpx_codec_err_t) -> Result<(), VideoError> {
    if err == ffi::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(VideoError::Codec(format!("{what}: {}", error_text(err))))
    }
}

/// A zeroed codec context: the state libvpx's init functions expect.
fn zeroed_context() -> Box<ffi::vpx_codec_ctx_t> {
    // SAFETY: vpx_codec_ctx_t is a plain C struct of pointers, integers and a union of
    // pointers, for which all-zero bytes is the documented "not initialised" value.
    Box::new(unsafe { std::mem::zeroed() })
}

/// A VP8 encoder for real-time video: CBR, no lag frames, error resilient, one thread.
pub struct Vp8Encoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
    settings: Vp8Settings,
    frame_index: i64,
}

// SAFETY: the context is owned by this value alone and libvpx keeps no thread-local state
// for it, so it may move to another thread; &mut self methods keep its use single-threaded.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// An encoder with these settings.
    pub fn new(settings: Vp8Settings) -> Result<Self, VideoError> {
        check_size(settings.width, settings.height)?;
        if settings.fps == 0 || settings.fps > 120 {
            return Err(VideoError::Format(format!(
                "{} frames per second: use 1 to 120",
                settings.fps
            )));
        }
        // SAFETY: returns a pointer to libvpx's static VP8 encoder interface.
        let iface = unsafe { ffi::vpx_codec_vp8_cx() };
        let mut cfg = std::mem::MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: iface is valid and cfg points to writable memory for a config struct.
        check("default VP8 settings", unsafe {
            ffi::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0)
        })?;
        // SAFETY: config_default succeeded, so it wrote every field.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = settings.width;
        cfg.g_h = settings.height;
        cfg.g_timebase = ffi::vpx_rational {
            num: 1,
            den: i32::try_from(settings.fps).unwrap_or(15),
        };
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = ffi::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = settings.bitrate_kbps.max(10);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        // Keyframes come on request (a peer joins, a PLI); one every 10 s regardless heals
        // a receiver whose request was lost.
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = settings.fps.saturating_mul(10);
        let mut ctx = zeroed_context();
        // SAFETY: ctx is zeroed and owned, iface and cfg are valid, the ABI version is the one
        // the bindings were generated for.
        check("starting the VP8 encoder", unsafe {
            ffi::vpx_codec_enc_init_ver(
                &mut *ctx,
                iface,
                &cfg,
                0,
                ffi::VPX_ENCODER_ABI_VERSION as c_int,
            )
        })?;
        let mut encoder = Self {
            ctx,
            settings,
            frame_index: 0,
        };
        // Speed −12 (WebRTC's setting for slower CPUs): a game shares the CPU. Measured on
        // the 2-core benchmark machine at 320×240, 300 kbit/s: 0.5–0.7 ms a frame against
        // 0.87–1.1 ms at −6 (WebRTC's desktop setting), for 0.2 dB less PSNR.
        encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int, -12)?;
        encoder.control(
            ffi::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY as c_int,
            0,
        )?;
        encoder.control(
            ffi::vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD as c_int,
            1,
        )?;
        // A keyframe may be at most three average frames big, so it does not stall the link.
        encoder.control(
            ffi::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT as c_int,
            300,
        )?;
        Ok(encoder)
    }

    fn control(&mut self, id: c_int, value: c_int) -> Result<(), VideoError> {
        // SAFETY: the context is initialised; these VP8 controls take one int argument.
        check("setting up the VP8 encoder", unsafe {
            ffi::vpx_codec_control_(&mut *self.ctx, id, value)
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> Vp8Settings {
        self.settings
    }

    /// Encodes one picture (of the configured size); `keyframe` forces a keyframe.
    /// Returns the frame (libvpx may return none for a picture it drops).
    pub fn encode(
        &mut self,
        picture: &I420Frame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, VideoError> {
        if picture.width() != self.settings.width || picture.height() != self.settings.height {
            return Err(VideoError::Format(format!(
                "a {}×{} picture for a {}×{} encoder",
                picture.width(),
                picture.height(),
                self.settings.width,
                self.settings.height
            )));
        }
        let mut image = std::mem::MaybeUninit::<ffi::vpx_image_t>::uninit();
        // libvpx reads the picture through a mutable pointer type but does not write it.
        let data = picture.as_bytes().as_ptr().cast_mut();
        // SAFETY: the buffer holds a packed I420 picture of exactly d_w × d_h (checked by
        // I420Frame), which is what wrapping with an alignment of 1 describes.
        let wrapped = unsafe {
            ffi::vpx_img_wrap(
                image.as_mut_ptr(),
                ffi::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.settings.width as c_uint,
                self.settings.height as c_uint,
                1,
                data,
            )
        };
        if wrapped.is_null() {
            return Err(VideoError::Codec("libvpx refused the picture".into()));
        }
        // SAFETY: vpx_img_wrap succeeded: it cleared the struct and filled it in.
        let image = unsafe { image.assume_init() };
        let flags: c_long = if keyframe {
            ffi::VPX_EFLAG_FORCE_KF as c_long
        } else {
            0
        };
        let pts = self.frame_index;
        self.frame_index += 1;
        // SAFETY: the context is initialised and `image` describes a live buffer that
        // outlives the call (libvpx copies what it keeps, as there are no lag frames).
        check("encoding a VP8 frame", unsafe {
            ffi::vpx_codec_encode(
                &mut *self.ctx,
                &image,
                pts,
                1,
                flags,
                ffi::VPX_DL_REALTIME as c_ulong,
            )
        })?;
        let mut out: Option<EncodedFrame> = None;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        loop {
            // SAFETY: iterating the context's output with an iterator that starts null.
            let packet = unsafe { ffi::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if packet.is_null() {
                break;
            }
            // SAFETY: non-null packets point to libvpx's packet, valid until the next call.
            let packet = unsafe { &*packet };
            if packet.kind != ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: for a frame packet, the union's `frame` member is the one written.
            let frame = unsafe { packet.data.frame };
            let Ok(size) = usize::try_from(frame.sz) else {
                continue;
            };
            if frame.buf.is_null() || size == 0 {
                continue;
            }
            // SAFETY: buf points to sz bytes owned by libvpx until the next encoder call.
            let bytes = unsafe { std::slice::from_raw_parts(frame.buf.cast::<u8>(), size) };
            let entry = out.get_or_insert_with(|| EncodedFrame {
                data: Vec::with_capacity(size),
                keyframe: false,
            });
            entry.data.extend_from_slice(bytes);
            entry.keyframe |= frame.flags & ffi::VPX_FRAME_IS_KEY != 0;
        }
        Ok(out)
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once, here.
        unsafe {
            ffi::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// A VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
}

// SAFETY: as for the encoder: an owned context with no thread affinity.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// A decoder (one thread).
    pub fn new() -> Result<Self, VideoError> {
        // SAFETY: returns a pointer to libvpx's static VP8 decoder interface.
        let iface = unsafe { ffi::vpx_codec_vp8_dx() };
        let cfg = ffi::vpx_codec_dec_cfg {
            threads: 1,
            w: 0,
            h: 0,
        };
        let mut ctx = zeroed_context();
        // SAFETY: ctx is zeroed and owned, iface and cfg are valid, the ABI version matches.
        check("starting the VP8 decoder", unsafe {
            ffi::vpx_codec_dec_init_ver(
                &mut *ctx,
                iface,
                &cfg,
                0,
                ffi::VPX_DECODER_ABI_VERSION as c_int,
            )
        })?;
        Ok(Self { ctx })
    }

    /// Decodes one frame into a picture (`None` when libvpx shows nothing for it).
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, VideoError> {
        let len = c_uint::try_from(data.len())
            .map_err(|_| VideoError::Codec("a VP8 frame over 4 GiB".into()))?;
        // SAFETY: the context is initialised and `data` is a live buffer of `len` bytes.
        check("decoding a VP8 frame", unsafe {
            ffi::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, std::ptr::null_mut(), 0)
        })?;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        let mut last = None;
        loop {
            // SAFETY: iterating the decoder's output with an iterator that starts null.
            let image = unsafe { ffi::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if image.is_null() {
                break;
            }
            // SAFETY: non-null images are libvpx's, valid until the next decode call.
            last = Some(copy_image(unsafe { &*image })?);
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once, here.
        unsafe {
            ffi::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// Copies a decoded I420 image (with its strides) into a packed picture.
fn copy_image(image: &ffi::vpx_image_t) -> Result<I420Frame, VideoError> {
    if image.fmt != ffi::vpx_img_fmt::VPX_IMG_FMT_I420 {
        return Err(VideoError::Codec(format!(
            "the decoder gave {:?}, not I420",
            image.fmt
        )));
    }
    // Odd sizes are cropped to even ones (our pictures are always even).
    let (w, h) = (image.d_w & !1, image.d_h & !1);
    check_size(w, h)?;
    let mut frame = I420Frame::black(w, h)?;
    {
        let (y, u, v) = frame.planes_mut();
        let planes: [(&mut [u8], usize, usize); 3] = [
            (y, 0, w as usize),
            (u, 1, w as usize / 2),
            (v, 2, w as usize / 2),
        ];
        for (dst, plane, width) in planes {
            let src = image
                .planes
                .get(plane)
                .copied()
                .unwrap_or(std::ptr::null_mut());
            let stride = image.stride.get(plane).copied().unwrap_or(0);
            let stride = usize::try_from(stride)
                .map_err(|_| VideoError::Codec("the decoder gave a negative stride".into()))?;
            if src.is_null() || stride < width {
                return Err(VideoError::Codec("the decoder gave an empty plane".into()));
            }
            for (row, line) in dst.chunks_exact_mut(width).enumerate() {
                // SAFETY: libvpx's plane has at least `rows` lines of `stride` bytes, each
                // with `width` valid bytes (d_w is at least our cropped width).
                let src_line = unsafe { std::slice::from_raw_parts(src.add(row * stride), width) };
                line.copy_from_slice(src_line);
            }
        }
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::psnr;

    fn gradient(width: u32, height: u32, shift: u32) -> I420Frame {
        let mut frame = I420Frame::black(width, height).unwrap();
        let (y, u, v) = frame.planes_mut();
        for (i, px) in y.iter_mut().enumerate() {
            let (x, r) = (i as u32 % width, i as u32 / width);
            *px = (16 + (x + r + shift) % 200) as u8;
        }
        u.fill(100);
        v.fill(150);
        frame
    }

    #[test]
    fn encodes_and_decodes_a_moving_picture() {
        let mut enc = Vp8Encoder::new(Vp8Settings::default()).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut keyframes = 0;
        for i in 0..30 {
            let picture = gradient(320, 240, i * 2);
            let encoded = enc.encode(&picture, i == 20).unwrap().unwrap();
            keyframes += usize::from(encoded.keyframe);
            if i == 0 || i == 20 {
                assert!(encoded.keyframe, "frame {i} must be a keyframe");
            }
            let decoded = dec.decode(&encoded.data).unwrap().unwrap();
            assert_eq!((decoded.width(), decoded.height()), (320, 240));
            let p = psnr(&picture, &decoded).unwrap();
            assert!(p > 30.0, "frame {i}: PSNR {p:.1} dB");
        }
        assert_eq!(keyframes, 2);
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        assert!(
            Vp8Encoder::new(Vp8Settings {
                width: 321,
                ..Vp8Settings::default()
            })
            .is_err()
        );
        let mut enc = Vp8Encoder::new(Vp8Settings::default()).unwrap();
        assert!(
            enc.encode(&I420Frame::black(64, 64).unwrap(), false)
                .is_err()
        );
        let mut dec = Vp8Decoder::new().unwrap();
        assert!(dec.decode(&[0xff; 40]).is_err());
        assert!(dec.decode(&[]).is_err());
    }
}
