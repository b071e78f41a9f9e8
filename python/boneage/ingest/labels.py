"""Reads the RSNA label CSVs (any of their schemas) into one table of case_id, male, age.

The RSNA release ships three schemas, one per split, and users mix them:

- training:   ``id,boneage,male`` (male is True/False)
- validation: ``Image ID,male,Bone Age (months)``
- test:       ``Case ID,Sex,Ground truth bone age (months)`` (Sex is M/F)

plus this project's own ``labels.csv`` (``id,boneage,male,...,origin_split``). Rows that cannot
be trusted (unknown sex value, missing/NaN/negative/absurd age, conflicting duplicates) are not
silently dropped: each becomes a :class:`LabelProblem`, which the bulk preprocessor writes to
its manifest.

Files come from spreadsheets on every OS: header cells and values are stripped (``Case ID,
Sex`` matches ``Case ID, Sex``), and UTF-8 (with or without BOM) and UTF-16/32 with a BOM are
read. Any other encoding, or a file that is not CSV text at all, is a ``ValueError`` naming the
file: guessing a code page would silently corrupt ids.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from boneage.ingest.sources import read_regular
from boneage.settings import MAX_AGE_MONTHS, parse_age_months, parse_sex

MAX_LABEL_BYTES = 256 << 20
"""A label CSV above this is refused (the RSNA ones are well under a megabyte)."""


@dataclass(frozen=True)
class Label:
    """One case's label. ``split`` comes from the schema (or ``origin_split``) when known."""

    case_id: str
    male: int
    age_months: float
    split: str | None
    source: str


@dataclass(frozen=True)
class LabelProblem:
    case_id: str
    source: str
    reason: str


@dataclass
class LabelTable:
    labels: dict[str, Label] = field(default_factory=dict)
    problems: dict[str, LabelProblem] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, case_id: str) -> Label | None:
        return self.labels.get(case_id)


@dataclass(frozen=True)
class Schema:
    name: str
    id_col: str
    sex_col: str
    age_col: str
    split: str | None


SCHEMAS = (
    Schema("rsna-train", "id", "male", "boneage", "train"),
    Schema("rsna-validation", "Image ID", "male", "Bone Age (months)", "val"),
    Schema("rsna-test", "Case ID", "Sex", "Ground truth bone age (months)", "test"),
)


def normalise_id(raw: str) -> str:
    """``'1377'``, ``' 1377 '``, ``'1377.0'`` and ``'1377.png'`` all name case ``'1377'``."""
    text = raw.strip()
    stem, ext = os.path.splitext(text)
    if ext.lower() in {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}:
        text = stem
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def parse_age(raw: str) -> float | None:
    try:
        age = float(raw)
    except ValueError:
        return None
    if not math.isfinite(age) or age < 0 or age > MAX_AGE_MONTHS:
        return None
    return age


def detect_schema(header: list[str], path: Path) -> Schema:
    names = [h.strip() for h in header]
    for schema in SCHEMAS:
        if {schema.id_col, schema.sex_col, schema.age_col} <= set(names):
            return schema
    if {"id", "boneage", "male"} <= set(names):
        return SCHEMAS[0]
    raise ValueError(
        f"{path}: unrecognised label CSV header {names}; expected one of the RSNA schemas "
        "(id,boneage,male | Image ID,male,Bone Age (months) | "
        "Case ID,Sex,Ground truth bone age (months))"
    )


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text(path: Path) -> str:
    """A label file's text: UTF-8, or UTF-8/16/32 with a BOM; else a ``ValueError`` naming it.

    Read bounded (a FIFO or ``/dev/zero`` given as a label file fails instead of hanging).
    """
    data = read_regular(path, MAX_LABEL_BYTES)
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in data:
        raise ValueError(
            f"{path}: not UTF-8 text (it holds NUL bytes: UTF-16 without a BOM?); save it as "
            "UTF-8 (or UTF-16 with a BOM)"
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not {encoding.removesuffix('-sig').upper()} text (byte 0x{data[e.start]:02x} "
            f"at offset {e.start}); save it as UTF-8 (or UTF-16 with a BOM)"
        ) from None


def _csv(path: Path) -> tuple[list[str], Iterator[tuple[dict[str, str], int]]]:
    """A label CSV's stripped header and its non-blank rows (stripped cells, line number).

    The one reader behind :func:`read_labels` and :func:`read_sexes`, so both accept the same
    encodings and spacing and name the file and line of a malformed CSV the same way.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))

    def unreadable(e: csv.Error) -> ValueError:
        return ValueError(f"{path}:{reader.line_num}: not a readable CSV file ({e})")

    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as e:
        raise unreadable(e) from None

    def rows() -> Iterator[tuple[dict[str, str], int]]:
        try:
            for raw in reader:
                if raw:  # a blank line is no row
                    yield dict(zip(header, [v.strip() for v in raw], strict=False)), reader.line_num
        except csv.Error as e:
            raise unreadable(e) from None

    return header, rows()


def read_labels(paths: Sequence[str | os.PathLike[str]]) -> LabelTable:
    """Reads and merges label CSVs; later files never silently override earlier ones."""
    table = LabelTable()
    for p in paths:
        path = Path(p)
        header, rows = _csv(path)
        schema = detect_schema(header, path)
        has_origin = "origin_split" in header
        for row, line in rows:
            _add_row(table, schema, row, f"{path}:{line}", has_origin)
    return table


@dataclass
class SexTable:
    """Sex per case id, for prediction; ``problems`` names the ids whose rows cannot say."""

    male: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    age_months: dict[str, float] = field(default_factory=dict)
    """The chronological age per case id, from an optional ``age_months`` column (the
    patient's age, not a bone age: it is what an estimate is compared with)."""


AGE_COLUMN = "age_months"
"""The optional column of a prediction label file that holds the chronological age."""


def read_sexes(paths: list[str | os.PathLike[str]]) -> SexTable:
    """Sex per case id from label CSVs of any schema :func:`read_labels` accepts.

    Prediction needs only sex: a patient being estimated has no ground-truth bone age, so
    the age column may be empty or missing. Two rows that disagree on a case's sex make it a
    problem (trust neither), as in :func:`read_labels`.
    """
    table = SexTable()
    for p in paths:
        path = Path(p)
        header, rows = _csv(path)
        schema = _sex_schema(header, path)
        for row, line in rows:
            case = normalise_id(row.get(schema.id_col) or "")
            _add_sex(table, case, row.get(schema.sex_col))
            if case and (row.get(AGE_COLUMN) or "").strip():
                try:
                    age = parse_age_months(row[AGE_COLUMN])
                except ValueError as e:
                    table.problems.setdefault(case, f"{path}:{line}: {e}")
                    continue
                if age is not None and table.age_months.setdefault(case, age) != age:
                    table.problems[case] = "conflicting ages in the label files"
    return table


def _sex_schema(header: list[str], path: Path) -> Schema:
    for schema in SCHEMAS:
        if {schema.id_col, schema.sex_col} <= set(header):
            return schema
    raise ValueError(
        f"{path}: unrecognised label CSV header {header}; expected an id and a sex column of "
        "an RSNA schema (id,male | Image ID,male | Case ID,Sex)"
    )


def _add_sex(table: SexTable, case_id: str, value: str | None) -> None:
    if not case_id:
        return  # a blank line or a row without an id names no image
    male = parse_sex(value or "")
    if male is None:
        table.problems.setdefault(case_id, f"unknown sex value {value!r} in the label file")
    elif table.male.setdefault(case_id, male) != male:
        table.problems[case_id] = "conflicting sex values in the label files"


def _add_row(
    table: LabelTable, schema: Schema, row: dict[str, str], where: str, has_origin: bool
) -> None:
    case_id = normalise_id(row.get(schema.id_col) or "")
    if not case_id:
        table.problems[f"<row {where}>"] = LabelProblem("", where, "label row without an id")
        return
    male = parse_sex(row.get(schema.sex_col) or "")
    age = parse_age(row.get(schema.age_col) or "")
    reason = None
    if male is None:
        reason = f"unknown sex value {row.get(schema.sex_col)!r}"
    elif age is None:
        reason = f"invalid bone age {row.get(schema.age_col)!r} (need 0..{MAX_AGE_MONTHS:g} months)"
    if reason is not None:
        table.problems.setdefault(case_id, LabelProblem(case_id, where, reason))
        return
    split = (row.get("origin_split") or "").strip() or None if has_origin else schema.split
    assert male is not None and age is not None
    label = Label(case_id, male, age, split, where)
    previous = table.labels.get(case_id)
    if previous is None:
        if case_id not in table.problems:
            table.labels[case_id] = label
        return
    if (previous.male, previous.age_months) != (male, age):
        # Two different answers for one case: trust neither.
        del table.labels[case_id]
        table.problems[case_id] = LabelProblem(
            case_id, where, f"conflicting labels ({previous.source} and {where})"
        )
