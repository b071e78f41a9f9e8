//! Readers: one file's records with every checksum verified (strict or skipping corrupt
//! stretches), record counting, and a reader over many files that decodes Examples.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::example::Example;
use super::framing::{looks_gzip, masked_crc32c, FOOTER_LEN, HEADER_LEN};
use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{frame, Compression};
    use super::*;
    use std::fs;

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
