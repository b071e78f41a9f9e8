//! boneage's native core. Pure Rust modules (tested by `cargo test` without Python) and, behind
//! the `python` feature, the PyO3 bindings that make them `boneage._native`.

pub mod clahe;
pub mod error;
pub mod image;
pub mod resize;
pub mod decode;
pub mod tfrecord;

