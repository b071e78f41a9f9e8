"""The estimate stage: a model file -> an estimate for an image, a batch or a split.

- :mod:`~boneage.inference.model`: :class:`LoadedModel`, the one road from a model file to
  numbers (its settings, its test-time augmentation count settled once), and the shipped
  model's place (:data:`SHIPPED`, :func:`default_model`);
- :mod:`~boneage.inference.batch`: prepared images -> estimates, with test-time copies seeded
  per image, so an estimate never depends on the batch it sits in;
- :mod:`~boneage.inference.predictor`: :class:`Predictor` and :class:`Estimate`, what a
  clinician's file goes through (decoding, the model's own preprocessing, the sex rule);
- :mod:`~boneage.inference.explain`: Grad-CAM heatmaps of an estimate;
- :mod:`~boneage.inference.gate`, :mod:`~boneage.inference.orientation`,
  :mod:`~boneage.inference.interval`, :mod:`~boneage.inference.reference`: what makes one
  estimate trustworthy (refusing what is not a hand film, turning films upright, the 90 %
  interval, the comparison with the chronological age).

:mod:`boneage.evaluation` builds on this package, never the reverse.
"""

from boneage.inference.batch import TTA_AUGMENT, predict_arrays, to_model_inputs
from boneage.inference.model import SHIPPED, LoadedModel, default_model
from boneage.inference.predictor import (
    Estimate,
    ImageInput,
    NoSexError,
    NotAHandRadiograph,
    Predictor,
)

__all__ = [
    "SHIPPED",
    "TTA_AUGMENT",
    "Estimate",
    "ImageInput",
    "LoadedModel",
    "NoSexError",
    "NotAHandRadiograph",
    "Predictor",
    "default_model",
    "predict_arrays",
    "to_model_inputs",
]
