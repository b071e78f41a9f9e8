//! Record framing: `u64le length`, `u32le masked_crc32c(length)`, `data`,
//! `u32le masked_crc32c(data)`, and telling a GZIP file from a plain one by its first bytes.

use std::path::Path;

use crate::error::{Error, Result};

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

/// [`looks_gzip`] on the first bytes of the file at `path`: what every reader of this crate
/// decides, so a caller choosing a decompressor (e.g. for `tf.data`) agrees with it.
pub fn is_gzip_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    file.take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    Ok(looks_gzip(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn gzip_files_are_told_by_content() {
        let dir = std::env::temp_dir().join(format!("boneage-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("a.tfrecord.gz"); // the name does not matter
        std::fs::write(&plain, frame(b"x")).unwrap();
        let gz = dir.join("b.tfrecord");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0]).unwrap();
        let short = dir.join("c");
        std::fs::write(&short, [0x1f]).unwrap();
        assert!(!is_gzip_file(&plain).unwrap());
        assert!(is_gzip_file(&gz).unwrap());
        assert!(!is_gzip_file(&short).unwrap());
        assert!(matches!(
            is_gzip_file(&dir.join("missing")),
            Err(Error::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
