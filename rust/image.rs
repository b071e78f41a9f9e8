//! Owned and borrowed 8-bit single-channel images, and the limits on what is derived from them.
//!
//! Views carry a row stride so a crop is a view into its parent, never a copy.
//!
//! # Bounded resources
//! The decoders bound the decoded image (`max_pixels`); every buffer derived from an image
//! (the padded square, resize outputs and intermediates, CLAHE and localiser buffers) is
//! bounded too, by a check made before anything is allocated, and allocated fallibly (a
//! refused allocation is [`Error::Alloc`], never an abort):
//! - **Aspect-ratio policy for radiographs.** A radiograph is never thinner than 1:10, so a
//!   decoded file whose long side exceeds `MAX_ASPECT_RATIO` (10) times its short side is
//!   refused from its header, before decoding (a decode error, like the pixel limit), unless
//!   its long side is at most `ASPECT_FREE_SIDE` (4096) pixels: small thin images cost nothing
//!   and occur in tests and thumbnails. A file that passes has a padded square of at most
//!   `max(4096², 10 × pixels)`.
//! - **Derived-buffer ceiling.** No derived buffer holds more than `MAX_DERIVED_PIXELS`
//!   (2³⁰) elements: a larger request is a value error naming the buffer. This is what bounds
//!   the functions on in-memory arrays (`pad_to_square` of a 1 x 200,000 array would need a
//!   40-gigapixel square), which keep working on thin arrays whose derived buffers stay small
//!   (the fused `preprocess` never builds the square).

use crate::error::{try_filled, Error, Result};

/// See the module docs: the long side may be at most this many times the short side...
pub const MAX_ASPECT_RATIO: usize = 10;
/// ...unless the long side is at most this many pixels.
pub const ASPECT_FREE_SIDE: usize = 4096;
/// Most elements any buffer derived from an image may hold.
pub const MAX_DERIVED_PIXELS: usize = 1 << 30;

/// Whether a `width` x `height` image passes the aspect-ratio policy (module docs).
pub fn aspect_ok(width: u64, height: u64) -> bool {
    let (long, short) = (width.max(height), width.min(height));
    long <= (ASPECT_FREE_SIDE as u64).max((MAX_ASPECT_RATIO as u64).saturating_mul(short))
}

/// The aspect-ratio policy as a value error.
pub fn check_aspect(what: &str, width: usize, height: usize) -> Result<()> {
    if aspect_ok(width as u64, height as u64) {
        return Ok(());
    }
    Err(Error::value(format!(
        "{what} is {width}x{height}: its long side is over {MAX_ASPECT_RATIO} times its short \
         side (and over {ASPECT_FREE_SIDE} px), thinner than any radiograph; refused before \
         deriving buffers from it"
    )))
}

/// Checks a derived buffer of `width` x `height` elements against [`MAX_DERIVED_PIXELS`];
/// returns the element count.
pub fn check_derived(what: &str, width: usize, height: usize) -> Result<usize> {
    match width.checked_mul(height) {
        Some(n) if n <= MAX_DERIVED_PIXELS => Ok(n),
        _ => Err(Error::value(format!(
            "{what} would be {width}x{height}, over the limit of {MAX_DERIVED_PIXELS} elements \
             for a buffer derived from an image"
        ))),
    }
}

/// An owned, tightly packed (stride == width) 8-bit grey image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// A borrowed 8-bit grey image; row `y` starts at `y * stride`.
#[derive(Clone, Copy, Debug)]
pub struct GrayView<'a> {
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub data: &'a [u8],
}

impl Gray {
    /// A zeroed image, checked against [`MAX_DERIVED_PIXELS`] and allocated fallibly.
    pub fn try_new(width: usize, height: usize, what: &'static str) -> Result<Self> {
        let n = check_derived(what, width, height)?;
        Ok(Gray {
            width,
            height,
            data: try_filled(n, 0, what)?,
        })
    }

    /// A zeroed image (infallible: for sizes already bounded by the caller).
    pub fn new(width: usize, height: usize) -> Self {
        Gray {
            width,
            height,
            data: vec![0; width * height],
        }
    }

    pub fn from_vec(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if data.len() != width * height {
            return Err(Error::value(format!(
                "buffer of {} bytes does not hold a {width}x{height} image",
                data.len()
            )));
        }
        Ok(Gray {
            width,
            height,
            data,
        })
    }

    pub fn view(&self) -> GrayView<'_> {
        GrayView {
            width: self.width,
            height: self.height,
            stride: self.width,
            data: &self.data,
        }
    }
}

impl<'a> GrayView<'a> {
    /// A view over a packed buffer, checking that it is large enough.
    pub fn new(width: usize, height: usize, stride: usize, data: &'a [u8]) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::value(format!(
                "empty image ({width}x{height}): both sides must be at least 1 pixel"
            )));
        }
        if stride < width || data.len() < (height - 1) * stride + width {
            return Err(Error::value("image buffer is smaller than its shape says"));
        }
        Ok(GrayView {
            width,
            height,
            stride,
            data,
        })
    }

    #[inline]
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width]
    }

    /// The sub-image `[x0, x1) x [y0, y1)`, validated against this view.
    pub fn crop(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> Result<GrayView<'a>> {
        if x0 >= x1 || y0 >= y1 || x1 > self.width || y1 > self.height {
            return Err(Error::value(format!(
                "crop box ({x0}, {y0}, {x1}, {y1}) is empty or outside the {}x{} image",
                self.width, self.height
            )));
        }
        let start = y0 * self.stride + x0;
        Ok(GrayView {
            width: x1 - x0,
            height: y1 - y0,
            stride: self.stride,
            data: &self.data[start..],
        })
    }

    pub fn to_gray(&self) -> Result<Gray> {
        let mut data = crate::error::try_with_capacity(self.width * self.height, "image copy")?;
        for y in 0..self.height {
            data.extend_from_slice(self.row(y));
        }
        Ok(Gray {
            width: self.width,
            height: self.height,
            data,
        })
    }
}
