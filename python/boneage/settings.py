"""The preprocessing settings: one type, written next to the shards, embedded in the model.

How an image was prepared is a fact about the data, not a training option. The bulk job
writes it once as ``OUT/preprocessing.json``; ``train`` reads it from ``--data`` (a flag that
disagrees is an error) and embeds it in the model file; ``Predictor`` applies it to every
input. So a model never sees images prepared differently from the ones it learned on.

Two modes:

* ``crop`` (the paper's): localise the hand, crop, CLAHE, pad to a square, area-resize.
* ``squash``: the whole film resized to ``image_size`` x ``image_size`` (aspect ratio not
  kept), then CLAHE. This is how the public 100 px and 299 px RSNA copies were made (whole
  films squashed to squares), so a model trained on them needs any other input -- a
  full-resolution hospital PNG, a 299 px copy, a 100 px one -- prepared the same way.

``interpolation`` names the resize filter of the ``squash`` mode. The public 100 px RSNA
copies were made with a plain bilinear resize of the full film, without anti-aliasing: on the
41 training films that exist at both sizes, OpenCV's INTER_LINEAR reproduces the 100 px copy
to 0.56 grey levels on average, INTER_AREA to 2.11 (``benches/fullres_consistency.py``). A
model trained on those copies therefore wants ``linear``; ``area`` is the default (and what
files from before this setting used).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MODES: tuple[str, ...] = ("crop", "squash")
LOCALISERS: tuple[str, ...] = ("auto", "mediapipe", "native", "none")
INTERPOLATIONS: tuple[str, ...] = ("area", "linear")
"""How a film is resized to the model's side: OpenCV's INTER_AREA or INTER_LINEAR, bit-exact."""
SETTINGS_FILE = "preprocessing.json"
"""The name of the settings file that sits next to the shards."""

MALE_VALUES = frozenset({"true", "t", "1", "m", "male", "yes", "y"})
FEMALE_VALUES = frozenset({"false", "f", "0", "female", "no", "n"})
"""How label files, the command line and DICOM ``PatientSex`` spell sex (lower-cased)."""


MAX_AGE_MONTHS = 240.0
"""The highest age accepted (20 years), chronological or bone age in a label: past it the
atlas, the model and a bone age all stop meaning anything (the hand is mature)."""


def check_age_months(age: float, shown: object) -> float:
    """``age`` if it is a usable chronological age, else a ValueError that quotes ``shown``."""
    if not math.isfinite(age):
        raise ValueError(f"age_months {shown!r} is not a finite number of months")
    if age < 0:
        raise ValueError(f"age_months {shown!r} is negative; an age is 0 months or more")
    if age > MAX_AGE_MONTHS:
        raise ValueError(
            f"age_months {shown!r} is above {MAX_AGE_MONTHS:g} months "
            f"({MAX_AGE_MONTHS / 12:g} years), beyond the reference and the model"
        )
    return age


def parse_age_months(value: str | float | None) -> float | None:
    """A chronological age in months from a labels-CSV cell or a command-line value.

    ``None`` and an empty (or blank) string mean "no age given" and give ``None``: a labels
    CSV may lack the age of some films. A number, or a string holding one, is returned as a
    float when finite and within 0..:data:`MAX_AGE_MONTHS`. Anything else raises
    ``ValueError`` naming the value: a NaN, a negative or a too-large age, text that is not a
    number, a bool. A typed age that cannot be used is an error, never a silent "no age",
    because the SDS would then be missing without anyone knowing why. (A CSV reader that maps
    empty cells to NaN, as pandas does, should pass the cell's text instead.)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"age_months {value!r} is a yes/no value, not a number of months")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            age = float(text)
        except ValueError:
            raise ValueError(f"age_months {value!r} is not a number of months") from None
    else:
        try:
            age = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"age_months {value!r} is not a number of months") from None
    return check_age_months(age, value)


def parse_sex(value: str | int | bool | None) -> int | None:
    """1 for male, 0 for female, None when ``value`` names neither.

    The one vocabulary for every source of sex (label CSVs, ``--sex``, ``Predictor``), so a
    value accepted in one place means the same everywhere.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    key = str(value).strip().lower()
    return 1 if key in MALE_VALUES else 0 if key in FEMALE_VALUES else None


@dataclass(frozen=True)
class Preprocessing:
    """How images were prepared for the model (defaults: the paper's)."""

    image_size: int = 256
    clip_limit: float = 2.0
    tile_grid: tuple[int, int] = (8, 8)
    localiser: str = "auto"
    mode: str = "crop"
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {self.mode!r}; use one of {MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; use one of {INTERPOLATIONS}"
            )
        if self.localiser not in LOCALISERS:
            raise ValueError(f"unknown localiser {self.localiser!r}; use one of {LOCALISERS}")
        if self.mode == "crop" and self.interpolation != "area":
            raise ValueError(
                "crop mode area-resizes the padded hand crop (the paper's recipe); "
                "--interpolation applies to the squash mode"
            )
        if self.mode == "squash" and self.localiser != "none":
            raise ValueError("squash mode keeps the whole film: its localiser is 'none'")
        if int(self.image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if not self.clip_limit >= 0:
            raise ValueError(f"clip_limit must be >= 0, got {self.clip_limit}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """From a JSON dict; missing keys take the class's defaults (the one place they are
        defined: files from before ``mode`` and ``interpolation`` were recorded had their
        images area-resized, which is the default). Unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown preprocessing settings {unknown}; known: {sorted(names)}")
        kw: dict[str, Any] = {}
        for key, value in d.items():
            if value is None:
                continue
            if key == "tile_grid":
                cols, rows = value
                kw[key] = (int(cols), int(rows))
            elif key == "image_size":
                kw[key] = int(value)
            elif key == "clip_limit":
                kw[key] = float(value)
            else:
                kw[key] = str(value)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tile_grid"] = list(self.tile_grid)
        return d

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``directory/preprocessing.json`` atomically."""
        path = Path(directory) / SETTINGS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> Preprocessing | None:
        """The settings stored next to the shards in ``directory``, or None if there are none."""
        path = Path(directory) / SETTINGS_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a valid preprocessing file ({e})") from e

    def check_flags(self, **flags: Any) -> None:
        """Raises when a flag given on the command line disagrees with these settings.

        ``None`` means "not given". The stored settings describe the data; a flag can only
        repeat them, never override them, or the model would claim a preparation its
        training images never had.
        """
        mine = self.to_dict()
        wrong = []
        for key, value in flags.items():
            if value is None:
                continue
            have = mine[key]
            given = list(value) if isinstance(value, tuple) else value
            if given != have:
                wrong.append(f"--{key.replace('_', '-')} {given} (the data says {have})")
        if wrong:
            raise ValueError(
                "these flags disagree with the preprocessing stored next to the shards: "
                + "; ".join(wrong)
                + ". Drop them (the data's own settings are used) or preprocess again."
            )
