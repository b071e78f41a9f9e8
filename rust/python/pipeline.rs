//! Python bindings for the hand localiser and the fused bulk pipeline.

use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray2, PyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::args::{decode_opts, pixels, threads_arg};
use super::image::{images_and_errors, ItemError};
use crate::batch;
use crate::decode::DEFAULT_MAX_PIXELS;
use crate::localise;
use crate::pipeline::{self, ItemInfo, Localiser, HAND_MARGIN};
use crate::preprocess::Params;

fn margin_arg(margin: f64) -> PyResult<f64> {
    if !(0.0..=1.0).contains(&margin) {
        return Err(PyValueError::new_err(format!(
            "margin must be in [0, 1], got {margin}"
        )));
    }
    Ok(margin)
}

fn params(size: i64, clip_limit: f64, tile_grid: (i64, i64)) -> PyResult<Params> {
    super::args::params(size, clip_limit, tile_grid)
}

fn localisation_dict<'py>(
    py: Python<'py>,
    loc: &localise::Localisation,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let (x0, y0, x1, y1) = loc.bbox;
    d.set_item("box", (x0, y0, x1, y1))?;
    d.set_item("plausible", loc.plausible)?;
    d.set_item("area_fraction", loc.area_fraction)?;
    d.set_item("inverted", loc.inverted)?;
    d.set_item("threshold", loc.threshold)?;
    d.set_item("depth", loc.depth)?;
    Ok(d)
}

/// Finds the hand in a radiograph: threshold, film edges peeled, best component (searched
/// again inside cassettes and collimated fields), fingertips grown back, margin added.
///
/// Returns a dict with `box` (x0, y0, x1, y1; end-exclusive, margin included), `plausible`
/// (use the box only when true), `area_fraction`, `inverted`, `threshold` and `depth` (how
/// many containers the hand was found inside).
#[pyfunction]
#[pyo3(signature = (img, margin=HAND_MARGIN))]
pub(super) fn localise_hand<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    margin: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let margin = margin_arg(margin)?;
    let px = pixels(img, "img")?;
    let view = px.view();
    let loc = py.allow_threads(|| localise::localise(&view, margin))?;
    localisation_dict(py, &loc)
}

/// The crop box for one decoded image by the rule the bulk job applies: the localiser's box
/// when it is plausible, else the whole image. Returns a dict with `box` (x0, y0, x1, y1),
/// `localiser` (`"native"` or `"none"`, the one used) and `native` (the localisation, or None
/// when `localiser="none"`).
#[pyfunction]
#[pyo3(signature = (img, localiser="native", margin=HAND_MARGIN))]
pub(super) fn choose_crop<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    localiser: &str,
    margin: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let margin = margin_arg(margin)?;
    let mode: Localiser = localiser.parse()?;
    let px = pixels(img, "img")?;
    let view = px.view();
    let (bbox, used, loc) = py.allow_threads(|| pipeline::choose_box(&view, mode, margin))?;
    let d = PyDict::new(py);
    d.set_item("box", bbox)?;
    d.set_item("localiser", used)?;
    match &loc {
        Some(loc) => d.set_item("native", localisation_dict(py, loc)?)?,
        None => d.set_item("native", py.None())?,
    }
    Ok(d)
}

fn info_dict<'py>(py: Python<'py>, info: &ItemInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("width", info.width)?;
    d.set_item("height", info.height)?;
    d.set_item("box", info.bbox)?;
    d.set_item("localiser", info.used)?;
    match &info.localisation {
        Some(loc) => d.set_item("native", localisation_dict(py, loc)?)?,
        None => d.set_item("native", py.None())?,
    }
    Ok(d)
}

/// Decode -> localise -> crop -> CLAHE -> pad -> resize for many encoded images, in parallel.
///
/// `localiser` is "native" (whole image when the localiser is unsure) or "none". Returns the
/// (N, size, size) images, one info dict per item (None where it failed; keys `width`,
/// `height`, `box`, `localiser`, `native`) and the errors as (index, label, reason).
#[pyfunction]
#[pyo3(signature = (datas, labels=None, localiser="native", size=256, clip_limit=2.0, tile_grid=(8, 8), margin=HAND_MARGIN, threads=None, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn process_encoded<'py>(
    py: Python<'py>,
    datas: Vec<Bound<'py, PyBytes>>,
    labels: Option<Vec<String>>,
    localiser: &str,
    size: i64,
    clip_limit: f64,
    tile_grid: (i64, i64),
    margin: f64,
    threads: Option<i64>,
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<(
    Bound<'py, PyArray3<u8>>,
    Vec<Option<Bound<'py, PyDict>>>,
    Vec<ItemError>,
)> {
    let mode: Localiser = localiser.parse()?;
    let p = params(size, clip_limit, tile_grid)?;
    let margin = margin_arg(margin)?;
    let threads = threads_arg(threads)?;
    let limit = decode_opts(max_pixels, allow_truncated)?;
    if let Some(l) = &labels {
        if l.len() != datas.len() {
            return Err(PyValueError::new_err("labels must have one entry per item"));
        }
    }
    let slices: Vec<&[u8]> = datas.iter().map(|b| b.as_bytes()).collect();
    let results = py.allow_threads(|| {
        batch::with_threads(threads, || {
            pipeline::process_many(&slices, mode, &p, margin, limit)
        })
    })?;
    let n = results.len();
    let plane = p.size * p.size;
    let mut data = vec![0u8; n * plane];
    let mut infos = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok((img, info)) => {
                data[i * plane..(i + 1) * plane].copy_from_slice(&img.data);
                infos.push(Some(info_dict(py, &info)?));
            }
            Err(e) => {
                infos.push(None);
                let label = labels
                    .as_ref()
                    .map_or_else(|| format!("item {i}"), |l| l[i].clone());
                errors.push((i, label, e.to_string()));
            }
        }
    }
    let arr = Array3::from_shape_vec((n, p.size, p.size), data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((arr.into_pyarray(py), infos, errors))
}

/// Decodes many encoded images in parallel: (images or None, errors).
#[pyfunction]
#[pyo3(signature = (datas, threads=None, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
#[allow(clippy::type_complexity)]
pub(super) fn decode_many<'py>(
    py: Python<'py>,
    datas: Vec<Bound<'py, PyBytes>>,
    threads: Option<i64>,
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<(Vec<Option<Bound<'py, PyArray2<u8>>>>, Vec<ItemError>)> {
    let threads = threads_arg(threads)?;
    let limit = decode_opts(max_pixels, allow_truncated)?;
    let slices: Vec<&[u8]> = datas.iter().map(|b| b.as_bytes()).collect();
    let results = py
        .allow_threads(|| batch::with_threads(threads, || pipeline::decode_many(&slices, limit)))?;
    images_and_errors(py, results, |i| format!("item {i}"))
}
