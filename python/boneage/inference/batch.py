"""Prepared images -> the model's estimates, with test-time augmentation (TTA).

Every estimate the project makes (a clinician's one film, a folder, an evaluation split, the
validation predictions shipping chooses by) comes from :func:`predict_arrays`, so a figure
never depends on which command computed it.

TTA averages the plain prediction with ``tta`` mildly augmented copies. The copies of an image
are drawn from a generator seeded by that image's own pixels and sex, never from a shared
stream: an image gets the same copies, and so the same estimate, alone or in a batch of any
size and order (before, the same films gave MAE 7.83 through ``evaluate --images`` and 8.00
through ``predict``). Two networks given the same images also see the same copies, so an
ensemble's TTA estimate is exactly the mean of its members' (shipping scores averages of
networks from their separate predictions).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from boneage import _native as native
from boneage.shards.augment import Augment, augment_params

__all__ = ["TTA_AUGMENT", "TTA_STACK_LIMIT", "image_seed", "predict_arrays", "to_model_inputs"]

TTA_AUGMENT = Augment(rotation=5.0, shift=0.03, zoom=0.05, brightness=0.05, contrast=0.05)
"""The test-time copies' augmentation: the training one (``Augment()``) at about half strength
(every range halved, but the shift 0.03 of 0.05). Full strength was measured worse on
validation, and more than 8 copies no better (benches/tta_copies.py)."""

TTA_STACK_LIMIT = 512
"""Up to this many images x copies go through the model in one call (memory stays small)."""


def to_model_inputs(images: np.ndarray, male: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """uint8 images -> the model's float inputs, resized (INTER_AREA, padded) when needed."""
    images = _at_size(images, size)
    return {
        "image": (images.astype(np.float32) * np.float32(1.0 / 255.0))[..., None],
        "male": male.astype(np.float32)[:, None],
    }


def _at_size(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([native.resize_area(native.pad_to_square(im), size, size) for im in images])


def image_seed(image: np.ndarray, male: float) -> int:
    """The seed of one image's TTA copies: a digest of its shape, pixels and sex."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.asarray(image.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(image).tobytes())
    h.update(b"M" if male >= 0.5 else b"F")
    return int.from_bytes(h.digest(), "little")


def _copies(images: np.ndarray, male: np.ndarray, tta: int) -> np.ndarray:
    """``tta`` augmented copies of each uint8 image, float32 in [0, 1], image-major
    (``(n * tta, S, S)``: image 0's copies, then image 1's...)."""
    assert TTA_AUGMENT.noise == 0  # the copies are the native affine + contrast pass alone
    size = images.shape[1]
    drawn = [
        augment_params(np.random.default_rng(image_seed(im, float(m))), tta, size, TTA_AUGMENT)
        for im, m in zip(images, male, strict=True)
    ]
    affine, contrast, brightness = (np.concatenate(part) for part in zip(*drawn, strict=True))
    return native.augment_images(np.repeat(images, tta, axis=0), affine, contrast, brightness)


def predict_arrays(
    model: Any,
    images: np.ndarray,
    male: np.ndarray,
    batch_size: int = 64,
    tta: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean prediction (months) and sigma (None without uncertainty) for uint8 images.

    ``tta`` > 0 averages the plain prediction with that many augmented copies (seeded per
    image, see the module docstring). Images go through the model in groups whose copies
    number at most :data:`TTA_STACK_LIMIT`, so a clinician's one film takes one call (each
    call carries a fixed cost far above a small batch's compute) and memory stays bounded.
    """
    from boneage.models.heads import split_prediction

    if tta < 0:
        raise ValueError(f"tta must be 0 or more copies, got {tta}")
    size = int(model.inputs[0].shape[1])
    images = _at_size(np.asarray(images, np.uint8), size)
    male = np.asarray(male, np.float32)
    n, k = len(images), tta + 1
    group = max(1, TTA_STACK_LIMIT // k)
    means, sigmas = [], []
    for start in range(0, n, group):
        im, sx = images[start : start + group], male[start : start + group]
        plain = im.astype(np.float32) * np.float32(1.0 / 255.0)
        x = plain if tta == 0 else np.concatenate([plain, _copies(im, sx, tta)])
        # Row order: the plain images, then image 0's copies, image 1's...
        sexes = np.concatenate([sx, np.repeat(sx, tta)])
        out = model.predict(
            {"image": x[..., None], "male": sexes[:, None]}, batch_size=batch_size, verbose=0
        )
        mean, sigma = split_prediction(out)
        m = len(im)
        copies = mean[m:].reshape(m, tta) if tta else np.zeros((m, 0))
        means.append((mean[:m] + copies.sum(axis=1)) / k)
        if sigma is not None:
            sigmas.append(sigma[:m])
    mean_all = np.concatenate(means) if means else np.zeros(0, np.float32)
    return mean_all, (np.concatenate(sigmas) if sigmas else None)
