//! EXIF orientation, applied as `cv2.imdecode(..., IMREAD_GRAYSCALE)` applies it.
//!
//! Phones, scanners and some PACS exports store pixels as the sensor read them and say in the
//! EXIF `Orientation` tag (0x0112) how to turn them upright. OpenCV honours the tag for JPEG
//! (APP1 `Exif` segment) and PNG (`eXIf` chunk) unless told not to, so a radiograph exported
//! sideways reaches the model upright; we do the same, or the two engines would disagree.
//!
//! Parsing is defensive: a missing, truncated or malformed EXIF block means "as stored", never
//! an error (OpenCV ignores it too).

use crate::image::Gray;

const ORIENTATION_TAG: u16 = 0x0112;
const SHORT: u16 = 3;

/// The orientation value (1..=8) in a TIFF-structured EXIF block, if present and valid.
pub fn from_tiff(tiff: &[u8]) -> Option<u8> {
    let big = match tiff.get(0..2)? {
        b"II" => false,
        b"MM" => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    (0..entries).find_map(|i| {
        let e = ifd.checked_add(2 + 12 * i)?;
        if u16_at(e)? != ORIENTATION_TAG || u16_at(e + 2)? != SHORT {
            return None;
        }
        let v = u16_at(e + 8)?;
        (1..=8).contains(&v).then_some(v as u8)
    })
}

/// The orientation in a JPEG's APP1 `Exif` segment (markers before the scan only).
pub fn from_jpeg(data: &[u8]) -> Option<u8> {
    let mut at = 2; // after SOI
    loop {
        if *data.get(at)? != 0xFF {
            return None;
        }
        let marker = *data.get(at + 1)?;
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // start of scan / end of image: no EXIF before the pixels
        }
        let len = u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]) as usize;
        let body = data.get(at + 4..at + 2 + len)?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return from_tiff(&body[6..]);
        }
        at += 2 + len;
    }
}

/// The orientation in a PNG's `eXIf` chunk.
pub fn from_png(data: &[u8]) -> Option<u8> {
    let mut at = 8; // after the signature
    while at + 8 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as usize;
        let kind = &data[at + 4..at + 8];
        let body = data.get(at + 8..(at + 8).checked_add(len)?)?;
        if kind == b"eXIf" {
            return from_tiff(body);
        }
        if kind == b"IEND" {
            return None;
        }
        at = at.checked_add(12 + len)?;
    }
    None
}

/// Turns `img` upright for EXIF orientation `o` (1 = as stored; 2..=8 flips and rotations).
pub fn apply(img: Gray, o: u8) -> Gray {
    if !(2..=8).contains(&o) {
        return img;
    }
    let (w, h) = (img.width, img.height);
    // Orientations 5..=8 swap the sides.
    let (ow, oh) = if o >= 5 { (h, w) } else { (w, h) };
    let mut out = Gray::new(ow, oh); // the size of the decoded image, already bounded
    for y in 0..oh {
        for x in 0..ow {
            // Source pixel shown at output (x, y).
            let (sx, sy) = match o {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x), // 8
            };
            out.data[y * ow + x] = img.data[sy * w + sx];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-order writers of one TIFF: 16-bit and 32-bit values.
    type Writers = (fn(u16) -> [u8; 2], fn(u32) -> [u8; 4]);

    fn tiff(orientation: u16, big: bool) -> Vec<u8> {
        let (p16, p32): Writers = if big {
            (u16::to_be_bytes, u32::to_be_bytes)
        } else {
            (u16::to_le_bytes, u32::to_le_bytes)
        };
        let mut t = Vec::new();
        t.extend_from_slice(if big { b"MM" } else { b"II" });
        t.extend_from_slice(&p16(42));
        t.extend_from_slice(&p32(8));
        t.extend_from_slice(&p16(1)); // one entry
        t.extend_from_slice(&p16(ORIENTATION_TAG));
        t.extend_from_slice(&p16(SHORT));
        t.extend_from_slice(&p32(1));
        t.extend_from_slice(&p16(orientation));
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(&p32(0));
        t
    }

    #[test]
    fn reads_both_byte_orders_and_rejects_junk() {
        assert_eq!(from_tiff(&tiff(6, false)), Some(6));
        assert_eq!(from_tiff(&tiff(8, true)), Some(8));
        assert_eq!(from_tiff(&tiff(9, true)), None);
        assert_eq!(from_tiff(b"II*"), None);
        let t = tiff(3, false);
        assert_eq!(from_tiff(&t[..t.len() - 8]), None); // truncated entry
    }

    #[test]
    fn finds_the_jpeg_app1_segment() {
        let exif = [b"Exif\0\0".as_slice(), &tiff(6, true)].concat();
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2]; // SOI, a short APP0
        jpeg.extend_from_slice(&[0xFF, 0xE1]);
        jpeg.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        jpeg.extend_from_slice(&exif);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        assert_eq!(from_jpeg(&jpeg), Some(6));
        assert_eq!(from_jpeg(&jpeg[..jpeg.len() / 2]), None);
        assert_eq!(from_jpeg(&[0xFF, 0xD8, 0xFF, 0xDA]), None);
    }

    #[test]
    fn transforms_move_the_top_left_corner() {
        // 3x2 image: top-left pixel 9, everything else 0.
        let mut g = Gray::new(3, 2);
        g.data[0] = 9;
        let corner = |o: u8| {
            let r = apply(g.clone(), o);
            let p = r.data.iter().position(|&v| v == 9).unwrap();
            (r.width, r.height, p % r.width, p / r.width)
        };
        assert_eq!(corner(1), (3, 2, 0, 0));
        assert_eq!(corner(2), (3, 2, 2, 0));
        assert_eq!(corner(3), (3, 2, 2, 1));
        assert_eq!(corner(4), (3, 2, 0, 1));
        assert_eq!(corner(5), (2, 3, 0, 0));
        assert_eq!(corner(6), (2, 3, 1, 0));
        assert_eq!(corner(7), (2, 3, 1, 2));
        assert_eq!(corner(8), (2, 3, 0, 2));
    }
}
