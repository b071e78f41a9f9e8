//! Shard names and assignment: `shard_index`, `shard_name`, `parse_shard_name`, `shard_glob`
//! and `is_gzip_file`.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::example::case_id;
use super::writer::parse_compression;
use crate::python::args::value_err;
use crate::tfrecord;

/// The file name of shard `index` of `num_shards` for `split`: what ShardWriter writes.
#[pyfunction]
#[pyo3(signature = (split, index, num_shards, compression=None))]
pub(in crate::python) fn shard_name(
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
pub(in crate::python) fn parse_shard_name(name: &str) -> Option<(String, usize, usize, bool)> {
    tfrecord::parse_shard_file_name(name)
        .map(|s| (s.split.to_owned(), s.index, s.num_shards, s.gzip))
}

/// A glob pattern for the shard files of `split` (every split by default).
#[pyfunction]
#[pyo3(signature = (split="*"))]
pub(in crate::python) fn shard_glob(split: &str) -> String {
    tfrecord::shard_glob(split)
}

/// Whether a TFRecord file is GZIP-compressed, judged by content as the readers judge it.
#[pyfunction]
pub(in crate::python) fn is_gzip_file(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
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
pub(in crate::python) fn shard_index(id: &Bound<'_, PyAny>, num_shards: i64) -> PyResult<usize> {
    if !(1..=tfrecord::MAX_SHARDS as i64).contains(&num_shards) {
        return Err(value_err(format!(
            "num_shards must be between 1 and {}, got {num_shards}",
            tfrecord::MAX_SHARDS
        )));
    }
    Ok(tfrecord::shard_index(&case_id(id)?, num_shards as usize))
}
