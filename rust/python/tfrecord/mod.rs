//! Python bindings for [`crate::tfrecord`]: `ShardWriter`, `read_records`, `read_examples`,
//! `encode_example`, `decode_example`, `shard_index` and `CorruptRecordError`.
//!
//! Arguments are checked and copied out of Python objects while the GIL is held; encoding,
//! checksums, compression and file I/O run with the GIL released. Errors map to `ValueError`
//! (bad arguments, use after close), `OSError` with errno and file name (I/O; Python picks the
//! subclass, e.g. `PermissionError`) and `CorruptRecordError(OSError)` with `path` and
//! `offset` attributes (corrupt or truncated records).
//!
//! # Layout
//! One concern per module, as in the core's [`crate::tfrecord`]:
//! - [`example`]: Python values <-> `tf.train.Example`, `encode_example`, `decode_example`,
//! - [`naming`]: `shard_index`, `shard_name`, `parse_shard_name`, `shard_glob`,
//!   `is_gzip_file`,
//! - [`writer`]: the `ShardWriter` class,
//! - [`reader`]: the `RecordReader` and `ExampleReader` iterators, `read_records`,
//!   `read_examples`, `count_records`.

pub(super) mod example;
pub(super) mod naming;
pub(super) mod reader;
pub(super) mod writer;
