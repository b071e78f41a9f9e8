//! Owned and borrowed 8-bit single-channel images.
//!
//! Views carry a row stride so a crop is a view into its parent, never a copy.

use crate::error::{Error, Result};

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

    pub fn to_gray(&self) -> Gray {
        let mut data = Vec::with_capacity(self.width * self.height);
        for y in 0..self.height {
            data.extend_from_slice(self.row(y));
        }
        Gray {
            width: self.width,
            height: self.height,
            data,
        }
    }
}
