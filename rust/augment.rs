//! Training-time augmentation of 8-bit images, fused into one pass per pixel: an affine warp
//! (bilinear, zeros outside), scaling to [0, 1], contrast about the image mean, brightness, and
//! clipping. Pure Rust; `boneage.shards.augment` draws the random parameters.
//!
//! The warp maps each *output* pixel `(x, y)` to the input point
//! `(a0 x + a1 y + a2, b0 x + b1 y + b2)` and interpolates there; pixel centres are at integer
//! coordinates and each of the four neighbours outside the image counts as 0 (TensorFlow's
//! `ImageProjectiveTransformV3` with `interpolation="BILINEAR"`, `fill_mode="CONSTANT"`,
//! `fill_value=0`).

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Per-image parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// `[a0, a1, a2, b0, b1, b2]`: output pixel -> input point.
    pub affine: [f32; 6],
    /// Contrast factor about the mean of the source image (1 = unchanged).
    pub contrast: f32,
    /// Offset added after contrast, in [0, 1] units (0 = unchanged).
    pub brightness: f32,
}

impl Params {
    pub const IDENTITY: Params = Params {
        affine: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        contrast: 1.0,
        brightness: 0.0,
    };
}

const INV_255: f32 = 1.0 / 255.0;

/// Fractional bits of the fixed-point source coordinates (exact enough that 256 steps
/// accumulate no visible error: the positions match f32 arithmetic to ~1e-7 px).
const FRAC: u32 = 32;
/// Interpolation weights are 16-bit: values within 255 * 2^-15 of exact bilinear.
const WBITS: u32 = 16;
const ONE_W: u64 = 1 << WBITS;

#[inline]
fn at(src: &[u8], w: usize, h: usize, x: i64, y: i64) -> i64 {
    if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
        i64::from(src[y as usize * w + x as usize])
    } else {
        0
    }
}

/// Fixed-point value of `v` (saturating; NaN -> 0 then handled as "outside" by the caller).
#[inline]
fn fixed(v: f64) -> i64 {
    (v * (1u64 << FRAC) as f64) as i64
}

/// Augments one `h x w` image into `out` (`h * w` floats in [0, 1]).
pub fn augment_into(src: &[u8], w: usize, h: usize, p: &Params, out: &mut [f32]) {
    debug_assert_eq!(src.len(), w * h);
    debug_assert_eq!(out.len(), w * h);
    let mean = if p.contrast != 1.0 {
        src.iter().map(|&v| u64::from(v)).sum::<u64>() as f32 / (w * h).max(1) as f32 * INV_255
    } else {
        0.0
    };
    // out = clip(v / 255 * c + (mean * (1 - c) + b), 0, 1), v carrying 2 * WBITS extra bits.
    let gain = p.contrast * INV_255;
    let gain_fixed = gain / (ONE_W * ONE_W) as f32;
    let offset = mean * (1.0 - p.contrast) + p.brightness;
    let outside = offset.clamp(0.0, 1.0);
    let [a0, a1, a2, b0, b1, b2] = p.affine.map(f64::from);
    if !p.affine.iter().all(|v| v.is_finite()) {
        out.fill(outside);
        return;
    }
    // Coordinates beyond this are outside anyway; clamping keeps the fixed point in range.
    let limit = (w.max(h) as f64 + 2.0) * 4.0;
    let (wi, hi) = (w as i64, h as i64);
    let shift_w = FRAC - WBITS;
    let mask_w = (ONE_W - 1) as i64;
    let pixel = |fx: i64, fy: i64| -> f32 {
        // Arithmetic shifts floor negative coordinates too.
        let (x0, y0) = (fx >> FRAC, fy >> FRAC);
        let (wx, wy) = ((fx >> shift_w) & mask_w, (fy >> shift_w) & mask_w);
        let (p00, p01, p10, p11) = if (x0 as u64) < (wi - 1) as u64 && (y0 as u64) < (hi - 1) as u64
        {
            let i = y0 as usize * w + x0 as usize;
            (
                i64::from(src[i]),
                i64::from(src[i + 1]),
                i64::from(src[i + w]),
                i64::from(src[i + w + 1]),
            )
        } else if x0 < -1 || y0 < -1 || x0 >= wi || y0 >= hi {
            return outside;
        } else {
            (
                at(src, w, h, x0, y0),
                at(src, w, h, x0 + 1, y0),
                at(src, w, h, x0, y0 + 1),
                at(src, w, h, x0 + 1, y0 + 1),
            )
        };
        let one = ONE_W as i64;
        let top = p00 * (one - wx) + p01 * wx;
        let bottom = p10 * (one - wx) + p11 * wx;
        let v = top * (one - wy) + bottom * wy; // < 2^40: exact in i64, one cvt to f32
        (v as f32 * gain_fixed + offset).clamp(0.0, 1.0)
    };
    let last = (w - 1) as f64;
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let yf = y as f64;
        let (x_start, y_start) = (a1 * yf + a2, b1 * yf + b2);
        let ends = [x_start, y_start, a0 * last + x_start, b0 * last + y_start];
        if ends.iter().all(|v| v.abs() < limit) {
            // Step in fixed point: exact integer adds, 2^-32 px per step of rounding.
            let (mut fx, mut fy) = (fixed(x_start), fixed(y_start));
            let (dx, dy) = (fixed(a0), fixed(b0));
            for o in row.iter_mut() {
                *o = pixel(fx, fy);
                fx += dx;
                fy += dy;
            }
        } else {
            for (x, o) in row.iter_mut().enumerate() {
                let xf = x as f64;
                let sx = (a0 * xf + x_start).clamp(-limit, limit);
                let sy = (b0 * xf + y_start).clamp(-limit, limit);
                *o = pixel(fixed(sx), fixed(sy));
            }
        }
    }
}

/// Augments a batch of `n` images of `h x w` (row major, back to back) in parallel; returns
/// `n * h * w` floats in [0, 1].
pub fn augment_batch(
    src: &[u8],
    n: usize,
    h: usize,
    w: usize,
    params: &[Params],
) -> Result<Vec<f32>> {
    let size = h
        .checked_mul(w)
        .filter(|&s| s > 0)
        .ok_or_else(|| Error::value(format!("images must not be empty ({h}x{w})")))?;
    if src.len() != n * size {
        return Err(Error::value(format!(
            "{} bytes do not hold {n} images of {h}x{w}",
            src.len()
        )));
    }
    if params.len() != n {
        return Err(Error::value(format!(
            "{} parameter sets for {n} images",
            params.len()
        )));
    }
    let mut out = crate::error::try_filled(n * size, 0f32, "the augmented batch")?;
    out.par_chunks_exact_mut(size)
        .zip(src.par_chunks_exact(size))
        .zip(params)
        .for_each(|((o, s), p)| augment_into(s, w, h, p, o));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Vec<u8> {
        (0..w * h).map(|i| (i * 37 % 256) as u8).collect()
    }

    #[test]
    fn identity_is_scaling() {
        let src = ramp(7, 5);
        let out = augment_batch(&src, 1, 5, 7, &[Params::IDENTITY]).unwrap();
        for (o, s) in out.iter().zip(&src) {
            assert_eq!(*o, f32::from(*s) * INV_255);
        }
    }

    #[test]
    fn integer_shift_moves_content() {
        let (w, h) = (6, 4);
        let src = ramp(w, h);
        // Output x comes from input x - 2: content moves right by 2, zeros enter on the left.
        let p = Params {
            affine: [1.0, 0.0, -2.0, 0.0, 1.0, 0.0],
            ..Params::IDENTITY
        };
        let out = augment_batch(&src, 1, h, w, &[p]).unwrap();
        for y in 0..h {
            for x in 0..w {
                let want = if x >= 2 {
                    f32::from(src[y * w + x - 2]) * INV_255
                } else {
                    0.0
                };
                assert_eq!(out[y * w + x], want, "{x},{y}");
            }
        }
    }

    #[test]
    fn half_pixel_is_the_average_and_edges_fade() {
        let src = vec![0u8, 100, 200];
        let p = Params {
            affine: [1.0, 0.0, 0.5, 0.0, 1.0, 0.0],
            ..Params::IDENTITY
        };
        let out = augment_batch(&src, 1, 1, 3, &[p]).unwrap();
        // Halfway between neighbours; past the right edge the missing neighbour counts as 0.
        let want = [50.0, 150.0, 100.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o * 255.0 - w).abs() < 1e-3, "{o}");
        }
    }

    #[test]
    fn contrast_brightness_clip_and_garbage_params() {
        let src = vec![0u8, 255, 128, 128];
        let p = Params {
            contrast: 2.0,
            brightness: 0.1,
            ..Params::IDENTITY
        };
        let out = augment_batch(&src, 1, 2, 2, &[p]).unwrap();
        let mean = (255.0 + 256.0) / 4.0 / 255.0;
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 1.0);
        assert!((out[2] - ((128.0 / 255.0 - mean) * 2.0 + mean + 0.1)).abs() < 1e-6);
        let nan = Params {
            affine: [f32::NAN, 0.0, 0.0, 0.0, f32::INFINITY, 0.0],
            ..Params::IDENTITY
        };
        assert!(augment_batch(&src, 1, 2, 2, &[nan])
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
        assert!(augment_batch(&src, 2, 2, 2, &[p, p]).is_err());
        assert!(augment_batch(&src, 1, 2, 2, &[]).is_err());
    }
}

#[cfg(test)]
mod timing {
    fn cpu_ns() -> f64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    #[ignore]
    fn time_batch() {
        use super::*;
        let (n, h, w) = (64, 256, 256);
        let src: Vec<u8> = (0..n * h * w).map(|i| (i * 31 % 251) as u8).collect();
        let p = Params {
            affine: [0.98, 0.17, -10.0, -0.17, 0.98, 12.0],
            contrast: 1.1,
            brightness: 0.02,
        };
        let params = vec![p; n];
        let mut out = vec![0f32; h * w];
        for _ in 0..5 {
            let t = cpu_ns();
            for i in 0..n {
                augment_into(&src[i * h * w..(i + 1) * h * w], w, h, &params[i], &mut out);
            }
            let dt = (cpu_ns() - t) * 1e-9;
            eprintln!(
                "cpu: {:.1} ms, {:.0} img/s/core, {:.2} ns/px",
                dt * 1e3,
                n as f64 / dt,
                dt * 1e9 / (n * h * w) as f64
            );
        }
    }
}
