//! Argument helpers shared by the bindings: numpy images in and out, batches of images, the
//! checks of the common arguments (sizes, tile grid, threads, pixel limits, crops), and the
//! pieces of their error messages (type names, shapes, `ValueError`).

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::clahe as core_clahe;
use crate::decode::DecodeOptions;
use crate::image::{Gray, GrayView};
use crate::preprocess::{Box4, Params};
use crate::resize;

/// Pixels borrowed from a numpy array (any positive row stride, unit column stride) or, for
/// other layouts, copied once into a packed buffer.
pub(super) enum Pixels<'py> {
    Borrowed {
        _guard: PyReadonlyArray2<'py, u8>,
        ptr: *const u8,
        len: usize,
        width: usize,
        height: usize,
        stride: usize,
    },
    Owned(Gray),
}

impl Pixels<'_> {
    pub fn view(&self) -> GrayView<'_> {
        match self {
            Pixels::Borrowed {
                ptr,
                len,
                width,
                height,
                stride,
                ..
            } => {
                // SAFETY: `ptr..ptr+len` lies inside the array that `_guard` keeps alive and
                // borrowed read-only for as long as `self` lives.
                let data = unsafe { std::slice::from_raw_parts(*ptr, *len) };
                GrayView {
                    width: *width,
                    height: *height,
                    stride: *stride,
                    data,
                }
            }
            Pixels::Owned(g) => g.view(),
        }
    }
}

/// Checks that `obj` is a non-empty 2-D uint8 numpy array and exposes its pixels.
pub(super) fn pixels<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Pixels<'py>> {
    let arr = obj.downcast::<PyUntypedArray>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "{name}: expected a numpy.ndarray of uint8, got {ty}"
        ))
    })?;
    if arr.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a 2-D (height, width) grey image, got shape {:?}",
            arr.shape()
        )));
    }
    let dtype = arr.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(obj.py())) {
        return Err(PyValueError::new_err(format!(
            "{name}: expected dtype uint8, got {dtype}"
        )));
    }
    let (height, width) = (arr.shape()[0], arr.shape()[1]);
    if height == 0 || width == 0 {
        return Err(PyValueError::new_err(format!(
            "{name}: empty image of shape ({height}, {width})"
        )));
    }
    let typed = arr.downcast::<PyArray2<u8>>()?.readonly();
    let strides = typed.strides();
    if strides[1] == 1 && strides[0] >= width as isize {
        let stride = strides[0] as usize;
        let ptr = typed.data() as *const u8;
        return Ok(Pixels::Borrowed {
            _guard: typed,
            ptr,
            len: (height - 1) * stride + width,
            width,
            height,
            stride,
        });
    }
    let data: Vec<u8> = typed.as_array().iter().copied().collect();
    Ok(Pixels::Owned(Gray::from_vec(width, height, data)?))
}

/// Moves an image into a new numpy array without copying the pixels.
pub(super) fn to_numpy(py: Python<'_>, img: Gray) -> PyResult<Bound<'_, PyArray2<u8>>> {
    let arr = Array2::from_shape_vec((img.height, img.width), img.data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(arr.into_pyarray(py))
}

pub(super) fn grid(tile_grid: (i64, i64)) -> PyResult<(usize, usize)> {
    let (gx, gy) = tile_grid;
    if gx < 1 || gy < 1 || gx > 1024 || gy > 1024 {
        return Err(PyValueError::new_err(format!(
            "tile_grid must be (columns, rows) in 1..=1024, got ({gx}, {gy})"
        )));
    }
    Ok((gx as usize, gy as usize))
}

pub(super) fn side(v: i64, what: &str) -> PyResult<usize> {
    if v < 1 || v > resize::MAX_SIDE as i64 {
        return Err(PyValueError::new_err(format!(
            "{what} must be in 1..={}, got {v}",
            resize::MAX_SIDE
        )));
    }
    Ok(v as usize)
}

pub(super) fn params(size: i64, clip_limit: f64, tile_grid: (i64, i64)) -> PyResult<Params> {
    let (grid_x, grid_y) = grid(tile_grid)?;
    core_clahe::check_params(clip_limit, grid_x, grid_y)?;
    Ok(Params {
        size: side(size, "size")?,
        clip_limit,
        grid_x,
        grid_y,
    })
}

pub(super) fn threads_arg(threads: Option<i64>) -> PyResult<Option<usize>> {
    match threads {
        None => Ok(None),
        Some(n) if (1..=1024).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(PyValueError::new_err(format!(
            "threads must be in 1..=1024 or None (all cores), got {n}"
        ))),
    }
}

/// The decoding options of a binding's `max_pixels` and `allow_truncated` arguments.
pub(super) fn decode_opts(max_pixels: i64, allow_truncated: bool) -> PyResult<DecodeOptions> {
    if max_pixels < 1 {
        return Err(PyValueError::new_err(format!(
            "max_pixels must be positive, got {max_pixels}"
        )));
    }
    Ok(DecodeOptions {
        max_pixels: max_pixels as u64,
        allow_truncated,
    })
}

pub(super) fn crops_arg(
    crops: Option<Vec<Option<Box4>>>,
    n: usize,
) -> PyResult<Option<Vec<Option<Box4>>>> {
    if let Some(c) = &crops {
        if c.len() != n {
            return Err(PyValueError::new_err(format!(
                "crops has {} entries for {n} images",
                c.len()
            )));
        }
    }
    Ok(crops)
}

pub(super) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A shape as Python prints it: `(2, 2, 3)`, `(5,)`.
pub(super) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(super) fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Checks that `image` is a non-empty 2-D uint8 numpy array (no copy).
pub(super) fn checked_image<'py>(
    image: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let arr = image.downcast::<PyUntypedArray>().map_err(|_| {
        value_err(format!(
            "{what} must be a 2-D uint8 numpy array (height, width), got {}",
            type_name(image)
        ))
    })?;
    if arr.ndim() != 2 {
        return Err(value_err(format!(
            "{what} must be 2-D (height, width), got shape {}{}",
            shape_str(arr.shape()),
            if arr.ndim() == 3 {
                "; pass one channel, e.g. image[..., 0]"
            } else {
                ""
            }
        )));
    }
    let u8_type = numpy::dtype::<u8>(image.py());
    if !arr.dtype().is_equiv_to(&u8_type) {
        return Err(value_err(format!(
            "{what} must have dtype uint8, got {} (convert explicitly, e.g. with \
             np.clip(x, 0, 255).astype(np.uint8))",
            arr.dtype()
        )));
    }
    let (h, w) = (arr.shape()[0], arr.shape()[1]);
    if h == 0 || w == 0 {
        return Err(value_err(format!("{what} is empty (shape {h}x{w})")));
    }
    Ok(arr.downcast::<PyArray2<u8>>()?.clone())
}

/// (height, width) of an image and where its pixels lie in a shared buffer.
pub(super) type Span = ((usize, usize), std::ops::Range<usize>);

/// The images of a batch, checked but not yet copied: a 3-D uint8 array (N, H, W) or a
/// sequence of 2-D arrays.
pub(super) enum BatchImages<'py> {
    Stack(Bound<'py, PyArray3<u8>>),
    List(Vec<Bound<'py, PyArray2<u8>>>),
}

impl<'py> BatchImages<'py> {
    pub(super) fn new(images: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(arr) = images.downcast::<PyUntypedArray>() {
            if arr.ndim() != 3 {
                return Err(value_err(format!(
                    "images must be a 3-D uint8 array (count, height, width) or a sequence of \
                     2-D arrays, got an array of shape {}",
                    shape_str(arr.shape())
                )));
            }
            let u8_type = numpy::dtype::<u8>(images.py());
            if !arr.dtype().is_equiv_to(&u8_type) {
                return Err(value_err(format!(
                    "images must have dtype uint8, got {}",
                    arr.dtype()
                )));
            }
            let (n, h, w) = (arr.shape()[0], arr.shape()[1], arr.shape()[2]);
            if n > 0 && (h == 0 || w == 0) {
                return Err(value_err(format!("images are empty ({h}x{w})")));
            }
            return Ok(BatchImages::Stack(arr.downcast::<PyArray3<u8>>()?.clone()));
        }
        let iter = images.try_iter().map_err(|_| {
            value_err(format!(
                "images must be a 3-D uint8 array or a sequence of 2-D uint8 arrays, got {}",
                type_name(images)
            ))
        })?;
        let mut out = Vec::new();
        for (i, item) in iter.enumerate() {
            out.push(checked_image(&item?, &format!("images[{i}]"))?);
        }
        Ok(BatchImages::List(out))
    }

    pub(super) fn len(&self) -> usize {
        match self {
            BatchImages::Stack(a) => a.shape()[0],
            BatchImages::List(v) => v.len(),
        }
    }

    /// Bytes of one image (of the first, for a list).
    pub(super) fn image_bytes(&self) -> usize {
        match self {
            BatchImages::Stack(a) => a.shape()[1] * a.shape()[2],
            BatchImages::List(v) => v.first().map_or(0, |a| a.shape()[0] * a.shape()[1]),
        }
    }

    /// Copies the pixels of images `range` into `buf` (cleared first); returns each image's
    /// (height, width) and byte range in `buf`.
    pub(super) fn copy_into(
        &self,
        range: std::ops::Range<usize>,
        buf: &mut Vec<u8>,
    ) -> PyResult<Vec<Span>> {
        buf.clear();
        let mut out = Vec::with_capacity(range.len());
        match self {
            BatchImages::List(v) => {
                for arr in &v[range] {
                    let ro = arr.try_readonly()?;
                    let start = buf.len();
                    match ro.as_slice() {
                        Ok(s) => buf.extend_from_slice(s),
                        Err(_) => buf.extend(ro.as_array().iter().copied()),
                    }
                    out.push((ro.as_array().dim(), start..buf.len()));
                }
            }
            BatchImages::Stack(a) => {
                let ro = a.try_readonly()?;
                let view = ro.as_array();
                let (_, h, w) = view.dim();
                let size = h * w;
                for i in range {
                    let start = buf.len();
                    match ro.as_slice() {
                        Ok(s) => buf.extend_from_slice(&s[i * size..(i + 1) * size]),
                        Err(_) => {
                            buf.extend(view.index_axis(numpy::ndarray::Axis(0), i).iter().copied())
                        }
                    }
                    out.push(((h, w), start..buf.len()));
                }
            }
        }
        Ok(out)
    }
}
