"""Where training data comes from when the user gives none: standard places, else synthetic.

The synthetic set is made on the fly with :mod:`boneage.training.synthetic` and written through
the same native shard writer as real data, so the demo exercises the real pipeline end to end.
Each phantom is drawn at the model's size and stored as the ``squash`` preprocessing makes
it (a no-op resize, then CLAHE), and the folder gets its ``preprocessing.json`` like any
bulk output: a demo model then prepares a phantom PNG exactly as its training images were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from boneage import _native as native
from boneage.ingest.preparation import squash
from boneage.settings import Preprocessing
from boneage.shards import find_shards
from boneage.training import synthetic

SPLITS = {"train": 0, "val": 1, "test": 2}
DEMO_SIZES = {"train": 2000, "val": 300, "test": 300}
"""Phantoms per split of the demo run (``python -m boneage.train`` with no data)."""
DEMO_IMAGE_SIZE = 64
DEMO_EPOCHS = 12


def has_shards(directory: Path, split: str = "train") -> bool:
    """Whether ``directory`` holds a complete set of ``split`` shards."""
    try:
        return bool(find_shards(directory, split)) if directory.is_dir() else False
    except (OSError, ValueError):
        return False


def find_dataset() -> Path | None:
    """``$BONEAGE_DATA`` then ``./data``: the first that holds training shards."""
    candidates = [os.environ.get("BONEAGE_DATA", ""), "data"]
    for c in candidates:
        if c and has_shards(Path(c)):
            return Path(c)
    return None


def make_synthetic(
    directory: Path, sizes: dict[str, int], image_size: int, seed: int = 0
) -> dict[str, int]:
    """Writes synthetic train/val/test shards (reused when the same recipe is already there)."""
    pp = Preprocessing(image_size=image_size, localiser="none", mode="squash")
    recipe = {"sizes": sizes, "image_size": image_size, "seed": seed, "version": 2}
    marker = directory / "synthetic.json"
    if marker.exists() and json.loads(marker.read_text()) == recipe:
        return sizes
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        # Distinct seeds per split: no phantom appears in two splits.
        split_seed = seed * 10 + SPLITS.get(split, 9)
        with native.ShardWriter(str(directory), split, 1) as w:
            for case, img in synthetic.generate(n, seed=split_seed, size=image_size):
                w.write(squash(img, pp), f"{split}-{case.id}", male=case.male,
                        age=case.age_months)  # fmt: skip
    pp.write(directory)
    marker.write_text(json.dumps(recipe))
    return sizes
