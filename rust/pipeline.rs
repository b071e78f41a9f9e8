//! The bulk job's per-image work in one parallel native call: decode -> localise -> preprocess.
//!
//! Archives are read in Python (zip/tar streams), so this takes encoded bytes. Each item's
//! outcome is independent: a corrupt file becomes an error in its own slot.

use rayon::prelude::*;

use crate::decode::{decode_gray, DecodeOptions};
use crate::error::{Error, Result};
use crate::image::{Gray, GrayView};
use crate::localise::{localise, Localisation};
use crate::preprocess::{preprocess, Box4, Params};

/// The paper's margin around the hand: 5 % of the image height on every side of the box.
pub const HAND_MARGIN: f64 = 0.05;

/// Which box to crop with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Localiser {
    /// The radiograph localiser in [`crate::localise`]; whole image when it is not plausible.
    Native,
    /// No crop: the whole image.
    None,
}

impl std::str::FromStr for Localiser {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "native" => Ok(Localiser::Native),
            "none" => Ok(Localiser::None),
            other => Err(Error::value(format!(
                "localiser must be 'native' or 'none' here, got {other:?} (MediaPipe runs in Python)"
            ))),
        }
    }
}

/// What happened to one image, besides its pixels.
#[derive(Clone, Copy, Debug)]
pub struct ItemInfo {
    pub width: usize,
    pub height: usize,
    pub bbox: Box4,
    /// `"native"` when the localiser's box was used, `"none"` for the whole image.
    pub used: &'static str,
    pub localisation: Option<Localisation>,
}

/// The crop rule, written once: the localiser's box when it is plausible, else the whole
/// image (`used` says which). The bulk job's fused call and Python's `hands.choose` (which
/// adds MediaPipe on top) both go through it.
pub fn choose_box(
    view: &GrayView<'_>,
    mode: Localiser,
    margin: f64,
) -> Result<(Box4, &'static str, Option<Localisation>)> {
    let whole: Box4 = (0, 0, view.width as i64, view.height as i64);
    Ok(match mode {
        Localiser::None => (whole, "none", None),
        Localiser::Native => {
            let loc = localise(view, margin)?;
            if loc.plausible {
                let (x0, y0, x1, y1) = loc.bbox;
                (
                    (x0 as i64, y0 as i64, x1 as i64, y1 as i64),
                    "native",
                    Some(loc),
                )
            } else {
                (whole, "none", Some(loc))
            }
        }
    })
}

pub fn process_one(
    data: &[u8],
    mode: Localiser,
    p: &Params,
    margin: f64,
    opts: DecodeOptions,
) -> Result<(Gray, ItemInfo)> {
    let img = decode_gray(data, opts)?;
    let view = img.view();
    let (bbox, used, localisation) = choose_box(&view, mode, margin)?;
    let out = preprocess(&view, Some(bbox), p)?;
    Ok((
        out,
        ItemInfo {
            width: img.width,
            height: img.height,
            bbox,
            used,
            localisation,
        },
    ))
}

/// [`process_one`] over many encoded images in parallel, in input order.
pub fn process_many(
    datas: &[&[u8]],
    mode: Localiser,
    p: &Params,
    margin: f64,
    opts: DecodeOptions,
) -> Vec<Result<(Gray, ItemInfo)>> {
    datas
        .par_iter()
        .map(|d| process_one(d, mode, p, margin, opts))
        .collect()
}

/// Decodes many encoded images in parallel.
pub fn decode_many(datas: &[&[u8]], opts: DecodeOptions) -> Vec<Result<Gray>> {
    datas.par_iter().map(|d| decode_gray(d, opts)).collect()
}
