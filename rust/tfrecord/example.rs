//! `tf.train.Example`, hand-encoded and decoded (see the module docs of [`super`]).

use std::collections::BTreeMap;

use super::framing::{mask, masked_crc32c, FOOTER_LEN, HEADER_LEN};

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
pub(super) const BIG_VALUE: usize = 16 << 10;

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
pub(super) struct Encoder<'a> {
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
    pub(super) fn encode_record_pieces(
        &self,
        small: &mut Vec<u8>,
        holes: &mut Vec<(usize, &'a [u8])>,
    ) {
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
    pub(super) fn encoder<'a>(&'a self, extra: Option<(&'a str, &'a [u8])>) -> Encoder<'a> {
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

/// The keys of a case record that the writer sets itself (`image`, `height`, `width`, `id`,
/// `male`, `age`); extra features may not use them.
pub const RESERVED_KEYS: [&str; 6] = ["image", "height", "width", "id", "male", "age"];

#[cfg(test)]
mod tests {
    use super::super::testutil::case;
    use super::*;

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
}
