//! Contrast Limited Adaptive Histogram Equalisation with OpenCV's exact semantics.
//!
//! Equivalent: `cv2.createCLAHE(clipLimit, tileGridSize).apply(img)` for 8-bit images (the CPU
//! path). The formulas, including OpenCV's padding quirk and its f32 blend order, are written
//! down in `shared/docs/opencv-parity.md`; parity is tested against `cv2` in `tests/`.
//!
//! The work is split in two so the fused pipeline (`preprocess.rs`) can consume rows as they
//! are produced: [`ClaheLuts::new`] builds one LUT per tile (parallel over tiles), and
//! [`ClaheLuts::apply_row`] maps one source row (parallel callers over rows).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::image::{Gray, GrayView};

/// Round half to even for a non-negative f32 below 2^23, then saturate to u8.
///
/// Adding and removing 2^23 rounds with the FPU's default mode (ties to even) and compiles to
/// two adds, where `round_ties_even` would be a libm call on baseline x86-64.
#[inline(always)]
pub fn rne_u8(v: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0;
    ((v + MAGIC) - MAGIC) as u8
}

/// OpenCV's `borderInterpolate` for BORDER_REFLECT_101 (`gfedcb|abcdefgh|gfedcba`).
pub fn reflect101(mut p: isize, len: usize) -> usize {
    let len = len as isize;
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        if p < 0 {
            p = -p;
        } else {
            p = 2 * len - 2 - p;
        }
    }
    p as usize
}

/// Validates CLAHE parameters the way a caller needs to hear about them.
pub fn check_params(clip_limit: f64, grid_x: usize, grid_y: usize) -> Result<()> {
    if !(clip_limit.is_finite() && clip_limit >= 0.0) {
        return Err(Error::value(format!(
            "clip_limit must be a finite number >= 0, got {clip_limit}"
        )));
    }
    if grid_x == 0 || grid_y == 0 || grid_x > 1024 || grid_y > 1024 {
        return Err(Error::value(format!(
            "tile_grid must be two integers in 1..=1024, got ({grid_x}, {grid_y})"
        )));
    }
    Ok(())
}

/// Per-tile lookup tables plus the geometry needed to blend them.
pub struct ClaheLuts {
    grid_x: usize,
    grid_y: usize,
    tile_h: usize,
    /// `grid_y * grid_x` tables of 256 entries, stored as f32 (the values are integers 0..=255,
    /// so the blend sees exactly what OpenCV's u8-to-float conversion gives).
    luts: Vec<f32>,
    /// Per column: offsets of the left/right tile tables and the blend weights.
    ind1: Vec<u32>,
    ind2: Vec<u32>,
    xa: Vec<f32>,
    xa1: Vec<f32>,
    /// The fast layout, when it fits in memory: for every (tile-row pair, tile-column pair) a
    /// table of `[L11, L12, L21, L22]` per grey value, so one pixel costs one 16-byte load.
    quads: Option<Vec<[f32; 4]>>,
    /// Runs of columns sharing a tile-column pair: `(start, end, pair index)`.
    segments: Vec<(usize, usize, usize)>,
}

/// Upper bound on the quad tables (bytes); larger grids use the per-tile tables directly.
const MAX_QUAD_BYTES: usize = 16 << 20;

fn histogram(src: &GrayView<'_>, rows: &[usize], cols: &ColumnSpan<'_>) -> [u32; 256] {
    // Four sub-histograms avoid the store-to-load stall of repeated equal values.
    let mut h = [[0u32; 256]; 4];
    for &y in rows {
        let row = src.row(y);
        let inside = &row[cols.inside.clone()];
        let mut chunks = inside.chunks_exact(4);
        for c in &mut chunks {
            h[0][c[0] as usize] += 1;
            h[1][c[1] as usize] += 1;
            h[2][c[2] as usize] += 1;
            h[3][c[3] as usize] += 1;
        }
        for &v in chunks.remainder() {
            h[0][v as usize] += 1;
        }
        for &x in cols.reflected {
            h[1][row[x] as usize] += 1;
        }
    }
    let mut out = [0u32; 256];
    for (i, o) in out.iter_mut().enumerate() {
        *o = h[0][i] + h[1][i] + h[2][i] + h[3][i];
    }
    out
}

/// The columns of one tile: a contiguous run inside the image plus reflected padding columns.
struct ColumnSpan<'a> {
    inside: std::ops::Range<usize>,
    reflected: &'a [usize],
}

fn clip_and_lut(hist: &mut [u32; 256], clip: u32, scale: f32, lut: &mut [f32]) {
    if clip > 0 {
        let mut clipped: u32 = 0;
        for h in hist.iter_mut() {
            if *h > clip {
                clipped += *h - clip;
                *h = clip;
            }
        }
        let batch = clipped / 256;
        let mut residual = clipped - batch * 256;
        for h in hist.iter_mut() {
            *h += batch;
        }
        if let Some(q) = 256u32.checked_div(residual) {
            let step = q.max(1) as usize;
            let mut i = 0;
            while i < 256 && residual > 0 {
                hist[i] += 1;
                i += step;
                residual -= 1;
            }
        }
    }
    let mut sum: u32 = 0;
    for (i, l) in lut.iter_mut().enumerate() {
        sum += hist[i];
        // OpenCV: saturate_cast<uchar>(sum * lutScale), float product, rounded half to even.
        *l = rne_u8(sum as f32 * scale) as f32;
    }
}

impl ClaheLuts {
    /// Builds the tile tables for `src` (OpenCV's `CLAHE_CalcLut_Body`).
    pub fn new(src: &GrayView<'_>, clip_limit: f64, grid_x: usize, grid_y: usize) -> Result<Self> {
        check_params(clip_limit, grid_x, grid_y)?;
        let (w, h) = (src.width, src.height);
        // OpenCV pads only when a side is indivisible, but then pads both sides.
        let (ext_w, ext_h) = if w % grid_x == 0 && h % grid_y == 0 {
            (w, h)
        } else {
            (w + grid_x - w % grid_x, h + grid_y - h % grid_y)
        };
        let tile_w = ext_w / grid_x;
        let tile_h = ext_h / grid_y;
        let area = tile_w * tile_h;
        let clip = if clip_limit > 0.0 {
            ((clip_limit * area as f64 / 256.0) as i64).clamp(1, u32::MAX as i64) as u32
        } else {
            0
        };
        let scale = 255.0f32 / area as f32;

        let col_map: Vec<usize> = (0..ext_w).map(|x| reflect101(x as isize, w)).collect();
        let row_map: Vec<usize> = (0..ext_h).map(|y| reflect101(y as isize, h)).collect();

        let mut luts = vec![0f32; grid_x * grid_y * 256];
        luts.par_chunks_mut(256).enumerate().for_each(|(k, lut)| {
            let (ty, tx) = (k / grid_x, k % grid_x);
            let x0 = tx * tile_w;
            let x1 = x0 + tile_w;
            let inside_end = x1.min(w).max(x0.min(w));
            let span = ColumnSpan {
                inside: x0.min(w)..inside_end,
                reflected: &col_map[x0.max(w).min(x1)..x1],
            };
            let rows = &row_map[ty * tile_h..(ty + 1) * tile_h];
            let mut hist = histogram(src, rows, &span);
            clip_and_lut(&mut hist, clip, scale, lut);
        });

        // Per-column blend weights (OpenCV's CLAHE_Interpolation_Body constructor).
        let inv_tw = 1.0f32 / tile_w as f32;
        let mut ind1 = Vec::with_capacity(w);
        let mut ind2 = Vec::with_capacity(w);
        let mut xa = Vec::with_capacity(w);
        let mut xa1 = Vec::with_capacity(w);
        let mut segments: Vec<(usize, usize, usize)> = Vec::new();
        for x in 0..w {
            let txf = x as f32 * inv_tw - 0.5f32;
            let tx1 = txf.floor();
            let a = txf - tx1;
            let tx1 = tx1 as isize;
            // Pair index: the unclamped left tile + 1, in 0..=grid_x.
            let pair = (tx1 + 1) as usize;
            match segments.last_mut() {
                Some(seg) if seg.2 == pair => seg.1 = x + 1,
                _ => segments.push((x, x + 1, pair)),
            }
            let tx2 = (tx1 + 1).min(grid_x as isize - 1);
            let tx1 = tx1.max(0);
            ind1.push((tx1 as u32) * 256);
            ind2.push((tx2 as u32) * 256);
            xa.push(a);
            xa1.push(1.0f32 - a);
        }
        let quads = ((grid_x + 1) * (grid_y + 1) * 256 * 16 <= MAX_QUAD_BYTES)
            .then(|| build_quads(&luts, grid_x, grid_y));
        Ok(ClaheLuts {
            grid_x,
            grid_y,
            tile_h,
            luts,
            ind1,
            ind2,
            xa,
            xa1,
            quads,
            segments,
        })
    }

    /// Maps source row `y` (of the image the tables were built on) into `out`.
    #[inline]
    pub fn apply_row(&self, src_row: &[u8], y: usize, out: &mut [u8]) {
        let inv_th = 1.0f32 / self.tile_h as f32;
        let tyf = y as f32 * inv_th - 0.5f32;
        let ty1f = tyf.floor();
        let ya = tyf - ty1f;
        let ya1 = 1.0f32 - ya;
        let ty1 = ty1f as isize;
        let n = out.len();
        let src_row = &src_row[..n];
        if let Some(quads) = &self.quads {
            let pair_y = (ty1 + 1) as usize;
            let band =
                &quads[pair_y * (self.grid_x + 1) * 256..(pair_y + 1) * (self.grid_x + 1) * 256];
            for &(start, end, pair_x) in &self.segments {
                if start >= n {
                    break;
                }
                let end = end.min(n);
                let table: &[[f32; 4]; 256] = band[pair_x * 256..(pair_x + 1) * 256]
                    .try_into()
                    .expect("a quad table has 256 entries");
                let cols = start..end;
                blend_segment(
                    table,
                    &src_row[cols.clone()],
                    &self.xa[cols.clone()],
                    &self.xa1[cols.clone()],
                    (ya, ya1),
                    &mut out[cols],
                );
            }
            return;
        }
        let ty2 = (ty1 + 1).min(self.grid_y as isize - 1) as usize;
        let ty1 = ty1.max(0) as usize;
        let plane = self.grid_x * 256;
        let p1 = &self.luts[ty1 * plane..(ty1 + 1) * plane];
        let p2 = &self.luts[ty2 * plane..(ty2 + 1) * plane];
        let (ind1, ind2) = (&self.ind1[..n], &self.ind2[..n]);
        let (xa, xa1) = (&self.xa[..n], &self.xa1[..n]);
        for x in 0..n {
            let v = src_row[x] as usize;
            let (i1, i2) = (ind1[x] as usize + v, ind2[x] as usize + v);
            let top = p1[i1] * xa1[x] + p1[i2] * xa[x];
            let bottom = p2[i1] * xa1[x] + p2[i2] * xa[x];
            out[x] = rne_u8(top * ya1 + bottom * ya);
        }
    }
}

/// Blends one run of columns that share a quad table (OpenCV's per-pixel formula).
#[inline]
fn blend_segment(
    table: &[[f32; 4]; 256],
    src: &[u8],
    xa: &[f32],
    xa1: &[f32],
    (ya, ya1): (f32, f32),
    out: &mut [u8],
) {
    // SAFETY: SSE2 is part of the x86-64 baseline; the helper checks its slice bounds.
    #[cfg(target_arch = "x86_64")]
    let done = unsafe { sse2::blend4(table, src, xa, xa1, (ya, ya1), out) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for x in done..out.len() {
        let q = table[src[x] as usize];
        // Same association and order as OpenCV, no fused multiply-add.
        let top = q[0] * xa1[x] + q[1] * xa[x];
        let bottom = q[2] * xa1[x] + q[3] * xa[x];
        out[x] = rne_u8(top * ya1 + bottom * ya);
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    //! Four pixels at a time: the four quads are transposed into L11, L12, L21, L22 vectors,
    //! then the very same sequence of IEEE multiplies and adds as the scalar code runs
    //! lane-wise (SSE2 has no FMA, so nothing is fused). Bit-identical to the scalar path.
    use std::arch::x86_64::*;

    /// Returns how many leading pixels it wrote (a multiple of 4).
    ///
    /// # Safety
    /// Needs SSE2 (always present on x86-64). Every access is bounds-checked against the
    /// shortest of the slices.
    #[inline]
    pub unsafe fn blend4(
        table: &[[f32; 4]; 256],
        src: &[u8],
        xa: &[f32],
        xa1: &[f32],
        (ya, ya1): (f32, f32),
        out: &mut [u8],
    ) -> usize {
        let n = out.len().min(src.len()).min(xa.len()).min(xa1.len()) / 4 * 4;
        let (vya, vya1) = (_mm_set1_ps(ya), _mm_set1_ps(ya1));
        let magic = _mm_set1_ps(8_388_608.0);
        let mut x = 0;
        while x < n {
            let q0 = _mm_loadu_ps(table[src[x] as usize].as_ptr());
            let q1 = _mm_loadu_ps(table[src[x + 1] as usize].as_ptr());
            let q2 = _mm_loadu_ps(table[src[x + 2] as usize].as_ptr());
            let q3 = _mm_loadu_ps(table[src[x + 3] as usize].as_ptr());
            // 4x4 transpose: rows are pixels, columns L11, L12, L21, L22.
            let t0 = _mm_unpacklo_ps(q0, q1);
            let t1 = _mm_unpacklo_ps(q2, q3);
            let t2 = _mm_unpackhi_ps(q0, q1);
            let t3 = _mm_unpackhi_ps(q2, q3);
            let l11 = _mm_movelh_ps(t0, t1);
            let l12 = _mm_movehl_ps(t1, t0);
            let l21 = _mm_movelh_ps(t2, t3);
            let l22 = _mm_movehl_ps(t3, t2);
            let a = _mm_loadu_ps(xa[x..x + 4].as_ptr());
            let a1 = _mm_loadu_ps(xa1[x..x + 4].as_ptr());
            let top = _mm_add_ps(_mm_mul_ps(l11, a1), _mm_mul_ps(l12, a));
            let bottom = _mm_add_ps(_mm_mul_ps(l21, a1), _mm_mul_ps(l22, a));
            let res = _mm_add_ps(_mm_mul_ps(top, vya1), _mm_mul_ps(bottom, vya));
            let rounded = _mm_sub_ps(_mm_add_ps(res, magic), magic);
            let ints = _mm_cvttps_epi32(rounded);
            let bytes = _mm_packus_epi16(_mm_packs_epi32(ints, ints), ints);
            let word = _mm_cvtsi128_si32(bytes) as u32;
            out[x..x + 4].copy_from_slice(&word.to_le_bytes());
            x += 4;
        }
        n
    }
}

/// Interleaves the four tables each pixel blends, for every tile-row and tile-column pair.
///
/// Pair `j` along an axis means tiles `(max(j - 1, 0), min(j, grid - 1))`, i.e. the unclamped
/// first tile index plus one.
fn build_quads(luts: &[f32], grid_x: usize, grid_y: usize) -> Vec<[f32; 4]> {
    let pair = |j: usize, grid: usize| (j.saturating_sub(1), j.min(grid - 1));
    let mut quads = vec![[0f32; 4]; (grid_x + 1) * (grid_y + 1) * 256];
    for (k, table) in quads.chunks_mut(256).enumerate() {
        let (jy, jx) = (k / (grid_x + 1), k % (grid_x + 1));
        let (ty1, ty2) = pair(jy, grid_y);
        let (tx1, tx2) = pair(jx, grid_x);
        let lut =
            |ty: usize, tx: usize| &luts[(ty * grid_x + tx) * 256..(ty * grid_x + tx + 1) * 256];
        let (l11, l12, l21, l22) = (lut(ty1, tx1), lut(ty1, tx2), lut(ty2, tx1), lut(ty2, tx2));
        for (v, q) in table.iter_mut().enumerate() {
            *q = [l11[v], l12[v], l21[v], l22[v]];
        }
    }
    quads
}

/// CLAHE of a whole image, parallel over rows.
pub fn clahe(src: &GrayView<'_>, clip_limit: f64, grid_x: usize, grid_y: usize) -> Result<Gray> {
    let luts = ClaheLuts::new(src, clip_limit, grid_x, grid_y)?;
    let mut out = Gray::try_new(src.width, src.height, "the CLAHE image")?;
    let w = src.width;
    out.data
        .par_chunks_mut(w)
        .enumerate()
        .for_each(|(y, row)| luts.apply_row(src.row(y), y, row));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect101_matches_opencv_examples() {
        // gfedcb|abcdefgh|gfedcba
        let n = 8;
        assert_eq!(reflect101(-1, n), 1);
        assert_eq!(reflect101(8, n), 6);
        assert_eq!(reflect101(9, n), 5);
        assert_eq!(reflect101(0, 1), 0);
        assert_eq!(reflect101(5, 3), 1); // repeated reflection for pads larger than the image
    }

    #[test]
    fn rne_rounds_half_to_even() {
        assert_eq!(rne_u8(0.5), 0);
        assert_eq!(rne_u8(1.5), 2);
        assert_eq!(rne_u8(2.5), 2);
        assert_eq!(rne_u8(254.7), 255);
        assert_eq!(rne_u8(300.0), 255);
    }

    #[test]
    fn constant_image_maps_to_one_value() {
        let img = Gray::from_vec(64, 64, vec![100; 64 * 64]).unwrap();
        let out = clahe(&img.view(), 2.0, 8, 8).unwrap();
        assert!(out.data.iter().all(|&v| v == out.data[0]));
    }

    #[test]
    fn no_clip_is_plain_equalisation_per_tile() {
        // One tile, no clipping: the LUT is the scaled cumulative histogram.
        let data: Vec<u8> = (0..256).map(|i| i as u8).collect();
        let img = Gray::from_vec(16, 16, data).unwrap();
        let out = clahe(&img.view(), 0.0, 1, 1).unwrap();
        // cdf(v) = v + 1 over 256 pixels -> round((v + 1) * 255 / 256).
        for (v, &o) in out.data.iter().enumerate() {
            assert_eq!(o, rne_u8((v as f32 + 1.0) * (255.0f32 / 256.0)));
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        let img = Gray::new(4, 4);
        assert!(clahe(&img.view(), -1.0, 8, 8).is_err());
        assert!(clahe(&img.view(), f64::NAN, 8, 8).is_err());
        assert!(clahe(&img.view(), 2.0, 0, 8).is_err());
    }

    #[test]
    fn quad_tables_and_plain_tables_agree() {
        let data: Vec<u8> = (0..97 * 61).map(|i| ((i * 37) ^ (i >> 3)) as u8).collect();
        let img = Gray::from_vec(97, 61, data).unwrap();
        let luts = ClaheLuts::new(&img.view(), 3.0, 5, 7).unwrap();
        let plain = ClaheLuts {
            quads: None,
            ..ClaheLuts::new(&img.view(), 3.0, 5, 7).unwrap()
        };
        assert!(luts.quads.is_some());
        let (mut a, mut b) = (vec![0u8; 97], vec![0u8; 97]);
        for y in 0..61 {
            luts.apply_row(img.view().row(y), y, &mut a);
            plain.apply_row(img.view().row(y), y, &mut b);
            assert_eq!(a, b, "row {y}");
        }
    }

    #[test]
    fn tiny_images_with_large_grids_work() {
        let img = Gray::from_vec(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let out = clahe(&img.view(), 40.0, 16, 16).unwrap();
        assert_eq!(out.data.len(), 6);
    }
}
