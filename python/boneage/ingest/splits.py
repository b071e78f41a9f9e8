"""Seeded, stratified train/validation/test splits from a label table.

Stratified by sex and by 2-year bone-age band, so every split sees the whole age range of both
sexes; a case's split depends only on the seed and the set of ids, never on file order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from boneage.ingest.labels import Label


def parse_fractions(spec: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> fractions summing to 1 (checked)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad split spec {spec!r}: use name=fraction,name=fraction,...")
        frac = float(value)
        if frac < 0:
            raise ValueError(f"bad split spec {spec!r}: negative fraction for {name}")
        out[name.strip()] = frac
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {total:g} in {spec!r}")
    return out


def _rank(seed: int, case_id: str) -> str:
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()


def stratified_split(labels: list[Label], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Assigns every labelled case to a split; largest-remainder allocation per stratum."""
    strata: dict[tuple[int, int], list[str]] = defaultdict(list)
    for lab in labels:
        strata[(lab.male, int(lab.age_months // 24))].append(lab.case_id)
    names = list(fractions)
    out: dict[str, str] = {}
    for key in sorted(strata):
        ids = sorted(strata[key], key=lambda c: _rank(seed, c))
        n = len(ids)
        exact = [fractions[s] * n for s in names]
        counts = [int(e) for e in exact]
        order = sorted(range(len(names)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in order[: n - sum(counts)]:
            counts[i] += 1
        start = 0
        for name, count in zip(names, counts, strict=True):
            for cid in ids[start : start + count]:
                out[cid] = name
            start += count
    return out


def val_from_train(labels: list[Label], fraction: float, seed: int) -> dict[str, str]:
    """Holds out ``fraction`` of the training cases as ``val``, stratified as above.

    Only cases whose label file puts them in training (or names no split) are touched: an
    official test split stays the test split, so a user with just the RSNA training and test
    CSVs gets train / val / test without re-splitting the test images.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {fraction}")
    pool = [lab for lab in labels if lab.split in (None, "train")]
    return stratified_split(pool, {"train": 1.0 - fraction, "val": fraction}, seed)
