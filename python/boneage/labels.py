"""Reads the RSNA label CSVs (any of their schemas) into one table of case_id, male, age.

The RSNA release ships three schemas, one per split, and users mix them:

- training:   ``id,boneage,male`` (male is True/False)
- validation: ``Image ID,male,Bone Age (months)``
- test:       ``Case ID,Sex,Ground truth bone age (months)`` (Sex is M/F)

plus this project's own ``labels.csv`` (``id,boneage,male,...,origin_split``). Rows that cannot
be trusted (unknown sex value, missing/NaN/negative/absurd age, conflicting duplicates) are not
silently dropped: each becomes a :class:`LabelProblem`, which the bulk preprocessor writes to
its manifest.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

MAX_AGE_MONTHS = 240.0
"""Bone ages above 20 years are outside every paediatric atlas: treated as a data error."""

MALE_VALUES = {"true": 1, "t": 1, "1": 1, "m": 1, "male": 1, "yes": 1, "y": 1}
FEMALE_VALUES = {"false": 0, "f": 0, "0": 0, "female": 0, "no": 0, "n": 0}


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
    if ext.lower() in {".png", ".jpg", ".jpeg"}:
        text = stem
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def parse_sex(raw: str) -> int | None:
    value = raw.strip().lower()
    if value in MALE_VALUES:
        return MALE_VALUES[value]
    if value in FEMALE_VALUES:
        return FEMALE_VALUES[value]
    return None


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


def read_labels(paths: list[str | os.PathLike[str]]) -> LabelTable:
    """Reads and merges label CSVs; later files never silently override earlier ones."""
    table = LabelTable()
    for p in paths:
        path = Path(p)
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            schema = detect_schema(reader.fieldnames or [], path)
            has_origin = "origin_split" in (reader.fieldnames or [])
            for line, row in enumerate(reader, start=2):
                _add_row(table, schema, row, f"{path}:{line}", has_origin)
    return table


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
