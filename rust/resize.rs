//! `cv2.resize` for 8-bit single-channel images, INTER_AREA and INTER_LINEAR, bit-exact.
//!
//! OpenCV picks one of several code paths from the scale factors; each is reproduced here with
//! its own rounding, because the paths do not agree with each other:
//! - same size: a copy;
//! - INTER_AREA with both factors >= 1 and both integers: block averages ("area fast");
//! - INTER_AREA with both factors >= 1 otherwise: fractional-coverage weights in f32;
//! - INTER_AREA upscaling on any axis, and INTER_LINEAR: 11-bit fixed-point bilinear
//!   (INTER_AREA then uses its own "area mode" weights);
//! - INTER_LINEAR with both factors exactly 2: the area fast path.
//!
//! Two quirks matter for bit-exactness (found by comparing with cv2 4.11, see tests/):
//! - the vertical linear blend is computed the way OpenCV's SIMD code does it, on every column
//!   (`((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2 >> 2`), not the textbook rounding;
//! - along y, OpenCV clamps the source rows at the borders but keeps the unclamped weights
//!   (along x it clamps both), which matters because the two high-multiplies floor separately.

use rayon::prelude::*;

use crate::clahe::rne_u8;
use crate::error::try_filled;
use crate::error::{Error, Result};
use crate::image::{check_derived, Gray, GrayView};

/// Interpolation for [`resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interp {
    Area,
    Linear,
}

/// Hard ceiling on output size, so a typo cannot ask for terabytes.
pub const MAX_SIDE: usize = 1 << 16;

/// Checks an output size: each side in `1..=MAX_SIDE`, and the whole image within
/// [`MAX_DERIVED_PIXELS`](crate::image::MAX_DERIVED_PIXELS).
pub fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::value(format!(
            "output size must be 1..={MAX_SIDE} on each side, got {width}x{height}"
        )));
    }
    check_derived("the output image", width, height)?;
    Ok(())
}

/// `inv = d / s` then `scale = 1 / inv`, as OpenCV computes it (not `s / d`).
fn scale_of(src: usize, dst: usize) -> (f64, f64) {
    let inv = dst as f64 / src as f64;
    (inv, 1.0 / inv)
}

/// Resizes `src` to `width` x `height` exactly as `cv2.resize` does.
pub fn resize(src: &GrayView<'_>, width: usize, height: usize, interp: Interp) -> Result<Gray> {
    check_size(width, height)?;
    if width == src.width && height == src.height {
        return src.to_gray();
    }
    let (inv_x, scale_x) = scale_of(src.width, width);
    let (inv_y, scale_y) = scale_of(src.height, height);
    let ix = scale_x.round();
    let iy = scale_y.round();
    let area_fast = (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON;
    match interp {
        Interp::Linear if area_fast && ix == 2.0 && iy == 2.0 => {
            area_fast_resize(src, width, height, 2, 2)
        }
        Interp::Area if scale_x >= 1.0 && scale_y >= 1.0 => {
            if area_fast {
                area_fast_resize(src, width, height, ix as usize, iy as usize)
            } else {
                area_general(src, width, height, scale_x, scale_y)
            }
        }
        Interp::Area => linear(src, width, height, (inv_x, scale_x), (inv_y, scale_y), true),
        Interp::Linear => linear(
            src,
            width,
            height,
            (inv_x, scale_x),
            (inv_y, scale_y),
            false,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// INTER_AREA, integer factors

/// Output of one k_x-by-k_y block sum: OpenCV's 2x2 SIMD rounding `(sum + 2) >> 2` (cv2 4.11
/// uses it on every column), otherwise the block mean in f32 rounded half to even.
#[inline]
pub fn area_fast_value(sum: u32, kx: usize, ky: usize, scale: f32) -> u8 {
    if kx == 2 && ky == 2 {
        ((sum + 2) >> 2) as u8
    } else {
        rne_u8(sum as f32 * scale)
    }
}

fn area_fast_resize(
    src: &GrayView<'_>,
    width: usize,
    height: usize,
    kx: usize,
    ky: usize,
) -> Result<Gray> {
    let mut out = Gray::try_new(width, height, "the output image")?;
    let scale = 1.0f32 / (kx * ky) as f32;
    out.data
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(dy, drow)| {
            let mut sums = vec![0u32; width];
            for sy in dy * ky..(dy + 1) * ky {
                add_block_sums(&mut sums, src.row(sy), kx);
            }
            finish_area_fast_row(drow, &sums, kx, ky, scale);
        });
    Ok(out)
}

/// Adds each `k`-pixel block of `row` to its slot in `sums` (the integer-factor area inner
/// loop, shared with the fused CLAHE + resize path).
pub(crate) fn add_block_sums(sums: &mut [u32], row: &[u8], k: usize) {
    for (dx, s) in sums.iter_mut().enumerate() {
        *s += row[dx * k..(dx + 1) * k]
            .iter()
            .map(|&v| v as u32)
            .sum::<u32>();
    }
}

/// Turns one output row's block sums into pixels, rounding as OpenCV does.
pub(crate) fn finish_area_fast_row(
    drow: &mut [u8],
    sums: &[u32],
    kx: usize,
    ky: usize,
    scale: f32,
) {
    for (d, &s) in drow.iter_mut().zip(sums) {
        *d = area_fast_value(s, kx, ky, scale);
    }
}

// ---------------------------------------------------------------------------------------------
// INTER_AREA, general downscale

/// One (destination, source, weight) entry of OpenCV's `computeResizeAreaTab`.
#[derive(Clone, Copy, Debug)]
pub struct AreaTap {
    pub di: usize,
    pub si: usize,
    pub alpha: f32,
}

/// OpenCV's `computeResizeAreaTab`, in its order.
pub fn area_taps(ssize: usize, dsize: usize, scale: f64) -> Vec<AreaTap> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as isize;
        let sx2 = (fsx2.floor() as isize).min(ssize as isize - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(AreaTap {
                di: dx,
                si: (sx1 - 1) as usize,
                alpha: ((sx1 as f64 - fsx1) / cell) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(AreaTap {
                di: dx,
                si: sx as usize,
                alpha: (1.0 / cell) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(AreaTap {
                di: dx,
                si: sx2 as usize,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    tab
}

/// Horizontal area pass of one source row into `buf`, each output summed in table order.
///
/// `ranges[d]` lists output `d`'s taps (see [`tap_ranges`]). Summing in a register per output
/// performs exactly OpenCV's sequence of f32 operations (`0 + s0*a0 + s1*a1 + ...`) without
/// its read-modify-write of `buf` on every tap.
#[inline]
pub fn area_hpass(
    row: &[u8],
    taps: &[AreaTap],
    ranges: &[std::ops::Range<usize>],
    buf: &mut [f32],
) {
    for (b, r) in buf.iter_mut().zip(ranges) {
        let mut acc = 0.0f32;
        for t in &taps[r.clone()] {
            acc += row[t.si] as f32 * t.alpha;
        }
        *b = acc;
    }
}

/// For each output row, the range of vertical taps that feed it.
pub fn tap_ranges(taps: &[AreaTap], dsize: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = vec![0..0; dsize];
    let mut start = 0;
    while start < taps.len() {
        let di = taps[start].di;
        let mut end = start;
        while end < taps.len() && taps[end].di == di {
            end += 1;
        }
        ranges[di] = start..end;
        start = end;
    }
    ranges
}

/// Vertical blend of horizontally resized rows: first tap sets, later taps add (f32).
///
/// `row_of(si)` returns the horizontal pass of source row `si`, or `None` for an all-zero row
/// (padding), which is skipped: adding `w * 0.0` never changes an f32 sum of non-negative terms.
pub fn area_vpass<'b>(
    taps: &[AreaTap],
    row_of: impl Fn(usize) -> Option<&'b [f32]>,
    out: &mut [u8],
    sum: &mut [f32],
) {
    sum.iter_mut().for_each(|s| *s = 0.0);
    let mut first = true;
    for t in taps {
        let Some(buf) = row_of(t.si) else { continue };
        if first {
            for (s, &b) in sum.iter_mut().zip(buf) {
                *s = t.alpha * b;
            }
            first = false;
        } else {
            for (s, &b) in sum.iter_mut().zip(buf) {
                *s += t.alpha * b;
            }
        }
    }
    for (o, &s) in out.iter_mut().zip(sum.iter()) {
        *o = rne_u8(s);
    }
}

fn area_general(src: &GrayView<'_>, width: usize, height: usize, sx: f64, sy: f64) -> Result<Gray> {
    let xtaps = area_taps(src.width, width, sx);
    let ytaps = area_taps(src.height, height, sy);
    let xranges = tap_ranges(&xtaps, width);
    let n = check_derived("the horizontal resize pass", width, src.height)?;
    let mut hbuf = try_filled(n, 0f32, "the horizontal resize pass")?;
    hbuf.par_chunks_mut(width)
        .enumerate()
        .for_each(|(y, buf)| area_hpass(src.row(y), &xtaps, &xranges, buf));
    let ranges = tap_ranges(&ytaps, height);
    let mut out = Gray::try_new(width, height, "the output image")?;
    out.data
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(dy, drow)| {
            let mut sum = vec![0f32; width];
            let hb = &hbuf;
            area_vpass(
                &ytaps[ranges[dy].clone()],
                |si| Some(&hb[si * width..(si + 1) * width]),
                drow,
                &mut sum,
            );
        });
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// INTER_LINEAR (and INTER_AREA's upscaling "area mode"), 11-bit fixed point

const COEF_SCALE: f32 = 2048.0;

/// Source index and the two 11-bit weights for each output index along one axis.
///
/// `clamp_weights`: OpenCV zeroes the fraction at the borders along x but not along y; along y
/// only the row indices are clamped (by the caller).
fn linear_taps(
    ssize: usize,
    dsize: usize,
    (inv, scale): (f64, f64),
    area_mode: bool,
    clamp_weights: bool,
) -> Vec<(isize, i32, i32)> {
    (0..dsize)
        .map(|d| {
            let (mut s, mut f) = if area_mode {
                let s = (d as f64 * scale).floor() as isize;
                let f = ((d + 1) as f64 - (s + 1) as f64 * inv) as f32;
                (s, if f <= 0.0 { 0.0 } else { f - f.floor() })
            } else {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let s = f.floor();
                (s as isize, f - s)
            };
            if clamp_weights {
                if s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if s >= ssize as isize - 1 {
                    s = ssize as isize - 1;
                    f = 0.0;
                }
            }
            let a0 = ((1.0 - f) * COEF_SCALE).round_ties_even() as i32;
            let a1 = (f * COEF_SCALE).round_ties_even() as i32;
            (s, a0, a1)
        })
        .collect()
}

fn linear_hpass(row: &[u8], taps: &[(isize, i32, i32)], out: &mut [i32]) {
    let last = row.len() - 1;
    for (o, &(s, a0, a1)) in out.iter_mut().zip(taps) {
        let s = s as usize; // x taps are clamped to 0..=last
        *o = row[s] as i32 * a0 + row[(s + 1).min(last)] as i32 * a1;
    }
}

fn linear(
    src: &GrayView<'_>,
    width: usize,
    height: usize,
    (inv_x, scale_x): (f64, f64),
    (inv_y, scale_y): (f64, f64),
    area_mode: bool,
) -> Result<Gray> {
    let xt = linear_taps(src.width, width, (inv_x, scale_x), area_mode, true);
    let yt = linear_taps(src.height, height, (inv_y, scale_y), area_mode, false);
    let clamp_row = |y: isize| y.clamp(0, src.height as isize - 1) as usize;
    let mut out = Gray::try_new(width, height, "the output image")?;
    out.data.par_chunks_mut(width).enumerate().for_each_init(
        || (vec![0i32; width], vec![0i32; width]),
        |(r0, r1), (dy, drow)| {
            let (sy, b0, b1) = yt[dy];
            linear_hpass(src.row(clamp_row(sy)), &xt, r0);
            linear_hpass(src.row(clamp_row(sy + 1)), &xt, r1);
            for ((d, &a), &b) in drow.iter_mut().zip(r0.iter()).zip(r1.iter()) {
                // OpenCV's SIMD blend: 16-bit high multiplies on rows pre-shifted by 4.
                let v = ((((a >> 4) * b0) >> 16) + (((b >> 4) * b1) >> 16) + 2) >> 2;
                *d = v.clamp(0, 255) as u8;
            }
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Gray {
        Gray::from_vec(w, h, (0..w * h).map(|i| (i * 7 % 251) as u8).collect()).unwrap()
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = ramp(13, 7);
        for interp in [Interp::Area, Interp::Linear] {
            assert_eq!(resize(&img.view(), 13, 7, interp).unwrap(), img);
        }
    }

    #[test]
    fn area_fast_averages_blocks() {
        let img = Gray::from_vec(4, 2, vec![0, 4, 8, 8, 4, 0, 8, 8]).unwrap();
        let out = resize(&img.view(), 2, 1, Interp::Area).unwrap();
        assert_eq!(out.data, vec![2, 8]);
    }

    #[test]
    fn area_taps_cover_each_output_with_unit_weight() {
        let taps = area_taps(1000, 256, 1000.0 / 256.0);
        let mut total = vec![0f64; 256];
        for t in &taps {
            total[t.di] += t.alpha as f64;
        }
        assert!(total.iter().all(|&s| (s - 1.0).abs() < 1e-5));
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = Gray::from_vec(37, 23, vec![77; 37 * 23]).unwrap();
        for (w, h) in [(5, 3), (100, 60), (37, 50), (12, 23)] {
            for interp in [Interp::Area, Interp::Linear] {
                let out = resize(&img.view(), w, h, interp).unwrap();
                assert!(out.data.iter().all(|&v| v == 77), "{w}x{h} {interp:?}");
            }
        }
    }

    #[test]
    fn rejects_zero_size() {
        let img = ramp(4, 4);
        assert!(resize(&img.view(), 0, 4, Interp::Area).is_err());
    }

    #[test]
    fn huge_outputs_are_refused_before_allocating() {
        let img = ramp(3, 3);
        for (w, h) in [(1 << 16, 1 << 16), (1 << 16, 1 << 15)] {
            let err = resize(&img.view(), w, h, Interp::Linear).unwrap_err();
            assert!(matches!(err, Error::Value(_)), "{err}");
            assert!(err.to_string().contains("over the limit"), "{err}");
        }
        assert!(resize(&img.view(), 1 << 16, 2, Interp::Area).is_ok());
    }
}
