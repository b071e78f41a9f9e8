//! TFRecord files of `tf.train.Example` records: written in shards, read back with every
//! checksum verified. Pure Rust; the Python bindings live in `py_tfrecord.rs`.
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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use rayon::prelude::*;

use crate::error::{Error, Result};

// ------------------------------------------------------------------------------------------
// Framing

const MASK_DELTA: u32 = 0xa282_ead8;
/// Bytes before a record's data: the length and its checksum.
pub const HEADER_LEN: usize = 12;
/// Bytes after a record's data: its checksum.
pub const FOOTER_LEN: usize = 4;

/// TensorFlow's checksum mask (`tensorflow/core/lib/hash/crc32c.h`).
#[inline]
pub fn mask(crc: u32) -> u32 {
    // ((crc >> 15) | (crc << 17)) + delta
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The masked CRC32C TFRecord stores for `data`.
#[inline]
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask(crc32c::crc32c(data))
}

/// Appends one framed record holding `data` to `out`.
pub fn frame_into(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.reserve(HEADER_LEN + data.len() + FOOTER_LEN);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// One framed record holding `data`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(&mut out, data);
    out
}

// ------------------------------------------------------------------------------------------
// tf.train.Example

/// One `tf.train.Feature`: a list of bytes, floats or int64s.
#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    Bytes(Vec<Vec<u8>>),
    Float(Vec<f32>),
    Int64(Vec<i64>),
}

/// A `tf.train.Example`: named features (serialised in [`map_key_order`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Example {
    pub features: BTreeMap<String, Feature>,
}

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a length-delimited field (one-byte tag, length, payload).
#[inline]
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

#[inline]
fn put_field_header(out: &mut Vec<u8>, tag: u8, payload: usize) {
    out.push(tag);
    put_varint(out, payload as u64);
}

/// Where an encoding goes: all into one buffer, or (for writing) with large byte values left
/// where they lie, to be written from there without another copy.
trait Out<'a> {
    fn buf(&mut self) -> &mut Vec<u8>;
    fn value(&mut self, bytes: &'a [u8]);
}

impl<'a> Out<'a> for Vec<u8> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }

    fn value(&mut self, bytes: &'a [u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Values at least this large are written from their own memory, not copied.
const BIG_VALUE: usize = 16 << 10;

/// The small bytes of an encoding, and the large values that belong at given offsets in it.
struct Holes<'a, 'b> {
    small: &'b mut Vec<u8>,
    holes: &'b mut Vec<(usize, &'a [u8])>,
}

impl<'a> Out<'a> for Holes<'a, '_> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self.small
    }

    fn value(&mut self, bytes: &'a [u8]) {
        if bytes.len() >= BIG_VALUE {
            self.holes.push((self.small.len(), bytes));
        } else {
            self.small.extend_from_slice(bytes);
        }
    }
}

// Tags: field number << 3 | wire type 2 (length-delimited).
const TAG_1: u8 = 0x0a;
const TAG_2: u8 = 0x12;
const TAG_3: u8 = 0x1a;

/// The order in which protobuf's deterministic serialisation writes string map keys, as the
/// `upb` runtime of Python protobuf 4.x (what `tf.train.Example.SerializeToString(
/// deterministic=True)` uses) does it: byte-wise on the common prefix, and when one key is a
/// prefix of the other, the *longer* key first (so `"height"` precedes `"h"`, and `""` comes
/// last). It differs from plain sorted order (protobuf C++) only for such prefix pairs.
pub fn map_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    a.as_bytes()[..n]
        .cmp(&b.as_bytes()[..n])
        .then_with(|| b.len().cmp(&a.len()))
}

/// A borrowed view of a feature's values: what the encoder works on, so a large value (the
/// pixels) can be encoded straight from where it lies.
#[derive(Clone, Copy, Debug)]
pub enum FeatureRef<'a> {
    Bytes(&'a [Vec<u8>]),
    /// A bytes list of exactly one value.
    OneBytes(&'a [u8]),
    Float(&'a [f32]),
    Int64(&'a [i64]),
}

fn int64_payload(values: &[i64]) -> usize {
    values.iter().map(|&v| varint_len(v as u64)).sum()
}

impl<'a> FeatureRef<'a> {
    /// Size of the inner `BytesList` / `FloatList` / `Int64List` message.
    fn list_len(&self) -> usize {
        match *self {
            FeatureRef::Bytes(v) => v.iter().map(|b| field_len(b.len())).sum(),
            FeatureRef::OneBytes(b) => field_len(b.len()),
            // An empty packed field is not written at all.
            FeatureRef::Float([]) => 0,
            FeatureRef::Float(v) => field_len(4 * v.len()),
            FeatureRef::Int64([]) => 0,
            FeatureRef::Int64(v) => field_len(int64_payload(v)),
        }
    }

    /// Size of the serialised `Feature` message.
    pub fn encoded_len(&self) -> usize {
        field_len(self.list_len())
    }

    /// Appends the serialised `Feature` message.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_to(out)
    }

    fn encode_to<O: Out<'a>>(&self, out: &mut O) {
        let tag = match self {
            FeatureRef::Bytes(_) | FeatureRef::OneBytes(_) => TAG_1,
            FeatureRef::Float(_) => TAG_2,
            FeatureRef::Int64(_) => TAG_3,
        };
        put_field_header(out.buf(), tag, self.list_len());
        match *self {
            FeatureRef::Bytes(values) => {
                for b in values {
                    put_field_header(out.buf(), TAG_1, b.len());
                    out.value(b);
                }
            }
            FeatureRef::OneBytes(b) => {
                put_field_header(out.buf(), TAG_1, b.len());
                out.value(b);
            }
            FeatureRef::Float(values) if !values.is_empty() => {
                let out = out.buf();
                put_field_header(out, TAG_1, 4 * values.len());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            FeatureRef::Int64(values) if !values.is_empty() => {
                let out = out.buf();
                put_field_header(out, TAG_1, int64_payload(values));
                for &v in values {
                    put_varint(out, v as u64);
                }
            }
            _ => {}
        }
    }
}

impl Feature {
    pub fn as_ref(&self) -> FeatureRef<'_> {
        match self {
            Feature::Bytes(v) => FeatureRef::Bytes(v),
            Feature::Float(v) => FeatureRef::Float(v),
            Feature::Int64(v) => FeatureRef::Int64(v),
        }
    }

    /// Size of the serialised `Feature` message.
    pub fn encoded_len(&self) -> usize {
        self.as_ref().encoded_len()
    }

    /// Appends the serialised `Feature` message.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.as_ref().encode_into(out)
    }
}

/// Serialised `Features`-in-`Example` of `entries`, which must be sorted by key and unique.
struct Encoder<'a> {
    entries: Vec<(&'a str, FeatureRef<'a>)>,
}

impl<'a> Encoder<'a> {
    fn entry_len(key: &str, feature: &FeatureRef<'_>) -> usize {
        field_len(key.len()) + field_len(feature.encoded_len())
    }

    fn features_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, f)| field_len(Self::entry_len(k, f)))
            .sum()
    }

    fn encoded_len(&self) -> usize {
        field_len(self.features_len())
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.encode_to(out)
    }

    fn encode_to<O: Out<'a>>(&self, out: &mut O) {
        put_field_header(out.buf(), TAG_1, self.features_len());
        for (key, feature) in &self.entries {
            let buf = out.buf();
            put_field_header(buf, TAG_1, Self::entry_len(key, feature));
            put_field_header(buf, TAG_1, key.len());
            buf.extend_from_slice(key.as_bytes());
            put_field_header(buf, TAG_2, feature.encoded_len());
            feature.encode_to(out);
        }
    }

    fn encode_record_into(&self, out: &mut Vec<u8>) {
        let n = self.encoded_len();
        out.reserve(HEADER_LEN + n + FOOTER_LEN);
        let len = (n as u64).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        let start = out.len();
        self.encode_into(out);
        debug_assert_eq!(out.len() - start, n);
        let crc = masked_crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// The framed record as `small` bytes plus large values that belong at offsets in it
    /// (`holes`, ascending): writing `small[..o1]`, `v1`, `small[o1..o2]`, `v2`, ..., the rest
    /// gives exactly [`encode_record_into`](Self::encode_record_into)'s bytes.
    fn encode_record_pieces(&self, small: &mut Vec<u8>, holes: &mut Vec<(usize, &'a [u8])>) {
        let n = self.encoded_len();
        let len = (n as u64).to_le_bytes();
        small.extend_from_slice(&len);
        small.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        let start = small.len();
        self.encode_to(&mut Holes { small, holes });
        let mut crc = 0;
        let mut pos = start;
        for &(at, value) in holes.iter() {
            crc = crc32c::crc32c_append(crc, &small[pos..at]);
            crc = crc32c::crc32c_append(crc, value);
            pos = at;
        }
        crc = crc32c::crc32c_append(crc, &small[pos..]);
        small.extend_from_slice(&mask(crc).to_le_bytes());
    }
}

impl Example {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a feature (replacing one of the same name); returns `self` for chaining.
    pub fn with(mut self, key: &str, feature: Feature) -> Self {
        self.features.insert(key.to_owned(), feature);
        self
    }

    /// The entries to encode, in key order; `extra` (a one-value bytes feature held
    /// elsewhere) is merged in, replacing a feature of the same name.
    fn encoder<'a>(&'a self, extra: Option<(&'a str, &'a [u8])>) -> Encoder<'a> {
        let mut entries = Vec::with_capacity(self.features.len() + 1);
        let mut pending = extra;
        for (k, f) in &self.features {
            if let Some((ek, ev)) = pending {
                if ek <= k.as_str() {
                    entries.push((ek, FeatureRef::OneBytes(ev)));
                    pending = None;
                    if ek == k.as_str() {
                        continue;
                    }
                }
            }
            entries.push((k.as_str(), f.as_ref()));
        }
        if let Some((ek, ev)) = pending {
            entries.push((ek, FeatureRef::OneBytes(ev)));
        }
        // Plain sorted order except where a key is a prefix of another (rare; stable sort).
        entries.sort_by(|a, b| map_key_order(a.0, b.0));
        Encoder { entries }
    }

    /// Size of the serialised `Example`.
    pub fn encoded_len(&self) -> usize {
        self.encoder(None).encoded_len()
    }

    /// Appends the serialised `Example`, keys in [`map_key_order`] (byte-for-byte what
    /// `SerializeToString(deterministic=True)` gives in Python).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encoder(None).encode_into(out)
    }

    /// The serialised `Example`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends this example as one framed TFRecord record (serialised in place: the values
    /// are copied once).
    pub fn encode_record_into(&self, out: &mut Vec<u8>) {
        self.encoder(None).encode_record_into(out)
    }

    /// Like [`encode_record_into`](Self::encode_record_into) for this example plus a one-value
    /// bytes feature `key` = `value` that lives elsewhere (e.g. pixels in a shared buffer).
    pub fn encode_record_with_into(&self, key: &str, value: &[u8], out: &mut Vec<u8>) {
        self.encoder(Some((key, value))).encode_record_into(out)
    }

    /// This example as one framed TFRecord record.
    pub fn encode_record(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_record_into(&mut out);
        out
    }

    /// Parses a serialised `tf.train.Example`. The error is the reason, without context.
    pub fn decode(data: &[u8]) -> std::result::Result<Example, String> {
        let mut ex = Example::new();
        let mut pb = Pb::new(data);
        while !pb.done() {
            match pb.key()? {
                (1, 2) => decode_features(pb.bytes()?, &mut ex.features)?,
                (_, wt) => pb.skip(wt)?,
            }
        }
        Ok(ex)
    }

    /// The single int64 value of a feature, if it holds exactly one.
    pub fn int64(&self, key: &str) -> Option<i64> {
        match self.features.get(key) {
            Some(Feature::Int64(v)) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }
}

/// A protobuf wire-format cursor.
struct Pb<'a> {
    buf: &'a [u8],
    pos: usize,
}

type PbResult<T> = std::result::Result<T, String>;

impl<'a> Pb<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Pb { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> PbResult<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn key(&mut self) -> PbResult<(u64, u8)> {
        let k = self.varint()?;
        if k >> 3 == 0 {
            return Err("field number 0".into());
        }
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> PbResult<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(format!(
                "a field of {n} bytes overruns its message ({} bytes left)",
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn bytes(&mut self) -> PbResult<&'a [u8]> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| format!("field length {n} out of range"))?;
        self.take(n)
    }

    fn skip(&mut self, wire_type: u8) -> PbResult<()> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            wt => Err(format!("unsupported wire type {wt}")),
        }
    }
}

fn decode_features(buf: &[u8], into: &mut BTreeMap<String, Feature>) -> PbResult<()> {
    let mut pb = Pb::new(buf);
    while !pb.done() {
        match pb.key()? {
            (1, 2) => {
                let mut entry = Pb::new(pb.bytes()?);
                let mut key = String::new();
                let mut value = None;
                while !entry.done() {
                    match entry.key()? {
                        (1, 2) => {
                            key = std::str::from_utf8(entry.bytes()?)
                                .map_err(|_| "a feature name is not valid UTF-8".to_string())?
                                .to_owned();
                        }
                        (2, 2) => value = decode_feature(entry.bytes()?)?,
                        (_, wt) => entry.skip(wt)?,
                    }
                }
                // An entry without a value (a `Feature` with no list set) carries nothing.
                if let Some(v) = value {
                    into.insert(key, v);
                }
            }
            (_, wt) => pb.skip(wt)?,
        }
    }
    Ok(())
}

fn decode_feature(buf: &[u8]) -> PbResult<Option<Feature>> {
    let mut pb = Pb::new(buf);
    let mut out: Option<Feature> = None;
    while !pb.done() {
        match pb.key()? {
            (1, 2) => {
                let mut values = match out.take() {
                    Some(Feature::Bytes(v)) => v,
                    _ => Vec::new(),
                };
                let mut list = Pb::new(pb.bytes()?);
                while !list.done() {
                    match list.key()? {
                        (1, 2) => values.push(list.bytes()?.to_vec()),
                        (_, wt) => list.skip(wt)?,
                    }
                }
                out = Some(Feature::Bytes(values));
            }
            (2, 2) => {
                let mut values = match out.take() {
                    Some(Feature::Float(v)) => v,
                    _ => Vec::new(),
                };
                let mut list = Pb::new(pb.bytes()?);
                while !list.done() {
                    match list.key()? {
                        (1, 2) => {
                            let packed = list.bytes()?;
                            if packed.len() % 4 != 0 {
                                return Err("packed float list is not a multiple of 4 bytes".into());
                            }
                            values.extend(
                                packed
                                    .chunks_exact(4)
                                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                            );
                        }
                        (1, 5) => {
                            let c = list.take(4)?;
                            values.push(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                        }
                        (_, wt) => list.skip(wt)?,
                    }
                }
                out = Some(Feature::Float(values));
            }
            (3, 2) => {
                let mut values = match out.take() {
                    Some(Feature::Int64(v)) => v,
                    _ => Vec::new(),
                };
                let mut list = Pb::new(pb.bytes()?);
                while !list.done() {
                    match list.key()? {
                        (1, 2) => {
                            let mut packed = Pb::new(list.bytes()?);
                            while !packed.done() {
                                values.push(packed.varint()? as i64);
                            }
                        }
                        (1, 0) => values.push(list.varint()? as i64),
                        (_, wt) => list.skip(wt)?,
                    }
                }
                out = Some(Feature::Int64(values));
            }
            (_, wt) => pb.skip(wt)?,
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
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

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Sink {
    /// Flushes everything (the gzip trailer too) and hands back the file.
    fn finish(self) -> io::Result<File> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// Write buffer per shard. A record at least this large (a 256x256 image is 64 KiB + ~60
/// bytes) bypasses it and goes to the file in one write, saving a copy; smaller ones are
/// gathered. Small also means few fresh pages to fault in per writer.
const WRITE_BUFFER: usize = 64 << 10;

struct Shard {
    index: usize,
    final_path: PathBuf,
    temp_path: PathBuf,
    sink: Option<Sink>,
    records: u64,
    /// Uncompressed bytes written.
    raw_bytes: u64,
    /// Set when a write failed: the temporary holds a partial record and is never published.
    failed: Option<String>,
    published: bool,
    /// Reused encoding buffer (no allocation, no fresh pages per record).
    scratch: Vec<u8>,
}

impl Shard {
    fn write(&mut self, record: &[u8]) -> Result<()> {
        self.write_pieces(&[record])
    }

    /// Appends one record given as consecutive pieces.
    fn write_pieces(&mut self, pieces: &[&[u8]]) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::io(
                &self.final_path,
                io::Error::other(format!("an earlier write to this shard failed: {reason}")),
            ));
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err(Error::value("write to a finished shard"));
        };
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        let result = match sink {
            Sink::Plain(w) => write_all_vectored(w, pieces),
            Sink::Gzip(w) => pieces.iter().try_for_each(|p| w.write_all(p)),
        };
        if let Err(e) = result {
            self.failed = Some(e.to_string());
            self.sink = None;
            return Err(Error::io(&self.temp_path, e));
        }
        self.records += 1;
        self.raw_bytes += len;
        Ok(())
    }

    /// Encodes a record (small parts into the reused scratch buffer, large values left in
    /// place) and appends it.
    fn write_encoded(&mut self, encoder: &Encoder<'_>) -> Result<()> {
        let mut small = std::mem::take(&mut self.scratch);
        small.clear();
        let mut holes = Vec::new();
        encoder.encode_record_pieces(&mut small, &mut holes);
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * holes.len() + 1);
        let mut pos = 0;
        for &(at, value) in &holes {
            pieces.push(&small[pos..at]);
            pieces.push(value);
            pos = at;
        }
        pieces.push(&small[pos..]);
        let result = self.write_pieces(&pieces);
        self.scratch = small;
        result
    }
}

/// `write_all` for several buffers, with as few (vectored) writes as the writer allows.
fn write_all_vectored(w: &mut impl Write, pieces: &[&[u8]]) -> io::Result<()> {
    let (mut idx, mut off) = (0, 0);
    while idx < pieces.len() {
        if off == pieces[idx].len() {
            idx += 1;
            off = 0;
            continue;
        }
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(&pieces[idx][off..])
            .chain(pieces[idx + 1..].iter().copied())
            .map(io::IoSlice::new)
            .collect();
        let mut n = match w.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && idx < pieces.len() {
            let rest = pieces[idx].len() - off;
            if n >= rest {
                n -= rest;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

impl Drop for Shard {
    fn drop(&mut self) {
        if !self.published {
            drop(self.sink.take());
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// What a finished shard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSummary {
    pub index: usize,
    pub path: PathBuf,
    pub records: u64,
    /// Bytes on disk (compressed size for GZIP).
    pub bytes: u64,
    /// Bytes of framed records before compression.
    pub raw_bytes: u64,
}

/// Writes one split as `num_shards` TFRecord files (or the subset of them this writer owns).
///
/// `write_*` take `&self` and lock only the shard they append to, so several threads may
/// write at once. Nothing appears under a final name until [`ShardWriter::finish`]; dropping
/// the writer without finishing removes its temporaries.
pub struct ShardWriter {
    directory: PathBuf,
    split: String,
    num_shards: usize,
    compression: Compression,
    shards: Vec<Mutex<Shard>>,
    /// Shard index -> position in `shards` (None: owned by another writer).
    slot: Vec<Option<usize>>,
    /// fsync each shard before its rename, and the directory after (default true).
    fsync: bool,
}

fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a half-written record that we would publish
    // (a failed write marks the shard), so a poisoned lock is safe to recover.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ShardWriter {
    /// Creates the directory if needed and one temporary file per owned shard.
    ///
    /// `only`: the shard indices this writer owns (all when `None`). Parallel workers can
    /// each own a disjoint subset; writing a case that hashes to a shard this writer does not
    /// own is an error.
    pub fn create(
        directory: &Path,
        split: &str,
        num_shards: usize,
        compression: Compression,
        only: Option<&[usize]>,
    ) -> Result<Self> {
        check_split(split)?;
        if num_shards == 0 || num_shards > MAX_SHARDS {
            return Err(Error::value(format!(
                "num_shards must be between 1 and {MAX_SHARDS}, got {num_shards}"
            )));
        }
        if let Compression::Gzip { level } = compression {
            if level > 9 {
                return Err(Error::value(format!(
                    "compression level must be between 0 and 9, got {level}"
                )));
            }
        }
        let mut owned: Vec<usize> = match only {
            None => (0..num_shards).collect(),
            Some(list) => {
                if let Some(&bad) = list.iter().find(|&&i| i >= num_shards) {
                    return Err(Error::value(format!(
                        "shard index {bad} out of range for num_shards={num_shards}"
                    )));
                }
                list.to_vec()
            }
        };
        owned.sort_unstable();
        owned.dedup();
        if owned.is_empty() {
            return Err(Error::value("shards must name at least one shard index"));
        }

        fs::create_dir_all(directory).map_err(|e| Error::io(directory, e))?;
        let pid = std::process::id();
        let mut shards = Vec::with_capacity(owned.len());
        let mut slot = vec![None; num_shards];
        for index in owned {
            let name = shard_file_name(split, index, num_shards, compression);
            let final_path = directory.join(&name);
            let (temp_path, file) = create_temp(directory, &name, pid)?;
            let buffered = BufWriter::with_capacity(WRITE_BUFFER, file);
            let sink = match compression {
                Compression::None => Sink::Plain(buffered),
                Compression::Gzip { level } => {
                    Sink::Gzip(GzEncoder::new(buffered, flate2::Compression::new(level)))
                }
            };
            slot[index] = Some(shards.len());
            shards.push(Mutex::new(Shard {
                index,
                final_path,
                temp_path,
                sink: Some(sink),
                records: 0,
                raw_bytes: 0,
                failed: None,
                published: false,
                scratch: Vec::new(),
            }));
        }
        Ok(ShardWriter {
            directory: directory.to_path_buf(),
            split: split.to_owned(),
            num_shards,
            compression,
            shards,
            slot,
            fsync: true,
        })
    }

    /// Whether [`finish`](Self::finish) fsyncs the shards and the directory (default true).
    /// Without it, renaming still guarantees that a crashed *process* leaves no partial file
    /// under a final name, but after a power loss or OS crash a published shard may be empty
    /// or short. Turn it off only for scratch data.
    pub fn set_fsync(&mut self, on: bool) {
        self.fsync = on;
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn split(&self) -> &str {
        &self.split
    }

    pub fn num_shards(&self) -> usize {
        self.num_shards
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The shard indices this writer owns, ascending.
    pub fn owned_shards(&self) -> Vec<usize> {
        self.shards.iter().map(|s| lock(s).index).collect()
    }

    /// The final paths of the owned shards, ascending by index.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.shards
            .iter()
            .map(|s| lock(s).final_path.clone())
            .collect()
    }

    /// The shard a case id goes to.
    pub fn shard_for(&self, id: &str) -> usize {
        shard_index(id, self.num_shards)
    }

    fn slot_for(&self, id: &str) -> Result<usize> {
        let shard = self.shard_for(id);
        self.slot[shard].ok_or_else(|| {
            Error::value(format!(
                "case {id:?} belongs to shard {shard}, which this writer does not own \
                 (it owns {:?})",
                self.owned_shards()
            ))
        })
    }

    /// Checks that every id goes to a shard this writer owns.
    pub fn check_ids<'a>(&self, mut ids: impl Iterator<Item = &'a str>) -> Result<()> {
        ids.try_for_each(|id| self.slot_for(id).map(drop))
    }

    /// Appends an already framed record to shard `shard`.
    pub fn write_framed(&self, shard: usize, record: &[u8]) -> Result<()> {
        let slot =
            self.slot.get(shard).copied().flatten().ok_or_else(|| {
                Error::value(format!("shard {shard} is not one this writer owns"))
            })?;
        lock(&self.shards[slot]).write(record)
    }

    /// Encodes `example` and appends it to the shard of `id`; returns the shard index.
    pub fn write_example(&self, id: &str, example: &Example) -> Result<usize> {
        let slot = self.slot_for(id)?;
        let mut shard = lock(&self.shards[slot]);
        shard.write_encoded(&example.encoder(None))?;
        Ok(shard.index)
    }

    /// Writes many cases; each shard appends its cases in the given order (with GZIP, shards
    /// compress in parallel). Every id is checked before anything is written.
    /// Returns the shard of each case.
    pub fn write_batch(&self, items: &[(String, Example)]) -> Result<Vec<usize>> {
        self.write_batch_impl(items.iter().map(|(id, ex)| (id.as_str(), ex.encoder(None))))
    }

    /// Like [`write_batch`](Self::write_batch) for examples that lack a one-value bytes
    /// feature `key`, whose values (e.g. the pixels, copied once into a shared buffer) are
    /// given alongside: `(id, example, value)`.
    pub fn write_batch_with(
        &self,
        key: &str,
        items: &[(String, Example, &[u8])],
    ) -> Result<Vec<usize>> {
        self.write_batch_impl(
            items
                .iter()
                .map(|(id, ex, value)| (id.as_str(), ex.encoder(Some((key, *value))))),
        )
    }

    fn write_batch_impl<'a>(
        &self,
        items: impl Iterator<Item = (&'a str, Encoder<'a>)>,
    ) -> Result<Vec<usize>> {
        let mut slots = Vec::new();
        let mut groups: Vec<Vec<Encoder<'a>>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (id, encoder) in items {
            let slot = self.slot_for(id)?;
            slots.push(slot);
            groups[slot].push(encoder);
        }
        let write_group = |(shard, group): (&Mutex<Shard>, Vec<Encoder<'a>>)| -> Result<()> {
            let mut shard = lock(shard);
            group.iter().try_for_each(|e| shard.write_encoded(e))
        };
        let jobs = self
            .shards
            .iter()
            .zip(groups)
            .filter(|(_, g)| !g.is_empty());
        match self.compression {
            // Compression is CPU work: shards compress in parallel.
            Compression::Gzip { .. } => jobs.par_bridge().try_for_each(write_group)?,
            // Plain writes are copies into the page cache: threads only add overhead.
            Compression::None => jobs.into_iter().try_for_each(write_group)?,
        }
        Ok(slots.iter().map(|&s| lock(&self.shards[s]).index).collect())
    }

    /// Records written so far (all owned shards).
    pub fn records(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).records).sum()
    }

    /// Flushes and `fsync`s every shard, then renames each to its final name and syncs the
    /// directory (the syncs can be turned off with [`set_fsync`](Self::set_fsync)). If any shard fails to flush, none is published (and all temporaries are
    /// removed when `self` drops).
    pub fn finish(self) -> Result<Vec<ShardSummary>> {
        let mut shards: Vec<Shard> = self
            .shards
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut summaries = Vec::with_capacity(shards.len());
        for shard in &mut shards {
            if let Some(reason) = &shard.failed {
                return Err(Error::io(
                    &shard.final_path,
                    io::Error::other(format!("a write to this shard failed: {reason}")),
                ));
            }
            let sink = shard
                .sink
                .take()
                .ok_or_else(|| Error::value("shard already finished"))?;
            let file = sink.finish().map_err(|e| Error::io(&shard.temp_path, e))?;
            if self.fsync {
                file.sync_all()
                    .map_err(|e| Error::io(&shard.temp_path, e))?;
            }
            let bytes = file
                .metadata()
                .map_err(|e| Error::io(&shard.temp_path, e))?
                .len();
            drop(file);
            summaries.push(ShardSummary {
                index: shard.index,
                path: shard.final_path.clone(),
                records: shard.records,
                bytes,
                raw_bytes: shard.raw_bytes,
            });
        }
        for shard in &mut shards {
            fs::rename(&shard.temp_path, &shard.final_path)
                .map_err(|e| Error::io(&shard.final_path, e))?;
            shard.published = true;
        }
        if self.fsync {
            sync_dir(&self.directory)?;
        }
        Ok(summaries)
    }

    /// Drops every temporary without publishing anything.
    pub fn abort(self) {
        drop(self);
    }
}

/// Creates `.{name}.tmp-{pid}-{k}` with `create_new`, trying further `k` on a clash.
fn create_temp(directory: &Path, name: &str, pid: u32) -> Result<(PathBuf, File)> {
    let mut k = 0u32;
    loop {
        let path = directory.join(format!(".{name}.tmp-{pid}-{k}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && k < 1000 => k += 1,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
}

#[cfg(unix)]
fn sync_dir(directory: &Path) -> Result<()> {
    File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(directory, e))
}

#[cfg(not(unix))]
fn sync_dir(_directory: &Path) -> Result<()> {
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Reading

const READ_CHUNK: usize = 1 << 20;
const MAX_READ_STEP: usize = 64 << 20;

/// One record read back, with the byte offset of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// A corrupt stretch that a lenient reader skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub offset: u64,
    /// The full message, naming the file and offset.
    pub message: String,
}

enum Fault {
    /// The file ends inside a record: nothing after it.
    Truncated,
    /// The length checksum fails: the length cannot be trusted, resynchronise.
    BadLength,
    /// The data checksum fails under a valid length: skip `total` bytes.
    BadData { total: usize },
}

enum Step {
    Record(Record),
    End,
    Fault {
        offset: u64,
        kind: Fault,
        reason: String,
    },
}

/// Reads the records of one TFRecord file, plain or GZIP (detected from the content).
pub struct RecordReader {
    path: PathBuf,
    src: Box<dyn Read + Send + Sync>,
    gzip: bool,
    /// Size of a plain file (bounds a record's announced length before reading it).
    file_len: Option<u64>,
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    eof: bool,
    finished: bool,
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether the first bytes of a file are a gzip stream rather than a TFRecord: gzip magic
/// `1f 8b`, unless the first 12 bytes also form a valid record header (a plain file whose
/// first record is 0x..8b1f bytes long starts with the same two bytes).
pub fn looks_gzip(head: &[u8]) -> bool {
    if head.len() < 2 || head[0] != 0x1f || head[1] != 0x8b {
        return false;
    }
    if head.len() >= HEADER_LEN {
        let stored = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if masked_crc32c(&head[..8]) == stored {
            return false;
        }
    }
    true
}

impl RecordReader {
    pub fn open(path: &Path) -> Result<Self> {
        let io_err = |e| Error::io(path, e);
        let mut file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(Error::io(
                path,
                io::Error::other("is a directory, not a record file"),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        let n = read_up_to(&mut file, &mut head).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let gzip = looks_gzip(&head[..n]);
        let (src, file_len): (Box<dyn Read + Send + Sync>, _) = if gzip {
            let reader = BufReader::with_capacity(256 << 10, file);
            (Box::new(MultiGzDecoder::new(reader)), None)
        } else {
            (Box::new(file), Some(meta.len()))
        };
        Ok(RecordReader {
            path: path.to_path_buf(),
            src,
            gzip,
            file_len,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.start
    }

    fn at(&self, offset: u64) -> String {
        if self.gzip {
            format!("at decompressed byte offset {offset}")
        } else {
            format!("at byte offset {offset}")
        }
    }

    /// Makes at least `need` bytes available unless the stream ends first; returns how many
    /// are available. A broken gzip stream is an `Error::Record` at the current record.
    fn fill(&mut self, need: usize) -> Result<usize> {
        while self.avail() < need && !self.eof {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let want = (need - self.avail()).clamp(READ_CHUNK, MAX_READ_STEP);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            match self.src.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                }
                Ok(k) => self.buf.truncate(old + k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => {
                    self.buf.truncate(old);
                    self.finished = true;
                    if self.gzip {
                        let got = self.offset + self.avail() as u64;
                        return Err(Error::record(
                            &self.path,
                            self.offset,
                            format!(
                                "corrupt or truncated GZIP stream ({e}) in the record {}; \
                                 the stream breaks after decompressed byte {got}",
                                self.at(self.offset)
                            ),
                        ));
                    }
                    return Err(Error::io(&self.path, e));
                }
            }
        }
        Ok(self.avail())
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    fn header_at_start(&self) -> (u64, u32, u32) {
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        let len = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let stored = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        (len, stored, masked_crc32c(&h[..8]))
    }

    /// The record's total framed size if its announced length can fit in what is left.
    fn total_if_fits(&self, len: u64) -> Option<usize> {
        let total = len.checked_add((HEADER_LEN + FOOTER_LEN) as u64)?;
        if let Some(file_len) = self.file_len {
            if self.offset.checked_add(total)? > file_len {
                return None;
            }
        }
        usize::try_from(total).ok()
    }

    fn step(&mut self) -> Result<Step> {
        if self.finished {
            return Ok(Step::End);
        }
        let offset = self.offset;
        let n = self.fill(HEADER_LEN)?;
        if n == 0 {
            self.finished = true;
            return Ok(Step::End);
        }
        if n < HEADER_LEN {
            return Ok(Step::Fault {
                offset,
                kind: Fault::Truncated,
                reason: format!(
                    "truncated record {}: the file ends {n} bytes into its 12-byte header",
                    self.at(offset)
                ),
            });
        }
        let (len, stored, computed) = self.header_at_start();
        if stored != computed {
            return Ok(Step::Fault {
                offset,
                kind: Fault::BadLength,
                reason: format!(
                    "corrupt record header {} (length checksum mismatch: stored {stored:#010x}, \
                     computed {computed:#010x})",
                    self.at(offset)
                ),
            });
        }
        let truncated = |have: u64, this: &Self| Step::Fault {
            offset,
            kind: Fault::Truncated,
            reason: format!(
                "truncated record {}: its header announces {len} data bytes (+4 checksum bytes) \
                 but the file ends {have} bytes after the header",
                this.at(offset)
            ),
        };
        let Some(total) = self.total_if_fits(len) else {
            let have = self
                .file_len
                .map_or(0, |fl| fl.saturating_sub(offset + HEADER_LEN as u64));
            return Ok(truncated(have, self));
        };
        let n = self.fill(total)?;
        if n < total {
            return Ok(truncated((n - HEADER_LEN) as u64, self));
        }
        let data = &self.buf[self.start + HEADER_LEN..self.start + total - FOOTER_LEN];
        let f = &self.buf[self.start + total - FOOTER_LEN..self.start + total];
        let stored = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
        let computed = masked_crc32c(data);
        if stored != computed {
            return Ok(Step::Fault {
                offset,
                kind: Fault::BadData { total },
                reason: format!(
                    "corrupt record data {} ({len} bytes; data checksum mismatch: stored \
                     {stored:#010x}, computed {computed:#010x})",
                    self.at(offset)
                ),
            });
        }
        let data = data.to_vec();
        self.advance(total);
        Ok(Step::Record(Record { offset, data }))
    }

    /// The next record, or `None` at the end. A corrupt or truncated record is an
    /// `Error::Record` naming the file and offset, after which the reader is finished.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        match self.step() {
            Ok(Step::Record(r)) => Ok(Some(r)),
            Ok(Step::End) => Ok(None),
            Ok(Step::Fault { offset, reason, .. }) => {
                self.finished = true;
                Err(Error::record(&self.path, offset, reason))
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Like [`next_record`](Self::next_record), but skips corrupt stretches, noting each in
    /// `problems`: a bad data checksum skips that record; a bad length checksum scans forward
    /// to the next offset where a whole valid record starts; a truncated tail or a broken gzip
    /// stream ends the file. Only I/O errors are returned as errors.
    pub fn next_record_lenient(&mut self, problems: &mut Vec<Problem>) -> Result<Option<Record>> {
        loop {
            let step = match self.step() {
                Ok(step) => step,
                Err(Error::Record {
                    path,
                    offset,
                    reason,
                }) => {
                    let message = format!("{}: {reason}", path.display());
                    problems.push(Problem {
                        path,
                        offset,
                        message,
                    });
                    self.finished = true;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            match step {
                Step::Record(r) => return Ok(Some(r)),
                Step::End => return Ok(None),
                Step::Fault {
                    offset,
                    kind,
                    reason,
                } => {
                    let message = format!("{}: {reason}", self.path.display());
                    problems.push(Problem {
                        path: self.path.clone(),
                        offset,
                        message,
                    });
                    match kind {
                        Fault::Truncated => {
                            self.finished = true;
                            return Ok(None);
                        }
                        Fault::BadData { total } => self.advance(total),
                        Fault::BadLength => {
                            if !self.resync()? {
                                self.finished = true;
                                return Ok(None);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Moves to the next offset (after the current one) where a complete record with both
    /// checksums valid starts; false when there is none.
    fn resync(&mut self) -> Result<bool> {
        loop {
            self.advance(1);
            if self.fill(HEADER_LEN)? < HEADER_LEN {
                return Ok(false);
            }
            let (len, stored, computed) = self.header_at_start();
            if stored != computed {
                continue;
            }
            let Some(total) = self.total_if_fits(len) else {
                continue;
            };
            if self.fill(total)? < total {
                continue;
            }
            let data = &self.buf[self.start + HEADER_LEN..self.start + total - FOOTER_LEN];
            let f = &self.buf[self.start + total - FOOTER_LEN..self.start + total];
            if masked_crc32c(data) == u32::from_le_bytes([f[0], f[1], f[2], f[3]]) {
                return Ok(true);
            }
        }
    }
}

/// Counts the records of a file without reading their data where it can: a plain file is
/// walked header to header (each length checksum verified, data skipped by seeking); a GZIP
/// file has to be decompressed, and is read in full (every checksum verified). Corruption or
/// truncation is an `Error::Record`, as when reading.
pub fn count_records(path: &Path) -> Result<u64> {
    let mut reader = RecordReader::open(path)?;
    if reader.is_gzip() {
        let mut n = 0;
        while reader.next_record()?.is_some() {
            n += 1;
        }
        return Ok(n);
    }
    let io_err = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let (mut offset, mut n) = (0u64, 0u64);
    let mut header = [0u8; HEADER_LEN];
    while offset < file_len {
        let got = read_up_to(&mut file, &mut header).map_err(io_err)?;
        if got < HEADER_LEN {
            return Err(Error::record(
                path,
                offset,
                format!(
                    "truncated record at byte offset {offset}: the file ends {got} bytes into \
                     its 12-byte header"
                ),
            ));
        }
        let len = u64::from_le_bytes([
            header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
        ]);
        let stored = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let computed = masked_crc32c(&header[..8]);
        if stored != computed {
            return Err(Error::record(
                path,
                offset,
                format!(
                    "corrupt record header at byte offset {offset} (length checksum mismatch: \
                     stored {stored:#010x}, computed {computed:#010x})"
                ),
            ));
        }
        let end = len
            .checked_add((HEADER_LEN + FOOTER_LEN) as u64)
            .and_then(|t| offset.checked_add(t))
            .filter(|&end| end <= file_len);
        let Some(end) = end else {
            return Err(Error::record(
                path,
                offset,
                format!(
                    "truncated record at byte offset {offset}: its header announces {len} data \
                     bytes (+4 checksum bytes) but the file ends {} bytes after the header",
                    file_len.saturating_sub(offset + HEADER_LEN as u64)
                ),
            ));
        };
        file.seek(SeekFrom::Start(end)).map_err(io_err)?;
        offset = end;
        n += 1;
    }
    Ok(n)
}

/// Reads the records of several files in turn, strictly or skipping corrupt stretches.
///
/// Files open one at a time, as they are reached; their existence is checked up front.
pub struct MultiReader {
    paths: Vec<PathBuf>,
    next_path: usize,
    current: Option<(usize, RecordReader)>,
    skip_corrupt: bool,
    problems: Vec<Problem>,
    /// An error held back so that the records read before it are delivered first.
    pending: Option<Error>,
    done: bool,
}

/// One record of a [`MultiReader`]: the index of its file and the record.
pub type FileRecord = (usize, Record);

/// One decoded example of a [`MultiReader`]: file index, record offset, example.
pub type FileExample = (usize, u64, Example);

impl MultiReader {
    pub fn new(paths: Vec<PathBuf>, skip_corrupt: bool) -> Result<Self> {
        for p in &paths {
            let meta = fs::metadata(p).map_err(|e| Error::io(p, e))?;
            if meta.is_dir() {
                return Err(Error::io(
                    p,
                    io::Error::other("is a directory, not a record file"),
                ));
            }
        }
        Ok(MultiReader {
            paths,
            next_path: 0,
            current: None,
            skip_corrupt,
            problems: Vec::new(),
            pending: None,
            done: false,
        })
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Corrupt stretches skipped so far (lenient mode only).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Closes the file in hand; the reader then yields nothing more.
    pub fn close(&mut self) {
        self.current = None;
        self.done = true;
        self.pending = None;
    }

    fn next_raw(&mut self) -> Result<Option<FileRecord>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.current.is_none() {
                if self.next_path >= self.paths.len() {
                    self.done = true;
                    return Ok(None);
                }
                let i = self.next_path;
                self.next_path += 1;
                self.current = Some((i, RecordReader::open(&self.paths[i])?));
            }
            let Some((i, reader)) = self.current.as_mut() else {
                continue;
            };
            let i = *i;
            let next = if self.skip_corrupt {
                reader.next_record_lenient(&mut self.problems)
            } else {
                reader.next_record()
            };
            match next {
                Ok(Some(r)) => return Ok(Some((i, r))),
                Ok(None) => self.current = None,
                Err(e) => {
                    self.done = true;
                    self.current = None;
                    return Err(e);
                }
            }
        }
    }

    /// The next record, or `None` after the last file.
    pub fn next_record(&mut self) -> Result<Option<FileRecord>> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        self.next_raw()
    }

    /// Up to `max_records` records (stopping early once `max_bytes` are gathered). Empty at
    /// the end. An error after some records were gathered is returned by the next call.
    pub fn next_chunk(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<FileRecord>> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records.max(1) && bytes < max_bytes {
            match self.next_raw() {
                Ok(Some(r)) => {
                    bytes += r.1.data.len();
                    out.push(r);
                }
                Ok(None) => break,
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    self.pending = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Like [`next_chunk`](Self::next_chunk), but decodes each record as a `tf.train.Example`.
    /// A record that is not one is an `Error::Record` (strict) or a skipped problem (lenient).
    pub fn next_example_chunk(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<FileExample>> {
        let records = self.next_chunk(max_records, max_bytes)?;
        let mut out = Vec::with_capacity(records.len());
        for (i, rec) in records {
            match Example::decode(&rec.data) {
                Ok(ex) => out.push((i, rec.offset, ex)),
                Err(reason) => {
                    let path = &self.paths[i];
                    let at = match &self.current {
                        Some((j, r)) if *j == i && r.is_gzip() => "at decompressed byte offset",
                        _ => "at byte offset",
                    };
                    let reason = format!(
                        "record {at} {} is not a valid tf.train.Example ({reason})",
                        rec.offset
                    );
                    let err = Error::record(path, rec.offset, reason);
                    if self.skip_corrupt {
                        self.problems.push(Problem {
                            path: path.clone(),
                            offset: rec.offset,
                            message: err.to_string(),
                        });
                    } else {
                        // Deliver what came before, then the error; read no further.
                        self.pending = Some(err);
                        self.done = true;
                        self.current = None;
                        if out.is_empty() {
                            if let Some(e) = self.pending.take() {
                                return Err(e);
                            }
                        }
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

// ------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
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

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn case(id: &str, h: usize, w: usize) -> Example {
        let image: Vec<u8> = (0..h * w).map(|i| (i * 31 + id.len()) as u8).collect();
        Example::new()
            .with("image", Feature::Bytes(vec![image]))
            .with("height", Feature::Int64(vec![h as i64]))
            .with("width", Feature::Int64(vec![w as i64]))
            .with("id", Feature::Bytes(vec![id.as_bytes().to_vec()]))
            .with("male", Feature::Int64(vec![1]))
            .with("age", Feature::Float(vec![120.5]))
    }

    #[test]
    fn mask_and_crc_match_tensorflow() {
        // crc32c("") = 0, so the masked value is the delta; "123456789" is the CRC32C check
        // value 0xe3069283.
        assert_eq!(masked_crc32c(b""), MASK_DELTA);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(mask(0xe306_9283), 0xc78a_b0e5);
    }

    #[test]
    fn frame_layout() {
        let rec = frame(b"abc");
        assert_eq!(rec.len(), 3 + 16);
        assert_eq!(&rec[..8], &3u64.to_le_bytes());
        assert_eq!(
            &rec[8..12],
            &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&rec[12..15], b"abc");
        assert_eq!(&rec[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn varints() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(Pb::new(&out).varint().unwrap(), v);
        }
        let mut out = Vec::new();
        put_varint(&mut out, -1i64 as u64);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn example_bytes_known_answer() {
        // tf.train.Example(features=tf.train.Features(feature={
        //   "a": Feature(int64_list=Int64List(value=[1, -1])),
        //   "b": Feature(float_list=FloatList(value=[1.0])),
        //   "c": Feature(bytes_list=BytesList(value=[b"xy"]))})).SerializeToString(deterministic=True)
        let ex = Example::new()
            .with("c", Feature::Bytes(vec![b"xy".to_vec()]))
            .with("a", Feature::Int64(vec![1, -1]))
            .with("b", Feature::Float(vec![1.0]));
        let want = "0a320a140a0161120f1a0d0a0b01ffffffffffffffffff010a0d0a0162120812060a040000803f\
                    0a0b0a016312060a040a027879";
        let got = ex.encode();
        assert_eq!(got.len(), ex.encoded_len());
        assert_eq!(Example::decode(&got).unwrap(), ex);
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want.replace(' ', ""));
    }

    #[test]
    fn encoding_with_an_outside_value_equals_owning_it() {
        let full = case("x", 3, 4);
        let Some(Feature::Bytes(img)) = full.features.get("image").cloned() else {
            panic!()
        };
        let mut without = full.clone();
        without.features.remove("image");
        let mut a = Vec::new();
        without.encode_record_with_into("image", &img[0], &mut a);
        assert_eq!(a, full.encode_record());
        // Key first, last, and replacing an existing one.
        for key in ["a", "zz", "id"] {
            let mut b = Vec::new();
            without.encode_record_with_into(key, b"v", &mut b);
            let want = without
                .clone()
                .with(key, Feature::Bytes(vec![b"v".to_vec()]));
            assert_eq!(b, want.encode_record(), "{key}");
        }
    }

    #[test]
    fn key_order_matches_python_protobuf() {
        // Observed with protobuf 4.25 (upb): SerializeToString(deterministic=True) of these keys.
        let want = [
            "B", "abc", "ab", "a", "ba", "b", "height", "h", "za", "z", "\u{e9}", "",
        ];
        let mut ex = Example::new();
        for k in want {
            ex = ex.with(k, Feature::Int64(vec![1]));
        }
        let got: Vec<&str> = ex.encoder(None).entries.iter().map(|e| e.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_lists_and_unknown_fields() {
        let ex = Example::new()
            .with("b", Feature::Bytes(vec![]))
            .with("f", Feature::Float(vec![]))
            .with("i", Feature::Int64(vec![]))
            .with("e", Feature::Bytes(vec![vec![]]));
        let enc = ex.encode();
        assert_eq!(Example::decode(&enc).unwrap(), ex);
        // An unknown varint field (number 9) before the features is skipped.
        let mut with_unknown = vec![0x48, 0x05];
        with_unknown.extend(&enc);
        assert_eq!(Example::decode(&with_unknown).unwrap(), ex);
        // Unpacked int64 and float values are accepted.
        let unpacked = [
            0x0a, 0x14, 0x0a, 0x12, 0x0a, 0x01, b'x', 0x12, 0x0d, 0x1a, 0x04, 0x08, 0x05, 0x08,
            0x07, 0x12, 0x05, 0x0d, 0x00, 0x00, 0x80, 0x3f,
        ];
        // The feature has both an int64 list and (later) a float list: the last one wins.
        let ex = Example::decode(&unpacked).unwrap();
        assert_eq!(ex.features["x"], Feature::Float(vec![1.0]));
        let int_only = [
            0x0a, 0x0d, 0x0a, 0x0b, 0x0a, 0x01, b'x', 0x12, 0x06, 0x1a, 0x04, 0x08, 0x05, 0x08,
            0x07,
        ];
        let ex = Example::decode(&int_only).unwrap();
        assert_eq!(ex.features["x"], Feature::Int64(vec![5, 7]));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(Example::decode(&[0x0a, 0x05, 0x01]).is_err());
        assert!(Example::decode(&[0x0a]).is_err());
        assert!(Example::decode(&[0xff; 11]).is_err());
        assert!(Example::decode(&[0x0b]).is_err()); // wire type 3 (group)
    }

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

    fn write_cases(
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

    fn read_all(path: &Path) -> Vec<Record> {
        let mut r = RecordReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }

    #[test]
    fn writer_round_trip_and_empty_shards() {
        for compression in [Compression::None, Compression::Gzip { level: 6 }] {
            let dir = TempDir::new("rt");
            let ids = ["1", "22", "333"];
            let sums = write_cases(&dir.0, 5, compression, &ids);
            assert_eq!(sums.len(), 5);
            assert_eq!(sums.iter().map(|s| s.records).sum::<u64>(), 3);
            // Every shard exists, the empty ones too; no temporaries are left.
            let names = listing(&dir.0);
            assert_eq!(names.len(), 5, "{names:?}");
            assert!(names.iter().all(|n| !n.starts_with('.')));
            let mut seen = Vec::new();
            for s in &sums {
                let recs = read_all(&s.path);
                assert_eq!(recs.len() as u64, s.records);
                assert_eq!(fs::metadata(&s.path).unwrap().len(), s.bytes);
                for r in recs {
                    let ex = Example::decode(&r.data).unwrap();
                    let Feature::Bytes(id) = &ex.features["id"] else {
                        panic!()
                    };
                    let id = String::from_utf8(id[0].clone()).unwrap();
                    assert_eq!(shard_index(&id, 5), s.index);
                    assert_eq!(ex, case(&id, 5, 7));
                    seen.push(id);
                }
            }
            seen.sort();
            assert_eq!(seen, ids);
        }
    }

    #[test]
    fn large_values_are_written_in_place_with_the_same_bytes() {
        // Values >= BIG_VALUE are written from their own memory (vectored writes, CRC over the
        // pieces): the file must still be exactly the concatenated records.
        let dir = TempDir::new("pieces");
        let big = case("big", 300, 200)
            .with(
                "blob",
                Feature::Bytes(vec![vec![7u8; BIG_VALUE], vec![1, 2, 3], vec![9u8; 40_000]]),
            )
            .with("zz", Feature::Bytes(vec![vec![5u8; BIG_VALUE - 1]]));
        let small = case("small", 3, 3);
        for compression in [Compression::None, Compression::Gzip { level: 1 }] {
            let w = ShardWriter::create(&dir.0, "t", 1, compression, None).unwrap();
            w.write_example("big", &big).unwrap();
            w.write_example("small", &small).unwrap();
            let pixels = vec![3u8; 256 * 256];
            let mut without = case("batch", 256, 256);
            without.features.remove("image");
            w.write_batch_with("image", &[("batch".into(), without.clone(), &pixels[..])])
                .unwrap();
            let sums = w.finish().unwrap();
            let mut want = big.encode_record();
            want.extend(small.encode_record());
            want.extend(
                without
                    .with("image", Feature::Bytes(vec![pixels]))
                    .encode_record(),
            );
            let got: Vec<u8> = read_all(&sums[0].path)
                .into_iter()
                .flat_map(|r| frame(&r.data))
                .collect();
            assert_eq!(got, want);
            if compression == Compression::None {
                assert_eq!(fs::read(&sums[0].path).unwrap(), want);
            }
            assert_eq!(sums[0].raw_bytes, want.len() as u64);
        }
    }

    #[test]
    fn plain_shard_bytes_are_the_concatenated_records() {
        let dir = TempDir::new("bytes");
        let sums = write_cases(&dir.0, 1, Compression::None, &["a", "b"]);
        let mut want = case("a", 5, 7).encode_record();
        want.extend(case("b", 5, 7).encode_record());
        assert_eq!(fs::read(&sums[0].path).unwrap(), want);
        let mut framed = Vec::new();
        frame_into(&mut framed, &case("a", 5, 7).encode());
        assert_eq!(framed, case("a", 5, 7).encode_record());
    }

    #[test]
    fn batch_matches_single_writes() {
        let ids: Vec<String> = (0..40).map(|i| format!("case{i}")).collect();
        let a = TempDir::new("single");
        let b = TempDir::new("batch");
        let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        let sa = write_cases(&a.0, 3, Compression::None, &refs);
        let w = ShardWriter::create(&b.0, "train", 3, Compression::None, None).unwrap();
        let items: Vec<(String, Example)> =
            ids.iter().map(|id| (id.clone(), case(id, 5, 7))).collect();
        let shards = w.write_batch(&items).unwrap();
        assert_eq!(
            shards,
            ids.iter().map(|id| shard_index(id, 3)).collect::<Vec<_>>()
        );
        let sb = w.finish().unwrap();
        for (x, y) in sa.iter().zip(&sb) {
            assert_eq!(fs::read(&x.path).unwrap(), fs::read(&y.path).unwrap());
        }
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = TempDir::new("drop");
        let w = ShardWriter::create(&dir.0, "train", 3, Compression::None, None).unwrap();
        w.write_example("x", &case("x", 5, 7)).unwrap();
        assert_eq!(listing(&dir.0).len(), 3);
        assert!(listing(&dir.0)
            .iter()
            .all(|n| n.starts_with('.') && n.contains(".tmp-")));
        drop(w);
        assert!(listing(&dir.0).is_empty());
    }

    #[test]
    fn owned_subset() {
        let dir = TempDir::new("subset");
        let w = ShardWriter::create(&dir.0, "train", 4, Compression::None, Some(&[1, 3])).unwrap();
        let ids: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        for id in &ids {
            let r = w.write_example(id, &case(id, 2, 2));
            assert_eq!(r.is_ok(), [1, 3].contains(&shard_index(id, 4)), "{id}");
        }
        let sums = w.finish().unwrap();
        assert_eq!(sums.iter().map(|s| s.index).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(listing(&dir.0).len(), 2);
    }

    #[test]
    fn bad_arguments() {
        let dir = TempDir::new("bad");
        assert!(matches!(
            ShardWriter::create(&dir.0, "train", 0, Compression::None, None),
            Err(Error::Value(_))
        ));
        assert!(matches!(
            ShardWriter::create(&dir.0, "a/b", 1, Compression::None, None),
            Err(Error::Value(_))
        ));
        assert!(matches!(
            ShardWriter::create(&dir.0, "t", 2, Compression::None, Some(&[2])),
            Err(Error::Value(_))
        ));
        assert!(matches!(
            ShardWriter::create(&dir.0, "t", 2, Compression::Gzip { level: 10 }, None),
            Err(Error::Value(_))
        ));
        assert!(listing(&dir.0).is_empty());
    }

    fn two_record_file(dir: &Path) -> (PathBuf, Vec<u8>, usize) {
        let path = dir.join("f.tfrecord");
        let mut bytes = frame(b"first record");
        let second = bytes.len();
        bytes.extend(frame(b"second"));
        bytes.extend(frame(b"third record here"));
        fs::write(&path, &bytes).unwrap();
        (path, bytes, second)
    }

    #[test]
    fn corrupt_data_names_file_and_offset() {
        let dir = TempDir::new("corrupt");
        let (path, mut bytes, second) = two_record_file(&dir.0);
        bytes[second + HEADER_LEN + 2] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let mut r = RecordReader::open(&path).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().data, b"first record");
        let err = r.next_record().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("f.tfrecord"), "{msg}");
        assert!(msg.contains(&format!("byte offset {second}")), "{msg}");
        assert!(msg.contains("data checksum mismatch"), "{msg}");
        assert!(matches!(err, Error::Record { offset, .. } if offset == second as u64));
        assert!(r.next_record().unwrap().is_none());

        // Lenient: the bad record is skipped and noted.
        let mut r = RecordReader::open(&path).unwrap();
        let mut problems = Vec::new();
        let mut got = Vec::new();
        while let Some(rec) = r.next_record_lenient(&mut problems).unwrap() {
            got.push(rec.data);
        }
        assert_eq!(
            got,
            vec![b"first record".to_vec(), b"third record here".to_vec()]
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].offset, second as u64);
    }

    #[test]
    fn corrupt_length_resyncs() {
        let dir = TempDir::new("len");
        let (path, mut bytes, second) = two_record_file(&dir.0);
        bytes[second + 1] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut r = RecordReader::open(&path).unwrap();
        r.next_record().unwrap();
        let msg = r.next_record().unwrap_err().to_string();
        assert!(
            msg.contains("length checksum mismatch") && msg.contains(&format!("offset {second}")),
            "{msg}"
        );
        let mut r = RecordReader::open(&path).unwrap();
        let mut problems = Vec::new();
        let mut got = Vec::new();
        while let Some(rec) = r.next_record_lenient(&mut problems).unwrap() {
            got.push((rec.offset, rec.data));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, b"third record here");
        assert_eq!(got[1].0 as usize, second + frame(b"second").len());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn truncation_is_reported() {
        let dir = TempDir::new("trunc");
        let (path, bytes, second) = two_record_file(&dir.0);
        for cut in [second + 5, second + HEADER_LEN + 3, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).unwrap();
            let mut r = RecordReader::open(&path).unwrap();
            r.next_record().unwrap();
            let at = if cut == bytes.len() - 1 {
                second + frame(b"second").len()
            } else {
                second
            };
            if cut == bytes.len() - 1 {
                r.next_record().unwrap();
            }
            let msg = r.next_record().unwrap_err().to_string();
            assert!(
                msg.contains("truncated record") && msg.contains(&format!("offset {at}")),
                "{cut}: {msg}"
            );
        }
    }

    #[test]
    fn gzip_detection_and_corruption() {
        let dir = TempDir::new("gz");
        let sums = write_cases(&dir.0, 1, Compression::Gzip { level: 6 }, &["a", "b", "c"]);
        let path = &sums[0].path;
        let bytes = fs::read(path).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        assert_eq!(read_all(path).len(), 3);
        // Truncated gzip: an error naming the file, not a silent short read.
        let cut = dir.0.join("cut.tfrecord.gz");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let mut r = RecordReader::open(&cut).unwrap();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("truncated gzip read without error"),
                Err(e) => break e,
            }
        };
        let msg = err.to_string();
        assert!(
            msg.contains("cut.tfrecord.gz") && msg.contains("decompressed byte offset"),
            "{msg}"
        );
        // A plain file whose first record length starts with 1f 8b is not mistaken for gzip.
        let odd = dir.0.join("odd.tfrecord");
        let data = vec![7u8; 0x8b1f];
        fs::write(&odd, frame(&data)).unwrap();
        assert_eq!(read_all(&odd)[0].data, data);
    }

    #[test]
    fn counting() {
        let dir = TempDir::new("count");
        let (path, bytes, second) = two_record_file(&dir.0);
        assert_eq!(count_records(&path).unwrap(), 3);
        fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let msg = count_records(&path).unwrap_err().to_string();
        assert!(msg.contains("truncated record"), "{msg}");
        let mut bad = bytes.clone();
        bad[second + 3] ^= 1;
        fs::write(&path, &bad).unwrap();
        let msg = count_records(&path).unwrap_err().to_string();
        assert!(msg.contains(&format!("offset {second}")), "{msg}");
        let sums = write_cases(
            &dir.0,
            2,
            Compression::Gzip { level: 1 },
            &["a", "b", "c", "d"],
        );
        let total: u64 = sums.iter().map(|s| count_records(&s.path).unwrap()).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn multi_reader_chunks_defer_errors() {
        let dir = TempDir::new("multi");
        let (path, mut bytes, second) = two_record_file(&dir.0);
        let good = dir.0.join("good.tfrecord");
        fs::write(&good, frame(b"g")).unwrap();
        bytes[second + HEADER_LEN] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let mut m = MultiReader::new(vec![good.clone(), path.clone()], false).unwrap();
        let chunk = m.next_chunk(10, 1 << 20).unwrap();
        assert_eq!(chunk.len(), 2);
        assert!(m.next_chunk(10, 1 << 20).is_err());
        assert!(m.next_chunk(10, 1 << 20).unwrap().is_empty());
        let mut m = MultiReader::new(vec![good, path.clone()], true).unwrap();
        let chunk = m.next_chunk(10, 1 << 20).unwrap();
        assert_eq!(chunk.len(), 3);
        assert_eq!(m.problems().len(), 1);
        assert!(MultiReader::new(vec![dir.0.join("missing")], false).is_err());
        // Records that are not Examples.
        let mut m = MultiReader::new(vec![path], true).unwrap();
        assert!(m.next_example_chunk(10, 1 << 20).unwrap().is_empty());
        assert_eq!(m.problems().len(), 3);
    }
}
