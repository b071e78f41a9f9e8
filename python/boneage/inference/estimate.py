"""One estimate and the one schema every interface writes it in.

Why one type: the command line's JSON, the API's JSON and a Python caller used to name the
same number differently (``months`` here, ``bone_age_months`` there), and only some of them
carried the interval or the delta. :meth:`Estimate.to_dict` is the schema; ``predict --json``
prints it, the API answers it (plus the pictures of the page), so a field means one thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boneage.inference.reference import REFERENCE, AgeComparison

__all__ = ["Estimate", "years_and_months", "years_months_text"]


def years_and_months(months: float) -> dict[str, int]:
    """``{"years": 10, "months": 3}`` for 123.4: rounded to the month first, as read aloud."""
    total = max(0, round(months))
    return {"years": total // 12, "months": total % 12}


def years_months_text(months: float) -> str:
    """``10 y 3 m`` for 123.4 (rounded to the month): how a bone age is read, not 10.3 y."""
    ym = years_and_months(months)
    return f"{ym['years']} y {ym['months']} m"


@dataclass
class Estimate:
    """A bone age for one image, with what a reader needs to weigh it."""

    source: str
    male: int
    bone_age_months: float
    sigma_months: float | None
    localiser: str
    box: tuple[int, int, int, int]
    interval_90_months: tuple[float, float] | None = None
    """Where the true bone age lies for 90 % of films like this one (split-conformal,
    fitted on validation when the model was shipped); None for a model shipped without."""
    orientation: str = "as given"
    """What was done to bring the film to the training data's orientation (upright, left
    hand), e.g. "rotated 90° clockwise"; "as given" when nothing."""
    orientation_confidence: float | None = None
    sex_source: str = ""
    """Where the sex came from: "given", "labels", "DICOM PatientSex" or "default"."""
    age: AgeComparison | None = None
    """The comparison with the chronological age, when one is known."""
    age_source: str = ""
    notes: list[str] = field(default_factory=list)
    """What the caller should know about this input (a multi-frame DICOM's frame, a given
    sex that disagrees with the DICOM's, an estimate forced past the input gate)."""
    dicom: dict[str, str] | None = None
    """For a DICOM input: its SOP Instance UID, photometric interpretation, bits, transfer
    syntax and the value mapping used (``DicomInfo.manifest_fields``); no patient identifier."""

    @property
    def months(self) -> float:
        """The bone age in months (the older name of :attr:`bone_age_months`)."""
        return self.bone_age_months

    @property
    def years(self) -> float:
        return self.bone_age_months / 12.0

    def to_dict(self) -> dict[str, Any]:
        """The result schema shared by ``predict --json``, the API and Python callers."""
        a = self.age
        x0, y0, x1, y1 = (int(v) for v in self.box)
        return {
            "source": self.source,
            "sex": "M" if self.male else "F",
            "sex_source": self.sex_source,
            "bone_age_months": self.bone_age_months,
            "bone_age": years_and_months(self.bone_age_months),
            "bone_age_years": self.years,
            "interval_90_months": None
            if self.interval_90_months is None
            else [float(v) for v in self.interval_90_months],
            "sigma_months": self.sigma_months,
            "age_months": None if a is None else a.age_months,
            "age_source": self.age_source if a is not None else "",
            "delta_months": None if a is None else a.delta_months,
            "sds": None if a is None else a.sds,
            "reference_sd_months": None if a is None else a.sd_months,
            "within_normal_range": None if a is None else a.within_normal_range,
            "age_within_interval": None if a is None else a.within_interval,
            "reference": None if a is None else REFERENCE.name,
            "orientation": self.orientation,
            "orientation_confidence": self.orientation_confidence,
            "localiser": self.localiser,
            "crop_box": {"x0": x0, "y0": y0, "x1": x1, "y1": y1},
            "notes": list(self.notes),
            "dicom": self.dicom,
        }
