//! Raw pictures: I420 (what VP8 codes) and RGBA (what a game draws), and the conversions
//! between them and the formats cameras deliver (YUYV, NV12, RGB). Colours are BT.601 with
//! limited range (16–235), which is what webcams and VP8 use.

use super::error::VideoError;

/// A picture in I420: a full-size luma plane, then quarter-size U and V planes, with no
/// padding. Width and height are even.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// Checks a picture size: even, non-zero, at most 4096 × 4096.
pub(crate) fn check_size(width: u32, height: u32) -> Result<(), VideoError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(VideoError::Format(format!(
            "{width}×{height}: width and height must be even and non-zero"
        )));
    }
    if width > 4096 || height > 4096 {
        return Err(VideoError::Format(format!(
            "{width}×{height}: at most 4096×4096"
        )));
    }
    Ok(())
}

/// Bytes of an I420 picture of this (checked) size.
fn i420_len(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

impl I420Frame {
    /// A black picture.
    pub fn black(width: u32, height: u32) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let luma = (width as usize) * (height as usize);
        let mut data = vec![128u8; i420_len(width, height)];
        data.get_mut(..luma).unwrap_or(&mut []).fill(16);
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A picture from its bytes: Y, then U, then V, each plane packed.
    pub fn from_bytes(width: u32, height: u32, data: Vec<u8>) -> Result<Self, VideoError> {
        check_size(width, height)?;
        if data.len() != i420_len(width, height) {
            return Err(VideoError::Format(format!(
                "an I420 picture of {width}×{height} has {} bytes, not {}",
                i420_len(width, height),
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// All bytes: Y, U, V.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The three planes (Y, U, V).
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = (self.width as usize) * (self.height as usize);
        let chroma = (self.width as usize / 2) * (self.height as usize / 2);
        let (y, rest) = self.data.split_at(luma.min(self.data.len()));
        let (u, v) = rest.split_at(chroma.min(rest.len()));
        (y, u, v)
    }

    /// The three planes (Y, U, V), writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = (self.width as usize) * (self.height as usize);
        let chroma = (self.width as usize / 2) * (self.height as usize / 2);
        let len = self.data.len();
        let (y, rest) = self.data.split_at_mut(luma.min(len));
        let (u, v) = rest.split_at_mut(chroma.min(rest.len()));
        (y, u, v)
    }

    /// Converts to RGBA (4 bytes a pixel, alpha 255) into `out` (resized to fit).
    pub fn to_rgba_into(&self, out: &mut Vec<u8>) {
        let w = self.width as usize;
        let cw = w / 2;
        out.resize(w * self.height as usize * 4, 255);
        let (ys, us, vs) = self.planes();
        for (row, line) in out.chunks_exact_mut(w * 4).enumerate() {
            let yrow = ys.get(row * w..(row + 1) * w).unwrap_or(&[]);
            let crow = (row / 2) * cw;
            let urow = us.get(crow..crow + cw).unwrap_or(&[]);
            let vrow = vs.get(crow..crow + cw).unwrap_or(&[]);
            for (col, (px, y)) in line.chunks_exact_mut(4).zip(yrow).enumerate() {
                let u = urow.get(col / 2).copied().unwrap_or(128);
                let v = vrow.get(col / 2).copied().unwrap_or(128);
                let (r, g, b) = yuv_to_rgb(*y, u, v);
                px.copy_from_slice(&[r, g, b, 255]);
            }
        }
    }

    /// Converts to a new RGBA buffer.
    pub fn to_rgba(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.to_rgba_into(&mut out);
        out
    }

    /// A picture from RGBA bytes (4 a pixel; alpha ignored). Chroma is the average of each
    /// 2×2 block.
    pub fn from_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<Self, VideoError> {
        Self::from_packed_rgb(width, height, rgba, 4, "RGBA")
    }

    /// A picture from RGB bytes (3 a pixel), as cameras decoding MJPEG deliver.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Self, VideoError> {
        Self::from_packed_rgb(width, height, rgb, 3, "RGB")
    }

    fn from_packed_rgb(
        width: u32,
        height: u32,
        src: &[u8],
        bpp: usize,
        name: &str,
    ) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let (w, h) = (width as usize, height as usize);
        if src.len() < w * h * bpp {
            return Err(VideoError::Format(format!(
                "{name} {width}×{height} needs {} bytes, got {}",
                w * h * bpp,
                src.len()
            )));
        }
        Self::from_rgb_fn(width, height, |x, y| {
            let i = (y * w + x) * bpp;
            match src.get(i..i + 3) {
                Some([r, g, b]) => (*r, *g, *b),
                _ => (0, 0, 0),
            }
        })
    }

    /// A picture painted from a colour for each pixel (x, y); chroma is the average of each
    /// 2×2 block.
    pub(crate) fn from_rgb_fn(
        width: u32,
        height: u32,
        colour_at: impl Fn(usize, usize) -> (u8, u8, u8),
    ) -> Result<Self, VideoError> {
        let mut frame = Self::black(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let (ys, us, vs) = frame.planes_mut();
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = colour_at(x, y);
                if let Some(dst) = ys.get_mut(y * w + x) {
                    *dst = rgb_to_y(r, g, b);
                }
            }
        }
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                let (mut rs, mut gs, mut bs) = (0u32, 0u32, 0u32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (r, g, b) = colour_at(cx * 2 + dx, cy * 2 + dy);
                    rs += u32::from(r);
                    gs += u32::from(g);
                    bs += u32::from(b);
                }
                let (u, v) = rgb_to_uv((rs / 4) as u8, (gs / 4) as u8, (bs / 4) as u8);
                let i = cy * (w / 2) + cx;
                if let (Some(du), Some(dv)) = (us.get_mut(i), vs.get_mut(i)) {
                    *du = u;
                    *dv = v;
                }
            }
        }
        Ok(frame)
    }

    /// A picture from YUYV (YUY2) bytes: Y0 U Y1 V for each pair of pixels; chroma of two
    /// rows is averaged.
    pub fn from_yuyv(width: u32, height: u32, yuyv: &[u8]) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let (w, h) = (width as usize, height as usize);
        if yuyv.len() < w * h * 2 {
            return Err(VideoError::Format(format!(
                "YUYV {width}×{height} needs {} bytes, got {}",
                w * h * 2,
                yuyv.len()
            )));
        }
        let mut frame = Self::black(width, height)?;
        let (ys, us, vs) = frame.planes_mut();
        for (row, line) in yuyv.chunks_exact(w * 2).take(h).enumerate() {
            for (pair, quad) in line.chunks_exact(4).enumerate() {
                if let [y0, _, y1, _] = quad
                    && let Some(dst) = ys.get_mut(row * w + pair * 2..row * w + pair * 2 + 2)
                {
                    dst.copy_from_slice(&[*y0, *y1]);
                }
            }
        }
        for cy in 0..h / 2 {
            let top = yuyv
                .get(cy * 2 * w * 2..(cy * 2 + 1) * w * 2)
                .unwrap_or(&[]);
            let bottom = yuyv
                .get((cy * 2 + 1) * w * 2..(cy * 2 + 2) * w * 2)
                .unwrap_or(&[]);
            for (cx, (a, b)) in top.chunks_exact(4).zip(bottom.chunks_exact(4)).enumerate() {
                if let ([_, u0, _, v0], [_, u1, _, v1]) = (a, b) {
                    let i = cy * (w / 2) + cx;
                    if let (Some(du), Some(dv)) = (us.get_mut(i), vs.get_mut(i)) {
                        *du = (u16::from(*u0) + u16::from(*u1)).div_ceil(2) as u8;
                        *dv = (u16::from(*v0) + u16::from(*v1)).div_ceil(2) as u8;
                    }
                }
            }
        }
        Ok(frame)
    }

    /// A picture from NV12 bytes: the luma plane, then interleaved U V at quarter size.
    pub fn from_nv12(width: u32, height: u32, nv12: &[u8]) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let luma = w * h;
        if nv12.len() < luma + luma / 2 {
            return Err(VideoError::Format(format!(
                "NV12 {width}×{height} needs {} bytes, got {}",
                luma + luma / 2,
                nv12.len()
            )));
        }
        let mut frame = Self::black(width, height)?;
        let (ys, us, vs) = frame.planes_mut();
        ys.copy_from_slice(nv12.get(..luma).unwrap_or(&[]));
        let uv = nv12.get(luma..luma + luma / 2).unwrap_or(&[]);
        for ((pair, u), v) in uv.chunks_exact(2).zip(us.iter_mut()).zip(vs.iter_mut()) {
            if let [pu, pv] = pair {
                *u = *pu;
                *v = *pv;
            }
        }
        Ok(frame)
    }
}

/// BT.601 limited-range YUV to RGB, in integers.
pub(crate) fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (u8, u8, u8) {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clip = |x: i32| x.clamp(0, 255) as u8;
    (
        clip((298 * c + 409 * e + 128) >> 8),
        clip((298 * c - 100 * d - 208 * e + 128) >> 8),
        clip((298 * c + 516 * d + 128) >> 8),
    )
}

/// BT.601 limited-range luma of an RGB colour.
pub(crate) fn rgb_to_y(r: u8, g: u8, b: u8) -> u8 {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).clamp(0, 255) as u8
}

/// BT.601 limited-range chroma of an RGB colour.
pub(crate) fn rgb_to_uv(r: u8, g: u8, b: u8) -> (u8, u8) {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    (
        (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8,
        (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8,
    )
}

/// Peak signal-to-noise ratio of two pictures of the same size over all three planes, dB
/// (`None` when the sizes differ; 99 for identical pictures).
pub fn psnr(a: &I420Frame, b: &I420Frame) -> Option<f64> {
    if a.width != b.width || a.height != b.height {
        return None;
    }
    let sse: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| {
            let d = i64::from(*x) - i64::from(*y);
            (d * d) as u64
        })
        .sum();
    if sse == 0 {
        return Some(99.0);
    }
    let mse = sse as f64 / a.data.len() as f64;
    Some(10.0 * (255.0 * 255.0 / mse).log10())
}

/// Peak signal-to-noise ratio of two RGBA pictures of the same length over the colour
/// channels (alpha ignored), dB (`None` when the lengths differ or are not whole pixels; 99
/// for identical pictures).
pub fn psnr_rgba(a: &[u8], b: &[u8]) -> Option<f64> {
    if a.len() != b.len() || !a.len().is_multiple_of(4) || a.is_empty() {
        return None;
    }
    let mut sse = 0u64;
    for (pa, pb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for (x, y) in pa.iter().zip(pb).take(3) {
            let d = i64::from(*x) - i64::from(*y);
            sse += (d * d) as u64;
        }
    }
    if sse == 0 {
        return Some(99.0);
    }
    let mse = sse as f64 / (a.len() / 4 * 3) as f64;
    Some(10.0 * (255.0 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_empty_sizes_are_refused() {
        assert!(I420Frame::black(0, 2).is_err());
        assert!(I420Frame::black(3, 2).is_err());
        assert!(I420Frame::from_bytes(4, 4, vec![0; 5]).is_err());
        assert!(I420Frame::black(4, 2).is_ok());
    }

    #[test]
    fn colours_survive_rgb_to_yuv_and_back() {
        for (r, g, b) in [
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
            (200, 120, 40),
            (16, 16, 16),
        ] {
            let rgba: Vec<u8> = std::iter::repeat_n([r, g, b, 255], 16).flatten().collect();
            let frame = I420Frame::from_rgba(4, 4, &rgba).unwrap();
            let back = frame.to_rgba();
            for px in back.chunks_exact(4) {
                for (got, want) in px.iter().zip([r, g, b]) {
                    assert!(
                        (i32::from(*got) - i32::from(want)).abs() <= 3,
                        "{:?} came back as {px:?}",
                        (r, g, b)
                    );
                }
            }
        }
    }

    #[test]
    fn black_is_black_and_white_is_white() {
        let frame = I420Frame::black(2, 2).unwrap();
        assert_eq!(frame.to_rgba(), [0, 0, 0, 255].repeat(4));
        let white = I420Frame::from_rgba(2, 2, &[255; 16]).unwrap();
        assert_eq!(white.planes().0, &[235; 4]);
        assert_eq!(white.to_rgba(), vec![255; 16]);
    }

    #[test]
    fn yuyv_splits_into_planes() {
        // Two rows of two pixels: Y0 U Y1 V.
        let yuyv = [10, 100, 20, 200, 30, 110, 40, 210];
        let frame = I420Frame::from_yuyv(2, 2, &yuyv).unwrap();
        let (y, u, v) = frame.planes();
        assert_eq!(y, &[10, 20, 30, 40]);
        assert_eq!(u, &[105]);
        assert_eq!(v, &[205]);
        assert!(I420Frame::from_yuyv(2, 2, &yuyv[..7]).is_err());
    }

    #[test]
    fn nv12_deinterleaves_chroma() {
        let mut nv12: Vec<u8> = (1..=16).collect();
        nv12.extend([100, 200, 101, 201, 102, 202, 103, 203]);
        let frame = I420Frame::from_nv12(4, 4, &nv12).unwrap();
        let (y, u, v) = frame.planes();
        assert_eq!(y, &nv12[..16]);
        assert_eq!(u, &[100, 101, 102, 103]);
        assert_eq!(v, &[200, 201, 202, 203]);
        assert!(I420Frame::from_nv12(4, 4, &nv12[..20]).is_err());
    }

    #[test]
    fn psnr_is_high_for_close_pictures_and_none_for_other_sizes() {
        let a = I420Frame::black(4, 4).unwrap();
        let mut b = a.clone();
        assert_eq!(psnr(&a, &b), Some(99.0));
        b.planes_mut().0[0] += 10;
        let p = psnr(&a, &b).unwrap();
        assert!(p > 30.0 && p < 99.0, "{p}");
        assert_eq!(psnr(&a, &I420Frame::black(2, 2).unwrap()), None);
    }
}
