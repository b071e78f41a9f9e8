"""Training-time augmentation: rotation, shift, zoom, brightness, contrast and pixel noise.

The random parameters are drawn here (numpy) and applied by the native batch augmentation
(one fused pass per pixel, without the GIL); the ``tf.data`` and the TensorFlow-free paths
both call :func:`augment_images`, so they augment identically.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from boneage import _native

__all__ = [
    "Augment",
    "AugmentSpec",
    "augment_batch",
    "augment_images",
    "augment_params",
    "inverse_affine",
]


@dataclasses.dataclass(frozen=True)
class Augment:
    """Random augmentation, drawn independently per image and per epoch.

    Applied in one fused native pass per image (``_native.augment_images``, without the GIL):
    an affine warp (bilinear, zeros outside, as the padding of the preprocessing), then
    contrast about the image mean and brightness on the [0, 1] image, clipped to [0, 1].

    - ``rotation``: degrees, uniform in ``[-rotation, rotation]``.
    - ``shift``: fraction of the image side, uniform in ``[-shift, shift]`` on each axis.
    - ``zoom``: scale uniform in ``[1 - zoom, 1 + zoom]`` (> 1 zooms in).
    - ``brightness``: added offset uniform in ``[-brightness, brightness]``.
    - ``contrast``: factor uniform in ``[1 - contrast, 1 + contrast]`` about the mean of the
      (unwarped) image.
    - ``flip``: mirror left/right with probability 0.5. Off by default: a radiograph's
      left/right is meaningful (and the RSNA hands are mostly left hands).
    - ``noise``: Gaussian pixel noise added last (then clipped), its standard deviation on
      the [0, 1] image drawn per image uniform in ``[0, noise]``. Off by default. It teaches
      the model to ignore grey-level differences of a few levels, which is what separates a
      film resized by another program (or another scanner's export) from the training copy.
    """

    rotation: float = 10.0
    shift: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    flip: bool = False
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rotation", "shift", "zoom", "brightness", "contrast", "noise"):
            value = getattr(self, name)
            if not (value >= 0):  # also rejects NaN
                raise ValueError(f"Augment.{name} must be >= 0, got {value!r}")
        if self.zoom >= 1:
            raise ValueError(f"Augment.zoom must be < 1, got {self.zoom!r}")

    @classmethod
    def coerce(cls, augment: bool | Augment | dict[str, Any] | None) -> Augment | None:
        """``None``/``False`` -> no augmentation, ``True`` -> defaults, a dict -> overrides."""
        if augment is None or augment is False:
            return None
        if augment is True:
            return cls()
        if isinstance(augment, cls):
            return augment
        if isinstance(augment, dict):
            return cls(**augment)
        raise TypeError(f"augment must be a bool, an Augment or a dict, got {type(augment)!r}")


AugmentSpec = bool | Augment | dict[str, Any] | None
"""What the pipelines accept as ``augment``: on/off, an :class:`Augment`, or its fields."""


def inverse_affine(
    cos: Any, sin: Any, scale: Any, tx: Any, ty: Any, size: Any, flip: Any, where: Any
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """The map from output to input pixel of a rotation by theta (counter-clockwise on
    screen, with y pointing down: clockwise), a zoom by ``scale`` about the centre, then a
    shift by (tx, ty) pixels (content moves right/down), and optionally a left/right mirror
    (where ``flip`` is true). Returns ``a0, a1, a2, b0, b1, b2`` with
    ``x_in = a0 x + a1 y + a2``, ``y_in = b0 x + b1 y + b2``.

    Plain arithmetic on numpy arrays or tensors (``where`` is ``np.where`` or ``tf.where``),
    shared by the ``tf.data`` and the numpy paths.
    """
    c = (size - 1.0) / 2.0
    # Output p comes from input q = R(-theta) (p - c - t) / scale + c.
    a0, a1 = cos / scale, sin / scale
    b0, b1 = -sin / scale, cos / scale
    a2 = c - (a0 * (c + tx) + a1 * (c + ty))
    b2 = c - (b0 * (c + tx) + b1 * (c + ty))
    if flip is not None:
        # Mirror the output first: x -> (size - 1) - x.
        a2 = where(flip, a2 + a0 * (size - 1.0), a2)
        b2 = where(flip, b2 + b0 * (size - 1.0), b2)
        a0 = where(flip, -a0, a0)
        b0 = where(flip, -b0, b0)
    return a0, a1, a2, b0, b1, b2


def augment_params(
    rng: np.random.Generator, n: int, size: int, cfg: Augment
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random parameters for ``_native.augment_images``: ``(affine (n, 6), contrast (n,),
    brightness (n,))``, float32, drawn from ``rng``."""
    theta = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation, n))
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom, n)
    tx = rng.uniform(-cfg.shift, cfg.shift, n) * size
    ty = rng.uniform(-cfg.shift, cfg.shift, n) * size
    flip = rng.uniform(0.0, 1.0, n) < 0.5 if cfg.flip else None
    affine = np.stack(
        inverse_affine(np.cos(theta), np.sin(theta), scale, tx, ty, float(size), flip, np.where),
        axis=1,
    )
    contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast, n)
    brightness = rng.uniform(-cfg.brightness, cfg.brightness, n)
    return affine.astype(np.float32), contrast.astype(np.float32), brightness.astype(np.float32)


def augment_images(images: np.ndarray, cfg: Augment, rng: np.random.Generator) -> np.ndarray:
    """Augments uint8 images ``(n, S, S)`` to float32 ``(n, S, S)`` in [0, 1] (native, one
    fused pass per pixel, without the GIL; the optional noise is one numpy pass after it)."""
    affine, contrast, brightness = augment_params(rng, len(images), images.shape[1], cfg)
    out = _native.augment_images(images, affine, contrast, brightness)
    if cfg.noise > 0:
        sigma = rng.uniform(0.0, cfg.noise, len(out)).astype(np.float32)
        out += rng.standard_normal(out.shape, dtype=np.float32) * sigma[:, None, None]
        np.clip(out, 0.0, 1.0, out=out)
    return out


def augment_batch(images: np.ndarray, cfg: Augment, rng: np.random.Generator) -> np.ndarray:
    """Augments float images ``(n, S, S)`` in [0, 1] (what the pipelines yield, before the
    channel axis) to float32 in [0, 1]: the same native augmentation as training.

    The images are quantised back to uint8 first, which is exact for images that came from
    uint8 / 255; prefer :func:`augment_images` on the uint8 images directly.
    """
    pixels = np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return augment_images(pixels, cfg, rng)
