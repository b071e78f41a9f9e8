"""Where the real RSNA radiographs live (../shared/data/rsna), and a skip when they are absent.

A module of its own, not conftest.py: benches/ has a conftest too, and ``from conftest
import ...`` would pick whichever pytest loaded first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BONEAGE_SHARED", REPO.parent / "shared"))
RSNA = SHARED / "data" / "rsna"


def rsna_dir(sub: str) -> Path:
    """Returns ``../shared/data/rsna/<sub>``, skipping the test when it is not there."""
    path = RSNA / sub
    if not path.is_dir():
        pytest.skip(f"real RSNA data not found at {path} (set BONEAGE_SHARED to its shared/ dir)")
    return path


def full_films_with_copies(n: int, subset: str = "train100") -> list[tuple[Path, Path]]:
    """The first ``n`` (full-resolution film, its public copy in ``subset``) pairs of training
    ids, leaving out the ``parma_fitted`` files (cropped and padded by their source)."""
    import csv

    rsna = rsna_dir("fullres").parent
    rows = list(csv.DictReader((rsna / "labels.csv").open()))
    small = {r["id"]: rsna / r["file"] for r in rows if r["subset"] == subset}
    return [(rsna / r["file"], small[r["id"]]) for r in rows
            if r["subset"] == "fullres" and r["id"] in small
            and "parma_fitted" not in r["file"]][:n]  # fmt: skip


def image_files(*subs: str) -> list[Path]:
    files: list[Path] = []
    for sub in subs:
        base = RSNA / sub
        if base.is_dir():
            files += sorted(
                p for p in base.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
            )
    return files
