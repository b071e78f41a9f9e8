//! PNG and JPEG to 8-bit grey, as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` gives it.
//!
//! - 8-bit grey: as stored. 16-bit grey: the high byte (libpng's `strip_16`).
//! - Low bit depths and palettes: expanded to 8 bits first (libpng's `expand`).
//! - Colour: libpng's `rgb_to_gray` with OpenCV's coefficients (0.299, 0.587), i.e.
//!   `(9797 R + 19234 G + 3737 B) >> 15` for 8-bit samples (truncated), and
//!   `(... + 16384) >> 15` on 16-bit samples before the high byte is kept. Alpha is dropped.
//!   When a colour file declares a significant gamma (a `gAMA` chunk, or `sRGB`, which means
//!   1/2.2), libpng converts in linear light through its gamma tables; so do we: the 8-bit
//!   tables for 8-bit samples (palettes included), and for 16-bit samples the 11-bit-indexed
//!   16-bit tables libpng builds when the output is stripped to 8 bits (grey-looking pixels
//!   then round to 8 bits instead of keeping the high byte). An `iCCP` profile carries no gamma
//!   for libpng; alpha and `tRNS` are dropped, as OpenCV strips alpha.
//! - JPEG: libjpeg(-turbo compatible, via mozjpeg) decoding straight to its luminance plane,
//!   the same islow IDCT OpenCV's libjpeg-turbo uses (grey, YCbCr at any sampling, RGB,
//!   baseline or progressive). Four-component files (CMYK, YCCK) are decoded to CMYK by
//!   libjpeg and turned grey with OpenCV's `icvCvt_CMYK2Gray` formula.
//! - A JPEG whose data is cut short or damaged (libjpeg's premature-end and corrupt-data
//!   warnings, after which libjpeg fills the rest with grey and OpenCV returns the image) is an
//!   error by default, naming the reason; [`DecodeOptions::allow_truncated`] accepts it.
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

/// How strict decoding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Ceiling on decoded pixels, checked from the header.
    pub max_pixels: u64,
    /// Accept a JPEG whose entropy-coded data is cut short or damaged (libjpeg's
    /// premature-end and corrupt-data warnings), as OpenCV does, with the missing part grey.
    /// Off by default: such a file is an error naming the reason.
    pub allow_truncated: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
            allow_truncated: false,
        }
    }
}

impl From<u64> for DecodeOptions {
    /// Strict decoding with this pixel limit.
    fn from(max_pixels: u64) -> Self {
        DecodeOptions {
            max_pixels,
            allow_truncated: false,
        }
    }
}

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
pub fn decode_gray(data: &[u8], opts: impl Into<DecodeOptions>) -> Result<Gray> {
    let opts = opts.into();
    match sniff(data) {
        Some(Format::Png) => Ok(orientation::apply(
            decode_png(data, opts.max_pixels)?,
            orientation::from_png(data).unwrap_or(1),
        )),
        Some(Format::Jpeg) => Ok(orientation::apply(
            decode_jpeg(data, opts)?,
            orientation::from_jpeg(data).unwrap_or(1),
        )),
        None => Err(Error::decode(
            "not a PNG or JPEG image (unrecognised signature)",
        )),
    }
}

/// Reads and decodes a file; errors name the file.
pub fn read_gray(path: &Path, opts: impl Into<DecodeOptions>) -> Result<Gray> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_gray(&data, opts).map_err(|e| e.with_path(path))
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
    let tables16 = match gamma {
        Some(g) if channels >= 3 && sixteen && gamma_significant(g) => Some(GammaTables16::new(g)),
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
                match &tables16 {
                    Some(t) => t.gray(r, g, b),
                    None => (rgb_to_gray16(r, g, b) >> 8) as u8,
                }
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

/// libpng's `png_gamma_16bit_correct`.
fn gamma_16bit_correct(value: u32, gamma: f64) -> u32 {
    if value > 0 && value < 65535 {
        (65535.0 * (value as f64 / 65535.0).powf(gamma * 1e-5) + 0.5).floor() as u32
    } else {
        value
    }
}

/// libpng's `png_product2` of two fixed-point gammas.
fn product2(a: u32, b: f64) -> f64 {
    (a as f64 * 1e-5 * b + 0.5).floor()
}

/// The 16-bit tables libpng builds for a 16-bit colour file with a significant gamma when the
/// output is stripped to 8 bits, as OpenCV asks (`png_build_gamma_table` with `gamma_shift` 5:
/// every table is indexed by the top 11 bits of a sample).
struct GammaTables16 {
    /// `gamma_16_table` (`png_build_16to8_table`): grey-looking pixels, straight to 8 bits.
    grey: Vec<u8>,
    /// `gamma_16_to_1` and `gamma_16_from_1` (`png_build_16bit_table`).
    to_linear: Vec<u16>,
    from_linear: Vec<u16>,
}

impl GammaTables16 {
    const SHIFT: u32 = 5;
    const MAX: u32 = (1 << (16 - Self::SHIFT)) - 1;

    fn new(file_gamma: u32) -> Self {
        let screen = reciprocal(file_gamma);
        let table16 = |gamma: f64| -> Vec<u16> {
            (0..=Self::MAX)
                .map(|ig| {
                    if gamma_significant(gamma as u32) {
                        let fmax = 1.0 / Self::MAX as f64;
                        (65535.0 * (ig as f64 * fmax).powf(gamma * 1e-5) + 0.5).floor() as u16
                    } else {
                        ((ig * 65535 + (1 << (15 - Self::SHIFT))) / Self::MAX) as u16
                    }
                })
                .collect()
        };
        let mut grey = vec![255u8; Self::MAX as usize + 1];
        let gamma = product2(file_gamma, screen);
        let mut last = 0u32;
        for i in 0..255u32 {
            let bound = gamma_16bit_correct(i * 257 + 128, gamma);
            let bound = (bound * Self::MAX + 32768) / 65535 + 1;
            while last < bound && last <= Self::MAX {
                grey[last as usize] = i as u8;
                last += 1;
            }
        }
        GammaTables16 {
            grey,
            to_linear: table16(reciprocal(file_gamma)),
            from_linear: table16(reciprocal(screen as u32)),
        }
    }

    /// libpng's gamma-corrected 16-bit `png_do_rgb_to_gray`, then the high byte.
    #[inline]
    fn gray(&self, r: u16, g: u16, b: u16) -> u8 {
        let idx = |v: u16| (v >> Self::SHIFT) as usize;
        if r == g && r == b {
            return self.grey[idx(r)];
        }
        let (r, g, b) = (
            self.to_linear[idx(r)] as u32,
            self.to_linear[idx(g)] as u32,
            self.to_linear[idx(b)] as u32,
        );
        let gray16 = ((9797 * r + 19234 * g + 3737 * b + 16384) >> 15) as u16;
        (self.from_linear[idx(gray16)] >> 8) as u8
    }
}

/// libpng's 16-bit `rgb_to_gray`: rounded fixed point.
#[inline]
pub fn rgb_to_gray16(r: u16, g: u16, b: u16) -> u16 {
    ((9797 * r as u32 + 19234 * g as u32 + 3737 * b as u32 + 16384) >> 15) as u16
}

/// What unwinds out of libjpeg through our error manager.
enum JpegFailure {
    /// A fatal error (`error_exit`).
    Fatal(String),
    /// A corrupt-data warning (premature end of file, bad Huffman code, ...), raised only when
    /// truncated files are not accepted.
    CorruptData(String),
}

/// libjpeg's warnings that mean the entropy-coded data is damaged or cut short: the decoder
/// then fills the rest of the image with grey (the "half the film grey" of a truncated file).
/// Other warnings (an unknown JFIF revision, an odd Adobe transform code, a bad ICC marker)
/// concern metadata only and are ignored.
const CORRUPT_DATA_WARNINGS: [i32; 7] = [
    mozjpeg_sys::JWRN_BOGUS_PROGRESSION,
    mozjpeg_sys::JWRN_EXTRANEOUS_DATA,
    mozjpeg_sys::JWRN_HIT_MARKER,
    mozjpeg_sys::JWRN_HUFF_BAD_CODE,
    mozjpeg_sys::JWRN_JPEG_EOF,
    mozjpeg_sys::JWRN_MUST_RESYNC,
    mozjpeg_sys::JWRN_NOT_SEQUENTIAL,
];

/// libjpeg's text for the message in hand.
fn jpeg_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    // SAFETY: `err` points to the error manager libjpeg was created with (ours, alive for the
    // whole decompression).
    let Some(err) = (unsafe { cinfo.err.as_ref() }) else {
        return "libjpeg error".into();
    };
    let code = err.msg_code;
    match err.format_message {
        Some(format) => {
            let mut buf = [0u8; 80];
            // SAFETY: libjpeg's format_message writes at most JMSG_LENGTH_MAX (80) bytes into
            // the buffer; the binding declares it `&[u8; 80]`, the C side takes `char *`.
            let format: unsafe extern "C-unwind" fn(
                &mut mozjpeg_sys::jpeg_common_struct,
                &mut [u8; 80],
            ) = unsafe { std::mem::transmute(format) };
            unsafe { format(cinfo, &mut buf) };
            let text = buf.split(|&c| c == 0).next().unwrap_or_default();
            String::from_utf8_lossy(text).into_owned()
        }
        None => format!("libjpeg message code {code}"),
    }
}

extern "C-unwind" fn jpeg_fatal(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let msg = jpeg_message(cinfo);
    // resume_unwind skips the panic hook: nothing is printed, the decoder catches it.
    std::panic::resume_unwind(Box::new(JpegFailure::Fatal(msg)));
}

extern "C-unwind" fn jpeg_strict_message(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // SAFETY: as in `jpeg_message`.
    let code = unsafe { cinfo.err.as_ref() }.map(|e| e.msg_code);
    if level < 0 && code.is_some_and(|c| CORRUPT_DATA_WARNINGS.contains(&c)) {
        let msg = jpeg_message(cinfo);
        std::panic::resume_unwind(Box::new(JpegFailure::CorruptData(msg)));
    }
}

extern "C-unwind" fn jpeg_quiet_message(
    _cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    _level: std::os::raw::c_int,
) {
}

fn jpeg_error_mgr(allow_truncated: bool) -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills every field of a zeroed manager; we then replace the exit
    // (which would end the process) and the message hooks with our own.
    unsafe {
        let mut err: mozjpeg_sys::jpeg_error_mgr = std::mem::zeroed();
        mozjpeg_sys::jpeg_std_error(&mut err);
        err.error_exit = Some(jpeg_fatal);
        err.emit_message = Some(if allow_truncated {
            jpeg_quiet_message
        } else {
            jpeg_strict_message
        });
        err
    }
}

/// OpenCV's `icvCvt_CMYK2Gray_8u_C4C1R` (14-bit fixed point), applied to what libjpeg gives
/// for a 4-component file (CMYK, or YCCK converted to CMYK).
#[inline]
fn cmyk_to_gray(p: &[u8]) -> u8 {
    const CR: i32 = 4899; // (0.299 * 2^14 + 0.5) as int
    const CG: i32 = 9617;
    const CB: i32 = 1868;
    let k = p[3] as i32;
    let c = k - (((255 - p[0] as i32) * k) >> 8);
    let m = k - (((255 - p[1] as i32) * k) >> 8);
    let y = k - (((255 - p[2] as i32) * k) >> 8);
    ((CB * y + CG * m + CR * c + (1 << 13)) >> 14) as u8
}

fn decode_jpeg(data: &[u8], opts: DecodeOptions) -> Result<Gray> {
    // libjpeg reports failures by unwinding out of our error manager; catch it here so it
    // becomes an error value.
    let result = std::panic::catch_unwind(|| -> std::io::Result<Result<Gray>> {
        let decomp =
            mozjpeg::Decompress::with_err(jpeg_error_mgr(opts.allow_truncated)).from_mem(data)?;
        let (w, h) = decomp.size();
        if let Err(e) = check_pixels(w as u64, h as u64, opts.max_pixels) {
            return Ok(Err(e));
        }
        if decomp.components().len() == 4 {
            // As OpenCV: ask libjpeg for CMYK and convert with OpenCV's own formula.
            let mut started = decomp.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let (w, h) = (started.width(), started.height());
            let cmyk: Vec<[u8; 4]> = started.read_scanlines()?;
            started.finish()?;
            let gray = cmyk.iter().map(|p| cmyk_to_gray(p)).collect();
            return Ok(Gray::from_vec(w, h, gray));
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
        Err(payload) => Err(Error::decode(match payload.downcast::<JpegFailure>() {
            Ok(failure) => match *failure {
                JpegFailure::CorruptData(msg) => format!(
                    "truncated or corrupt JPEG data (libjpeg: {msg}); refused, as the rest of \
                     the image would be filled with grey (allow_truncated=True accepts it)"
                ),
                JpegFailure::Fatal(msg) => format!("corrupt JPEG (libjpeg: {msg})"),
            },
            Err(other) => {
                let msg = other
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| other.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "libjpeg failed".to_string());
                format!("corrupt JPEG ({msg})")
            }
        })),
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

    fn encode_jpeg(w: usize, h: usize, progressive: bool) -> Vec<u8> {
        let pixels: Vec<u8> = (0..w * h).map(|i| ((i * 7) % 251) as u8).collect();
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_GRAYSCALE);
        c.set_size(w, h);
        if progressive {
            c.set_progressive_mode();
        }
        let mut started = c.start_compress(Vec::new()).unwrap();
        started.write_scanlines(&pixels).unwrap();
        started.finish().unwrap()
    }

    #[test]
    fn truncated_jpeg_is_an_error_unless_allowed() {
        for progressive in [false, true] {
            let jpeg = encode_jpeg(64, 48, progressive);
            assert_eq!(decode_gray(&jpeg, DEFAULT_MAX_PIXELS).unwrap().width, 64);
            let cut = &jpeg[..jpeg.len() * 2 / 3];
            let err = decode_gray(cut, DEFAULT_MAX_PIXELS)
                .unwrap_err()
                .to_string();
            assert!(err.contains("Premature end of JPEG file"), "{err}");
            assert!(err.contains("allow_truncated"), "{err}");
            let lenient = DecodeOptions {
                allow_truncated: true,
                ..DecodeOptions::default()
            };
            let img = decode_gray(cut, lenient).unwrap();
            assert_eq!((img.width, img.height), (64, 48));
        }
    }

    #[test]
    fn cmyk_follows_opencv_formula() {
        assert_eq!(cmyk_to_gray(&[0, 0, 0, 0]), 0);
        assert_eq!(cmyk_to_gray(&[255, 255, 255, 255]), 255);
        // c = k - (255 - c) * k >> 8 per channel, then 14-bit weights.
        let (c, m, y, k) = (10i32, 200i32, 90i32, 120i32);
        let f = |v: i32| k - (((255 - v) * k) >> 8);
        let want = (1868 * f(y) + 9617 * f(m) + 4899 * f(c) + 8192) >> 14;
        assert_eq!(cmyk_to_gray(&[10, 200, 90, 120]) as i32, want);
    }

    #[test]
    fn rgb16_with_gamma_follows_libpng_tables() {
        // Expected values read from cv2.imread (OpenCV 4.11's libpng) on the same file.
        let px: [u16; 15] = [
            1000, 30000, 60000, 5000, 5000, 5000, 65535, 0, 12345, 40000, 40000, 40000, 255, 255,
            255,
        ];
        let data: Vec<u8> = px.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 5, 1);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Sixteen);
            enc.set_source_gamma(png::ScaledFloat::from_scaled(45455));
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&data).unwrap();
        }
        let img = decode_gray(&out, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(img.data, vec![122, 19, 148, 156, 1]);
    }
}
