//! One error type for the whole native core.
//!
//! Every failure is a value, never a panic: the bindings map `Error::Value` to Python's
//! `ValueError` and `Error::Io` / `Error::Decode` / `Error::Record` to `OSError` (or a
//! subclass), each carrying the path (when there is one) and the reason.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument: wrong shape, empty image, parameter out of range.
    #[error("{0}")]
    Value(String),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that do not decode as a supported image (or a corrupt record).
    #[error("{what}: {reason}")]
    Decode { what: String, reason: String },
    /// A corrupt or truncated record inside a record file (TFRecord). `offset` is the byte
    /// offset of the record's start (in the decompressed stream for a GZIP file); `reason`
    /// already names the offset, so the message reads on its own.
    #[error("{path}: {reason}")]
    Record {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn decode(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Decode {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn record(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Error::Record {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// Re-labels a decode error that was raised on anonymous bytes with the file it came from.
    pub fn with_path(self, path: &Path) -> Self {
        match self {
            Error::Decode { reason, .. } => Error::Decode {
                what: path.display().to_string(),
                reason,
            },
            other => other,
        }
    }
}
