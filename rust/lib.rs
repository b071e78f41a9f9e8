//! boneage's native core. Pure Rust modules (tested by `cargo test` without Python) and, behind
//! the `python` feature, the PyO3 bindings that make them `boneage._native`.

pub mod clahe;
pub mod error;
pub mod image;
pub mod resize;
pub mod decode;
pub mod augment;
pub mod tfrecord;

#[cfg(feature = "python")]
mod py_tfrecord;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    py_tfrecord::register(m)?;
    Ok(())
}
