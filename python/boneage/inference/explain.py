"""Grad-CAM heatmaps: which parts of the prepared radiograph raised the estimated bone age.

A radiologist will not trust a number without seeing what the model looked at. Grad-CAM
(Selvaraju et al., ICCV 2017) answers that from the model itself, with no retraining and for
any of the convolutional networks in :mod:`boneage.models`:

1. **The feature map.** The rule: the tensor that the model's global pooling layer consumes,
   i.e. the last spatial feature map, after the last convolution block (and its CBAM
   attention, where there is one). It is the deepest map that still has a spatial layout, and
   everything the image contributes to the estimate flows through it, so the split below is
   exact. Every architecture here ends its image path in one ``GlobalAveragePooling2D``; a
   model without one (or a caller who wants another map) names a layer with ``layer=``.
2. **The gradient.** The model is split at that map into a *body* (inputs -> map ``A``) and a
   *head* (``A`` and the sex input -> output), sharing the same layers and weights. The
   gradient of the predicted mean age (column 0 of the output, so an uncertainty head's
   log-variance does not enter) with respect to ``A`` comes from the active backend's
   autodiff: ``tf.GradientTape`` on TensorFlow, ``jax.grad`` over the head's
   ``stateless_call`` on JAX (:func:`gradient`, one function that dispatches on
   ``keras.backend.backend()``). Inference mode throughout: batch norm uses its moving
   statistics and dropout is off, as in a prediction.
3. **The direction.** Grad-CAM was made for a class score, where "raises the score" is the
   evidence. A regression has no such side: a young child's estimate is *lowered* from the
   model's starting point by what it sees. So the target differentiated is the departure
   from the head's *baseline* ``y0``, its output for an all-zero feature map (no image
   evidence; about the training mean for these models, 126 months for the shipped one):
   ``sign(y - y0) * y``. For an estimate above the baseline that is plain Grad-CAM; below
   it, the map shows the regions that pulled the estimate down. (Plain Grad-CAM leaves 6
   of 60 real radiographs with an all-zero map under the shipped model, all young
   children.) :class:`Maps` reports ``y0`` and the direction, so a viewer can say which.
4. **The map.** Channel weights are the spatially averaged gradients; the heatmap is the
   ReLU of the weighted sum of the channels, bilinearly upsampled to the input size and
   divided by its maximum, so it lies in ``[0, 1]`` (all zeros only when no region moved
   the estimate in its direction).

The heatmap explains the plain prediction; test-time augmentation copies are not explained
(the estimate returned next to it by :meth:`boneage.Predictor.explain` is the usual one,
TTA included, so it equals what ``predict`` prints). :func:`overlay` draws it over the
prepared grey image as a colour map, the picture the CLI and the web app show.

An ensemble (:mod:`boneage.models.ensemble`) has no single feature map: :func:`explainer`
explains each member as above and averages their heatmaps (:class:`EnsembleCam`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from boneage.inference.predictor import Estimate

__all__ = [
    "EnsembleCam",
    "Explanation",
    "GradCam",
    "Maps",
    "enlarge",
    "explainer",
    "feature_layer",
    "gradcam",
    "gradient",
    "hand_mask",
    "overlay",
    "png_bytes",
]


def feature_layer(model: Any, layer: str | None = None) -> Any:
    """The layer whose output Grad-CAM weighs (see the module docstring for the rule).

    ``layer`` names one explicitly. Otherwise: the layer feeding the model's global pooling
    layer. Raises ``ValueError`` when there is no such layer (and none was named) or when
    the chosen output is not a 4-D ``(batch, height, width, channels)`` map.
    """
    import keras

    if layer is not None:
        chosen = model.get_layer(layer)
    else:
        pools = [
            lyr
            for lyr in model.layers
            if isinstance(
                lyr, keras.layers.GlobalAveragePooling2D | keras.layers.GlobalMaxPooling2D
            )
        ]
        if len(pools) != 1:
            raise ValueError(
                f"{model.name}: expected one global pooling layer, found {len(pools)}; "
                "name the feature map with layer="
            )
        chosen = pools[0].input._keras_history.operation
    shape = chosen.output.shape
    if len(shape) != 4:
        raise ValueError(f"{model.name}: layer {chosen.name!r} has output {shape}, not a 2-D map")
    return chosen


def gradient(fn: Callable[[Any], Any], x: Any) -> np.ndarray:
    """d ``fn(x)`` / d ``x`` for a scalar-valued ``fn`` on the active Keras backend.

    The one place that differs between backends: TensorFlow records ``fn`` on a
    ``GradientTape``; JAX differentiates it with ``jax.grad`` (``fn`` must then be pure, e.g.
    a ``stateless_call``). Returns a NumPy array shaped like ``x``.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return np.asarray(tape.gradient(y, xt))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    raise NotImplementedError(f"Grad-CAM supports the TensorFlow and JAX backends, not {backend!r}")


@dataclass
class Maps:
    """Grad-CAM for a batch: the heatmaps and what they explain."""

    heat: np.ndarray
    """``(N, S, S)`` float32 in ``[0, 1]``."""
    output: np.ndarray
    """``(N,)`` the plain prediction (mean age, months; no TTA)."""
    baseline: np.ndarray
    """``(N,)`` the head's output for an all-zero feature map (months)."""

    @property
    def direction(self) -> np.ndarray:
        """``(N,)`` +1 where the highlighted regions raised the estimate, -1 lowered it."""
        return np.where(self.output >= self.baseline, 1, -1)


@dataclass
class Explanation:
    """One image explained: what :meth:`boneage.Predictor.explanation` returns."""

    image: np.ndarray
    """The decoded input (grey or colour), in whose pixels ``estimate.box`` lies."""
    prepared: np.ndarray
    """The model's input, uint8 ``(S, S)``, as ``Predictor.prepare`` makes it."""
    heatmap: np.ndarray
    """float32 ``(S, S)`` in ``[0, 1]`` over ``prepared``."""
    estimate: Estimate
    """The usual estimate (TTA included): the number ``predict`` prints."""
    baseline_months: float
    """The model's output with no image evidence (see the module docstring)."""
    direction: int
    """+1: the highlighted regions raised the estimate above the baseline; -1: lowered it."""
    layer: str
    """The layer whose feature map was weighed."""


@dataclass
class GradCam:
    """A model split at its feature map, reusable across calls (the split costs a little).

    ``body`` maps the model inputs to the feature map; ``head`` maps ``[map, male]`` to the
    output. Both share the model's layers and weights.
    """

    model: Any
    layer: str
    body: Any
    head: Any

    @classmethod
    def of(cls, model: Any, layer: str | None = None) -> GradCam:
        import keras

        chosen = feature_layer(model, layer)
        feats = chosen.output
        body = keras.Model(model.inputs, feats, name=f"{model.name}_body")
        named = {t.name: t for t in model.inputs}
        male = named.get("male", model.inputs[-1])
        try:
            head = keras.Model([feats, male], model.outputs[0], name=f"{model.name}_head")
        except ValueError as e:  # the image reaches the output by another path too
            raise ValueError(
                f"{model.name}: the output does not depend on the image only through "
                f"{chosen.name!r}; name another feature map with layer= ({e})"
            ) from e
        return cls(model, chosen.name, body, head)

    def __call__(self, images: np.ndarray, male: np.ndarray) -> np.ndarray:
        """Heatmaps ``(N, S, S)`` float32 in ``[0, 1]`` (see :meth:`maps`)."""
        return self.maps(images, male).heat

    def maps(self, images: np.ndarray, male: np.ndarray) -> Maps:
        """Heatmaps and what they explain for ``N`` images.

        ``images``: uint8 ``(N, S, S)`` prepared images (as :meth:`Predictor.prepare` returns
        them) or float ``(N, S, S[, 1])`` model inputs in ``[0, 1]``; ``male``: ``(N,)`` 0/1.
        """
        import keras

        from boneage.inference import to_model_inputs

        images = np.asarray(images)
        size = int(self.model.inputs[0].shape[1])
        if images.dtype == np.uint8:
            inputs = to_model_inputs(images, np.asarray(male), size)
        else:
            x = images.astype(np.float32)
            inputs = {
                "image": x if x.ndim == 4 else x[..., None],
                "male": np.asarray(male, np.float32).reshape(-1, 1),
            }
        male_t = keras.ops.convert_to_tensor(inputs["male"])
        feats = self.body(
            {"image": keras.ops.convert_to_tensor(inputs["image"]), "male": male_t},
            training=False,
        )
        output = self._mean(self.head([feats, male_t], training=False))
        baseline = self._mean(self.head([keras.ops.zeros_like(feats), male_t], training=False))
        sign = np.where(output >= baseline, 1.0, -1.0).astype(np.float32)
        grads = gradient(self._target(male_t, keras.ops.convert_to_tensor(sign)), feats)
        a = np.asarray(keras.ops.convert_to_numpy(feats), np.float32)
        weights = grads.astype(np.float32).mean(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
        cam = np.maximum((a * weights).sum(axis=-1), 0.0)  # (N, h, w)
        heat = np.stack([_upsample_normalised(c, size) for c in cam])
        return Maps(heat=heat, output=output, baseline=baseline)

    @staticmethod
    def _mean(out: Any) -> np.ndarray:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(out), np.float64)[:, 0]

    def _target(self, male: Any, sign: Any) -> Callable[[Any], Any]:
        """The scalar to differentiate: ``sum_i sign_i * mean_age_i`` over the batch.

        Summing is exact for per-image gradients: in inference mode no image's output depends
        on another image's features.
        """
        import keras

        head = self.head

        def target(out: Any) -> Any:
            return keras.ops.sum(sign * keras.ops.cast(out[:, 0], "float32"))

        if keras.backend.backend() == "jax":
            trainable = [v.value for v in head.trainable_variables]
            frozen = [v.value for v in head.non_trainable_variables]

            def pure(feats: Any) -> Any:
                out, _ = head.stateless_call(trainable, frozen, [feats, male], training=False)
                return target(out)

            return pure
        return lambda feats: target(head([feats, male], training=False))


@dataclass
class EnsembleCam:
    """Grad-CAM for an ensemble (:mod:`boneage.models.ensemble`): each member explained on
    its own, their heatmaps averaged and scaled back to a maximum of 1.

    A member's map shows what moved *its* estimate away from *its* baseline; the average
    shows where the members, together, found their evidence. ``output`` and ``baseline`` are
    the members' means, passed through the ensemble's calibration line when it has one
    (:mod:`boneage.models.calibration`), so ``output`` is the ensemble's own plain estimate.
    """

    model: Any
    parts: list[GradCam]

    @property
    def layer(self) -> str:
        """``member/layer`` of every member, comma separated."""
        return ", ".join(f"{p.model.name}/{p.layer}" for p in self.parts)

    def __call__(self, images: np.ndarray, male: np.ndarray) -> np.ndarray:
        return self.maps(images, male).heat

    def maps(self, images: np.ndarray, male: np.ndarray) -> Maps:
        each = [p.maps(images, male) for p in self.parts]
        heat = np.mean([m.heat for m in each], axis=0)
        top = heat.max(axis=(1, 2), keepdims=True)
        heat = np.where(top > 0, heat / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)
        from boneage.models.calibration import calibration_of

        line = calibration_of(self.model)
        output = np.mean([m.output for m in each], axis=0)
        baseline = np.mean([m.baseline for m in each], axis=0)
        if line is not None:
            output, baseline = line.apply(output), line.apply(baseline)
        return Maps(heat=heat, output=output, baseline=baseline)


def explainer(model: Any, layer: str | None = None) -> GradCam | EnsembleCam:
    """The Grad-CAM for ``model``: member by member for an ensemble (``layer`` then names the
    feature map inside every member), else :meth:`GradCam.of`."""
    from boneage.models.ensemble import members

    parts = members(model)
    if parts:
        return EnsembleCam(model, [GradCam.of(m, layer) for m in parts])
    return GradCam.of(model, layer)


def _upsample_normalised(cam: np.ndarray, size: int) -> np.ndarray:
    import cv2

    up = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    up = np.maximum(up, 0.0)
    top = float(up.max())
    return (up / top if top > 0 else np.zeros_like(up)).astype(np.float32)


def gradcam(
    model: Any, images: np.ndarray, male: np.ndarray, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM heatmaps ``(N, S, S)`` in ``[0, 1]`` (a one-off :func:`explainer`)."""
    return explainer(model, layer)(images, male)


def hand_mask(prepared: np.ndarray) -> np.ndarray:
    """The hand's region in a prepared image: the convex hull of its bright silhouette.

    A yardstick for checking heatmaps (does the heat lie on the hand?), not a segmenter.
    Otsu's threshold on the (CLAHE'd) image, the largest connected component kept (film
    labels and markers are small bright specks), then its convex hull, so that the soft
    tissue and the gaps between the fingers count as hand: a 7 x 7 feature map upsampled to
    the input cannot resolve a finger from the gap next to it, and neither should the check.
    """
    import cv2

    img = np.ascontiguousarray(prepared, np.uint8)
    blur = cv2.GaussianBlur(img, (5, 5), 0)
    _, fg = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return fg > 0
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    contours, _ = cv2.findContours(
        (labels == biggest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    region = np.zeros(img.shape, np.uint8)
    cv2.fillPoly(region, [cv2.convexHull(np.vstack(contours))], (1,))
    return region > 0


def overlay(
    prepared: np.ndarray, heat: np.ndarray, size: int | None = 400, alpha: float = 0.45
) -> np.ndarray:
    """RGB uint8 picture: ``heat`` as a colour map (JET: blue cold, red hot) over the image.

    ``size``: the side of the picture (the 100 px input of the shipped model is too small
    to read on a screen; the grey image is upscaled with cubic, the heat with linear
    interpolation), ``None`` keeps the prepared size. Where the heat is zero the grey image
    shows through untinted, so the picture never hides the anatomy it explains.
    """
    import cv2

    grey = enlarge(prepared, size)
    h: np.ndarray = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if h.shape != grey.shape:
        h = cv2.resize(h, grey.shape[::-1], interpolation=cv2.INTER_LINEAR)
        h = np.clip(h, 0.0, 1.0)
    colour = cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    base = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    a = (alpha * np.sqrt(h))[..., None]  # weak heat tints lightly, strong heat clearly
    return np.clip(base * (1 - a) + colour * a, 0, 255).astype(np.uint8)


def enlarge(prepared: np.ndarray, size: int | None = 400) -> np.ndarray:
    """The prepared grey image at ``size`` x ``size`` (cubic), for a screen; None: as is."""
    import cv2

    grey = np.ascontiguousarray(prepared, np.uint8)
    if size is None or grey.shape == (size, size):
        return grey
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a grey ``(H, W)`` or RGB ``(H, W, 3)`` uint8 image."""
    import cv2

    img: np.ndarray = np.ascontiguousarray(image, np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
