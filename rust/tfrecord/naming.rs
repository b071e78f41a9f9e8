//! Which shard a case goes to, and what shard files are called.

use crate::error::{Error, Result};

// Sharding

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard (of `num_shards`) a case goes to: `fnv1a64(utf8(id)) % num_shards`.
pub fn shard_index(id: &str, num_shards: usize) -> usize {
    (fnv1a64(id.as_bytes()) % num_shards.max(1) as u64) as usize
}

/// Most shards one split may have (the index is written with five digits).
pub const MAX_SHARDS: usize = 99_999;

/// Shard compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// One gzip member, deflate level 0..=9.
    Gzip {
        level: u32,
    },
}

impl Compression {
    /// Default gzip level (zlib's default, as TensorFlow uses).
    pub const GZIP_DEFAULT_LEVEL: u32 = 6;
}

/// The final file name of shard `index` of `num_shards`.
pub fn shard_file_name(
    split: &str,
    index: usize,
    num_shards: usize,
    compression: Compression,
) -> String {
    let ext = match compression {
        Compression::None => "tfrecord",
        Compression::Gzip { .. } => "tfrecord.gz",
    };
    format!("{split}-{index:05}-of-{num_shards:05}.{ext}")
}

/// Checks a split name: it becomes part of file names.
pub fn check_split(split: &str) -> Result<()> {
    if split.is_empty() {
        return Err(Error::value("split must be a non-empty name"));
    }
    if split == "." || split == ".." || split.contains(['/', '\\', '\0']) {
        return Err(Error::value(format!(
            "split {split:?} must be a plain name (no path separators), it becomes part of file names"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_answers() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_index("a", 1), 0);
        assert_eq!(shard_index("a", 7), (0xaf63_dc4c_8601_ec8cu64 % 7) as usize);
    }

    #[test]
    fn names_and_split_checks() {
        assert_eq!(
            shard_file_name("train", 3, 16, Compression::None),
            "train-00003-of-00016.tfrecord"
        );
        assert_eq!(
            shard_file_name("val", 0, 1, Compression::Gzip { level: 6 }),
            "val-00000-of-00001.tfrecord.gz"
        );
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(check_split(bad).is_err(), "{bad:?}");
        }
    }
}
