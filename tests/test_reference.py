"""The bone-age reference (SD by age and sex, SDS, normal range) and the age of a DICOM.

Hand-computed cases pin the arithmetic a clinician would redo on paper; the table itself is
pinned value by value, so that a change to the published numbers is a deliberate edit.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import warnings
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boneage.inference import reference as ref
from boneage.inference.reference import (
    BOYS_SD_MONTHS,
    GIRLS_SD_MONTHS,
    MAX_AGE_MONTHS,
    REFERENCE,
    AgeComparison,
    compare,
    parse_age_months,
    sd_months,
)
from boneage.ingest import labels
from boneage.ingest.dicom_age import (
    DAYS_PER_MONTH,
    SOURCES,
    dicom_age_months,
    parse_age_string,
    parse_date,
)

TABLES = {True: BOYS_SD_MONTHS, False: GIRLS_SD_MONTHS}

# -- the table --------------------------------------------------------------------------


def test_table_is_the_published_one():
    ages = [3, 6, 9, 12, 18, 24, 30, 36, 42, 48, 54, 60, *range(72, 205, 12)]
    boys = [
        0.69, 1.13, 1.43, 1.97, 3.52, 3.92, 4.52, 5.08, 5.40, 6.66, 8.36, 8.79,
        9.17, 8.91, 9.10, 9.00, 9.79, 10.09, 10.38, 10.44, 10.72, 11.32, 12.86, 13.05,
    ]  # fmt: skip
    girls = [
        0.72, 1.16, 1.36, 1.77, 3.49, 4.64, 5.37, 5.97, 7.48, 8.98, 10.73, 11.65,
        10.23, 9.64, 10.23, 10.74, 11.73, 11.94, 10.24, 10.67, 11.30, 9.23, 7.31,
    ]  # fmt: skip
    assert list(BOYS_SD_MONTHS) == list(zip(ages, boys, strict=True))
    assert list(GIRLS_SD_MONTHS) == list(zip(ages[:-1], girls, strict=True))


@pytest.mark.parametrize("male", [True, False])
def test_table_ages_increase_and_sds_are_positive(male):
    table = TABLES[male]
    ages = [a for a, _ in table]
    assert ages == sorted(set(ages)), "tabulated ages must strictly increase"
    assert all(0 < a <= MAX_AGE_MONTHS for a in ages)
    assert all(sd > 0 and math.isfinite(sd) for _, sd in table)


def test_reference_is_cited():
    assert "Greulich" in REFERENCE.citation and "Pyle" in REFERENCE.citation
    assert "1959" in REFERENCE.citation and "Brush Foundation" in REFERENCE.citation
    assert REFERENCE.name and REFERENCE.obtained_from


def test_age_limit_is_the_labels_limit():
    assert MAX_AGE_MONTHS == labels.MAX_AGE_MONTHS


# -- interpolation ------------------------------------------------------------------------


@pytest.mark.parametrize("male", [True, False])
def test_sd_at_tabulated_ages_is_the_table(male):
    for age, sd in TABLES[male]:
        assert sd_months(age, male) == pytest.approx(sd, abs=1e-12)


@pytest.mark.parametrize(
    ("age", "male", "expected"),
    [
        (15.0, True, (1.97 + 3.52) / 2),  # half way from 12 to 18 months
        (66.0, False, (11.65 + 10.23) / 2),  # half way from 5 to 6 years
        (126.0, True, 9.79 + (10.09 - 9.79) * 0.5),
        (124.0, True, 9.79 + (10.09 - 9.79) * 4 / 12),
        (186.0, False, 9.23 + (7.31 - 9.23) * 0.5),  # girls' SD falls after 14 years
    ],
)
def test_sd_between_tabulated_ages_is_linear(age, male, expected):
    assert sd_months(age, male) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("age", "male", "expected"),
    [
        (0.0, True, 0.69),
        (1.5, False, 0.72),
        (204.0, True, 13.05),
        (220.0, True, 13.05),
        (192.0, False, 7.31),
        (240.0, False, 7.31),
    ],
)
def test_sd_is_clamped_outside_the_table(age, male, expected):
    assert sd_months(age, male) == expected


@settings(max_examples=300, deadline=None)
@given(
    age=st.floats(0, MAX_AGE_MONTHS),
    step=st.floats(0, 3),
    male=st.booleans(),
)
def test_sd_is_positive_and_changes_boundedly(age, step, male):
    """Piecewise linear: never steeper than the steepest segment of the table."""
    table = TABLES[male]
    steepest = max(abs(s1 - s0) / (a1 - a0) for (a0, s0), (a1, s1) in pairwise(table))
    lowest, highest = min(s for _, s in table), max(s for _, s in table)
    other = min(age + step, MAX_AGE_MONTHS)
    sd, sd_other = sd_months(age, male), sd_months(other, male)
    assert lowest <= sd <= highest and sd > 0
    assert abs(sd_other - sd) <= steepest * (other - age) + 1e-9


# -- SDS and the normal range ----------------------------------------------------------------


def test_sds_hand_computed():
    # A boy of 14 years read at 15: 12 months over a 10.72-month SD.
    c = compare(180.0, 168.0, male=True)
    assert c == AgeComparison(
        age_months=168.0,
        delta_months=12.0,
        sd_months=10.72,
        sds=pytest.approx(12 / 10.72),
        within_normal_range=True,
        within_interval=None,
    )
    assert c.sds == pytest.approx(1.1194, abs=1e-4)

    # A girl of 2 years read at 1: 12 months behind is -2.59 SD at that age, not normal.
    c = compare(12.0, 24.0, male=False)
    assert c.delta_months == -12.0
    assert c.sds == pytest.approx(-12 / 4.64)
    assert c.sds == pytest.approx(-2.586, abs=1e-3)
    assert not c.within_normal_range


def test_same_delta_means_less_at_an_older_age():
    young, old = compare(36.0, 24.0, male=True), compare(180.0, 168.0, male=True)
    assert young.delta_months == old.delta_months == 12.0
    assert young.sds > 2 > old.sds > 0


@pytest.mark.parametrize(
    ("bone", "age", "male", "normal"),
    [
        (120.0 + 2 * 9.79, 120.0, True, True),  # exactly +2 SD: normal
        (120.0 + 2 * 9.79 + 0.01, 120.0, True, False),
        (60.0 - 2 * 11.65, 60.0, False, True),  # exactly -2 SD: normal
        (60.0 - 2 * 11.65 - 0.01, 60.0, False, False),
        (60.0, 60.0, False, True),
    ],
)
def test_normal_range_is_two_sds_inclusive(bone, age, male, normal):
    assert compare(bone, age, male).within_normal_range is normal


# -- the model's interval -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "inside"),
    [(160.0, True), (150.0, True), (170.0, True), (149.9, False), (175.0, False)],
)
def test_within_interval_says_whether_the_age_is_inside_it(age, inside):
    assert compare(158.0, age, True, interval_90=(150.0, 170.0)).within_interval is inside


@pytest.mark.parametrize(
    "interval",
    [(170.0, 150.0), (float("nan"), 170.0), (150.0, math.inf), (150.0,), (1.0, 2.0, 3.0)],
)
def test_a_bad_interval_is_refused(interval):
    with pytest.raises(ValueError, match="interval_90"):
        compare(158.0, 160.0, True, interval_90=interval)


# -- input validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "words"),
    [
        (float("nan"), "not a finite"),
        (math.inf, "not a finite"),
        (-1.0, "negative"),
        (240.5, "above 240 months"),
    ],
)
def test_an_unusable_age_is_refused_clearly(age, words):
    with pytest.raises(ValueError, match=words):
        compare(100.0, age, male=True)
    with pytest.raises(ValueError, match=words):
        sd_months(age, male=False)


def test_a_non_finite_bone_age_is_refused():
    with pytest.raises(ValueError, match="bone age"):
        compare(float("nan"), 100.0, male=True)


def test_the_age_limits_themselves_are_accepted():
    assert compare(3.0, 0.0, male=True).delta_months == 3.0
    assert compare(230.0, 240.0, male=False).sd_months == 7.31


# -- an age typed in a CSV or on the command line ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 7.5 ", 7.5),
        ("0", 0.0),
        ("240", 240.0),
        (96, 96.0),
        (96.25, 96.25),
    ],
)
def test_parse_age_months_accepts_ages_and_blanks(value, expected):
    assert parse_age_months(value) == expected


@pytest.mark.parametrize(
    "value", ["abc", "12m", "-1", "nan", "inf", "250", 250.0, -0.5, float("nan"), True]
)
def test_parse_age_months_names_the_value_it_refuses(value):
    with pytest.raises(ValueError, match=f"age_months {value!r}".replace("(", r"\(")):
        parse_age_months(value)


def test_module_exports_what_it_documents():
    assert set(ref.__all__) <= set(dir(ref))


# -- the age in a DICOM header --------------------------------------------------------------------


def _dataset(**values: Any) -> Any:
    """A pydicom Dataset built in memory; odd values are set without pydicom's warnings."""
    pydicom = pytest.importorskip("pydicom", reason="pydicom not installed")
    ds = pydicom.dataset.Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    return ds


def _months(birth: str, when: str) -> float:
    born = dt.datetime.strptime(birth, "%Y%m%d").date()
    seen = dt.datetime.strptime(when, "%Y%m%d").date()
    return (seen - born).days / DAYS_PER_MONTH


@pytest.mark.parametrize(
    ("value", "months"),
    [
        ("010Y", 120.0),
        ("006M", 6.0),
        ("012W", 12 * 7 / 30.4375),
        ("030D", 30 / 30.4375),
        ("000D", 0.0),
        ("10Y ", 120.0),  # lax but clear: fewer digits, padding
    ],
)
def test_age_from_patient_age(value, months):
    ds = _dataset(PatientAge=value, PatientBirthDate="20000101", StudyDate="20200101")
    age, source = dicom_age_months(ds)
    assert source == "PatientAge"
    assert age == pytest.approx(months, abs=1e-12)


def test_a_month_is_the_mean_gregorian_month():
    assert DAYS_PER_MONTH == 30.4375 == 365.25 / 12


def test_age_from_study_date_minus_birth_date():
    ds = _dataset(PatientBirthDate="20100115", StudyDate="20200301", AcquisitionDate="20250101")
    age, source = dicom_age_months(ds)
    assert source == "StudyDate-PatientBirthDate"
    assert age == pytest.approx(_months("20100115", "20200301"))
    assert age == pytest.approx(121.5, abs=0.1)


def test_age_from_acquisition_date_when_the_study_date_is_missing():
    ds = _dataset(PatientBirthDate="20100115", AcquisitionDate="20160715")
    age, source = dicom_age_months(ds)
    assert source == "AcquisitionDate-PatientBirthDate"
    assert age == pytest.approx(_months("20100115", "20160715"))


@pytest.mark.parametrize("bad", ["abcd", "10", "Y", "0010Y", "10.5Y", "-10Y", ""])
def test_a_malformed_patient_age_falls_back_to_the_dates(bad):
    ds = _dataset(PatientAge=bad, PatientBirthDate="20100115", StudyDate="20200115")
    age, source = dicom_age_months(ds)
    assert source == "StudyDate-PatientBirthDate"
    assert age == pytest.approx(_months("20100115", "20200115"))


@pytest.mark.parametrize("bad", ["2020-01-15", "20201340", "20200230", "2020011", "", "x" * 8])
def test_a_malformed_study_date_is_ignored(bad):
    ds = _dataset(PatientBirthDate="20100115", StudyDate=bad, AcquisitionDate="20150115")
    assert dicom_age_months(ds) == (
        pytest.approx(_months("20100115", "20150115")),
        "AcquisitionDate-PatientBirthDate",
    )
    assert dicom_age_months(_dataset(PatientBirthDate="20100115", StudyDate=bad)) == (None, "")


@pytest.mark.parametrize("bad", ["2010-01-15", "20101301", "1", ""])
def test_a_malformed_birth_date_gives_no_age(bad):
    ds = _dataset(PatientBirthDate=bad, StudyDate="20200115", AcquisitionDate="20200115")
    assert dicom_age_months(ds) == (None, "")


def test_a_study_before_the_birth_is_ignored():
    ds = _dataset(PatientBirthDate="20100115", StudyDate="20000101", AcquisitionDate="20110115")
    age, source = dicom_age_months(ds)
    assert source == "AcquisitionDate-PatientBirthDate"
    assert age == pytest.approx(_months("20100115", "20110115"))


def test_no_age_fields_gives_none():
    assert dicom_age_months(_dataset()) == (None, "")
    assert dicom_age_months(_dataset(StudyDate="20200101")) == (None, "")


def test_sources_are_the_documented_ones():
    assert SOURCES == (
        "PatientAge",
        "StudyDate-PatientBirthDate",
        "AcquisitionDate-PatientBirthDate",
    )


def test_a_file_read_back_with_malformed_fields_never_crashes_or_echoes_them():
    """Values read from a file are decoded lazily; odd ones must not raise or be quoted."""
    pydicom = pytest.importorskip("pydicom", reason="pydicom not installed")
    ds = _dataset(
        PatientAge="??",
        PatientBirthDate="19991399",
        StudyDate="20200115",
        SOPInstanceUID="1.2.3",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.1",
    )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    back = pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dicom_age_months(back) == (None, "")
    assert not [w for w in caught if "19991399" in str(w.message)]


def test_warnings_that_quote_a_header_value_are_not_passed_on():
    """pydicom's value warnings quote the value; a birth date identifies the patient."""

    class Warns:
        def __getattr__(self, name: str) -> Any:
            warnings.warn(f"Invalid value for {name}: '19991399'", UserWarning, stacklevel=2)
            return "19991399"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dicom_age_months(Warns()) == (None, "")
    assert caught == []


def test_ages_read_back_from_a_file():
    pydicom = pytest.importorskip("pydicom", reason="pydicom not installed")
    ds = _dataset(PatientBirthDate="20100115", StudyDate="20200115", SOPInstanceUID="1.2.3")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    back = pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)
    age, source = dicom_age_months(back)
    assert source == "StudyDate-PatientBirthDate"
    assert age == pytest.approx(_months("20100115", "20200115"))


def test_date_objects_are_read_as_dates():
    """pydicom with ``datetime_conversion`` on gives ``date`` objects, not strings."""
    ds = SimpleNamespace(
        PatientBirthDate=dt.date(2010, 1, 15),
        StudyDate=dt.datetime(2012, 1, 15, 10, 30),
    )
    age, source = dicom_age_months(ds)
    assert source == "StudyDate-PatientBirthDate"
    assert age == pytest.approx(730 / DAYS_PER_MONTH)


def test_acr_nema_dates_are_accepted():
    assert parse_date("2010.01.15") == dt.date(2010, 1, 15)
    assert parse_date(b"20100115") == dt.date(2010, 1, 15)


@pytest.mark.parametrize("value", [None, 10, 12.0, ["010Y", "011Y"], b"\xff\xfe", object()])
def test_odd_types_are_not_ages(value):
    assert parse_age_string(value) is None
    assert parse_date(value) is None


def test_a_header_that_raises_on_access_gives_no_age():
    class Corrupt:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"cannot decode {name}")

    assert dicom_age_months(Corrupt()) == (None, "")


def test_a_dicom_age_feeds_the_reference():
    ds = _dataset(PatientAge="010Y")
    age, _ = dicom_age_months(ds)
    assert age is not None
    c = compare(129.79, age, male=True)
    assert c.sds == pytest.approx(1.0)
