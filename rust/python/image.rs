//! Python bindings for the image functions. Argument checking and error mapping live here;
//! all pixel work runs in the pure-Rust modules with the GIL released.

use std::path::PathBuf;

use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray2, PyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::batch;
use crate::clahe as core_clahe;
use crate::decode::{self, DEFAULT_MAX_PIXELS};
use crate::image::{Gray, GrayView};
use crate::preprocess::{self as core_pre, Box4};

use super::args::{
    crops_arg, decode_opts, grid, params, pixels, side, threads_arg, to_numpy, Pixels,
};
use crate::resize::{self, Interp};

/// CLAHE, as `cv2.createCLAHE(clip_limit, tile_grid).apply(img)`.
#[pyfunction]
#[pyo3(name = "clahe", signature = (img, clip_limit=2.0, tile_grid=(8, 8)))]
pub(super) fn clahe<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    clip_limit: f64,
    tile_grid: (i64, i64),
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let (gx, gy) = grid(tile_grid)?;
    let px = pixels(img, "img")?;
    let view = px.view();
    let out = py.allow_threads(|| core_clahe::clahe(&view, clip_limit, gx, gy))?;
    to_numpy(py, out)
}

/// Centred zero padding to a square.
#[pyfunction]
pub(super) fn pad_to_square<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let px = pixels(img, "img")?;
    let view = px.view();
    let out = py.allow_threads(|| core_pre::pad_to_square(&view))?;
    to_numpy(py, out)
}

fn resize_with<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    width: i64,
    height: i64,
    interp: Interp,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let (w, h) = (side(width, "width")?, side(height, "height")?);
    let px = pixels(img, "img")?;
    let view = px.view();
    let out = py.allow_threads(|| resize::resize(&view, w, h, interp))?;
    to_numpy(py, out)
}

/// `cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)`.
#[pyfunction]
pub(super) fn resize_area<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    width: i64,
    height: i64,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    resize_with(py, img, width, height, Interp::Area)
}

/// `cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`.
#[pyfunction]
pub(super) fn resize_linear<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    width: i64,
    height: i64,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    resize_with(py, img, width, height, Interp::Linear)
}

/// PNG/JPEG bytes to 8-bit grey, as `cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)`.
#[pyfunction]
#[pyo3(signature = (data, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
pub(super) fn decode_gray<'py>(
    py: Python<'py>,
    data: &[u8],
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let limit = decode_opts(max_pixels, allow_truncated)?;
    let out = py.allow_threads(|| decode::decode_gray(data, limit))?;
    to_numpy(py, out)
}

/// A PNG/JPEG file to 8-bit grey, as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)`.
#[pyfunction]
#[pyo3(signature = (path, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
pub(super) fn read_gray(
    py: Python<'_>,
    path: PathBuf,
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<Bound<'_, PyArray2<u8>>> {
    let limit = decode_opts(max_pixels, allow_truncated)?;
    let out = py.allow_threads(|| decode::read_gray(&path, limit))?;
    to_numpy(py, out)
}

/// crop -> CLAHE -> pad to square -> INTER_AREA resize, fused.
#[pyfunction]
#[pyo3(signature = (img, crop=None, size=256, clip_limit=2.0, tile_grid=(8, 8)))]
pub(super) fn preprocess<'py>(
    py: Python<'py>,
    img: &Bound<'py, PyAny>,
    crop: Option<Box4>,
    size: i64,
    clip_limit: f64,
    tile_grid: (i64, i64),
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let p = params(size, clip_limit, tile_grid)?;
    let px = pixels(img, "img")?;
    let view = px.view();
    let out = py.allow_threads(|| core_pre::preprocess(&view, crop, &p))?;
    to_numpy(py, out)
}

pub type ItemError = (usize, String, String);

/// Packs per-item results into one (N, size, size) array; failed slots stay zero.
fn stack<'py>(
    py: Python<'py>,
    results: Vec<crate::error::Result<Gray>>,
    size: usize,
    label: impl Fn(usize) -> String,
) -> PyResult<(Bound<'py, PyArray3<u8>>, Vec<ItemError>)> {
    let n = results.len();
    let plane = size * size;
    let mut data = vec![0u8; n * plane];
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(g) => data[i * plane..(i + 1) * plane].copy_from_slice(&g.data),
            Err(e) => errors.push((i, label(i), e.to_string())),
        }
    }
    let arr = Array3::from_shape_vec((n, size, size), data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((arr.into_pyarray(py), errors))
}

/// Preprocesses a list of arrays in parallel.
#[pyfunction]
#[pyo3(signature = (images, crops=None, size=256, clip_limit=2.0, tile_grid=(8, 8), threads=None))]
#[allow(clippy::type_complexity)]
pub(super) fn preprocess_batch<'py>(
    py: Python<'py>,
    images: Vec<Bound<'py, PyAny>>,
    crops: Option<Vec<Option<Box4>>>,
    size: i64,
    clip_limit: f64,
    tile_grid: (i64, i64),
    threads: Option<i64>,
) -> PyResult<(Bound<'py, PyArray3<u8>>, Vec<ItemError>)> {
    let p = params(size, clip_limit, tile_grid)?;
    let threads = threads_arg(threads)?;
    let crops = crops_arg(crops, images.len())?;
    let pixels: Vec<Pixels<'py>> = images
        .iter()
        .enumerate()
        .map(|(i, img)| pixels(img, &format!("images[{i}]")))
        .collect::<PyResult<_>>()?;
    let views: Vec<GrayView<'_>> = pixels.iter().map(|p| p.view()).collect();
    let results = py.allow_threads(|| {
        batch::with_threads(threads, || {
            batch::preprocess_views(&views, crops.as_deref(), &p)
        })
    })?;
    stack(py, results, p.size, |i| format!("images[{i}]"))
}

/// Decodes and preprocesses files in parallel; bad files are reported, not fatal.
#[pyfunction]
#[pyo3(signature = (paths, crops=None, size=256, clip_limit=2.0, tile_grid=(8, 8), threads=None, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn preprocess_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    crops: Option<Vec<Option<Box4>>>,
    size: i64,
    clip_limit: f64,
    tile_grid: (i64, i64),
    threads: Option<i64>,
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<(Bound<'py, PyArray3<u8>>, Vec<ItemError>)> {
    let p = params(size, clip_limit, tile_grid)?;
    let threads = threads_arg(threads)?;
    let limit = decode_opts(max_pixels, allow_truncated)?;
    let crops = crops_arg(crops, paths.len())?;
    let results = py.allow_threads(|| {
        batch::with_threads(threads, || {
            batch::preprocess_files(&paths, crops.as_deref(), &p, limit)
        })
    })?;
    stack(py, results, p.size, |i| paths[i].display().to_string())
}

/// Decodes files in parallel; returns the images (None where a file failed) and the errors.
#[pyfunction]
#[pyo3(signature = (paths, threads=None, max_pixels=DEFAULT_MAX_PIXELS as i64, *, allow_truncated=false))]
#[allow(clippy::type_complexity)]
pub(super) fn read_gray_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    threads: Option<i64>,
    max_pixels: i64,
    allow_truncated: bool,
) -> PyResult<(Vec<Option<Bound<'py, PyArray2<u8>>>>, Vec<ItemError>)> {
    let threads = threads_arg(threads)?;
    let limit = decode_opts(max_pixels, allow_truncated)?;
    let results =
        py.allow_threads(|| batch::with_threads(threads, || batch::read_files(&paths, limit)))?;
    images_and_errors(py, results, |i| paths[i].display().to_string())
}

/// Per-item decode results as Python sees them: one array or None per item, plus the errors
/// as (index, label, reason).
#[allow(clippy::type_complexity)]
pub fn images_and_errors<'py>(
    py: Python<'py>,
    results: Vec<crate::error::Result<Gray>>,
    label: impl Fn(usize) -> String,
) -> PyResult<(Vec<Option<Bound<'py, PyArray2<u8>>>>, Vec<ItemError>)> {
    let mut images = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(g) => images.push(Some(to_numpy(py, g)?)),
            Err(e) => {
                images.push(None);
                errors.push((i, label(i), e.to_string()));
            }
        }
    }
    Ok((images, errors))
}
