//! PNG and JPEG to 8-bit grey, as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` gives it.
//!
//! - 8-bit grey: as stored. 16-bit grey: the high byte (libpng's `strip_16`).
//! - Low bit depths and palettes: expanded to 8 bits first (libpng's `expand`).
//! - Colour: libpng's `rgb_to_gray` with OpenCV's coefficients (0.299, 0.587), i.e.
//!   `(9797 R + 19234 G + 3737 B) >> 15` for 8-bit samples (truncated), and
//!   `(... + 16384) >> 15` on 16-bit samples before the high byte is kept. Alpha is dropped.
//!   When an 8-bit colour file declares a significant gamma (a `gAMA` chunk, or `sRGB`, which
//!   means 1/2.2), libpng converts in linear light through its 8-bit gamma tables; so do we.
//! - JPEG: libjpeg(-turbo compatible, via mozjpeg) decoding straight to its luminance plane,
//!   the same islow IDCT OpenCV's libjpeg-turbo uses.
//!
//! - EXIF orientation (JPEG APP1, PNG eXIf) turns the image upright, as OpenCV does.
//!
//! Sizes are checked from the header before any pixel buffer is allocated, against a caller-
//! supplied pixel limit, so a tiny file claiming 60000x60000 pixels is refused at once, and
//! against the aspect-ratio policy of [`crate::image`] (long side at most 10 times the short
//! side, unless it is at most 4096 px), so a valid 200 KB PNG of 99,000,000 x 1 pixels is
//! refused before it is decoded rather than feeding gigabyte-sized derived buffers.

use std::path::Path;

use crate::error::{try_filled, Error, Result};
use crate::image::Gray;
use crate::image::{aspect_ok, ASPECT_FREE_SIDE, MAX_ASPECT_RATIO};
use crate::orientation;

/// Default ceiling on decoded pixels (decompression-bomb guard).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = b"\xff\xd8\xff";

/// The image formats we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
}

pub fn sniff(data: &[u8]) -> Option<Format> {
    if data.starts_with(PNG_MAGIC) {
        Some(Format::Png)
    } else if data.starts_with(JPEG_MAGIC) {
        Some(Format::Jpeg)
    } else {
        None
    }
}

fn check_pixels(width: u64, height: u64, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::decode(format!(
            "image has an empty side ({width}x{height})"
        )));
    }
    if !aspect_ok(width, height) {
        return Err(Error::decode(format!(
            "image is {width}x{height}: its long side is over {MAX_ASPECT_RATIO} times its short \
             side (and over {ASPECT_FREE_SIDE} px), thinner than any radiograph"
        )));
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(Error::decode(format!(
            "image is {width}x{height} = {} pixels, over the limit of {max_pixels} \
                 (raise max_pixels if this is intended)",
            width.saturating_mul(height)
        )));
    }
    Ok(())
}

/// Decodes PNG or JPEG bytes to 8-bit grey.
/// EXIF orientation is applied, as OpenCV applies it (see [`crate::orientation`]).
pub fn decode_gray(data: &[u8], max_pixels: u64) -> Result<Gray> {
    match sniff(data) {
        Some(Format::Png) => Ok(orientation::apply(
            decode_png(data, max_pixels)?,
            orientation::from_png(data).unwrap_or(1),
        )),
        Some(Format::Jpeg) => Ok(orientation::apply(
            decode_jpeg(data, max_pixels)?,
            orientation::from_jpeg(data).unwrap_or(1),
        )),
        None => Err(Error::decode(
            "not a PNG or JPEG image (unrecognised signature)",
        )),
    }
}

/// Reads and decodes a file; errors name the file.
pub fn read_gray(path: &Path, max_pixels: u64) -> Result<Gray> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_gray(&data, max_pixels).map_err(|e| e.with_path(path))
}

fn png_err(e: png::DecodingError) -> Error {
    Error::decode(format!("corrupt or truncated PNG ({e})"))
}

fn decode_png(data: &[u8], max_pixels: u64) -> Result<Gray> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(data),
        png::Limits {
            bytes: usize::try_from(max_pixels.saturating_mul(8)).unwrap_or(usize::MAX),
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    let header = decoder.read_header_info().map_err(png_err)?;
    check_pixels(header.width as u64, header.height as u64, max_pixels)?;
    let mut reader = decoder.read_info().map_err(png_err)?;
    let gamma = {
        let info = reader.info();
        if info.srgb.is_some() {
            Some(PNG_GAMMA_SRGB_INVERSE)
        } else {
            info.gama_chunk.map(|g| g.into_scaled())
        }
    };
    let mut buf = try_filled(reader.output_buffer_size(), 0u8, "the PNG decoding buffer")?;
    let frame = reader.next_frame(&mut buf).map_err(png_err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let buf = &buf[..frame.buffer_size()];
    let sixteen = frame.bit_depth == png::BitDepth::Sixteen;
    let channels = frame.color_type.samples();
    let line = frame.line_size;
    let tables = match gamma {
        Some(g) if channels >= 3 && !sixteen && gamma_significant(g) => Some(GammaTables::new(g)),
        _ => None,
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * line..y * line + line];
        match (channels, sixteen) {
            (1 | 2, false) => out.extend(row.chunks_exact(channels).map(|p| p[0])),
            (1 | 2, true) => out.extend(row.chunks_exact(2 * channels).map(|p| p[0])),
            (3 | 4, false) => match &tables {
                Some(t) => out.extend(row.chunks_exact(channels).map(|p| t.gray(p[0], p[1], p[2]))),
                None => out.extend(
                    row.chunks_exact(channels)
                        .map(|p| rgb_to_gray8(p[0], p[1], p[2])),
                ),
            },
            (3 | 4, true) => out.extend(row.chunks_exact(2 * channels).map(|p| {
                let r = u16::from_be_bytes([p[0], p[1]]);
                let g = u16::from_be_bytes([p[2], p[3]]);
                let b = u16::from_be_bytes([p[4], p[5]]);
                (rgb_to_gray16(r, g, b) >> 8) as u8
            })),
            _ => {
                return Err(Error::decode(format!(
                    "unsupported PNG layout ({channels} samples per pixel)"
                )))
            }
        }
    }
    Gray::from_vec(w, h, out)
}

/// libpng's 8-bit `rgb_to_gray` without gamma: truncated fixed point, greys kept as they are.
#[inline]
pub fn rgb_to_gray8(r: u8, g: u8, b: u8) -> u8 {
    if r == g && r == b {
        return r;
    }
    ((9797 * r as u32 + 19234 * g as u32 + 3737 * b as u32) >> 15) as u8
}

/// libpng's fixed-point gamma of sRGB (1/2.2, scaled by 100000).
const PNG_GAMMA_SRGB_INVERSE: u32 = 45455;

/// libpng's `png_gamma_significant`: more than 5 % away from 1.
fn gamma_significant(g: u32) -> bool {
    !(95_000..=105_000).contains(&g)
}

/// libpng's `png_reciprocal` on its fixed-point gammas.
fn reciprocal(g: u32) -> f64 {
    (1e10 / g as f64 + 0.5).floor()
}

/// libpng's `gamma_to_1` / `gamma_from_1` 8-bit tables, built as `png_build_8bit_table` does.
struct GammaTables {
    to_linear: [u8; 256],
    from_linear: [u8; 256],
}

impl GammaTables {
    fn new(file_gamma: u32) -> Self {
        let table = |exponent: f64| {
            let mut t = [0u8; 256];
            for (i, v) in t.iter_mut().enumerate() {
                *v = if i > 0 && i < 255 && gamma_significant(exponent as u32) {
                    (255.0 * (i as f64 / 255.0).powf(exponent * 1e-5) + 0.5).floor() as u8
                } else {
                    i as u8
                };
            }
            t
        };
        GammaTables {
            to_linear: table(reciprocal(file_gamma)),
            from_linear: table(file_gamma as f64),
        }
    }

    /// libpng's gamma-corrected 8-bit `rgb_to_gray` (rounded, greys kept as they are).
    #[inline]
    fn gray(&self, r: u8, g: u8, b: u8) -> u8 {
        if r == g && r == b {
            return r;
        }
        let (r, g, b) = (
            self.to_linear[r as usize] as u32,
            self.to_linear[g as usize] as u32,
            self.to_linear[b as usize] as u32,
        );
        self.from_linear[((9797 * r + 19234 * g + 3737 * b + 16384) >> 15) as usize]
    }
}

/// libpng's 16-bit `rgb_to_gray`: rounded fixed point.
#[inline]
pub fn rgb_to_gray16(r: u16, g: u16, b: u16) -> u16 {
    ((9797 * r as u32 + 19234 * g as u32 + 3737 * b as u32 + 16384) >> 15) as u16
}

fn decode_jpeg(data: &[u8], max_pixels: u64) -> Result<Gray> {
    // libjpeg reports fatal errors by unwinding (mozjpeg's error manager uses resume_unwind,
    // which skips the panic hook); catch it here so it becomes an error value.
    let result = std::panic::catch_unwind(|| -> std::io::Result<Result<Gray>> {
        let decomp = mozjpeg::Decompress::new_mem(data)?;
        let (w, h) = decomp.size();
        if let Err(e) = check_pixels(w as u64, h as u64, max_pixels) {
            return Ok(Err(e));
        }
        let mut started = decomp.grayscale()?;
        let (w, h) = (started.width(), started.height());
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        Ok(Gray::from_vec(w, h, pixels))
    });
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(Error::decode(format!("corrupt JPEG ({e})"))),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".to_string());
            Err(Error::decode(format!("corrupt JPEG ({msg})")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_png(
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(color);
            enc.set_depth(depth);
            let mut writer = enc.write_header().unwrap();
            writer.write_image_data(data).unwrap();
        }
        out
    }

    #[test]
    fn gray8_round_trips() {
        let data: Vec<u8> = (0..12).collect();
        let png = encode_png(4, 3, png::ColorType::Grayscale, png::BitDepth::Eight, &data);
        let img = decode_gray(&png, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((img.width, img.height), (4, 3));
        assert_eq!(img.data, data);
    }

    #[test]
    fn gray16_keeps_high_byte() {
        let data = [0x12u8, 0xff, 0xab, 0x01];
        let png = encode_png(
            2,
            1,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &data,
        );
        assert_eq!(
            decode_gray(&png, DEFAULT_MAX_PIXELS).unwrap().data,
            vec![0x12, 0xab]
        );
    }

    #[test]
    fn rgb_uses_libpng_weights() {
        let data = [255u8, 0, 0, 10, 10, 10];
        let png = encode_png(2, 1, png::ColorType::Rgb, png::BitDepth::Eight, &data);
        let img = decode_gray(&png, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(img.data, vec![((9797 * 255) >> 15) as u8, 10]);
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let png = encode_png(
            100,
            100,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[0; 10000],
        );
        let err = decode_gray(&png, 9999).unwrap_err().to_string();
        assert!(err.contains("over the limit"), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(decode_gray(b"hello", DEFAULT_MAX_PIXELS).is_err());
        let png = encode_png(
            64,
            64,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[7; 4096],
        );
        assert!(decode_gray(&png[..png.len() / 2], DEFAULT_MAX_PIXELS).is_err());
        assert!(decode_gray(b"\xff\xd8\xff\xe0garbage", DEFAULT_MAX_PIXELS).is_err());
    }

    /// A valid PNG of `w` x `h` grey pixels, all zero, built by hand (one IDAT).
    fn zero_png(w: u32, h: u32) -> Vec<u8> {
        use std::io::Write;
        let row = vec![0u8; w as usize + 1];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..h {
            z.write_all(&row).unwrap();
        }
        let idat = z.finish().unwrap();
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = (body.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(body);
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(body);
            c.extend_from_slice(&crc.sum().to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = PNG_MAGIC.to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &idat));
        png.extend(chunk(b"IEND", b""));
        png
    }

    #[test]
    fn thin_images_are_refused_from_the_header() {
        let png = zero_png(99_000_000, 1);
        assert!(png.len() < 200_000, "{}", png.len());
        let start = std::time::Instant::now();
        let err = decode_gray(&png, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(start.elapsed().as_millis() < 500);
        assert!(matches!(err, Error::Decode { path: None, .. }), "{err}");
        assert!(err.to_string().contains("99000000x1"), "{err}");
        // Small thin images and 1:10 ones decode.
        assert_eq!(
            decode_gray(&zero_png(4096, 1), DEFAULT_MAX_PIXELS)
                .unwrap()
                .width,
            4096
        );
        assert_eq!(
            decode_gray(&zero_png(500, 5000), DEFAULT_MAX_PIXELS)
                .unwrap()
                .height,
            5000
        );
    }
}
