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

/// A shard file name taken apart: the inverse of [`shard_file_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardName<'a> {
    pub split: &'a str,
    pub index: usize,
    pub num_shards: usize,
    pub gzip: bool,
}

/// Parses `{split}-{index:05}-of-{num_shards:05}.tfrecord[.gz]` (exactly five ASCII digits
/// each; `split` a valid split name). `None` for any other name, hidden temporaries of an
/// unfinished writer included. The index is not checked against the count: a caller judging
/// a set of shards reports that.
pub fn parse_shard_file_name(name: &str) -> Option<ShardName<'_>> {
    let (stem, gzip) = match name.strip_suffix(".tfrecord.gz") {
        Some(stem) => (stem, true),
        None => (name.strip_suffix(".tfrecord")?, false),
    };
    // stem = split + "-" + 5 digits + "-of-" + 5 digits
    const TAIL: usize = 1 + 5 + 4 + 5;
    if stem.len() <= TAIL || !stem.is_char_boundary(stem.len() - TAIL) {
        return None;
    }
    let (split, tail) = stem.split_at(stem.len() - TAIL);
    let b = tail.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b[0] != b'-' || &b[6..10] != b"-of-" || !digits(&b[1..6]) || !digits(&b[10..15]) {
        return None;
    }
    check_split(split).ok()?;
    Some(ShardName {
        split,
        index: tail[1..6].parse().ok()?,
        num_shards: tail[10..15].parse().ok()?,
        gzip,
    })
}

/// A glob pattern matching every shard file of `split` (`"*"` for any split).
pub fn shard_glob(split: &str) -> String {
    format!("{split}-*-of-*.tfrecord*")
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

    #[test]
    fn shard_names_parse_back() {
        for (split, i, n, c) in [
            ("train", 0, 1, Compression::None),
            ("val-2", 41, 99_999, Compression::Gzip { level: 6 }),
            ("a-00001-of-00002", 3, 7, Compression::None),
            ("é", 5, 6, Compression::None),
        ] {
            let name = shard_file_name(split, i, n, c);
            let parsed = parse_shard_file_name(&name).unwrap();
            assert_eq!(
                parsed,
                ShardName {
                    split,
                    index: i,
                    num_shards: n,
                    gzip: c != Compression::None
                }
            );
        }
        for bad in [
            "train-00001-of-00002.tfrecords",
            "train-0001-of-00002.tfrecord",
            "train-00001-of-0002x.tfrecord",
            "-00001-of-00002.tfrecord",
            "train_00001-of-00002.tfrecord",
            "train-00001-of-00002.tfrecord.gz.tmp",
            ".train-00001-of-00002.tfrecord.tmp-1-0",
            "tfrecord",
            "",
        ] {
            assert_eq!(parse_shard_file_name(bad), None, "{bad:?}");
        }
        assert_eq!(shard_glob("train"), "train-*-of-*.tfrecord*");
    }
}
