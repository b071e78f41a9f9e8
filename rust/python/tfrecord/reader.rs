//! Reading TFRecord files: the `RecordReader` and `ExampleReader` iterators, `read_records`,
//! `read_examples` and `count_records`.

use std::collections::VecDeque;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::example::example_to_dict;
use crate::python::args::{type_name, value_err};
use crate::tfrecord::{self, FileExample, FileRecord, MultiReader};

/// Records (and at most this many bytes) read per release of the GIL.
const CHUNK_RECORDS: usize = 64;
const CHUNK_BYTES: usize = 8 << 20;

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
pub(in crate::python) fn read_records(
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
pub(in crate::python) fn read_examples(
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
pub(in crate::python) fn count_records(py: Python<'_>, paths: &Bound<'_, PyAny>) -> PyResult<u64> {
    let paths = paths_arg(paths)?;
    Ok(py.allow_threads(|| {
        paths
            .iter()
            .map(|p| tfrecord::count_records(p))
            .sum::<crate::error::Result<u64>>()
    })?)
}
