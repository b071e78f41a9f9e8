//! A hand localiser for radiographs, for when MediaPipe (trained on photographs) finds no hand.
//!
//! Steps, on a copy shrunk to about 256 px (INTER_AREA, so noise averages out):
//! 1. Polarity: radiographs are usually bright hand on dark film, but some are inverted; if
//!    the outer ring of the image is brighter than the centre, the image is inverted first.
//! 2. A three-class Otsu threshold splits background from soft tissue and bone; the lower
//!    level is used, so the soft tissue stays with the hand.
//! 3. Film edges: rows and columns at the image border that are almost all above the threshold
//!    (a lit film edge, a scanner's bright margin) are peeled off, so the forearm cannot connect
//!    the hand to them.
//! 4. One erosion cuts thin bridges (to burnt-in letters, rulers), then the 8-connected
//!    components are labelled and scored: large, central, and not a frame hugging the border.
//! 5. Containers: a winner that is nearly a (possibly rotated) rectangle once its holes are
//!    filled is not a hand but a lit cassette, a collimated field or a bright frame. The search
//!    repeats inside it, with a threshold from its own pixels (at most two levels deep).
//! 6. The winner is grown back (hysteresis: through pixels above a lower level, at most
//!    [`GROW_STEPS`] pixels), which recovers thin fingertips that the threshold or the erosion
//!    cut off; its box is mapped to source pixels and widened by the margin (5 % of the image
//!    height, as the paper does for MediaPipe's box).
//!
//! The answer says whether it found anything (`plausible`), so callers can fall back to the
//! whole image. The thresholds were chosen on the real radiographs in `shared/data/rsna`
//! (fullres + unlabeled); `tests/test_localiser.py` checks the crops against hand boxes drawn
//! by a person on those images.

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
    /// Something hand-like was found: worth using.
    pub plausible: bool,
    /// How many containers (cassette, collimated field, frame) the hand was found inside.
    pub depth: u8,
}

const WORK_SIDE: usize = 256;
/// Hand and background class means must differ by this many grey levels (at the top level).
const MIN_CONTRAST: f64 = 12.0;
/// Inside a container the contrast may be lower: the cassette already bounds the search.
const MIN_CONTRAST_INNER: f64 = 8.0;
/// A border row or column this full above the threshold is a film edge, not anatomy.
const PEEL_COVER: f64 = 0.8;
/// Film edges are peeled from at most this fraction of each side.
const PEEL_BAND: f64 = 0.08;
/// Filled area over the minimum-area rectangle above which a component is a container.
/// Hands (fingers, gaps, forearm) stay below 0.7 on the real radiographs; cassettes and
/// collimated fields are above 0.85.
const CONTAINER_RECT: f64 = 0.8;
/// A container must cover at least this fraction of the area searched.
const CONTAINER_MIN_FRACTION: f64 = 0.2;
const MAX_DEPTH: u8 = 2;
/// The hysteresis growth reaches at most this many working pixels from the component.
pub const GROW_STEPS: usize = 16;
/// The lower level: background mean plus this fraction of the way to the threshold ...
const LOW_FRACTION: f64 = 0.4;
/// ... but at least this many background standard deviations above its mean (noisy films).
const LOW_SIGMAS: f64 = 2.0;

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

fn erode_n(mask: &[bool], w: usize, h: usize, times: usize) -> Vec<bool> {
    let mut m = mask.to_vec();
    for _ in 0..times {
        m = erode3(&m, w, h);
    }
    m
}

/// The 8-neighbours of `p` inside a `w` x `h` grid.
fn neighbours8(p: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = ((p % w) as isize, (p / w) as isize);
    (-1isize..=1)
        .flat_map(move |dy| (-1isize..=1).map(move |dx| (x + dx, y + dy)))
        .filter(move |&(nx, ny)| {
            (nx, ny) != (x, y) && nx >= 0 && ny >= 0 && nx < w as isize && ny < h as isize
        })
        .map(move |(nx, ny)| ny as usize * w + nx as usize)
}

/// One connected component's statistics.
#[derive(Clone, Copy, Debug)]
struct Component {
    id: u32,
    area: usize,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    sum_x: f64,
    sum_y: f64,
}

/// 8-connected components of `mask`: the label image (`u32::MAX` for background) and stats.
fn components(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, Vec<Component>) {
    let mut label = vec![u32::MAX; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || label[start] != u32::MAX {
            continue;
        }
        let id = out.len() as u32;
        let mut c = Component {
            id,
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
            for q in neighbours8(p, w, h) {
                if mask[q] && label[q] == u32::MAX {
                    label[q] = id;
                    stack.push(q);
                }
            }
        }
        out.push(c);
    }
    (label, out)
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

/// Clears border rows and columns that are almost all set (film edges), working inwards
/// from each side until a row or column is not, at most `PEEL_BAND` of the side.
fn peel_film_edges(mask: &mut [bool], w: usize, h: usize) {
    // Rows, then columns: (number of lines, pixels per line, index of pixel i on line l).
    let row = |l: usize, i: usize| l * w + i;
    let col = |l: usize, i: usize| i * w + l;
    for (lines, len, at) in [(h, w, &row as &dyn Fn(usize, usize) -> usize), (w, h, &col)] {
        let band = ((lines as f64 * PEEL_BAND) as usize).clamp(1, lines);
        for from_end in [false, true] {
            for k in 0..band {
                let l = if from_end { lines - 1 - k } else { k };
                let set = (0..len).filter(|&i| mask[at(l, i)]).count();
                if (set as f64) < PEEL_COVER * len as f64 {
                    break;
                }
                (0..len).for_each(|i| mask[at(l, i)] = false);
            }
        }
    }
}

/// The component with its holes filled: everything not reachable from the border through
/// pixels outside it (4-connected, the dual of the component's 8-connectivity).
fn fill_holes(comp: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w * h)
        .filter(|&p| {
            let (x, y) = (p % w, p / w);
            (x == 0 || y == 0 || x + 1 == w || y + 1 == h) && !comp[p]
        })
        .collect();
    stack.iter().for_each(|&p| outside[p] = true);
    while let Some(p) = stack.pop() {
        let (x, y) = (p % w, p / w);
        let mut visit = |q: usize| {
            if !comp[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        };
        if x > 0 {
            visit(p - 1);
        }
        if x + 1 < w {
            visit(p + 1);
        }
        if y > 0 {
            visit(p - w);
        }
        if y + 1 < h {
            visit(p + w);
        }
    }
    outside.iter().map(|&o| !o).collect()
}

type Point = (f64, f64);

/// Convex hull (Andrew's monotone chain) of integer points, counter-clockwise.
fn convex_hull(mut pts: Vec<Point>) -> Vec<Point> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    /// Appends one half of the hull (points in sweep order), dropping its last point, which
    /// starts the other half.
    fn half(hull: &mut Vec<Point>, pts: impl Iterator<Item = Point>) {
        let cross =
            |o: Point, a: Point, b: Point| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
        let start = hull.len();
        for p in pts {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let mut hull = Vec::with_capacity(2 * pts.len());
    half(&mut hull, pts.iter().copied());
    half(&mut hull, pts.iter().rev().copied());
    hull
}

/// Area of the smallest (rotated) rectangle holding the set pixels, counting pixels as unit
/// squares: the rectangle over each hull edge direction, smallest wins (rotating calipers).
fn min_rect_area(mask: &[bool], w: usize, h: usize) -> f64 {
    let mut pts = Vec::new();
    for y in 0..h {
        let row = &mask[y * w..(y + 1) * w];
        if let (Some(a), Some(b)) = (row.iter().position(|&v| v), row.iter().rposition(|&v| v)) {
            pts.push((a as f64, y as f64));
            pts.push((b as f64, y as f64));
        }
    }
    let hull = convex_hull(pts);
    let extent = |u: Point| {
        let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &hull {
            let a = x * u.0 + y * u.1;
            let b = -x * u.1 + y * u.0;
            lo_u = lo_u.min(a);
            hi_u = hi_u.max(a);
            lo_v = lo_v.min(b);
            hi_v = hi_v.max(b);
        }
        (hi_u - lo_u + 1.0) * (hi_v - lo_v + 1.0)
    };
    let mut best = extent((1.0, 0.0));
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len > 0.0 {
            best = best.min(extent((dx / len, dy / len)));
        }
    }
    best
}

/// Grows `seed` through `allowed` pixels, at most `steps` 8-connected steps away.
fn grow(seed: &[bool], allowed: &[bool], w: usize, h: usize, steps: usize) -> Vec<bool> {
    let mut out = seed.to_vec();
    let mut frontier: Vec<usize> = (0..w * h).filter(|&p| seed[p]).collect();
    for _ in 0..steps {
        let mut next = Vec::new();
        for &p in &frontier {
            for q in neighbours8(p, w, h) {
                if allowed[q] && !out[q] {
                    out[q] = true;
                    next.push(q);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    out
}

/// Bounding box `(x0, y0, x1, y1)` (end-exclusive) of the set pixels and their count, or
/// None when no pixel is set.
fn set_bbox(mask: &[bool], w: usize) -> Option<((usize, usize, usize, usize), usize)> {
    let (mut x0, mut y0, mut x1, mut y1, mut n) = (usize::MAX, usize::MAX, 0, 0, 0);
    for p in (0..mask.len()).filter(|&p| mask[p]) {
        let (x, y) = (p % w, p / w);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
        n += 1;
    }
    (n > 0).then_some(((x0, y0, x1, y1), n))
}

/// What one search level found, in working-image pixels.
struct Found {
    bbox: (usize, usize, usize, usize),
    area: usize,
    threshold: u8,
    depth: u8,
}

/// Searches `region` of the working image for the hand (see the module docs); the found
/// component may grow back within `grow_within` (the container before its border was eroded
/// away, so a hand touching the cassette's edge keeps its edge).
fn search(
    work: &[u8],
    w: usize,
    h: usize,
    region: &[bool],
    grow_within: &[bool],
    depth: u8,
) -> Option<Found> {
    let ((rx0, ry0, rx1, ry1), total) = set_bbox(region, w)?;
    let mut hist = [0u64; 256];
    for (&v, _) in work.iter().zip(region).filter(|(_, &r)| r) {
        hist[v as usize] += 1;
    }
    let (_, contrast) = otsu(&hist);
    let (threshold, _) = otsu3(&hist);
    let mut mask: Vec<bool> = work
        .iter()
        .zip(region)
        .map(|(&v, &r)| r && v > threshold)
        .collect();
    let unpeeled = mask.clone();
    if depth == 0 {
        peel_film_edges(&mut mask, w, h);
    }
    let (labels, comps) = components(&erode3(&mask, w, h), w, h);

    let (rw, rh) = ((rx1 - rx0) as f64, (ry1 - ry0) as f64);
    let score = |c: &Component| {
        let cx = (c.sum_x / c.area as f64 - rx0 as f64) / rw;
        let cy = (c.sum_y / c.area as f64 - ry0 as f64) / rh;
        // A component spanning (almost) the whole search area is a frame or a lit
        // background, not a hand; an off-centre one is more likely a ruler or a label.
        let frame = (c.x1 - c.x0) as f64 > 0.97 * rw && (c.y1 - c.y0) as f64 > 0.97 * rh;
        let centrality = 1.0 - ((cx - 0.5).abs() + (cy - 0.5).abs()).min(1.0) * 0.5;
        c.area as f64 / total as f64 * centrality * if frame { 0.2 } else { 1.0 }
    };
    let best = comps.iter().max_by(|a, b| score(a).total_cmp(&score(b)))?;
    let min_contrast = if depth == 0 {
        MIN_CONTRAST
    } else {
        MIN_CONTRAST_INNER
    };
    if contrast < min_contrast || (best.area as f64) < 0.03 * total as f64 {
        return None;
    }

    let comp: Vec<bool> = labels.iter().map(|&l| l == best.id).collect();
    let filled = fill_holes(&comp, w, h);
    let filled_area = filled.iter().filter(|&&v| v).count();
    let rectangularity = filled_area as f64 / min_rect_area(&filled, w, h);
    if depth < MAX_DEPTH
        && rectangularity > CONTAINER_RECT
        && filled_area as f64 > CONTAINER_MIN_FRACTION * total as f64
    {
        // A bright frame (most of its filled area is hole) is cut away with a deeper erosion.
        let ring = (filled_area - best.area) as f64 > 0.3 * filled_area as f64;
        let inner = erode_n(&filled, w, h, if ring { 6 } else { 2 });
        if let Some(found) = search(work, w, h, &inner, &filled, depth + 1) {
            return Some(found);
        }
    }

    // Hysteresis: grow the component (undoing the erosion) through pixels above a lower level.
    let seed: Vec<bool> = (0..w * h)
        .map(|p| mask[p] && (comp[p] || neighbours8(p, w, h).any(|q| comp[q])))
        .collect();
    let (mut n0, mut s0, mut ss0) = (0f64, 0f64, 0f64);
    for (v, c) in hist.iter().enumerate().take(threshold as usize + 1) {
        let c = *c as f64;
        n0 += c;
        s0 += v as f64 * c;
        ss0 += (v * v) as f64 * c;
    }
    let mean0 = if n0 > 0.0 { s0 / n0 } else { 0.0 };
    let sd0 = if n0 > 0.0 {
        (ss0 / n0 - mean0 * mean0).max(0.0).sqrt()
    } else {
        0.0
    };
    let t = threshold as f64;
    let low = (mean0 + (LOW_FRACTION * (t - mean0)).max(LOW_SIGMAS * sd0)).min(t);
    // Pixels above the threshold that were peeled away as film edges stay out.
    let allowed: Vec<bool> = (0..w * h)
        .map(|p| grow_within[p] && work[p] as f64 > low && mask[p] == unpeeled[p])
        .collect();
    let (bbox, area) = set_bbox(&grow(&seed, &allowed, w, h, GROW_STEPS), w)?;
    Some(Found {
        bbox,
        area,
        threshold,
        depth,
    })
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
    let everywhere = vec![true; w * h];
    let Some(found) = search(&work.data, w, h, &everywhere, &everywhere, 0) else {
        let mut hist = [0u64; 256];
        work.data.iter().for_each(|&v| hist[v as usize] += 1);
        return Ok(Localisation {
            bbox: (0, 0, sw, sh),
            area_fraction: 0.0,
            inverted,
            threshold: otsu3(&hist).0,
            plausible: false,
            depth: 0,
        });
    };
    // Map to source pixels (outwards) and add the margin.
    let (sx, sy) = (sw as f64 / w as f64, sh as f64 / h as f64);
    let margin = margin_fraction * sh as f64;
    let (bx0, by0, bx1, by1) = found.bbox;
    let x0 = ((bx0 as f64 * sx - margin).floor().max(0.0) as usize).min(sw - 1);
    let y0 = ((by0 as f64 * sy - margin).floor().max(0.0) as usize).min(sh - 1);
    let x1 = ((bx1 as f64 * sx + margin).ceil() as usize).clamp(x0 + 1, sw);
    let y1 = ((by1 as f64 * sy + margin).ceil() as usize).clamp(y0 + 1, sh);
    Ok(Localisation {
        bbox: (x0, y0, x1, y1),
        area_fraction: (found.area as f64 / (w * h) as f64) as f32,
        inverted,
        threshold: found.threshold,
        plausible: true,
        depth: found.depth,
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

    /// A hand (palm and three fingers) on a lit cassette inside a dark frame.
    fn hand_on_a_cassette() -> Gray {
        let (w, h) = (600, 800);
        let mut g = Gray::from_vec(w, h, vec![20; w * h]).unwrap();
        for y in 0..h {
            for x in 0..w {
                let plate = (100..500).contains(&x) && (100..700).contains(&y);
                let palm = (200..400).contains(&x) && (450..700).contains(&y);
                let finger = (250..450).contains(&y)
                    && [200, 285, 370].iter().any(|&f| (f..f + 30).contains(&x));
                if palm || finger {
                    g.data[y * w + x] = 210;
                } else if plate {
                    g.data[y * w + x] = 120;
                }
            }
        }
        g
    }

    #[test]
    fn looks_inside_a_lit_cassette() {
        let loc = localise(&hand_on_a_cassette().view(), 0.0).unwrap();
        assert!(loc.plausible);
        assert_eq!(loc.depth, 1, "{loc:?}");
        let (x0, y0, x1, y1) = loc.bbox;
        assert!(x0.abs_diff(200) <= 8 && x1.abs_diff(400) <= 8, "{loc:?}");
        assert!(y0.abs_diff(250) <= 8 && y1.abs_diff(700) <= 8, "{loc:?}");
    }

    #[test]
    fn film_edges_do_not_join_the_hand() {
        let mut g = phantom(false);
        let (w, h) = (g.width, g.height);
        for y in 0..h {
            for x in 0..w {
                if y >= h - 6 || x >= w - 6 {
                    g.data[y * w + x] = 230; // lit edges along the bottom and right
                }
            }
        }
        let loc = localise(&g.view(), 0.0).unwrap();
        let (x0, _, x1, _) = loc.bbox;
        assert!(x0.abs_diff(150) <= 8 && x1.abs_diff(450) <= 8, "{loc:?}");
    }

    #[test]
    fn holes_fill_and_rectangles_measure_their_area() {
        // A 5x5 ring with a one-pixel hole, in a 7x7 grid.
        let (w, h) = (7, 7);
        let ring: Vec<bool> = (0..w * h)
            .map(|p| {
                let (x, y) = (p % w, p / w);
                (1..6).contains(&x) && (1..6).contains(&y) && (x, y) != (3, 3)
            })
            .collect();
        let filled = fill_holes(&ring, w, h);
        assert!(filled[3 * w + 3] && !filled[0]);
        assert_eq!(filled.iter().filter(|&&v| v).count(), 25);
        assert!((min_rect_area(&filled, w, h) - 25.0).abs() < 1e-9);
        // A diamond's smallest rectangle is rotated, far smaller than its bounding box.
        let (w, h) = (41, 41);
        let diamond: Vec<bool> = (0..w * h)
            .map(|p| ((p % w) as i64 - 20).abs() + ((p / w) as i64 - 20).abs() <= 20)
            .collect();
        let area = diamond.iter().filter(|&&v| v).count() as f64;
        let rect = min_rect_area(&diamond, w, h);
        assert!(
            area / rect > 0.85 && rect < 0.7 * (w * h) as f64,
            "{area} {rect}"
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
