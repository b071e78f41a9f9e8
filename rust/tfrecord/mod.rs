//! TFRecord files of `tf.train.Example` records: written in shards, read back with every
//! checksum verified. Pure Rust; the Python bindings live in `python/tfrecord/`.
//!
//! # Framing
//! A record is `u64le length`, `u32le masked_crc32c(length bytes)`, `data`,
//! `u32le masked_crc32c(data)`, where `mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`
//! (wrapping) and CRC32C is Castagnoli. A GZIP file is the same byte stream, deflated in one
//! gzip member (what `tf.io.TFRecordWriter(..., "GZIP")` writes and
//! `tf.data.TFRecordDataset(compression_type="GZIP")` reads).
//!
//! # `tf.train.Example`
//! Hand-encoded protobuf, byte-for-byte what `tf.train.Example.SerializeToString(
//! deterministic=True)` gives in Python: `Example { Features features = 1 }`,
//! `Features { map<string, Feature> feature = 1 }` (each entry a message `key = 1, value = 2`,
//! keys in sorted order, except that upb puts a key before its own prefixes: see
//! [`map_key_order`]), `Feature` a oneof of
//! `bytes_list = 1`, `float_list = 2` (packed little-endian `fixed32`) and `int64_list = 3`
//! (packed varints; a negative value takes 10 bytes); each list holds `repeated value = 1`.
//! The decoder is lenient where protobuf is (unknown fields skipped, unpacked lists accepted,
//! a repeated map key keeps its last value).
//!
//! # Shards
//! Shard `i` of `n` for split `s` is `{s}-{i:05}-of-{n:05}.tfrecord` (`.tfrecord.gz` when
//! compressed). A case goes to shard `fnv1a64(utf8(id)) % n` (64-bit FNV-1a, offset basis
//! `0xcbf29ce484222325`, prime `0x100000001b3`), so every run and every worker agrees. Each
//! shard is written to a hidden temporary (`.{name}.tmp-{pid}-{k}`) in the same directory and
//! renamed to its final name only by [`ShardWriter::finish`], after it was flushed and
//! `fsync`ed; dropping an unfinished writer removes its temporaries. A crash therefore never
//! leaves a truncated file under a final shard name.
//!
//! # Layout
//! - [`framing`] holds the length + masked CRC32C records and gzip detection,
//! - [`example`] the `tf.train.Example` codec,
//! - [`naming`] shard assignment and shard file names,
//! - [`writer`] the [`ShardWriter`],
//! - [`reader`] the [`RecordReader`], [`count_records`] and the [`MultiReader`].

pub mod example;
pub mod framing;
pub mod naming;
pub mod reader;
pub mod writer;

pub use example::*;
pub use framing::*;
pub use naming::*;
pub use reader::*;
pub use writer::*;

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "boneage-tfrecord-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn case(id: &str, h: usize, w: usize) -> Example {
        let image: Vec<u8> = (0..h * w).map(|i| (i * 31 + id.len()) as u8).collect();
        Example::new()
            .with("image", Feature::Bytes(vec![image]))
            .with("height", Feature::Int64(vec![h as i64]))
            .with("width", Feature::Int64(vec![w as i64]))
            .with("id", Feature::Bytes(vec![id.as_bytes().to_vec()]))
            .with("male", Feature::Int64(vec![1]))
            .with("age", Feature::Float(vec![120.5]))
    }

    pub fn write_cases(
        dir: &Path,
        n: usize,
        compression: Compression,
        ids: &[&str],
    ) -> Vec<ShardSummary> {
        let w = ShardWriter::create(dir, "train", n, compression, None).unwrap();
        for id in ids {
            w.write_example(id, &case(id, 5, 7)).unwrap();
        }
        w.finish().unwrap()
    }

    pub fn read_all(path: &Path) -> Vec<Record> {
        let mut r = RecordReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }
}
