//! One error type for the whole native core.
//!
//! Every failure is a value, never a panic. The bindings (`python/errors.rs`) map each variant
//! to one Python exception type, the same way in every function: `Value` -> `ValueError`,
//! `Io` -> `OSError` (errno picks the subclass, e.g. `FileNotFoundError`), `Decode` ->
//! `OSError`, `Record` -> `CorruptRecordError(OSError)`, `Alloc` -> `MemoryError`. Each
//! message names the file (when there is one) and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument: wrong shape, empty image, parameter out of range, or a derived buffer
    /// over its limit.
    #[error("{0}")]
    Value(String),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that do not decode as a supported image. `path` is the file they came from, or
    /// `None` for bytes handed over in memory.
    #[error("{}", DecodeMessage(path.as_deref(), reason))]
    Decode {
        path: Option<PathBuf>,
        reason: String,
    },
    /// A corrupt or truncated record inside a record file (TFRecord). `offset` is the byte
    /// offset of the record's start (in the decompressed stream for a GZIP file); `reason`
    /// already names the offset, so the message reads on its own.
    #[error("{path}: {reason}")]
    Record {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A buffer could not be allocated (the allocator refused `bytes` bytes for `what`).
    #[error("cannot allocate {bytes} bytes for {what}")]
    Alloc { what: &'static str, bytes: usize },
}

/// "{path}: {reason}" for a file, the reason alone for in-memory bytes.
struct DecodeMessage<'a>(Option<&'a Path>, &'a str);

impl fmt::Display for DecodeMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: {}", path.display(), self.1),
            None => f.write_str(self.1),
        }
    }
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

    /// A decode error on in-memory bytes (no file yet; see [`Error::with_path`]).
    pub fn decode(reason: impl Into<String>) -> Self {
        Error::Decode {
            path: None,
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

    /// Names the file a decode error came from; a bad argument found while working on a
    /// file's pixels (e.g. a crop outside the decoded image) becomes a decode error of that
    /// file, so batch results name it. Other errors already carry their path.
    pub fn with_path(self, path: &Path) -> Self {
        match self {
            Error::Decode { reason, .. } | Error::Value(reason) => Error::Decode {
                path: Some(path.to_path_buf()),
                reason,
            },
            other => other,
        }
    }
}

/// A vector of `n` copies of `value`, or [`Error::Alloc`] when the allocator refuses (never an
/// abort). Every buffer whose size depends on the input is made with this.
pub fn try_filled<T: Clone>(n: usize, value: T, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Alloc {
        what,
        bytes: n.saturating_mul(std::mem::size_of::<T>()),
    })?;
    v.resize(n, value);
    Ok(v)
}

/// An empty vector with room for `n` items, or [`Error::Alloc`].
pub fn try_with_capacity<T>(n: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Alloc {
        what,
        bytes: n.saturating_mul(std::mem::size_of::<T>()),
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_messages_read_naturally_with_and_without_a_file() {
        let e = Error::decode("not a PNG or JPEG image");
        assert_eq!(e.to_string(), "not a PNG or JPEG image");
        let e = e.with_path(Path::new("/x/a.png"));
        assert_eq!(e.to_string(), "/x/a.png: not a PNG or JPEG image");
        assert!(matches!(e, Error::Decode { path: Some(_), .. }));
    }

    #[test]
    fn refused_allocation_is_an_error() {
        let err = try_filled::<u64>(usize::MAX / 4, 0, "test buffer").unwrap_err();
        assert!(matches!(err, Error::Alloc { .. }), "{err}");
        assert!(err.to_string().contains("test buffer"));
        assert_eq!(try_filled(3, 7u8, "x").unwrap(), vec![7, 7, 7]);
    }
}
