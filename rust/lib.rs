//! boneage's native core. Pure Rust modules (tested by `cargo test` without Python) and, behind
//! the `python` feature, the PyO3 bindings that make them `boneage._native`.

pub mod augment;
pub mod batch;
pub mod clahe;
pub mod decode;
pub mod error;
pub mod image;
pub mod localise;
pub mod orientation;
pub mod pipeline;
pub mod preprocess;
pub mod resize;
pub mod tfrecord;

#[cfg(feature = "python")]
mod py_image;
#[cfg(feature = "python")]
mod py_pipeline;
#[cfg(feature = "python")]
mod py_tfrecord;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    use pyo3::types::PyModuleMethods;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py_image::register(m)?;
    py_pipeline::register(m)?;
    py_tfrecord::register(m)?;
    Ok(())
}
