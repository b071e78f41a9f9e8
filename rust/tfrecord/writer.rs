//! The shard writer: records hashed to shards, each written to a hidden temporary and published
//! by flush, fsync and rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::write::GzEncoder;
use rayon::prelude::*;

use super::example::{Encoder, Example};
use super::naming::{check_split, shard_file_name, shard_index, Compression, MAX_SHARDS};
use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::super::example::BIG_VALUE;
    use super::super::testutil::*;
    use super::super::{frame, frame_into, Feature};
    use super::*;
    use std::fs;

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
}
