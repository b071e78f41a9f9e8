//! Python values <-> `tf.train.Example`: the checks and conversions of a case's arguments
//! (image, id, male, age, `**extra`) into an [`Example`], the dict a read Example becomes, and
//! the `encode_example` / `decode_example` functions.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

use crate::python::args::{checked_image, shape_str, type_name, value_err};
use crate::tfrecord::{Example, Feature, RESERVED_KEYS};

// ------------------------------------------------------------------------------------------
// Python values -> Example

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

pub(super) fn case_id(id: &Bound<'_, PyAny>) -> PyResult<String> {
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
pub(super) fn male_value(male: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
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
pub(super) fn age_value(age: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f32>> {
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
pub(super) fn extra_feature(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Feature> {
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

pub(super) fn check_extra_key(key: &str) -> PyResult<()> {
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
pub(super) fn example_without_image(
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

pub(super) fn one_case(
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
pub(super) fn example_to_dict<'py>(py: Python<'py>, ex: Example) -> PyResult<Bound<'py, PyDict>> {
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

/// The serialised tf.train.Example that ShardWriter.write would store for these arguments.
#[pyfunction]
#[pyo3(signature = (image, id, male=None, age=None, **extra))]
pub(in crate::python) fn encode_example<'py>(
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
pub(in crate::python) fn decode_example<'py>(
    py: Python<'py>,
    data: &[u8],
) -> PyResult<Bound<'py, PyDict>> {
    let example = py
        .allow_threads(|| Example::decode(data))
        .map_err(|reason| value_err(format!("not a valid tf.train.Example: {reason}")))?;
    example_to_dict(py, example)
}
