//! The Python bindings: `boneage._native`. The core modules know nothing of Python; this
//! module is the one place that does, and [`_native`] below lists the whole Python surface,
//! every exported name once.
//!
//! - [`errors`]: the one `From<crate::error::Error> for PyErr`; [`args`]: argument helpers.
//! - [`image`]: decoding, CLAHE, resizing, preprocessing (single and batch).
//! - [`pipeline`]: the hand localiser and the fused bulk-job call.
//! - [`tfrecord`]: shard writing and reading, Example coding, shard names.
//! - [`augment`]: batch augmentation of training images.

mod args;
mod augment;
mod errors;
mod image;
mod pipeline;
mod tfrecord;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::decode::DEFAULT_MAX_PIXELS;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Version: one owner, Cargo.toml.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;

    // Constants.
    m.add("DEFAULT_MAX_PIXELS", DEFAULT_MAX_PIXELS)?;
    m.add("HAND_MARGIN", crate::pipeline::HAND_MARGIN)?;
    m.add(
        "RESERVED_KEYS",
        PyTuple::new(py, crate::tfrecord::RESERVED_KEYS)?,
    )?;

    // Exceptions.
    m.add(
        "CorruptRecordError",
        py.get_type::<errors::CorruptRecordError>(),
    )?;

    // Images.
    m.add_function(wrap_pyfunction!(image::clahe, m)?)?;
    m.add_function(wrap_pyfunction!(image::pad_to_square, m)?)?;
    m.add_function(wrap_pyfunction!(image::resize_area, m)?)?;
    m.add_function(wrap_pyfunction!(image::resize_linear, m)?)?;
    m.add_function(wrap_pyfunction!(image::decode_gray, m)?)?;
    m.add_function(wrap_pyfunction!(image::read_gray, m)?)?;
    m.add_function(wrap_pyfunction!(image::preprocess, m)?)?;
    m.add_function(wrap_pyfunction!(image::preprocess_batch, m)?)?;
    m.add_function(wrap_pyfunction!(image::preprocess_files, m)?)?;
    m.add_function(wrap_pyfunction!(image::read_gray_files, m)?)?;

    // Localiser and the bulk job's fused call.
    m.add_function(wrap_pyfunction!(pipeline::localise_hand, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::choose_crop, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::process_encoded, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::decode_many, m)?)?;

    // TFRecord shards and Examples.
    m.add_class::<tfrecord::writer::ShardWriter>()?;
    m.add_class::<tfrecord::reader::RecordReader>()?;
    m.add_class::<tfrecord::reader::ExampleReader>()?;
    m.add_function(wrap_pyfunction!(tfrecord::reader::read_records, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::reader::read_examples, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::reader::count_records, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::example::encode_example, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::example::decode_example, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::naming::shard_index, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::naming::shard_name, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::naming::parse_shard_name, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::naming::shard_glob, m)?)?;
    m.add_function(wrap_pyfunction!(tfrecord::naming::is_gzip_file, m)?)?;

    // Augmentation.
    m.add_function(wrap_pyfunction!(augment::augment_images, m)?)?;
    Ok(())
}
