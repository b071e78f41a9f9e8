//! Python bindings for [`crate::tfrecord`]: `ShardWriter`, `read_records`, `read_examples`,
//! `encode_example`, `decode_example`, `shard_index` and `CorruptRecordError`.
//!
//! Arguments are checked and copied out of Python objects while the GIL is held; encoding,
//! checksums, compression and file I/O run with the GIL released. Errors map to `ValueError`
//! (bad arguments, use after close), `OSError` with errno and file name (I/O; Python picks the
//! subclass, e.g. `PermissionError`) and `CorruptRecordError(OSError)` with `path` and
//! `offset` attributes (corrupt or truncated records).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::RwLock;

use numpy::{
    PyArray1, PyArray2, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

use crate::augment;
use crate::error::Error;
use crate::tfrecord::{
    self, Compression, Example, Feature, FileExample, FileRecord, MultiReader, ShardSummary,
    RESERVED_KEYS,
};

/// Records (and at most this many bytes) read per release of the GIL.
const CHUNK_RECORDS: usize = 64;
const CHUNK_BYTES: usize = 8 << 20;

/// Pixel bytes of a write_batch copied, then encoded and written, per release of the GIL (at
/// least one image): small enough that the pixels are still in cache when they are encoded.
const BATCH_CHUNK_BYTES: usize = 512 << 10;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A shape as Python prints it: `(2, 2, 3)`, `(5,)`.
fn shape_str(shape: &[usize]) -> String {
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

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

// ------------------------------------------------------------------------------------------
// Python values -> Example

/// Checks that `image` is a non-empty 2-D uint8 numpy array (no copy).
fn checked_image<'py>(image: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyArray2<u8>>> {
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

/// (height, width, row-major pixels) of a checked image; always a copy (the GIL is released
/// while the copy is encoded, and Python code could change the array meanwhile).
fn copy_pixels(arr: &Bound<'_, PyArray2<u8>>) -> PyResult<(usize, usize, Vec<u8>)> {
    let ro = arr.try_readonly()?;
    let view = ro.as_array();
    let (h, w) = view.dim();
    let pixels = match ro.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => view.iter().copied().collect(),
    };
    Ok((h, w, pixels))
}

fn image_pixels(image: &Bound<'_, PyAny>, what: &str) -> PyResult<(usize, usize, Vec<u8>)> {
    copy_pixels(&checked_image(image, what)?)
}

fn case_id(id: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = if let Ok(s) = id.downcast::<PyString>() {
        s.to_str()?.to_owned()
    } else if id.is_instance_of::<PyBool>() {
        return Err(value_err("id must be a str (or an int), got bool"));
    } else if let Ok(i) = id.extract::<i64>() {
        i.to_string()
    } else {
        return Err(value_err(format!(
            "id must be a str (or an int), got {}",
            type_name(id)
        )));
    };
    if s.is_empty() {
        return Err(value_err("id must not be empty"));
    }
    Ok(s)
}

/// None, 0/1, False/True (numpy too), 0.0/1.0; NaN means unknown.
fn male_value(male: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    let Some(m) = male.filter(|m| !m.is_none()) else {
        return Ok(None);
    };
    let bad = || {
        value_err(format!(
            "male must be 0/1, False/True or None, got {}",
            m.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    };
    let v = if let Ok(v) = m.extract::<i64>() {
        v
    } else if let Ok(b) = m.extract::<bool>() {
        i64::from(b)
    } else if let Ok(f) = m.extract::<f64>() {
        if f.is_nan() {
            return Ok(None);
        }
        if f == 0.0 || f == 1.0 {
            f as i64
        } else {
            return Err(bad());
        }
    } else {
        return Err(bad());
    };
    if v == 0 || v == 1 {
        Ok(Some(v))
    } else {
        Err(bad())
    }
}

/// None or NaN means unlabeled; otherwise a finite number of months.
fn age_value(age: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f32>> {
    let Some(a) = age.filter(|a| !a.is_none()) else {
        return Ok(None);
    };
    let v: f64 = a.extract().map_err(|_| {
        value_err(format!(
            "age must be a number of months or None, got {}",
            type_name(a)
        ))
    })?;
    if v.is_nan() {
        return Ok(None);
    }
    if !v.is_finite() {
        return Err(value_err(format!("age must be finite, got {v}")));
    }
    Ok(Some(v as f32))
}

enum Scalar {
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

fn scalar(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<Scalar>> {
    if let Ok(s) = v.downcast::<PyString>() {
        return Ok(Some(Scalar::Bytes(s.to_str()?.as_bytes().to_vec())));
    }
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Ok(Some(Scalar::Bytes(b.as_bytes().to_vec())));
    }
    if let Ok(b) = v.downcast::<PyByteArray>() {
        return Ok(Some(Scalar::Bytes(b.to_vec())));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(Some(Scalar::Float(v.extract()?)));
    }
    if v.is_instance_of::<PyInt>() || v.hasattr("__index__")? {
        return v
            .extract::<i64>()
            .map(|i| Some(Scalar::Int(i)))
            .map_err(|_| {
                value_err(format!(
                    "extra feature {key:?}: integer {v} does not fit in int64"
                ))
            });
    }
    if v.hasattr("__float__")? && !v.is_instance_of::<PyUntypedArray>() {
        return Ok(Some(Scalar::Float(v.extract()?)));
    }
    Ok(None)
}

fn unsupported(key: &str, v: &Bound<'_, PyAny>) -> PyErr {
    value_err(format!(
        "extra feature {key:?}: unsupported value of type {}; use str, bytes, int, float, or a \
         list/tuple/1-D array of them",
        type_name(v)
    ))
}

/// `**extra` values: str/bytes -> bytes, int -> int64, float -> float, and lists, tuples or 1-D
/// arrays of those (ints and floats mixed -> float; an empty list -> an empty int64 list).
fn extra_feature(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Feature> {
    if let Some(s) = scalar(key, v)? {
        return Ok(match s {
            Scalar::Int(i) => Feature::Int64(vec![i]),
            Scalar::Float(f) => Feature::Float(vec![f as f32]),
            Scalar::Bytes(b) => Feature::Bytes(vec![b]),
        });
    }
    let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = v.downcast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = v.downcast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(a) = v.downcast::<PyUntypedArray>() {
        if a.ndim() > 1 {
            return Err(value_err(format!(
                "extra feature {key:?}: arrays must be 1-D, got shape {}",
                shape_str(a.shape())
            )));
        }
        let list = v.call_method0("tolist")?;
        if a.ndim() == 0 {
            return extra_feature(key, &list);
        }
        list.downcast::<PyList>()?.iter().collect()
    } else {
        return Err(unsupported(key, v));
    };
    let mut values = Vec::with_capacity(items.len());
    for item in &items {
        values.push(scalar(key, item)?.ok_or_else(|| unsupported(key, item))?);
    }
    let all_bytes = values.iter().all(|s| matches!(s, Scalar::Bytes(_)));
    let any_bytes = values.iter().any(|s| matches!(s, Scalar::Bytes(_)));
    let any_float = values.iter().any(|s| matches!(s, Scalar::Float(_)));
    if any_bytes && !all_bytes {
        return Err(value_err(format!(
            "extra feature {key:?}: a list mixes text/bytes with numbers"
        )));
    }
    Ok(if all_bytes && !values.is_empty() {
        Feature::Bytes(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::Bytes(b) => b,
                    _ => Vec::new(),
                })
                .collect(),
        )
    } else if any_float {
        Feature::Float(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::Int(i) => i as f32,
                    Scalar::Float(f) => f as f32,
                    Scalar::Bytes(_) => 0.0,
                })
                .collect(),
        )
    } else {
        Feature::Int64(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::Int(i) => i,
                    _ => 0,
                })
                .collect(),
        )
    })
}

fn check_extra_key(key: &str) -> PyResult<()> {
    if key.is_empty() {
        return Err(value_err("extra feature names must not be empty"));
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(value_err(format!(
            "extra feature name {key:?} is reserved (the writer sets {RESERVED_KEYS:?} itself)"
        )));
    }
    Ok(())
}

/// The Example of one case without its pixels: `height`, `width`, `id`, `male`, `age`, extras.
fn example_without_image(
    (h, w): (usize, usize),
    id: &str,
    male: Option<i64>,
    age: Option<f32>,
    extra: Vec<(String, Feature)>,
) -> Example {
    let mut ex = Example::new();
    for (k, f) in extra {
        ex.features.insert(k, f);
    }
    ex.features
        .insert("height".into(), Feature::Int64(vec![h as i64]));
    ex.features
        .insert("width".into(), Feature::Int64(vec![w as i64]));
    ex.features
        .insert("id".into(), Feature::Bytes(vec![id.as_bytes().to_vec()]));
    if let Some(m) = male {
        ex.features.insert("male".into(), Feature::Int64(vec![m]));
    }
    if let Some(a) = age {
        ex.features.insert("age".into(), Feature::Float(vec![a]));
    }
    ex
}

/// The Example of one case: the contract keys plus extras.
fn build_example(
    pixels: (usize, usize, Vec<u8>),
    id: String,
    male: Option<i64>,
    age: Option<f32>,
    extra: Vec<(String, Feature)>,
) -> (String, Example) {
    let (h, w, data) = pixels;
    let mut ex = example_without_image((h, w), &id, male, age, extra);
    ex.features
        .insert("image".into(), Feature::Bytes(vec![data]));
    (id, ex)
}

fn extras_from_kwargs(extra: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Feature)>> {
    let mut out = Vec::new();
    if let Some(d) = extra {
        for (k, v) in d.iter() {
            let key: String = k.extract()?;
            check_extra_key(&key)?;
            out.push((key.clone(), extra_feature(&key, &v)?));
        }
    }
    Ok(out)
}

fn one_case(
    image: &Bound<'_, PyAny>,
    id: &Bound<'_, PyAny>,
    male: Option<&Bound<'_, PyAny>>,
    age: Option<&Bound<'_, PyAny>>,
    extra: Option<&Bound<'_, PyDict>>,
) -> PyResult<(String, Example)> {
    let pixels = image_pixels(image, "image")?;
    let id = case_id(id)?;
    let male = male_value(male)?;
    let age = age_value(age)?;
    let extra = extras_from_kwargs(extra)?;
    Ok(build_example(pixels, id, male, age, extra))
}

// ------------------------------------------------------------------------------------------
// Example -> Python values

/// The f64 nearest to the shortest decimal that identifies `x` as an f32, so a label written
/// as 120.3 reads back as 120.3 (not 120.30000305175781).
fn f32_to_py_float(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
}

fn bytes_value<'py>(py: Python<'py>, b: Vec<u8>) -> Bound<'py, PyAny> {
    match String::from_utf8(b) {
        Ok(s) => PyString::new(py, &s).into_any(),
        Err(e) => PyBytes::new(py, e.as_bytes()).into_any(),
    }
}

fn one_or_list<'py>(
    py: Python<'py>,
    mut items: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if items.len() == 1 {
        if let Some(item) = items.pop() {
            return Ok(item);
        }
    }
    Ok(PyList::new(py, items)?.into_any())
}

/// A dict of the example's features: `image` as a (height, width) uint8 array when `height`
/// and `width` match its size; bytes as str when valid UTF-8; one value as a scalar, several
/// (or none) as a list.
fn example_to_dict<'py>(py: Python<'py>, ex: Example) -> PyResult<Bound<'py, PyDict>> {
    let shape = match (ex.int64("height"), ex.int64("width")) {
        (Some(h), Some(w)) if h > 0 && w > 0 => Some((h as usize, w as usize)),
        _ => None,
    };
    let dict = PyDict::new(py);
    for (key, feature) in ex.features {
        let value = match feature {
            Feature::Bytes(mut v)
                if key == "image"
                    && v.len() == 1
                    && shape.is_some_and(|(h, w)| h.checked_mul(w) == Some(v[0].len())) =>
            {
                let (h, w) = shape.unwrap_or((0, 0));
                let data = v.pop().unwrap_or_default();
                PyArray1::from_vec(py, data).reshape([h, w])?.into_any()
            }
            Feature::Bytes(v) => {
                one_or_list(py, v.into_iter().map(|b| bytes_value(py, b)).collect())?
            }
            Feature::Int64(v) => one_or_list(
                py,
                v.into_iter()
                    .map(|i| PyInt::new(py, i).into_any())
                    .collect(),
            )?,
            Feature::Float(v) => one_or_list(
                py,
                v.into_iter()
                    .map(|f| PyFloat::new(py, f32_to_py_float(f)).into_any())
                    .collect(),
            )?,
        };
        dict.set_item(key, value)?;
    }
    Ok(dict)
}

// ------------------------------------------------------------------------------------------
// ShardWriter

enum State {
    Open(tfrecord::ShardWriter),
    Closed(Vec<ShardSummary>),
    Aborted(String),
}

/// Writes cases as tf.train.Example records into `num_shards` TFRecord files.
#[pyclass(module = "boneage._native", frozen)]
pub struct ShardWriter {
    state: RwLock<State>,
    directory: PathBuf,
    split: String,
    num_shards: usize,
    compression: Compression,
    paths: Vec<PathBuf>,
    /// write_batch's pixel buffer, reused across calls.
    pixels: std::sync::Mutex<Vec<u8>>,
}

fn parse_compression(compression: Option<&str>, level: Option<i64>) -> PyResult<Compression> {
    let gzip = match compression.map(|c| c.to_ascii_uppercase()) {
        None => false,
        Some(c) if c.is_empty() || c == "NONE" => false,
        Some(c) if c == "GZIP" => true,
        Some(other) => {
            return Err(value_err(format!(
                "compression must be None or \"GZIP\", got {other:?}"
            )))
        }
    };
    match (gzip, level) {
        (false, Some(_)) => Err(value_err("compression_level needs compression=\"GZIP\"")),
        (false, None) => Ok(Compression::None),
        (true, None) => Ok(Compression::Gzip {
            level: Compression::GZIP_DEFAULT_LEVEL,
        }),
        (true, Some(l)) if (0..=9).contains(&l) => Ok(Compression::Gzip { level: l as u32 }),
        (true, Some(l)) => Err(value_err(format!(
            "compression_level must be between 0 and 9, got {l}"
        ))),
    }
}

fn closed_err(state: &State) -> Error {
    match state {
        State::Aborted(why) => Error::value(format!("write to an aborted ShardWriter ({why})")),
        _ => Error::value("write to a closed ShardWriter"),
    }
}

fn read_state(lock: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write_state(lock: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl ShardWriter {
    fn summary_dict<'py>(
        &self,
        py: Python<'py>,
        shards: &[ShardSummary],
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("directory", self.directory.display().to_string())?;
        d.set_item("split", &self.split)?;
        d.set_item("num_shards", self.num_shards)?;
        d.set_item("compression", self.compression_name())?;
        d.set_item("records", shards.iter().map(|s| s.records).sum::<u64>())?;
        d.set_item("bytes", shards.iter().map(|s| s.bytes).sum::<u64>())?;
        let list = PyList::empty(py);
        for s in shards {
            let e = PyDict::new(py);
            e.set_item("index", s.index)?;
            e.set_item("path", s.path.display().to_string())?;
            e.set_item("records", s.records)?;
            e.set_item("bytes", s.bytes)?;
            e.set_item("raw_bytes", s.raw_bytes)?;
            list.append(e)?;
        }
        d.set_item("shards", list)?;
        Ok(d)
    }

    fn compression_name(&self) -> Option<&'static str> {
        match self.compression {
            Compression::None => None,
            Compression::Gzip { .. } => Some("GZIP"),
        }
    }
}

#[pymethods]
impl ShardWriter {
    #[new]
    #[pyo3(signature = (directory, split, num_shards, compression=None, *, compression_level=None, shards=None, fsync=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        directory: PathBuf,
        split: String,
        num_shards: i64,
        compression: Option<String>,
        compression_level: Option<i64>,
        shards: Option<Vec<i64>>,
        fsync: bool,
    ) -> PyResult<Self> {
        let compression = parse_compression(compression.as_deref(), compression_level)?;
        if !(1..=tfrecord::MAX_SHARDS as i64).contains(&num_shards) {
            return Err(value_err(format!(
                "num_shards must be between 1 and {}, got {num_shards}",
                tfrecord::MAX_SHARDS
            )));
        }
        let only = match shards {
            None => None,
            Some(list) => Some(
                list.into_iter()
                    .map(|i| {
                        usize::try_from(i)
                            .ok()
                            .filter(|&i| i < num_shards as usize)
                            .ok_or_else(|| {
                                value_err(format!(
                                    "shard index {i} out of range for num_shards={num_shards}"
                                ))
                            })
                    })
                    .collect::<PyResult<Vec<usize>>>()?,
            ),
        };
        let n = num_shards as usize;
        let mut writer = py.allow_threads(|| {
            tfrecord::ShardWriter::create(&directory, &split, n, compression, only.as_deref())
        })?;
        writer.set_fsync(fsync);
        let paths = writer.paths();
        Ok(ShardWriter {
            state: RwLock::new(State::Open(writer)),
            directory,
            split,
            num_shards: n,
            compression,
            paths,
            pixels: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Adds one case; returns the index of the shard it went to.
    #[pyo3(signature = (image, id, male=None, age=None, **extra))]
    fn write(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        id: &Bound<'_, PyAny>,
        male: Option<&Bound<'_, PyAny>>,
        age: Option<&Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<usize> {
        if !matches!(*read_state(&self.state), State::Open(_)) {
            return Err(closed_err(&read_state(&self.state)).into());
        }
        let (id, example) = one_case(image, id, male, age, extra)?;
        Ok(py.allow_threads(|| match &*read_state(&self.state) {
            State::Open(w) => w.write_example(&id, &example),
            other => Err(closed_err(other)),
        })?)
    }

    /// Adds many cases (encoded in parallel); returns the shard index of each.
    #[pyo3(signature = (images, ids, males=None, ages=None, extras=None))]
    fn write_batch(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        ids: &Bound<'_, PyAny>,
        males: Option<&Bound<'_, PyAny>>,
        ages: Option<&Bound<'_, PyAny>>,
        extras: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<usize>> {
        if !matches!(*read_state(&self.state), State::Open(_)) {
            return Err(closed_err(&read_state(&self.state)).into());
        }
        let images = BatchImages::new(images)?;
        let n = images.len();
        let ids = column("ids", Some(ids), n)?.unwrap_or_default();
        let males = column("males", males, n)?;
        let ages = column("ages", ages, n)?;
        let mut extra_cols = Vec::new();
        if let Some(d) = extras {
            for (k, v) in d.iter() {
                let key: String = k.extract()?;
                check_extra_key(&key)?;
                let col = column(&format!("extras[{key:?}]"), Some(&v), n)?.unwrap_or_default();
                extra_cols.push((key, col));
            }
        }
        // Every argument is checked before anything is written.
        let mut metas = Vec::with_capacity(n);
        for i in 0..n {
            let id = case_id(&ids[i])?;
            let male = male_value(males.as_ref().map(|m| &m[i]))?;
            let age = age_value(ages.as_ref().map(|a| &a[i]))?;
            let extra = extra_cols
                .iter()
                .map(|(k, col)| Ok((k.clone(), extra_feature(k, &col[i])?)))
                .collect::<PyResult<Vec<_>>>()?;
            metas.push((id, male, age, extra));
        }
        py.allow_threads(|| match &*read_state(&self.state) {
            State::Open(w) => w.check_ids(metas.iter().map(|m| m.0.as_str())),
            other => Err(closed_err(other)),
        })?;
        // Then pixels are copied a chunk at a time into one reused buffer (bounded memory, no
        // fresh pages per image) and each chunk is encoded and written without the GIL.
        let mut shards = Vec::with_capacity(n);
        let mut metas = metas.into_iter();
        // The buffer is kept between calls (no fresh pages to fault in for every batch).
        let mut pixels =
            std::mem::take(&mut *self.pixels.lock().unwrap_or_else(|e| e.into_inner()));
        let per_chunk = (BATCH_CHUNK_BYTES / images.image_bytes().max(1)).max(1);
        for start in (0..n).step_by(per_chunk) {
            let end = (start + per_chunk).min(n);
            let spans = images.copy_into(start..end, &mut pixels)?;
            let examples: Vec<(String, Example)> = spans
                .iter()
                .zip(metas.by_ref())
                .map(|((hw, _), (id, male, age, extra))| {
                    let ex = example_without_image(*hw, &id, male, age, extra);
                    (id, ex)
                })
                .collect();
            let done = py.allow_threads(|| {
                let items: Vec<(String, Example, &[u8])> = examples
                    .into_iter()
                    .zip(&spans)
                    .map(|((id, ex), (_, span))| (id, ex, &pixels[span.clone()]))
                    .collect();
                match &*read_state(&self.state) {
                    State::Open(w) => w.write_batch_with("image", &items),
                    other => Err(closed_err(other)),
                }
            })?;
            shards.extend(done);
        }
        *self.pixels.lock().unwrap_or_else(|e| e.into_inner()) = pixels;
        Ok(shards)
    }

    /// Flushes, fsyncs and publishes every shard; returns the summary dict. A second call
    /// returns the same summary.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let result = py.allow_threads(|| {
            let mut state = write_state(&self.state);
            match std::mem::replace(&mut *state, State::Aborted("closing".into())) {
                State::Open(w) => match w.finish() {
                    Ok(s) => {
                        *state = State::Closed(s.clone());
                        Ok(s)
                    }
                    Err(e) => {
                        *state = State::Aborted(format!("close failed: {e}"));
                        Err(e)
                    }
                },
                State::Closed(s) => {
                    *state = State::Closed(s.clone());
                    Ok(s)
                }
                State::Aborted(why) => {
                    let err = Error::value(format!(
                        "the ShardWriter was aborted ({why}); nothing was published"
                    ));
                    *state = State::Aborted(why);
                    Err(err)
                }
            }
        });
        let shards = result?;
        self.summary_dict(py, &shards)
    }

    /// Removes every temporary file without publishing anything (a no-op after close()).
    fn abort(&self, py: Python<'_>) {
        py.allow_threads(|| {
            let mut state = write_state(&self.state);
            if matches!(*state, State::Open(_)) {
                // Dropping the core writer removes its temporaries.
                *state = State::Aborted("abort() was called".into());
            }
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes (publishes) on a clean exit; on an exception aborts, so no shard of a failed
    /// run is published, and lets the exception propagate.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if exc_type.is_none() {
            self.close(py)?;
        } else {
            self.abort(py);
        }
        Ok(false)
    }

    #[getter]
    fn directory(&self) -> String {
        self.directory.display().to_string()
    }

    #[getter]
    fn split(&self) -> &str {
        &self.split
    }

    #[getter]
    fn num_shards(&self) -> usize {
        self.num_shards
    }

    #[getter]
    fn compression(&self) -> Option<&'static str> {
        self.compression_name()
    }

    /// Final paths of the shards this writer owns (they exist only after close()).
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.paths.iter().map(|p| p.display().to_string()).collect()
    }

    /// Records written so far.
    #[getter]
    fn records(&self, py: Python<'_>) -> u64 {
        py.allow_threads(|| match &*read_state(&self.state) {
            State::Open(w) => w.records(),
            State::Closed(s) => s.iter().map(|s| s.records).sum(),
            State::Aborted(_) => 0,
        })
    }

    #[getter]
    fn closed(&self) -> bool {
        !matches!(*read_state(&self.state), State::Open(_))
    }

    /// The close() summary, or None before a successful close().
    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let shards = match &*read_state(&self.state) {
            State::Closed(s) => s.clone(),
            _ => return Ok(None),
        };
        self.summary_dict(py, &shards).map(Some)
    }

    fn __repr__(&self) -> String {
        let state = match &*read_state(&self.state) {
            State::Open(_) => "open",
            State::Closed(_) => "closed",
            State::Aborted(_) => "aborted",
        };
        format!(
            "ShardWriter(directory={:?}, split={:?}, num_shards={}, compression={}, {state})",
            self.directory.display().to_string(),
            self.split,
            self.num_shards,
            self.compression_name()
                .map_or("None".into(), |c| format!("{c:?}")),
        )
    }
}

/// A per-case column of write_batch: None, or a sequence of exactly `n` entries.
fn column<'py>(
    name: &str,
    obj: Option<&Bound<'py, PyAny>>,
    n: usize,
) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(value_err(format!(
            "{name} must be a sequence with one entry per image, got {}",
            type_name(obj)
        )));
    }
    let items: Vec<Bound<'py, PyAny>> = obj
        .try_iter()
        .map_err(|_| value_err(format!("{name} must be a sequence, got {}", type_name(obj))))?
        .collect::<PyResult<_>>()?;
    if items.len() != n {
        return Err(value_err(format!(
            "{name} has {} entries but there are {n} images",
            items.len()
        )));
    }
    Ok(Some(items))
}

/// (height, width) of an image and where its pixels lie in a shared buffer.
type Span = ((usize, usize), std::ops::Range<usize>);

/// The images of a batch, checked but not yet copied: a 3-D uint8 array (N, H, W) or a
/// sequence of 2-D arrays.
enum BatchImages<'py> {
    Stack(Bound<'py, PyArray3<u8>>),
    List(Vec<Bound<'py, PyArray2<u8>>>),
}

impl<'py> BatchImages<'py> {
    fn new(images: &Bound<'py, PyAny>) -> PyResult<Self> {
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

    fn len(&self) -> usize {
        match self {
            BatchImages::Stack(a) => a.shape()[0],
            BatchImages::List(v) => v.len(),
        }
    }

    /// Bytes of one image (of the first, for a list).
    fn image_bytes(&self) -> usize {
        match self {
            BatchImages::Stack(a) => a.shape()[1] * a.shape()[2],
            BatchImages::List(v) => v.first().map_or(0, |a| a.shape()[0] * a.shape()[1]),
        }
    }

    /// Copies the pixels of images `range` into `buf` (cleared first); returns each image's
    /// (height, width) and byte range in `buf`.
    fn copy_into(&self, range: std::ops::Range<usize>, buf: &mut Vec<u8>) -> PyResult<Vec<Span>> {
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

// ------------------------------------------------------------------------------------------
// Readers

/// One path (str or os.PathLike) or a sequence of them.
fn paths_arg(paths: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if paths.is_instance_of::<PyString>() || paths.hasattr("__fspath__")? {
        return Ok(vec![paths.extract()?]);
    }
    if paths.is_instance_of::<PyBytes>() {
        return Err(value_err("paths must be str or os.PathLike, not bytes"));
    }
    let iter = paths.try_iter().map_err(|_| {
        value_err(format!(
            "paths must be a path or a sequence of paths, got {}",
            type_name(paths)
        ))
    })?;
    iter.map(|p| {
        let p = p?;
        p.extract::<PathBuf>().map_err(|_| {
            value_err(format!(
                "paths must be str or os.PathLike, got {}",
                type_name(&p)
            ))
        })
    })
    .collect()
}

fn problems_list(reader: &MultiReader) -> Vec<(String, u64, String)> {
    reader
        .problems()
        .iter()
        .map(|p| (p.path.display().to_string(), p.offset, p.message.clone()))
        .collect()
}

/// The methods both reader classes share (PyO3 cannot inherit methods, so one macro writes
/// the `#[pymethods]` block of each around its own `__next__`).
macro_rules! reader_methods {
    ($ty:ident, { $($next:tt)* }) => {
        #[pymethods]
        impl $ty {
            fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            $($next)*

            /// Number of corrupt stretches (or, for examples, non-Example records) skipped so
            /// far (skip_corrupt=True).
            #[getter]
            fn skipped(&self) -> usize {
                self.inner.problems().len()
            }

            /// (path, offset, message) of each skipped stretch.
            #[getter]
            fn problems(&self) -> Vec<(String, u64, String)> {
                problems_list(&self.inner)
            }

            #[getter]
            fn paths(&self) -> Vec<String> {
                self.inner
                    .paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            }

            /// Closes the file in hand; the iterator then ends.
            fn close(&mut self) {
                self.inner.close();
                self.ready.clear();
            }

            fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            fn __exit__(
                &mut self,
                _exc_type: &Bound<'_, PyAny>,
                _exc: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> bool {
                self.close();
                false
            }
        }
    };
}

/// Iterator over the raw records (bytes) of TFRecord files; see `read_records`.
#[pyclass(module = "boneage._native")]
pub struct RecordReader {
    inner: MultiReader,
    ready: VecDeque<FileRecord>,
}

reader_methods!(RecordReader, {
    fn __next__<'py>(
        mut slf: PyRefMut<'_, Self>,
        py: Python<'py>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let this = &mut *slf;
        if this.ready.is_empty() {
            let inner = &mut this.inner;
            let chunk = py.allow_threads(|| inner.next_chunk(CHUNK_RECORDS, CHUNK_BYTES))?;
            this.ready.extend(chunk);
        }
        Ok(this
            .ready
            .pop_front()
            .map(|(_, r)| PyBytes::new(py, &r.data)))
    }
});

/// Iterator over the examples (dicts) of TFRecord files; see `read_examples`.
#[pyclass(module = "boneage._native")]
pub struct ExampleReader {
    inner: MultiReader,
    ready: VecDeque<FileExample>,
}

reader_methods!(ExampleReader, {
    fn __next__<'py>(
        mut slf: PyRefMut<'_, Self>,
        py: Python<'py>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let this = &mut *slf;
        if this.ready.is_empty() {
            let inner = &mut this.inner;
            let chunk =
                py.allow_threads(|| inner.next_example_chunk(CHUNK_RECORDS, CHUNK_BYTES))?;
            this.ready.extend(chunk);
        }
        match this.ready.pop_front() {
            Some((_, _, ex)) => example_to_dict(py, ex).map(Some),
            None => Ok(None),
        }
    }
});

/// Iterates over the raw records of one or more TFRecord files (plain or GZIP).
#[pyfunction]
#[pyo3(signature = (paths, *, skip_corrupt=false))]
pub(super) fn read_records(
    py: Python<'_>,
    paths: &Bound<'_, PyAny>,
    skip_corrupt: bool,
) -> PyResult<RecordReader> {
    let paths = paths_arg(paths)?;
    let inner = py.allow_threads(|| MultiReader::new(paths, skip_corrupt))?;
    Ok(RecordReader {
        inner,
        ready: VecDeque::new(),
    })
}

/// Iterates over the tf.train.Example records of one or more TFRecord files as dicts.
#[pyfunction]
#[pyo3(signature = (paths, *, skip_corrupt=false))]
pub(super) fn read_examples(
    py: Python<'_>,
    paths: &Bound<'_, PyAny>,
    skip_corrupt: bool,
) -> PyResult<ExampleReader> {
    let paths = paths_arg(paths)?;
    let inner = py.allow_threads(|| MultiReader::new(paths, skip_corrupt))?;
    Ok(ExampleReader {
        inner,
        ready: VecDeque::new(),
    })
}

/// Number of records in one or more TFRecord files (plain files are walked header to header).
#[pyfunction]
pub(super) fn count_records(py: Python<'_>, paths: &Bound<'_, PyAny>) -> PyResult<u64> {
    let paths = paths_arg(paths)?;
    Ok(py.allow_threads(|| {
        paths
            .iter()
            .map(|p| tfrecord::count_records(p))
            .sum::<crate::error::Result<u64>>()
    })?)
}

/// The serialised tf.train.Example that ShardWriter.write would store for these arguments.
#[pyfunction]
#[pyo3(signature = (image, id, male=None, age=None, **extra))]
pub(super) fn encode_example<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    id: &Bound<'py, PyAny>,
    male: Option<&Bound<'py, PyAny>>,
    age: Option<&Bound<'py, PyAny>>,
    extra: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (_, example) = one_case(image, id, male, age, extra)?;
    let bytes = py.allow_threads(|| example.encode());
    Ok(PyBytes::new(py, &bytes))
}

/// Decodes a serialised tf.train.Example into the dict read_examples yields.
#[pyfunction]
pub(super) fn decode_example<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let example = py
        .allow_threads(|| Example::decode(data))
        .map_err(|reason| value_err(format!("not a valid tf.train.Example: {reason}")))?;
    example_to_dict(py, example)
}

/// Augments a batch of uint8 images in one fused pass: affine warp, scaling to [0, 1],
/// contrast about each image's mean, brightness, clipping. Returns float32 (n, h, w).
#[pyfunction]
#[pyo3(signature = (images, affine, contrast=None, brightness=None))]
pub(super) fn augment_images<'py>(
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

/// The file name of shard `index` of `num_shards` for `split`: what ShardWriter writes.
#[pyfunction]
#[pyo3(signature = (split, index, num_shards, compression=None))]
pub(super) fn shard_name(
    split: &str,
    index: i64,
    num_shards: i64,
    compression: Option<&str>,
) -> PyResult<String> {
    tfrecord::check_split(split)?;
    let n = num_shards_arg(num_shards)?;
    let i = usize::try_from(index)
        .ok()
        .filter(|&i| i < n)
        .ok_or_else(|| {
            value_err(format!(
                "shard index {index} out of range for num_shards={n}"
            ))
        })?;
    let compression = parse_compression(compression, None)?;
    Ok(tfrecord::shard_file_name(split, i, n, compression))
}

/// `(split, index, num_shards, gzip)` of a shard file name (a bare name, not a path), or None
/// when the name is not one ShardWriter writes.
#[pyfunction]
pub(super) fn parse_shard_name(name: &str) -> Option<(String, usize, usize, bool)> {
    tfrecord::parse_shard_file_name(name)
        .map(|s| (s.split.to_owned(), s.index, s.num_shards, s.gzip))
}

/// A glob pattern for the shard files of `split` (every split by default).
#[pyfunction]
#[pyo3(signature = (split="*"))]
pub(super) fn shard_glob(split: &str) -> String {
    tfrecord::shard_glob(split)
}

/// Whether a TFRecord file is GZIP-compressed, judged by content as the readers judge it.
#[pyfunction]
pub(super) fn is_gzip_file(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
    Ok(py.allow_threads(|| tfrecord::is_gzip_file(&path))?)
}

fn num_shards_arg(num_shards: i64) -> PyResult<usize> {
    if !(1..=tfrecord::MAX_SHARDS as i64).contains(&num_shards) {
        return Err(value_err(format!(
            "num_shards must be between 1 and {}, got {num_shards}",
            tfrecord::MAX_SHARDS
        )));
    }
    Ok(num_shards as usize)
}

/// The shard a case id goes to: FNV-1a 64 of its UTF-8 bytes, modulo num_shards.
#[pyfunction]
pub(super) fn shard_index(id: &Bound<'_, PyAny>, num_shards: i64) -> PyResult<usize> {
    if !(1..=tfrecord::MAX_SHARDS as i64).contains(&num_shards) {
        return Err(value_err(format!(
            "num_shards must be between 1 and {}, got {num_shards}",
            tfrecord::MAX_SHARDS
        )));
    }
    Ok(tfrecord::shard_index(&case_id(id)?, num_shards as usize))
}
