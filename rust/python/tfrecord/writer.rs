//! The `ShardWriter` class: writes cases as `tf.train.Example` records into shards, one case
//! (`write`) or a batch (`write_batch`) at a time, and publishes or aborts them.

use std::path::PathBuf;
use std::sync::RwLock;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use super::example::{
    age_value, case_id, check_extra_key, example_without_image, extra_feature, male_value, one_case,
};
use crate::error::Error;
use crate::python::args::{type_name, value_err, BatchImages};
use crate::tfrecord::{self, Compression, Example, ShardSummary};

/// Pixel bytes of a write_batch copied, then encoded and written, per release of the GIL (at
/// least one image): small enough that the pixels are still in cache when they are encoded.
const BATCH_CHUNK_BYTES: usize = 512 << 10;

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

pub(super) fn parse_compression(
    compression: Option<&str>,
    level: Option<i64>,
) -> PyResult<Compression> {
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
