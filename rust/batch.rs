//! Parallel batch work over many images or files, with per-item errors.
//!
//! Results come back in input order whatever the thread count, and one bad item never loses
//! the others: its slot is reported as an error with the path and the reason.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::decode::{read_gray, DecodeOptions};
use crate::error::{Error, Result};
use crate::image::{Gray, GrayView};
use crate::preprocess::{preprocess, Box4, Params};

/// Runs `f` on a pool of `threads` threads, or on rayon's global pool (all cores) for `None`.
pub fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(Error::value(
            "threads must be at least 1 (or None for all cores)",
        )),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::value(format!("cannot start {n} threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}

/// Decodes and preprocesses files in parallel; `crops[i]` applies to `paths[i]`.
pub fn preprocess_files(
    paths: &[PathBuf],
    crops: Option<&[Option<Box4>]>,
    params: &Params,
    opts: DecodeOptions,
) -> Vec<Result<Gray>> {
    paths
        .par_iter()
        .enumerate()
        .map(|(i, path)| {
            let img = read_gray(path, opts)?;
            let crop = crops.and_then(|c| c[i]);
            preprocess(&img.view(), crop, params).map_err(|e| e.with_path(path))
        })
        .collect()
}

/// Preprocesses in-memory images in parallel.
pub fn preprocess_views(
    views: &[GrayView<'_>],
    crops: Option<&[Option<Box4>]>,
    params: &Params,
) -> Vec<Result<Gray>> {
    views
        .par_iter()
        .enumerate()
        .map(|(i, v)| preprocess(v, crops.and_then(|c| c[i]), params))
        .collect()
}

/// Decodes files in parallel (no preprocessing).
pub fn read_files(paths: &[PathBuf], opts: DecodeOptions) -> Vec<Result<Gray>> {
    paths.par_iter().map(|p| read_gray(p, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_reported_and_others_survive() {
        let dir = std::env::temp_dir().join(format!("boneage-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.png");
        {
            let f = std::fs::File::create(&good).unwrap();
            let mut enc = png::Encoder::new(f, 40, 30);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[9u8; 1200]).unwrap();
        }
        let paths = vec![good.clone(), dir.join("missing.png"), good];
        let p = Params {
            size: 16,
            ..Params::default()
        };
        let out = with_threads(Some(2), || {
            preprocess_files(&paths, None, &p, DecodeOptions::from(1 << 20))
        })
        .unwrap();
        assert!(out[0].is_ok() && out[2].is_ok());
        let err = out[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(with_threads(Some(0), || 1).is_err());
    }
}
