//! The one conversion from the core's [`Error`] to a Python exception, so every binding maps
//! the same failure to the same exception type and message (`?` in every function):
//!
//! | core error        | Python exception                                  | message              |
//! |-------------------|---------------------------------------------------|----------------------|
//! | `Value`           | `ValueError`                                      | the reason           |
//! | `Io` with errno   | `OSError(errno, strerror, filename)`: the subclass | `[Errno n] strerror: 'file'` |
//! |                   | errno picks (`FileNotFoundError`, `PermissionError`, `IsADirectoryError`, ...) | |
//! | `Io` without errno| `OSError`                                         | `file: reason`       |
//! | `Decode`          | `OSError`                                         | `file: reason` (or the reason alone for bytes) |
//! | `Record`          | `CorruptRecordError(OSError)` with `path`, `offset` | `file: reason at byte offset N` |
//! | `Alloc`           | `MemoryError`                                     | what could not be allocated |

use pyo3::exceptions::{PyMemoryError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

pyo3::create_exception!(
    boneage._native,
    CorruptRecordError,
    PyOSError,
    "A corrupt or truncated TFRecord record (or one that is not a tf.train.Example).\n\n\
     `path` is the file and `offset` the byte offset of the record's start (in the \
     decompressed stream for a GZIP file)."
);

/// The OS's text for an errno, as `os.strerror` gives it (Rust appends " (os error N)").
fn strerror(source: &std::io::Error, errno: i32) -> String {
    let text = source.to_string();
    match text.strip_suffix(&format!(" (os error {errno})")) {
        Some(s) => s.to_owned(),
        None => text,
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Io { path, source } => {
                let name = path.display().to_string();
                match source.raw_os_error() {
                    // OSError(errno, strerror, filename) picks the subclass (PermissionError...).
                    Some(errno) => PyOSError::new_err((errno, strerror(&source, errno), name)),
                    None => PyOSError::new_err(format!("{name}: {source}")),
                }
            }
            e @ Error::Decode { .. } => PyOSError::new_err(e.to_string()),
            Error::Record {
                path,
                offset,
                reason,
            } => {
                let name = path.display().to_string();
                let err = CorruptRecordError::new_err(format!("{name}: {reason}"));
                Python::with_gil(|py| {
                    let value = err.value(py);
                    // `path`, not OSError's `filename`: setting that would rewrite str(err) as
                    // "[Errno None] None: 'path'" and hide the reason. Setting attributes on a
                    // fresh instance cannot fail in practice; the message carries both anyway.
                    let _ = value.setattr("path", name);
                    let _ = value.setattr("offset", offset);
                });
                err
            }
            e @ Error::Alloc { .. } => PyMemoryError::new_err(e.to_string()),
        }
    }
}
