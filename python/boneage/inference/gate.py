"""The input gate: is this image a hand radiograph the model can read? If not, say why.

Why: a network answers whatever it is shown. A grey square, a page of text or noise used to
get a confident bone age, which a clinician cannot tell from a real one. The gate refuses them
in two steps, each fitted or justified on data rather than written as special cases:

1. **Image statistics** of the decoded grey image that every radiograph satisfies, checked
   first because they give the plainest reasons: a sane size (at least 32 px a side, not a
   strip), not (nearly) uniform, and neighbouring pixels that are correlated as in any
   photographed object (independent noise is not). The limits (:class:`Limits`) sit far
   outside what real films show (``benches/gate_errors.py`` prints the margins).
2. **Distance from the training distribution** in the model's own feature space: each stage's
   feature map averaged over the image (the last of them is the global pooling that feeds
   the regression head; an ensemble gives each member's). What the model did not learn to
   see lands far from where validation films land. Per stage, the distance is the
   Mahalanobis distance under a probabilistic-PCA covariance (Tipping and Bishop, 1999): the
   leading principal directions of the validation features keep their own variances and
   every other direction shares the mean of the remaining ones. That is a shrunk, invertible
   covariance even with fewer films than features, and small enough (16 directions a stage)
   to travel inside the model file's metadata. The stages' distances are pooled into one
   score. The threshold is a quantile of *out-of-fold* scores of validation films (each film
   scored by a fit that did not see it), so the false-reject rate it promises is not
   flattered by in-sample optimism.

:func:`fit_gate` runs on validation features (shipping's job: ``Gate.to_dict()`` goes into
``ModelMeta.extra``). To judge one decoded image::

    verdict = gate.check_statistics(img)        # before preparing: a 1x1 image cannot be
    if verdict.ok:
        pre = prepare(img, loaded.preprocessing)[0]
        verdict = gate.check(img, features(loaded, pre[None], [male])[0])
    verdict.raise_if_refused()                  # NotAHandRadiograph(reason), a ValueError

``benches/gate_errors.py`` measures false rejects and false accepts; the non-hand images come
from :mod:`boneage.inference.nonhands`.
"""

from __future__ import annotations

import base64
import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

__all__ = [
    "Block",
    "Gate",
    "ImageStats",
    "Limits",
    "NotAHandRadiograph",
    "Verdict",
    "check_statistics",
    "feature_blocks",
    "features",
    "fit_gate",
    "image_statistics",
]


@dataclass(frozen=True)
class Limits:
    """The statistics' limits; a gate records the ones it was shipped with. Each sits far
    outside what real films show (the minima below are over the 12,611 RSNA training films,
    at 100 px and at 299 px, and the 60 full-resolution ones).

    - ``min_side``: fewest pixels a side: below it no bone of a hand can be made out (the
      model's own input is 100-128 px for a whole hand).
    - ``max_aspect``: longest side over shortest at most (hand films are about 0.5-2; a strip
      is not a film).
    - ``min_range``: spread between the 1st and 99th percentile grey levels (0-1 scale) below
      which the image is uniform: 8 of 255 levels, while the flattest real films (unwindowed
      originals whose background fills most of the frame) span 0.066 at the least.
    - ``min_correlation``: correlation of neighbouring pixels below which the image is noise:
      any photographed or radiographed object is smooth at the scale of a pixel, so
      neighbours correlate (0.29 at the least at 100 px, where a pixel is already a large
      piece of the hand; 0.71 at 299 px, 0.75 at full resolution), while independent noise
      has a correlation near 0 at every scale (within 0.02 on the non-hand set's noise).
    """

    min_side: int = 32
    max_aspect: float = 4.0
    min_range: float = 0.03
    min_correlation: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Limits:
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: float(v) for k, v in d.items() if k in known}
        if "min_side" in kw:
            kw["min_side"] = int(kw["min_side"])
        return cls(**kw)


STATS_SIDE = 256
"""Images are reduced (block means) to at most this many pixels a side before the statistics:
a 2000 px film costs no more than a small one, and film grain, which lowers the neighbour
correlation of a full-resolution film, is averaged away as it is in the model's input."""


class NotAHandRadiograph(ValueError):
    """An image the gate refused; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str, score: float = math.nan) -> None:
        super().__init__(f"not a hand radiograph ({reason})")
        self.reason = reason
        self.score = score


@dataclass(frozen=True)
class Verdict:
    """The gate's answer. ``score``: the feature distance over the threshold (above 1 is
    refused), NaN when no features were given or the statistics already refused."""

    ok: bool
    reason: str = ""
    score: float = math.nan

    def raise_if_refused(self) -> None:
        """Raises :class:`NotAHandRadiograph` unless ``ok``."""
        if not self.ok:
            raise NotAHandRadiograph(self.reason, self.score)


# --- 1. image statistics --------------------------------------------------------------------


@dataclass(frozen=True)
class ImageStats:
    """What :func:`check_statistics` judges; grey levels on a 0-1 scale."""

    height: int
    width: int
    std: float
    range: float
    correlation: float


def _grey01(img: np.ndarray) -> np.ndarray:
    """A decoded image as float32 grey levels in [0, 1]: colour is averaged, integers are
    divided by their type's maximum, floats above 1 by their own maximum."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2) if a.shape[2] >= 3 else a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or colour (H, W, C) image, got {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        if info.min < 0:  # signed: shift to start at zero
            return ((a.astype(np.float32) - info.min) / float(info.max - info.min)).astype(
                np.float32
            )
        return a.astype(np.float32) / np.float32(info.max)
    f = np.nan_to_num(a.astype(np.float32))
    top = float(f.max()) if f.size else 0.0
    return f / np.float32(top) if top > 1.0 else f


def _reduce(g: np.ndarray, side: int = STATS_SIDE) -> np.ndarray:
    """Means of ``f`` x ``f`` blocks, the smallest whole ``f`` that brings the longest side to
    at most ``side`` px (no enlargement). A whole factor, because a fractional area resize
    shares source pixels between neighbours and so would make independent noise look
    correlated (up to 0.2 measured)."""
    f = -(-max(g.shape) // side)
    if f <= 1:
        return g
    h, w = g.shape[0] // f * f, g.shape[1] // f * f
    if h == 0 or w == 0:  # a strip thinner than one block: keep what there is
        return g
    return np.asarray(g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3)))


def _neighbour_correlation(g: np.ndarray) -> float:
    """Pearson correlation of horizontally and vertically adjacent pixels, pooled."""
    pairs = []
    if g.shape[1] > 1:
        pairs.append((g[:, :-1].ravel(), g[:, 1:].ravel()))
    if g.shape[0] > 1:
        pairs.append((g[:-1, :].ravel(), g[1:, :].ravel()))
    if not pairs:
        return 0.0
    a = np.concatenate([p[0] for p in pairs]).astype(np.float64)
    b = np.concatenate([p[1] for p in pairs]).astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def image_statistics(img: np.ndarray) -> ImageStats:
    """The statistics of a decoded image (grey or colour, any integer or float type)."""
    g = _grey01(img)
    h, w = g.shape
    if g.size == 0:
        return ImageStats(h, w, 0.0, 0.0, 0.0)
    r = _reduce(g)
    lo, hi = np.percentile(r, [1.0, 99.0])
    return ImageStats(h, w, float(r.std()), float(hi - lo), _neighbour_correlation(r))


def check_statistics(img: np.ndarray, limits: Limits | None = None) -> Verdict:
    """Refuses what no radiograph looks like, with a plain reason; cheap, so checked first."""
    lim = limits or Limits()
    s = image_statistics(img)
    if min(s.height, s.width) < lim.min_side:
        return Verdict(
            False,
            f"the image is too small: {s.width}x{s.height} px, a hand radiograph needs at "
            f"least {lim.min_side} px a side",
        )
    if max(s.height, s.width) > lim.max_aspect * min(s.height, s.width):
        return Verdict(
            False, f"the image is a {s.width}x{s.height} px strip, not the shape of a film"
        )
    if s.range < lim.min_range:
        return Verdict(
            False, f"the image is nearly uniform: its grey levels span {s.range:.1%} of the scale"
        )
    if s.correlation < lim.min_correlation:
        return Verdict(
            False,
            "the image looks like noise: neighbouring pixels hardly correlate "
            f"({s.correlation:.2f})",
        )
    return Verdict(True)


# --- 2. the model's features ----------------------------------------------------------------

MIN_BLOCK_CHANNELS = 8
"""Feature maps with fewer channels are left out: the mean of one to a few channels is little
more than the image's brightness, which the statistics already judge."""


def _stage_layers(net: Any) -> list[Any]:
    """The last layer at each spatial resolution of ``net`` (in graph order), among layers with
    a spatial feature map of at least :data:`MIN_BLOCK_CHANNELS` channels: the output of each
    stage. The deepest one is what the global pooling before the regression head averages."""
    import keras

    last: dict[tuple[int, ...], Any] = {}
    for layer in net.layers:
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.Model):
            continue
        out = getattr(layer, "output", None)
        shape = getattr(out, "shape", None)
        if shape is None or len(shape) < 4 or (shape[-1] or 0) < MIN_BLOCK_CHANNELS:
            continue
        key = tuple(int(s or 0) for s in shape[1:-1])
        last.pop(key, None)  # re-insert: the order is that of each resolution's last layer
        last[key] = layer
    if not last:
        raise ValueError(f"{net.name}: no spatial feature maps to summarise")
    return list(last.values())


_EXTRACTORS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def _extractors(model: Any) -> list[Any]:
    """One sub-model per network (each ensemble member, or the model itself) from the inputs
    to its stage outputs; built once per model."""
    try:
        return _EXTRACTORS[model]
    except (KeyError, TypeError):
        pass
    import keras

    from boneage.models.ensemble import members

    built = [
        keras.Model(net.inputs, [layer.output for layer in _stage_layers(net)])
        for net in members(model) or [model]
    ]
    try:
        _EXTRACTORS[model] = built
    except TypeError:  # not weak-referenceable: built again next time
        pass
    return built


def feature_blocks(loaded: Any) -> tuple[int, ...]:
    """The widths of the blocks :func:`features` returns side by side (one per stage of each
    network): what :func:`fit_gate` needs as ``blocks``."""
    model = getattr(loaded, "model", loaded)
    return tuple(int(o.shape[-1]) for net in _extractors(model) for o in net.outputs)


def features(
    loaded: Any, prepared_images: np.ndarray, male: np.ndarray | Sequence[float], batch: int = 64
) -> np.ndarray:
    """The model's pooled image features, ``float32 (N, F)``, for prepared uint8 images.

    Each stage's feature map (the last layer at each resolution) averaged over its positions,
    stages side by side in :func:`feature_blocks` order; the last block is the penultimate
    features, the global pooling that feeds the regression head. Why the earlier stages too:
    the head's features are trained to say an age, and a page of shapes or a CT slice can
    land among real films there, while the early stages still see that its edges and
    textures are not a radiograph's (Lee et al., 2018, score every stage for the same reason;
    on this project's non-hand set it cut the false accepts left after the statistics from
    about a third to a few per cent, ``benches/gate_errors.py``).

    ``loaded``: a :class:`~boneage.inference.model.LoadedModel` (or a bare Keras model);
    ``prepared_images``: ``(N, S, S)`` uint8 as :func:`boneage.ingest.preparation.prepare`
    returns them (resized to the model's input when needed, as for an estimate). An ensemble
    gives each member's blocks in turn: independently trained networks do not share feature
    axes, so averaging them would mix unrelated quantities. No test-time copies: the gate
    judges the image, not the estimate's spread.
    """
    import keras

    from boneage.inference.batch import to_model_inputs

    model = getattr(loaded, "model", loaded)
    images = np.asarray(prepared_images, np.uint8)
    if images.ndim == 2:
        images = images[None]
    sexes = np.asarray(male, np.float32).reshape(-1)
    if len(sexes) != len(images):
        raise ValueError(f"{len(images)} images but {len(sexes)} sexes")
    nets = _extractors(model)
    size = int(model.inputs[0].shape[1])
    rows = []
    for start in range(0, len(images), batch):
        x = to_model_inputs(images[start : start + batch], sexes[start : start + batch], size)
        parts = []
        for net in nets:
            maps = net(x, training=False)
            for m in maps if isinstance(maps, (list, tuple)) else [maps]:
                a = keras.ops.convert_to_numpy(m)
                parts.append(a.mean(axis=tuple(range(1, a.ndim - 1))))
        rows.append(np.concatenate(parts, axis=1))
    if not rows:
        return np.zeros((0, sum(feature_blocks(model))), np.float32)
    return np.concatenate(rows).astype(np.float32)


# --- the fitted gate ------------------------------------------------------------------------

COMPONENTS = 16
"""Principal directions per block that keep their own variance (the rest share one). 8 to 32
did about as well on the non-hand fitting set; 16 keeps the gate small."""
QUANTILE_MARGIN = 0.5
"""The threshold is the out-of-fold quantile at ``1 - margin * max_false_reject``: with about
1,000 validation films the 99th percentile itself moves by a few films between samples, so
aiming at half the allowed rate keeps the promised rate on new films."""
FOLDS = 5
"""Cross-fitting folds for the out-of-fold distances."""


def _transform(x: np.ndarray) -> np.ndarray:
    """Signed square root of the features: pooled ReLU activations are skewed, with a long
    right tail; the root makes them closer to Gaussian, which a Mahalanobis distance assumes
    (the "power normalisation" of image descriptors). Measured better than none or log1p."""
    x = np.asarray(x, np.float64)
    return np.asarray(np.sign(x) * np.sqrt(np.abs(x)))


@dataclass(frozen=True, eq=False)
class Block:
    """One stage's fitted feature distribution (after :func:`_transform`): ``mean`` (F),
    ``basis`` (k x F, orthonormal rows), their ``variances`` (k), and the ``residual``
    variance every other direction shares."""

    mean: np.ndarray
    basis: np.ndarray
    variances: np.ndarray
    residual: float

    @property
    def width(self) -> int:
        return int(self.mean.shape[0])

    def distance2(self, z: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance under ``basis' diag(variances) basis + residual (I -
        basis' basis)``, over the width: about 1 for a typical validation film."""
        c = np.atleast_2d(z) - self.mean
        p = c @ self.basis.T
        rest = np.maximum((c * c).sum(axis=1) - (p * p).sum(axis=1), 0.0)
        d2 = (p * p / self.variances).sum(axis=1) + rest / self.residual
        return np.asarray(d2 / self.width)

    @classmethod
    def fit(cls, z: np.ndarray, k: int) -> Block:
        n, f = z.shape
        mean = z.mean(axis=0)
        c = z - mean
        # SVD of the centred data: the covariance's eigenvectors without forming F x F.
        _, s, vt = np.linalg.svd(c, full_matrices=False)
        eig = s * s / max(n - 1, 1)
        k = max(1, min(k, len(eig) - 1, f - 1))
        total = float((c * c).sum()) / max(n - 1, 1)
        # The other F - k directions share the mean remaining variance, counted over all of
        # them (directions the data never varied in get their share too, never zero).
        floor = 1e-12 * max(total, 1e-12)
        residual = max((total - float(eig[:k].sum())) / (f - k), floor)
        return cls(mean, vt[:k], np.maximum(eig[:k], residual), residual)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": _round(self.mean),
            "variances": _round(self.variances),
            "residual": _round(np.asarray([self.residual]))[0],
            "basis_f16": base64.b64encode(self.basis.astype("<f2").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Block:
        mean = np.asarray(d["mean"], np.float64)
        variances = np.asarray(d["variances"], np.float64)
        raw = np.frombuffer(base64.b64decode(d["basis_f16"]), "<f2")
        if mean.ndim != 1 or raw.size != len(variances) * len(mean):
            raise ValueError("a gate block's basis must be len(variances) rows of len(mean)")
        residual = float(d["residual"])
        if not (residual > 0 and (variances > 0).all()):
            raise ValueError("a gate block's variances must be positive")
        return cls(mean, raw.astype(np.float64).reshape(len(variances), len(mean)), variances,
                   residual)  # fmt: skip


def _round(values: np.ndarray, digits: int = 5) -> list[float]:
    """Floats to ``digits`` significant digits: the JSON stays small, distances hardly move."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, np.float64).ravel()]


@dataclass(frozen=True, eq=False)
class Gate:
    """A fitted gate: the statistics' limits, one :class:`Block` per feature block, and the
    largest accepted distance ``threshold``. ``n``, ``quantile`` and ``nonhand_accept`` (the
    share of the non-hand fitting set accepted; None if none was given) say how it was fitted.
    """

    blocks: tuple[Block, ...]
    threshold: float
    n: int = 0
    quantile: float = 0.995
    nonhand_accept: float | None = None
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("a gate needs at least one feature block")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be finite and > 0, got {self.threshold}")

    @property
    def widths(self) -> tuple[int, ...]:
        """The block widths the gate expects (:func:`feature_blocks` of its model)."""
        return tuple(b.width for b in self.blocks)

    def distance(self, features_rows: np.ndarray) -> np.ndarray:
        """Each feature row's distance (rows raw, as :func:`features` gives them): the root
        mean over blocks of their scaled squared Mahalanobis distances, so every stage
        counts alike whatever its width; about 1 for a typical validation film."""
        z = _transform(np.atleast_2d(features_rows))
        if z.shape[1] != sum(self.widths):
            raise ValueError(
                f"the gate was fitted on {sum(self.widths)} features, got {z.shape[1]}: "
                "features of another model?"
            )
        d2 = [
            b.distance2(part) for b, part in zip(self.blocks, _split(z, self.widths), strict=True)
        ]
        return np.asarray(np.sqrt(np.mean(d2, axis=0)))

    def check_statistics(self, decoded_image: np.ndarray) -> Verdict:
        """The image statistics alone (with this gate's recorded limits)."""
        return check_statistics(decoded_image, self.limits)

    def check(self, decoded_image: np.ndarray, features_row: np.ndarray | None = None) -> Verdict:
        """Statistics first (plain reasons), then, with ``features_row`` (one row of
        :func:`features` for the prepared image), the distance from validation films."""
        stats = self.check_statistics(decoded_image)
        if not stats.ok or features_row is None:
            return stats
        return self.check_features(features_row)

    def check_features(self, features_row: np.ndarray) -> Verdict:
        """The distance from validation films alone, for a caller that has already checked
        the image statistics (the predictor does so before it spends the features' pass)."""
        score = float(self.distance(np.asarray(features_row).reshape(1, -1))[0]) / self.threshold
        if not math.isfinite(score) or score > 1.0:
            return Verdict(
                False,
                "the image does not look like the hand radiographs the model was trained on "
                f"(distance {score:.2f} times the limit)",
                score,
            )
        return Verdict(True, "", score)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and compact: it travels in the model file's metadata. The bases are
        float16 in base64 (a third of the size of decimal lists, and untouched by the
        indentation of the metadata's JSON); the rest are decimal lists."""
        return {
            "method": "image statistics, then the PPCA Mahalanobis distance of pooled stage "
            "features from validation films",
            "transform": "signed sqrt",
            "threshold": _round(np.asarray([self.threshold]))[0],
            "n": self.n,
            "quantile": self.quantile,
            "nonhand_accept": self.nonhand_accept,
            "limits": self.limits.to_dict(),
            "blocks": [b.to_dict() for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        if d.get("transform", "signed sqrt") != "signed sqrt":
            raise ValueError(f"unknown gate feature transform {d.get('transform')!r}")
        na = d.get("nonhand_accept")
        return cls(
            blocks=tuple(Block.from_dict(b) for b in d["blocks"]),
            threshold=float(d["threshold"]),
            n=int(d.get("n", 0)),
            quantile=float(d.get("quantile", 0.995)),
            nonhand_accept=None if na is None else float(na),
            limits=Limits.from_dict(d.get("limits") or {}),
        )


def _split(z: np.ndarray, widths: Sequence[int]) -> list[np.ndarray]:
    """The columns of each block, in order."""
    edges = np.cumsum((0, *widths))
    return [z[:, lo:hi] for lo, hi in itertools.pairwise(edges)]


def _fit_blocks(z: np.ndarray, widths: Sequence[int], k: int) -> tuple[Block, ...]:
    return tuple(Block.fit(part, k) for part in _split(z, widths))


def fit_gate(
    val_features: np.ndarray,
    nonhand_features: np.ndarray | None = None,
    max_false_reject: float = 0.01,
    *,
    blocks: Sequence[int] | None = None,
    components: int = COMPONENTS,
    folds: int = FOLDS,
    seed: int = 0,
) -> Gate:
    """Fits a gate on validation films' features (never test).

    ``blocks``: the widths of :func:`feature_blocks` for the model (None: one block, the
    whole row). Each block's distribution (mean, leading ``components`` directions, shared
    residual variance) is fitted on all of ``val_features``. The threshold is the ``1 -
    QUANTILE_MARGIN * max_false_reject`` split-conformal quantile of *out-of-fold*
    distances: ``folds`` fits, each scoring the films it left out, so every film is judged as
    a new one would be. ``nonhand_features`` (images known not to be hand radiographs, that
    passed the statistics) only measure the share the gate lets through, recorded as
    ``nonhand_accept``.
    """
    x = _transform(np.asarray(val_features))
    n = len(x)
    if x.ndim != 2 or n < max(2 * folds, 20):
        raise ValueError(f"a gate needs at least {max(2 * folds, 20)} feature rows, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("validation features must be finite")
    if not 0.0 < max_false_reject < 0.5:
        raise ValueError(f"max_false_reject must be in (0, 0.5), got {max_false_reject}")
    widths = tuple(int(w) for w in blocks) if blocks is not None else (x.shape[1],)
    if sum(widths) != x.shape[1] or min(widths) < 2:
        raise ValueError(f"blocks {widths} do not split {x.shape[1]} features")
    quantile = 1.0 - QUANTILE_MARGIN * max_false_reject
    order = np.random.default_rng(seed).permutation(n)
    oof = np.empty(n)
    for fold in range(folds):
        held = order[fold::folds]
        kept = np.setdiff1d(order, held)
        part = Gate(_fit_blocks(x[kept], widths, components), threshold=1.0)
        oof[held] = part.distance(np.asarray(val_features)[held])
    gate = Gate(
        _fit_blocks(x, widths, components),
        threshold=_conformal(oof, quantile),
        n=n,
        quantile=quantile,
    )
    if nonhand_features is not None and len(nonhand_features):
        accepted = gate.distance(np.asarray(nonhand_features)) <= gate.threshold
        gate = replace(gate, nonhand_accept=float(accepted.mean()))
    return gate


NONHANDS_PER_KIND = 8
"""Non-hand images of each kind made to measure a shipped gate's false accepts."""


def fit_for_model(
    loaded: Any,
    val_images: np.ndarray,
    val_male: np.ndarray,
    max_false_reject: float = 0.01,
    seed: int = 0,
) -> Gate:
    """The gate for a model about to ship: fitted on its validation split's prepared images
    (``(N, S, S)`` uint8 as the shards hold them), with the share of the ``fit`` part of
    :mod:`boneage.inference.nonhands` it lets through recorded. The ``test`` part stays
    unseen for ``benches/gate_errors.py``."""
    from boneage.inference.nonhands import generate
    from boneage.ingest.preparation import prepare

    val = features(loaded, val_images, val_male)
    films = [np.asarray(im) for im in val_images[:NONHANDS_PER_KIND]]
    kept = [x.image for x in generate("fit", NONHANDS_PER_KIND, seed, films)]
    kept = [im for im in kept if check_statistics(im).ok]
    nonhand = None
    if kept:
        pre = np.stack([prepare(im, loaded.preprocessing)[0] for im in kept])
        nonhand = features(loaded, pre, (np.arange(len(pre)) % 2).astype(np.float32))
    return fit_gate(val, nonhand, max_false_reject, blocks=feature_blocks(loaded), seed=seed)


def _conformal(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (split-conformal): a new exchangeable
    film scores above it with probability at most ``1 - level``."""
    s = np.sort(np.asarray(scores, np.float64))
    k = math.ceil((len(s) + 1) * level)
    return float(s[min(k, len(s)) - 1])
