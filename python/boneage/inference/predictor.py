"""Model file -> its embedded preprocessing -> an estimate: the one path every caller takes.

:class:`Predictor` is what ``boneage.predict``, ``boneage.evaluate --images`` and any server
use, so an image is prepared exactly as the model's training images were (the settings come
from the model file, never from a caller's flags). With no model given, ``$BONEAGE_MODEL``,
else the model shipped inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from boneage.inference import reference
from boneage.inference.estimate import Estimate
from boneage.inference.gate import Gate, NotAHandRadiograph, Verdict, check_statistics
from boneage.inference.interval import Interval
from boneage.inference.model import LoadedModel
from boneage.ingest import hands
from boneage.ingest.dicom import DicomInfo, Loaded, load
from boneage.ingest.preparation import prepare
from boneage.modelio import ModelMeta
from boneage.settings import parse_sex

if TYPE_CHECKING:
    from boneage.inference.explain import Explanation
    from boneage.inference.orientation import Orientation

__all__ = ["Estimate", "ImageInput", "NoSexError", "NotAHandRadiograph", "Predictor"]

ImageInput = str | os.PathLike[str] | bytes | np.ndarray
"""What an estimate starts from: a file path, the encoded bytes of a PNG, JPEG or DICOM file
(an upload), or a decoded array."""


class _Made(NamedTuple):
    """What one estimate was made from: the film turned upright (in whose pixels the
    estimate's box lies) and the model's prepared input."""

    estimate: Estimate
    upright: np.ndarray
    prepared: np.ndarray


class NoSexError(ValueError):
    """An image whose sex nobody gave and whose file does not record it."""


class Predictor:
    """Loads a model once and estimates bone age for images or arrays.

    >>> p = Predictor()                    # the shipped model
    >>> p.predict("hand.png", male=True)   # months

    ``tta``: test-time augmentation copies averaged with the plain prediction; ``None`` takes
    the number recorded in the model file (chosen on validation data when it was shipped).
    ``orientation``: turn each film upright (a left hand, fingers up) before the estimate with
    the shipped orientation classifier (True), with the classifier file given, or not at all
    (False: films are taken as given, for data known to be upright).

    Every estimate passes the input gate first (:mod:`boneage.inference.gate`): the image
    statistics, then, when the model file carries a gate fitted on validation, the distance
    of the model's features from validation films. A refused image raises
    :class:`NotAHandRadiograph` unless ``force=True``, which estimates it with a note.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        tta: int | None = None,
        orientation: bool | str | os.PathLike[str] = True,
    ) -> None:
        self.loaded = LoadedModel.open(model_path, tta)
        fitted = self.meta.extra.get("gate")
        self.gate: Gate | None = Gate.from_dict(fitted) if fitted else None
        """The input gate fitted for this model when it was shipped (None: statistics only)."""
        self._orientation = orientation
        self._orienter: Any = None  # OrientationDetector, on first use
        self._detector: Any = None
        self._gradcam: Any = None  # boneage.inference.explain.explainer(model), on first use

    @property
    def path(self) -> Path:
        """The model file (a run folder given resolves to its best checkpoint)."""
        assert self.loaded.path is not None  # opened from a file
        return self.loaded.path

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def meta(self) -> ModelMeta:
        return self.loaded.meta

    @property
    def tta(self) -> int:
        return self.loaded.tta

    def prepare(self, image: ImageInput) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
        """Decode the image, turn it upright and prepare it as the model's training images
        were (its mode): the input :meth:`estimate` gives the model, without the gate."""
        return self._prepare(self._upright(_grey(load(image).image))[0])

    def _upright(self, img: np.ndarray) -> tuple[np.ndarray, Orientation | None]:
        """The film turned upright, and what was found (None when orientation is off)."""
        orienter = self._orienter_or_none()
        if orienter is None:
            return img, None
        upright, found = orienter.normalise(img)
        return upright, found

    def _prepare(self, img: np.ndarray) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
        pp = self.meta.preprocessing
        img = _grey(img)
        if pp.mode == "crop" and pp.localiser in ("mediapipe", "auto") and self._detector is None:
            self._detector = hands.MediaPipeHands()
        return prepare(img, pp, detector=self._detector)

    def estimate(
        self,
        image: ImageInput,
        male: int | bool | str | None = None,
        *,
        labelled_male: int | bool | str | None = None,
        default_male: int | bool | str | None = None,
        age_months: float | str | None = None,
        force: bool = False,
    ) -> Estimate:
        """The estimate for one image.

        Sex, one rule for every interface: ``male`` (given explicitly) wins, else
        ``labelled_male`` (a labels file's), else the DICOM's ``PatientSex``, else
        ``default_male``; none of them is a :class:`NoSexError`. A given or labelled sex that
        disagrees with ``PatientSex`` is kept, with a note. The chronological age: ``age_months``
        when given, else the DICOM's (``PatientAge``, else study date minus birth date); with
        one the estimate carries the delta, the SDS and the normal range.

        A DICOM is recognised by its content, whether ``image`` is a path or the bytes of
        an upload, and decoded to the grey image its PNG would give. The film is turned
        upright first (``orientation`` of the constructor) and must pass the input gate:
        :class:`NotAHandRadiograph` (a ``ValueError``) says why not, unless ``force``.
        """
        sexes = (male, labelled_male, default_male)
        return self._estimate(image, load(image), sexes, age_months, force).estimate

    def _estimate(
        self,
        image: ImageInput,
        loaded: Loaded,
        sexes: tuple[int | bool | str | None, int | bool | str | None, int | bool | str | None],
        age_months: float | str | None,
        force: bool,
    ) -> _Made:
        """The estimate for a decoded image, with the upright and the prepared image."""
        given, labelled, default = sexes
        info = loaded.info
        sex, sex_source, notes = choose_sex(given, labelled, info, default)
        notes += list(info.notes) if info is not None else []
        notes += list(loaded.notes)
        img = _grey(loaded.image)
        stats = self.gate.check_statistics(img) if self.gate else check_statistics(img)
        self._admit(stats, force, notes)
        orientation, confidence = "as given", None
        img, found = self._upright(img)
        if found is not None:
            orientation = found.found.description
            if found.corrected:
                orientation = f"turned upright (arrived {found.found.description})"
            confidence = round(float(found.confidence), 4)
            notes += [found.note] if found.note else []
        pre, loc, box = self._prepare(img)
        sex_row = np.array([sex], np.float32)
        if self.gate is not None:
            from boneage.inference.gate import features

            row = features(self.loaded, pre[None], sex_row)
            self._admit(self.gate.check_features(row), force, notes)  # statistics: above
        mean, sigma = self.loaded.predict(pre[None], sex_row)
        months = float(mean[0])
        band = self.interval
        interval_90 = None if band is None else band.around(months)
        age, age_source = _chronological_age(age_months, info)
        comparison = None
        if age is not None:
            comparison = reference.compare(months, age, bool(sex), interval_90)
        estimate = Estimate(
            source=_source(image),
            male=sex,
            bone_age_months=months,
            sigma_months=None if sigma is None else float(sigma[0]),
            localiser=loc,
            box=tuple(int(v) for v in box),  # type: ignore[arg-type]
            interval_90_months=interval_90,
            orientation=orientation,
            orientation_confidence=confidence,
            sex_source=sex_source,
            age=comparison,
            age_source=age_source,
            notes=notes,
            dicom=None if info is None else info.manifest_fields(),
        )
        return _Made(estimate, img, pre)

    @staticmethod
    def _admit(verdict: Verdict, force: bool, notes: list[str]) -> None:
        """Raises for a refused image, or (``force``) lets it through with a note."""
        if verdict.ok:
            return
        if not force:
            verdict.raise_if_refused()
        notes.append(
            f"estimated although the input gate refused the image ({verdict.reason}): "
            "the number may mean nothing"
        )

    def _orienter_or_none(self) -> Any:
        """The orientation classifier (loaded on first use), or None when turned off."""
        if self._orientation is False:
            return None
        if self._orienter is None:
            from boneage.inference.orientation import OrientationDetector

            path = None if self._orientation is True else self._orientation
            self._orienter = OrientationDetector.open(path)
        return self._orienter

    @property
    def interval(self) -> Interval | None:
        """The model's 90 % interval (fitted on validation when it was shipped), if any."""
        fitted = self.meta.extra.get("interval")
        return None if not fitted else Interval.from_dict(fitted)

    def explain(
        self,
        image: ImageInput,
        male: int | bool | str | None = None,
        *,
        labelled_male: int | bool | str | None = None,
        default_male: int | bool | str | None = None,
        age_months: float | str | None = None,
        force: bool = False,
    ) -> tuple[np.ndarray, Estimate]:
        """A Grad-CAM heatmap (float32 ``(S, S)`` in ``[0, 1]``, over the prepared image) and
        the estimate it explains (the same as :meth:`estimate`'s); see
        :mod:`boneage.inference.explain`.
        """
        ex = self.explanation(
            image,
            male,
            labelled_male=labelled_male,
            default_male=default_male,
            age_months=age_months,
            force=force,
        )
        return ex.heatmap, ex.estimate

    def explanation(
        self,
        image: ImageInput,
        male: int | bool | str | None = None,
        *,
        labelled_male: int | bool | str | None = None,
        default_male: int | bool | str | None = None,
        age_months: float | str | None = None,
        max_pixels: int | None = None,
        force: bool = False,
    ) -> Explanation:
        """Everything a viewer shows: decoded and prepared image, heatmap, estimate.

        ``max_pixels``: refuse larger images (default: the decoder's own limit, as
        :meth:`estimate`); the web app passes its limit so that DICOM is held to it too.
        """
        from boneage.inference.explain import Explanation, explainer

        sexes = (male, labelled_male, default_male)
        made = self._estimate(image, load(image, max_pixels), sexes, age_months, force)
        est, pre = made.estimate, made.prepared
        if self._gradcam is None:
            self._gradcam = explainer(self.model)
        maps = self._gradcam.maps(pre[None], np.array([est.male]))
        return Explanation(
            image=made.upright,
            prepared=pre,
            heatmap=maps.heat[0],
            estimate=est,
            baseline_months=float(maps.baseline[0]),
            direction=int(maps.direction[0]),
            layer=self._gradcam.layer,
        )

    def predict(self, image: ImageInput, male: int | bool | str | None = None) -> float:
        """Bone age in months."""
        return self.estimate(image, male).months


def _grey(img: np.ndarray) -> np.ndarray:
    """The image as one grey plane: a colour image (a photo of a film) as grey, as the
    training films were.

    Accepts what an image can be: (H, W) grey, (H, W, 1) grey with a channel axis, (H, W, 3)
    RGB and (H, W, 4) RGBA (alpha dropped). Anything else is a ``ValueError`` naming the
    shape, checked here because OpenCV would otherwise raise its own ``cv2.error`` (not a
    ``ValueError``, so the commands and the API would call it a fault, not bad input).
    """
    shape = tuple(int(n) for n in img.shape)
    if img.ndim not in (2, 3) or (img.ndim == 3 and shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"an image array must be (height, width) grey, or (height, width, 1/3/4) "
            f"grey/RGB/RGBA; got shape {shape}"
        )
    if img.size == 0:
        raise ValueError(f"an image array must hold pixels; got shape {shape}")
    if img.ndim == 2:
        return img
    if shape[2] == 1:
        return np.ascontiguousarray(img[:, :, 0])
    if img.dtype != np.uint8:
        raise ValueError(f"a colour image array must be uint8; got {img.dtype}")
    import cv2

    code = cv2.COLOR_RGB2GRAY if shape[2] == 3 else cv2.COLOR_RGBA2GRAY
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(img), code))


def _source(image: ImageInput) -> str:
    if isinstance(image, np.ndarray):
        return "<array>"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(image)


def _sex(value: int | bool | str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    sex = parse_sex(value)
    if sex is None:
        raise ValueError(f"unknown {what} {value!r}: use M or F")
    return sex


def choose_sex(
    male: int | bool | str | None,
    labelled: int | bool | str | None,
    info: DicomInfo | None,
    default: int | bool | str | None = None,
) -> tuple[int, str, list[str]]:
    """(0 or 1, where it came from, notes): the one sex rule of every interface.

    An explicit sex wins, else the labels file's, else the DICOM's ``PatientSex``, else the
    default; a chosen sex that disagrees with ``PatientSex`` is kept and noted, so that a
    mix-up of patients or of files is seen, not silently settled either way.
    """
    found = None if info is None else info.male
    for value, what, source in (
        (male, "sex value", "given"),
        (labelled, "labelled sex", "labels"),
    ):
        chosen = _sex(value, what)
        if chosen is None:
            continue
        notes = []
        if found is not None and found != chosen:
            mf = "MF"
            notes.append(
                f"sex {mf[1 - chosen]} ({source}) used; DICOM PatientSex says {mf[1 - found]}"
            )
        return chosen, source, notes
    if found is not None:
        return found, "DICOM PatientSex", []
    fallback = _sex(default, "default sex value")
    if fallback is None:
        raise NoSexError("no sex for this image (none given, and no DICOM PatientSex M/F)")
    return fallback, "default", []


def _chronological_age(
    given: float | str | None, info: DicomInfo | None
) -> tuple[float | None, str]:
    """The age to compare with: the caller's, else the DICOM's; (None, "") when neither."""
    age = reference.parse_age_months(given)
    if age is not None:
        return age, "given"
    if info is not None and info.age_months is not None:
        if 0.0 <= info.age_months <= reference.MAX_AGE_MONTHS:
            return info.age_months, f"DICOM {info.age_source}"
    return None, ""
