"""Bone age against chronological age: the delta, the SDS and the normal range.

A bone age means little alone: a clinician reads it against the child's age, in standard
deviations of bone age for that age and sex (SDS), and calls it normal within 2 SD. A delta of
12 months is unremarkable at 14 years (1 SD is about 11 months) and striking at 2 years (about
4 months). This module holds that reference and the arithmetic, and nothing else: no model, no
image, so the Predictor, ``predict``, the API and the page all compute the same SDS.

The reference
-------------
The standard deviations of skeletal age of the Brush Foundation Study children (healthy white
children of Cleveland, Ohio, x-rayed serially between 1931 and 1942), as printed in

    Greulich WW, Pyle SI. *Radiographic Atlas of Skeletal Development of the Hand and
    Wrist*, 2nd edition. Stanford, CA: Stanford University Press; 1959.

the atlas whose standards the RSNA bone ages the model learned from were read against. The SDs
are tabulated by chronological age group: 3, 6, 9, 12 and 18 months, then every 6 months to
5 years, then every year to 17 years for boys (24 groups) and to 16 years for girls (23).

How the values were obtained: they were not typed from a scan of the atlas. They were found
with a search of public source code and copied from the one reproduction that turned up, the
``STD_DEV`` table of ``app/growth_chart.py`` in the University of Toronto MIE429 capstone
project ``github.com/lolzballs/mie429`` (commit e1e3da43fe338da4ca530d548289436c9212a74b),
a bone-age DICOM node built for Trillium Health Partners that labels the table "Brush
Foundation Study". No second independent reproduction was found, and the printed atlas was not
at hand: anyone who has it should check the 47 numbers below against it once. A test pins
them, so that any change is deliberate.

Interpolation
-------------
Between two tabulated ages the SD is interpolated linearly, so the SDS changes smoothly with
age instead of jumping at a group boundary (a child one day past 5 years is not a different
population). Outside the table the nearest tabulated SD is used (clamped): below 3 months the
3-month SD, above 17 years (boys) or 16 years (girls) the last one. The atlas has no younger or
older groups; clamping neither invents values nor refuses a film that the model can read.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from boneage.settings import MAX_AGE_MONTHS, check_age_months, parse_age_months

NORMAL_LIMIT_SDS = 2.0
"""``|SDS| <= 2`` is the normal range clinicians use for bone age (about 95 % of healthy
children of the reference population)."""

_TOLERANCE = 1e-9
"""Slack on the normal-range test, so that a delta of exactly two SDs, as typed, is normal
despite binary rounding of the subtraction."""


@dataclass(frozen=True)
class Reference:
    """Which reference an SDS is computed against, to be printed next to the SDS."""

    name: str
    """A short name for tables and pages."""
    citation: str
    """The full citation, for the docs and the page's limits statement."""
    obtained_from: str
    """Where the numbers in this module were copied from (see the module docstring)."""


REFERENCE = Reference(
    name="Greulich & Pyle (Brush Foundation Study) standard deviations",
    citation=(
        "Greulich WW, Pyle SI. Radiographic Atlas of Skeletal Development of the Hand and "
        "Wrist, 2nd ed. Stanford, CA: Stanford University Press; 1959. Standard deviations "
        "of skeletal age by chronological age and sex, Brush Foundation Study (Cleveland, "
        "1931-1942)."
    ),
    obtained_from=(
        "github.com/lolzballs/mie429, app/growth_chart.py (STD_DEV), commit "
        "e1e3da43fe338da4ca530d548289436c9212a74b; not checked against the printed atlas"
    ),
)

BOYS_SD_MONTHS: tuple[tuple[float, float], ...] = (
    (3.0, 0.69), (6.0, 1.13), (9.0, 1.43), (12.0, 1.97), (18.0, 3.52), (24.0, 3.92),
    (30.0, 4.52), (36.0, 5.08), (42.0, 5.40), (48.0, 6.66), (54.0, 8.36), (60.0, 8.79),
    (72.0, 9.17), (84.0, 8.91), (96.0, 9.10), (108.0, 9.00), (120.0, 9.79), (132.0, 10.09),
    (144.0, 10.38), (156.0, 10.44), (168.0, 10.72), (180.0, 11.32), (192.0, 12.86),
    (204.0, 13.05),
)  # fmt: skip
"""Boys: (chronological age, SD of bone age), both in months, from :data:`REFERENCE`."""

GIRLS_SD_MONTHS: tuple[tuple[float, float], ...] = (
    (3.0, 0.72), (6.0, 1.16), (9.0, 1.36), (12.0, 1.77), (18.0, 3.49), (24.0, 4.64),
    (30.0, 5.37), (36.0, 5.97), (42.0, 7.48), (48.0, 8.98), (54.0, 10.73), (60.0, 11.65),
    (72.0, 10.23), (84.0, 9.64), (96.0, 10.23), (108.0, 10.74), (120.0, 11.73),
    (132.0, 11.94), (144.0, 10.24), (156.0, 10.67), (168.0, 11.30), (180.0, 9.23),
    (192.0, 7.31),
)  # fmt: skip
"""Girls: (chronological age, SD of bone age), both in months, from :data:`REFERENCE`."""


def _table(male: bool) -> tuple[tuple[float, float], ...]:
    return BOYS_SD_MONTHS if male else GIRLS_SD_MONTHS


def sd_months(age_months: float, male: bool) -> float:
    """The standard deviation of bone age, in months, at ``age_months`` for this sex.

    Linear interpolation between the tabulated ages of :data:`BOYS_SD_MONTHS` /
    :data:`GIRLS_SD_MONTHS`, clamped to the first or last tabulated SD outside them (see the
    module docstring for why). Raises ``ValueError`` unless ``age_months`` is finite and
    within 0..:data:`MAX_AGE_MONTHS`.
    """
    age = check_age_months(float(age_months), age_months)
    table = _table(male)
    if age <= table[0][0]:
        return table[0][1]
    if age >= table[-1][0]:
        return table[-1][1]
    i = bisect_right([a for a, _ in table], age)
    (a0, s0), (a1, s1) = table[i - 1], table[i]
    return s0 + (s1 - s0) * (age - a0) / (a1 - a0)


@dataclass(frozen=True)
class AgeComparison:
    """A bone age read against the chronological age, for one film."""

    age_months: float
    """The chronological age the bone age was compared with."""
    delta_months: float
    """Bone age minus chronological age: positive is advanced, negative delayed."""
    sd_months: float
    """The reference SD of bone age at this age and sex (the SDS's denominator), so that a
    reader can redo the arithmetic and see how wide "normal" is in months."""
    sds: float
    """``delta_months / sd_months``: how many reference SDs the bone age is from the age."""
    within_normal_range: bool
    """``|sds| <= 2`` (:data:`NORMAL_LIMIT_SDS`)."""
    within_interval: bool | None
    """Whether the chronological age lies inside the model's own 90 % interval for this
    film, ``None`` when no interval was given. When True the delta is within the model's
    error: the film does not tell the bone age apart from the age, whatever the SDS says."""


def _check_interval(interval_90: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in interval_90)
    except (TypeError, ValueError):
        raise ValueError(f"interval_90 {interval_90!r} is not a pair of numbers [lo, hi]") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"interval_90 {interval_90!r} is not a finite interval with lo <= hi")
    return lo, hi


def compare(
    bone_age_months: float,
    age_months: float,
    male: bool,
    interval_90: tuple[float, float] | None = None,
) -> AgeComparison:
    """Compare a bone age with the chronological age against :data:`REFERENCE`.

    ``interval_90`` is the model's 90 % interval ``(lo, hi)`` for the bone age, in months;
    with it, :attr:`AgeComparison.within_interval` says whether the age lies inside it.
    Raises ``ValueError`` for an age outside 0..:data:`MAX_AGE_MONTHS` or not finite, a bone
    age that is not finite, or an interval that is not a finite ``lo <= hi`` pair. The bone
    age is not range-checked: it is the model's estimate, reported as it is.
    """
    bone = float(bone_age_months)
    if not math.isfinite(bone):
        raise ValueError(f"bone age {bone_age_months!r} is not a finite number of months")
    age = check_age_months(float(age_months), age_months)
    sd = sd_months(age, male)
    delta = bone - age
    sds = delta / sd
    within: bool | None = None
    if interval_90 is not None:
        lo, hi = _check_interval(interval_90)
        within = lo <= age <= hi
    return AgeComparison(
        age_months=age,
        delta_months=delta,
        sd_months=sd,
        sds=sds,
        within_normal_range=abs(sds) <= NORMAL_LIMIT_SDS + _TOLERANCE,
        within_interval=within,
    )


__all__ = [
    "BOYS_SD_MONTHS",
    "GIRLS_SD_MONTHS",
    "MAX_AGE_MONTHS",
    "NORMAL_LIMIT_SDS",
    "REFERENCE",
    "AgeComparison",
    "Reference",
    "compare",
    "parse_age_months",
    "sd_months",
]
