//! boneage's native core. Pure Rust modules (tested by `cargo test` without Python) and, behind
//! the `python` feature, the PyO3 bindings in `python/` that make them `boneage._native`
//! (the only module that knows of Python).

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
mod python;
