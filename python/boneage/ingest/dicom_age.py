"""The patient's chronological age, read from a DICOM header.

A radiograph from a PACS usually carries the age the SDS needs, so nobody has to type it:
``PatientAge`` (0010,1010), written by the modality at acquisition, or else the study date
minus the birth date. This module reads those fields from a pydicom ``Dataset`` that has
already been parsed; it never touches pixels and never imports pydicom itself (any object
with the keywords as attributes will do), so it costs nothing when no DICOM is involved.

Order of the sources, first usable one wins:

1. ``PatientAge``: an Age String (AS, PS3.5 6.2) ``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``.
   It is what the modality recorded for this very exposure, so it is preferred over dates.
2. ``StudyDate`` minus ``PatientBirthDate``: the date the study was made.
3. ``AcquisitionDate`` minus ``PatientBirthDate``: for files whose study date is missing.

Units: a month is :data:`DAYS_PER_MONTH` = 365.25 / 12 = 30.4375 days, the mean Gregorian
month, so that 12 months make a year of 365.25 days. Hence ``nnnY`` = nnn x 12 months,
``nnnM`` = nnn months, ``nnnW`` = nnn x 7 / 30.4375 and ``nnnD`` = nnn / 30.4375 months, and
a date difference of d days is d / 30.4375 months.

A value that cannot be read (an AS that is not digits and a unit, a date that is not a
calendar date, a study dated before the birth, an element pydicom fails to decode) is
skipped and the next source tried; when none is usable the answer is ``(None, "")``. Nothing
here raises: a header field is never a reason to refuse a film. The age is returned as read,
not range-checked: :func:`boneage.inference.reference.compare` refuses ages outside the
reference (an adult's film, a mistyped year) with a message that says so. The birth date
identifies the patient: it is read, subtracted and dropped, never returned or echoed.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from typing import Any

DAYS_PER_MONTH = 365.25 / 12
"""30.4375: the mean Gregorian month, the unit of every age in months here."""

SOURCES = ("PatientAge", "StudyDate-PatientBirthDate", "AcquisitionDate-PatientBirthDate")
"""The values :func:`dicom_age_months` names as its source, in the order they are tried."""

_AGE_STRING = re.compile(r"(\d{1,3})([DWMY])")
"""An AS value: the standard says exactly three digits, but ``10Y`` or ``6M`` from a lax
modality is as clear, so one to three digits are accepted (after trimming the padding)."""

_MONTHS_PER_UNIT = {"D": 1 / DAYS_PER_MONTH, "W": 7 / DAYS_PER_MONTH, "M": 1.0, "Y": 12.0}

_DATE = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
"""A DA value, ``YYYYMMDD``, or the ``YYYY.MM.DD`` of ACR-NEMA that PS3.5 asks readers to
accept from old files."""


def _field(ds: Any, keyword: str) -> Any:
    """The value of ``keyword`` in ``ds``, or None when absent or undecodable.

    pydicom's warnings are silenced: they quote the odd value, and ``PatientBirthDate``
    identifies the patient (:mod:`boneage.ingest.dicom` never echoes a header either).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(ds, keyword, None)
    except Exception:  # pydicom decodes lazily; a corrupt element raises on first access
        return None


def parse_age_string(value: Any) -> float | None:
    """Months from a DICOM Age String (``"010Y"``, ``"006M"``, ``"012W"``, ``"030D"``).

    None for anything else (empty, a number without a unit, several values, a wrong type).
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _AGE_STRING.fullmatch(value.strip().upper())
    if match is None:
        return None
    return int(match.group(1)) * _MONTHS_PER_UNIT[match.group(2)]


def parse_date(value: Any) -> dt.date | None:
    """A calendar date from a DICOM DA value (``"20200131"``), or None when it is not one.

    A ``datetime.date`` (pydicom's ``DA`` with ``config.datetime_conversion`` on) is taken
    as it is; a ``datetime`` gives its date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:  # 20201340: digits, but no such day
        return None


def dicom_age_months(ds: Any) -> tuple[float | None, str]:
    """The chronological age in months recorded in ``ds``, and which source gave it.

    The source is one of :data:`SOURCES`, or ``""`` with ``None`` when no field is usable.
    See the module docstring for the order, the units and what counts as unusable.
    """
    age = parse_age_string(_field(ds, "PatientAge"))
    if age is not None:
        return age, "PatientAge"
    birth = parse_date(_field(ds, "PatientBirthDate"))
    if birth is None:
        return None, ""
    for keyword in ("StudyDate", "AcquisitionDate"):
        when = parse_date(_field(ds, keyword))
        if when is not None and when >= birth:
            return (when - birth).days / DAYS_PER_MONTH, f"{keyword}-PatientBirthDate"
    return None, ""


__all__ = [
    "DAYS_PER_MONTH",
    "SOURCES",
    "dicom_age_months",
    "parse_age_string",
    "parse_date",
]
