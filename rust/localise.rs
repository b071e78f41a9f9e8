//! A hand localiser for radiographs, for when MediaPipe (trained on photographs) finds no hand.
//!
//! Steps, on a copy shrunk to about 256 px (INTER_AREA, so noise averages out):
//! 1. Polarity: radiographs are usually bright hand on dark film, but some are inverted; if
//!    the outer ring of the image is brighter than the centre, the image is inverted first.
//! 2. A three-class Otsu threshold splits background from soft tissue and bone; the lower
//!    level is used, so the fingertips' soft tissue stays with the hand.
//! 3. One erosion cuts thin bridges (to burnt-in letters, rulers, film edges), then the
//!    8-connected components are labelled and scored: large, central, and not a frame hugging
//!    the border. Small blobs (letter markers) never win because of their size.
//! 4. The winner's box is grown back by the erosion, mapped to source pixels, and widened by a
//!    margin (5 % of the image height, as the paper does for MediaPipe's box).
//!
//! The answer says how sure it is (`plausible`), so callers can fall back to the whole image.

use crate::error::Result;
use crate::image::GrayView;
use crate::resize::{resize, Interp};

/// What the localiser found, in source pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Localisation {
    /// `(x0, y0, x1, y1)`, end-exclusive, margin included, clamped to the image.
    pub bbox: (usize, usize, usize, usize),
    /// Fraction of the image area covered by the chosen component.
    pub area_fraction: f32,
    /// Whether the image looked inverted (bright background).
    pub inverted: bool,
    /// Lower three-class Otsu threshold on the (possibly inverted) working image.
    pub threshold: u8,
    /// The component is large enough and not a frame: worth using.
    pub plausible: bool,
}

const WORK_SIDE: usize = 256;
/// Hand and background class means must differ by this many grey levels.
const MIN_CONTRAST: f64 = 12.0;

/// Otsu's threshold (the level maximising the between-class variance) and the distance
/// between the two class means, which says whether there was anything to split.
pub fn otsu(hist: &[u64; 256]) -> (u8, f64) {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return (0, 0.0);
    }
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &h)| i as f64 * h as f64)
        .sum();
    let (mut w0, mut sum0) = (0f64, 0f64);
    let (mut best, mut best_t, mut gap) = (-1f64, 0u8, 0f64);
    for (t, &h) in hist.iter().enumerate() {
        w0 += h as f64;
        sum0 += t as f64 * h as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t as u8;
            gap = m1 - m0;
        }
    }
    (best_t, gap)
}

/// Three-class Otsu: the pair of levels `t1 < t2` maximising the between-class variance.
/// On radiographs the classes are background, soft tissue and bone; `t1` keeps the soft
/// tissue, so fingertips and the wrist's outline stay inside the mask.
pub fn otsu3(hist: &[u64; 256]) -> (u8, u8) {
    let mut p = [0f64; 257];
    let mut s = [0f64; 257];
    for i in 0..256 {
        p[i + 1] = p[i] + hist[i] as f64;
        s[i + 1] = s[i] + i as f64 * hist[i] as f64;
    }
    let class = |a: usize, b: usize| {
        // Levels a..b (exclusive): weight * mean^2.
        let w = p[b] - p[a];
        if w > 0.0 {
            let m = (s[b] - s[a]) / w;
            w * m * m
        } else {
            0.0
        }
    };
    let (mut best, mut bt) = (-1f64, (0u8, 0u8));
    for t1 in 1..255 {
        for t2 in t1 + 1..256 {
            let v = class(0, t1) + class(t1, t2) + class(t2, 256);
            if v > best {
                best = v;
                bt = ((t1 - 1) as u8, (t2 - 1) as u8);
            }
        }
    }
    bt
}

fn erode3(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let mut all = true;
            'n: for dy in 0..3 {
                for dx in 0..3 {
                    if !mask[(y + dy - 1) * w + x + dx - 1] {
                        all = false;
                        break 'n;
                    }
                }
            }
            out[y * w + x] = all;
        }
    }
    out
}

/// One connected component's statistics.
#[derive(Clone, Copy, Debug)]
struct Component {
    area: usize,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    sum_x: f64,
    sum_y: f64,
}

fn components(mask: &[bool], w: usize, h: usize) -> Vec<Component> {
    let mut label = vec![u32::MAX; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || label[start] != u32::MAX {
            continue;
        }
        let id = out.len() as u32;
        let mut c = Component {
            area: 0,
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
            sum_x: 0.0,
            sum_y: 0.0,
        };
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            c.area += 1;
            c.x0 = c.x0.min(x);
            c.y0 = c.y0.min(y);
            c.x1 = c.x1.max(x + 1);
            c.y1 = c.y1.max(y + 1);
            c.sum_x += x as f64;
            c.sum_y += y as f64;
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && label[q] == u32::MAX {
                        label[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        out.push(c);
    }
    out
}

/// Mean of the outer ring (about 1/16 of each side) and of the central half of the image.
fn ring_and_centre(work: &GrayView<'_>) -> (f64, f64) {
    let (w, h) = (work.width, work.height);
    let (bx, by) = ((w / 16).max(1), (h / 16).max(1));
    let (mut ring, mut nr, mut centre, mut nc) = (0u64, 0u64, 0u64, 0u64);
    for y in 0..h {
        let row = work.row(y);
        for (x, &v) in row.iter().enumerate() {
            if x < bx || x >= w - bx || y < by || y >= h - by {
                ring += v as u64;
                nr += 1;
            } else if x >= w / 4 && x < w - w / 4 && y >= h / 4 && y < h - h / 4 {
                centre += v as u64;
                nc += 1;
            }
        }
    }
    (
        ring as f64 / nr.max(1) as f64,
        centre as f64 / nc.max(1) as f64,
    )
}

/// Finds the hand in a grey radiograph.
pub fn localise(src: &GrayView<'_>, margin_fraction: f64) -> Result<Localisation> {
    let (sw, sh) = (src.width, src.height);
    let scale = (WORK_SIDE as f64 / sw.max(sh) as f64).min(1.0);
    let (w, h) = (
        ((sw as f64 * scale).round() as usize).max(1),
        ((sh as f64 * scale).round() as usize).max(1),
    );
    let mut work = resize(src, w, h, Interp::Area)?;
    let (ring, centre) = ring_and_centre(&work.view());
    let inverted = ring > centre + 10.0;
    if inverted {
        work.data.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let mut hist = [0u64; 256];
    work.data.iter().for_each(|&v| hist[v as usize] += 1);
    let (_, contrast) = otsu(&hist);
    let (threshold, _) = otsu3(&hist);
    let mask: Vec<bool> = work.data.iter().map(|&v| v > threshold).collect();
    let eroded = erode3(&mask, w, h);
    let comps = components(&eroded, w, h);

    let total = (w * h) as f64;
    let score = |c: &Component| {
        let (cx, cy) = (
            c.sum_x / c.area as f64 / w as f64,
            c.sum_y / c.area as f64 / h as f64,
        );
        // A component spanning (almost) the full width and height is a frame or a lit
        // background, not a hand; an off-centre one is more likely a ruler or a label.
        let frame =
            (c.x1 - c.x0) as f64 > 0.97 * w as f64 && (c.y1 - c.y0) as f64 > 0.97 * h as f64;
        let centrality = 1.0 - ((cx - 0.5).abs() + (cy - 0.5).abs()).min(1.0) * 0.5;
        c.area as f64 / total * centrality * if frame { 0.2 } else { 1.0 }
    };
    let best = comps
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .copied();

    let Some(c) = best else {
        return Ok(Localisation {
            bbox: (0, 0, sw, sh),
            area_fraction: 0.0,
            inverted,
            threshold,
            plausible: false,
        });
    };
    let area_fraction = (c.area as f64 / total) as f32;
    let frame = (c.x1 - c.x0) as f64 > 0.97 * w as f64 && (c.y1 - c.y0) as f64 > 0.97 * h as f64;
    // Undo the erosion (one pixel), map to source pixels, add the margin.
    let inv = 1.0 / scale;
    let margin = margin_fraction * sh as f64;
    let to_src = |v: f64, lo: bool, limit: usize| {
        let s = if lo {
            v * inv - margin
        } else {
            v * inv + margin
        };
        (s.round().max(0.0) as usize).min(limit)
    };
    let x0 = to_src(c.x0.saturating_sub(1) as f64, true, sw - 1);
    let y0 = to_src(c.y0.saturating_sub(1) as f64, true, sh - 1);
    let x1 = to_src((c.x1 + 1).min(w) as f64, false, sw).max(x0 + 1);
    let y1 = to_src((c.y1 + 1).min(h) as f64, false, sh).max(y0 + 1);
    Ok(Localisation {
        bbox: (x0, y0, x1, y1),
        area_fraction,
        inverted,
        threshold,
        plausible: area_fraction > 0.03 && !frame && contrast >= MIN_CONTRAST,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Gray;

    /// A bright "hand" rectangle plus a small bright letter on a dark background.
    fn phantom(invert: bool) -> Gray {
        let (w, h) = (600, 800);
        let mut g = Gray::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let hand = (150..450).contains(&x) && (200..800).contains(&y);
                let letter = (20..60).contains(&x) && (20..70).contains(&y);
                let v = if hand || letter { 200 } else { 30 };
                g.data[y * w + x] = if invert { 255 - v } else { v };
            }
        }
        g
    }

    #[test]
    fn finds_the_hand_not_the_letter() {
        for invert in [false, true] {
            let loc = localise(&phantom(invert).view(), 0.0).unwrap();
            assert_eq!(loc.inverted, invert);
            assert!(loc.plausible);
            let (x0, y0, x1, y1) = loc.bbox;
            assert!(
                x0.abs_diff(150) <= 6 && x1.abs_diff(450) <= 6,
                "{:?}",
                loc.bbox
            );
            assert!(y0.abs_diff(200) <= 6 && y1 == 800, "{:?}", loc.bbox);
        }
    }

    #[test]
    fn margin_widens_and_clamps() {
        let loc = localise(&phantom(false).view(), 0.05).unwrap();
        let (x0, y0, x1, y1) = loc.bbox;
        assert!(
            x0.abs_diff(110) <= 6 && y0.abs_diff(160) <= 6 && x1.abs_diff(490) <= 6 && y1 == 800
        );
    }

    #[test]
    fn blank_image_is_not_plausible() {
        let g = Gray::from_vec(50, 40, vec![7; 2000]).unwrap();
        let loc = localise(&g.view(), 0.05).unwrap();
        assert!(!loc.plausible);
        assert_eq!(loc.bbox, (0, 0, 50, 40));
    }

    #[test]
    fn otsu_splits_two_modes() {
        let mut hist = [0u64; 256];
        hist[40] = 100;
        hist[200] = 100;
        let (t, gap) = otsu(&hist);
        assert!((40..200).contains(&t));
        assert!((gap - 160.0).abs() < 1e-9);
    }
}
