//! The paper's preprocessing, fused: crop -> CLAHE -> pad to square -> INTER_AREA resize.
//!
//! The result is byte-identical to running [`clahe`](crate::clahe::clahe), [`pad_to_square`]
//! and [`resize`](crate::resize::resize) one after the other (tested), but neither the CLAHE
//! image nor the padded square is ever materialised on the common downscaling path:
//! each CLAHE row goes straight into the horizontal area pass, and the zero padding is
//! skipped. Skipping it is exact: every term of the f32 sums is non-negative, so adding
//! `w * 0.0` never changes a sum, and the first real term of a sum that would have started
//! from zero is the same value either way.

use rayon::prelude::*;

use crate::clahe::ClaheLuts;
use crate::error::try_filled;
use crate::error::{Error, Result};
use crate::image::{check_derived, Gray, GrayView};
use crate::resize::{
    self, area_hpass, area_taps, area_vpass, finish_area_fast_row, tap_ranges, AreaTap, Interp,
};

/// Parameters of the pipeline (the paper's defaults: 256 px, clip 2.0, 8x8 tiles).
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub size: usize,
    pub clip_limit: f64,
    pub grid_x: usize,
    pub grid_y: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            size: 256,
            clip_limit: 2.0,
            grid_x: 8,
            grid_y: 8,
        }
    }
}

/// A crop box `(x0, y0, x1, y1)`, end-exclusive, in source pixels.
pub type Box4 = (i64, i64, i64, i64);

/// Resolves a crop box against an image: the far edges are clamped to the image (as numpy
/// slicing does), but a box must start inside the image and not be empty.
pub fn resolve_crop(
    view: &GrayView<'_>,
    crop: Option<Box4>,
) -> Result<(usize, usize, usize, usize)> {
    let Some((x0, y0, x1, y1)) = crop else {
        return Ok((0, 0, view.width, view.height));
    };
    let (w, h) = (view.width as i64, view.height as i64);
    if x0 < 0 || y0 < 0 || x0 >= w || y0 >= h || x1 <= x0 || y1 <= y0 {
        return Err(Error::value(format!(
            "crop box ({x0}, {y0}, {x1}, {y1}) must satisfy 0 <= x0 < x1, 0 <= y0 < y1 and start \
             inside the {w}x{h} image"
        )));
    }
    Ok((
        x0 as usize,
        y0 as usize,
        x1.min(w) as usize,
        y1.min(h) as usize,
    ))
}

/// Centred zero padding to a square: `x_pad = (m - w) / 2`, `y_pad = (m - h) / 2`.
///
/// The square must fit the derived-buffer ceiling (see [`crate::image`]): checked before it
/// is allocated.
pub fn pad_to_square(src: &GrayView<'_>) -> Result<Gray> {
    let m = src.width.max(src.height);
    let (xp, yp) = ((m - src.width) / 2, (m - src.height) / 2);
    let mut out = Gray::try_new(m, m, "the padded square")?;
    for y in 0..src.height {
        let start = (y + yp) * m + xp;
        out.data[start..start + src.width].copy_from_slice(src.row(y));
    }
    Ok(out)
}

/// Runs the whole pipeline on one image.
pub fn preprocess(src: &GrayView<'_>, crop: Option<Box4>, p: &Params) -> Result<Gray> {
    resize::check_size(p.size, p.size)?;
    let (x0, y0, x1, y1) = resolve_crop(src, crop)?;
    let view = src.crop(x0, y0, x1, y1)?;
    let luts = ClaheLuts::new(&view, p.clip_limit, p.grid_x, p.grid_y)?;
    let (w, h) = (view.width, view.height);
    let m = w.max(h);
    let (xp, yp) = ((m - w) / 2, (m - h) / 2);
    let size = p.size;
    // The resize taps along the padded side (two per source pixel at most) and each worker's
    // padded CLAHE row: derived from the long side, so bounded before anything is built.
    check_derived("the resize taps of the padded square", m, 2)?;

    if size > m {
        // Upscaling (tiny crops): rare, so take the plain route through the padded image.
        let mut eq = Gray::try_new(w, h, "the CLAHE image")?;
        for (y, row) in eq.data.chunks_mut(w).enumerate() {
            luts.apply_row(view.row(y), y, row);
        }
        return resize::resize(&pad_to_square(&eq.view())?.view(), size, size, Interp::Area);
    }
    if size == m {
        let mut out = Gray::try_new(m, m, "the output image")?;
        out.data[yp * m..(yp + h) * m]
            .par_chunks_mut(m)
            .enumerate()
            .for_each(|(y, row)| luts.apply_row(view.row(y), y, &mut row[xp..xp + w]));
        return Ok(out);
    }

    let inv = size as f64 / m as f64;
    let scale = 1.0 / inv;
    let k = scale.round();
    if (scale - k).abs() < f64::EPSILON {
        return fused_area_fast(&view, &luts, xp, yp, size, k as usize);
    }
    fused_area_general(&view, &luts, m, xp, yp, size, scale)
}

/// Integer factor `k`: block sums of the padded CLAHE image, padding skipped.
///
/// Only the output columns whose blocks meet the content are summed, straight from the
/// unpadded CLAHE row: the others are all padding (zero). Summing the whole padded row
/// instead made a thin image cost its long side squared (a 2,560,000 x 1 array ran for
/// minutes); this costs its pixels plus the output. Integer sums, so the order is exact.
fn fused_area_fast(
    view: &GrayView<'_>,
    luts: &ClaheLuts,
    xp: usize,
    yp: usize,
    size: usize,
    k: usize,
) -> Result<Gray> {
    let (w, h) = (view.width, view.height);
    let scale = 1.0f32 / (k * k) as f32;
    let cols = content_blocks(xp, w, k, size);
    let mut out = Gray::try_new(size, size, "the output image")?;
    out.data.par_chunks_mut(size).enumerate().for_each_init(
        || (vec![0u8; w], vec![0u32; size]),
        |(row, sums), (dy, drow)| {
            sums.iter_mut().for_each(|s| *s = 0);
            // The source rows of this output row that hold content (the rest are padding).
            let first = (dy * k).max(yp);
            let last = ((dy + 1) * k).min(yp + h);
            for py in first..last {
                let y = py - yp;
                luts.apply_row(view.row(y), y, row);
                for dx in cols.clone() {
                    let x0 = (dx * k).saturating_sub(xp);
                    let x1 = ((dx + 1) * k - xp).min(w);
                    sums[dx] += row[x0..x1].iter().map(|&v| v as u32).sum::<u32>();
                }
            }
            finish_area_fast_row(drow, sums, k, k, scale);
        },
    );
    Ok(out)
}

/// The output columns whose `k`-wide blocks of the padded row meet the content `[xp, xp + w)`.
fn content_blocks(xp: usize, w: usize, k: usize, size: usize) -> std::ops::Range<usize> {
    (xp / k)..(xp + w).div_ceil(k).min(size)
}

/// General factor: horizontal area pass straight from each CLAHE row, then the vertical pass.
///
/// Only the band of output columns that the content reaches is computed and stored: the
/// others are all padding, so their sums are exactly zero. Storing every column made the
/// horizontal pass `size` floats per source row, 3 GB and seconds for a 3,000,000 x 1 array;
/// the band keeps the cost proportional to the pixels plus the output.
fn fused_area_general(
    view: &GrayView<'_>,
    luts: &ClaheLuts,
    m: usize,
    xp: usize,
    yp: usize,
    size: usize,
    scale: f64,
) -> Result<Gray> {
    let (w, h) = (view.width, view.height);
    // Horizontal taps that land on content, re-indexed into the unpadded CLAHE row and into
    // the band of output columns they reach.
    let content: Vec<AreaTap> = area_taps(m, size, scale)
        .into_iter()
        .filter(|t| t.si >= xp && t.si < xp + w)
        .collect();
    let lo = content.first().map_or(0, |t| t.di);
    let band = content.last().map_or(0, |t| t.di + 1 - lo);
    let xtaps: Vec<AreaTap> = content
        .into_iter()
        .map(|t| AreaTap {
            di: t.di - lo,
            si: t.si - xp,
            ..t
        })
        .collect();
    let xranges = tap_ranges(&xtaps, band);
    let ytaps = area_taps(m, size, scale);
    let n = check_derived("the horizontal resize pass", band, h)?;
    let mut hbuf = try_filled(n, 0f32, "the horizontal resize pass")?;
    let mut out = Gray::try_new(size, size, "the output image")?;
    if band == 0 {
        return Ok(out);
    }
    hbuf.par_chunks_mut(band).enumerate().for_each_init(
        || vec![0u8; w],
        |row, (y, buf)| {
            luts.apply_row(view.row(y), y, row);
            area_hpass(row, &xtaps, &xranges, buf);
        },
    );
    let ranges = tap_ranges(&ytaps, size);
    let hb = &hbuf;
    out.data.par_chunks_mut(size).enumerate().for_each_init(
        || vec![0f32; band],
        |sum, (dy, drow)| {
            let row_of = |si: usize| {
                (si >= yp && si < yp + h).then(|| &hb[(si - yp) * band..(si - yp + 1) * band])
            };
            area_vpass(
                &ytaps[ranges[dy].clone()],
                row_of,
                &mut drow[lo..lo + band],
                sum,
            );
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clahe::clahe;

    fn noise(w: usize, h: usize, seed: u64) -> Gray {
        let mut s = seed;
        let data = (0..w * h)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect();
        Gray::from_vec(w, h, data).unwrap()
    }

    fn stepwise(img: &Gray, crop: Option<Box4>, p: &Params) -> Gray {
        let v = img.view();
        let (x0, y0, x1, y1) = resolve_crop(&v, crop).unwrap();
        let c = v.crop(x0, y0, x1, y1).unwrap();
        let eq = clahe(&c, p.clip_limit, p.grid_x, p.grid_y).unwrap();
        let sq = pad_to_square(&eq.view()).unwrap();
        resize::resize(&sq.view(), p.size, p.size, Interp::Area).unwrap()
    }

    #[test]
    fn fused_equals_stepwise() {
        let cases = [
            (300, 200, None, 64),
            (200, 300, Some((10, 20, 190, 260)), 64),
            (512, 384, None, 256), // integer factor 2
            (768, 500, None, 256), // integer factor 3 (with float noise in the scale)
            (1000, 777, Some((3, 5, 999, 700)), 256),
            (100, 60, None, 100),                      // same size
            (40, 30, None, 64),                        // upscale
            (257, 300, Some((0, 0, 5000, 5000)), 128), // far edges clamped
            (3, 2560, None, 256),                      // thin, integer factor 10
            (7, 2560, None, 256),                      // thin, blocks cut by the content
            (2560, 5, None, 256),                      // wide, integer factor 10
            (2, 3001, None, 256),                      // thin, general factor
            (3001, 4, Some((1, 0, 3001, 4)), 256),     // wide, general factor
        ];
        for (i, (w, h, crop, size)) in cases.into_iter().enumerate() {
            let img = noise(w, h, i as u64);
            let p = Params {
                size,
                ..Params::default()
            };
            assert_eq!(
                preprocess(&img.view(), crop, &p).unwrap(),
                stepwise(&img, crop, &p),
                "case {i}"
            );
        }
    }

    #[test]
    fn pad_centres_content() {
        let img = Gray::from_vec(3, 1, vec![1, 2, 3]).unwrap();
        let sq = pad_to_square(&img.view());
        assert_eq!(sq.unwrap().data, vec![0, 0, 0, 1, 2, 3, 0, 0, 0]);
        let img = Gray::from_vec(1, 2, vec![5, 6]).unwrap();
        assert_eq!(pad_to_square(&img.view()).unwrap().data, vec![5, 0, 6, 0]);
    }

    #[test]
    fn squares_over_the_ceiling_are_refused_before_allocating() {
        let start = std::time::Instant::now();
        let thin = Gray::from_vec(1, 200_000, vec![9; 200_000]).unwrap();
        let err = pad_to_square(&thin.view()).unwrap_err();
        assert!(matches!(err, Error::Value(_)), "{err}");
        assert!(err.to_string().contains("200000x200000"), "{err}");
        // The fused path never builds the square: a thin array is still cheap to preprocess.
        assert_eq!(
            preprocess(&thin.view(), None, &Params::default())
                .unwrap()
                .width,
            256
        );
        assert!(pad_to_square(&noise(1, 4096, 3).view()).is_ok());
        assert!(start.elapsed().as_secs() < 5);
    }

    #[test]
    fn thin_arrays_cost_their_pixels_not_their_long_side_squared() {
        // Issue 31, item 10: a 2,560,000 x 1 array (integer factor) took minutes and a
        // 3,000,000 x 1 one (general factor) 3 GB; both are now a pass over their pixels.
        let start = std::time::Instant::now();
        for (w, h) in [(1, 2_560_000), (1, 3_000_000), (2_560_000, 1)] {
            let thin = noise(w, h, 5);
            let out = preprocess(&thin.view(), None, &Params::default()).unwrap();
            assert_eq!((out.width, out.height), (256, 256));
        }
        assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    }

    #[test]
    fn outputs_over_the_derived_ceiling_are_value_errors() {
        let img = noise(8, 8, 4);
        let p = Params {
            size: 1 << 16,
            ..Params::default()
        };
        let err = preprocess(&img.view(), None, &p).unwrap_err();
        assert!(matches!(err, Error::Value(_)), "{err}");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn bad_crops_are_rejected() {
        let img = noise(10, 10, 1);
        for crop in [(-1, 0, 5, 5), (5, 5, 5, 9), (10, 0, 12, 5), (0, 0, 3, -1)] {
            assert!(
                preprocess(&img.view(), Some(crop), &Params::default()).is_err(),
                "{crop:?}"
            );
        }
    }
}
