//! Python binding for [`crate::augment`]: `augment_images`, the fused batch augmentation of
//! training images.

use numpy::{PyArray1, PyArray3, PyArrayMethods};
use pyo3::prelude::*;

use super::args::{value_err, BatchImages};
use crate::augment;

/// Augments a batch of uint8 images in one fused pass: affine warp, scaling to [0, 1],
/// contrast about each image's mean, brightness, clipping. Returns float32 (n, h, w).
#[pyfunction]
#[pyo3(signature = (images, affine, contrast=None, brightness=None))]
pub(in crate::python) fn augment_images<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyAny>,
    affine: Vec<[f32; 6]>,
    contrast: Option<Vec<f32>>,
    brightness: Option<Vec<f32>>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let images = BatchImages::new(images)?;
    let mut pixels = Vec::new();
    let spans = images.copy_into(0..images.len(), &mut pixels)?;
    let n = spans.len();
    let (h, w) = spans.first().map_or((0, 0), |s| s.0);
    if spans.iter().any(|s| s.0 != (h, w)) {
        return Err(value_err("images must all have the same size"));
    }
    let column = |name: &str, v: Option<Vec<f32>>, default: f32| -> PyResult<Vec<f32>> {
        let v = v.unwrap_or_else(|| vec![default; n]);
        if v.len() != n {
            return Err(value_err(format!(
                "{name} has {} entries for {n} images",
                v.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(value_err(format!("{name} must be finite")));
        }
        Ok(v)
    };
    let contrast = column("contrast", contrast, 1.0)?;
    let brightness = column("brightness", brightness, 0.0)?;
    if affine.len() != n {
        return Err(value_err(format!(
            "affine has {} rows for {n} images",
            affine.len()
        )));
    }
    let params: Vec<augment::Params> = affine
        .into_iter()
        .zip(contrast.into_iter().zip(brightness))
        .map(|(affine, (contrast, brightness))| augment::Params {
            affine,
            contrast,
            brightness,
        })
        .collect();
    if n == 0 {
        return PyArray1::from_vec(py, Vec::<f32>::new()).reshape([0, h, w]);
    }
    let out = py.allow_threads(|| augment::augment_batch(&pixels, n, h, w, &params))?;
    PyArray1::from_vec(py, out).reshape([n, h, w])
}
